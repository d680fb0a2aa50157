// Every op's schema, in one place (the single source of truth). Kernels register their
// implementations at the bottom of their own files with TORCH_LIBRARY_IMPL(byzagg, CPU|CUDA).
#include <torch/library.h>

TORCH_LIBRARY(byzagg, m) {
  m.def("median(Tensor G) -> Tensor");
  m.def("trimmed_mean(Tensor G, int f) -> Tensor");
  m.def("meamed(Tensor G, int f) -> Tensor");
  m.def("phocas(Tensor G, int f) -> Tensor");
}
