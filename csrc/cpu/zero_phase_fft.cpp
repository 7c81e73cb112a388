// CPU kernel of fastecg::_zero_phase_fft_kernel: the `fft` band-pass method's circular
// convolution of reflect-padded rows with a zero-phase response |H|^2, and its transpose
// (the torch reference: _filter_rows / _adjoint_rows in python/fastecg/ops/bandpass.py).
//
// Our own FFT, vectorised across rows rather than along time: a block of 2L rows is one
// complex signal per SIMD lane (one row in the real part of a lane, another in its
// imaginary part, paired only when their peaks are close and finite: see pair_rows;
// L = 8 float32 or 4 float64 lanes in an AVX2 vector). |H|^2 is real
// and even, so the packed spectrum times |H|^2 transforms back to the two rows filtered
// (real part, imaginary part): one complex transform pair per two rows and no
// separation step. The transform is a mixed-radix (4, 2, 3, 5) Stockham FFT in natural
// order; the inverse is the forward transform of the conjugate. Every butterfly works on
// whole vectors (2L rows): the only shuffles are the L x L transposes that move rows
// into lanes and back, straight from and to the tensors but for each row's last partial
// vector and its extension (the padding, which goes through a small per-lane buffer).
// Long transforms (from 16384 points) take the four-step form (FourStep below), which
// crosses the block's array 4 times instead of twice per radix step.
// Why not torch's FFT: a row's forward transform alone there costs about what this kernel
// takes for the whole filter, both directions, plus a fixed cost per call
// (benchmarks/CPU_NOTES.md).
// Errors: float32 transforms for float32 rows, as torch's: the two agree to ~1e-7 of the
// peak (tests/ops/test_bandpass.py).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "../common/huge_pages.h"
#include "../common/lanes4.h"
#include "../common/parallel.h"
#include "isa.h"

namespace fastecg {
namespace {

// L lanes of T in one 32-byte vector, a complex number per lane.
template <typename T> constexpr int kLanes = 32 / sizeof(T);
template <typename T> struct VecOf {  // (an alias template cannot carry vector_size)
  typedef T type __attribute__((vector_size(32)));
};
template <typename T> using Vec = typename VecOf<T>::type;
template <typename T> struct Complex {
  Vec<T> re, im;
};

template <typename T> FASTECG_INLINE Complex<T> operator+(Complex<T> a, Complex<T> b) {
  return {a.re + b.re, a.im + b.im};
}
template <typename T> FASTECG_INLINE Complex<T> operator-(Complex<T> a, Complex<T> b) {
  return {a.re - b.re, a.im - b.im};
}
template <typename T> FASTECG_INLINE Complex<T> operator*(Complex<T> a, T s) {
  return {a.re * s, a.im * s};
}
template <typename T> FASTECG_INLINE Complex<T> times_minus_i(Complex<T> a) {
  return {a.im, -a.re};
}
template <typename T> FASTECG_INLINE Complex<T> rotate(Complex<T> a, const T* w) {
  return {a.re * w[0] - a.im * w[1], a.re * w[1] + a.im * w[0]};
}

// One radix-r step of the Stockham recursion (DIF, natural order out): the current
// sub-transforms have length r * m and stride s; output q + s (r p + u) is the u-th
// output of the r-point DFT of inputs q + s (p + t m), t < r, times w^(u p).
struct Step {
  int radix;
  int64_t m, s;
  size_t twiddles;  // offset of this step's (cos, sin) pairs: (r - 1) per p
};

struct Plan {
  int64_t n;
  std::vector<Step> steps;
  std::vector<double> twiddles;
};

// Radices 4, then 2, 3, 5; nullptr if n has another prime factor.
std::shared_ptr<const Plan> make_plan(int64_t n) {
  std::vector<int> radices;
  int64_t rest = n;
  for (int r : {4, 2, 3, 5})
    while (rest % r == 0) radices.push_back(r), rest /= r;
  if (rest != 1) return nullptr;
  auto plan = std::make_shared<Plan>();
  plan->n = n;
  int64_t length = n, stride = 1;
  for (int r : radices) {
    const int64_t m = length / r;
    plan->steps.push_back(Step{r, m, stride, plan->twiddles.size()});
    for (int64_t p = 0; p < m; ++p)
      for (int u = 1; u < r; ++u) {
        const double angle = -2 * M_PI * double(u * p) / double(length);
        plan->twiddles.push_back(std::cos(angle));
        plan->twiddles.push_back(std::sin(angle));
      }
    length = m;
    stride *= r;
  }
  return plan;
}

// Plans by length, built once (the twiddles cost ~n cos/sin pairs: tens of MB for a
// 1-hour row). At most kPlans of a kind are kept: past that the cache starts again
// (calls still running hold their plan). One cache per make (per kind of plan).
constexpr size_t kPlans = 16;
template <typename Make>
auto cached_plan(int64_t n, Make make) -> decltype(make(n)) {
  static std::mutex mutex;
  static std::map<int64_t, decltype(make(n))> plans;
  std::lock_guard<std::mutex> lock(mutex);
  auto found = plans.find(n);
  if (found != plans.end()) return found->second;
  auto plan = make(n);
  if (plans.size() >= kPlans) plans.clear();
  plans.emplace(n, plan);
  return plan;
}

std::shared_ptr<const Plan> plan_for(int64_t n) {
  return cached_plan(n, [](int64_t m) {
    auto plan = make_plan(m);
    TORCH_CHECK(plan, "fft length ", m, " has a prime factor other than 2, 3, 5");
    return plan;
  });
}

// The four-step ("six-step" without its transposes) form of a long transform, for
// lengths whose arrays outgrow the caches: n = n1 * n2, sample i + n1 k (i < n1) in
// natural order. Forward: the n1 columns (stride n1) are transformed (length n2) and
// multiplied by w^(i k), then the n2 rows (contiguous) are transformed (length n1),
// leaving frequency k2 + n2 k1 at position k1 + n1 k2. The inverse (the forward transform
// of the conjugate) taken from that order returns natural order with the same steps
// reversed: rows, twiddle, columns. Each pass moves a column or a row through cache once:
// the filter's two column passes read the rows and write the output themselves, so the
// array is crossed twice each way instead of twice per radix step (a 1-hour row: 118 MB
// per block and crossing).
template <typename T>
struct FourStep {
  int64_t n1, n2;  // row length (contiguous), column length
  std::shared_ptr<const Plan> rows, cols;
  std::vector<T> row_twiddles, col_twiddles;  // the plans' twiddles in T
  std::vector<T> twiddles;  // w^(i k) at 2 (i n2 + k): column i's run of n2 pairs
};

// A column group (kLanes<T> columns, each sample a cache line) of at most kColumnBytes,
// so the group and a column's scratch stay in a 512 KB L2.
constexpr int64_t kColumnBytes = 384 << 10;

// n2 the largest divisor of n with n2^2 <= n, n1 = n / n2 a multiple of L (column groups
// start at a whole vector of samples), and the group within kColumnBytes.
template <typename T>
std::shared_ptr<const FourStep<T>> make_four_step(int64_t n) {
  constexpr int64_t L = kLanes<T>;
  auto fs = std::make_shared<FourStep<T>>();
  fs->n2 = 1;
  for (int64_t d = 1; d * d <= n && L * d * int64_t(sizeof(Complex<T>)) <= kColumnBytes; ++d)
    if (n % d == 0 && (n / d) % L == 0) fs->n2 = d;
  fs->n1 = n / fs->n2;
  fs->rows = plan_for(fs->n1);
  fs->cols = plan_for(fs->n2);
  fs->row_twiddles.assign(fs->rows->twiddles.begin(), fs->rows->twiddles.end());
  fs->col_twiddles.assign(fs->cols->twiddles.begin(), fs->cols->twiddles.end());
  // w^j for j = (i k) mod n as w^(j - j % 1024) w^(j % 1024), from two short tables of
  // exact angles, an order of magnitude faster than n cos/sin pairs; the product
  // of two double-precision values is within ~2e-16 of w^j.
  constexpr int64_t kLow = 1024;
  auto unit = [n](int64_t j) {
    const double angle = -2 * M_PI * double(j) / double(n);
    return std::pair<double, double>{std::cos(angle), std::sin(angle)};
  };
  std::vector<std::pair<double, double>> low(kLow), high(n / kLow + 1);
  for (int64_t j = 0; j < kLow; ++j) low[j] = unit(j);
  for (int64_t j = 0; j <= n / kLow; ++j) high[j] = unit(j * kLow);
  fs->twiddles.resize(2 * n);
  for (int64_t i = 0; i < fs->n1; ++i)
    for (int64_t k = 0, j = 0; k < fs->n2; ++k, j = j + i < n ? j + i : j + i - n) {
      const auto [hc, hs] = high[j / kLow];
      const auto [lc, ls] = low[j % kLow];
      fs->twiddles[2 * (i * fs->n2 + k)] = T(hc * lc - hs * ls);
      fs->twiddles[2 * (i * fs->n2 + k) + 1] = T(hc * ls + hs * lc);
    }
  return fs;
}

template <typename T>
std::shared_ptr<const FourStep<T>> four_step_for(int64_t n) {
  return cached_plan(n, [](int64_t m) { return make_four_step<T>(m); });
}

template <typename T>
FASTECG_INLINE void radix4(const Complex<T>* x, Complex<T>* y, int64_t m, int64_t s,
                               const T* w) {
  for (int64_t p = 0; p < m; ++p, w += 6)
    for (int64_t q = 0; q < s; ++q) {
      const Complex<T>* a = x + q + s * p;
      const Complex<T> a0 = a[0], a1 = a[s * m], a2 = a[2 * s * m], a3 = a[3 * s * m];
      const Complex<T> t0 = a0 + a2, t1 = a0 - a2, t2 = a1 + a3, t3 = times_minus_i(a1 - a3);
      Complex<T>* o = y + q + s * 4 * p;
      o[0] = t0 + t2;
      o[s] = rotate(t1 + t3, w);
      o[2 * s] = rotate(t0 - t2, w + 2);
      o[3 * s] = rotate(t1 - t3, w + 4);
    }
}

template <typename T>
FASTECG_INLINE void radix2(const Complex<T>* x, Complex<T>* y, int64_t m, int64_t s,
                               const T* w) {
  for (int64_t p = 0; p < m; ++p, w += 2)
    for (int64_t q = 0; q < s; ++q) {
      const Complex<T> a0 = x[q + s * p], a1 = x[q + s * (p + m)];
      Complex<T>* o = y + q + s * 2 * p;
      o[0] = a0 + a1;
      o[s] = rotate(a0 - a1, w);
    }
}

template <typename T>
FASTECG_INLINE void radix3(const Complex<T>* x, Complex<T>* y, int64_t m, int64_t s,
                               const T* w) {
  const T sin60 = T(0.86602540378443864676);
  for (int64_t p = 0; p < m; ++p, w += 4)
    for (int64_t q = 0; q < s; ++q) {
      const Complex<T>* a = x + q + s * p;
      const Complex<T> a0 = a[0], a1 = a[s * m], a2 = a[2 * s * m];
      const Complex<T> sum = a1 + a2, diff = times_minus_i(a1 - a2) * sin60;
      const Complex<T> mid = a0 - sum * T(0.5);
      Complex<T>* o = y + q + s * 3 * p;
      o[0] = a0 + sum;
      o[s] = rotate(mid + diff, w);
      o[2 * s] = rotate(mid - diff, w + 2);
    }
}

template <typename T>
FASTECG_INLINE void radix5(const Complex<T>* x, Complex<T>* y, int64_t m, int64_t s,
                               const T* w) {
  const T c1 = T(0.30901699437494742410), c2 = T(-0.80901699437494742410);  // cos 72, 144
  const T s1 = T(0.95105651629515357212), s2 = T(0.58778525229247312917);   // sin 72, 144
  for (int64_t p = 0; p < m; ++p, w += 8)
    for (int64_t q = 0; q < s; ++q) {
      const Complex<T>* a = x + q + s * p;
      const Complex<T> a0 = a[0], a1 = a[s * m], a2 = a[2 * s * m], a3 = a[3 * s * m],
                       a4 = a[4 * s * m];
      const Complex<T> t1 = a1 + a4, t2 = a2 + a3, t3 = a1 - a4, t4 = a2 - a3;
      const Complex<T> m1 = a0 + t1 * c1 + t2 * c2, m2 = a0 + t1 * c2 + t2 * c1;
      const Complex<T> n1 = times_minus_i(t3 * s1 + t4 * s2);
      const Complex<T> n2 = times_minus_i(t3 * s2 - t4 * s1);
      Complex<T>* o = y + q + s * 5 * p;
      o[0] = a0 + t1 + t2;
      o[s] = rotate(m1 + n1, w);
      o[2 * s] = rotate(m2 + n2, w + 2);
      o[3 * s] = rotate(m2 - n2, w + 4);
      o[4 * s] = rotate(m1 - n1, w + 6);
    }
}

// Forward DFT of x (length plan.n), using y as scratch; returns where the result is.
template <typename T>
FASTECG_INLINE Complex<T>* transform(const Plan& plan, const T* twiddles, Complex<T>* x,
                                    Complex<T>* y) {
  for (const Step& st : plan.steps) {
    const T* w = twiddles + st.twiddles;
    switch (st.radix) {
      case 4: radix4(x, y, st.m, st.s, w); break;
      case 2: radix2(x, y, st.m, st.s, w); break;
      case 3: radix3(x, y, st.m, st.s, w); break;
      default: radix5(x, y, st.m, st.s, w); break;
    }
    std::swap(x, y);
  }
  return x;
}

// The transform out of line, once per ISA: inlined into with_isa's whole work loop it
// runs slower (benchmarks/CPU_NOTES.md).
FASTECG_PER_ISA(transform_per_isa, transform)

// Spectrum times gain (the real, even |H|^2 / n), conjugated: the next forward transform
// then gives the conjugate of the inverse.
template <typename T>
FASTECG_INLINE void filter_conjugate(Complex<T>* z, const T* gain, int64_t n) {
  for (int64_t t = 0; t < n; ++t) {
    z[t].re *= gain[t];
    z[t].im *= -gain[t];
  }
}

// Samples [from, n_fft) of a padded row (see _tail_index in bandpass.py): the row, its
// end reflected (`right` samples: x[n-2], x[n-3], ...), zeros, its start reflected (`pad`
// samples ending with x[1]), which a circular transform puts before x[0]. The transpose
// (adjoint) reads the row zero-extended.
template <typename T>
void padded_tail(const T* x, int64_t n, int64_t pad, int64_t right, int64_t n_fft, bool adjoint,
                 int64_t from, T* out) {
  T* row = out - from;  // row[t] is sample t of the padded row (t >= from)
  std::copy(x + from, x + n, row + from);
  std::fill(row + n, row + n_fft, T(0));
  if (adjoint) return;
  for (int64_t k = 0; k < right; ++k) row[n + k] = x[n - 2 - k];
  for (int64_t k = 0; k < pad; ++k) row[n_fft - pad + k] = x[pad - k];
}

// The filtered row's samples [from, n_fft) (y, the rest already in place) into out[from,
// n); for the adjoint, with the extension's columns added back onto the samples they
// copied.
template <typename T>
void crop_tail(const T* y, int64_t n, int64_t pad, int64_t right, int64_t n_fft, bool adjoint,
               int64_t from, T* out) {
  const T* row = y - from;
  std::copy(row + from, row + n, out + from);
  if (!adjoint) return;
  for (int64_t k = 0; k < right; ++k) out[n - 2 - k] += row[n + k];
  for (int64_t k = 0; k < pad; ++k) out[pad - k] += row[n_fft - pad + k];
}

// v[k][j] <-> v[j][k] for L x L blocks: L samples of L rows to L samples of one lane
// each (unpack, 64-bit and 128-bit shuffles for float32; lanes4.h's for float64).
FASTECG_INLINE void transpose_lanes(Vec<float> (&v)[8]) {
  Vec<float> t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = __builtin_shufflevector(v[i], v[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[i + 1] = __builtin_shufflevector(v[i], v[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int i = 0; i < 8; i += 4)
    for (int h = 0; h < 2; ++h) {
      u[i + 2 * h] = __builtin_shufflevector(t[i + h], t[i + h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
      u[i + 2 * h + 1] = __builtin_shufflevector(t[i + h], t[i + h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    }
  for (int j = 0; j < 4; ++j) {
    v[j] = __builtin_shufflevector(u[j], u[j + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    v[j + 4] = __builtin_shufflevector(u[j], u[j + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
}
FASTECG_INLINE void transpose_lanes(Vec<double> (&v)[4]) { transpose4(v); }

// Samples [t, t + L) of the 2L lanes (t a multiple of L) into z[0], z[stride], ...:
// lane k's samples come from rows[k] before `body`, from tails[k] (at t - body) after.
template <typename T>
FASTECG_INLINE void pack_vector(const T* const* rows, const T* const* tails, int64_t body,
                                int64_t t, Complex<T>* z, int64_t stride) {
  constexpr int L = kLanes<T>;
  const T* const* src = t < body ? rows : tails;
  const int64_t at = t < body ? t : t - body;
  for (int part = 0; part < 2; ++part) {
    Vec<T> v[L];
    for (int k = 0; k < L; ++k) std::memcpy(&v[k], src[part * L + k] + at, sizeof v[k]);
    transpose_lanes(v);
    for (int j = 0; j < L; ++j) (part ? z[j * stride].im : z[j * stride].re) = v[j];
  }
}

// The inverse of pack_vector, conjugated: re z into lanes k < L, -im z into lanes L + k.
template <typename T>
FASTECG_INLINE void unpack_conjugate_vector(const Complex<T>* z, int64_t stride, T* const* rows,
                                            T* const* tails, int64_t body, int64_t t) {
  constexpr int L = kLanes<T>;
  T* const* dst = t < body ? rows : tails;
  const int64_t at = t < body ? t : t - body;
  for (int part = 0; part < 2; ++part) {
    Vec<T> v[L];
    for (int j = 0; j < L; ++j) v[j] = part ? -z[j * stride].im : z[j * stride].re;
    transpose_lanes(v);
    for (int k = 0; k < L; ++k) std::memcpy(dst[part * L + k] + at, &v[k], sizeof v[k]);
  }
}

// z[t] = rows[k][t] + i rows[L + k][t] over lanes k, t < n_fft (tails from body on).
template <typename T>
FASTECG_INLINE void pack(const T* const* rows, const T* const* tails, int64_t body,
                         int64_t n_fft, Complex<T>* z) {
  for (int64_t t = 0; t < n_fft; t += kLanes<T>) pack_vector(rows, tails, body, t, z + t, 1);
}

// rows[k][t] = re z[t], rows[L + k][t] = -im z[t] (the conjugate), t < n_fft.
template <typename T>
FASTECG_INLINE void unpack_conjugate(const Complex<T>* z, int64_t n_fft, T* const* rows,
                                     T* const* tails, int64_t body) {
  for (int64_t t = 0; t < n_fft; t += kLanes<T>)
    unpack_conjugate_vector(z + t, 1, rows, tails, body, t);
}

// The one-piece transform's passes over the block, out of line once per ISA as the
// transform is: a loop of its own each runs faster than the same loops inlined into the
// work loop (benchmarks/CPU_NOTES.md).
FASTECG_PER_ISA(pack_per_isa, pack)
FASTECG_PER_ISA(filter_conjugate_per_isa, filter_conjugate)
FASTECG_PER_ISA(unpack_conjugate_per_isa, unpack_conjugate)

// z[k] times the complex scalar (w[2k], w[2k + 1]) in every lane, k < n.
template <typename T>
FASTECG_INLINE void twiddle(Complex<T>* z, const T* w, int64_t n) {
  for (int64_t k = 0; k < n; ++k) z[k] = rotate(z[k], w + 2 * k);
}

// Column c (length n2, in `col`) transformed in place: times w^(i k) after the transform
// (forward) or before it (inverse).
template <typename T, class Tag>
FASTECG_INLINE void transform_column(Tag tag, const FourStep<T>& fs, int64_t i, bool forward,
                                     Complex<T>* col, Complex<T>* scratch) {
  const T* w = fs.twiddles.data() + 2 * i * fs.n2;
  if (!forward) twiddle(col, w, fs.n2);
  Complex<T>* z = transform_per_isa(tag, *fs.cols, fs.col_twiddles.data(), col, scratch);
  if (forward) twiddle(z, w, fs.n2);
  if (z != col) std::copy(z, z + fs.n2, col);
}

// The forward's column step, L adjacent columns at a time, packed straight from the rows
// (sample i + n1 k of the group's columns is one vector of each row) into `cols` (L runs
// of n2), transformed, and stored into the transform array a.
template <typename T, class Tag>
FASTECG_INLINE void columns_forward(Tag tag, const FourStep<T>& fs, const T* const* rows,
                                    const T* const* tails, int64_t body, Complex<T>* a,
                                    Complex<T>* cols, Complex<T>* scratch) {
  constexpr int L = kLanes<T>;
  const int64_t n1 = fs.n1, n2 = fs.n2;
  for (int64_t i0 = 0; i0 < n1; i0 += L) {
    for (int64_t k = 0; k < n2; ++k) pack_vector(rows, tails, body, i0 + n1 * k, cols + k, n2);
    for (int j = 0; j < L; ++j) transform_column(tag, fs, i0 + j, true, cols + j * n2, scratch);
    for (int64_t k = 0; k < n2; ++k)
      for (int j = 0; j < L; ++j) a[i0 + j + n1 * k] = cols[j * n2 + k];
  }
}

// The rows (contiguous): transformed, times the gain (in the transform's k1 + n1 k2
// order) and conjugated, transformed again. The spectrum's whole round trip, one row at a
// time in cache.
template <typename T, class Tag>
FASTECG_INLINE void rows_round_trip(Tag tag, const FourStep<T>& fs, const T* gain, Complex<T>* a,
                                    Complex<T>* scratch) {
  for (int64_t k = 0; k < fs.n2; ++k) {
    Complex<T>* r = a + fs.n1 * k;
    Complex<T>* z = transform_per_isa(tag, *fs.rows, fs.row_twiddles.data(), r, scratch);
    filter_conjugate(z, gain + fs.n1 * k, fs.n1);
    z = transform_per_isa(tag, *fs.rows, fs.row_twiddles.data(), z, z == r ? scratch : r);
    if (z != r) std::copy(z, z + fs.n1, r);
  }
}

// The inverse's column step: columns_forward's mirror, unpacked (conjugated) straight
// into the rows.
template <typename T, class Tag>
FASTECG_INLINE void columns_inverse(Tag tag, const FourStep<T>& fs, const Complex<T>* a,
                                    T* const* rows, T* const* tails, int64_t body,
                                    Complex<T>* cols, Complex<T>* scratch) {
  constexpr int L = kLanes<T>;
  const int64_t n1 = fs.n1, n2 = fs.n2;
  for (int64_t i0 = 0; i0 < n1; i0 += L) {
    for (int64_t k = 0; k < n2; ++k)
      for (int j = 0; j < L; ++j) cols[j * n2 + k] = a[i0 + j + n1 * k];
    for (int j = 0; j < L; ++j) transform_column(tag, fs, i0 + j, false, cols + j * n2, scratch);
    for (int64_t k = 0; k < n2; ++k)
      unpack_conjugate_vector(cols + k, n2, rows, tails, body, i0 + n1 * k);
  }
}

// Transforms of this length and longer take the four-step form: it crosses the array
// more often but in cache-sized pieces, so it is level with the one-piece transform at
// 8192 points, ahead from 16384 and far ahead on Holter rows; on ECG batches (5120
// points), whose arrays stay in L2/L3 anyway, it would be behind (benchmarks/CPU_NOTES.md).
constexpr int64_t kFourStepMin = 16384;

// What a call's blocks share: the plan (the one-piece transform, or the four-step form
// of a long one) and the gain in the order that transform leaves the spectrum in.
template <typename T>
struct Filter {
  int64_t n_fft;
  std::shared_ptr<const Plan> plan;
  std::vector<T> twiddles;
  std::shared_ptr<const FourStep<T>> four;
  std::vector<T> gain;

  // gain_half: |H|^2 at the rFFT bins, each twice (interleaved); bin t and n_fft - t of
  // the full transform have the same. Stored divided by n_fft (the inverse's scale).
  Filter(int64_t n, const T* gain_half) : n_fft(n), gain(n) {
    auto gain_at = [&](int64_t t) { return gain_half[2 * std::min(t, n - t)] / T(n); };
    if (n < kFourStepMin) {
      plan = plan_for(n);
      twiddles.assign(plan->twiddles.begin(), plan->twiddles.end());
      for (int64_t t = 0; t < n; ++t) gain[t] = gain_at(t);
      return;
    }
    four = four_step_for<T>(n);
    const int64_t n1 = four->n1, n2 = four->n2;
    for (int64_t k2 = 0; k2 < n2; ++k2)  // frequency k2 + n2 k1 sits at k1 + n1 k2
      for (int64_t k1 = 0; k1 < n1; ++k1) gain[k1 + n1 * k2] = gain_at(k2 + n2 * k1);
  }
  // Complex vectors of scratch beside the transform array.
  int64_t scratch() const {
    return four ? std::max(four->n1, (kLanes<T> + 1) * four->n2) : n_fft;
  }
};

// Per-thread buffers: the transform array and its scratch; per lane, the padded row's
// tail (from the last whole vector of the row on, `body`); the rows' whole vectors of
// zeros and a place to discard them, for the lanes of a last block without rows.
// The transform arrays are AlignedArrays (huge_pages.h): uninitialised (every element is
// written before it is read), each sample of a column group a whole cache line, and a
// 1-hour block's ~120 MB first touched in tens of faults instead of tens of thousands,
// with the column passes' strided reads within a few TLB entries (benchmarks/CPU_NOTES.md).
template <typename T>
struct Buffers {
  AlignedArray<Complex<T>> a_storage, b_storage;
  std::vector<T> tails, zeros, discard;
  Complex<T>*a, *b;

  Buffers(int64_t n_fft, int64_t scratch, int64_t body)
      : a_storage(n_fft), b_storage(scratch), tails(2 * kLanes<T> * (n_fft - body)),
        zeros(body), discard(body), a(a_storage.get()), b(b_storage.get()) {}
};

// The block's lanes (rows before `body`, tails after) filtered: packed, forward
// transform, times the gain and conjugated, forward transform again (the conjugate of
// the inverse), unpacked conjugated.
template <typename T, class Tag>
FASTECG_INLINE void filter_lanes(Tag tag, const Filter<T>& f, const T* const* src,
                                 const T* const* src_tails, int64_t body, T* const* dst,
                                 T* const* dst_tails, Buffers<T>& buf) {
  if (f.four) {
    Complex<T>* cols = buf.b + f.four->n2;  // buf.b: a column's scratch, then the group
    columns_forward(tag, *f.four, src, src_tails, body, buf.a, cols, buf.b);
    rows_round_trip(tag, *f.four, f.gain.data(), buf.a, buf.b);
    columns_inverse(tag, *f.four, buf.a, dst, dst_tails, body, cols, buf.b);
    return;
  }
  pack_per_isa(tag, src, src_tails, body, f.n_fft, buf.a);
  Complex<T>* z = transform_per_isa(tag, *f.plan, f.twiddles.data(), buf.a, buf.b);
  filter_conjugate_per_isa(tag, z, f.gain.data(), f.n_fft);
  z = transform_per_isa(tag, *f.plan, f.twiddles.data(), z, z == buf.a ? buf.b : buf.a);
  unpack_conjugate_per_isa(tag, z, f.n_fft, dst, dst_tails, body);
}

// max |x| over a row, or +inf if it holds a NaN or an infinity (x * 0 is NaN exactly
// then). Whole vectors in lanes: a scalar max or sum would not vectorise.
template <typename T>
FASTECG_INLINE T row_peak(const T* x, int64_t n) {
  constexpr int L = kLanes<T>;
  Vec<T> peak = {}, probe = {};
  int64_t t = 0;
  for (; t + L <= n; t += L) {
    Vec<T> v;
    std::memcpy(&v, x + t, sizeof v);
    const Vec<T> a = v < 0 ? -v : v;
    peak = a > peak ? a : peak;
    probe += v * T(0);
  }
  T best = 0, zero = 0;
  for (int k = 0; k < L; ++k) {
    best = std::max(best, peak[k]);
    zero += probe[k];
  }
  for (; t < n; ++t) {
    best = std::max(best, std::abs(x[t]));
    zero += x[t] * T(0);
  }
  return zero == 0 ? best : std::numeric_limits<T>::infinity();
}

// Two rows share a complex transform only when that is exact to the op's tolerance: the
// rounding a transform adds to a row grows with the larger of the pair, so the partners'
// peaks must be within this factor (a row then carries at most a few times the error it
// has alone, ~1e-7 of its peak in float32), and both finite. Any other row is
// transformed with a zero partner, so a NaN, an infinity or a 1e30 lead never reaches
// another record.
constexpr double kPairPeakRatio = 4.0;

// Lanes of one block: row `re` in the real part, row `im` (or none, -1) in the imaginary.
struct LanePair {
  int64_t re, im;
};

// The block's rows [r0, r0 + count) paired by peak: sorted, neighbours paired while
// within kPairPeakRatio of each other. Returns the number of lanes (<= count).
template <typename T>
FASTECG_INLINE int64_t pair_rows(const T* x, int64_t n, int64_t r0, int64_t count,
                                 LanePair* lanes) {
  T peak[64];
  int64_t order[64];
  for (int64_t k = 0; k < count; ++k) {
    peak[k] = row_peak(x + (r0 + k) * n, n);
    order[k] = k;
  }
  std::sort(order, order + count, [&](int64_t a, int64_t b) { return peak[a] < peak[b]; });
  int64_t used = 0;
  for (int64_t i = 0; i < count;) {
    const int64_t a = order[i];
    const bool finite = peak[a] < std::numeric_limits<T>::infinity();
    if (finite && i + 1 < count && peak[order[i + 1]] <= kPairPeakRatio * peak[a]) {
      lanes[used++] = {r0 + a, r0 + order[i + 1]};
      i += 2;
    } else {
      lanes[used++] = {r0 + a, -1};
      i += 1;
    }
  }
  return used;
}

// Rows [r0, r0 + count), count <= 2L, filtered into y, L lanes (row pairs) per transform.
// The rows' whole vectors (samples [0, body)) are packed from x and unpacked into y
// directly; the rest of the padded row goes through the lane's tail buffer.
template <typename T, class Tag>
FASTECG_INLINE void filter_block(Tag tag, const T* x, int64_t n, int64_t r0, int64_t count,
                                 const Filter<T>& f, int64_t pad, int64_t right, bool adjoint,
                                 Buffers<T>& buf, T* y) {
  constexpr int L = kLanes<T>;
  static_assert(2 * L <= 64, "pair_rows' arrays");
  const int64_t n_fft = f.n_fft, body = n / L * L, tail = n_fft - body;
  LanePair lanes[2 * L];
  const int64_t n_lanes = pair_rows(x, n, r0, count, lanes);
  for (int64_t first = 0; first < n_lanes; first += L) {
    const T* src[2 * L];
    const T* src_tails[2 * L];
    T* dst[2 * L];
    T* tails[2 * L];
    for (int64_t k = 0; k < 2 * L; ++k) {
      const int64_t lane = first + k % L;
      const int64_t row = lane >= n_lanes ? -1 : k < L ? lanes[lane].re : lanes[lane].im;
      tails[k] = buf.tails.data() + k * tail;
      if (row >= 0) {
        src[k] = x + row * n;
        dst[k] = y + row * n;
        padded_tail(src[k], n, pad, right, n_fft, adjoint, body, tails[k]);
      } else {
        src[k] = buf.zeros.data();
        dst[k] = buf.discard.data();
        std::fill(tails[k], tails[k] + tail, T(0));
      }
      src_tails[k] = tails[k];
    }
    filter_lanes(tag, f, src, src_tails, body, dst, tails, buf);
    for (int64_t k = 0; k < 2 * L; ++k)
      if (dst[k] != buf.discard.data())
        crop_tail(tails[k], n, pad, right, n_fft, adjoint, body, dst[k]);
  }
}

template <typename T>
void zero_phase_fft_rows(const at::Tensor& rows, const at::Tensor& gain, int64_t pad,
                         int64_t right, int64_t n_fft, bool adjoint, at::Tensor& out) {
  constexpr int64_t kRowsPerBlock = 2 * kLanes<T>;
  const int64_t n_rows = rows.size(0), n = rows.size(1);
  const at::Tensor g = gain.contiguous();
  const Filter<T> filter(n_fft, g.data_ptr<T>());
  const T* x = rows.data_ptr<T>();
  T* y = out.data_ptr<T>();
  const Isa isa = cpu_isa();
  parallel_claim((n_rows + kRowsPerBlock - 1) / kRowsPerBlock, [&](auto& claim) {
    Buffers<T> buf(n_fft, filter.scratch(), n / kLanes<T> * kLanes<T>);
    with_isa(isa, [&](auto tag) __attribute__((always_inline)) {
      for (int64_t b; (b = claim()) >= 0;) {
        const int64_t r0 = b * kRowsPerBlock;
        filter_block(tag, x, n, r0, std::min(kRowsPerBlock, n_rows - r0), filter, pad, right,
                     adjoint, buf, y);
      }
    });
  });
}

at::Tensor zero_phase_fft_cpu(const at::Tensor& rows, const at::Tensor& gain, int64_t pad,
                              int64_t right, int64_t n_fft, bool adjoint) {
  TORCH_CHECK(rows.dim() == 2, "expected (rows, n_samples), got ", rows.sizes());
  TORCH_CHECK(rows.scalar_type() == at::kFloat || rows.scalar_type() == at::kDouble,
              "expected float32 or float64, got ", rows.scalar_type());
  TORCH_CHECK(gain.scalar_type() == rows.scalar_type() && gain.dim() == 1 &&
                  gain.numel() == 2 * (n_fft / 2 + 1),
              "gain: expected ", 2 * (n_fft / 2 + 1), " values of the rows' dtype");
  const int64_t n = rows.size(1);
  TORCH_CHECK(n >= 2 && 0 <= pad && pad < n && 0 <= right && right < n && n + pad + right <= n_fft,
              "bad padding: n=", n, " pad=", pad, " right=", right, " n_fft=", n_fft);
  TORCH_CHECK(n_fft % 8 == 0, "n_fft must be a multiple of 8 (the lanes of a vector), got ", n_fft);
  const at::Tensor xc = rows.contiguous();
  at::Tensor out = at::empty_like(xc);
  advise_huge_pages(out.data_ptr(), out.nbytes());
  if (xc.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "zero_phase_fft_cpu", [&] {
    zero_phase_fft_rows<scalar_t>(xc, gain, pad, right, n_fft, adjoint, out);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastecg, CPU, m) { m.impl("_zero_phase_fft_kernel", &zero_phase_fft_cpu); }

}  // namespace fastecg
