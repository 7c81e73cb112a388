// CUDA kernel of one stage of fastecg::_median_filter_kernel. One thread per output:
// a bitwise radix select on order-preserving integer keys finds the window's element
// of rank size/2 exactly (no sorting, no per-thread arrays); the window is re-read
// from L1/L2 once per key bit. Work O(key_bits * w) per output, all outputs parallel,
// so a GPU is busy even for one long recording.
#include <cstdint>

#include "../common/median_keys.h"
#include "launchers.h"

namespace fastecg {
namespace {

constexpr int kThreads = 256;

template <typename T>
__device__ __forceinline__ void window_slot(const T* row, const int64_t* src_row, int64_t q,
                                            int64_t n, int mode, T cval, uint64_t& key,
                                            int64_t& src) {
  int64_t j = map_index(q, n, mode);
  if (j >= 0 && src_row) j = src_row[j];
  src = j;
  key = order_key(j >= 0 ? row[j] : cval);
}

template <typename T>
__global__ void median_stage_kernel(const T* __restrict__ x, const int64_t* __restrict__ src_in,
                                    int64_t* __restrict__ sel, int64_t rows, int64_t n,
                                    int64_t start, int64_t size, int mode, T cval) {
  constexpr int kBits = 8 * sizeof(T);
  constexpr uint64_t kNanKey = kBits == 32 ? 0xFFFFFFFFull : ~0ull;
  const int64_t gid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (gid >= rows * n) return;
  const int64_t r = gid / n, i = gid % n;
  const T* row = x + r * n;
  const int64_t* src_row = src_in ? src_in + r * n : nullptr;
  const int64_t q0 = i + start;
  uint64_t key;
  int64_t src;
  bool has_nan = false;
  for (int64_t t = 0; t < size; ++t) {
    window_slot(row, src_row, q0 + t, n, mode, cval, key, src);
    has_nan |= key == kNanKey;
  }
  uint64_t prefix = 0;
  int64_t rank = size / 2;
  for (int bit = kBits - 1; bit >= 0 && !has_nan; --bit) {
    int64_t zeros = 0;
    for (int64_t t = 0; t < size; ++t) {
      window_slot(row, src_row, q0 + t, n, mode, cval, key, src);
      zeros += (key >> bit) == (prefix >> bit);
    }
    if (rank >= zeros) {
      rank -= zeros;
      prefix |= 1ull << bit;
    }
  }
  const uint64_t target = has_nan ? kNanKey : prefix;
  int64_t chosen = -1;
  for (int64_t t = 0; t < size; ++t) {
    window_slot(row, src_row, q0 + t, n, mode, cval, key, src);
    if (key == target) {
      chosen = src;
      break;
    }
  }
  sel[gid] = chosen;
}

}  // namespace

template <typename T>
cudaError_t median_stage_cuda(const T* x, const int64_t* src_in, int64_t* sel, int64_t rows,
                              int64_t n, int64_t start, int64_t size, int mode, double cval,
                              cudaStream_t stream) {
  const int64_t total = rows * n;
  if (total == 0) return cudaSuccess;
  const int64_t blocks = (total + kThreads - 1) / kThreads;
  median_stage_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      x, src_in, sel, rows, n, start, size, mode, static_cast<T>(cval));
  return cudaGetLastError();
}

template cudaError_t median_stage_cuda<float>(const float*, const int64_t*, int64_t*, int64_t,
                                              int64_t, int64_t, int64_t, int, double, cudaStream_t);
template cudaError_t median_stage_cuda<double>(const double*, const int64_t*, int64_t*, int64_t,
                                               int64_t, int64_t, int64_t, int, double,
                                               cudaStream_t);

}  // namespace fastecg
