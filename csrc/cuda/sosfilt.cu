// CUDA kernels of fastecg::_sosfilt_kernel / _sosfiltfilt_kernel: the block scan along
// time of triton_kernels/sosfilt.py (its docstring has the maths), with the input read
// twice instead of intermediates stored. A recurrence has only `rows` independent
// channels, so time is cut into blocks of L samples and a cascade of up to kMaxCascade
// sections is treated as one linear system of K = 2 * n_sections float64 states:
//   1. cascade_kernel<.., kFinals = true>: one thread per (row, block) filters its block
//      from zero state with every section's states in registers and keeps only its
//      final state; each warp stages its 32 blocks through shared memory 32 samples at
//      a time, so that loads are coalesced;
//   2. carry_scan_warp_kernel: one warp per row, lane j = state component j, scans the
//      blocks: s_in[b + 1] = A^L s_in[b] + s_zero[b], s_in[0] = zi;
//   3. cascade_kernel<.., kFinals = false>: each (row, block) filters its block again,
//      now from its true incoming state s_in[b], and writes the output (rounded once,
//      placed by an OutputMap: reversed and cropped for sosfiltfilt).
// A^L is phase 1 run on zeros from the K unit states. Per pass this moves the input
// twice and the output once (the previous version stored float64 blocks and added the
// carries' zero-input responses in a third kernel: about 3x the bytes). Longer cascades
// run as consecutive groups of kMaxCascade sections through a float64 row buffer, each
// group with its rows of zi (a cascade is the composition of its sections).
#include <algorithm>
#include <cstdint>

#include "../common/edge_extension.h"
#include "launchers.h"

namespace fastecg {
namespace {

constexpr int kTile = 256;      // threads per block of the small elementwise kernels
constexpr int kMaxCascade = 8;  // sections kept in registers by cascade_kernel
constexpr int kStageWarps = 4;  // warps per thread block of cascade_kernel
constexpr unsigned kFullWarp = 0xffffffffu;

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Inputs of a pass: sample t of row r, widened to float64.
struct ZerosIn {  // the bases: zeros filtered from the unit states
  __device__ double operator()(int64_t, int64_t) const { return 0.0; }
};
template <typename T>
struct RowsIn {  // (rows, n) contiguous
  const T* x;
  int64_t n;
  __device__ double operator()(int64_t r, int64_t t) const { return double(x[r * n + t]); }
};
template <typename T>
struct ExtendedIn {  // SciPy's edge extension of x (rows, n), built in T as SciPy does
  const T* x;
  int64_t n, pad, padtype;
  __device__ double operator()(int64_t r, int64_t p) const {
    const T* row = x + r * n;
    const int64_t j = p - pad;
    if (j >= 0 && j < n) return double(row[j]);
    const T edge = j < 0 ? row[0] : row[n - 1];
    const T mirrored = j < 0 ? row[-j] : row[2 * (n - 1) - j];
    return double(extension_value(edge, mirrored, padtype));
  }
};

// Output of a pass: sample t of row r (of n) lands at u = t - crop, or (n - 1 - t) - crop
// when reversed, in rows of out_n; samples outside [0, out_n) are dropped.
template <typename T>
struct RowsOut {
  T* y;
  int64_t n;
  OutputMap map;
  __device__ void operator()(int64_t r, int64_t t, double v) const {
    const int64_t u = (map.reverse ? n - 1 - t : t) - map.crop;
    if (u >= 0 && u < map.out_n) y[r * map.out_n + u] = static_cast<T>(v);
  }
};
struct NoOut {};  // phase 1 writes only final states

// One thread per (row, block) lane: filter the block through S sections from the state
// z0[lane] (nullptr: zero); kFinals: keep the final states in zf[lane], else write the
// outputs. States (lanes, S, 2).
template <int S, bool kFinals, class In, class Out>
__global__ void __launch_bounds__(32 * kStageWarps)
cascade_kernel(In in, Out out, const double* __restrict__ z0, double* __restrict__ zf,
               const double* __restrict__ sos, int64_t n_lanes, int64_t n, int64_t n_blocks,
               int64_t block) {
  __shared__ double tile[kStageWarps][32][33];  // [block of the warp][sample], padded
  const int w = threadIdx.x / 32, l = threadIdx.x % 32;
  const int64_t lane = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool live = lane < n_lanes;  // dead lanes still shuffle: every warp stays full
  const int64_t row = live ? lane / n_blocks : 0;
  const int64_t start = (lane % n_blocks) * block;
  const int64_t length = live ? min(n - start, block) : 0;
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
      const int64_t row_k = __shfl_sync(kFullWarp, row, k);
      const int64_t start_k = __shfl_sync(kFullWarp, start, k);
      const int64_t length_k = __shfl_sync(kFullWarp, length, k);
      tile[w][k][l] = t0 + l < length_k ? in(row_k, start_k + t0 + l) : 0.0;
    }
    __syncwarp();
    const int64_t m = length - t0 < 32 ? length - t0 : 32;
    for (int j = 0; j < m; ++j) {
      double v = tile[w][l][j];
#pragma unroll
      for (int s = 0; s < S; ++s) {
        const double o = b0[s] * v + z1[s];
        z1[s] = b1[s] * v - a1[s] * o + z2[s];
        z2[s] = b2[s] * v - a2[s] * o;
        v = o;
      }
      if constexpr (!kFinals) tile[w][l][j] = v;
    }
    __syncwarp();
    if constexpr (!kFinals) {
      for (int k = 0; k < 32; ++k) {
        const int64_t row_k = __shfl_sync(kFullWarp, row, k);
        const int64_t start_k = __shfl_sync(kFullWarp, start, k);
        const int64_t length_k = __shfl_sync(kFullWarp, length, k);
        if (t0 + l < length_k) out(row_k, start_k + t0 + l, tile[w][k][l]);
      }
      __syncwarp();
    }
  }
  if constexpr (kFinals) {
    if (!live) return;
#pragma unroll
    for (int s = 0; s < S; ++s) {
      zf[(lane * S + s) * 2] = z1[s];
      zf[(lane * S + s) * 2 + 1] = z2[s];
    }
  }
}

// One warp per row, lane j < K holds state component j; (A^L s)[j] = sum_i power[i * K +
// j] * s[i] with s[i] shuffled from lane i. zi and zf rows are `stride` apart (a group's
// states inside the whole cascade's). The zero-state finals are read 8 blocks ahead.
__global__ void carry_scan_warp_kernel(const double* __restrict__ zi,
                                       const double* __restrict__ zero,
                                       const double* __restrict__ power,
                                       const double* __restrict__ power_last,
                                       double* __restrict__ s_in, double* __restrict__ zf,
                                       int64_t stride, int64_t rows, int64_t n_blocks, int K) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (row >= rows) return;  // uniform over the warp
  const int j = threadIdx.x % 32;
  const bool on = j < K;
  double column[2 * kMaxCascade];
#pragma unroll
  for (int i = 0; i < 2 * kMaxCascade; ++i) column[i] = on && i < K ? power[i * K + j] : 0.0;
  const double* zero_row = zero + row * n_blocks * K;
  double* s_row = s_in + row * n_blocks * K;
  double state = on ? zi[row * stride + j] : 0.0;
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
        for (int i = 0; i < 2 * kMaxCascade; ++i)
          column[i] = on && i < K ? power_last[i * K + j] : 0.0;
      }
      double next = ahead[u];
#pragma unroll
      for (int i = 0; i < 2 * kMaxCascade; ++i) {
        if (i < K) next += column[i] * __shfl_sync(kFullWarp, state, i);
      }
      if (on) s_row[b * K + j] = state;
      state = next;
    }
  }
  if (on) zf[row * stride + j] = state;
}

// zi_rows[r, j] = zi[j] * in(r, 0): sosfilt_zi scaled by each row's first input sample.
template <class In>
__global__ void scaled_states_kernel(In in, const double* __restrict__ zi,
                                     double* __restrict__ zi_rows, int64_t rows, int64_t K) {
  const int64_t gid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (gid < rows * K) zi_rows[gid] = zi[gid % K] * in(gid / K, 0);
}

__global__ void unit_states_kernel(double* unit, int K) {
  for (int idx = threadIdx.x; idx < K * K; idx += blockDim.x) unit[idx] = idx / K == idx % K;
}

template <int S, bool kFinals, class In, class Out>
void launch_cascade(In in, Out out, const double* z0, double* zf, const double* sos,
                    int64_t rows, int64_t n, int64_t block, cudaStream_t stream) {
  constexpr int threads = 32 * kStageWarps;
  const int64_t n_blocks = cdiv(n, block), n_lanes = rows * n_blocks;
  cascade_kernel<S, kFinals><<<static_cast<unsigned>(cdiv(n_lanes, threads)), threads, 0,
                               stream>>>(in, out, z0, zf, sos, n_lanes, n, n_blocks, block);
}

template <bool kFinals, class In, class Out>
void cascade(In in, Out out, const double* z0, double* zf, const double* sos, int64_t rows,
             int64_t n, int64_t block, int64_t n_sections, cudaStream_t stream) {
  static_assert(kMaxCascade == 8, "one case per cascade length");
  switch (n_sections) {
#define FASTECG_CASCADE(S) \
  case S: return launch_cascade<S, kFinals>(in, out, z0, zf, sos, rows, n, block, stream);
    FASTECG_CASCADE(1) FASTECG_CASCADE(2) FASTECG_CASCADE(3) FASTECG_CASCADE(4)
    FASTECG_CASCADE(5) FASTECG_CASCADE(6) FASTECG_CASCADE(7) FASTECG_CASCADE(8)
#undef FASTECG_CASCADE
  }
}

// Samples per block: the longest power of two from 64 to 2048 (fewest carry steps) that
// still leaves 64k (row, block) lanes.
int64_t scan_block(int64_t rows, int64_t n) {
  int64_t block = 64;
  while (block < 2048 && rows * cdiv(n, 2 * block) >= 65536) block *= 2;
  return block;
}

// Scratch of one group's scan, carved from the workspace.
struct GroupWork {
  double *unit, *power, *power_last, *zero, *s_in;
};

GroupWork carve(double* work, int64_t rows, int64_t n_blocks, int64_t K) {
  const int64_t KK = 2 * kMaxCascade * 2 * kMaxCascade;
  return {work, work + KK, work + 2 * KK, work + 3 * KK, work + 3 * KK + rows * n_blocks * K};
}

// sosfilt of rows through S <= kMaxCascade sections (sos) from the states zi[r * stride..]
// (final states to zf, same layout): the three phases.
template <class In, class Out>
void scan_group(In in, Out out, const double* zi, double* zf, int64_t stride, const double* sos,
                int64_t rows, int64_t n, int64_t S, double* work, cudaStream_t stream) {
  const int64_t L = std::min(scan_block(rows, n), n), K = 2 * S, n_blocks = cdiv(n, L);
  const int64_t last = n - (n_blocks - 1) * L;
  GroupWork g = carve(work, rows, n_blocks, K);
  // The bases: zeros filtered from each unit state (one "row" per state, one block).
  unit_states_kernel<<<1, 256, 0, stream>>>(g.unit, static_cast<int>(K));
  cascade<true>(ZerosIn{}, NoOut{}, g.unit, g.power, sos, K, L, L, S, stream);
  if (last != L)
    cascade<true>(ZerosIn{}, NoOut{}, g.unit, g.power_last, sos, K, last, last, S, stream);
  else
    g.power_last = g.power;
  cascade<true>(in, NoOut{}, nullptr, g.zero, sos, rows, n, L, S, stream);
  constexpr int warps = 4;
  carry_scan_warp_kernel<<<static_cast<unsigned>(cdiv(rows, warps)), 32 * warps, 0, stream>>>(
      zi, g.zero, g.power, g.power_last, g.s_in, zf, stride, rows, n_blocks, static_cast<int>(K));
  cascade<false>(in, out, g.s_in, nullptr, sos, rows, n, L, S, stream);
}

int64_t group_workspace(int64_t rows, int64_t n) {
  const int64_t L = std::max<int64_t>(1, std::min(scan_block(rows, n), n));
  const int64_t KK = 2 * kMaxCascade * 2 * kMaxCascade;
  return 3 * KK + 2 * rows * cdiv(n, L) * 2 * kMaxCascade;
}

// sosfilt of every row through all n_sections: one group, or groups of kMaxCascade chained
// through a float64 row buffer (the first reads `in`, the last writes `out`).
template <class In, class Out>
void scan_pass(In in, Out out, const double* zi, double* zf, const double* sos, int64_t rows,
               int64_t n, int64_t n_sections, double* work, cudaStream_t stream) {
  const int64_t K = 2 * n_sections;
  if (n_sections <= kMaxCascade)
    return scan_group(in, out, zi, zf, K, sos, rows, n, n_sections, work, stream);
  double* mid = work + group_workspace(rows, n);
  const RowsIn<double> mid_in{mid, n};
  const RowsOut<double> mid_out{mid, n, {false, 0, n}};
  scan_group(in, mid_out, zi, zf, K, sos, rows, n, kMaxCascade, work, stream);
  int64_t s = kMaxCascade;
  for (; n_sections - s > kMaxCascade; s += kMaxCascade)
    scan_group(mid_in, mid_out, zi + 2 * s, zf + 2 * s, K, sos + 6 * s, rows, n, kMaxCascade,
               work, stream);
  scan_group(mid_in, out, zi + 2 * s, zf + 2 * s, K, sos + 6 * s, rows, n, n_sections - s, work,
             stream);
}

}  // namespace

int64_t sosfilt_scan_workspace(int64_t rows, int64_t n, int64_t n_sections) {
  const int64_t K = 2 * n_sections;
  // A group's bases and carries; the chain's row buffer; sosfiltfilt's scaled initial
  // states and (unused) final states.
  return group_workspace(rows, n) + (n_sections > kMaxCascade ? rows * n : 0) + 2 * rows * K;
}

template <typename T>
cudaError_t sosfilt_scan_cuda(const T* x, T* y, const double* zi, double* zf, const double* sos,
                              int64_t rows, int64_t n, int64_t n_sections, double* work,
                              cudaStream_t stream) {
  if (rows == 0 || n == 0) return cudaSuccess;
  scan_pass(RowsIn<T>{x, n}, RowsOut<T>{y, n, {false, 0, n}}, zi, zf, sos, rows, n, n_sections,
            work, stream);
  return cudaGetLastError();
}

template <typename T>
cudaError_t sosfiltfilt_scan_cuda(const T* x, T* y, double* mid, const double* zi,
                                  const double* sos, int64_t rows, int64_t n, int64_t pad,
                                  int padtype, int64_t n_sections, double* work,
                                  cudaStream_t stream) {
  if (rows == 0 || n == 0) return cudaSuccess;
  const int64_t width = n + 2 * pad, K = 2 * n_sections;
  double* zi_rows = work + sosfilt_scan_workspace(rows, width, n_sections) - 2 * rows * K;
  double* zf_rows = zi_rows + rows * K;
  const unsigned grid = static_cast<unsigned>(cdiv(rows * K, kTile));
  // Forward over the extension (built on the fly), written time-reversed; then forward
  // over that, written reversed again and cropped: y in x's dtype, rounded once.
  const ExtendedIn<T> ext{x, n, pad, padtype};
  scaled_states_kernel<<<grid, kTile, 0, stream>>>(ext, zi, zi_rows, rows, K);
  scan_pass(ext, RowsOut<double>{mid, width, {true, 0, width}}, zi_rows, zf_rows, sos, rows,
            width, n_sections, work, stream);
  const RowsIn<double> back{mid, width};
  scaled_states_kernel<<<grid, kTile, 0, stream>>>(back, zi, zi_rows, rows, K);
  scan_pass(back, RowsOut<T>{y, width, {true, pad, n}}, zi_rows, zf_rows, sos, rows, width,
            n_sections, work, stream);
  return cudaGetLastError();
}

template cudaError_t sosfilt_scan_cuda<float>(const float*, float*, const double*, double*,
                                              const double*, int64_t, int64_t, int64_t, double*,
                                              cudaStream_t);
template cudaError_t sosfilt_scan_cuda<double>(const double*, double*, const double*, double*,
                                               const double*, int64_t, int64_t, int64_t,
                                               double*, cudaStream_t);
template cudaError_t sosfiltfilt_scan_cuda<float>(const float*, float*, double*, const double*,
                                                  const double*, int64_t, int64_t, int64_t, int,
                                                  int64_t, double*, cudaStream_t);
template cudaError_t sosfiltfilt_scan_cuda<double>(const double*, double*, double*,
                                                   const double*, const double*, int64_t,
                                                   int64_t, int64_t, int, int64_t, double*,
                                                   cudaStream_t);

}  // namespace fastecg
