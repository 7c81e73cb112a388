// CUDA kernel of fastecg::_resample_poly_kernel: the polyphase sum of csrc/cpu/resample.cpp,
//   y[r, m] = sum_i xe[r, i] * taps[m * down + offset - up * i],   xe = x extended with cval,
// one thread per output sample, reading only its phase's taps (taps[k], taps[k + up], ...).
// A block takes kThreads consecutive outputs of a row and walks the rows (grid y); when the
// block's input span and the taps fit in shared memory they are staged there (coalesced
// loads, each input sample read from DRAM once per block), else read through the read-only
// cache. Arithmetic in T, as the CPU kernel and SciPy.
#include <cstdint>

#include "launchers.h"

namespace fastecg {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kSharedBytes = 48 * 1024;  // without opting in to more per block
constexpr int64_t kMaxGridY = 65535;

__device__ __forceinline__ int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return q - ((a % b != 0) && ((a < 0) != (b < 0)));
}

template <typename T, bool kShared>
__global__ void resample_poly_kernel(const T* __restrict__ x, T* __restrict__ y,
                                     const T* __restrict__ taps, int64_t rows, int64_t n_in,
                                     int64_t n_out, int64_t up, int64_t down, int64_t offset,
                                     int64_t n_taps, T cval) {
  extern __shared__ unsigned char shared_bytes[];
  T* s_taps = reinterpret_cast<T*>(shared_bytes);
  T* s_x = s_taps + n_taps;
  const int64_t m0 = static_cast<int64_t>(blockIdx.x) * blockDim.x;
  const int64_t m1 = min(m0 + static_cast<int64_t>(blockDim.x), n_out);
  const int64_t i_lo = floor_div(m0 * down + offset - n_taps, up) + 1;
  const int64_t i_hi = floor_div((m1 - 1) * down + offset, up) + 1;
  if (kShared)
    for (int64_t t = threadIdx.x; t < n_taps; t += blockDim.x) s_taps[t] = taps[t];
  const int64_t m = m0 + threadIdx.x;
  const int64_t q = m * down + offset;
  const int64_t i_max = floor_div(q, up);
  const int64_t k0 = q - i_max * up;
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    const T* row = x + r * n_in;
    if (kShared) {
      __syncthreads();  // the previous row's reads are done
      for (int64_t t = threadIdx.x; t < i_hi - i_lo; t += blockDim.x) {
        const int64_t i = i_lo + t;
        s_x[t] = i >= 0 && i < n_in ? row[i] : cval;
      }
      __syncthreads();
    }
    if (m >= n_out) continue;
    T acc0 = 0, acc1 = 0;  // two chains: even and odd taps of the phase
    int64_t k = k0, i = i_max;
    for (; k + up < n_taps; k += 2 * up, i -= 2) {
      if (kShared) {
        acc0 += s_taps[k] * s_x[i - i_lo];
        acc1 += s_taps[k + up] * s_x[i - 1 - i_lo];
      } else {
        acc0 += __ldg(taps + k) * (i >= 0 && i < n_in ? __ldg(row + i) : cval);
        acc1 += __ldg(taps + k + up) * (i - 1 >= 0 && i - 1 < n_in ? __ldg(row + i - 1) : cval);
      }
    }
    if (k < n_taps)
      acc0 += kShared ? s_taps[k] * s_x[i - i_lo]
                      : __ldg(taps + k) * (i >= 0 && i < n_in ? __ldg(row + i) : cval);
    y[r * n_out + m] = acc0 + acc1;
  }
}

}  // namespace

template <typename T>
cudaError_t resample_poly_cuda(const T* x, T* y, const T* taps, int64_t rows, int64_t n_in,
                               int64_t n_out, int64_t up, int64_t down, int64_t offset,
                               int64_t n_taps, double cval, cudaStream_t stream) {
  if (rows == 0 || n_out == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>((n_out + kThreads - 1) / kThreads),
                  static_cast<unsigned>(rows < kMaxGridY ? rows : kMaxGridY));
  // The widest input span of a block: its first output's first input to its last's last.
  const int64_t span = ((kThreads - 1) * down + n_taps - 1) / up + 2;
  const int64_t shared = (n_taps + span) * static_cast<int64_t>(sizeof(T));
  if (shared <= kSharedBytes) {
    resample_poly_kernel<T, true><<<grid, kThreads, shared, stream>>>(
        x, y, taps, rows, n_in, n_out, up, down, offset, n_taps, static_cast<T>(cval));
  } else {
    resample_poly_kernel<T, false><<<grid, kThreads, 0, stream>>>(
        x, y, taps, rows, n_in, n_out, up, down, offset, n_taps, static_cast<T>(cval));
  }
  return cudaGetLastError();
}

template cudaError_t resample_poly_cuda<float>(const float*, float*, const float*, int64_t,
                                               int64_t, int64_t, int64_t, int64_t, int64_t,
                                               int64_t, double, cudaStream_t);
template cudaError_t resample_poly_cuda<double>(const double*, double*, const double*, int64_t,
                                                int64_t, int64_t, int64_t, int64_t, int64_t,
                                                int64_t, double, cudaStream_t);

}  // namespace fastecg
