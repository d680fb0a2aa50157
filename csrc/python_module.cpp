// Makes the library importable as the Python module byzagg._C: importing it loads the
// shared object, which runs the op registrations (csrc/ops.cpp and the kernel files).
#include <Python.h>

PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
