// CPU kernel of fastecg::_augment_kernel: the fused augmentation pass. An AugmenterManager
// compiles its steps into per-sample parameters (drawn as the torch backend
// draws them) and a list of ops (python/fastecg/augmenters/fused.py), which this kernel
// applies in one pass over the batch:
//
//   source:   x[n]
//   ops:      lead mixing (a per-sample (L_out x L_in) matrix: VCG rotation, lead sets),
//             per-lead affine maps (flip, gain, lead masks, renormalisation),
//             sums of sinusoids from a shared basis plus counter-based noise (baseline
//             wander, powerline), counter-based Gaussian noise, band-limited noise (a
//             "valid" FIR of a counter-based noise row K - 1 samples longer: EMG noise),
//             time masks, rows added from a buffer, and time warps (stretch/compress, shift, crop:
//             x at m * ratio for m = t + offset, linear interpolation, zero outside
//             0 <= m < limit), and Mixup's pairing: lerp(y[partner[n]], y[n], lam[n])
//             of the signal so far (evaluated beforehand for the paired samples, once
//             each, into a buffer of their size).
//
// The warps and pairings split the ops into stages. Output is produced in blocks of time per sample;
// a stage that starts with a warp asks the stage before it for the contiguous span of
// its input the block's positions fall in (warps are monotone), so every intermediate
// lives in a per-thread block buffer and the batch is read and written once (Mixup's
// paired samples: their signal before the pairing also written and read once more).
//
// Noise is never materialised: elements 2m and 2m + 1 of row r are the two outputs of
// Box-Muller (radius times cosine, radius times sine) on the 16-bit halves of
// lowbias32(m * (k1 | 1) + k2), with the row's Philox words (k1, k2): the torch backend's
// hash_normal (python/fastecg/augmenters/_random.py). Each half takes only 65536 values,
// so the radius sqrt(-2 ln u), the cosine and the sine come from tables computed once,
// rounded as torch's float32 (or float64) arithmetic rounds them; the float32 AVX2 loop
// computes them by polynomials instead (within ~1 ulp of the tables).
//
// Arithmetic is in the input's dtype, as the torch backend's; sums of statistics (the
// optional per-lead min, max, sum and sum of squares of the output, which the manager
// uses for the steps that depend on the signal) in double.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// The vector helpers are always inlined into their ISA's caller, so the ABI GCC warns
// about (vector arguments and results across ISAs) is never used.
#pragma GCC diagnostic ignored "-Wpsabi"

#include "../common/codes.h"
#include "../common/hash_noise.h"
#include "../common/huge_pages.h"
#include "../common/lanes4.h"
#include "../common/parallel.h"
#include "isa.h"

namespace fastecg {
namespace {

// The ops (AugmentCode, csrc/common/codes.h) and their tensors:
//   kLeadMix     matrix (N, L_out, L_in) float64
//   kLeadAffine  gain (N, L), shift (N, L) in x's dtype
//   kSines       coef (N, L, J), basis (J, T); noise keys (N, L, 2) int64 and std (N, L),
//                or two empty tensors
//   kNoise       keys (N, L, 2) int64, std (N, L)
//   kTimeMask    start (N, S), end (N, S) int64; floats: value
//   kAddRows     rows (N, L, T)
//   kWarp        offset (N,) int64, limit (N,) int64, ratio (N,) float64; ints: output
//                length
//   kPair        partner (N,) int64, lam (N,) float64
//   kFirNoise    keys (N, L, 2) int64, std (N, L), taps (K,)
//   kRenorm      mean (N, W), std (N, W) in x's dtype, applied (N,) int64, W = L or 1;
//                ints: per lead (1) or per sample (0)
//   kSinesPtp    kSines's, with the coefficients and noise std of lead l of sample n
//                relative to the peak-to-peak of x[n, l]: the pass's first op only

constexpr int64_t kBlock = 256;   // output samples per block (a block of 12 leads: 12 KB)
constexpr int64_t kChunk = 2048;  // output samples per work item

template <typename T>
struct Op {
  int64_t code = -1;
  int64_t lin = 0, lout = 0;  // leads in and out
  int64_t tlen = 0;           // length of the stage's time axis (the op's)
  const double* mat = nullptr;
  const T* a = nullptr;  // gain / coef / rows / std
  const T* b = nullptr;  // shift / basis / FIR taps
  const T* c = nullptr;  // sines' noise std
  int64_t j = 0;         // sines per row / masks per sample / FIR taps
  const int64_t* k0 = nullptr;  // noise keys / mask starts / warp offsets
  const int64_t* k1 = nullptr;  // mask ends / warp limits
  const double* ratio = nullptr;  // warp ratios / pairing weights
  T value = T(0);
  int64_t tin = 0;  // warp: input length
  bool ptp = false;  // kSines: coefficients and noise std relative to the source's ptp
};

template <typename T>
struct Stage {
  Op<T> warp;  // code -1: the source; kWarp, kPair or kRenorm: how the stage reads the one
               // before
  std::vector<Op<T>> ops;
  int64_t lin = 0, lout = 0, lmax = 0, tlen = 0;
  int64_t taps = 0;  // most FIR taps of an op (its noise needs taps - 1 extra samples)
};

// Box-Muller's radius, cosine and sine for each 16-bit half (csrc/common/hash_noise.h,
// shared with the CUDA kernel), built once per dtype.
template <typename T>
struct NoiseTables {
  std::vector<T> radius, cosine;
  NoiseTables() : radius(kNoiseTable), cosine(2 * kNoiseTable) {  // cosines, then sines
    fill_noise_tables(radius.data(), cosine.data());
  }
};

template <typename T>
const NoiseTables<T>& noise_tables() {
  static const NoiseTables<T> tables;
  return tables;
}

template <typename T>
const T* radius_table() {
  return noise_tables<T>().radius.data();
}

template <typename T>
const T* cosine_table() {
  return noise_tables<T>().cosine.data();
}

// 32 bytes of T in one GCC vector (a struct: GCC drops vector_size on a dependent alias
// template); 64-byte GCC vectors go through the stack on AVX2.
template <typename T> struct Vec32 {
  typedef T type __attribute__((vector_size(32)));
};
template <typename T> constexpr int64_t kVec32 = 32 / sizeof(T);

#if defined(__x86_64__)
// Box-Muller on eight 16-bit halves at once, by polynomials instead of the tables: gathers
// from the 768 KB of tables miss a 512 KB L2 (Zen 3) and cost ~7 cycles a value; these
// vector ops leave the L2 to the signal, and one reduction serves the cosine and the sine.
// Over every 16-bit value they are within 1.2e-7 (relative) of the radius table and 6e-8
// of the cosine table; tests/augmenters/test_fused.py holds the noise within one float32
// rounding of the torch backend's.

// sqrt(-2 ln u), u = (hi + 0.5) / 65536: ln u = e ln 2 + ln(1 + f) with u = (1 + f) 2**e,
// 1 + f in [sqrt(1/2), sqrt(2)), so u near 1 keeps its digits; ln(1 + f) by Cephes' logf
// polynomial, ln 2 in two parts.
FASTECG_TARGET_AVX2 FASTECG_INLINE __m256 box_muller_radius(__m256i hi) {
  const __m256 u = _mm256_mul_ps(_mm256_add_ps(_mm256_cvtepi32_ps(hi), _mm256_set1_ps(0.5f)),
                                 _mm256_set1_ps(1.0f / 65536));
  const __m256i bits = _mm256_castps_si256(u);
  __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(126));
  const __m256 m = _mm256_castsi256_ps(_mm256_or_si256(
      _mm256_and_si256(bits, _mm256_set1_epi32(0x007FFFFF)), _mm256_set1_epi32(0x3F000000)));
  const __m256 small = _mm256_cmp_ps(m, _mm256_set1_ps(0.707106781186547524f), _CMP_LT_OQ);
  e = _mm256_add_epi32(e, _mm256_castps_si256(small));  // all-ones is -1
  const __m256 f = _mm256_sub_ps(_mm256_add_ps(m, _mm256_and_ps(m, small)), _mm256_set1_ps(1.0f));
  const __m256 ef = _mm256_cvtepi32_ps(e);
  const __m256 z = _mm256_mul_ps(f, f);
  // The polynomial by Estrin's scheme: four multiply-adds deep instead of Horner's eight
  // (the noise op 1.03-1.04x; the values within the same one rounding of the table).
  const __m256 z2 = _mm256_mul_ps(z, z);
  const __m256 b01 =
      _mm256_fmadd_ps(_mm256_set1_ps(-2.4999993993E-1f), f, _mm256_set1_ps(3.3333331174E-1f));
  const __m256 b23 =
      _mm256_fmadd_ps(_mm256_set1_ps(-1.6668057665E-1f), f, _mm256_set1_ps(2.0000714765E-1f));
  const __m256 b45 =
      _mm256_fmadd_ps(_mm256_set1_ps(-1.2420140846E-1f), f, _mm256_set1_ps(1.4249322787E-1f));
  const __m256 b67 =
      _mm256_fmadd_ps(_mm256_set1_ps(-1.1514610310E-1f), f, _mm256_set1_ps(1.1676998740E-1f));
  const __m256 c03 = _mm256_fmadd_ps(b23, z, b01);
  const __m256 c48 =
      _mm256_fmadd_ps(_mm256_set1_ps(7.0376836292E-2f), z2, _mm256_fmadd_ps(b67, z, b45));
  const __m256 p = _mm256_fmadd_ps(c48, z2, c03);
  __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, f), z);
  y = _mm256_fmadd_ps(ef, _mm256_set1_ps(-2.12194440e-4f), y);
  y = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), y);
  const __m256 lg = _mm256_fmadd_ps(ef, _mm256_set1_ps(0.693359375f), _mm256_add_ps(f, y));
  return _mm256_sqrt_ps(_mm256_mul_ps(lg, _mm256_set1_ps(-2.0f)));
}

// cos and sin of lo * step, the angle rounded to float32 as the tables' (and torch's) is:
// reduced by the nearest multiple q of pi/2 (pi/2 in three parts, exact for angles < 2 pi),
// then Cephes' sinf/cosf polynomials on [-pi/4, pi/4], both from the one reduction.
FASTECG_TARGET_AVX2 FASTECG_INLINE void box_muller_cos_sin(__m256i lo, __m256& cosine,
                                                           __m256& sine) {
  const __m256 a = _mm256_mul_ps(_mm256_cvtepi32_ps(lo),
                                 _mm256_set1_ps(static_cast<float>(2 * M_PI / 65536)));
  const __m256 qf = _mm256_round_ps(_mm256_mul_ps(a, _mm256_set1_ps(0.636619772367581343f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(qf, _mm256_set1_ps(1.5703125f), a);
  r = _mm256_fnmadd_ps(qf, _mm256_set1_ps(4.837512969970703125e-4f), r);
  r = _mm256_fnmadd_ps(qf, _mm256_set1_ps(7.54978995489188216e-8f), r);
  const __m256i q = _mm256_cvtps_epi32(qf);
  const __m256 z = _mm256_mul_ps(r, r);
  __m256 c = _mm256_set1_ps(2.443315711809948E-005f);
  c = _mm256_fmadd_ps(c, z, _mm256_set1_ps(-1.388731625493765E-003f));
  c = _mm256_fmadd_ps(c, z, _mm256_set1_ps(4.166664568298827E-002f));
  c = _mm256_fnmadd_ps(z, _mm256_set1_ps(0.5f), _mm256_mul_ps(_mm256_mul_ps(c, z), z));
  c = _mm256_add_ps(c, _mm256_set1_ps(1.0f));
  __m256 s = _mm256_set1_ps(-1.9515295891E-4f);
  s = _mm256_fmadd_ps(s, z, _mm256_set1_ps(8.3321608736E-3f));
  s = _mm256_fmadd_ps(s, z, _mm256_set1_ps(-1.6666654611E-1f));
  s = _mm256_fmadd_ps(_mm256_mul_ps(s, z), r, r);
  // For q mod 4 = 0, 1, 2, 3: cos(r + q pi/2) = cos r, -sin r, -cos r, sin r and
  // sin(r + q pi/2) = sin r, cos r, -sin r, -cos r.
  const __m256 odd = _mm256_castsi256_ps(_mm256_slli_epi32(q, 31));
  const __m256i top = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  const __m256i q1 = _mm256_add_epi32(q, _mm256_set1_epi32(1));
  const __m256i cos_sign = _mm256_and_si256(_mm256_slli_epi32(q1, 30), top);
  const __m256i sin_sign = _mm256_and_si256(_mm256_slli_epi32(q, 30), top);
  cosine = _mm256_xor_ps(_mm256_blendv_ps(c, s, odd), _mm256_castsi256_ps(cos_sign));
  sine = _mm256_xor_ps(_mm256_blendv_ps(s, c, odd), _mm256_castsi256_ps(sin_sign));
}

// Sixteen float32 samples at a time of add_noise_row from j0 (even): the eight hashes of
// pairs j0 / 2 .. j0 / 2 + 7, each giving a cosine and a sine sample; returns how many
// samples it did.
// With `in`, out = (y + noise) + in instead (y left as it is): the wander's sum of
// sinusoids, its noise and its input in one pass over the row.
FASTECG_TARGET_AVX2 __attribute__((noinline)) int64_t add_noise_row_avx2(
    float* y, int64_t j0, int64_t len, uint32_t k1, uint32_t k2, float sd,
    const float* in = nullptr, float* out = nullptr) {
  const __m256i step = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i m1 = _mm256_set1_epi32(static_cast<int>(k1));
  const __m256i m2 = _mm256_set1_epi32(static_cast<int>(k2));
  const __m256i c1 = _mm256_set1_epi32(0x7FEB352D);
  const __m256i c2 = _mm256_set1_epi32(static_cast<int>(0x846CA68Bu));
  const __m256i low = _mm256_set1_epi32(0xFFFF);
  const __m256 s = _mm256_set1_ps(sd);
  int64_t start = 0;
  for (; start + 16 <= len; start += 16) {
    const __m256i j = _mm256_add_epi32(
        _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>((j0 + start) >> 1))), step);
    __m256i h = _mm256_add_epi32(_mm256_mullo_epi32(j, m1), m2);
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
    h = _mm256_mullo_epi32(h, c1);
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 15));
    h = _mm256_mullo_epi32(h, c2);
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
    const __m256 r = box_muller_radius(_mm256_srli_epi32(h, 16));
    __m256 cosine, sine;
    box_muller_cos_sin(_mm256_and_si256(h, low), cosine, sine);
    const __m256 zc = _mm256_mul_ps(r, cosine), zs = _mm256_mul_ps(r, sine);
    // (c0 s0 c1 s1 | c4 s4 c5 s5) and (c2 s2 c3 s3 | c6 s6 c7 s7), then in order.
    const __m256 lo = _mm256_unpacklo_ps(zc, zs), hi = _mm256_unpackhi_ps(zc, zs);
    const __m256 z0 = _mm256_permute2f128_ps(lo, hi, 0x20);
    const __m256 z1 = _mm256_permute2f128_ps(lo, hi, 0x31);
    const __m256 y0 = _mm256_add_ps(_mm256_loadu_ps(y + start), _mm256_mul_ps(z0, s));
    const __m256 y1 = _mm256_add_ps(_mm256_loadu_ps(y + start + 8), _mm256_mul_ps(z1, s));
    if (in != nullptr) {
      _mm256_storeu_ps(out + start, _mm256_add_ps(y0, _mm256_loadu_ps(in + start)));
      _mm256_storeu_ps(out + start + 8, _mm256_add_ps(y1, _mm256_loadu_ps(in + start + 8)));
    } else {
      _mm256_storeu_ps(y + start, y0);
      _mm256_storeu_ps(y + start + 8, y1);
    }
  }
  return start;
}
#endif

// y[t] += std * z(t0 + t) for one row; with `in`, out[t] = y[t] + in[t] too (in one pass
// where the vectors run).
template <typename Tag, typename T>
FASTECG_INLINE void add_noise_row(Tag, T* y, int64_t t0, int64_t len, const int64_t* keys, T sd,
                                  const T* radius, const T* cos_sin, const T* in = nullptr,
                                  T* out = nullptr) {
  const uint32_t k1 = static_cast<uint32_t>(keys[0]) | 1u;
  const uint32_t k2 = static_cast<uint32_t>(keys[1]);
  const auto add_in = [&](int64_t from, int64_t to) {
    if (in != nullptr)
      for (int64_t i = from; i < to; ++i) out[i] = y[i] + in[i];
  };
  int64_t t = 0;
#if defined(__x86_64__)
  if constexpr (Tag::isa >= Isa::kAvx2 && std::is_same_v<T, float>) {
    // The vectors start on pairs and take 16 samples; an odd start and a short end are
    // computed as a whole vector aside and the part inside the row added (the scalar
    // path's table lookups miss the cache: they cost ~10% of the noise at 5000 samples).
    float part[16];
    const auto vector_at = [&](int64_t j0) {  // samples j0 .. j0 + 15 (j0 even) into part
      std::fill(part, part + 16, 0.0f);
      add_noise_row_avx2(part, j0, 16, k1, k2, sd);
    };
    if (len > 0 && (t0 & 1)) {
      vector_at(t0 - 1);
      t = std::min<int64_t>(len, 15);
      for (int64_t i = 0; i < t; ++i) y[i] += part[i + 1];
      add_in(0, t);
    }
    t += in != nullptr
             ? add_noise_row_avx2(y + t, t0 + t, len - t, k1, k2, sd, in + t, out + t)
             : add_noise_row_avx2(y + t, t0 + t, len - t, k1, k2, sd);
    if (t < len) {
      vector_at(t0 + t);
      for (int64_t i = 0; t + i < len; ++i) y[t + i] += part[i];
      add_in(t, len);
      t = len;
    }
  }
#endif
  const int64_t rest = t;
  for (; t < len; ++t) y[t] += hash_normal_value(t0 + t, k1, k2, radius, cos_sin) * sd;
  add_in(rest, len);
}

// y[0 .. W) += a * sd.
template <typename T, typename VT>
FASTECG_INLINE void add_scaled(T* y, VT a, T sd) {
  VT r;
  std::memcpy(&r, y, sizeof r);
  r += a * sd;
  std::memcpy(y, &r, sizeof r);
}

// y[t] += sd * sum_k h[k] * z[t + K - 1 - k] for the ACC vectors of outputs at y: each
// tap one broadcast and ACC unaligned loads of z; ACC independent sums in registers
// (eight keep two FMA units busy through the multiply-add's latency).
template <int ACC, typename T>
FASTECG_INLINE void fir_chunk(T* y, const T* z, const T* h, int64_t K, T sd) {
  typedef typename Vec32<T>::type VT;
  constexpr int64_t W = kVec32<T>;
  VT a[ACC] = {};
  const T* zt = z + K - 1;
  for (int64_t k = 0; k < K; ++k) {
    const T hk = h[k];
#pragma GCC unroll 8
    for (int q = 0; q < ACC; ++q) {
      VT v;
      std::memcpy(&v, zt - k + q * W, sizeof v);
      a[q] += hk * v;
    }
  }
#pragma GCC unroll 8
  for (int q = 0; q < ACC; ++q) add_scaled(y + q * W, a[q], sd);
}

// Q vectors of samples of one row's sum of sinusoids, basis rows tlen apart, coefficients
// c[j] * scale, into out (plus in, where given). Q independent sums in registers: one
// chain of dependent multiply-adds would wait out the latency of each; every sample sums
// over the sinusoids in the same order whatever Q.
template <int Q, typename T>
FASTECG_INLINE void sines_chunk(const T* basis, int64_t tlen, const T* c, int64_t n_sines,
                                T scale, const T* in, T* out) {
  typedef typename Vec32<T>::type VT;
  constexpr int64_t W = kVec32<T>;
  VT sum[Q] = {};
  for (int64_t j = 0; j < n_sines; ++j) {
    const T cj = c[j] * scale;
#pragma GCC unroll 4
    for (int q = 0; q < Q; ++q) {
      VT b;
      std::memcpy(&b, basis + j * tlen + q * W, sizeof b);
      sum[q] += cj * b;
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < Q; ++q) {
    if (in != nullptr) {
      VT v;
      std::memcpy(&v, in + q * W, sizeof v);
      sum[q] = sum[q] + v;
    }
    std::memcpy(out + q * W, &sum[q], sizeof sum[q]);
  }
}

// y[t] += sd * sum_k h[k] * z[t + K - 1 - k] for t < len, z (len + K - 1 samples).
template <typename T>
FASTECG_INLINE void fir_row(T* y, int64_t len, const T* z, const T* h, int64_t K, T sd) {
  constexpr int64_t W = kVec32<T>;
  int64_t t = 0;
  for (; t + 8 * W <= len; t += 8 * W) fir_chunk<8>(y + t, z + t, h, K, sd);
  for (; t + W <= len; t += W) fir_chunk<1>(y + t, z + t, h, K, sd);
  for (; t < len; ++t) {
    T acc = T(0);
    for (int64_t k = 0; k < K; ++k) acc += h[k] * z[t + K - 1 - k];
    y[t] += acc * sd;
  }
}

// Whether kSines adds nothing to row l of sample n: every coefficient and the noise std 0.
template <typename T>
FASTECG_INLINE bool sines_row_silent(const Op<T>& op, int64_t n, int64_t l) {
  const T* c = op.a + (n * op.lin + l) * op.j;
  for (int64_t j = 0; j < op.j; ++j)
    if (c[j] != T(0)) return false;
  return op.c == nullptr || op.c[n * op.lin + l] == T(0);
}

// One point-wise op on a block: rows of `len` samples at times t0.., `scratch` holds at
// least max(lin, lout) rows and len + taps - 1 samples. `src` (rows src_ld apart) is the
// op's input: y itself, or for kSines other rows (the source's: the pass's first op adds
// its sinusoids to them as it writes y, instead of a copy into y first).
template <typename Tag, typename T>
FASTECG_INLINE void run_op_body(Tag tag, const Op<T>& op, int64_t n, int64_t t0, int64_t len,
                                T* y, int64_t ld, const T* src, int64_t src_ld, T* scratch,
                                const T* ptp) {
  switch (op.code) {
    case kLeadMix: {
      const double* m = op.mat + n * op.lout * op.lin;
      for (int64_t o = 0; o < op.lout; ++o) {
        T* out = scratch + o * len;
        std::fill(out, out + len, T(0));
        for (int64_t i = 0; i < op.lin; ++i) {
          const T w = static_cast<T>(m[o * op.lin + i]);
          if (w == T(0)) continue;
          const T* in = y + i * ld;
          for (int64_t t = 0; t < len; ++t) out[t] += w * in[t];
        }
      }
      for (int64_t o = 0; o < op.lout; ++o)
        std::memcpy(y + o * ld, scratch + o * len, sizeof(T) * len);
      break;
    }
    case kLeadAffine: {
      const T* g = op.a + n * op.lin;
      const T* h = op.b + n * op.lin;
      for (int64_t l = 0; l < op.lin; ++l) {
        const T gl = g[l], hl = h[l];
        if (gl == T(1) && hl == T(0)) continue;  // a sample the step leaves alone
        T* row = y + l * ld;
        if (hl == T(0)) {
          for (int64_t t = 0; t < len; ++t) row[t] = row[t] * gl;
        } else {
          for (int64_t t = 0; t < len; ++t) row[t] = row[t] * gl + hl;
        }
      }
      break;
    }
    case kSines: {
      const T* radius = radius_table<T>();
      const T* cosine = cosine_table<T>();
      T* acc = scratch;
      for (int64_t l = 0; l < op.lin; ++l) {
        if (sines_row_silent(op, n, l)) {  // a row the step leaves alone: y + 0 is y
          if (src != y) std::memcpy(y + l * ld, src + l * src_ld, sizeof(T) * len);
          continue;
        }
        const T* c = op.a + (n * op.lin + l) * op.j;
        const T noise_rel = op.c != nullptr ? op.c[n * op.lin + l] : T(0);
        // kSinesPtp: the coefficients are relative to the lead's peak-to-peak (the
        // torch code multiplies in float64 before rounding: ~1 ulp apart)
        const T scale = op.ptp ? ptp[l] : T(1);
        const T noise_std = noise_rel * scale;
        // Four vectors of samples at a time (sines_chunk), then one, then single samples.
        constexpr int64_t W = kVec32<T>;
        const T* basis = op.b + t0;
        const bool noisy = op.c != nullptr && noise_std != T(0);
        // Without noise the sum goes straight onto the input; with it, the noise loop adds
        // the input as it stores.
        T* out = noisy ? acc : y + l * ld;
        const T* in = src + l * src_ld;
        int64_t t = 0;
        for (; t + 4 * W <= len; t += 4 * W)
          sines_chunk<4>(basis + t, op.tlen, c, op.j, scale, noisy ? nullptr : in + t, out + t);
        for (; t + W <= len; t += W)
          sines_chunk<1>(basis + t, op.tlen, c, op.j, scale, noisy ? nullptr : in + t, out + t);
        for (; t < len; ++t) {
          T sum = T(0);
          for (int64_t j = 0; j < op.j; ++j) sum += (c[j] * scale) * basis[j * op.tlen + t];
          out[t] = noisy ? sum : sum + in[t];
        }
        if (noisy) {
          add_noise_row(tag, acc, t0, len, op.k0 + (n * op.lin + l) * 2, noise_std, radius,
                        cosine, in, y + l * ld);
        }
      }
      break;
    }
    case kNoise: {
      const T* radius = radius_table<T>();
      const T* cosine = cosine_table<T>();
      for (int64_t l = 0; l < op.lin; ++l) {
        const T s = op.a[n * op.lin + l];
        if (s == T(0)) continue;
        add_noise_row(tag, y + l * ld, t0, len, op.k0 + (n * op.lin + l) * 2, s, radius, cosine);
      }
      break;
    }
    case kTimeMask: {
      for (int64_t i = 0; i < op.j; ++i) {
        const int64_t s = std::max(op.k0[n * op.j + i], t0) - t0;
        const int64_t e = std::min(op.k1[n * op.j + i], t0 + len) - t0;
        if (s >= e) continue;
        for (int64_t l = 0; l < op.lin; ++l) std::fill(y + l * ld + s, y + l * ld + e, op.value);
      }
      break;
    }
    case kAddRows: {
      for (int64_t l = 0; l < op.lin; ++l) {
        const T* r = op.a + (n * op.lin + l) * op.tlen + t0;
        T* row = y + l * ld;
        for (int64_t t = 0; t < len; ++t) row[t] += r[t];
      }
      break;
    }
    case kFirNoise: {
      // The block's own noise span t0 .. t0 + len + K - 2: no state crosses blocks.
      const T* radius = radius_table<T>();
      const T* cosine = cosine_table<T>();
      const int64_t span = len + op.j - 1;
      for (int64_t l = 0; l < op.lin; ++l) {
        const T s = op.a[n * op.lin + l];
        if (s == T(0)) continue;
        std::fill(scratch, scratch + span, T(0));
        add_noise_row(tag, scratch, t0, span, op.k0 + (n * op.lin + l) * 2, T(1), radius,
                      cosine);
        fir_row(y + l * ld, len, scratch, op.b, op.j, s);
      }
      break;
    }
    default:
      break;
  }
}

FASTECG_PER_ISA(run_op, run_op_body)

// The valid output times [v0, v1) of a warp's block t0 .. t0 + len (0 <= t + offset <
// limit) and the span [lo, hi] of input they read (warps are monotone: the first and the
// last valid times bound it); v0 == v1: none.
template <typename T>
FASTECG_INLINE void warp_span(const Op<T>& w, int64_t n, int64_t t0, int64_t len, int64_t& v0,
                              int64_t& v1, int64_t& lo, int64_t& hi) {
  const int64_t offset = w.k0[n], limit = w.k1[n];
  const double ratio = w.ratio[n];
  v0 = std::clamp<int64_t>(-offset - t0, 0, len);
  v1 = std::clamp<int64_t>(limit - offset - t0, v0, len);
  if (v0 == v1) return;
  auto first = [&](int64_t t) {
    const double src = static_cast<double>(t0 + t + offset) * ratio;
    return static_cast<int64_t>(
        std::min(std::max(std::floor(src), 0.0), static_cast<double>(w.tin - 1)));
  };
  lo = first(v0);
  hi = std::min(first(v1 - 1) + 1, w.tin - 1);
}

#if defined(__x86_64__)
// o[t] = lerp(row[i0[t]], row[min(i0[t] + 1, last)], frac[t]) for t in [v0, v1), a
// vector of samples at a time, the two neighbours permuted from a window of inputs or,
// where they spread wider (float64; a ratio near 2; a row's end), gathered (the scalar
// loop's indexed loads kept it at several cycles a sample); torch.lerp's vector form
// (fmadd below a weight of 0.5, fnmadd from the end above). Returns where it stopped.
template <typename T>
FASTECG_TARGET_AVX2 __attribute__((noinline)) int64_t lerp_gather_avx2(
    const T* row, const int32_t* i0, const T* frac, int32_t last, int64_t v0, int64_t v1,
    T* o) {
  int64_t t = v0;
  const __m256i top = _mm256_set1_epi32(last);
  if constexpr (std::is_same_v<T, float>) {
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    const __m256i step = _mm256_set1_epi32(1);
    const __m256i seven = _mm256_set1_epi32(7);
    for (; t + 8 <= v1; t += 8) {
      const __m256i ia = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(i0 + t));
      const __m256i ib = _mm256_min_epi32(_mm256_add_epi32(ia, step), top);
      const int32_t base = i0[t];
      __m256 a, b;
      if (i0[t + 7] - base < 15 && last - base >= 15) {
        // The warps' ratios stay well under 2: both neighbours of the 8 outputs lie among
        // the 16 inputs from the first one, which two loads and a one-register permute
        // from each (the lane picked by the index's low 3 bits, the register by bit 3)
        // fetch at a fraction of two gathers' cost.
        const __m256 lo = _mm256_loadu_ps(row + base);
        const __m256 hi = _mm256_loadu_ps(row + base + 8);
        const __m256i first = _mm256_set1_epi32(base);
        const __m256i ra = _mm256_sub_epi32(ia, first), rb = _mm256_sub_epi32(ib, first);
        a = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, ra), _mm256_permutevar8x32_ps(hi, ra),
                             _mm256_castsi256_ps(_mm256_cmpgt_epi32(ra, seven)));
        b = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, rb), _mm256_permutevar8x32_ps(hi, rb),
                             _mm256_castsi256_ps(_mm256_cmpgt_epi32(rb, seven)));
      } else {
        a = _mm256_i32gather_ps(row, ia, 4);
        b = _mm256_i32gather_ps(row, ib, 4);
      }
      const __m256 w = _mm256_loadu_ps(frac + t);
      const __m256 d = _mm256_sub_ps(b, a);
      const __m256 near = _mm256_fmadd_ps(w, d, a);
      const __m256 far = _mm256_fnmadd_ps(d, _mm256_sub_ps(one, w), b);
      _mm256_storeu_ps(o + t, _mm256_blendv_ps(far, near, _mm256_cmp_ps(w, half, _CMP_LT_OQ)));
    }
  } else {
    const __m256d half = _mm256_set1_pd(0.5), one = _mm256_set1_pd(1.0);
    const __m128i step = _mm_set1_epi32(1), top4 = _mm256_castsi256_si128(top);
    for (; t + 4 <= v1; t += 4) {
      const __m128i ia = _mm_loadu_si128(reinterpret_cast<const __m128i*>(i0 + t));
      const __m128i ib = _mm_min_epi32(_mm_add_epi32(ia, step), top4);
      const __m256d a = _mm256_i32gather_pd(row, ia, 8);
      const __m256d b = _mm256_i32gather_pd(row, ib, 8);
      const __m256d w = _mm256_loadu_pd(frac + t);
      const __m256d d = _mm256_sub_pd(b, a);
      const __m256d near = _mm256_fmadd_pd(w, d, a);
      const __m256d far = _mm256_fnmadd_pd(d, _mm256_sub_pd(one, w), b);
      _mm256_storeu_pd(o + t, _mm256_blendv_pd(far, near, _mm256_cmp_pd(w, half, _CMP_LT_OQ)));
    }
  }
  return t;
}

// lerp_gather_avx2 for float32 on AVX-512, 16 outputs at a time: the warps' ratios stay
// well under 2, so a vector's two neighbours lie among the 32 inputs from its first one,
// which two masked loads and a two-register permute per neighbour fetch (masked: nothing
// past the row's last input is read); a vector whose inputs spread further takes the
// gathers. Returns where it stopped.
__attribute__((target("arch=x86-64-v4"), noinline)) int64_t lerp_window_avx512(
    const float* row, const int32_t* i0, const float* frac, int32_t last, int64_t v0,
    int64_t v1, float* o) {
  const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f);
  const __m512i top = _mm512_set1_epi32(last), step = _mm512_set1_epi32(1);
  int64_t t = v0;
  for (; t + 16 <= v1; t += 16) {
    const __m512i ia = _mm512_loadu_si512(i0 + t);
    const __m512i ib = _mm512_min_epi32(_mm512_add_epi32(ia, step), top);
    const int32_t base = i0[t];
    __m512 a, b;
    if (i0[t + 15] - base < 31) {
      const int64_t avail = static_cast<int64_t>(last) - base + 1;  // inputs from base
      const uint32_t m = avail >= 32 ? ~0u : (1u << avail) - 1;
      const __m512 lo = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m), row + base);
      const __m512 hi = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m >> 16), row + base + 16);
      const __m512i first = _mm512_set1_epi32(base);
      a = _mm512_permutex2var_ps(lo, _mm512_sub_epi32(ia, first), hi);
      b = _mm512_permutex2var_ps(lo, _mm512_sub_epi32(ib, first), hi);
    } else {
      a = _mm512_i32gather_ps(ia, row, 4);
      b = _mm512_i32gather_ps(ib, row, 4);
    }
    const __m512 w = _mm512_loadu_ps(frac + t);
    const __m512 d = _mm512_sub_ps(b, a);
    const __m512 near = _mm512_fmadd_ps(w, d, a);
    const __m512 far = _mm512_fnmadd_ps(d, _mm512_sub_ps(one, w), b);
    _mm512_storeu_ps(o + t, _mm512_mask_blend_ps(_mm512_cmp_ps_mask(w, half, _CMP_LT_OQ), far,
                                                 near));
  }
  return t;
}
#endif

// out rows (ld apart) = the warp of `in` (rows in_ld apart, from input time lo) at
// output times t0 .. t0 + len, valid ones in [v0, v1), zero elsewhere. A whole-sample
// warp (ratio 1, as shifts and crops) is a copy. Positions are relative to lo, so a
// block's fit in int32.
template <typename Tag, typename T>
FASTECG_INLINE void warp_rows_body(Tag, const Op<T>& w, int64_t n, int64_t t0, int64_t len,
                                   int64_t v0, int64_t v1, int64_t lo, const T* in, int64_t in_ld,
                                   int64_t rows, T* out, int64_t ld, int32_t* i0, T* frac,
                                   bool avx512) {
  const int64_t offset = w.k0[n];
  const double ratio = w.ratio[n];
  for (int64_t l = 0; l < rows; ++l) {
    std::fill(out + l * ld, out + l * ld + v0, T(0));
    std::fill(out + l * ld + v1, out + l * ld + len, T(0));
  }
  if (v0 == v1) return;
  if (ratio == 1.0) {
    // src = m exactly, frac 0: lerp(a, b, 0) == a.
    const int64_t first = t0 + v0 + offset - lo;
    for (int64_t l = 0; l < rows; ++l)
      std::memcpy(out + l * ld + v0, in + l * in_ld + first, sizeof(T) * (v1 - v0));
    return;
  }
  for (int64_t t = v0; t < v1; ++t) {
    const double src = static_cast<double>(t0 + t + offset) * ratio;
    const double f = std::min(std::max(std::floor(src), 0.0), static_cast<double>(w.tin - 1));
    i0[t] = static_cast<int32_t>(static_cast<int64_t>(f) - lo);
    frac[t] = static_cast<T>(src - f);
  }
  const int32_t last = static_cast<int32_t>(w.tin - 1 - lo);  // i1 = min(i0 + 1, tin - 1)
  for (int64_t l = 0; l < rows; ++l) {
    const T* row = in + l * in_ld;
    T* o = out + l * ld;
    int64_t t = v0;
#if defined(__x86_64__)
    if constexpr (Tag::isa >= Isa::kAvx2 && std::is_same_v<T, float>) {
      if (avx512) t = lerp_window_avx512(row, i0, frac, last, v0, v1, o);
    }
    if constexpr (Tag::isa >= Isa::kAvx2) t = lerp_gather_avx2(row, i0, frac, last, t, v1, o);
#endif
    for (; t < v1; ++t) {
      const int32_t a = i0[t];
      o[t] = torch_lerp(row[a], row[std::min(a + 1, last)], frac[t]);
    }
  }
}

FASTECG_PER_ISA(warp_rows, warp_rows_body)

// Per-lead min, max, sum and sum of squares of rows (ld apart), accumulated into acc
// (4 per lead): a 32-byte vector of T at a time (min and max in T, exact; sums in double,
// four lanes per register). Plain loops over lane arrays stayed scalar, and 64-byte GCC
// vectors went through the stack on AVX2.
template <bool Sums, typename T>
FASTECG_INLINE void row_stats_impl(const T* y, int64_t ld, int64_t rows, int64_t len,
                                   double* acc) {
  typedef typename Vec32<T>::type VT;
  constexpr int64_t W = 32 / sizeof(T);
  for (int64_t l = 0; l < rows; ++l) {
    const T* row = y + l * ld;
    if (len == 0) continue;
    VT lo = VT{} + row[0], hi = lo;
    V4 s0 = {}, s1 = {}, q0 = {}, q1 = {};
    int64_t t = 0;
    for (; t + W <= len; t += W) {
      VT v;
      std::memcpy(&v, row + t, sizeof v);
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
      if constexpr (Sums) {
        const V4 d0 = load4(row + t);
        s0 += d0;
        q0 += d0 * d0;
        if constexpr (W == 8) {
          const V4 d1 = load4(row + t + 4);
          s1 += d1;
          q1 += d1 * d1;
        }
      }
    }
    double low = acc[4 * l], high = acc[4 * l + 1], sum = 0.0, squares = 0.0;
    for (; t < len; ++t) {
      const double v = row[t];
      low = std::min(low, v);
      high = std::max(high, v);
      sum += v;
      squares += v * v;
    }
    for (int64_t k = 0; k < W; ++k) {
      low = std::min<double>(low, lo[k]);
      high = std::max<double>(high, hi[k]);
    }
    for (int k = 0; k < 4; ++k) {
      sum += s0[k] + s1[k];
      squares += q0[k] + q1[k];
    }
    acc[4 * l] = low;
    acc[4 * l + 1] = high;
    if constexpr (Sums) {
      acc[4 * l + 2] += sum;
      acc[4 * l + 3] += squares;
    }
  }
}

template <typename T>
FASTECG_INLINE void row_stats_body(const T* y, int64_t ld, int64_t rows, int64_t len,
                                   double* acc) {
  row_stats_impl<true>(y, ld, rows, len, acc);
}

// Only the min and max (acc's sums stay as they are).
template <typename T>
FASTECG_INLINE void row_extremes_body(const T* y, int64_t ld, int64_t rows, int64_t len,
                                      double* acc) {
  row_stats_impl<false>(y, ld, rows, len, acc);
}

FASTECG_PER_ISA(row_stats, row_stats_body)
FASTECG_PER_ISA(row_extremes, row_extremes_body)

// Per-lead max - min in T of the `leads` rows of `len` samples at x (the statistics
// kernel's min and max: lead_ptp's numbers), into out.
template <typename T, typename Tag>
void source_ptp(Tag tag, const T* x, int64_t leads, int64_t len, std::vector<double>& acc,
                std::vector<T>& out) {
  acc.assign(4 * leads, 0.0);
  for (int64_t l = 0; l < leads; ++l) {
    acc[4 * l] = std::numeric_limits<double>::infinity();
    acc[4 * l + 1] = -std::numeric_limits<double>::infinity();
  }
  row_extremes(tag, x, len, leads, len, acc.data());
  out.resize(leads);
  for (int64_t l = 0; l < leads; ++l)
    out[l] = static_cast<T>(acc[4 * l + 1]) - static_cast<T>(acc[4 * l]);
}

template <typename T>
struct Kernel {
  const T* x;
  int64_t n_leads, n_samples;  // x's
  std::vector<Stage<T>> stages;
  int64_t renorm = -1;  // the stage that starts with kRenorm, if any (at most one)
  bool avx512 = false;  // cpu_isa() allows AVX-512 (the warps' interpolation uses it)
  bool ptp = false;     // a kSinesPtp op: stage 0 needs its sample's per-lead ptp
  // Per kPair stage: the stage before it, evaluated once for every sample in a pairing, so
  // a partner's chain is not evaluated a second time beside its own (rows[n]: its rows,
  // rows_ld[n] apart: in `paired`, or the source's rows where the stage before leaves the
  // sample as it is).
  std::vector<AlignedArray<T>> paired;
  std::vector<std::vector<const T*>> rows;
  std::vector<std::vector<int64_t>> rows_ld;
};

template <typename T>
struct ThreadScratch {
  explicit ThreadScratch(size_t stages) : buffers(stages), i0(stages), frac(stages) {}
  std::vector<std::vector<T>> buffers;  // per stage: its output block
  std::vector<T> scratch;
  std::vector<std::vector<int32_t>> i0;  // per stage: its warp's positions of a block
  std::vector<std::vector<T>> frac;
  // kRenorm: the whole sample before it (lin rows of tlen samples), its map per lead, and
  // a block for a stage before it that holds more rows than it outputs.
  std::vector<T> sample, gain, shift, staging;
  // kSinesPtp: the per-lead peak-to-peak of the source of sample ptp_of.
  std::vector<T> ptp;
  std::vector<double> ptp_acc;
  int64_t ptp_of = -1;
};

// Mixup: o = lerp(a, b, w) (torch.lerp's formula) for rows of a (the partner's, lda
// apart), b (the sample's, ldb apart) into o (ldo apart).
template <typename T>
FASTECG_INLINE void pair_rows_body(const T* a, int64_t lda, const T* b, int64_t ldb, T w,
                                   int64_t rows, int64_t len, T* o, int64_t ldo) {
  const bool near = std::abs(w) < T(0.5);  // lerp's branch, the same for the whole sample
  for (int64_t l = 0; l < rows; ++l) {
    const T* al = a + l * lda;
    const T* bl = b + l * ldb;
    T* ol = o + l * ldo;
    if (near) {
      for (int64_t t = 0; t < len; ++t) ol[t] = al[t] + w * (bl[t] - al[t]);
    } else {
      for (int64_t t = 0; t < len; ++t) ol[t] = bl[t] - (bl[t] - al[t]) * (T(1) - w);
    }
  }
}

FASTECG_PER_ISA(pair_rows, pair_rows_body)

// The renormalisation's map per lead: o = x * gain + shift for rows of x (ldx apart).
template <typename T>
FASTECG_INLINE void renorm_rows_body(const T* x, int64_t ldx, const T* gain, const T* shift,
                                     int64_t rows, int64_t len, T* o, int64_t ldo) {
  for (int64_t l = 0; l < rows; ++l) {
    const T* src = x + l * ldx;
    T* row = o + l * ldo;
    const T gl = gain[l], hl = shift[l];
    if (gl == T(1) && hl == T(0)) {
      std::memcpy(row, src, sizeof(T) * len);
    } else {
      for (int64_t t = 0; t < len; ++t) row[t] = src[t] * gl + hl;
    }
  }
}

FASTECG_PER_ISA(renorm_rows, renorm_rows_body)

// Whether `op` leaves sample n's block t0 .. t0 + len as it is (a step that does not
// augment the sample: the kernel skips it there too).
template <typename T>
bool op_silent(const Op<T>& op, int64_t n, int64_t t0, int64_t len) {
  const int64_t rows = n * op.lin;
  switch (op.code) {
    case kLeadAffine:
      for (int64_t l = 0; l < op.lin; ++l)
        if (op.a[rows + l] != T(1) || op.b[rows + l] != T(0)) return false;
      return true;
    case kSines:
      for (int64_t l = 0; l < op.lin; ++l)
        if (!sines_row_silent(op, n, l)) return false;
      return true;
    case kNoise:
    case kFirNoise:
      for (int64_t l = 0; l < op.lin; ++l)
        if (op.a[rows + l] != T(0)) return false;
      return true;
    case kTimeMask:
      for (int64_t i = 0; i < op.j; ++i)
        if (std::max(op.k0[n * op.j + i], t0) < std::min(op.k1[n * op.j + i], t0 + len))
          return false;
      return true;
    default:  // lead mixing, added rows
      return false;
  }
}

template <typename T, typename Tag>
void eval_stage(const Kernel<T>& k, ThreadScratch<T>& ts, int64_t s, int64_t n, int64_t t0,
                int64_t len, T* y, int64_t ld, Tag tag);

// Whether stage s's head hands sample n's output of the stage before on as it is: a
// pairing with itself, a renormalisation that leaves the sample out, a warp that maps
// every time onto itself. Such a stage reads the one before in place (no copy of it).
template <typename T>
bool head_passes(const Kernel<T>& k, int64_t s, int64_t n) {
  const Stage<T>& st = k.stages[s];
  const Op<T>& w = st.warp;
  switch (w.code) {
    case kPair:
      return w.k0[n] == n;
    case kRenorm:
      return w.k0[n] == 0;
    case kWarp:
      return w.ratio[n] == 1.0 && w.k0[n] == 0 && w.k1[n] >= st.tlen && st.tlen == w.tin;
    default:
      return false;
  }
}

// Stage s's output for sample n, times t0 .. t0 + len: rows (*ld_out apart) that already
// hold it where the stage changes nothing of what it reads (the source itself, the stage
// before's rows through a head that passes them on, a renormalisation's input where the
// map is the identity), else evaluated into buf (ld apart). A copy fewer for each sample
// that a step leaves alone.
template <typename T, typename Tag>
const T* eval_view(const Kernel<T>& k, ThreadScratch<T>& ts, int64_t s, int64_t n, int64_t t0,
                   int64_t len, T* buf, int64_t ld, int64_t* ld_out, Tag tag) {
  const Stage<T>& st = k.stages[s];
  bool silent = true;
  for (const Op<T>& op : st.ops) silent = silent && op_silent(op, n, t0, len);
  if (silent && s == 0) {
    *ld_out = k.n_samples;
    return k.x + n * k.n_leads * k.n_samples + t0;
  }
  if (silent && head_passes(k, s, n) && k.stages[s - 1].lmax <= st.lmax)
    return eval_view(k, ts, s - 1, n, t0, len, buf, ld, ld_out, tag);
  if (silent && st.warp.code == kRenorm) {
    bool identity = true;
    for (int64_t l = 0; l < st.lin; ++l)
      identity = identity && ts.gain[l] == T(1) && ts.shift[l] == T(0);
    if (identity) {
      *ld_out = st.tlen;
      return ts.sample.data() + t0;
    }
  }
  eval_stage(k, ts, s, n, t0, len, buf, ld, tag);
  *ld_out = ld;
  return buf;
}

// Stage s's output for sample n, times t0 .. t0 + len, into y (lmax rows, ld apart).
template <typename T, typename Tag>
void eval_stage(const Kernel<T>& k, ThreadScratch<T>& ts, int64_t s, int64_t n, int64_t t0,
                int64_t len, T* y, int64_t ld, Tag tag) {
  const Stage<T>& st = k.stages[s];
  const T* xn = k.x + n * k.n_leads * k.n_samples + t0;
  // The source's sinusoids go straight from the source's rows into y (run_op's src).
  const bool from_source = s == 0 && !st.ops.empty() && st.ops.front().code == kSines;
  if (s == 0) {
    if (!from_source)
      for (int64_t l = 0; l < k.n_leads; ++l)
        std::memcpy(y + l * ld, xn + l * k.n_samples, sizeof(T) * len);
  } else if (head_passes(k, s, n)) {
    // The stage before, evaluated straight into y where y has its rows, else copied (a
    // sample paired with itself is left as it is: lerp(a, a, 1) would make an Inf NaN).
    const Stage<T>& prev = k.stages[s - 1];
    const bool direct = prev.lmax <= st.lmax;
    std::vector<T>& buf = ts.buffers[s - 1];
    if (!direct && static_cast<int64_t>(buf.size()) < prev.lmax * len)
      buf.resize(prev.lmax * len);
    int64_t ld_in;
    const T* mine = eval_view(k, ts, s - 1, n, t0, len, direct ? y : buf.data(),
                              direct ? ld : len, &ld_in, tag);
    if (mine != y)
      for (int64_t l = 0; l < st.lin; ++l)
        std::memcpy(y + l * ld, mine + l * ld_in, sizeof(T) * len);
  } else if (st.warp.code == kRenorm) {
    // The stage before, already evaluated for the whole sample (run_sample), renormalised.
    renorm_rows(tag, ts.sample.data() + t0, st.tlen, ts.gain.data(), ts.shift.data(), st.lin,
                len, y, ld);
  } else if (st.warp.code == kPair) {
    // The stage before, for the sample and its partner (another sample: head_passes
    // takes a sample paired with itself): both evaluated beforehand (materialise_pairs).
    const int64_t p = st.warp.k0[n];
    pair_rows(tag, k.rows[s][p] + t0, k.rows_ld[s][p], k.rows[s][n] + t0, k.rows_ld[s][n],
              static_cast<T>(st.warp.ratio[n]), st.lin, len, y, ld);
  } else {
    const Op<T>& w = st.warp;
    int64_t v0, v1, lo = 0, hi = -1;
    warp_span(w, n, t0, len, v0, v1, lo, hi);
    const int64_t span = v0 < v1 ? hi - lo + 1 : 0;
    std::vector<T>& in = ts.buffers[s - 1];
    const T* rows = nullptr;
    int64_t in_ld = span;
    if (span > 0) {
      const Stage<T>& prev = k.stages[s - 1];
      if (static_cast<int64_t>(in.size()) < prev.lmax * span) in.resize(prev.lmax * span);
      rows = eval_view(k, ts, s - 1, n, lo, span, in.data(), span, &in_ld, tag);
    }
    std::vector<int32_t>& i0 = ts.i0[s];
    std::vector<T>& frac = ts.frac[s];
    if (static_cast<int64_t>(i0.size()) < len) {
      i0.resize(len);
      frac.resize(len);
    }
    warp_rows(tag, tag, w, n, t0, len, v0, v1, lo, rows, in_ld, st.lin, y, ld, i0.data(),
              frac.data(), k.avx512);
  }
  const int64_t need = std::max(st.lmax * len, len + st.taps - 1);
  if (static_cast<int64_t>(ts.scratch.size()) < need) ts.scratch.resize(need);
  if (s == 0 && k.ptp && ts.ptp_of != n && !op_silent(st.ops.front(), n, t0, len)) {
    // kSinesPtp: the source's per-lead ptp, once per sample it augments
    source_ptp(tag, k.x + n * k.n_leads * k.n_samples, k.n_leads, k.n_samples, ts.ptp_acc,
               ts.ptp);
    ts.ptp_of = n;
  }
  for (size_t i = 0; i < st.ops.size(); ++i) {
    const bool first = from_source && i == 0;
    run_op(tag, tag, st.ops[i], n, t0, len, y, ld, first ? xn : y, first ? k.n_samples : ld,
           ts.scratch.data(), ts.ptp.data());
  }
}

// kRenorm for sample n: the stage before it over the whole sample into ts.sample, its
// statistics (as the statistics output: min, max, sum, sum of squares in double, a block
// at a time), then the map RandomRenormalize's torch code makes of them:
// var_mean(correction=0) in double, cast to T; gain = new_std * rsqrt(max(var, 1e-12)),
// shift = new_mean - mean * gain in T. A sample not chosen gets 1 and 0 and nothing else:
// the stage reads the one before in place (head_passes).
template <typename T, typename Tag>
void renorm_sample(const Kernel<T>& k, ThreadScratch<T>& ts, int64_t n, Tag tag) {
  const Stage<T>& rs = k.stages[k.renorm];
  const Stage<T>& prev = k.stages[k.renorm - 1];
  const int64_t leads = rs.lin, tlen = rs.tlen;
  const Op<T>& op = rs.warp;
  const bool applied = op.k0[n] != 0, per_lead = op.j != 0;
  ts.gain.assign(leads, T(1));
  ts.shift.assign(leads, T(0));
  if (!applied) return;  // the stage passes the one before on (head_passes): no copy of it
  ts.sample.resize(leads * tlen);
  std::vector<double> acc(4 * leads);
  for (int64_t l = 0; l < leads; ++l) {
    acc[4 * l] = std::numeric_limits<double>::infinity();
    acc[4 * l + 1] = -std::numeric_limits<double>::infinity();
  }
  for (int64_t t0 = 0; t0 < tlen; t0 += kBlock) {
    const int64_t len = std::min(kBlock, tlen - t0);
    if (prev.lmax == leads) {
      eval_stage(k, ts, k.renorm - 1, n, t0, len, ts.sample.data() + t0, tlen, tag);
    } else {
      ts.staging.resize(prev.lmax * kBlock);
      eval_stage(k, ts, k.renorm - 1, n, t0, len, ts.staging.data(), len, tag);
      for (int64_t l = 0; l < leads; ++l)
        std::memcpy(ts.sample.data() + l * tlen + t0, ts.staging.data() + l * len,
                    sizeof(T) * len);
    }
    row_stats(tag, ts.sample.data() + t0, tlen, leads, len, acc.data());
  }
  const double count = per_lead ? double(tlen) : double(tlen) * double(leads);
  double total = 0.0, squares = 0.0;
  for (int64_t l = 0; l < leads; ++l) {
    total += acc[4 * l + 2];
    squares += acc[4 * l + 3];
  }
  for (int64_t l = 0; l < leads; ++l) {
    const double sum = per_lead ? acc[4 * l + 2] : total;
    const double sq = per_lead ? acc[4 * l + 3] : squares;
    const double mean = sum / count;
    const T var = static_cast<T>(std::max(sq / count - mean * mean, 0.0));
    const int64_t w = per_lead ? n * leads + l : n;
    const T gain = op.b[w] * (T(1) / std::sqrt(std::max(var, static_cast<T>(1e-12))));
    ts.gain[l] = gain;
    ts.shift[l] = op.a[w] - static_cast<T>(mean) * gain;
  }
}

// Stage s's whole output for sample n where it is the source's rows (every op silent and
// every head passing the stage before on, down to the source), else nullptr.
template <typename T>
const T* source_view(const Kernel<T>& k, int64_t s, int64_t n, int64_t* ld) {
  for (;; --s) {
    const Stage<T>& st = k.stages[s];
    for (const Op<T>& op : st.ops)
      if (!op_silent(op, n, 0, st.tlen)) return nullptr;
    if (s == 0) {
      *ld = k.n_samples;
      return k.x + n * k.n_leads * k.n_samples;
    }
    if (!head_passes(k, s, n) || k.stages[s - 1].lmax > st.lmax) return nullptr;
  }
}

// The stage before each kPair stage, for every sample that is paired with another, into
// k.paired, or the source's rows themselves where they hold it (source_view): a pass over
// those samples per pairing, in stage order (a later pairing's chain reads an earlier
// one's). Evaluated on demand instead, a partner's whole chain before the pairing (the
// wander's noise, ...) would run twice.
template <typename T>
void materialise_pairs(Kernel<T>& k, int64_t n_batch) {
  k.paired.resize(k.stages.size());
  k.rows.assign(k.stages.size(), {});
  k.rows_ld.assign(k.stages.size(), {});
  const Isa isa = cpu_isa();
  for (size_t s = 1; s < k.stages.size(); ++s) {
    const Op<T>& w = k.stages[s].warp;
    if (w.code != kPair) continue;
    const Stage<T>& prev = k.stages[s - 1];
    const int64_t tlen = prev.tlen, size = prev.lmax * tlen;
    std::vector<char> paired(n_batch, 0);
    for (int64_t n = 0; n < n_batch; ++n) {
      if (w.k0[n] != n) paired[n] = paired[w.k0[n]] = 1;
    }
    std::vector<const T*>& rows = k.rows[s];
    std::vector<int64_t>& rows_ld = k.rows_ld[s];
    rows.assign(n_batch, nullptr);
    rows_ld.assign(n_batch, tlen);
    std::vector<int64_t> members;  // those evaluated into k.paired
    for (int64_t n = 0; n < n_batch; ++n) {
      if (!paired[n]) continue;
      rows[n] = source_view(k, static_cast<int64_t>(s) - 1, n, &rows_ld[n]);
      if (rows[n] == nullptr) members.push_back(n);
    }
    if (members.empty()) continue;
    const int64_t chunk = k.ptp ? std::max<int64_t>(tlen, 1) : kChunk;  // ptp: whole samples
    const int64_t chunks = (tlen + chunk - 1) / chunk;
    k.paired[s] = AlignedArray<T>(members.size() * size);
    T* base = k.paired[s].get();
    for (size_t m = 0; m < members.size(); ++m) rows[members[m]] = base + m * size;
    const Kernel<T>& kc = k;
    parallel_claim(static_cast<int64_t>(members.size()) * chunks, [&](auto& claim) {
      ThreadScratch<T> ts(kc.stages.size());
      auto work = [&](auto tag) {
        for (int64_t item; (item = claim()) >= 0;) {
          const int64_t m = item / chunks, c0 = (item % chunks) * chunk;
          const int64_t c1 = std::min(tlen, c0 + chunk);
          for (int64_t t0 = c0; t0 < c1; t0 += kBlock)
            eval_stage(kc, ts, static_cast<int64_t>(s) - 1, members[m], t0,
                       std::min(kBlock, c1 - t0), base + m * size + t0, tlen, tag);
        }
      };
      if (isa >= Isa::kAvx2)
        work(IsaTag<Isa::kAvx2>{});
      else
        work(IsaTag<Isa::kGeneric>{});
    });
  }
}

// A rough cost of sample n's pass: 1, plus 1 for each op that changes it (4 for noise),
// plus 2 for each head that does not hand the stage before on. Work items are claimed
// most costly first, so that the items left when a thread runs out of work are short.
template <typename T>
int64_t sample_cost(const Kernel<T>& k, int64_t n) {
  int64_t cost = 1;
  for (size_t s = 0; s < k.stages.size(); ++s) {
    const Stage<T>& st = k.stages[s];
    if (s > 0 && !head_passes(k, static_cast<int64_t>(s), n)) cost += 2;
    for (const Op<T>& op : st.ops) {
      if (op_silent(op, n, 0, st.tlen)) continue;
      const bool noise = op.code == kNoise || op.code == kFirNoise ||
                         (op.code == kSines && op.c != nullptr && op.c[n * op.lin] != T(0));
      cost += noise ? 4 : 1;
    }
  }
  return cost;
}

template <typename T>
void run(Kernel<T>& k, T* out, double* stats, int64_t n_batch) {
  const Stage<T>& last = k.stages.back();
  const int64_t n_out = last.tlen, leads = last.lout;
  // With a kRenorm a work item is a whole sample (its statistics come first), with a
  // kSinesPtp too (its source's ptp, read once); else a chunk of kChunk outputs.
  const int64_t chunk = k.renorm >= 0 || k.ptp ? std::max<int64_t>(n_out, 1) : kChunk;
  const int64_t chunks = std::max<int64_t>(1, (n_out + chunk - 1) / chunk);
  const int64_t items = n_batch * chunks;
  const bool direct = last.lmax == last.lout;
  std::vector<double> partial(stats != nullptr ? items * leads * 4 : 0);
  radius_table<T>();  // built before the threads start
  cosine_table<T>();
  materialise_pairs(k, n_batch);
  const Isa isa = cpu_isa();
  std::vector<int64_t> order(items);
  for (int64_t i = 0; i < items; ++i) order[i] = i;
  std::vector<int64_t> cost(n_batch);
  for (int64_t n = 0; n < n_batch; ++n) cost[n] = sample_cost(k, n);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return cost[a / chunks] > cost[b / chunks];
  });
  parallel_claim(items, [&](auto& claim) {
    ThreadScratch<T> ts(k.stages.size());
    auto work = [&](auto tag) {
      std::vector<T>& block = ts.buffers.back();
      block.resize(last.lmax * kBlock);
      for (int64_t claimed; (claimed = claim()) >= 0;) {
        const int64_t item = order[claimed];
        const int64_t n = item / chunks, c0 = (item % chunks) * chunk;
        const int64_t c1 = std::min(n_out, c0 + chunk);
        if (k.renorm >= 0) renorm_sample(k, ts, n, tag);
        double* acc = stats != nullptr ? partial.data() + item * leads * 4 : nullptr;
        if (acc != nullptr) {
          for (int64_t l = 0; l < leads; ++l) {
            acc[4 * l] = std::numeric_limits<double>::infinity();
            acc[4 * l + 1] = -std::numeric_limits<double>::infinity();
            acc[4 * l + 2] = acc[4 * l + 3] = 0.0;
          }
        }
        const int64_t last_stage = static_cast<int64_t>(k.stages.size()) - 1;
        for (int64_t t0 = c0; t0 < c1; t0 += kBlock) {
          const int64_t len = std::min(kBlock, c1 - t0);
          T* dest = out + n * leads * n_out + t0;
          if (direct) {
            // The last stage never holds more leads than it outputs: it works in place
            // in the output rows.
            eval_stage(k, ts, last_stage, n, t0, len, dest, n_out, tag);
          } else {
            eval_stage(k, ts, last_stage, n, t0, len, block.data(), len, tag);
            for (int64_t l = 0; l < leads; ++l)
              std::memcpy(dest + l * n_out, block.data() + l * len, sizeof(T) * len);
          }
          if (acc != nullptr) row_stats(tag, dest, n_out, leads, len, acc);
        }
      }
    };
    if (isa >= Isa::kAvx2)
      work(IsaTag<Isa::kAvx2>{});
    else
      work(IsaTag<Isa::kGeneric>{});
  });
  if (stats == nullptr) return;
  for (int64_t n = 0; n < n_batch; ++n) {
    for (int64_t l = 0; l < leads; ++l) {
      double* s = stats + (n * leads + l) * 4;
      s[0] = std::numeric_limits<double>::infinity();
      s[1] = -std::numeric_limits<double>::infinity();
      s[2] = s[3] = 0.0;
      for (int64_t c = 0; c < chunks; ++c) {
        const double* p = partial.data() + ((n * chunks + c) * leads + l) * 4;
        s[0] = std::min(s[0], p[0]);
        s[1] = std::max(s[1], p[1]);
        s[2] += p[2];
        s[3] += p[3];
      }
    }
  }
}

// Checks a parameter tensor and returns it contiguous (kept alive by `keep`).
const at::Tensor& param(std::vector<at::Tensor>& keep, const at::Tensor& t, at::ScalarType dtype,
                        at::IntArrayRef shape, const char* what) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == dtype, "_augment_kernel: ", what,
              " must be a CPU ", dtype, " tensor, got ", t.scalar_type(), " on ", t.device());
  TORCH_CHECK(t.sizes() == shape, "_augment_kernel: ", what, " must have shape ", shape,
              ", got ", t.sizes());
  keep.push_back(t.contiguous());
  return keep.back();
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> augment_typed(const at::Tensor& x,
                                                  at::IntArrayRef codes, at::IntArrayRef ints,
                                                  at::ArrayRef<double> floats,
                                                  at::TensorList tensors, bool want_stats,
                                                  const std::optional<at::Tensor>& out_buffer) {
  const at::ScalarType dt = x.scalar_type();
  const int64_t n = x.size(0);
  std::vector<at::Tensor> keep;
  keep.reserve(tensors.size() + 2);
  Kernel<T> k;
  k.avx512 = cpu_isa() >= Isa::kAvx512;
  k.x = x.const_data_ptr<T>();
  k.n_leads = x.size(1);
  k.n_samples = x.size(2);
  k.stages.emplace_back();
  Stage<T>* st = &k.stages.back();
  st->lin = st->lout = st->lmax = k.n_leads;
  st->tlen = k.n_samples;
  size_t ti = 0, ii = 0, fi = 0;
  auto next_tensor = [&]() -> const at::Tensor& {
    TORCH_CHECK(ti < tensors.size(), "_augment_kernel: too few tensors for the ops");
    return tensors[ti++];
  };
  for (const int64_t code : codes) {
    Op<T> op;
    op.code = code;
    op.lin = op.lout = st->lout;
    op.tlen = st->tlen;
    const int64_t L = st->lout, len = st->tlen;
    switch (code) {
      case kLeadMix: {
        const at::Tensor& m = next_tensor();
        TORCH_CHECK(m.dim() == 3, "_augment_kernel: lead matrix must be (N, L_out, L_in)");
        op.lout = m.size(1);
        op.mat = param(keep, m, at::kDouble, {n, op.lout, L}, "lead matrix").template const_data_ptr<double>();
        break;
      }
      case kLeadAffine:
        op.a = param(keep, next_tensor(), dt, {n, L}, "gain").template const_data_ptr<T>();
        op.b = param(keep, next_tensor(), dt, {n, L}, "shift").template const_data_ptr<T>();
        break;
      case kSinesPtp:
        TORCH_CHECK(k.stages.size() == 1 && st->ops.empty(),
                    "_augment_kernel: sines relative to the source's ptp must be the first op");
        op.ptp = k.ptp = true;
        op.code = kSines;
        [[fallthrough]];
      case kSines: {
        const at::Tensor& coef = next_tensor();
        TORCH_CHECK(coef.dim() == 3, "_augment_kernel: sine coefficients must be (N, L, J)");
        op.j = coef.size(2);
        op.a = param(keep, coef, dt, {n, L, op.j}, "sine coefficients").template const_data_ptr<T>();
        op.b = param(keep, next_tensor(), dt, {op.j, len}, "sine basis").template const_data_ptr<T>();
        const at::Tensor& keys = next_tensor();
        const at::Tensor& noise_std = next_tensor();
        if (keys.numel() > 0) {
          op.k0 = param(keep, keys, at::kLong, {n, L, 2}, "noise keys").template const_data_ptr<int64_t>();
          op.c = param(keep, noise_std, dt, {n, L}, "noise std").template const_data_ptr<T>();
        }
        break;
      }
      case kNoise:
        op.k0 = param(keep, next_tensor(), at::kLong, {n, L, 2}, "noise keys").template const_data_ptr<int64_t>();
        op.a = param(keep, next_tensor(), dt, {n, L}, "noise std").template const_data_ptr<T>();
        break;
      case kTimeMask: {
        const at::Tensor& start = next_tensor();
        TORCH_CHECK(start.dim() == 2, "_augment_kernel: mask starts must be (N, S)");
        op.j = start.size(1);
        op.k0 = param(keep, start, at::kLong, {n, op.j}, "mask starts").template const_data_ptr<int64_t>();
        op.k1 = param(keep, next_tensor(), at::kLong, {n, op.j}, "mask ends").template const_data_ptr<int64_t>();
        TORCH_CHECK(fi < floats.size(), "_augment_kernel: too few floats for the ops");
        op.value = static_cast<T>(floats[fi++]);
        break;
      }
      case kAddRows:
        op.a = param(keep, next_tensor(), dt, {n, L, len}, "added rows").template const_data_ptr<T>();
        break;
      case kFirNoise: {
        op.k0 = param(keep, next_tensor(), at::kLong, {n, L, 2}, "noise keys").template const_data_ptr<int64_t>();
        op.a = param(keep, next_tensor(), dt, {n, L}, "noise std").template const_data_ptr<T>();
        const at::Tensor& taps = next_tensor();
        TORCH_CHECK(taps.dim() == 1 && taps.size(0) >= 1, "_augment_kernel: FIR taps must be (K,), K >= 1");
        op.j = taps.size(0);
        op.b = param(keep, taps, dt, {op.j}, "FIR taps").template const_data_ptr<T>();
        st->taps = std::max(st->taps, op.j);
        break;
      }
      case kWarp: {
        op.k0 = param(keep, next_tensor(), at::kLong, {n}, "warp offsets").template const_data_ptr<int64_t>();
        op.k1 = param(keep, next_tensor(), at::kLong, {n}, "warp limits").template const_data_ptr<int64_t>();
        op.ratio = param(keep, next_tensor(), at::kDouble, {n}, "warp ratios").template const_data_ptr<double>();
        TORCH_CHECK(ii < ints.size() && ints[ii] >= 1, "_augment_kernel: warp needs its length");
        op.tin = len;
        const int64_t tout = ints[ii++];
        Stage<T> next;
        next.warp = op;
        next.lin = next.lout = next.lmax = L;
        next.tlen = tout;
        k.stages.push_back(std::move(next));
        st = &k.stages.back();
        continue;
      }
      case kRenorm: {
        TORCH_CHECK(k.renorm < 0, "_augment_kernel: at most one renormalisation per pass");
        TORCH_CHECK(ii < ints.size(), "_augment_kernel: renormalisation needs its per-lead flag");
        op.j = ints[ii++] != 0;
        const int64_t w = op.j ? L : 1;
        op.a = param(keep, next_tensor(), dt, {n, w}, "renormalised means").template const_data_ptr<T>();
        op.b = param(keep, next_tensor(), dt, {n, w}, "renormalised stds").template const_data_ptr<T>();
        op.k0 = param(keep, next_tensor(), at::kLong, {n}, "renormalised samples").template const_data_ptr<int64_t>();
        Stage<T> next;
        next.warp = op;
        next.lin = next.lout = next.lmax = L;
        next.tlen = len;
        k.stages.push_back(std::move(next));
        k.renorm = static_cast<int64_t>(k.stages.size()) - 1;
        st = &k.stages.back();
        continue;
      }
      case kPair: {
        TORCH_CHECK(k.renorm < 0, "_augment_kernel: a pairing cannot follow a renormalisation "
                    "in one pass");
        op.k0 = param(keep, next_tensor(), at::kLong, {n}, "partners").template const_data_ptr<int64_t>();
        op.ratio = param(keep, next_tensor(), at::kDouble, {n}, "mixing weights").template const_data_ptr<double>();
        for (int64_t i = 0; i < n; ++i)
          TORCH_CHECK(op.k0[i] >= 0 && op.k0[i] < n, "_augment_kernel: partner out of range");
        Stage<T> next;
        next.warp = op;
        next.lin = next.lout = next.lmax = L;
        next.tlen = len;
        k.stages.push_back(std::move(next));
        st = &k.stages.back();
        continue;
      }
      default:
        TORCH_CHECK(false, "_augment_kernel: unknown op code ", code);
    }
    st->ops.push_back(op);
    st->lout = op.lout;
    st->lmax = std::max({st->lmax, op.lin, op.lout});
  }
  TORCH_CHECK(ti == tensors.size() && ii == ints.size() && fi == floats.size(),
              "_augment_kernel: more tensors, ints or floats than the ops use");
  const Stage<T>& last = k.stages.back();
  at::Tensor out;
  if (out_buffer.has_value()) {
    out = *out_buffer;
    TORCH_CHECK(out.scalar_type() == x.scalar_type() && out.device().is_cpu() &&
                    out.is_contiguous() && out.sizes() == at::IntArrayRef({n, last.lout, last.tlen}),
                "_augment_kernel: out must be a contiguous CPU ", x.scalar_type(), " tensor of shape ",
                at::IntArrayRef({n, last.lout, last.tlen}), ", got ", out.scalar_type(), " ",
                out.sizes());
    const char* o = static_cast<const char*>(out.data_ptr());
    const char* i = static_cast<const char*>(x.data_ptr());
    TORCH_CHECK(o + out.nbytes() <= i || i + x.nbytes() <= o,
                "_augment_kernel: out must not overlap x");
  } else {
    out = at::empty({n, last.lout, last.tlen}, x.options());
    advise_huge_pages(out.data_ptr(), out.nbytes());
  }
  at::Tensor stats = want_stats ? at::empty({n, last.lout, 4}, x.options().dtype(at::kDouble))
                                : at::empty({0}, x.options().dtype(at::kDouble));
  if (n > 0 && last.lout > 0 && last.tlen > 0)
    run(k, out.mutable_data_ptr<T>(), want_stats ? stats.mutable_data_ptr<double>() : nullptr, n);
  // Written into `out`: the first result is then empty (the schema does not alias it).
  return {out_buffer.has_value() ? at::empty({0}, x.options()) : out, stats};
}

std::tuple<at::Tensor, at::Tensor> augment_cpu(const at::Tensor& x,
                                               at::IntArrayRef codes, at::IntArrayRef ints,
                                               at::ArrayRef<double> floats, at::TensorList tensors,
                                               bool stats, const std::optional<at::Tensor>& out) {
  TORCH_CHECK(x.dim() == 3, "_augment_kernel: expected (n, n_leads, n_samples), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "_augment_kernel: expected float32 or float64, got ", x.scalar_type());
  const at::Tensor xc = x.contiguous();
  if (xc.scalar_type() == at::kFloat)
    return augment_typed<float>(xc, codes, ints, floats, tensors, stats, out);
  return augment_typed<double>(xc, codes, ints, floats, tensors, stats, out);
}

// Per-lead (min, max, sum, sum of squares) of x (n, n_leads, n_samples): what the steps
// that read the signal need, in one read of the batch (torch's amax and amin are two).
at::Tensor lead_stats_cpu(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 3, "_lead_stats_kernel: expected (n, n_leads, n_samples), got ",
              x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "_lead_stats_kernel: expected float32 or float64, got ", x.scalar_type());
  const at::Tensor xc = x.contiguous();
  const int64_t n = xc.size(0), leads = xc.size(1), len = xc.size(2);
  at::Tensor stats = at::empty({n, leads, 4}, xc.options().dtype(at::kDouble));
  double* out = stats.mutable_data_ptr<double>();
  for (int64_t i = 0; i < n * leads; ++i) {
    out[4 * i] = std::numeric_limits<double>::infinity();
    out[4 * i + 1] = -std::numeric_limits<double>::infinity();
    out[4 * i + 2] = out[4 * i + 3] = 0.0;
  }
  const Isa isa = cpu_isa();
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "lead_stats_cpu", [&] {
    const scalar_t* data = xc.const_data_ptr<scalar_t>();
    parallel_claim(n, [&](auto& claim) {
      auto work = [&](auto tag) {
        for (int64_t i; (i = claim()) >= 0;)
          row_stats(tag, data + i * leads * len, len, leads, len, out + i * leads * 4);
      };
      if (isa >= Isa::kAvx2)
        work(IsaTag<Isa::kAvx2>{});
      else
        work(IsaTag<Isa::kGeneric>{});
    });
  });
  return stats;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastecg, CPU, m) {
  m.impl("_augment_kernel", &augment_cpu);
  m.impl("_lead_stats_kernel", &lead_stats_cpu);
}

}  // namespace fastecg
