// CPU kernel of fastecg::_resample_poly_kernel: scipy.signal.upfirdn's polyphase filter with
// its output cropped as scipy.signal.resample_poly crops it, computing only the kept outputs:
//
//   y[r, m] = sum_i xe[r, i] * h[m * down + offset - up * i],   0 <= m < n_out,
//
// xe = row r of x extended with cval outside [0, n_in). Output m reads the taps of one phase
// k = (m * down + offset) mod up, h[k], h[k + up], ..., a ceil((L - k) / up)-tap dot
// product with consecutive input samples: n_out * L / up multiply-adds per row, where
// filtering the zero-stuffed signal would do `up` times as many and filtering every
// upsampled sample `down` times more again. The adjoint (the backward) is the same sum with
// the taps reversed and up and down swapped (python/fastecg/ops/resample.py).
//
// Vector lanes run across rows, so every phase, whatever its length, is whole vectors:
// blocks of W rows (32 float32 or 16 float64 rows: two 64-byte vectors a time step) are
// transposed, a chunk of time at a time, into a lane-interleaved buffer holding the
// chunk's input span (cval where the span leaves the row; 8x8 float32 or 4x4 float64 tiles
// transposed in registers, 16x16 float32 tiles on AVX-512, whose loads and stores are whole
// cache lines), filtered, and the chunk's outputs transposed back into the rows.
// Outputs m and m + up share a phase, their inputs `down` apart: each broadcast tap serves
// kOutputs (kFoldOutputs in phase_block_folded) such outputs. Where a phase has several taps per `down` (500 -> 250 and
// 500 -> 100 Hz, and every backward), the outputs slide over shared registers so that a
// vector load serves several taps (phase_block_sliding), and a symmetric phase (Kaiser
// designs at up = 1) adds its two samples before one FMA (phase_block_folded). Where a phase
// has about one tap per `down` (500 -> 360 Hz), two phases whose inputs overlap run together,
// each vector loaded serving both (phase_block_pair, AVX-512). The folded kernel runs on
// AVX-512 and AVX2; the baseline build keeps the plain kernels.
// The folded kernel leaves out a residue of taps that are all negligible (the Kaiser
// designs' zeros of the sinc, ~1e-17) on rows whose inputs are finite
// (negligible_residues). Each of these steps cut the filtering time
// (benchmarks/CPU_NOTES.md).
//
// Arithmetic is in the input's dtype, as SciPy's is (it casts the taps to x's dtype;
// float32 sums of the 41-501-tap designs stay within ~2e-7 of the float64 result, relative
// to the peak; the order of the sums differs from SciPy's). The instruction set is chosen
// at run time by cpu_isa() (isa.h: AVX-512, AVX2+FMA or baseline; FASTECG_CPU_ISA can narrow
// it, as for the other CPU kernels).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <iterator>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include "../common/huge_pages.h"
#include "../common/lanes4.h"
#include "../common/parallel.h"
#include "isa.h"

// The vector helpers below are always inlined into their ISA's caller, so the ABI GCC warns
// about (vector arguments across ISAs) is never used.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace fastecg {
namespace {

// (Structs, not alias templates: GCC drops vector_size on a dependent alias.)
template <typename T, int VB> struct VecBytes {
  typedef T type __attribute__((vector_size(VB)));
};
template <typename T> struct Vec32 {
  typedef T type __attribute__((vector_size(32)));
};

// Rows and samples of one register transpose (a 32-byte vector of T).
template <typename T> constexpr int64_t kTile = 32 / sizeof(T);
// Rows of a block: 128 bytes a time step (two zmm, four ymm).
template <typename T> constexpr int64_t kBlock = 128 / sizeof(T);
// Input time steps a chunk's span aims at: 128 KB of lane-interleaved buffer, in L2,
// while a group of outputs' inputs stay in L1.
constexpr int64_t kSpanSteps = 1024;
// How far ahead (samples of a row) the 16-row gather prefetches: the hardware prefetcher
// does not keep 16 row streams far enough ahead (benchmarks/CPU_NOTES.md).
constexpr int64_t kPrefetchAhead = 128;
// Outputs of one phase computed together, and vectors of a time step per pass: each
// broadcast tap feeds kOutputs * kGroup independent accumulators (8 zmm on AVX-512, 8 ymm
// on AVX2: enough chains to cover the FMA latency). The sliding window's 8 more vectors
// fit AVX-512's 32 registers; on AVX2 one of them goes through the stack. filter_span
// takes the outputs 2 kOutputs * up at a time: phase_block_folded runs its 2 kOutputs
// outputs in one pass of one vector (kFoldOutputs accumulators, the same registers; each
// vector loaded serves twice the taps, and its setup per residue is paid half as often),
// the other kernels in two passes of kOutputs.
constexpr int kOutputs = 4, kGroup = 2, kFoldOutputs = 2 * kOutputs;
// Taps per residue (phase length / down) from which the register window pays.
constexpr int64_t kSlideTaps = 3;

FASTECG_INLINE int64_t floor_div(int64_t a, int64_t b) {
  const int64_t q = a / b;
  return q - ((a % b != 0) && ((a < 0) != (b < 0)));
}

template <typename T>
struct Problem {
  const T* x;
  T* y;
  int64_t rows, n_in, n_out, up, down, offset, n_taps;
  T cval;
  const int64_t* start;  // phase k's taps are taps[start[k] .. start[k] + count[k])
  const int64_t* count;
  const T* taps;         // each phase's taps reversed: taps[start[k] + r] = h[k + up (count[k] - 1 - r)]
  const int64_t* phase;  // output c < up: its phase, and its first input less (c * down) / up
  const int64_t* first;
  const uint8_t* symmetric;  // phase k's taps read the same both ways
  // skip[rho]: phase_block_folded leaves out the taps rho, rho + down, ... below the
  // middle, and their mirror images (negligible_residues; up = 1); nullptr: none.
  const uint8_t* skip;
  uint8_t* redo;         // redo[r]: row r has a non-finite output (only where skip is set)
  int64_t chunk;         // outputs per chunk: whole groups of kFoldOutputs * up and tiles, or all
  int64_t n_chunks;
  int64_t span_max;      // input steps of the widest chunk
};

// First and last input sample that output m reads (the last one: phase tap 0).
template <typename T>
FASTECG_INLINE int64_t first_input(const Problem<T>& p, int64_t m) {
  return floor_div(m * p.down + p.offset - p.n_taps, p.up) + 1;
}
template <typename T>
FASTECG_INLINE int64_t last_input(const Problem<T>& p, int64_t m) {
  return floor_div(m * p.down + p.offset, p.up);
}

// v[j][k] <-> v[k][j] for an 8x8 float32 tile.
FASTECG_INLINE void transpose_tile(typename Vec32<float>::type (&v)[8]) {
  typedef typename Vec32<float>::type F8;
  F8 t[8], u[8];
  for (int j = 0; j < 8; j += 2) {
    t[j] = __builtin_shufflevector(v[j], v[j + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[j + 1] = __builtin_shufflevector(v[j], v[j + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int j = 0; j < 8; j += 4) {
    u[j] = __builtin_shufflevector(t[j], t[j + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    u[j + 1] = __builtin_shufflevector(t[j], t[j + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    u[j + 2] = __builtin_shufflevector(t[j + 1], t[j + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    u[j + 3] = __builtin_shufflevector(t[j + 1], t[j + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int j = 0; j < 4; ++j) {
    v[j] = __builtin_shufflevector(u[j], u[j + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    v[j + 4] = __builtin_shufflevector(u[j], u[j + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}

// ... and for a 4x4 float64 tile.
FASTECG_INLINE void transpose_tile(typename Vec32<double>::type (&v)[4]) { transpose4(v); }

// v[j][k] <-> v[k][j] for a 16x16 float32 tile (AVX-512): four rounds that swap the
// off-diagonal blocks of 1, 2, 4 and 8 elements between vectors g apart.
typedef float F16 __attribute__((vector_size(64)));
template <int g, size_t... E>
FASTECG_INLINE F16 swap_low(F16 a, F16 b, std::index_sequence<E...>) {
  return __builtin_shufflevector(a, b, ((E & g) ? 16 + E - g : E)...);
}
template <int g, size_t... E>
FASTECG_INLINE F16 swap_high(F16 a, F16 b, std::index_sequence<E...>) {
  return __builtin_shufflevector(a, b, ((E & g) ? 16 + E : E + g)...);
}
template <int g> FASTECG_INLINE void swap_round(F16 (&v)[16]) {
  for (int i = 0; i < 16; ++i)
    if (!(i & g)) {
      const F16 a = v[i], b = v[i + g];
      v[i] = swap_low<g>(a, b, std::make_index_sequence<16>{});
      v[i + g] = swap_high<g>(a, b, std::make_index_sequence<16>{});
    }
}
FASTECG_INLINE void transpose_tile16(F16 (&v)[16]) {
  swap_round<1>(v);
  swap_round<2>(v);
  swap_round<4>(v);
  swap_round<8>(v);
}

template <typename V, typename T> FASTECG_INLINE V load_vec(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename V, typename T> FASTECG_INLINE void store_vec(T* p, V v) {
  std::memcpy(p, &v, sizeof v);
}

#if defined(__x86_64__)
// out[s * 32 + j] = src[j * n_in + s] for 16 rows j and n >= 16 steps s, 16x16 tiles
// (AVX-512; loads and stores of whole cache lines where the rows are aligned); the last
// tile overlaps the one before where n is not a multiple of 16 (it stores the same values
// again) instead of a scalar tail. Out of line: its 16 row streams and 16 tile vectors get
// the registers to themselves.
__attribute__((target("arch=x86-64-v4"), noinline)) void gather_rows16(
    const float* __restrict src, int64_t n_in, int64_t n, float* __restrict out) {
  constexpr int64_t Q = 16, W = kBlock<float>;
  for (int64_t s = 0;; s += Q) {
    if (s + Q > n) s = n - Q;
    F16 v[Q];
    for (int64_t j = 0; j < Q; ++j) {
      __builtin_prefetch(src + j * n_in + s + kPrefetchAhead, 0, 3);
      v[j] = load_vec<F16>(src + j * n_in + s);
    }
    transpose_tile16(v);
    for (int64_t j = 0; j < Q; ++j) store_vec(out + (s + j) * W, v[j]);
    if (s + Q >= n) break;
  }
}
#endif

// buf[(i - i_lo) * W + w] = xe[r0 + w, i] for i in [i_lo, i_hi); rows past the last one
// get cval too (their outputs are never stored). (Sizes in locals: stores through T*
// could alias p, which would make GCC reload them.)
template <typename T, int VB>
FASTECG_INLINE void gather_span(const Problem<T>& p, int64_t r0, int64_t i_lo, int64_t i_hi,
                                T* __restrict buf) {
  typedef typename Vec32<T>::type VT;
  constexpr int64_t W = kBlock<T>, P = kTile<T>;
  const int64_t n_in = p.n_in, rows = p.rows;
  const T cval = p.cval;
  const T* __restrict x = p.x;
  const int64_t a = std::clamp<int64_t>(i_lo, 0, n_in), e = std::clamp<int64_t>(i_hi, 0, n_in);
  for (int64_t i = i_lo; i < std::min(a, i_hi); ++i)
    for (int64_t w = 0; w < W; ++w) buf[(i - i_lo) * W + w] = cval;
  for (int64_t i = std::max(e, i_lo); i < i_hi; ++i)
    for (int64_t w = 0; w < W; ++w) buf[(i - i_lo) * W + w] = cval;
  if (a >= e) return;
  int64_t g0 = 0;  // rows of the block done
#if defined(__x86_64__)
  if constexpr (VB == 64 && std::is_same_v<T, float>) {
    if (e - a >= 16)
      for (; g0 < W && r0 + g0 + 16 <= rows; g0 += 16)
        gather_rows16(x + (r0 + g0) * n_in + a, n_in, e - a, buf + (a - i_lo) * W + g0);
  }
#endif
  for (int64_t g = g0; g < W; g += P) {
    const int64_t rg = r0 + g, valid = std::min<int64_t>(P, rows - rg);
    T* out = buf + (a - i_lo) * W + g;
    int64_t i = a;
    if (valid == P) {
      const T* src = x + rg * n_in;
      for (; i + P <= e; i += P, out += P * W) {
        VT v[P];
        for (int64_t j = 0; j < P; ++j) {
          if constexpr (VB == 32 && std::is_same_v<T, float>)  // each row's next lines
            if ((i & 15) == 0) __builtin_prefetch(src + j * n_in + i + kPrefetchAhead, 0, 3);
          v[j] = load_vec<VT>(src + j * n_in + i);
        }
        transpose_tile(v);
        for (int64_t j = 0; j < P; ++j) store_vec(out + j * W, v[j]);
      }
    }
    for (; i < e; ++i, out += W)
      for (int64_t j = 0; j < P; ++j) out[j] = j < valid ? x[(rg + j) * n_in + i] : cval;
  }
}

// Outputs j < R of one phase: y0[j * y_step + w] = sum_r h[r] * x0[j * x_step + r * W + w]
// over the W rows, G vectors of VB bytes at a time. Each broadcast tap serves R * G
// multiply-adds, and the R * G accumulators are independent chains.
template <typename T, int VB, int R, int G>
FASTECG_INLINE void phase_block(const T* x0, int64_t x_step, const T* h, int64_t len, T* y0,
                                int64_t y_step) {
  typedef typename VecBytes<T, VB>::type V;
  constexpr int64_t W = kBlock<T>, H = VB / sizeof(T), NV = W / H;
  static_assert(NV % G == 0, "vector groups must tile the block");
  for (int64_t v0 = 0; v0 < NV; v0 += G) {
    V acc[R][G] = {};
    const T* xr = x0 + v0 * H;
    for (int64_t r = 0; r < len; ++r, xr += W) {
      const T tap = h[r];  // scalar * vector: one broadcast from memory
      for (int j = 0; j < R; ++j)
        for (int g = 0; g < G; ++g) acc[j][g] += tap * load_vec<V>(xr + j * x_step + g * H);
    }
    for (int j = 0; j < R; ++j)
      for (int g = 0; g < G; ++g) store_vec(y0 + j * y_step + (v0 + g) * H, acc[j][g]);
  }
}

// phase_block for two phases at once (outputs c and c + 1 of a group): their inputs overlap
// (first steps fa and fb, a step or two apart, each ~taps / up long), so each vector loaded
// in the overlap serves both phases' taps, nearly halving the loads per multiply-add where a
// phase has about one tap per `down` (500 -> 360 Hz). Each output still sums its own taps in
// order, none added with a zero tap (an Inf outside a phase's span stays out of it).
// 2 R G accumulators and R G inputs: AVX-512's 32 registers (on AVX2, with G = 1, it was
// slower than phase_block: benchmarks/CPU_NOTES.md).
template <typename T, int VB, int R, int G>
FASTECG_INLINE void phase_block_pair(const T* xa, const T* ha, int64_t la, T* ya, const T* xb,
                                     const T* hb, int64_t lb, T* yb, int64_t x_step,
                                     int64_t y_step) {
  typedef typename VecBytes<T, VB>::type V;
  constexpr int64_t W = kBlock<T>, H = VB / sizeof(T), NV = W / H;
  static_assert(NV % G == 0, "vector groups must tile the block");
  // step s of the union: phase a's tap s - da, phase b's tap s - db
  const int64_t fa = (xa - xb) / W;  // a's first step relative to b's (may be negative)
  const int64_t s0 = std::min<int64_t>(fa, 0), da = fa - s0, db = -s0;
  const int64_t ea = da + la, eb = db + lb;
  const int64_t both_lo = std::max(da, db), both_hi = std::min(ea, eb);
  const T* x0 = xb + s0 * W;
  for (int64_t v0 = 0; v0 < NV; v0 += G) {
    V acc_a[R][G] = {}, acc_b[R][G] = {};
    auto one = [&](V (&acc)[R][G], const T* h, int64_t d, int64_t lo, int64_t hi)
                   __attribute__((always_inline)) {
      const T* xr = x0 + lo * W + v0 * H;
      for (int64_t s = lo; s < hi; ++s, xr += W) {
        const T tap = h[s - d];
        for (int j = 0; j < R; ++j)
          for (int g = 0; g < G; ++g) acc[j][g] += tap * load_vec<V>(xr + j * x_step + g * H);
      }
    };
    if (both_lo < both_hi) {
      one(acc_a, ha, da, da, both_lo);  // at most one of these two runs
      one(acc_b, hb, db, db, both_lo);
      const T* xr = x0 + both_lo * W + v0 * H;
      for (int64_t s = both_lo; s < both_hi; ++s, xr += W) {
        const T tap_a = ha[s - da], tap_b = hb[s - db];
        for (int j = 0; j < R; ++j)
          for (int g = 0; g < G; ++g) {
            const V v = load_vec<V>(xr + j * x_step + g * H);
            acc_a[j][g] += tap_a * v;
            acc_b[j][g] += tap_b * v;
          }
      }
      one(acc_a, ha, da, both_hi, ea);
      one(acc_b, hb, db, both_hi, eb);
    } else {
      one(acc_a, ha, da, da, ea);
      one(acc_b, hb, db, db, eb);
    }
    for (int j = 0; j < R; ++j)
      for (int g = 0; g < G; ++g) {
        store_vec(ya + j * y_step + (v0 + g) * H, acc_a[j][g]);
        store_vec(yb + j * y_step + (v0 + g) * H, acc_b[j][g]);
      }
  }
}

// The same sum for R outputs whose inputs are x_step = down * W apart, with down small
// against the taps: tap r = rho + down * i of output j reads step rho + down * (i + j), so
// for each residue rho the R outputs slide over one sequence of time steps, down apart, and
// each step loaded serves R taps (a register window) instead of one. At 500 -> 250 and
// 500 -> 100 Hz: 0.3 vector loads per FMA instead of 1.
template <typename T, int VB, int R, int G>
FASTECG_INLINE void phase_block_sliding(const T* x0, int64_t down, const T* h, int64_t len, T* y0,
                                        int64_t y_step) {
  typedef typename VecBytes<T, VB>::type V;
  constexpr int64_t W = kBlock<T>, H = VB / sizeof(T), NV = W / H;
  static_assert(NV % G == 0, "vector groups must tile the block");
  const int64_t step = down * W;
  for (int64_t v0 = 0; v0 < NV; v0 += G) {
    V acc[R][G] = {};
    for (int64_t rho = 0; rho < std::min(down, len); ++rho) {
      const T* xs = x0 + rho * W + v0 * H;
      V z[R][G];
      for (int j = 0; j + 1 < R; ++j)
        for (int g = 0; g < G; ++g) z[j][g] = load_vec<V>(xs + j * step + g * H);
      xs += (R - 1) * step;
      for (int64_t r = rho; r < len; r += down, xs += step) {
        for (int g = 0; g < G; ++g) z[R - 1][g] = load_vec<V>(xs + g * H);
        const T tap = h[r];
        for (int j = 0; j < R; ++j)
          for (int g = 0; g < G; ++g) acc[j][g] += tap * z[j][g];
        for (int j = 0; j + 1 < R; ++j)
          for (int g = 0; g < G; ++g) z[j][g] = z[j + 1][g];
      }
    }
    for (int j = 0; j < R; ++j)
      for (int g = 0; g < G; ++g) store_vec(y0 + j * y_step + (v0 + g) * H, acc[j][g]);
  }
}

// phase_block_sliding for a symmetric phase (taps[r] == taps[len - 1 - r], Kaiser designs
// and every phase at up = 1): each tap multiplies the sum of its two samples, halving the
// FMAs (the adds go to other pipes), with a window sliding forward over the first half's
// samples and one sliding backward over the second half's. 3 R G vector registers (R = 8
// on AVX-512, 4 on AVX2).
template <typename T, int VB, int R, int G>
FASTECG_INLINE void phase_block_folded(const T* x0, int64_t down, const T* h, int64_t len, T* y0,
                                       int64_t y_step, const uint8_t* skip) {
  typedef typename VecBytes<T, VB>::type V;
  constexpr int64_t W = kBlock<T>, H = VB / sizeof(T), NV = W / H;
  static_assert(NV % G == 0, "vector groups must tile the block");
  const int64_t step = down * W, half = len / 2;
  for (int64_t v0 = 0; v0 < NV; v0 += G) {
    V acc[R][G] = {};
    for (int64_t rho = 0; rho < std::min(down, half); ++rho) {
      if (skip && skip[rho]) continue;
      // Output j, tap r = rho + down * t: samples rho + down * (j + t) (the left window)
      // and len - 1 - rho + down * (j - t) (the right one). Each window's vectors sit in R
      // slots that rotate, step t's new one in slot t mod R, so that unrolled by R every
      // slot is a fixed register and the windows slide without moves.
      const T* xl = x0 + rho * W + v0 * H;
      const T* xr = x0 + (len - 1 - rho) * W + v0 * H;
      const int64_t n = (half - rho + down - 1) / down;  // taps of this residue below half
      V zl[R][G], zr[R][G];
      for (int j = 0; j + 1 < R; ++j)  // left samples of steps 0 .. R - 2, right of -1 .. 1 - R
        for (int g = 0; g < G; ++g) {
          zl[j][g] = load_vec<V>(xl + j * step + g * H);
          zr[R - 1 - j][g] = load_vec<V>(xr + (j + 1) * step + g * H);
        }
      int64_t t = 0;
      auto one_step = [&]<int U>() __attribute__((always_inline)) {  // U = t mod R
        for (int g = 0; g < G; ++g) {
          zl[(U + R - 1) % R][g] = load_vec<V>(xl + (t + R - 1) * step + g * H);
          zr[U][g] = load_vec<V>(xr - t * step + g * H);
        }
        const T tap = h[rho + down * t];
        for (int j = 0; j < R; ++j)
          for (int g = 0; g < G; ++g)
            acc[j][g] += tap * (zl[(U + j) % R][g] + zr[(U - j + R) % R][g]);
        ++t;
      };
      [&]<int... U>(std::integer_sequence<int, U...>) __attribute__((always_inline)) {
        for (; t + R <= n;) (one_step.template operator()<U>(), ...);
        const int64_t rest = n - t;
        ((U < rest ? one_step.template operator()<U>() : void()), ...);
      }(std::make_integer_sequence<int, R>{});
    }
    if (len % 2 == 1) {
      const T tap = h[half];
      for (int j = 0; j < R; ++j)
        for (int g = 0; g < G; ++g)
          acc[j][g] += tap * load_vec<V>(x0 + j * step + half * W + (v0 + g) * H);
    }
    for (int j = 0; j < R; ++j)
      for (int g = 0; g < G; ++g) store_vec(y0 + j * y_step + (v0 + g) * H, acc[j][g]);
  }
}

// yt[(m - m0) * W + w] = y[r0 + w, m] for m in [m0, m1), on W rows at once in vectors of VB
// bytes (the ISA's width: GCC spills vectors wider than the target's registers through the
// stack). Outputs m and m + up have the same phase (their inputs `down` apart), so the
// outputs go kFoldOutputs * up at a time: for each phase, kOutputs or kFoldOutputs outputs
// sharing each tap. The inputs of those kFoldOutputs * up outputs (kFoldOutputs * down +
// taps / up time steps, 20 KB at 500 -> 360 Hz) stay in L1 while every phase reads them.
template <typename T, int VB>
FASTECG_INLINE void filter_span(const Problem<T>& p, const T* buf, int64_t i_lo, int64_t m0,
                                int64_t m1, T* yt) {
  constexpr int64_t W = kBlock<T>, NV = W / (VB / sizeof(T));
  const int64_t x_step = p.down * W, y_step = p.up * W;
  int64_t m = m0;
  // Whole groups start at multiples of up (chunks do), where output m + c reads from
  // m / up * down + first[c] with the taps of phase[c].
  for (; m + kFoldOutputs * p.up <= m1; m += kFoldOutputs * p.up) {
    const T* x_base = buf + (m / p.up * p.down - i_lo) * W;
    T* y_base = yt + (m - m0) * W;
    for (int64_t c = 0; c < p.up; ++c) {
      const int64_t k = p.phase[c];
      if (VB == 64 && c + 1 < p.up && p.count[k] < kSlideTaps * p.down &&
          p.count[p.phase[c + 1]] < kSlideTaps * p.down) {
        const int64_t k1 = p.phase[c + 1];
        for (int64_t half = 0; half < kFoldOutputs; half += kOutputs)
          phase_block_pair<T, VB, kOutputs, kGroup>(
              x_base + p.first[c] * W + half * x_step, p.taps + p.start[k], p.count[k],
              y_base + c * W + half * y_step, x_base + p.first[c + 1] * W + half * x_step,
              p.taps + p.start[k1], p.count[k1], y_base + (c + 1) * W + half * y_step, x_step,
              y_step);
        ++c;
        continue;
      }
      const T* x0 = x_base + p.first[c] * W;
      T* y0 = y_base + c * W;
      if (VB >= 32 && p.symmetric[k] && p.count[k] >= 2 * kSlideTaps * p.down) {
        // kFoldOutputs outputs in one pass on AVX-512; two passes of kOutputs on AVX2,
        // whose 16 registers hold 3 kOutputs (accumulators and the two windows).
        constexpr int R = VB == 64 ? kFoldOutputs : kOutputs;
        for (int64_t half = 0; half < kFoldOutputs; half += R)
          phase_block_folded<T, VB, R, 1>(x0 + half * x_step, p.down, p.taps + p.start[k],
                                          p.count[k], y0 + half * y_step, y_step, p.skip);
        continue;
      }
      for (int64_t half = 0; half < kFoldOutputs; half += kOutputs) {
        if (p.count[k] >= kSlideTaps * p.down)
          phase_block_sliding<T, VB, kOutputs, kGroup>(x0 + half * x_step, p.down,
                                                       p.taps + p.start[k], p.count[k],
                                                       y0 + half * y_step, y_step);
        else
          phase_block<T, VB, kOutputs, kGroup>(x0 + half * x_step, x_step, p.taps + p.start[k],
                                               p.count[k], y0 + half * y_step, y_step);
      }
    }
  }
  for (; m < m1; ++m) {
    const int64_t q = m * p.down + p.offset;
    const int64_t i_max = floor_div(q, p.up);
    const int64_t k = q - i_max * p.up;
    phase_block<T, VB, 1, NV>(buf + (i_max - p.count[k] + 1 - i_lo) * W, x_step,
                              p.taps + p.start[k], p.count[k], yt + (m - m0) * W, y_step);
  }
}

#if defined(__x86_64__)
// dst[j * n_out + s] = yt[s * 32 + j] for 16 rows j and n >= 16 outputs s: gather_rows16
// the other way round.
__attribute__((target("arch=x86-64-v4"), noinline)) void scatter_rows16(
    const float* __restrict yt, int64_t n, float* __restrict dst, int64_t n_out) {
  constexpr int64_t Q = 16, W = kBlock<float>;
  for (int64_t s = 0;; s += Q) {
    if (s + Q > n) s = n - Q;
    F16 v[Q];
    for (int64_t j = 0; j < Q; ++j) v[j] = load_vec<F16>(yt + (s + j) * W);
    transpose_tile16(v);
    for (int64_t j = 0; j < Q; ++j) store_vec(dst + j * n_out + s, v[j]);
    if (s + Q >= n) break;
  }
}
#endif

// y[r0 + w, m] = yt[(m - m0) * W + w] for the block's real rows.
template <typename T, int VB>
FASTECG_INLINE void scatter_span(const Problem<T>& p, const T* __restrict yt, int64_t r0,
                                 int64_t m0, int64_t m1) {
  typedef typename Vec32<T>::type VT;
  constexpr int64_t W = kBlock<T>, P = kTile<T>;
  const int64_t n_out = p.n_out, rows = p.rows;
  int64_t g0 = 0;
#if defined(__x86_64__)
  if constexpr (VB == 64 && std::is_same_v<T, float>) {
    if (m1 - m0 >= 16)
      for (; g0 < W && r0 + g0 + 16 <= rows; g0 += 16)
        scatter_rows16(yt + g0, m1 - m0, p.y + (r0 + g0) * n_out + m0, n_out);
  }
#endif
  for (int64_t g = g0; g < W; g += P) {
    const int64_t rg = r0 + g, valid = std::min<int64_t>(P, rows - rg);
    if (valid <= 0) return;
    T* __restrict dst = p.y + rg * n_out;
    int64_t m = m0;
    if (valid == P) {
      for (; m + P <= m1; m += P) {
        VT v[P];
        for (int64_t j = 0; j < P; ++j) v[j] = load_vec<VT>(yt + (m - m0 + j) * W + g);
        transpose_tile(v);
        for (int64_t j = 0; j < P; ++j) store_vec(dst + j * n_out + m, v[j]);
      }
    }
    for (; m < m1; ++m)
      for (int64_t j = 0; j < valid; ++j) dst[j * n_out + m] = yt[(m - m0) * W + g + j];
  }
}

// y[r, m] for m in [m0, m1) with every tap (the phases' sums in order, as phase_block's),
// read straight from row r.
template <typename T>
void all_taps_row(const Problem<T>& p, int64_t r, int64_t m0, int64_t m1) {
  const T* x = p.x + r * p.n_in;
  for (int64_t m = m0; m < m1; ++m) {
    const int64_t q = m * p.down + p.offset, i_max = floor_div(q, p.up), k = q - i_max * p.up;
    const T* h = p.taps + p.start[k];
    T acc = 0;
    for (int64_t j = 0, i = i_max - p.count[k] + 1; j < p.count[k]; ++j, ++i)
      acc += h[j] * (i >= 0 && i < p.n_in ? x[i] : p.cval);
    p.y[r * p.n_out + m] = acc;
  }
}

// One work item: a block of rows times a chunk of outputs. scratch: span_max * W + chunk * W.
template <typename T, int VB>
FASTECG_INLINE void item_body(const Problem<T>& p, int64_t item, T* scratch) {
  constexpr int64_t W = kBlock<T>;
  // Item = block * n_chunks + chunk (resample_rows runs a block's chunks in order).
  const int64_t r0 = item / p.n_chunks * W;
  const int64_t m0 = item % p.n_chunks * p.chunk, m1 = std::min(m0 + p.chunk, p.n_out);
  const int64_t i_lo = first_input(p, m0), i_hi = last_input(p, m1 - 1) + 1;
  T* buf = scratch;
  T* yt = scratch + p.span_max * W;
  gather_span<T, VB>(p, r0, i_lo, i_hi, buf);
  filter_span<T, VB>(p, buf, i_lo, m0, m1, yt);
  if (VB >= 32 && p.skip) {  // (only phase_block_folded, AVX-512 and AVX2, skips taps)
    // A skipped tap times an Inf or NaN is not negligible. Every input of a row reaches
    // one of its outputs through a tap that is kept (negligible_residues), so a row with
    // an Inf or NaN has a non-finite output here: such a row is marked (its own lane, so
    // a row's result never depends on its neighbours) and gets all its outputs again
    // with every tap once all items are done (resample_rows).
    typedef typename VecBytes<T, VB>::type V;
    constexpr int64_t H = VB / sizeof(T), NV = W / H;
    V f[NV] = {};
    for (const T* o = yt; o < yt + (m1 - m0) * W; o += W)
      for (int64_t v = 0; v < NV; ++v) f[v] += load_vec<V>(o + v * H) * T(0);  // NaN if not finite
    T flag[W];
    for (int64_t v = 0; v < NV; ++v) store_vec(flag + v * H, f[v]);
    for (int64_t w = 0; w < W && r0 + w < p.rows; ++w)
      if (flag[w] != flag[w]) __atomic_store_n(p.redo + r0 + w, uint8_t(1), __ATOMIC_RELAXED);
  }
  scatter_span<T, VB>(p, yt, r0, m0, m1);
}

#if defined(__x86_64__)
template <typename T>
__attribute__((target("arch=x86-64-v4"))) void item_avx512(const Problem<T>& p, int64_t item,
                                                            T* scratch) {
  item_body<T, 64>(p, item, scratch);
}
template <typename T>
__attribute__((target("arch=x86-64-v3"))) void item_avx2(const Problem<T>& p, int64_t item,
                                                          T* scratch) {
  item_body<T, 32>(p, item, scratch);
}
#endif
template <typename T>
void item_generic(const Problem<T>& p, int64_t item, T* scratch) {
  item_body<T, 16>(p, item, scratch);
}

template <typename T> using ItemFn = void (*)(const Problem<T>&, int64_t, T*);

// The kernel of the instruction set cpu_isa() (isa.h) picks.
template <typename T>
ItemFn<T> item_fn(Isa isa) {
#if defined(__x86_64__)
  if (isa == Isa::kAvx512) return item_avx512<T>;
  if (isa == Isa::kAvx2) return item_avx2<T>;
#endif
  return item_generic<T>;
}

// Work memory of the calling thread, kept between calls up to 8 MiB.
template <typename T>
T* work_memory(size_t n, AlignedArray<T>& own) {
  constexpr size_t kKeep = (size_t{8} << 20) / sizeof(T);
  thread_local AlignedArray<T> cache;
  if (n > kKeep) {
    own = AlignedArray<T>(n);
    return own.get();
  }
  if (cache.size() < n) cache = AlignedArray<T>(std::max<size_t>(n, 4096));
  return cache.get();
}

// skip[rho] = 1 for the one residue rho = (len - 1) / 2 mod down of an odd, symmetric filter
// at up = 1, centred (offset = (len - 1) / 2), long enough for phase_block_folded, whose taps
// rho, rho + down, ... below the middle are all below eps(T)^2 of the largest tap; empty
// otherwise. A Kaiser design's zeros of the sinc (every max(up, down)-th tap from the
// middle, ~1e-17 in float64) are that residue: half of the folded multiply-adds at
// 500 -> 250 Hz, a fifth at 500 -> 100 Hz. On finite input each product left out is under
// eps(T)^2 of the largest tap times the largest input, far below the sum's rounding. The
// middle tap is in that residue and kept, so input i still reaches output i / down when
// i = 0 mod down, and any other input reaches output floor(i / down) through a tap of
// another residue: an Inf or NaN input always shows in some output (item_body).
template <typename T>
std::vector<uint8_t> negligible_residues(const std::vector<T>& taps, int64_t up, int64_t down,
                                         int64_t offset, bool symmetric) {
  const int64_t len = int64_t(taps.size()), half = len / 2;
  // filter_span's choice of phase_block_folded
  if (up != 1 || len % 2 == 0 || offset != half || !symmetric || len < 2 * kSlideTaps * down)
    return {};
  T peak = 0;
  for (const T t : taps) peak = std::max(peak, std::abs(t));
  const T eps = std::numeric_limits<T>::epsilon(), small = peak * eps * eps;
  const int64_t rho = half % down;
  if (!(small > 0)) return {};
  for (int64_t r = rho; r < half; r += down)
    if (!(std::abs(taps[r]) <= small)) return {};
  std::vector<uint8_t> skip(down, 0);
  skip[rho] = 1;
  return skip;
}

template <typename T>
void resample_rows(const T* x, T* y, const T* h, int64_t rows, int64_t n_in, int64_t n_out,
                   int64_t up, int64_t down, int64_t offset, int64_t n_taps, T cval) {
  constexpr int64_t W = kBlock<T>, P = kTile<T>;
  // Polyphase decomposition, each phase reversed so the dot products run forward in time.
  std::vector<int64_t> start(up), count(up);
  std::vector<T> taps(std::max<int64_t>(n_taps, 1));
  for (int64_t k = 0, at = 0; k < up; ++k) {
    count[k] = k < n_taps ? (n_taps - k + up - 1) / up : 0;
    start[k] = at;
    for (int64_t r = 0; r < count[k]; ++r) taps[at + r] = h[k + up * (count[k] - 1 - r)];
    at += count[k];
  }
  std::vector<int64_t> phase(up), first(up);
  for (int64_t c = 0; c < up; ++c) {
    const int64_t q = c * down + offset, i_max = floor_div(q, up);
    phase[c] = q - i_max * up;
    first[c] = i_max - count[phase[c]] + 1;
  }
  std::vector<uint8_t> symmetric(up);
  for (int64_t k = 0; k < up; ++k) {
    const T* t = taps.data() + start[k];
    symmetric[k] = std::equal(t, t + count[k], std::reverse_iterator<const T*>(t + count[k]));
  }
  const std::vector<uint8_t> skip = negligible_residues(taps, up, down, offset, symmetric[0]);
  std::vector<uint8_t> redo(skip.empty() ? 0 : rows, 0);
  Problem<T> p{x, y, rows, n_in, n_out, up, down, offset, n_taps, cval, start.data(),
               count.data(), taps.data(), phase.data(), first.data(), symmetric.data(),
               skip.empty() ? nullptr : skip.data(), redo.data(), 0, 0, 0};
  // Outputs per chunk: a span of about kSpanSteps input steps (at least one tile).
  const int64_t reach = (n_taps + up - 1) / up;
  // A whole number of filter_span's groups of kFoldOutputs * up outputs and of cache lines of
  // outputs (whole 16x16 transpose tiles, no scalar tail in scatter_span).
  const int64_t unit = std::lcm<int64_t>(64 / sizeof(T), kFoldOutputs * up);
  // About kSpanSteps input steps, and at most 4 kSpanSteps outputs (upsampling by 1000
  // would otherwise buffer a million outputs).
  int64_t chunk = std::min((kSpanSteps - std::min(reach, kSpanSteps)) * up / down, 4 * kSpanSteps);
  chunk = std::min(std::max<int64_t>(unit, chunk / unit * unit), (n_out + P - 1) / P * P);
  p.chunk = chunk;
  p.n_chunks = (n_out + chunk - 1) / chunk;
  // The widest span: last_input(m0 + chunk - 1) - first_input(m0) + 1 over every m0.
  p.span_max = ((chunk - 1) * down + n_taps + up - 1) / up + 2;
  const int64_t n_blocks = (rows + W - 1) / W, n_items = n_blocks * p.n_chunks;
  const ItemFn<T> fn = item_fn<T>(cpu_isa());
  // A thread takes a whole block of rows and runs its chunks in order where there are
  // blocks enough to share out: each chunk continues the rows the one before read, whose
  // next lines gather_span has prefetched and the hardware prefetchers follow (6-13%
  // faster on a Zen 3 than chunks of other rows in between; benchmarks/README.md).
  const int64_t per_claim = n_blocks >= 4 * at::get_num_threads() ? p.n_chunks : 1;
  parallel_claim(n_items / per_claim, [&](auto& claim) {
    AlignedArray<T> own;
    T* scratch = work_memory<T>((p.span_max + p.chunk) * W, own);
    for (int64_t unit; (unit = claim()) >= 0;)
      for (int64_t item = unit * per_claim; item < (unit + 1) * per_claim; ++item)
        fn(p, item, scratch);
  });
  for (int64_t r = 0; r < int64_t(redo.size()); ++r)
    if (redo[r]) all_taps_row(p, r, 0, n_out);
}

at::Tensor resample_poly_cpu(const at::Tensor& x, const at::Tensor& taps, int64_t up,
                             int64_t down, int64_t offset, int64_t n_out, double cval) {
  TORCH_CHECK(x.dim() >= 1, "_resample_poly_kernel: expected (..., n_samples), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "_resample_poly_kernel: expected float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(taps.dim() == 1 && taps.numel() >= 1 && taps.scalar_type() == x.scalar_type() &&
                  taps.device().is_cpu(),
              "_resample_poly_kernel: taps must be a non-empty 1-D CPU tensor of x's dtype, got ",
              taps.sizes(), " ", taps.scalar_type());
  TORCH_CHECK(up >= 1 && down >= 1 && n_out >= 0,
              "_resample_poly_kernel: needs up >= 1, down >= 1 and n_out >= 0, got up=", up,
              " down=", down, " n_out=", n_out);
  const at::Tensor xc = x.contiguous(), hc = taps.contiguous();
  // Any leading dims, filtered as rows: (..., n_in) -> (..., n_out).
  const int64_t rows = c10::multiply_integers(xc.sizes().slice(0, xc.dim() - 1));
  std::vector<int64_t> shape = xc.sizes().vec();
  shape.back() = n_out;
  at::Tensor y = at::empty(shape, xc.options());
  if (y.numel() == 0) return y;
  advise_huge_pages(y.data_ptr(), y.nbytes());
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "resample_poly_cpu", [&] {
    resample_rows<scalar_t>(xc.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(),
                            hc.const_data_ptr<scalar_t>(), rows, xc.size(-1), n_out, up,
                            down, offset, hc.numel(), static_cast<scalar_t>(cval));
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastecg, CPU, m) { m.impl("_resample_poly_kernel", &resample_poly_cpu); }

}  // namespace fastecg
