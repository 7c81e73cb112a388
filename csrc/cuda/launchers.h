// Raw-pointer launchers of the CUDA kernels. No torch headers here or in the .cu
// files, so `nvcc -c` compile-checks them on a machine without torch's CUDA build.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace fastecg {

// x, y: (rows, n) contiguous; method: 0 z-score, 1 min-max, 2 naive.
template <typename T>
cudaError_t normalize_forward_cuda(const T* x, T* y, int64_t rows, int64_t n, int method,
                                   double mean, double std, cudaStream_t stream);

// One running-median stage: sel[r, i] = row index of the median of output i's window
// (-1: cval). Stage input j is x[r, src_in[r, j]] (src_in == nullptr: x[r, j]).
// Window of output i: extended positions [i + start, i + start + size); mode as in
// python/fastecg/ops/baseline.py.
template <typename T>
cudaError_t median_stage_cuda(const T* x, const int64_t* src_in, int64_t* sel, int64_t rows,
                              int64_t n, int64_t start, int64_t size, int mode, double cval,
                              cudaStream_t stream);

// The scratch doubles sosfilt_scan_cuda needs for (rows, n) and n_sections.
int64_t sosfilt_scan_workspace(int64_t rows, int64_t n, int64_t n_sections);

// Where the scan's output sample t of a row lands: u = t - crop, or (n - 1 - t) - crop
// when reversed; samples with u outside [0, out_n) are dropped (out_n < 0: n). Lets
// sosfiltfilt reverse between its passes and crop the padding without copies.
struct OutputMap {
  bool reverse = false;
  int64_t crop = 0;
  int64_t out_n = -1;
};

// sosfilt of every row by the block scan along time (csrc/cuda/sosfilt.cu). y: (rows, n)
// float64 holding the input on entry, overwritten; out: the result rounded once to T,
// placed by `map` ((rows, n) by default); sos: (n_sections, 6) with a0 == 1; zi, zf:
// (rows, n_sections, 2) float64; work: sosfilt_scan_workspace(...) doubles. All on the
// device.
template <typename T>
cudaError_t sosfilt_scan_cuda(double* y, T* out, const double* zi, double* zf,
                              const double* sos, int64_t rows, int64_t n, int64_t n_sections,
                              double* work, cudaStream_t stream, OutputMap map = {});

// SciPy's edge extension (padtype 0 none, 1 odd, 2 even, 3 constant) of x (rows, n),
// computed in T, written as float64 to ext (rows, n + 2 pad).
template <typename T>
cudaError_t extend_to_double_cuda(const T* x, double* ext, int64_t rows, int64_t n, int64_t pad,
                                  int padtype, cudaStream_t stream);

}  // namespace fastecg
