// CUDA kernels of fastecg::_sosfilt_kernel / _sosfiltfilt_kernel: the block scan along
// time of triton_kernels/sosfilt.py (its docstring has the maths), with the input read
// twice instead of intermediates stored. A recurrence has only `rows` independent
// channels, so time is cut into blocks of L samples and a cascade of up to kMaxCascade
// sections is treated as one linear system of K = 2 * n_sections float64 states:
//   1. cascade_kernel<.., kFinals = true>: one thread per (row, block) filters its block
//      from zero state with every section's states in registers and keeps only its
//      final state; each warp stages its 32 blocks through shared memory 32 samples at
//      a time, so that loads are coalesced;
//   2. the carry scan (scan_blocks_kernel, in segments): s_in[b + 1] = A^L s_in[b] +
//      s_zero[b], s_in[0] = zi;
//   3. cascade_kernel<.., kFinals = false>: each (row, block) filters its block again,
//      now from its true incoming state s_in[b], and writes the output (rounded once,
//      placed by an OutputMap: reversed and cropped for sosfiltfilt).
// A^L comes from the cascade's one-step transition matrix by repeated squaring in
// double-double. Per pass this moves the input twice and the output once (the previous
// version stored float64 blocks and added the carries' zero-input responses in a third
// kernel: about 3x the bytes). Longer cascades run as consecutive groups of kMaxCascade
// sections through a float64 row buffer, each group with its rows of zi (a cascade is
// the composition of its sections).
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

// Inputs of a pass: sample t of row r, widened to float64; plain(r, t0, t1) points at
// sample t0 when samples [t0, t1) are consecutive elements (nullptr otherwise), so
// that a warp whose 32 blocks lie inside one row loads them without index arithmetic.
template <typename T>
struct RowsIn {  // (rows, n) contiguous
  const T* x;
  int64_t n;
  __device__ double operator()(int64_t r, int64_t t) const { return double(x[r * n + t]); }
  __device__ const T* plain(int64_t r, int64_t t0, int64_t) const { return x + r * n + t0; }
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
  __device__ const T* plain(int64_t r, int64_t p0, int64_t p1) const {
    return p0 >= pad && p1 <= pad + n ? x + r * n + (p0 - pad) : nullptr;
  }
};

template <typename T>
struct ZeroExtendedIn {  // g (rows, n) between `pad` zeros a side (the adjoint's E0 g)
  const T* g;
  int64_t n, pad;
  __device__ double operator()(int64_t r, int64_t p) const {
    const int64_t j = p - pad;
    return j >= 0 && j < n ? double(g[r * n + j]) : 0.0;
  }
  __device__ const T* plain(int64_t r, int64_t p0, int64_t p1) const {
    return p0 >= pad && p1 <= pad + n ? g + r * n + (p0 - pad) : nullptr;
  }
};

// Output of a pass: sample t of row r (of n) lands at u = t - crop, or (n - 1 - t) - crop
// when reversed, in rows of out_n; samples outside [0, out_n) are dropped. plain(r, t0,
// t1) points at sample t0's place when none of [t0, t1) is dropped (then sample t0 + i
// lands at plain + i * step()).
template <typename T>
struct RowsOut {
  T* y;
  int64_t n;
  OutputMap map;
  __device__ int64_t place(int64_t t) const { return (map.reverse ? n - 1 - t : t) - map.crop; }
  __device__ void operator()(int64_t r, int64_t t, double v) const {
    const int64_t u = place(t);
    if (u >= 0 && u < map.out_n) y[r * map.out_n + u] = static_cast<T>(v);
  }
  __device__ T* plain(int64_t r, int64_t t0, int64_t t1) const {
    const int64_t u0 = place(t0), u1 = place(t1 - 1);
    return min(u0, u1) >= 0 && max(u0, u1) < map.out_n ? y + r * map.out_n + u0 : nullptr;
  }
  __device__ int64_t step() const { return map.reverse ? -1 : 1; }
  using value_type = T;
};
struct NoOut {  // phase 1 writes only final states
  using value_type = double;
};

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
  // Fast path: the warp's 32 blocks are full and consecutive in one row, so block k's
  // sample t is at a fixed stride from block 0's (decided once, uniform over the warp).
  const int64_t row0 = __shfl_sync(kFullWarp, row, 0), start0 = __shfl_sync(kFullWarp, start, 0);
  const bool one_row =
      __all_sync(kFullWarp, length == block && row == row0 && start == start0 + l * block);
  const int64_t span_end = start0 + 32 * block;
  const auto* in_plain = one_row ? in.plain(row0, start0, span_end) : nullptr;
  typename Out::value_type* out_plain = nullptr;
  if constexpr (!kFinals) out_plain = one_row ? out.plain(row0, start0, span_end) : nullptr;
  for (int64_t t0 = 0; t0 < warp_length; t0 += 32) {
    if (in_plain) {
      for (int k = 0; k < 32; ++k) tile[w][k][l] = double(in_plain[k * block + t0 + l]);
    } else {
      for (int k = 0; k < 32; ++k) {  // lane l moves sample t0 + l of block k
        const int64_t row_k = __shfl_sync(kFullWarp, row, k);
        const int64_t start_k = __shfl_sync(kFullWarp, start, k);
        const int64_t length_k = __shfl_sync(kFullWarp, length, k);
        tile[w][k][l] = t0 + l < length_k ? in(row_k, start_k + t0 + l) : 0.0;
      }
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
      if (out_plain) {
        const int64_t step = out.step();
        for (int k = 0; k < 32; ++k)
          out_plain[step * (k * block + t0 + l)] =
              static_cast<typename Out::value_type>(tile[w][k][l]);
      } else {
        for (int k = 0; k < 32; ++k) {
          const int64_t row_k = __shfl_sync(kFullWarp, row, k);
          const int64_t start_k = __shfl_sync(kFullWarp, start, k);
          const int64_t length_k = __shfl_sync(kFullWarp, length, k);
          if (t0 + l < length_k) out(row_k, start_k + t0 + l, tile[w][k][l]);
        }
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

// The carry scan, s_in[b + 1] = P_b s_in[b] + zero[b] along each row's blocks, in
// segments of m blocks so that its sequential chain is about 2 m + n_blocks / m steps
// instead of n_blocks (one step is a long dependent chain of shuffles and FMAs):
//   A. every segment scans its blocks from zero state: its final state seg_final[g];
//   B. each row scans its segments: seg_start[g + 1] = A^(L m) seg_start[g] +
//      seg_final[g], seg_start[0] = zi;
//   C. every segment scans its blocks again from seg_start[g], writing s_in (and zf
//      from the row's last segment).
// All three are scan_blocks_kernel: one warp per sequence q = (row r, segment g) of
// blocks [g m, min((g + 1) m, n_blocks)), lane j < K holding state component j;
// (P s)[j] = sum_i power[i * K + j] * s[i] with s[i] shuffled from lane i (P_b =
// power_last for the row's last block). The sequence starts from init[q * init_stride]
// (nullptr: zero); if s_in, it writes the state entering each block; its final state goes
// to final_out[q * final_stride] (final_for_row: to final_out[r * final_stride], last
// segment only). zero, s_in: (rows, n_blocks, K). The zero-state finals are read 8
// blocks ahead.
__global__ void scan_blocks_kernel(const double* __restrict__ init, int64_t init_stride,
                                   const double* __restrict__ zero,
                                   const double* __restrict__ power,
                                   const double* __restrict__ power_last,
                                   double* __restrict__ s_in, double* __restrict__ final_out,
                                   int64_t final_stride, bool final_for_row, int64_t rows,
                                   int64_t n_blocks, int64_t m, int K) {
  const int64_t G = (n_blocks + m - 1) / m;
  const int64_t q = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (q >= rows * G) return;  // uniform over the warp
  const int64_t r = q / G, g = q % G, first = g * m, end = min(first + m, n_blocks);
  const int j = threadIdx.x % 32;
  const bool on = j < K;
  double column[2 * kMaxCascade];
#pragma unroll
  for (int i = 0; i < 2 * kMaxCascade; ++i) column[i] = on && i < K ? power[i * K + j] : 0.0;
  const double* zero_row = zero + r * n_blocks * K;
  double* s_row = s_in ? s_in + r * n_blocks * K : nullptr;
  double state = on && init ? init[q * init_stride + j] : 0.0;
  for (int64_t b0 = first; b0 < end; b0 += 8) {
    double ahead[8];
#pragma unroll
    for (int u = 0; u < 8; ++u)
      ahead[u] = on && b0 + u < end ? zero_row[(b0 + u) * K + j] : 0.0;
#pragma unroll
    for (int u = 0; u < 8; ++u) {
      const int64_t b = b0 + u;
      if (b >= end) break;
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
      if (on && s_row) s_row[b * K + j] = state;
      state = next;
    }
  }
  if (!on || !final_out) return;
  if (!final_for_row)
    final_out[q * final_stride + j] = state;
  else if (g + 1 == G)
    final_out[r * final_stride + j] = state;
}

// Blocks per carry-scan segment: about sqrt(n_blocks / 2), which minimises 2 m + n / m.
int64_t scan_segment(int64_t n_blocks) {
  int64_t m = 1;
  while (2 * m * m < n_blocks) ++m;
  return m;
}

// zi_rows[r, j] = zi[j] * in(r, 0): sosfilt_zi scaled by each row's first input sample.
template <class In>
__global__ void scaled_states_kernel(In in, const double* __restrict__ zi,
                                     double* __restrict__ zi_rows, int64_t rows, int64_t K) {
  const int64_t gid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (gid < rows * K) zi_rows[gid] = zi[gid % K] * in(gid / K, 0);
}

// y[r, 0] += edge[r, which]: an edge term of the adjoint as an impulse.
__global__ void add_to_first_kernel(double* __restrict__ y, const double* __restrict__ edge,
                                    int64_t rows, int64_t width, int which) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (r < rows) y[r * width] += edge[2 * r + which];
}

// xg = E^T w: w (rows, n + 2 pad) float64 folded onto (rows, n), each extension sample
// added onto the samples the extension built it from (python/fastecg/ops/sosfilt.py,
// _extension_transpose), rounded once to T.
template <typename T>
__global__ void extension_transpose_kernel(const double* __restrict__ w, T* __restrict__ xg,
                                           int64_t rows, int64_t n, int64_t pad,
                                           int64_t padtype) {
  const int64_t gid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (gid >= rows * n) return;
  const int64_t k = gid % n;
  const double* row = w + gid / n * (n + 2 * pad);
  double acc = row[pad + k];
  if (pad > 0 && padtype != kPadConstant) {  // odd, even: mirrored samples
    const double sign = padtype == kPadOdd ? -1.0 : 1.0;
    if (k >= 1 && k <= pad) acc += sign * row[pad - k];
    if (k >= n - 1 - pad && k <= n - 2) acc += sign * row[pad + 2 * n - 2 - k];
  }
  if (pad > 0 && padtype != kPadEven && (k == 0 || k == n - 1)) {  // odd, constant: edges
    const double* side = k == 0 ? row : row + pad + n;
    double sum = 0.0;
    for (int64_t i = 0; i < pad; ++i) sum += side[i];
    acc += (padtype == kPadOdd ? 2.0 : 1.0) * sum;  // (pad > 0 needs n > pad: k is one edge)
  }
  xg[gid] = static_cast<T>(acc);
}

// power[i * K + j] = (A^L e_i)[j], and likewise power_last for A^last and power_segment
// for A^(L segment) (the carry scan's segments of full blocks), where A (K x K) maps
// the cascade's states one sample ahead under zero input: A's columns from one step of
// the cascade, then square-and-multiply (11 squarings for L = 2048, where filtering
// zeros from each unit state was one latency-bound thread per state, 2048 steps long).
// The products are double-double (error-free products and sums, rounded once at the
// end): the cascade's A is far from normal (poles near 1), and plain float64 squaring
// lost up to 3e-9 in A^448, 1e-10 of the output's peak (the recurrence itself: 2e-12).
// One thread block of at least K * K threads.
__device__ void two_sum(double a, double b, double& sum, double& err) {
  sum = __dadd_rn(a, b);
  const double bb = __dsub_rn(sum, a);
  err = __dadd_rn(__dsub_rn(a, __dsub_rn(sum, bb)), __dsub_rn(b, bb));
}

__global__ void transition_powers_kernel(const double* __restrict__ sos, int S, int64_t L,
                                         int64_t last, int64_t segment,
                                         double* __restrict__ power,
                                         double* __restrict__ power_last,
                                         double* __restrict__ power_segment) {
  constexpr int kMax = 2 * kMaxCascade;
  // A, then square-and-multiply's base and accumulator, each as a (hi, lo) pair.
  __shared__ double A[kMax][kMax], base_hi[kMax][kMax], base_lo[kMax][kMax],
      acc_hi[kMax][kMax], acc_lo[kMax][kMax];
  const int K = 2 * S, t = threadIdx.x, r = t / K, c = t % K;
  const bool entry = t < K * K;
  if (t < K) {  // column t: the states one step after unit state e_t, input zero
    double v = 0.0;
    for (int s = 0; s < S; ++s) {
      const double* q = sos + 6 * s;
      const double o = q[0] * v + (t == 2 * s);
      A[2 * s][t] = q[1] * v - q[4] * o + (t == 2 * s + 1);
      A[2 * s + 1][t] = q[2] * v - q[5] * o;
      v = o;
    }
  }
  __syncthreads();
  using Matrix = double (*)[kMax];
  auto multiply = [&](Matrix xh, Matrix xl, Matrix yh, Matrix yl, Matrix into_h,
                      Matrix into_l) {
    double hi = 0.0, lo = 0.0;
    if (entry) {
      for (int m = 0; m < K; ++m) {
        const double a = xh[r][m], b = yh[m][c];
        const double p = __dmul_rn(a, b), p_err = __fma_rn(a, b, -p);
        double e;
        two_sum(hi, p, hi, e);
        lo += e + p_err + a * yl[m][c] + xl[r][m] * b;
      }
    }
    __syncthreads();  // x or y may be `into`
    if (entry) {
      const double sum = __dadd_rn(hi, lo);
      into_h[r][c] = sum;
      into_l[r][c] = __dsub_rn(lo, __dsub_rn(sum, hi));
    }
    __syncthreads();
  };
  const int64_t exps[3] = {L, last, L * segment};
  double* outs[3] = {power, power_last, power_segment};
  for (int which = 0; which < 3; ++which) {
    if (entry) {
      base_hi[r][c] = A[r][c];
      base_lo[r][c] = 0.0;
      acc_hi[r][c] = r == c;
      acc_lo[r][c] = 0.0;
    }
    __syncthreads();
    for (int64_t e = exps[which]; e > 0; e >>= 1) {
      if (e & 1) multiply(acc_hi, acc_lo, base_hi, base_lo, acc_hi, acc_lo);
      if (e > 1) multiply(base_hi, base_lo, base_hi, base_lo, base_hi, base_lo);
    }
    if (entry) outs[which][c * K + r] = acc_hi[r][c];  // power[i * K + j] = M[j][i]
    __syncthreads();
  }
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

// Scratch of one group's scan, carved from the workspace: three K x K powers, then
// (rows, n_blocks, K) zero-state finals and incoming states, then (rows, segments, K)
// segment finals and starts.
struct GroupWork {
  double *power, *power_last, *power_segment, *zero, *s_in, *seg_final, *seg_start;
};

GroupWork carve(double* work, int64_t rows, int64_t n_blocks, int64_t G, int64_t K) {
  const int64_t KK = 2 * kMaxCascade * 2 * kMaxCascade, blocks = rows * n_blocks * K;
  double* zero = work + 3 * KK;
  return {work, work + KK, work + 2 * KK, zero, zero + blocks, zero + 2 * blocks,
          zero + 2 * blocks + rows * G * K};
}

// sosfilt of rows through S <= kMaxCascade sections (sos) from the states zi[r * stride..]
// (final states to zf, same layout): the three phases.
template <class In, class Out>
void scan_group(In in, Out out, const double* zi, double* zf, int64_t stride, const double* sos,
                int64_t rows, int64_t n, int64_t S, double* work, cudaStream_t stream) {
  const int64_t L = std::min(scan_block(rows, n), n), K = 2 * S, n_blocks = cdiv(n, L);
  const int64_t last = n - (n_blocks - 1) * L, m = scan_segment(n_blocks);
  const int64_t G = cdiv(n_blocks, m);
  const GroupWork g = carve(work, rows, n_blocks, G, K);
  transition_powers_kernel<<<1, 4 * kMaxCascade * kMaxCascade, 0, stream>>>(
      sos, static_cast<int>(S), L, last, m, g.power, g.power_last, g.power_segment);
  cascade<true>(in, NoOut{}, nullptr, g.zero, sos, rows, n, L, S, stream);
  constexpr int warps = 4;
  const unsigned grid = static_cast<unsigned>(cdiv(rows * G, warps)), threads = 32 * warps;
  const int k = static_cast<int>(K);
  if (G == 1) {
    scan_blocks_kernel<<<grid, threads, 0, stream>>>(zi, stride, g.zero, g.power, g.power_last,
                                                     g.s_in, zf, stride, true, rows, n_blocks,
                                                     m, k);
  } else {
    scan_blocks_kernel<<<grid, threads, 0, stream>>>(nullptr, 0, g.zero, g.power, g.power_last,
                                                     nullptr, g.seg_final, K, false, rows,
                                                     n_blocks, m, k);
    scan_blocks_kernel<<<static_cast<unsigned>(cdiv(rows, warps)), threads, 0, stream>>>(
        zi, stride, g.seg_final, g.power_segment, g.power_segment, g.seg_start, nullptr, 0,
        false, rows, G, G, k);
    scan_blocks_kernel<<<grid, threads, 0, stream>>>(g.seg_start, K, g.zero, g.power,
                                                     g.power_last, g.s_in, zf, stride, true,
                                                     rows, n_blocks, m, k);
  }
  cascade<false>(in, out, g.s_in, nullptr, sos, rows, n, L, S, stream);
}

int64_t group_workspace(int64_t rows, int64_t n) {
  const int64_t L = std::max<int64_t>(1, std::min(scan_block(rows, n), n));
  const int64_t KK = 2 * kMaxCascade * 2 * kMaxCascade, n_blocks = cdiv(n, L);
  const int64_t G = cdiv(n_blocks, scan_segment(n_blocks));
  return 3 * KK + (2 * rows * n_blocks + 2 * rows * G) * 2 * kMaxCascade;
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

namespace {

// sosfiltfilt's (rows, K) initial and (unused) final states of a pass: the end of the
// workspace of sosfilt_scan_workspace(rows, width, n_sections).
double* pass_states(double* work, int64_t rows, int64_t width, int64_t n_sections) {
  return work + sosfilt_scan_workspace(rows, width, n_sections) - 2 * rows * 2 * n_sections;
}

}  // namespace

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
  double* zi_rows = pass_states(work, rows, width, n_sections);
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

template <typename T>
cudaError_t sosfiltfilt_adjoint_scan_cuda(const T* g, T* xg, double* mid, double* back,
                                          const double* edge, const double* sos, int64_t rows,
                                          int64_t n, int64_t pad, int padtype,
                                          int64_t n_sections, double* work,
                                          cudaStream_t stream) {
  if (rows == 0 || n == 0) return cudaSuccess;
  const int64_t width = n + 2 * pad, K = 2 * n_sections;
  double* zeros = pass_states(work, rows, width, n_sections);
  double* zf_rows = zeros + rows * K;
  cudaMemsetAsync(zeros, 0, sizeof(double) * rows * K, stream);
  const unsigned row_grid = static_cast<unsigned>(cdiv(rows, kTile));
  // Forward from zero state over g zero-extended, written reversed, + c1 at its end;
  // forward over that, written reversed (back in time order), + c2 at its start; E^T.
  scan_pass(ZeroExtendedIn<T>{g, n, pad}, RowsOut<double>{mid, width, {true, 0, width}}, zeros,
            zf_rows, sos, rows, width, n_sections, work, stream);
  add_to_first_kernel<<<row_grid, kTile, 0, stream>>>(mid, edge, rows, width, 0);
  scan_pass(RowsIn<double>{mid, width}, RowsOut<double>{back, width, {true, 0, width}}, zeros,
            zf_rows, sos, rows, width, n_sections, work, stream);
  add_to_first_kernel<<<row_grid, kTile, 0, stream>>>(back, edge, rows, width, 1);
  extension_transpose_kernel<T><<<static_cast<unsigned>(cdiv(rows * n, kTile)), kTile, 0,
                                  stream>>>(back, xg, rows, n, pad, padtype);
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

template cudaError_t sosfiltfilt_adjoint_scan_cuda<float>(const float*, float*, double*, double*,
                                                         const double*, const double*, int64_t,
                                                         int64_t, int64_t, int, int64_t,
                                                         double*, cudaStream_t);
template cudaError_t sosfiltfilt_adjoint_scan_cuda<double>(const double*, double*, double*,
                                                          double*, const double*, const double*,
                                                          int64_t, int64_t, int64_t, int,
                                                          int64_t, double*, cudaStream_t);

}  // namespace fastecg
