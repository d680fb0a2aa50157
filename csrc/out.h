// The out= forms of the ops that return a d-vector (docs/api.md, "out="): each such op
// "<op>(Tensor G, ...) -> Tensor" has an overload "<op>.out(Tensor G, ..., *, Tensor(a!)
// out) -> ()" that writes the result into the caller's buffer. A kernel is written once, as
// a function that fills a contiguous (d,) tensor of G's dtype; the two helpers below make
// the functional op and the out= op from it, for the CPU and the CUDA kernels alike.
#pragma once

#include <ATen/MemoryOverlap.h>
#include <c10/core/DeviceType.h>
#include <torch/types.h>

#include "checks.h"

namespace byzagg {

// out is a (d,) tensor of G's dtype on G's device, with no two elements at one address and
// sharing no memory with G (no silent resize: a wrong shape is an error, as for a dtype).
inline void check_out(const at::Tensor& out, const at::Tensor& G, const char* rule) {
  TORCH_CHECK(out.dim() == 1 && out.size(0) == G.size(1), rule, ": out must have shape (", G.size(1), ",), got ",
              out.sizes());
  TORCH_CHECK(out.scalar_type() == G.scalar_type(), rule, ": out must have G's dtype ", G.scalar_type(), ", got ",
              out.scalar_type());
  TORCH_CHECK(out.device() == G.device(), rule, ": out must be on G's device ", G.device(), ", got ", out.device());
  at::assert_no_internal_overlap(out);
  at::assert_no_overlap(out, G);
}

// The functional op: `write(result)` on a fresh contiguous (d,) tensor of G's dtype.
template <typename Write>
at::Tensor new_vector(const at::Tensor& G, const char* rule, c10::DeviceType device, const Write& write) {
  check_matrix(G, rule, device);
  at::Tensor result = at::empty({G.size(1)}, G.options());
  write(result);
  return result;
}

// The out= op: `write(out)` straight into out when it is contiguous (no allocation, no
// copy); otherwise into a fresh contiguous vector, then copied into out's strides.
template <typename Write>
void write_out(const at::Tensor& G, at::Tensor& out, const char* rule, c10::DeviceType device, const Write& write) {
  check_matrix(G, rule, device);
  check_out(out, G, rule);
  if (out.is_contiguous()) {
    write(out);
    return;
  }
  at::Tensor result = at::empty({G.size(1)}, G.options());
  write(result);
  out.copy_(result);
}

}  // namespace byzagg
