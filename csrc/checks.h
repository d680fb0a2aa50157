// The preconditions of the ops on n and f, with docs/api.md's messages ("krum requires
// n >= 2f + 3, got n=10, f=4"), shared by the CPU and CUDA kernels (host code, torch's
// TORCH_CHECK). The arithmetic that cannot overflow is in csrc/core/requirements.h.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/DeviceType.h>
#include <c10/util/Exception.h>

#include <cstdint>

#include "core/requirements.h"

namespace byzagg {

// G is 2-D, floating, non-empty and on the kernel's device type (messages name the rule).
inline void check_matrix(const at::Tensor& G, const char* rule, c10::DeviceType device) {
  TORCH_CHECK(G.dim() == 2, rule, ": G must be 2-D (n, d), got ", G.dim(), " dimensions");
  TORCH_CHECK(G.is_floating_point(), rule, ": G must have a floating dtype, got ", G.scalar_type());
  TORCH_CHECK(G.size(0) > 0 && G.size(1) > 0, rule, ": empty input, got n=", G.size(0), ", d=", G.size(1));
  TORCH_CHECK(G.device().type() == device, rule, ": expected a ", c10::DeviceTypeName(device), " tensor, got ",
              G.device());
}

inline void check_f_nonnegative(const char* rule, int64_t n, int64_t f) {
  TORCH_CHECK(f >= 0, rule, " requires f >= 0, got n=", n, ", f=", f);
}

// n > 2f: trimmed mean, MeaMed, Phocas, NNM, MDA.
inline void check_n_above_2f(const char* rule, int64_t n, int64_t f) {
  check_f_nonnegative(rule, n, f);
  TORCH_CHECK(core::n_above_2f(n, f), rule, " requires n > 2f, got n=", n, ", f=", f);
}

// n >= 2f + 3: Krum, Multi-Krum, Krum scores.
inline void check_krum_f(const char* rule, int64_t n, int64_t f) {
  check_f_nonnegative(rule, n, f);
  TORCH_CHECK(core::n_at_least_2f_plus_3(n, f), rule, " requires n >= 2f + 3, got n=", n, ", f=", f);
}

// n >= 4f + 3: Bulyan.
inline void check_bulyan_f(int64_t n, int64_t f) {
  check_f_nonnegative("bulyan", n, f);
  TORCH_CHECK(core::n_at_least_4f_plus_3(n, f), "bulyan requires n >= 4f + 3, got n=", n, ", f=", f);
}

// 1 <= m <= n - f: Krum's number of averaged rows.
inline void check_krum_m(int64_t n, int64_t f, int64_t m) {
  TORCH_CHECK(m >= 1 && m <= n - f, "krum requires 1 <= m <= n - f, got n=", n, ", f=", f, ", m=", m);
}

}  // namespace byzagg
