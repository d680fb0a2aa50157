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
  m.def("cpu_isa() -> str", &cpu_isa_name);
  m.def("isa_trace() -> str", &isa_trace);
}
