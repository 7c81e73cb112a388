// CPU kernels of fastecg::_sosfilt_kernel and fastecg::_sosfiltfilt_kernel.
//
// Second-order sections in transposed direct form II, SciPy's recurrence
// (scipy/signal/_sosfilt.pyx), state and arithmetic in float64 whatever the input
// dtype; on FMA targets, Butterworth-like cascades run in direct form I between DF2T
// states (pass_direct1: a shorter recurrence chain). A recurrence is sequential in
// time, so the vector lanes run across rows: a block of L rows is filtered together,
// one row per lane of a float64 vector (L = 4 on AVX2: one ymm per state variable; 8
// on AVX-512 and on the baseline ISA). The passes go a tile of kChunk samples at a
// time through a lane-interleaved float64 buffer that stays in L1; on AVX2 and AVX-512
// the forward pass reads the rows themselves and the backward pass writes them (4x4
// transposes in registers, see Rows), on the baseline ISA the rows are transposed into
// and out of the tile by separate copies. The forward output of a block stays in L2 for
// the backward pass, and long rows are done in L2-sized segments (see filtfilt_block).
// The instruction set is chosen at run time by cpu_isa() (isa.h: AVX-512, else AVX2+FMA,
// else baseline x86-64 / any other CPU; FASTECG_CPU_ISA can narrow it, so tests run every
// variant the CPU has). The baseline variant reproduces SciPy's float64 arithmetic bit
// for bit; the FMA variants agree to rounding (~1e-13 of the peak).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <type_traits>

#include "../common/edge_extension.h"
#include "../common/huge_pages.h"
#include "../common/lanes4.h"
#include "../common/parallel.h"
#include "isa.h"

namespace fastecg {
namespace {

// (A struct, not an alias template: GCC drops vector_size on a dependent alias.)
template <int L>
struct VecOf {
  typedef double type __attribute__((vector_size(L * sizeof(double))));
};

// Time steps per tile: the forward pass transposes a tile of the (extended) input
// into the lane-interleaved buffer and filters it while it is in L1; the backward
// pass filters a tile and transposes it straight to the output rows.
constexpr int64_t kChunk = 256;

// Where a pass reads its input and writes its output. Step t of a pass over `len`
// samples is sample t of its span, or sample len - 1 - t when it runs in reverse. The
// loops take steps in groups of the wider span's kGroup (in_group/out_group, x[k] = step
// t + k) and the rest one by one (in/out), so that rows are read and written four
// samples at a time.
// Tile: lane-interleaved float64 samples (L lanes), in place.
template <int L>
struct Tile {
  typedef typename VecOf<L>::type lanes_t;
  double* first;   // step 0's sample
  int64_t stride;  // doubles from one step's sample to the next
  Tile(double* buf, int64_t len, bool reverse)
      : first(reverse ? buf + (len - 1) * L : buf), stride(reverse ? -L : L) {}
  double* at(int64_t t) const { return first + t * stride; }
  FASTECG_INLINE lanes_t in(int64_t t) const {
    lanes_t x;
    std::memcpy(&x, at(t), sizeof x);
    return x;
  }
  FASTECG_INLINE void out(int64_t t, lanes_t y) const { std::memcpy(at(t), &y, sizeof y); }
  // One step at a time: wider groups of wide vectors (8 lanes on SSE2: four registers
  // each) would not fit the registers (slower; benchmarks/CPU_NOTES.md).
  static constexpr int kGroup = 1;
  template <int G> FASTECG_INLINE void in_group(int64_t t, lanes_t (&x)[G]) const {
    for (int k = 0; k < G; ++k) x[k] = in(t + k);
  }
  template <int G> FASTECG_INLINE void out_group(int64_t t, const lanes_t (&y)[G]) const {
    for (int k = 0; k < G; ++k) out(t + k, y[k]);
  }
};

// Eight float32 rows, four samples each, as four vectors of 8 floats: v[j] holds row j
// in its low half and row j + 4 in its high half; the 4x4 transpose inside each half
// turns that into v[k] = sample k of rows 0..7 (and back: it is its own inverse).
typedef float F8 __attribute__((vector_size(32)));
FASTECG_INLINE void transpose_halves(F8 (&v)[4]) {
  const F8 t0 = __builtin_shufflevector(v[0], v[1], 0, 8, 1, 9, 4, 12, 5, 13);
  const F8 t1 = __builtin_shufflevector(v[0], v[1], 2, 10, 3, 11, 6, 14, 7, 15);
  const F8 t2 = __builtin_shufflevector(v[2], v[3], 0, 8, 1, 9, 4, 12, 5, 13);
  const F8 t3 = __builtin_shufflevector(v[2], v[3], 2, 10, 3, 11, 6, 14, 7, 15);
  v[0] = __builtin_shufflevector(t0, t2, 0, 1, 8, 9, 4, 5, 12, 13);
  v[1] = __builtin_shufflevector(t0, t2, 2, 3, 10, 11, 6, 7, 14, 15);
  v[2] = __builtin_shufflevector(t1, t3, 0, 1, 8, 9, 4, 5, 12, 13);
  v[3] = __builtin_shufflevector(t1, t3, 2, 3, 10, 11, 6, 7, 14, 15);
}

// Rows: samples [col, col + len) of L rows of T (float32 or float64; L = 4, or 8 as
// two halves of 4), read widened to float64 and written rounded to T through 4x4
// transposes in registers: the pass works on the rows themselves, with no transposing
// copy through a tile before or after it, which saves a pass over the batch. The
// stores are plain ones: streaming them past the caches (non-temporal stores, which
// the separate copies gained from) made this slower (benchmarks/CPU_NOTES.md).
template <typename T, int L = 4>
struct Rows {
  static_assert(L == 4 || L == 8);
  typedef typename VecOf<L>::type lanes_t;
  T* const* rows;
  int64_t col, len;
  bool reverse;
  // Column of the first sample of the group of four steps from t.
  int64_t group(int64_t t) const { return col + (reverse ? len - 4 - t : t); }
  FASTECG_INLINE lanes_t in(int64_t t) const {
    const int64_t c = col + (reverse ? len - 1 - t : t);
    lanes_t x;
    for (int l = 0; l < L; ++l) x[l] = double(rows[l][c]);
    return x;
  }
  FASTECG_INLINE void out(int64_t t, lanes_t y) const {
    const int64_t c = col + (reverse ? len - 1 - t : t);
    for (int l = 0; l < L; ++l) rows[l][c] = static_cast<T>(y[l]);
  }
  static constexpr int kGroup = 4;
  // 8 float32 rows: transposed as floats, widened once per step (fewer shuffles than
  // two 4x4 transposes of doubles joined into 8-lane vectors).
  static constexpr bool kEightFloats = L == 8 && std::is_same_v<std::remove_const_t<T>, float>;
  template <int G> FASTECG_INLINE void in_group(int64_t t, lanes_t (&x)[G]) const {
    static_assert(G == 4);
    const int64_t c = group(t);
    if constexpr (kEightFloats) {
      F4 r[8];
      for (int l = 0; l < 8; ++l) std::memcpy(&r[l], rows[l] + c, sizeof r[l]);
      F8 v[4];
      for (int j = 0; j < 4; ++j)
        v[j] = __builtin_shufflevector(r[j], r[j + 4], 0, 1, 2, 3, 4, 5, 6, 7);
      transpose_halves(v);
      for (int k = 0; k < 4; ++k) x[k] = __builtin_convertvector(v[reverse ? 3 - k : k], lanes_t);
      return;
    }
    V4 v[L / 4][4];
    for (int h = 0; h < L / 4; ++h) {
      for (int l = 0; l < 4; ++l) v[h][l] = load4(rows[4 * h + l] + c);
      transpose4(v[h]);
    }
    for (int k = 0; k < 4; ++k) {
      const int j = reverse ? 3 - k : k;
      if constexpr (L == 4)
        x[k] = v[0][j];
      else
        x[k] = __builtin_shufflevector(v[0][j], v[1][j], 0, 1, 2, 3, 4, 5, 6, 7);
    }
  }
  template <int G> FASTECG_INLINE void out_group(int64_t t, const lanes_t (&y)[G]) const {
    static_assert(G == 4);
    const int64_t c = group(t);
    if constexpr (kEightFloats) {
      F8 v[4];
      for (int k = 0; k < 4; ++k) v[reverse ? 3 - k : k] = __builtin_convertvector(y[k], F8);
      transpose_halves(v);
      for (int j = 0; j < 4; ++j) {
        const F4 lo = __builtin_shufflevector(v[j], v[j], 0, 1, 2, 3);
        const F4 hi = __builtin_shufflevector(v[j], v[j], 4, 5, 6, 7);
        std::memcpy(rows[j] + c, &lo, sizeof lo);
        std::memcpy(rows[j + 4] + c, &hi, sizeof hi);
      }
      return;
    }
    V4 v[L / 4][4];
    for (int k = 0; k < 4; ++k) {
      const int j = reverse ? 3 - k : k;
      if constexpr (L == 4) {
        v[0][j] = y[k];
      } else {
        v[0][j] = __builtin_shufflevector(y[k], y[k], 0, 1, 2, 3);
        v[1][j] = __builtin_shufflevector(y[k], y[k], 4, 5, 6, 7);
      }
    }
    for (int h = 0; h < L / 4; ++h) {
      transpose4(v[h]);
      for (int l = 0; l < 4; ++l) store4(rows[4 * h + l] + c, v[h][l]);
    }
  }
};

// One pass of a cascade of S sections (S fixed at compile time, so that the loops
// unroll and the state stays in registers) over `len` lane-interleaved samples of L
// lanes, in place. `state` holds 2 * S vectors (z0, z1 per section), updated on
// return. `reverse` walks from the last sample to the first.
//
// UnitTail: sections 1..S-1 have b0 == b2 == 1 exactly (zpk2sos puts the gain in
// the first section; Butterworth/Chebyshev-II/elliptic zeros on the unit circle give
// b = [1, b1, 1]), so 1 * x is not multiplied: the same values, two products fewer
// per section. Fused (FMA targets): z0 = (b1 x + z1) - a1 y, which leaves one FMA
// between y and z0 on the recurrence's critical path (SciPy's order, kept for the
// baseline ISA, is (b1 x - a1 y) + z1). Either way within rounding of SciPy.
//
// ScaledHead (FMA targets, with UnitTail): the first section's numerator is
// symmetric (b2 == b0, as zpk2sos gives for zeros at z = +-1), so it is run as
// b0 * [1, b1 / b0, 1] on the input scaled by b0: the same state, and the product
// b0 * x leaves the recurrence, whose loop-carried chain is then an add and an FMA
// (7 cycles) instead of two FMAs.
template <int S, int L, bool UnitTail, bool Fused, bool ScaledHead = false, class In, class Out>
FASTECG_INLINE void pass_fixed(const In& in, const Out& out, int64_t len, const double* sos,
                               double* state) {
  typedef typename VecOf<L>::type lanes_t;
  lanes_t z0[S], z1[S];
  double b0[S], b1[S], b2[S], a1[S], a2[S];
#pragma GCC unroll 16
  for (int s = 0; s < S; ++s) {
    std::memcpy(&z0[s], state + (2 * s) * L, sizeof(lanes_t));
    std::memcpy(&z1[s], state + (2 * s + 1) * L, sizeof(lanes_t));
    b0[s] = sos[6 * s], b1[s] = sos[6 * s + 1], b2[s] = sos[6 * s + 2];
    a1[s] = sos[6 * s + 4], a2[s] = sos[6 * s + 5];  // a0 == 1
  }
  const double gain = b0[0];
  if constexpr (ScaledHead) b1[0] /= gain;
  auto step = [&](lanes_t x) __attribute__((always_inline)) {
    if constexpr (ScaledHead) x = gain * x;
#pragma GCC unroll 16
    for (int s = 0; s < S; ++s) {
      const bool unit = (UnitTail && s > 0) || ScaledHead;
      const lanes_t y = unit ? x + z0[s] : b0[s] * x + z0[s];
      if constexpr (Fused)
        z0[s] = (b1[s] * x + z1[s]) - a1[s] * y;
      else
        z0[s] = b1[s] * x - a1[s] * y + z1[s];
      z1[s] = unit ? x - a2[s] * y : b2[s] * x - a2[s] * y;
      x = y;
    }
    return x;
  };
  constexpr int G = std::max(In::kGroup, Out::kGroup);
  int64_t t = 0;
  for (; t + G <= len; t += G) {
    lanes_t x[G];
    in.template in_group<G>(t, x);
#pragma GCC unroll 4
    for (int k = 0; k < G; ++k) x[k] = step(x[k]);
    out.template out_group<G>(t, x);
  }
  for (; t < len; ++t) out.out(t, step(in.in(t)));
#pragma GCC unroll 16
  for (int s = 0; s < S; ++s) {
    std::memcpy(state + (2 * s) * L, &z0[s], sizeof(lanes_t));
    std::memcpy(state + (2 * s + 1) * L, &z1[s], sizeof(lanes_t));
  }
}

// The ScaledHead case of pass_fixed (FMA targets, unit tail, symmetric head) in direct
// form I: each section keeps its last two inputs and outputs (x1, x2, y1, y2; one
// section's output is the next one's input, so S + 1 pairs), and
//   y = ((x + q) - a1 y1),   q = (b1 x1 + x2) - a2 y2.
// q is ready a step ahead, so the recurrence's chain is q -> add -> FMA (5.5 cycles a
// step on average) instead of DF2T's 7.5, and the path from a section's input to its
// output is an add and an FMA. Measured on this Zen 3 core, 4 sections, 4 lanes, a
// tile in L1: 8.7 cycles a step against 9.4 for pass_fixed. The operation count is
// the same; the results agree with DF2T to rounding.
// The pass starts and ends in DF2T state (z0, z1): its first two steps run as DF2T
// and record each section's inputs and outputs, and on return
//   z0 = b1 x1 + x2 - a1 y1 - a2 y2,   z1 = x1 - a2 y1
// (b0 == b2 == 1 in the scaled frame of the head section).
template <int S, int L, class In, class Out>
FASTECG_INLINE void pass_direct1(const In& in, const Out& out, int64_t len, const double* sos,
                                 double* state) {
  constexpr int G = std::max(In::kGroup, Out::kGroup);
  if (len < std::max(G, 2)) return pass_fixed<S, L, true, true, true>(in, out, len, sos, state);
  typedef typename VecOf<L>::type lanes_t;
  lanes_t z0[S], z1[S], h1[S + 1], h2[S + 1];  // h[s]: samples at the input of section s
  double b1[S], a1[S], a2[S];
#pragma GCC unroll 16
  for (int s = 0; s < S; ++s) {
    std::memcpy(&z0[s], state + (2 * s) * L, sizeof(lanes_t));
    std::memcpy(&z1[s], state + (2 * s + 1) * L, sizeof(lanes_t));
    b1[s] = sos[6 * s + 1], a1[s] = sos[6 * s + 4], a2[s] = sos[6 * s + 5];
  }
  const double gain = sos[0];
  b1[0] /= gain;
  auto df2t_step = [&](lanes_t x) __attribute__((always_inline)) {  // recording the inputs
    x = gain * x;
#pragma GCC unroll 16
    for (int s = 0; s < S; ++s) {
      h2[s] = h1[s], h1[s] = x;
      const lanes_t y = x + z0[s];
      z0[s] = (b1[s] * x + z1[s]) - a1[s] * y;
      z1[s] = x - a2[s] * y;
      x = y;
    }
    h2[S] = h1[S], h1[S] = x;
    return x;
  };
  auto df1_step = [&](lanes_t x) __attribute__((always_inline)) {
    x = gain * x;
    lanes_t q[S];
#pragma GCC unroll 16
    for (int s = 0; s < S; ++s) q[s] = (b1[s] * h1[s] + h2[s]) - a2[s] * h2[s + 1];
#pragma GCC unroll 16
    for (int s = 0; s < S; ++s) {
      const lanes_t y = (x + q[s]) - a1[s] * h1[s + 1];
      h2[s] = h1[s], h1[s] = x;
      x = y;
    }
    h2[S] = h1[S], h1[S] = x;
    return x;
  };
  lanes_t x[G];
  int64_t t = 0;
  if constexpr (G == 1) {
    for (; t < 2; ++t) out.out(t, df2t_step(in.in(t)));
  } else {  // the first group: two steps in DF2T, the rest in DF1
    in.template in_group<G>(0, x);
    x[0] = df2t_step(x[0]), x[1] = df2t_step(x[1]);
    for (int k = 2; k < G; ++k) x[k] = df1_step(x[k]);
    out.template out_group<G>(0, x);
    t = G;
  }
  for (; t + G <= len; t += G) {
    in.template in_group<G>(t, x);
#pragma GCC unroll 4
    for (int k = 0; k < G; ++k) x[k] = df1_step(x[k]);
    out.template out_group<G>(t, x);
  }
  for (; t < len; ++t) out.out(t, df1_step(in.in(t)));
#pragma GCC unroll 16
  for (int s = 0; s < S; ++s) {
    const lanes_t c0 = (b1[s] * h1[s] + h2[s]) - a1[s] * h1[s + 1] - a2[s] * h2[s + 1];
    const lanes_t c1 = h1[s] - a2[s] * h1[s + 1];
    std::memcpy(state + (2 * s) * L, &c0, sizeof(lanes_t));
    std::memcpy(state + (2 * s + 1) * L, &c1, sizeof(lanes_t));
  }
}

template <int S, int L, bool Fused, class In, class Out>
FASTECG_INLINE void pass_group(const In& in, const Out& out, int64_t len, const double* sos,
                               double* state) {
  bool unit_tail = true;
  for (int s = 1; s < S; ++s) unit_tail = unit_tail && sos[6 * s] == 1.0 && sos[6 * s + 2] == 1.0;
  // Zeros on the unit circle give |b1 / b0| <= 2 (up to rounding); a normal b0 and a
  // bounded ratio keep b0 * x and b1 / b0 free of overflow and subnormals.
  const bool symmetric_head = sos[0] == sos[2] && std::isnormal(sos[0]) &&
                              std::fabs(sos[1]) <= 4.0 * std::fabs(sos[0]);
  if (Fused && unit_tail && symmetric_head)
    pass_direct1<S, L>(in, out, len, sos, state);
  else if (unit_tail)
    pass_fixed<S, L, true, Fused>(in, out, len, sos, state);
  else
    pass_fixed<S, L, false, Fused>(in, out, len, sos, state);
}

// A cascade of up to kGroupSections sections in one pass from `in` to `out`.
constexpr int64_t kGroupSections = 8;
template <int L, bool Fused, class In, class Out>
FASTECG_INLINE void pass_sections(const In& in, const Out& out, int64_t len, const double* sos,
                                  int64_t n_sections, double* state) {
  switch (n_sections) {
    case 1: return pass_group<1, L, Fused>(in, out, len, sos, state);
    case 2: return pass_group<2, L, Fused>(in, out, len, sos, state);
    case 3: return pass_group<3, L, Fused>(in, out, len, sos, state);
    case 4: return pass_group<4, L, Fused>(in, out, len, sos, state);
    case 5: return pass_group<5, L, Fused>(in, out, len, sos, state);
    case 6: return pass_group<6, L, Fused>(in, out, len, sos, state);
    case 7: return pass_group<7, L, Fused>(in, out, len, sos, state);
    default: return pass_group<8, L, Fused>(in, out, len, sos, state);
  }
}

// Any number of sections, in place on a tile: the cascade as passes of up to
// kGroupSections sections each (a cascade is a composition, so splitting it changes
// nothing numerically).
template <int L, bool Fused>
FASTECG_INLINE void pass_body(double* buf, int64_t len, const double* sos, int64_t n_sections,
                              double* state, bool reverse) {
  const Tile<L> tile{buf, len, reverse};
  for (int64_t first = 0; first < n_sections; first += kGroupSections)
    pass_sections<L, Fused>(tile, tile, len, sos + 6 * first,
                            std::min(kGroupSections, n_sections - first), state + 2 * first * L);
}

// Transposing copies between L rows (one pointer per lane) and m lane-interleaved
// samples, widened to / narrowed from float64.
template <int L, typename T>
inline __attribute__((always_inline)) void load_body(const T* const* src, int64_t m,
                                                     double* dst) {
  for (int64_t i = 0; i < m; ++i)
#pragma GCC unroll 16
    for (int l = 0; l < L; ++l) dst[i * L + l] = static_cast<double>(src[l][i]);
}
template <int L, typename T>
inline __attribute__((always_inline)) void store_body(const double* src, int64_t m,
                                                      T* const* dst, int count) {
  for (int l = 0; l < count; ++l) {
    T* d = dst[l];
    for (int64_t i = 0; i < m; ++i) d[i] = static_cast<T>(src[i * L + l]);
  }
}

using PassFn = void (*)(double*, int64_t, const double*, int64_t, double*, bool);
template <typename T>
using LoadFn = void (*)(const T* const*, int64_t, double*);
template <typename T>
using StoreFn = void (*)(const double*, int64_t, T* const*, int);
// Passes that work on four rows themselves (Rows spans, up to kGroupSections sections):
// forward from rows [col, col + len) into a tile, in reverse from a tile into rows, and
// forward from rows into rows.
template <typename T>
using FromRowsFn = void (*)(const T* const*, int64_t, double*, int64_t, const double*, int64_t,
                            double*);
template <typename T>
using ToRowsFn = void (*)(double*, T* const*, int64_t, int64_t, const double*, int64_t, double*);
template <typename T>
using RowsFn = void (*)(const T* const*, T* const*, int64_t, int64_t, const double*, int64_t,
                        double*);

// Baseline x86-64 (SSE2) or any other CPU: 8 lanes.
void pass_generic(double* b, int64_t l, const double* c, int64_t s, double* z, bool r) {
  pass_body<8, false>(b, l, c, s, z, r);
}
template <typename T>
void load_generic(const T* const* src, int64_t m, double* dst) {
  load_body<8, T>(src, m, dst);
}
template <typename T>
void store_generic(const double* src, int64_t m, T* const* dst, int count) {
  store_body<8, T>(src, m, dst, count);
}

#if defined(__x86_64__)
// AVX2 + FMA: 4 lanes, one ymm register per state variable. With 8 lanes (two ymm
// per variable) the 4-section state alone fills the 16 registers and spills; 4
// lanes leave room for the temporaries and keep the recurrence in registers.
__attribute__((target("arch=x86-64-v3"))) void pass_avx2(double* b, int64_t l, const double* c,
                                                          int64_t s, double* z, bool r) {
  pass_body<4, true>(b, l, c, s, z, r);
}
template <typename T>
__attribute__((target("arch=x86-64-v3"))) void from_rows_avx2(const T* const* rows, int64_t col,
                                                               double* buf, int64_t len,
                                                               const double* c, int64_t s,
                                                               double* z) {
  pass_sections<4, true>(Rows<const T>{rows, col, len, false}, Tile<4>{buf, len, false}, len, c,
                         s, z);
}
template <typename T>
__attribute__((target("arch=x86-64-v3"))) void to_rows_avx2(double* buf, T* const* rows,
                                                             int64_t col, int64_t len,
                                                             const double* c, int64_t s,
                                                             double* z) {
  pass_sections<4, true>(Tile<4>{buf, len, true}, Rows<T>{rows, col, len, true}, len, c, s, z);
}
template <typename T>
__attribute__((target("arch=x86-64-v3"))) void rows_avx2(const T* const* src, T* const* dst,
                                                         int64_t col, int64_t len,
                                                         const double* c, int64_t s, double* z) {
  pass_sections<4, true>(Rows<const T>{src, col, len, false}, Rows<T>{dst, col, len, false}, len,
                         c, s, z);
}
// Copies between four rows and a tile, four samples at a time (the tiles at the rows'
// edges, which the passes on rows leave to load, pass and store).
template <class In, class Out>
FASTECG_INLINE void copy_span(const In& in, const Out& out, int64_t len) {
  int64_t t = 0;
  for (; t + 4 <= len; t += 4) {
    typename Out::lanes_t x[4];
    in.template in_group<4>(t, x);
    out.template out_group<4>(t, x);
  }
  for (; t < len; ++t) out.out(t, in.in(t));
}
template <typename T>
__attribute__((target("arch=x86-64-v3"))) void load_avx2(const T* const* src, int64_t m,
                                                          double* dst) {
  copy_span(Rows<const T>{src, 0, m, false}, Tile<4>{dst, m, false}, m);
}
template <typename T>
__attribute__((target("arch=x86-64-v3"))) void store_avx2(const double* src, int64_t m,
                                                           T* const* dst, int count) {
  if (count < 4) return store_body<4, T>(src, m, dst, count);
  copy_span(Tile<4>{const_cast<double*>(src), m, false}, Rows<T>{dst, 0, m, false}, m);
}

// AVX-512 with the passes on rows: 8 lanes, one zmm per state variable, and 32
// registers, so the 4-section state, the transposes and the temporaries stay in them (the
// AVX2 loop spills state to the stack). It is ahead even on cores that run AVX-512 on
// 256-bit units, and ahead of the 4-lane kernels compiled for x86-64-v4 (16 more
// registers, same instructions) (benchmarks/CPU_NOTES.md).
template <typename T>
__attribute__((target("arch=x86-64-v4"))) void from_rows_avx512(const T* const* rows,
                                                                int64_t col, double* buf,
                                                                int64_t len, const double* c,
                                                                int64_t s, double* z) {
  pass_sections<8, true>(Rows<const T, 8>{rows, col, len, false}, Tile<8>{buf, len, false}, len,
                         c, s, z);
}
template <typename T>
__attribute__((target("arch=x86-64-v4"))) void to_rows_avx512(double* buf, T* const* rows,
                                                              int64_t col, int64_t len,
                                                              const double* c, int64_t s,
                                                              double* z) {
  pass_sections<8, true>(Tile<8>{buf, len, true}, Rows<T, 8>{rows, col, len, true}, len, c, s,
                         z);
}
template <typename T>
__attribute__((target("arch=x86-64-v4"))) void rows_avx512(const T* const* src, T* const* dst,
                                                          int64_t col, int64_t len,
                                                          const double* c, int64_t s,
                                                          double* z) {
  pass_sections<8, true>(Rows<const T, 8>{src, col, len, false}, Rows<T, 8>{dst, col, len, false},
                         len, c, s, z);
}

// AVX-512: 8 lanes, one zmm per state variable.
__attribute__((target("arch=x86-64-v4"))) void pass_avx512(double* b, int64_t l, const double* c,
                                                            int64_t s, double* z, bool r) {
  pass_body<8, true>(b, l, c, s, z, r);
}
template <typename T>
__attribute__((target("arch=x86-64-v4"))) void load_avx512(const T* const* src, int64_t m,
                                                            double* dst) {
  load_body<8, T>(src, m, dst);
}
template <typename T>
__attribute__((target("arch=x86-64-v4"))) void store_avx512(const double* src, int64_t m,
                                                             T* const* dst, int count) {
  store_body<8, T>(src, m, dst, count);
}
#endif

// The kernels of one instruction set for rows of dtype T.
template <typename T>
struct Impl {
  int lanes;
  PassFn pass;
  LoadFn<T> load;
  StoreFn<T> store;
  // Passes on the rows themselves, where the ISA has them and the cascade fits one
  // group of sections (else nullptr).
  FromRowsFn<T> from_rows = nullptr;
  ToRowsFn<T> to_rows = nullptr;
  RowsFn<T> rows_pass = nullptr;
};

// The kernels of `isa` for a cascade of n_sections (the passes on rows take one group).
template <typename T>
Impl<T> impl_for(Isa isa, int64_t n_sections) {
#if defined(__x86_64__)
  if (isa == Isa::kAvx512 && n_sections <= kGroupSections)
    return {8, pass_avx512, load_avx512<T>, store_avx512<T>, from_rows_avx512<T>,
            to_rows_avx512<T>, rows_avx512<T>};
  if (isa == Isa::kAvx512) return {8, pass_avx512, load_avx512<T>, store_avx512<T>};
  if (isa == Isa::kAvx2 && n_sections <= kGroupSections)
    return {4, pass_avx2, load_avx2<T>, store_avx2<T>, from_rows_avx2<T>, to_rows_avx2<T>,
            rows_avx2<T>};
  if (isa == Isa::kAvx2) return {4, pass_avx2, load_avx2<T>, store_avx2<T>};
#endif
  return {8, pass_generic, load_generic<T>, store_generic<T>};
}

// Work memory of the calling thread: kept between calls up to 8 MiB (no allocation or
// page faults per call for ECG-length rows), allocated per call above that.
double* work_buffer(size_t n_doubles, AlignedArray<double>& own) {
  constexpr size_t kKeep = (size_t{8} << 20) / sizeof(double);
  thread_local AlignedArray<double> cache;
  if (n_doubles > kKeep) {
    own = AlignedArray<double>(n_doubles);
    return own.get();
  }
  if (cache.size() < n_doubles)
    cache = AlignedArray<double>(std::max<size_t>(n_doubles, 4096));
  return cache.get();
}

void check_sos(const at::Tensor& sos) {
  TORCH_CHECK(sos.dim() == 2 && sos.size(1) == 6 && sos.size(0) >= 1,
              "sos must have shape (n_sections, 6), got ", sos.sizes());
  TORCH_CHECK(sos.scalar_type() == at::kDouble && sos.device().is_cpu(),
              "sos must be a float64 CPU tensor here");
}

void check_signal(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 2, "expected (rows, n_samples), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "expected float32 or float64, got ", x.scalar_type());
}

// Odd/even/constant extensions (pad samples each side) of one row, built in the row's
// dtype as SciPy does (float32 in -> float32 padding).
template <typename T>
void build_pads(const T* x, int64_t n, int64_t pad, int64_t padtype, T* left, T* right) {
  for (int64_t i = 0; i < pad; ++i) left[i] = extension_value(x[0], x[pad - i], padtype);
  for (int64_t j = 0; j < pad; ++j) right[j] = extension_value(x[n - 1], x[n - 2 - j], padtype);
}

// Rows up to this many bytes of lane-interleaved float64 forward output per block are
// filtered in one segment: the forward output stays in L2 (161 KB for 4 lanes of a
// 5000-sample ECG) for the backward pass. Longer rows (Holter) go in segments of
// kSegmentBytes: a first forward sweep keeps only the filter state at each segment's
// start (checkpoints), then the segments are taken last to first, each one's
// forward output recomputed from its checkpoint (the same operations on the same
// state: the same values) into the L2-sized buffer and filtered backwards from
// there. One forward pass more, but no row-length buffer streamed through DRAM.
constexpr int64_t kOneSegmentBytes = int64_t{1} << 20;
constexpr int64_t kSegmentBytes = int64_t{256} << 10;

template <int L>
int64_t segment_length(int64_t len) {
  if (len * L * static_cast<int64_t>(sizeof(double)) <= kOneSegmentBytes) return len;
  return std::max<int64_t>(kChunk, (kSegmentBytes / (L * sizeof(double))) / kChunk * kChunk);
}

// Transpose of build_pads: adds to each row what the backward pass left on its
// extension samples (w: 2 * pad lane-interleaved samples, left then right).
template <typename T>
void fold_extension(const double* w, T* const* rows, int64_t n, int64_t pad, int64_t padtype,
                    int count, int lanes) {
  const double sign = padtype == kPadOdd ? -1.0 : padtype == kPadEven ? 1.0 : 0.0;
  const double edge = padtype == kPadOdd ? 2.0 : padtype == kPadConstant ? 1.0 : 0.0;
  for (int l = 0; l < count; ++l) {
    T* y = rows[l];
    double first = 0.0, last = 0.0;
    for (int64_t i = 0; i < pad; ++i) {
      const double left = w[i * lanes + l], right = w[(pad + i) * lanes + l];
      y[pad - i] = static_cast<T>(y[pad - i] + sign * left);
      y[n - 2 - i] = static_cast<T>(y[n - 2 - i] + sign * right);
      first += left, last += right;
    }
    y[0] = static_cast<T>(y[0] + edge * first);
    y[n - 1] = static_cast<T>(y[n - 1] + edge * last);
  }
}

// sosfiltfilt of rows [r0, r0 + count) (count <= L; spare lanes repeat a row), with
// an extension of pad samples each side.
//
// Adjoint mode (zi == nullptr) computes E^T [B (F E0 x + c1 e_last) + c2 e_0] instead
// (see sosfiltfilt_adjoint_cpu; c: (rows, 2) edge terms): the extension is zeros,
// both passes start from zero state, the backward pass runs through the left
// extension too, and what it leaves in the extensions (kept in wpad) is folded back
// onto the samples the forward extension copied them from.
template <int L, typename T>
void filtfilt_block(const T* xp, T* yp, int64_t n, int64_t r0, int count, int64_t pad,
                    int64_t padtype, const double* sos, int64_t n_sections, const double* zi,
                    const Impl<T>& impl, int64_t seg, double* buf, T* pads, double* zf,
                    double* zb, double* ckpt, double* wpad, const double* c) {
  const bool adjoint = zi == nullptr;
  const int64_t len = n + 2 * pad, zsize = 2 * n_sections * L;
  const int64_t n_seg = (len + seg - 1) / seg;
  const T* xr[L];
  const T* lp[L];
  const T* rp[L];
  T* yr[L];
  for (int l = 0; l < L; ++l) {
    const int64_t r = r0 + std::min(l, count - 1);
    xr[l] = xp + r * n;
    yr[l] = yp + r * n;
    lp[l] = pads + 2 * l * pad;
    rp[l] = pads + (2 * l + 1) * pad;
    if (pad > 0 && adjoint) std::fill(pads + 2 * l * pad, pads + (2 * l + 2) * pad, T(0));
    else if (pad > 0) build_pads(xr[l], n, pad, padtype, pads + 2 * l * pad, pads + (2 * l + 1) * pad);
  }
  // Initial state of a pass: the steady state of a step of height `edge` (zero in
  // adjoint mode).
  auto steady = [&](const double* edge, double* z) {
    for (int64_t s = 0; s < 2 * n_sections; ++s)
      for (int l = 0; l < L; ++l) z[s * L + l] = adjoint ? 0.0 : zi[s] * edge[l];
  };
  // ext[c0, c1) -> dst, segment by segment of the extension (left pad, row, right pad).
  auto fill = [&](int64_t c0, int64_t c1, double* dst) {
    auto piece = [&](int64_t s0, int64_t s1, const T* const* src) {
      const int64_t a = std::max(c0, s0), b = std::min(c1, s1);
      if (a >= b) return;
      const T* p[L];
      for (int l = 0; l < L; ++l) p[l] = src[l] + (a - s0);
      impl.load(p, b - a, dst + (a - c0) * L);
    };
    piece(0, pad, lp);
    piece(pad, pad + n, xr);
    piece(pad + n, len, rp);
  };
  // Forward pass over ext[g0, g1), tile by tile while each tile is in L1, from the
  // steady state of a step of height ext[0] at g0 == 0, else from zf. keep: the
  // output goes to buf[(t - g0) * L]; otherwise only the state is wanted.
  // The part of a tile inside the row is filtered straight from the rows, and,
  // backwards, straight into them; the extensions go through the tile (fill, store).
  const bool on_rows = impl.from_rows != nullptr;
  auto forward = [&](int64_t g0, int64_t g1, bool keep) {
    for (int64_t c0 = g0; c0 < g1; c0 += kChunk) {
      const int64_t c1 = std::min(g1, c0 + kChunk);
      double* tile = keep ? buf + (c0 - g0) * L : buf;
      // The row part [a, b) of the tile (empty, at its end, without passes on rows).
      int64_t a = on_rows ? std::max(c0, pad) : c1, b = on_rows ? std::min(c1, pad + n) : c1;
      if (a >= b) a = b = c1;
      if (c0 < a) {
        fill(c0, a, tile);
        if (c0 == 0) steady(tile, zf);
        impl.pass(tile, a - c0, sos, n_sections, zf, false);
      } else if (c0 == 0) {  // no extension: the row's first sample sets the state
        double first[L];
        for (int l = 0; l < L; ++l) first[l] = static_cast<double>(xr[l][0]);
        steady(first, zf);
      }
      if (a < b) impl.from_rows(xr, a - pad, tile + (a - c0) * L, b - a, sos, n_sections, zf);
      if (b < c1) {
        fill(b, c1, tile + (b - c0) * L);
        impl.pass(tile + (b - c0) * L, c1 - b, sos, n_sections, zf, false);
      }
    }
  };
  if (n_seg > 1) {
    for (int64_t j = 0; j + 1 < n_seg; ++j) {
      if (j > 0) std::memcpy(ckpt + j * zsize, zf, sizeof(double) * zsize);
      forward(j * seg, (j + 1) * seg, false);
    }
    std::memcpy(ckpt + (n_seg - 1) * zsize, zf, sizeof(double) * zsize);
  }
  // Backward pass, segments last to first, from the steady state of the last forward
  // output; tiles aligned on the output's start, each written out while in L1. The
  // left extension never reaches the output, so the pass stops at ext[pad].
  for (int64_t j = n_seg - 1; j >= 0; --j) {
    const int64_t g0 = j * seg, g1 = std::min(len, g0 + seg);
    if (j > 0) std::memcpy(zf, ckpt + j * zsize, sizeof(double) * zsize);
    forward(g0, g1, true);
    if (j == n_seg - 1) {
      double* last = buf + (len - 1 - g0) * L;
      steady(last, zb);
      if (adjoint)
        for (int l = 0; l < count; ++l) last[l] += c[2 * (r0 + l)];
    }
    const int64_t stop = adjoint ? 0 : pad;
    for (int64_t c1 = g1; c1 > std::max(g0, stop);) {
      // Tiles aligned on the output's start (and, below it, kChunk long).
      const int64_t c0 = c1 > pad ? std::max(g0, pad + ((c1 - 1 - pad) / kChunk) * kChunk)
                                  : std::max(g0, c1 - kChunk);
      const int64_t a = std::max(c0, pad), b = std::min(c1, pad + n);
      if (on_rows && count == L && a < b) {  // the extension above, the row, the one below
        if (b < c1) impl.pass(buf + (b - g0) * L, c1 - b, sos, n_sections, zb, true);
        impl.to_rows(buf + (a - g0) * L, yr, a - pad, b - a, sos, n_sections, zb);
        if (c0 < a) impl.pass(buf + (c0 - g0) * L, a - c0, sos, n_sections, zb, true);
      } else {
        impl.pass(buf + (c0 - g0) * L, c1 - c0, sos, n_sections, zb, true);
        if (a < b) {
          T* d[L];
          for (int l = 0; l < L; ++l) d[l] = yr[l] + (a - pad);
          impl.store(buf + (a - g0) * L, b - a, d, count);
        }
      }
      if (adjoint) {  // extension samples: [0, pad) -> wpad[0, pad), [pad + n, len) -> after
        for (int64_t t = c0; t < std::min(c1, pad); ++t)
          std::memcpy(wpad + t * L, buf + (t - g0) * L, sizeof(double) * L);
        for (int64_t t = std::max(c0, pad + n); t < c1; ++t)
          std::memcpy(wpad + (t - n) * L, buf + (t - g0) * L, sizeof(double) * L);
      }
      c1 = c0;
    }
    if (g0 <= stop) break;
  }
  if (!adjoint) return;
  for (int l = 0; l < count; ++l) {
    const double c2 = c[2 * (r0 + l) + 1];
    if (pad > 0) wpad[l] += c2;
    else yr[l][0] = static_cast<T>(yr[l][0] + c2);
  }
  if (pad > 0) fold_extension(wpad, yr, n, pad, padtype, count, L);
}

template <int L, typename T>
void sosfiltfilt_rows(const at::Tensor& x, at::Tensor& y, const double* sos, int64_t n_sections,
                      const double* zi, int64_t pad, int64_t padtype, const Impl<T>& impl,
                      const double* c) {
  const int64_t rows = x.size(0), n = x.size(1), len = n + 2 * pad;
  const T* xp = x.const_data_ptr<T>();
  T* yp = y.mutable_data_ptr<T>();
  const int64_t blocks = (rows + L - 1) / L;
  const int64_t seg = segment_length<L>(len), n_seg = (len + seg - 1) / seg;
  const size_t zsize = 2 * n_sections * L;
  const size_t pad_doubles = (static_cast<size_t>(2 * L * pad) * sizeof(T) + 7) / 8;
  const size_t buf_doubles = static_cast<size_t>(seg) * L;
  const size_t ckpt_doubles = n_seg > 1 ? n_seg * zsize : 0;
  const size_t wpad_doubles = zi == nullptr ? 2 * pad * L : 0;
  const size_t need = buf_doubles + pad_doubles + 2 * zsize + ckpt_doubles + wpad_doubles;
  parallel_claim(blocks, [&](auto& claim) {
    AlignedArray<double> own;
    double* buf = work_buffer(need, own);
    T* pads = reinterpret_cast<T*>(buf + buf_doubles);
    double* zf = buf + buf_doubles + pad_doubles;
    double* zb = zf + zsize;
    double* ckpt = zb + zsize;
    double* wpad = ckpt + ckpt_doubles;
    for (int64_t blk; (blk = claim()) >= 0;) {
      const int64_t r0 = blk * L;
      const int count = static_cast<int>(std::min<int64_t>(L, rows - r0));
      filtfilt_block<L, T>(xp, yp, n, r0, count, pad, padtype, sos, n_sections, zi, impl, seg,
                           buf, pads, zf, zb, ckpt, wpad, c);
    }
  });
}

// zi undefined: the adjoint mode of filtfilt_block, with edge terms c.
at::Tensor filtfilt_rows(const at::Tensor& x, const at::Tensor& sos, const at::Tensor& zi,
                         int64_t padlen, int64_t padtype, const at::Tensor& c) {
  check_signal(x);
  check_sos(sos);
  TORCH_CHECK(padtype >= kPadNone && padtype <= kPadConstant, "bad padtype code ", padtype);
  TORCH_CHECK(padlen >= 0 && (padtype != kPadNone || padlen == 0), "bad padlen ", padlen);
  TORCH_CHECK(x.size(1) > padlen, "signal length ", x.size(1), " must exceed padlen ", padlen);
  const at::Tensor xc = x.contiguous(), sc = sos.contiguous();
  const at::Tensor zc = zi.defined() ? zi.contiguous() : zi;
  const at::Tensor cc = c.defined() ? c.contiguous() : c;
  at::Tensor y = at::empty_like(xc);
  advise_huge_pages(y.data_ptr(), y.nbytes());
  if (xc.size(0) == 0) return y;
  const Isa isa = cpu_isa();
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "sosfiltfilt_cpu", [&] {
    const Impl<scalar_t> impl = impl_for<scalar_t>(isa, sc.size(0));
    const double* s = sc.const_data_ptr<double>();
    const double* z = zc.defined() ? zc.const_data_ptr<double>() : nullptr;
    const double* e = cc.defined() ? cc.const_data_ptr<double>() : nullptr;
    if (impl.lanes == 4)
      sosfiltfilt_rows<4, scalar_t>(xc, y, s, sc.size(0), z, padlen, padtype, impl, e);
    else
      sosfiltfilt_rows<8, scalar_t>(xc, y, s, sc.size(0), z, padlen, padtype, impl, e);
  });
  return y;
}

at::Tensor sosfiltfilt_cpu(const at::Tensor& x, const at::Tensor& sos, const at::Tensor& zi,
                           int64_t padlen, int64_t padtype) {
  TORCH_CHECK(zi.scalar_type() == at::kDouble && zi.numel() == 2 * sos.size(0),
              "zi must be float64 of shape (n_sections, 2)");
  return filtfilt_rows(x, sos, zi, padlen, padtype, at::Tensor());
}

// The transpose of sosfiltfilt: E^T [B (F E0 g + c1 e_last) + c2 e_0], with F, B the
// forward and backward passes from zero state over the extension, E the extension,
// E0 g zero-extended, and edge_terms (rows, 2) = (c1, c2), the dot products through
// which the initial conditions act (computed by the caller, ops/sosfilt.py).
at::Tensor sosfiltfilt_adjoint_cpu(const at::Tensor& g, const at::Tensor& sos,
                                   const at::Tensor& edge_terms, int64_t padlen,
                                   int64_t padtype) {
  TORCH_CHECK(edge_terms.scalar_type() == at::kDouble && edge_terms.dim() == 2 &&
                  edge_terms.size(0) == g.size(0) && edge_terms.size(1) == 2,
              "edge_terms must be float64 of shape (rows, 2), got ", edge_terms.sizes());
  return filtfilt_rows(g, sos, at::Tensor(), padlen, padtype, edge_terms);
}

// One forward pass over rows [r0, r0 + count) from per-row initial state zi (rows,
// n_sections, 2), final state to zf; filtered through an L1 tile.
template <int L, typename T>
void sosfilt_rows(const T* xp, T* yp, int64_t rows, int64_t n, const double* sos,
                  int64_t n_sections, const double* zin, double* zout, const Impl<T>& impl) {
  const int64_t blocks = (rows + L - 1) / L;
  const size_t need = static_cast<size_t>(kChunk) * L + 2 * n_sections * L;
  parallel_claim(blocks, [&](auto& claim) {
    AlignedArray<double> own;
    double* tile = work_buffer(need, own);
    double* z = tile + kChunk * L;
    for (int64_t blk; (blk = claim()) >= 0;) {
      const int64_t r0 = blk * L;
      const int count = static_cast<int>(std::min<int64_t>(L, rows - r0));
      const T* xr[L];
      T* yr[L];
      for (int l = 0; l < L; ++l) {
        const int64_t r = r0 + std::min(l, count - 1);
        xr[l] = xp + r * n;
        yr[l] = yp + r * n;
        for (int64_t s = 0; s < 2 * n_sections; ++s) z[s * L + l] = zin[r * 2 * n_sections + s];
      }
      if (impl.rows_pass != nullptr && count == L) {
        impl.rows_pass(xr, yr, 0, n, sos, n_sections, z);
      } else {
        for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
          const int64_t m = std::min(kChunk, n - c0);
          const T* p[L];
          T* d[L];
          for (int l = 0; l < L; ++l) p[l] = xr[l] + c0, d[l] = yr[l] + c0;
          impl.load(p, m, tile);
          impl.pass(tile, m, sos, n_sections, z, false);
          impl.store(tile, m, d, count);
        }
      }
      for (int l = 0; l < count; ++l)
        for (int64_t s = 0; s < 2 * n_sections; ++s)
          zout[(r0 + l) * 2 * n_sections + s] = z[s * L + l];
    }
  });
}

// y, zf = sosfilt(sos, x, zi) along rows; zi: (rows, n_sections, 2) float64.
std::tuple<at::Tensor, at::Tensor> sosfilt_cpu(const at::Tensor& x, const at::Tensor& sos,
                                               const at::Tensor& zi) {
  check_signal(x);
  check_sos(sos);
  const int64_t rows = x.size(0), n = x.size(1), n_sections = sos.size(0);
  TORCH_CHECK(zi.scalar_type() == at::kDouble && zi.dim() == 3 && zi.size(0) == rows &&
                  zi.size(1) == n_sections && zi.size(2) == 2,
              "zi must be float64 of shape (rows, n_sections, 2), got ", zi.sizes());
  const at::Tensor xc = x.contiguous(), sc = sos.contiguous(), zc = zi.contiguous();
  at::Tensor y = at::empty_like(xc);
  advise_huge_pages(y.data_ptr(), y.nbytes());
  at::Tensor zf = at::empty_like(zc);
  if (rows == 0) return {y, zf};
  if (n == 0) {
    zf.copy_(zc);
    return {y, zf};
  }
  const Isa isa = cpu_isa();
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "sosfilt_cpu", [&] {
    const Impl<scalar_t> impl = impl_for<scalar_t>(isa, n_sections);
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const double* s = sc.const_data_ptr<double>();
    const double* zin = zc.const_data_ptr<double>();
    double* zout = zf.mutable_data_ptr<double>();
    if (impl.lanes == 4)
      sosfilt_rows<4, scalar_t>(xp, yp, rows, n, s, n_sections, zin, zout, impl);
    else
      sosfilt_rows<8, scalar_t>(xp, yp, rows, n, s, n_sections, zin, zout, impl);
  });
  return {y, zf};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastecg, CPU, m) {
  m.impl("_sosfiltfilt_kernel", &sosfiltfilt_cpu);
  m.impl("_sosfilt_kernel", &sosfilt_cpu);
  m.impl("_sosfiltfilt_adjoint_kernel", &sosfiltfilt_adjoint_cpu);
}

}  // namespace fastecg
