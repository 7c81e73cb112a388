// CUDA kernels of one stage of fastecg::_median_filter_kernel, on order-preserving
// integer keys (csrc/common/median_keys.h), exact.
//
// median_tile_kernel (windows up to kMaxSorted - kTileOutputs + 1 samples): one thread
// block per (row, tile of kTileOutputs outputs), one thread per output. The block loads
// the tile's span of T + w - 1 extended samples into shared memory, bitonic-sorts it by
// (key, position), then every thread walks the sorted list counting the elements whose
// position lies in its own window until it reaches rank w / 2. All lanes of a warp read
// the same sorted element at each step (a shared-memory broadcast). Work per output:
// O(log^2(T + w)) for its share of the sort plus about (T + w) / 2 steps of the walk.
//
// median_select_kernel (longer windows): one thread per output, a bitwise radix select
// that re-reads the window once per key bit: O(key_bits * w) per output.
#include <cstdint>

#include "../common/median_keys.h"
#include "launchers.h"

namespace fastecg {
namespace {

constexpr int kThreads = 256;
constexpr int kTileOutputs = 256;  // outputs (and threads) per tile block
constexpr int kMaxSorted = 4096;   // sorted span: 4096 * (8 + 4) bytes = 48 KB of shared memory

// Source index (row position, or -1 for cval) of extended position q: the boundary
// rule, then the previous stage's selection when there is one.
__device__ __forceinline__ int64_t slot_source(const int64_t* src_row, int64_t q, int64_t n,
                                               int mode) {
  const int64_t j = map_index(q, n, mode);
  return j >= 0 && src_row ? src_row[j] : j;
}

template <typename T>
__device__ __forceinline__ void window_slot(const T* row, const int64_t* src_row, int64_t q,
                                            int64_t n, int mode, T cval, uint64_t& key,
                                            int64_t& src) {
  src = slot_source(src_row, q, n, mode);
  key = order_key(src >= 0 ? row[src] : cval);
}

template <typename T>
__global__ void median_select_kernel(const T* __restrict__ x, const int64_t* __restrict__ src_in,
                                    int64_t* __restrict__ sel, int64_t rows, int64_t n,
                                    int64_t start, int64_t size, int mode, T cval) {
  constexpr int kBits = 8 * sizeof(T);
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
    has_nan |= key == kNanKey<T>;
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
  const uint64_t target = has_nan ? kNanKey<T> : prefix;
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

// Ascending bitonic sort of (keys, pos) pairs in shared memory by (key, pos); len is a
// power of two. Each thread handles len / 2 / blockDim.x compare-exchanges per step.
__device__ void bitonic_sort(uint64_t* keys, int32_t* pos, int len) {
  for (int k = 2; k <= len; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int c = threadIdx.x; c < len / 2; c += blockDim.x) {
        const int a = 2 * c - (c & (j - 1)), b = a + j;
        const uint64_t ka = keys[a], kb = keys[b];
        const int32_t pa = pos[a], pb = pos[b];
        const bool a_after_b = ka > kb || (ka == kb && pa > pb);
        if (a_after_b == ((a & k) == 0)) {
          keys[a] = kb, keys[b] = ka;
          pos[a] = pb, pos[b] = pa;
        }
      }
      __syncthreads();
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kTileOutputs)
median_tile_kernel(const T* __restrict__ x, const int64_t* __restrict__ src_in,
                   int64_t* __restrict__ sel, int64_t n, int64_t tiles, int64_t start,
                   int size, int sorted_len, int mode, T cval) {
  extern __shared__ uint64_t keys[];
  int32_t* pos = reinterpret_cast<int32_t*>(keys + sorted_len);
  const int64_t r = blockIdx.x / tiles, t0 = (blockIdx.x % tiles) * kTileOutputs;
  const T* row = x + r * n;
  const int64_t* src_row = src_in ? src_in + r * n : nullptr;
  const int span = kTileOutputs + size - 1, i = threadIdx.x;
  bool nan_here = false;
  for (int p = i; p < sorted_len; p += blockDim.x) {
    uint64_t key = ~0ull;  // padding: sorts after every sample, lies in no window
    if (p < span) {
      int64_t src;
      window_slot(row, src_row, t0 + start + p, n, mode, cval, key, src);
      nan_here |= key == kNanKey<T>;
    }
    keys[p] = key;
    pos[p] = p;
  }
  // A window holding a NaN selects its first NaN (as the CPU kernel); found before the
  // sort, and only in tiles that hold one.
  int nan_slot = -1;
  if (__syncthreads_or(nan_here)) {
    for (int p = i; p < i + size && nan_slot < 0; ++p) nan_slot = keys[p] == kNanKey<T> ? p : -1;
  }
  __syncthreads();
  bitonic_sort(keys, pos, sorted_len);
  const bool active = t0 + i < n;
  const int rank = size / 2;
  int found = nan_slot, count = 0;
  for (int s = 0; s < span; ++s) {
    const int p = pos[s];
    if (found < 0 && static_cast<unsigned>(p - i) < static_cast<unsigned>(size)) {
      found = count == rank ? p : -1;
      ++count;
    }
    if ((s & 7) == 7 && __all_sync(0xffffffffu, found >= 0 || !active)) break;
  }
  if (active) sel[r * n + t0 + i] = slot_source(src_row, t0 + start + found, n, mode);
}

int next_pow2(int v) {
  int p = 1;
  while (p < v) p <<= 1;
  return p;
}

}  // namespace

template <typename T>
cudaError_t median_stage_cuda(const T* x, const int64_t* src_in, int64_t* sel, int64_t rows,
                              int64_t n, int64_t start, int64_t size, int mode, double cval,
                              cudaStream_t stream) {
  const int64_t total = rows * n;
  if (total == 0) return cudaSuccess;
  if (size <= kMaxSorted - kTileOutputs + 1) {
    const int sorted_len = next_pow2(kTileOutputs + static_cast<int>(size) - 1);
    const int64_t tiles = (n + kTileOutputs - 1) / kTileOutputs;
    const size_t shared = sorted_len * (sizeof(uint64_t) + sizeof(int32_t));
    median_tile_kernel<T><<<static_cast<unsigned>(rows * tiles), kTileOutputs, shared, stream>>>(
        x, src_in, sel, n, tiles, start, static_cast<int>(size), sorted_len, mode,
        static_cast<T>(cval));
  } else {
    const int64_t blocks = (total + kThreads - 1) / kThreads;
    median_select_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        x, src_in, sel, rows, n, start, size, mode, static_cast<T>(cval));
  }
  return cudaGetLastError();
}

template cudaError_t median_stage_cuda<float>(const float*, const int64_t*, int64_t*, int64_t,
                                              int64_t, int64_t, int64_t, int, double, cudaStream_t);
template cudaError_t median_stage_cuda<double>(const double*, const int64_t*, int64_t*, int64_t,
                                               int64_t, int64_t, int64_t, int, double,
                                               cudaStream_t);

}  // namespace fastecg
