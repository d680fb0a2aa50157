// Every op's schema, in one place (the single source of truth). Kernels register their
// implementations at the bottom of their own files with TORCH_LIBRARY_IMPL.
#include <Python.h>
#include <torch/library.h>

// `import byzagg._C` loads this library, which runs the registrations below.
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(byzagg, m) {
  m.def("median(Tensor G) -> Tensor");
  m.def("trimmed_mean(Tensor G, int f) -> Tensor");
  m.def("meamed(Tensor G, int f) -> Tensor");
  m.def("phocas(Tensor G, int f) -> Tensor");
}
