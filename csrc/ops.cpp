// The one TORCH_LIBRARY(fastecg) block: schemas of the private compiled kernels.
// Public ops are Python custom ops (python/fastecg/ops/*) that call these with
// real, validated tensors; kernels live in csrc/cpu (CPU) and csrc/cuda (CUDA).
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(fastecg, m) {
  // x: (rows, n) contiguous float32/float64; method: 0 z-score, 1 min-max, 2 naive.
  // Each row is normalised on its own.
  m.def("_normalize_kernel(Tensor x, int method, float mean, float std) -> Tensor");
}

// An empty Python module, so that `import fastecg._C` loads the library and runs
// the registrations above (no pybind11: it would cost a heavy header per TU).
static struct PyModuleDef fastecg_c_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&fastecg_c_module); }
