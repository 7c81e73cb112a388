// CUDA kernel of fastecg::_normalize_kernel: one block per row, statistics in
// double (block reductions through shared memory), then one centred affine pass,
// ((x - center) - fine) * scale + offset, as the CPU kernel (csrc/cpu/normalize.cpp: a DC
// offset far above the record's spread keeps its digits; the mean is refined by the
// deviations' mean).
#include <cfloat>
#include <cmath>

#include "launchers.h"

namespace fastecg {
namespace {

constexpr int kThreads = 256;

__device__ double block_sum(double v, double* shared) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffff, v, offset);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = threadIdx.x < blockDim.x / 32 ? shared[lane] : 0.0;
  if (warp == 0)
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffff, v, offset);
  if (threadIdx.x == 0) shared[0] = v;
  __syncthreads();
  v = shared[0];
  __syncthreads();
  return v;
}

template <typename T>
__global__ void normalize_rows_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n,
                                      int method, double mean, double std, double eps,
                                      int64_t ddof) {
  __shared__ double shared[kThreads / 32];
  const T* xr = x + blockIdx.x * n;
  T* yr = y + blockIdx.x * n;
  double center = 0.0, fine = 0.0, scale = 1.0, offset = 0.0;  // (naive divides: below)
  if (method == kMinMax) {
    double lo = INFINITY, hi = -INFINITY, bad = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const double v = xr[i];
      bad += isfinite(v) ? 0.0 : 1.0;
      lo = fmin(lo, v);
      hi = fmax(hi, v);
    }
    // A record with NaN/Inf has no defined range: the whole record becomes NaN.
    __shared__ double los[kThreads], his[kThreads];
    los[threadIdx.x] = lo;
    his[threadIdx.x] = hi;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s) {
        los[threadIdx.x] = fmin(los[threadIdx.x], los[threadIdx.x + s]);
        his[threadIdx.x] = fmax(his[threadIdx.x], his[threadIdx.x + s]);
      }
      __syncthreads();
    }
    bad = block_sum(bad, shared);
    const double range = bad == 0.0 ? his[0] - los[0] + eps : NAN;
    center = los[0];
    scale = 1.0 / range;
  } else if (method != kNaive) {
    double sum = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum += xr[i];
    const double mu = block_sum(sum, shared) / n;
    double ds = 0.0, ss = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const double d = xr[i] - mu;
      ds += d;
      ss += d * d;
    }
    const double d_sum = block_sum(ds, shared);
    const double sigma = sqrt(fmax(block_sum(ss, shared) - d_sum * d_sum / n, 0.0) / (n - ddof));
    center = mu;
    fine = d_sum / n;
    scale = std / (sigma + eps);
    offset = mean;
  }
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    yr[i] = static_cast<T>(method == kNaive ? (xr[i] - mean) / std
                                            : ((xr[i] - center) - fine) * scale + offset);
}

}  // namespace

template <typename T>
cudaError_t normalize_forward_cuda(const T* x, T* y, int64_t rows, int64_t n, int method,
                                   double mean, double std, double eps, int64_t ddof,
                                   cudaStream_t stream) {
  if (rows == 0) return cudaSuccess;
  normalize_rows_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, y, n, method,
                                                                                 mean, std, eps, ddof);
  return cudaGetLastError();
}

template cudaError_t normalize_forward_cuda<float>(const float*, float*, int64_t, int64_t, int,
                                                   double, double, double, int64_t, cudaStream_t);
template cudaError_t normalize_forward_cuda<double>(const double*, double*, int64_t, int64_t, int,
                                                    double, double, double, int64_t, cudaStream_t);

}  // namespace fastecg
