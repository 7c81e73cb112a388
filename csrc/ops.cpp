// The one TORCH_LIBRARY(fastecg) block: schemas of the private compiled kernels.
// Public ops are Python custom ops (python/fastecg/ops/*) that call these with
// real, validated tensors; kernels live in csrc/cpu (CPU) and csrc/cuda (CUDA).
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(fastecg, m) {
  // x: (rows, n) contiguous float32/float64; method: 0 z-score, 1 min-max, 2 naive.
  // Each row is normalised on its own.
  m.def("_normalize_kernel(Tensor x, int method, float mean, float std) -> Tensor");
  // x: (rows, n); sos: (n_sections, 6) float64 with a0 == 1; zi: sosfilt_zi(sos), float64.
  // padtype: 0 none, 1 odd, 2 even, 3 constant. Same recurrence, padding and initial
  // conditions as scipy.signal.sosfiltfilt, state in float64.
  m.def("_sosfiltfilt_kernel(Tensor x, Tensor sos, Tensor zi, int padlen, int padtype) -> Tensor");
  // y, zf = scipy.signal.sosfilt(sos, x, zi=zi) per row; zi: (rows, n_sections, 2) float64.
  m.def("_sosfilt_kernel(Tensor x, Tensor sos, Tensor zi) -> (Tensor, Tensor)");
  // Instruction set the CPU kernels use (FASTECG_CPU_ISA may force a narrower one).
  m.def("_cpu_isa() -> str");
}

// An empty Python module, so that `import fastecg._C` loads the library and runs
// the registrations above (no pybind11: it would cost a heavy header per TU).
static struct PyModuleDef fastecg_c_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&fastecg_c_module); }
