// Raw-pointer launchers of the CUDA kernels. No torch headers here or in the .cu
// files, so `nvcc -c` compile-checks them on a machine without torch's CUDA build.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

#include "../common/codes.h"

namespace fastecg {

// x, y: (rows, n) contiguous; method: 0 z-score, 1 min-max, 2 naive.
template <typename T>
cudaError_t normalize_forward_cuda(const T* x, T* y, int64_t rows, int64_t n, int method,
                                   double mean, double std, double eps, int64_t ddof,
                                   cudaStream_t stream);

// One running-median stage: sel[r, i] = row index of the median of output i's window
// (-1: cval). Stage input j is x[r, src_in[r, j]] (src_in == nullptr: x[r, j]).
// Window of output i: extended positions [i + start, i + start + size); mode as in
// python/fastecg/ops/baseline.py.
template <typename T>
cudaError_t median_stage_cuda(const T* x, const int64_t* src_in, int64_t* sel, int64_t rows,
                              int64_t n, int64_t start, int64_t size, int mode, double cval,
                              cudaStream_t stream);

// Where a scan pass's output sample t of a row (of n) lands: u = t - crop, or
// (n - 1 - t) - crop when reversed, in rows of out_n; samples with u outside [0, out_n)
// are dropped. Lets sosfiltfilt reverse between its passes and crop the padding without
// copies.
struct OutputMap {
  bool reverse = false;
  int64_t crop = 0;
  int64_t out_n = 0;
};

// The scratch doubles the scans below need for (rows, n) and n_sections (for
// sosfiltfilt_scan_cuda, n is the extended length n + 2 pad).
int64_t sosfilt_scan_workspace(int64_t rows, int64_t n, int64_t n_sections);

// sosfilt of every row of x (rows, n) by the block scan along time (csrc/cuda/sosfilt.cu),
// float64 states, y rounded once to T. sos: (n_sections, 6) float64 with a0 == 1; zi, zf:
// (rows, n_sections, 2) float64; work: sosfilt_scan_workspace(rows, n, n_sections) doubles.
// All on the device.
template <typename T>
cudaError_t sosfilt_scan_cuda(const T* x, T* y, const double* zi, double* zf, const double* sos,
                              int64_t rows, int64_t n, int64_t n_sections, double* work,
                              cudaStream_t stream);

// scipy.signal.sosfiltfilt of every row of x (rows, n): SciPy's edge extension by `pad`
// a side (padtype 0 none, 1 odd, 2 even, 3 constant) built in T, both passes from zi
// (n_sections, 2) scaled by the pass's first sample, y (rows, n) rounded once to T. mid:
// (rows, n + 2 pad) float64 for the signal between the passes; work:
// sosfilt_scan_workspace(rows, n + 2 pad, n_sections) doubles.
template <typename T>
cudaError_t sosfiltfilt_scan_cuda(const T* x, T* y, double* mid, const double* zi,
                                  const double* sos, int64_t rows, int64_t n, int64_t pad,
                                  int padtype, int64_t n_sections, double* work,
                                  cudaStream_t stream);

// The transpose of sosfiltfilt_scan_cuda in g: E^T [B (F E0 g + c1 e_last) + c2 e_0], F and B
// the two passes from zero state over the extension, E0 g zero-extended by `pad` a side,
// edge (rows, 2) float64 = (c1, c2), the initial conditions' part (computed by the
// caller, python/fastecg/ops/sosfilt.py). xg (rows, n) in T; mid, back: (rows, n + 2 pad)
// float64; work: sosfilt_scan_workspace(rows, n + 2 pad, n_sections) doubles.
template <typename T>
cudaError_t sosfiltfilt_adjoint_scan_cuda(const T* g, T* xg, double* mid, double* back,
                                          const double* edge, const double* sos, int64_t rows,
                                          int64_t n, int64_t pad, int padtype,
                                          int64_t n_sections, double* work,
                                          cudaStream_t stream);

// y (rows, n_out) = the polyphase resampling of x (rows, n_in) (csrc/cuda/resample.cu):
// y[r, m] = sum_i xe[r, i] * taps[m * down + offset - up * i], xe = x extended with cval;
// taps: n_taps values of T. All contiguous, on the device.
template <typename T>
cudaError_t resample_poly_cuda(const T* x, T* y, const T* taps, int64_t rows, int64_t n_in,
                               int64_t n_out, int64_t up, int64_t down, int64_t offset,
                               int64_t n_taps, double cval, cudaStream_t stream);

}  // namespace fastecg
