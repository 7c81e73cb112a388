// CUDA kernels of fastecg::_sosfilt_kernel / _sosfiltfilt_kernel: the block scan along
// time of triton_kernels/sosfilt.py (its docstring has the maths), in three phases.
// A recurrence has only `rows` independent channels, so time is cut into blocks of L
// samples and the cascade is treated as one linear system of K = 2 * n_sections
// float64 states:
//   1. block_cascade_kernel: one thread per (row, block) filters its block from zero
//      state through every section with the states in registers, and keeps its final
//      state; each warp stages its 32 blocks through shared memory 32 samples at a
//      time, so that loads and stores are coalesced (block_filter_kernel: the same,
//      section after section, for cascades longer than kMaxCascade);
//   2. carry_scan_warp_kernel: one warp per row, lane j = state component j, scans the
//      blocks: s_in[b + 1] = A^L s_in[b] + s_zero[b], s_in[0] = zi (carry_scan_kernel:
//      one thread block per row, for more than 32 states);
//   3. add_carry_kernel: one thread per sample adds the zero-input response of its
//      block's incoming state, sum_i s_in[b][i] * zir[i][t - b L].
// A^L and zir are phase 1 itself (filter_blocks) run on zeros from the K unit states.
#include <algorithm>
#include <cstdint>

#include "../common/edge_extension.h"
#include "launchers.h"

namespace fastecg {
namespace {

constexpr int kLanes = 128;  // (row, block) lanes per thread block in phase 1
constexpr int kTile = 256;   // samples per thread block in phase 3
constexpr int kMaxCascade = 8;  // sections kept in registers by block_cascade_kernel
constexpr int kStageWarps = 4;  // warps per thread block of block_cascade_kernel
constexpr unsigned kFullWarp = 0xffffffffu;

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Filter each block of y (rows, n) in place, from state z0 (lanes, n_sections, 2)
// or zero (z0 == nullptr); final states to zf (lanes, n_sections, 2).
__global__ void block_filter_kernel(double* __restrict__ y, const double* __restrict__ z0,
                                    double* __restrict__ zf, const double* __restrict__ sos,
                                    int64_t n_lanes, int64_t n, int64_t n_blocks,
                                    int64_t n_sections, int64_t block) {
  const int64_t lane = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (lane >= n_lanes) return;
  const int64_t start = (lane % n_blocks) * block;
  const int64_t length = min(n - start, block);
  double* y_lane = y + (lane / n_blocks) * n + start;
  // Section after section over the whole block: two scalar states per thread. A
  // thread reads back only what it wrote itself, so no barrier is needed.
  for (int64_t s = 0; s < n_sections; ++s) {
    const double* c = sos + 6 * s;
    const double b0 = c[0], b1 = c[1], b2 = c[2], a1 = c[4], a2 = c[5];
    const int64_t z_lane = (lane * n_sections + s) * 2;
    double z1 = z0 ? z0[z_lane] : 0.0;
    double z2 = z0 ? z0[z_lane + 1] : 0.0;
    for (int64_t t = 0; t < length; ++t) {
      const double v = y_lane[t];
      const double out = b0 * v + z1;
      z1 = b1 * v - a1 * out + z2;
      z2 = b2 * v - a2 * out;
      y_lane[t] = out;
    }
    zf[z_lane] = z1;
    zf[z_lane + 1] = z2;
  }
}

template <int S>
__global__ void __launch_bounds__(32 * kStageWarps)
block_cascade_kernel(double* __restrict__ y, const double* __restrict__ z0,
                     double* __restrict__ zf, const double* __restrict__ sos, int64_t n_lanes,
                     int64_t n, int64_t n_blocks, int64_t block) {
  __shared__ double tile[kStageWarps][32][33];  // [block of the warp][sample], padded
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  const int64_t lane = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool live = lane < n_lanes;  // dead lanes still shuffle: every warp stays full
  const int64_t start = (lane % n_blocks) * block;
  const int64_t length = live ? min(n - start, block) : 0;
  const int64_t base = (lane / n_blocks) * n + start;
  double b0[S], b1[S], b2[S], a1[S], a2[S], z1[S], z2[S];
#pragma unroll
  for (int s = 0; s < S; ++s) {
    b0[s] = sos[6 * s], b1[s] = sos[6 * s + 1], b2[s] = sos[6 * s + 2];
    a1[s] = sos[6 * s + 4], a2[s] = sos[6 * s + 5];
    const int64_t z_lane = (lane * S + s) * 2;
    z1[s] = live && z0 ? z0[z_lane] : 0.0;
    z2[s] = live && z0 ? z0[z_lane + 1] : 0.0;
  }
  int64_t warp_length = length;
  for (int d = 16; d > 0; d >>= 1)
    warp_length = max(warp_length, __shfl_xor_sync(kFullWarp, warp_length, d));
  for (int64_t t0 = 0; t0 < warp_length; t0 += 32) {
    for (int k = 0; k < 32; ++k) {  // lane l moves sample t0 + l of block k
      const int64_t base_k = __shfl_sync(kFullWarp, base, k);
      const int64_t length_k = __shfl_sync(kFullWarp, length, k);
      tile[w][k][l] = t0 + l < length_k ? y[base_k + t0 + l] : 0.0;
    }
    __syncwarp();
    const int64_t m = length - t0 < 32 ? length - t0 : 32;
    for (int j = 0; j < m; ++j) {
      double v = tile[w][l][j];
#pragma unroll
      for (int s = 0; s < S; ++s) {
        const double out = b0[s] * v + z1[s];
        z1[s] = b1[s] * v - a1[s] * out + z2[s];
        z2[s] = b2[s] * v - a2[s] * out;
        v = out;
      }
      tile[w][l][j] = v;
    }
    __syncwarp();
    for (int k = 0; k < 32; ++k) {
      const int64_t base_k = __shfl_sync(kFullWarp, base, k);
      const int64_t length_k = __shfl_sync(kFullWarp, length, k);
      if (t0 + l < length_k) y[base_k + t0 + l] = tile[w][k][l];
    }
    __syncwarp();
  }
  if (!live) return;
#pragma unroll
  for (int s = 0; s < S; ++s) {
    zf[(lane * S + s) * 2] = z1[s];
    zf[(lane * S + s) * 2 + 1] = z2[s];
  }
}

// One warp per row, lane j < K holds state component j; (A^L s)[j] = sum_i power[i * K +
// j] * s[i] with s[i] shuffled from lane i. The zero-state finals are read 8 blocks ahead.
__global__ void carry_scan_warp_kernel(const double* __restrict__ zi,
                                       const double* __restrict__ zero,
                                       const double* __restrict__ power,
                                       const double* __restrict__ power_last,
                                       double* __restrict__ s_in, double* __restrict__ zf,
                                       int64_t rows, int64_t n_blocks, int K) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (row >= rows) return;  // uniform over the warp
  const int j = threadIdx.x % 32;
  const bool on = j < K;
  double column[32];
#pragma unroll
  for (int i = 0; i < 32; ++i) column[i] = on && i < K ? power[i * K + j] : 0.0;
  const double* zero_row = zero + row * n_blocks * K;
  double* s_row = s_in + row * n_blocks * K;
  double state = on ? zi[row * K + j] : 0.0;
  for (int64_t b0 = 0; b0 < n_blocks; b0 += 8) {
    double ahead[8];
#pragma unroll
    for (int u = 0; u < 8; ++u)
      ahead[u] = on && b0 + u < n_blocks ? zero_row[(b0 + u) * K + j] : 0.0;
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      const int64_t b = b0 + u;
      if (b >= n_blocks) break;
      if (b + 1 == n_blocks && power_last != power) {
#pragma unroll
        for (int i = 0; i < 32; ++i) column[i] = on && i < K ? power_last[i * K + j] : 0.0;
      }
      double next = ahead[u];
#pragma unroll
      for (int i = 0; i < 32; ++i) {
        if (i < K) next += column[i] * __shfl_sync(kFullWarp, state, i);
      }
      if (on) s_row[b * K + j] = state;
      state = next;
    }
  }
  if (on) zf[row * K + j] = state;
}

// One thread block per row, thread j = state component j (blockDim.x == K). s_in
// (rows, n_blocks, K), zf (rows, K); power[i * K + j] = (A^L e_i)[j] (power_last: the
// last block's length), so (A^L s)[j] = sum_i power[i * K + j] * s[i].
__global__ void carry_scan_kernel(const double* __restrict__ zi, const double* __restrict__ zero,
                                  const double* __restrict__ power,
                                  const double* __restrict__ power_last,
                                  double* __restrict__ s_in, double* __restrict__ zf,
                                  int64_t n_blocks, int K) {
  extern __shared__ double state[];
  const int64_t row = blockIdx.x;
  const int j = threadIdx.x;
  const int64_t blocks = row * n_blocks * K;
  state[j] = zi[row * K + j];
  __syncthreads();
  for (int64_t b = 0; b < n_blocks; ++b) {
    const double* p = b + 1 < n_blocks ? power : power_last;
    double next = zero[blocks + b * K + j];
    for (int i = 0; i < K; ++i) next += p[i * K + j] * state[i];
    s_in[blocks + b * K + j] = state[j];
    __syncthreads();  // every thread has read the old state
    state[j] = next;
    __syncthreads();
  }
  zf[row * K + j] = state[j];
}

// out[r, u] = y[r, t] + sum_i s_in[r, b, i] * zir[i, t - b L] (b = t / L), rounded once
// to T, where u = t - crop, or (n - 1 - t) - crop when reversed; only 0 <= u < out_n is
// written (out has rows of out_n). y (rows, n) float64, zir (K, L) float64.
template <typename T>
__global__ void add_carry_kernel(const double* __restrict__ y, const double* __restrict__ s_in,
                                 const double* __restrict__ zir, T* __restrict__ out,
                                 int64_t total, int64_t n, int64_t n_blocks, int64_t block,
                                 int K, OutputMap map) {
  const int64_t gid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (gid >= total) return;
  const int64_t row = gid / n, t = gid % n, b = t / block, j = t - b * block;
  const int64_t u = (map.reverse ? n - 1 - t : t) - map.crop;
  if (u < 0 || u >= map.out_n) return;
  const double* s = s_in + (row * n_blocks + b) * K;
  double acc = y[gid];
  for (int i = 0; i < K; ++i) acc += s[i] * zir[i * block + j];
  out[row * map.out_n + u] = static_cast<T>(acc);
}

// SciPy's edge extension of each row (padtype 0 none, 1 odd, 2 even, 3 constant), built
// in T as SciPy builds it in the input's dtype, then widened: ext (rows, n + 2 pad).
template <typename T>
__global__ void extend_kernel(const T* __restrict__ x, double* __restrict__ ext, int64_t rows,
                              int64_t n, int64_t pad, int padtype) {
  const int64_t width = n + 2 * pad;
  const int64_t gid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (gid >= rows * width) return;
  const T* row = x + gid / width * n;
  const int64_t j = gid % width - pad;
  T v;
  if (j >= 0 && j < n) {
    v = row[j];
  } else {
    const T edge = j < 0 ? row[0] : row[n - 1];
    const T mirrored = j < 0 ? row[-j] : row[2 * (n - 1) - j];
    v = extension_value(edge, mirrored, padtype);
  }
  ext[gid] = static_cast<double>(v);
}

__global__ void unit_states_kernel(double* unit, int K) {
  for (int idx = threadIdx.x; idx < K * K; idx += blockDim.x) unit[idx] = idx / K == idx % K;
}

template <int S>
void launch_cascade(double* y, const double* z0, double* zf, const double* sos, int64_t n_lanes,
                    int64_t n, int64_t n_blocks, int64_t block, cudaStream_t stream) {
  constexpr int threads = 32 * kStageWarps;
  block_cascade_kernel<S><<<static_cast<unsigned>(cdiv(n_lanes, threads)), threads, 0, stream>>>(
      y, z0, zf, sos, n_lanes, n, n_blocks, block);
}

void filter_blocks(double* y, const double* z0, double* zf, const double* sos, int64_t rows,
                   int64_t n, int64_t block, int64_t n_sections, cudaStream_t stream) {
  const int64_t n_blocks = cdiv(n, block), n_lanes = rows * n_blocks;
  switch (n_sections) {
    case 1: return launch_cascade<1>(y, z0, zf, sos, n_lanes, n, n_blocks, block, stream);
    case 2: return launch_cascade<2>(y, z0, zf, sos, n_lanes, n, n_blocks, block, stream);
    case 3: return launch_cascade<3>(y, z0, zf, sos, n_lanes, n, n_blocks, block, stream);
    case 4: return launch_cascade<4>(y, z0, zf, sos, n_lanes, n, n_blocks, block, stream);
    case 5: return launch_cascade<5>(y, z0, zf, sos, n_lanes, n, n_blocks, block, stream);
    case 6: return launch_cascade<6>(y, z0, zf, sos, n_lanes, n, n_blocks, block, stream);
    case 7: return launch_cascade<7>(y, z0, zf, sos, n_lanes, n, n_blocks, block, stream);
    case 8: return launch_cascade<8>(y, z0, zf, sos, n_lanes, n, n_blocks, block, stream);
    default:
      static_assert(kMaxCascade == 8, "one case per cascade length");
      block_filter_kernel<<<static_cast<unsigned>(cdiv(n_lanes, kLanes)), kLanes, 0, stream>>>(
          y, z0, zf, sos, n_lanes, n, n_blocks, n_sections, block);
  }
}

// Samples per block: the longest power of two from 64 to 2048 (fewest carry steps) that
// still leaves 64k (row, block) lanes.
int64_t scan_block(int64_t rows, int64_t n) {
  int64_t block = 64;
  while (block < 2048 && rows * cdiv(n, 2 * block) >= 65536) block *= 2;
  return block;
}

}  // namespace

int64_t sosfilt_scan_workspace(int64_t rows, int64_t n, int64_t n_sections) {
  const int64_t L = std::max<int64_t>(1, std::min(scan_block(rows, n), n)), K = 2 * n_sections;
  // zir and the last block's basis scratch (K * L each), unit states, A^L and A^last
  // (K * K each), zero-state final and incoming states (rows * n_blocks * K each).
  return 2 * K * L + 3 * K * K + 2 * rows * cdiv(n, L) * K;
}

template <typename T>
cudaError_t sosfilt_scan_cuda(double* y, T* out, const double* zi, double* zf,
                              const double* sos, int64_t rows, int64_t n, int64_t n_sections,
                              double* work, cudaStream_t stream, OutputMap map) {
  if (rows == 0 || n == 0) return cudaSuccess;
  const int64_t L = std::min(scan_block(rows, n), n), K = 2 * n_sections, n_blocks = cdiv(n, L);
  const int64_t last = n - (n_blocks - 1) * L;
  double* zir = work;
  double* scratch = zir + K * L;
  double* unit = scratch + K * L;
  double* power = unit + K * K;
  double* power_last = power + K * K;
  double* zero = power_last + K * K;
  double* s_in = zero + rows * n_blocks * K;
  // The bases: zeros filtered from each unit state (one "row" per state, one block).
  unit_states_kernel<<<1, 256, 0, stream>>>(unit, static_cast<int>(K));
  cudaMemsetAsync(zir, 0, sizeof(double) * K * L, stream);
  filter_blocks(zir, unit, power, sos, K, L, L, n_sections, stream);
  if (last != L) {
    cudaMemsetAsync(scratch, 0, sizeof(double) * K * last, stream);
    filter_blocks(scratch, unit, power_last, sos, K, last, last, n_sections, stream);
  } else {
    power_last = power;
  }
  filter_blocks(y, nullptr, zero, sos, rows, n, L, n_sections, stream);
  if (K <= 32) {
    constexpr int warps = 4;
    carry_scan_warp_kernel<<<static_cast<unsigned>(cdiv(rows, warps)), 32 * warps, 0, stream>>>(
        zi, zero, power, power_last, s_in, zf, rows, n_blocks, static_cast<int>(K));
  } else {
    carry_scan_kernel<<<static_cast<unsigned>(rows), static_cast<unsigned>(K),
                        sizeof(double) * K, stream>>>(zi, zero, power, power_last, s_in, zf,
                                                      n_blocks, static_cast<int>(K));
  }
  if (map.out_n < 0) map.out_n = n;
  add_carry_kernel<T><<<static_cast<unsigned>(cdiv(rows * n, kTile)), kTile, 0, stream>>>(
      y, s_in, zir, out, rows * n, n, n_blocks, L, static_cast<int>(K), map);
  return cudaGetLastError();
}

template <typename T>
cudaError_t extend_to_double_cuda(const T* x, double* ext, int64_t rows, int64_t n, int64_t pad,
                                  int padtype, cudaStream_t stream) {
  const int64_t total = rows * (n + 2 * pad);
  if (total == 0) return cudaSuccess;
  extend_kernel<T><<<static_cast<unsigned>(cdiv(total, kTile)), kTile, 0, stream>>>(
      x, ext, rows, n, pad, padtype);
  return cudaGetLastError();
}

template cudaError_t extend_to_double_cuda<float>(const float*, double*, int64_t, int64_t,
                                                  int64_t, int, cudaStream_t);
template cudaError_t extend_to_double_cuda<double>(const double*, double*, int64_t, int64_t,
                                                   int64_t, int, cudaStream_t);

template cudaError_t sosfilt_scan_cuda<float>(double*, float*, const double*, double*,
                                              const double*, int64_t, int64_t, int64_t,
                                              double*, cudaStream_t, OutputMap);
template cudaError_t sosfilt_scan_cuda<double>(double*, double*, const double*, double*,
                                               const double*, int64_t, int64_t, int64_t,
                                               double*, cudaStream_t, OutputMap);

}  // namespace fastecg
