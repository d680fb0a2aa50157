// Every op's schema, in one place (the single source of truth). Kernels register their
// implementations at the bottom of their own files with TORCH_LIBRARY_IMPL(byzagg, CPU|CUDA).
#include <torch/library.h>

#include <string>

#include "cpu/isa.h"

namespace {
// The vector ISA the CPU kernels use now (BYZAGG_CPU_ISA applied), for byzagg.backend().
std::string cpu_isa_name() { return byzagg::cpu::isa_name(byzagg::cpu::cpu_isa()); }
// The vector path each CPU kernel family took since the last call (and clears the record).
std::string isa_trace() { return byzagg::cpu::take_isa_trace(); }
}  // namespace

TORCH_LIBRARY(byzagg, m) {
  m.def("median(Tensor G) -> Tensor");
  m.def("trimmed_mean(Tensor G, int f) -> Tensor");
  m.def("meamed(Tensor G, int f) -> Tensor");
  m.def("phocas(Tensor G, int f) -> Tensor");
  m.def("pairwise_distances(Tensor G, bool squared) -> Tensor");
  m.def("krum_scores(Tensor G, int f) -> Tensor");
  m.def("krum(Tensor G, int f, int m) -> Tensor");
  m.def("bulyan(Tensor G, int f) -> Tensor");
  m.def("nnm(Tensor G, int f) -> Tensor");
  m.def("medoid(Tensor G) -> Tensor");
  m.def("geometric_median(Tensor G, Tensor? weights, float eps, int max_iter, float tol) -> Tensor");
  m.def("centered_clipping(Tensor G, float tau, int iters, Tensor? center) -> Tensor");
  m.def("brsgd(Tensor G, float beta, float threshold) -> Tensor");
  m.def("mda(Tensor G, int f) -> Tensor");
  // The out= forms of the ops that return a d-vector (csrc/out.h): the result is written
  // into `out`, a (d,) tensor of G's dtype on G's device that shares no memory with G.
  m.def("median.out(Tensor G, *, Tensor(a!) out) -> ()");
  m.def("trimmed_mean.out(Tensor G, int f, *, Tensor(a!) out) -> ()");
  m.def("meamed.out(Tensor G, int f, *, Tensor(a!) out) -> ()");
  m.def("phocas.out(Tensor G, int f, *, Tensor(a!) out) -> ()");
  m.def("krum.out(Tensor G, int f, int m, *, Tensor(a!) out) -> ()");
  m.def("bulyan.out(Tensor G, int f, *, Tensor(a!) out) -> ()");
  m.def("medoid.out(Tensor G, *, Tensor(a!) out) -> ()");
  m.def("geometric_median.out(Tensor G, Tensor? weights, float eps, int max_iter, float tol, *, Tensor(a!) out) -> ()");
  m.def("centered_clipping.out(Tensor G, float tau, int iters, Tensor? center, *, Tensor(a!) out) -> ()");
  m.def("brsgd.out(Tensor G, float beta, float threshold, *, Tensor(a!) out) -> ()");
  m.def("mda.out(Tensor G, int f, *, Tensor(a!) out) -> ()");
  m.def("cpu_isa() -> str", &cpu_isa_name);
  m.def("isa_trace() -> str", &isa_trace);
}
