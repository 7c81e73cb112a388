// CPU kernels of the augmenters' parameter draws (python/fastecg/augmenters): the Philox
// words of a Keys stream, its uniforms and normals, the Beta draw of Mixup and CutMix,
// whole draws of the classic augmenters (_augment_draw_kernel) and the op tensors the
// fused pass makes of some of them (_augment_fuse_kernel), each the torch form's
// operations in the same order on the calling thread.
//
// Why C++: a draw is a few dozen torch ops on a few hundred values, each costing 2-20 us of
// dispatch (more after the fused pass has streamed the batch through the caches), where
// the arithmetic takes nanoseconds; and float64 log, cos and sin on a contiguous tensor go
// to a multithreaded vector library whose wake-up costs more than the values. The torch
// forms stay the reference (GPU tensors, a build without the extension); tests hold the two
// equal (tests/augmenters/test_random.py).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

namespace fastecg {
namespace {

constexpr double kScale = 1.0 / 4294967296.0;

void philox_block(uint32_t& x0, uint32_t& x1, uint32_t& x2, uint32_t& x3, uint32_t key0,
                  uint32_t key1, int64_t rounds) {
  for (int64_t r = 0; r < rounds; ++r) {
    if (r > 0) {
      key0 += 0x9E3779B9u;
      key1 += 0xBB67AE85u;
    }
    const uint64_t p0 = static_cast<uint64_t>(x0) * 0xD2511F53u;
    const uint64_t p1 = static_cast<uint64_t>(x2) * 0xCD9E8D57u;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    x0 = hi1 ^ x1 ^ key0;
    x1 = lo1;
    x2 = hi0 ^ x3 ^ key1;
    x3 = lo0;
  }
}

// One sample's counters and the call's key: the first `count` words of stream `c2`
// (counters (c0, c1, c2, b), four words a block b).
struct SampleKeys {
  uint32_t c0, c1, k0, k1;

  SampleKeys(int64_t index, int64_t view, int64_t key0, int64_t key1)
      : c0(static_cast<uint32_t>(index)),
        c1(static_cast<uint32_t>((index >> 32) & 0xFFFF) | static_cast<uint32_t>(view << 16)),
        k0(static_cast<uint32_t>(key0)),
        k1(static_cast<uint32_t>(key1)) {}

  void words(int64_t c2, int64_t count, uint32_t* out) const {
    for (int64_t b = 0; 4 * b < count; ++b) {
      uint32_t x[4] = {c0, c1, static_cast<uint32_t>(c2), static_cast<uint32_t>(b)};
      philox_block(x[0], x[1], x[2], x[3], k0, k1, 10);
      for (int64_t j = 0; j < 4 && 4 * b + j < count; ++j) out[4 * b + j] = x[j];
    }
  }

  // Keys.uniform: n uniforms (w + 0.5) * 2**-32 of the stream's first n words.
  std::vector<double> uniform(int64_t c2, int64_t n) const {
    std::vector<uint32_t> w(n);
    words(c2, n, w.data());
    std::vector<double> u(n);
    for (int64_t j = 0; j < n; ++j) u[j] = (static_cast<double>(w[j]) + 0.5) * kScale;
    return u;
  }

  // Keys.normal: n normals by Box-Muller, radius from the first n uniforms, angle from
  // the next n.
  std::vector<double> normal(int64_t c2, int64_t n) const {
    const std::vector<double> u = uniform(c2, 2 * n);
    std::vector<double> z(n);
    for (int64_t j = 0; j < n; ++j)
      z[j] = std::sqrt(-2 * std::log(u[j])) * std::cos(2 * M_PI * u[n + j]);
    return z;
  }
};

void check_keys(const at::Tensor& index, const at::Tensor& view, const char* what) {
  TORCH_CHECK(index.dim() == 1 && index.scalar_type() == at::kLong && index.device().is_cpu() &&
                  view.sizes() == index.sizes() && view.scalar_type() == at::kLong &&
                  view.device().is_cpu(),
              what, ": index and view must be 1-D int64 CPU tensors of one size");
}

// The words of a Keys stream (python/fastecg/augmenters/_random.py, Keys._philox) without
// its ~20 small torch ops: sample i's counters (index[i] low 32 bits, index[i] bits 32-47 |
// view[i] << 16, c2_first + s, b) for s < c2_count, b < blocks; (n, c2_count, 4 * blocks).
at::Tensor philox_stream_cpu(const at::Tensor& index, const at::Tensor& view, int64_t c2_first,
                             int64_t c2_count, int64_t blocks, int64_t k0, int64_t k1) {
  check_keys(index, view, "_philox_stream_kernel");
  TORCH_CHECK(c2_count >= 0 && blocks >= 0, "_philox_stream_kernel: negative count");
  const int64_t n = index.size(0);
  at::Tensor out = at::empty({n, c2_count, 4 * blocks}, index.options());
  const at::Tensor ic = index.contiguous(), vc = view.contiguous();
  const int64_t* pi = ic.const_data_ptr<int64_t>();
  const int64_t* pv = vc.const_data_ptr<int64_t>();
  int64_t* po = out.mutable_data_ptr<int64_t>();
  std::vector<uint32_t> w(4 * blocks);
  for (int64_t i = 0; i < n; ++i) {
    const SampleKeys keys(pi[i], pv[i], k0, k1);
    for (int64_t s = 0; s < c2_count; ++s) {
      keys.words(c2_first + s, 4 * blocks, w.data());
      std::copy(w.begin(), w.end(), po + (i * c2_count + s) * 4 * blocks);
    }
  }
  return out;
}

// Keys.uniform / Keys.normal of stream c2, in one call: (n_samples, n) float64.
at::Tensor philox_uniform_cpu(const at::Tensor& index, const at::Tensor& view, int64_t c2,
                              int64_t n, int64_t k0, int64_t k1, bool normal) {
  check_keys(index, view, "_philox_uniform_kernel");
  TORCH_CHECK(n >= 0, "_philox_uniform_kernel: negative count");
  const int64_t rows = index.size(0);
  at::Tensor out = at::empty({rows, n}, index.options().dtype(at::kDouble));
  const at::Tensor ic = index.contiguous(), vc = view.contiguous();
  const int64_t* pi = ic.const_data_ptr<int64_t>();
  const int64_t* pv = vc.const_data_ptr<int64_t>();
  double* po = out.mutable_data_ptr<double>();
  for (int64_t i = 0; i < rows; ++i) {
    const SampleKeys keys(pi[i], pv[i], k0, k1);
    const std::vector<double> v = normal ? keys.normal(c2, n) : keys.uniform(c2, n);
    std::copy(v.begin(), v.end(), po + i * n);
  }
  return out;
}

// Beta(alpha, b) from one row's uniforms u (2 tries + 2) and normals z (2 tries):
// python/fastecg/augmenters/classic.py's beta() (two Gamma draws by Marsaglia-Tsang, the
// first accepted of `tries` proposals, Gamma(a) = Gamma(a + 1) * U ** (1 / a) below 1).
// z(k): the k-th normal (k < 2 tries), asked for only as far as the proposals go.
template <typename Z>
double beta_row(const double* ur, const Z& z, int64_t tries, double alpha, double b) {
  double g[2];
  for (int i = 0; i < 2; ++i) {
    const double shape = i == 0 ? alpha : b;
    const bool boost = shape < 1;
    const double d = (boost ? shape + 1 : shape) - 1.0 / 3;
    const double c = 1.0 / std::sqrt(9 * d);
    g[i] = d;  // no proposal accepted (odds below 1e-10 for 8 tries)
    for (int64_t k = 0; k < tries; ++k) {
      const double zk = z(i * tries + k), uk = ur[i * tries + k];
      const double base = 1 + c * zk;
      const double v = base * base * base;
      const double bound = 0.5 * (zk * zk) + d - d * v + d * std::log(std::max(v, 1e-30));
      if (v > 0 && std::log(uk) < bound) {
        g[i] = d * v;
        break;
      }
    }
    if (boost) g[i] = g[i] * std::pow(ur[2 * tries + i], 1.0 / shape);
  }
  return g[0] / std::max(g[0] + g[1], 1e-300);
}

// Beta(alpha, b) per row from uniforms u (n, 2 * tries + 2) and normals z (n, 2 * tries).
at::Tensor beta_cpu(const at::Tensor& u, const at::Tensor& z, double alpha, double b) {
  TORCH_CHECK(u.dim() == 2 && z.dim() == 2 && u.scalar_type() == at::kDouble &&
                  z.scalar_type() == at::kDouble && u.size(0) == z.size(0) &&
                  z.size(1) % 2 == 0 && u.size(1) == z.size(1) + 2,
              "_beta_kernel: expected float64 u (n, 2 * tries + 2) and z (n, 2 * tries)");
  const at::Tensor uc = u.contiguous(), zc = z.contiguous();
  const int64_t n = uc.size(0), tries = zc.size(1) / 2;
  at::Tensor out = at::empty({n}, uc.options());
  const double* pu = uc.const_data_ptr<double>();
  const double* pz = zc.const_data_ptr<double>();
  double* po = out.mutable_data_ptr<double>();
  for (int64_t r = 0; r < n; ++r) {
    const double* zr = pz + r * 2 * tries;
    po[r] = beta_row(pu + r * (2 * tries + 2), [zr](int64_t k) { return zr[k]; }, tries, alpha, b);
  }
  return out;
}

// ---- whole draws of the classic augmenters ----------------------------------------------
//
// Each is the augmenter's draw() in python/fastecg/augmenters/classic.py, its outputs in
// the order of the params dict's keys there. `stream` is the augmenter's (its draws' words
// are (slot << 16) | (stream << 6 | k) for its own streams k).

struct Draw {
  int64_t n;
  const int64_t* index;
  const int64_t* view;
  int64_t slot, stream, k0, k1;

  SampleKeys keys(int64_t i) const { return SampleKeys(index[i], view[i], k0, k1); }
  int64_t word(int64_t k) const { return ((slot & 0xFFFF) << 16) | (((stream << 6) | k) & 0xFFFF); }
  // Augmenter._applied: the sample's first uniform of stream k below prob.
  bool applied(const SampleKeys& s, double prob, int64_t k = 0) const {
    return s.uniform(word(k), 1)[0] < prob;
  }
};

at::TensorOptions f64() { return at::TensorOptions().dtype(at::kDouble); }
at::TensorOptions i64() { return at::TensorOptions().dtype(at::kLong); }

// BaselineWander. ints (n_leads), floats (prob); tensors: ampl_ratio rows (R, K) and
// gaussian (G, 2) float64, and each lead's amplitude (n, n_leads) float64 or empty for 1
// (relative to the peak-to-peak the kernel measures). -> amplitude (n, L, K), phase
// (n, L, K), noise_mean (n, L), noise_std (n, L) float64, noise_keys (n, L, 2) int64.
std::vector<at::Tensor> draw_wander(const Draw& d, at::IntArrayRef ints, at::ArrayRef<double> floats,
                                    const std::vector<at::Tensor>& t) {
  const int64_t L = ints[0];
  const double prob = floats[0];
  const at::Tensor rows = t[0].contiguous(), gauss = t[1].contiguous();
  const int64_t R = rows.size(0), K = rows.size(1), G = gauss.size(0);
  const double* pr = rows.const_data_ptr<double>();
  const double* pg = gauss.const_data_ptr<double>();
  const at::Tensor ampl = t[2].numel() ? t[2].contiguous() : at::Tensor();
  const double* pa = ampl.defined() ? ampl.const_data_ptr<double>() : nullptr;
  at::Tensor amplitude = at::empty({d.n, L, K}, f64()), phase = at::empty({d.n, L, K}, f64());
  at::Tensor mean = at::empty({d.n, L}, f64()), std_ = at::empty({d.n, L}, f64());
  at::Tensor keys = at::empty({d.n, L, 2}, i64());
  double *po = amplitude.mutable_data_ptr<double>(), *pp = phase.mutable_data_ptr<double>();
  double *pm = mean.mutable_data_ptr<double>(), *ps = std_.mutable_data_ptr<double>();
  int64_t* pk = keys.mutable_data_ptr<int64_t>();
  std::vector<uint32_t> bits(2 * L);
  for (int64_t i = 0; i < d.n; ++i) {
    const SampleKeys s = d.keys(i);
    const double on = d.applied(s, prob) ? 1.0 : 0.0;
    const std::vector<double> u = s.uniform(d.word(1), L * (2 + K));
    s.words(d.word(2), 2 * L, bits.data());
    for (int64_t l = 0; l < L; ++l) {
      const double* ul = u.data() + l * (2 + K);
      const int64_t row = std::min(static_cast<int64_t>(ul[0] * R), R - 1);
      const int64_t g = std::min(static_cast<int64_t>(ul[1] * G), G - 1);
      const double scale = (pa ? pa[i * L + l] : 1.0) * on;
      const int64_t il = i * L + l;
      for (int64_t k = 0; k < K; ++k) {
        po[il * K + k] = pr[row * K + k] * scale;
        pp[il * K + k] = 2 * M_PI * ul[2 + k];
      }
      pm[il] = pg[2 * g] * scale;
      ps[il] = pg[2 * g + 1] * scale;
      pk[2 * il] = bits[2 * l];
      pk[2 * il + 1] = bits[2 * l + 1];
    }
  }
  return {amplitude, phase, mean, std_, keys};
}

// RandomFlip. ints (n_leads, per_channel), floats (prob[0], prob[1]) -> sign (n, L).
std::vector<at::Tensor> draw_flip(const Draw& d, at::IntArrayRef ints, at::ArrayRef<double> floats,
                                  const std::vector<at::Tensor>&) {
  const int64_t L = ints[0];
  const bool per_channel = ints[1] != 0;
  at::Tensor sign = at::empty({d.n, L}, f64());
  double* po = sign.mutable_data_ptr<double>();
  for (int64_t i = 0; i < d.n; ++i) {
    const SampleKeys s = d.keys(i);
    const bool on = d.applied(s, floats[0]);
    const std::vector<double> u = per_channel ? s.uniform(d.word(1), L) : std::vector<double>();
    for (int64_t l = 0; l < L; ++l)
      po[i * L + l] = on && (!per_channel || u[l] < floats[1]) ? -1.0 : 1.0;
  }
  return {sign};
}

// RandomMasking. ints (n_samples, w0, w1, slots), floats (prob[0], expected / slots) ->
// start, end (n, slots) int64 (0, 0 for slots not used).
std::vector<at::Tensor> draw_masking(const Draw& d, at::IntArrayRef ints,
                                     at::ArrayRef<double> floats, const std::vector<at::Tensor>&) {
  const int64_t n_samples = ints[0], w0 = ints[1], w1 = ints[2], slots = ints[3];
  at::Tensor start = at::empty({d.n, slots}, i64()), end = at::empty({d.n, slots}, i64());
  int64_t *ps = start.mutable_data_ptr<int64_t>(), *pe = end.mutable_data_ptr<int64_t>();
  for (int64_t i = 0; i < d.n; ++i) {
    const SampleKeys s = d.keys(i);
    const bool on = d.applied(s, floats[0]);
    const std::vector<double> u = s.uniform(d.word(1), 3 * slots);
    for (int64_t j = 0; j < slots; ++j) {
      const bool active = u[j] < floats[1] && on;
      const int64_t width =
          w0 + std::min(static_cast<int64_t>(u[slots + j] * (w1 - w0 + 1)), w1 - w0);
      const int64_t centre = w1 / 2 + static_cast<int64_t>(u[2 * slots + j] * (n_samples - w1));
      ps[i * slots + j] = active ? std::clamp<int64_t>(centre - width / 2, 0, n_samples) : 0;
      pe[i * slots + j] = active ? std::clamp<int64_t>(centre + width / 2, 0, n_samples) : 0;
    }
  }
  return {start, end};
}

// RandomRenormalize. ints (width), floats (prob, mean low, mean high, std low, std high)
// -> applied (n,) bool, mean, std (n, width) float64.
std::vector<at::Tensor> draw_renorm(const Draw& d, at::IntArrayRef ints,
                                    at::ArrayRef<double> floats, const std::vector<at::Tensor>&) {
  const int64_t W = ints[0];
  at::Tensor applied = at::empty({d.n}, at::TensorOptions().dtype(at::kBool));
  at::Tensor mean = at::empty({d.n, W}, f64()), std_ = at::empty({d.n, W}, f64());
  bool* pa = applied.mutable_data_ptr<bool>();
  double* out[2] = {mean.mutable_data_ptr<double>(), std_.mutable_data_ptr<double>()};
  for (int64_t i = 0; i < d.n; ++i) {
    const SampleKeys s = d.keys(i);
    pa[i] = d.applied(s, floats[0]);
    const std::vector<double> z = s.normal(d.word(1), 2 * W);
    for (int q = 0; q < 2; ++q) {
      const double lo = floats[1 + 2 * q], hi = floats[2 + 2 * q];
      const double mid = (lo + hi) / 2, spread = 0.3 * (hi - mid);
      for (int64_t w = 0; w < W; ++w)
        out[q][i * W + w] = std::clamp(mid + spread * z[q * W + w], lo, hi);
    }
  }
  return {applied, mean, std_};
}

// StretchCompress. ints (n_samples), floats (prob, r) -> new_len (n,) int64.
std::vector<at::Tensor> draw_stretch(const Draw& d, at::IntArrayRef ints,
                                     at::ArrayRef<double> floats, const std::vector<at::Tensor>&) {
  const int64_t n_samples = ints[0];
  const double prob = floats[0], r0 = floats[1];
  at::Tensor new_len = at::empty({d.n}, i64());
  int64_t* po = new_len.mutable_data_ptr<int64_t>();
  for (int64_t i = 0; i < d.n; ++i) {
    const SampleKeys s = d.keys(i);
    const bool on = d.applied(s, prob);
    const double sign = s.uniform(d.word(1), 1)[0] < 0.5 ? -1.0 : 1.0;
    const double r = std::clamp(r0 + 0.382 * r0 * s.normal(d.word(2), 1)[0], 0.0, 2 * r0);
    // torch.round: half to even, as nearbyint in the default rounding mode.
    const int64_t len = std::max<int64_t>(
        static_cast<int64_t>(std::nearbyint((1 + sign * r) * n_samples)), 2);
    po[i] = on ? len : n_samples;
  }
  return {new_len};
}

// Mixup. ints (tries), floats (prob, alpha, beta) -> lam (n,) float64 (1 where not
// applied), partner (n,) int64: the applied samples in the random order of a uniform each,
// each paired with the next (pair_within_batch); the others with themselves.
std::vector<at::Tensor> draw_mixup(const Draw& d, at::IntArrayRef ints, at::ArrayRef<double> floats,
                                   const std::vector<at::Tensor>&) {
  const int64_t tries = ints[0];
  at::Tensor lam = at::empty({d.n}, f64()), partner = at::empty({d.n}, i64());
  double* pl = lam.mutable_data_ptr<double>();
  int64_t* pp = partner.mutable_data_ptr<int64_t>();
  std::vector<double> key(d.n);
  std::vector<char> on(d.n);
  for (int64_t i = 0; i < d.n; ++i) {
    const SampleKeys s = d.keys(i);
    on[i] = d.applied(s, floats[0]);
    pl[i] = 1.0;
    if (on[i]) {
      // Keys.normal's values, each computed only where a proposal reads it (most samples
      // accept the first): its log and cos were most of the draw.
      const std::vector<double> u = s.uniform(d.word(1), 2 * tries + 2);
      const std::vector<double> v = s.uniform(d.word(2), 4 * tries);
      const int64_t m = 2 * tries;
      const auto z = [&v, m](int64_t k) {
        return std::sqrt(-2 * std::log(v[k])) * std::cos(2 * M_PI * v[m + k]);
      };
      pl[i] = beta_row(u.data(), z, tries, floats[1], floats[2]);
    }
    key[i] = on[i] ? s.uniform(d.word(3), 1)[0] : 2.0 + static_cast<double>(i);
  }
  std::vector<int64_t> order(d.n), pos(d.n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key[a] < key[b]; });
  for (int64_t j = 0; j < d.n; ++j) pos[order[j]] = j;
  const int64_t count = std::max<int64_t>(std::count(on.begin(), on.end(), 1), 1);
  for (int64_t i = 0; i < d.n; ++i) pp[i] = on[i] ? order[(pos[i] + 1) % count] : i;
  return {lam, partner};
}

// LabelSmooth. floats (prob) -> applied (n,) bool.
std::vector<at::Tensor> draw_label_smooth(const Draw& d, at::IntArrayRef, at::ArrayRef<double> floats,
                                          const std::vector<at::Tensor>&) {
  at::Tensor applied = at::empty({d.n}, at::TensorOptions().dtype(at::kBool));
  bool* pa = applied.mutable_data_ptr<bool>();
  for (int64_t i = 0; i < d.n; ++i) pa[i] = d.applied(d.keys(i), floats[0]);
  return {applied};
}

// ---- the fused pass's op tensors from drawn parameters ----------------------------------
//
// What a classic augmenter's fuse() computes from its parameters for the kernel's op
// (python/fastecg/augmenters/classic.py), in one call instead of a dozen small torch ops.

// BaselineWander: amplitude, phase (n, L, K), noise_mean (n, L) float64 -> the SINES op's
// coefficients (n, L, 2K + 1) in the signal's dtype (ints: 1 for float64): a cos(phase),
// then a sin(phase), then the mean (torch.polar's products, cast once).
std::vector<at::Tensor> fuse_wander(at::IntArrayRef ints, const std::vector<at::Tensor>& t) {
  const at::Tensor a = t[0].contiguous(), ph = t[1].contiguous(), mean = t[2].contiguous();
  const int64_t n = a.size(0), L = a.size(1), K = a.size(2);
  at::Tensor coef = at::empty({n, L, 2 * K + 1}, f64());
  const double *pa = a.const_data_ptr<double>(), *pp = ph.const_data_ptr<double>();
  const double* pm = mean.const_data_ptr<double>();
  double* pc = coef.mutable_data_ptr<double>();
  for (int64_t il = 0; il < n * L; ++il) {
    double* c = pc + il * (2 * K + 1);
    for (int64_t k = 0; k < K; ++k) {
      const double amp = pa[il * K + k];
      if (amp == 0.0) {  // a lead the step leaves alone (half of them): no cos and sin
        c[k] = c[K + k] = 0.0;
        continue;
      }
      c[k] = amp * std::cos(pp[il * K + k]);
      c[K + k] = amp * std::sin(pp[il * K + k]);
    }
    c[2 * K] = pm[il];
  }
  return {ints[0] ? coef : coef.to(at::kFloat)};
}

// StretchCompress: new_len (n,) int64 and n_samples (ints) -> the WARP op's offset (n,)
// int64 (half the length change, negative for a compression), limit (new_len) and ratio
// (n_samples - 1) / (new_len - 1) float64.
std::vector<at::Tensor> fuse_stretch(at::IntArrayRef ints, const std::vector<at::Tensor>& t) {
  const at::Tensor len = t[0].contiguous();
  const int64_t n = len.size(0), n_samples = ints[0];
  at::Tensor offset = at::empty({n}, i64()), ratio = at::empty({n}, f64());
  const int64_t* pl = len.const_data_ptr<int64_t>();
  int64_t* po = offset.mutable_data_ptr<int64_t>();
  double* pr = ratio.mutable_data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t half = std::abs(pl[i] - n_samples) / 2;
    po[i] = pl[i] >= n_samples ? half : -half;
    // As torch evaluates (n_samples - 1) / tensor: the reciprocal times the number.
    pr[i] = (1.0 / static_cast<double>(pl[i] - 1)) * static_cast<double>(n_samples - 1);
  }
  return {offset, len, ratio};
}

std::vector<at::Tensor> augment_fuse_cpu(int64_t stream, at::IntArrayRef ints,
                                         const std::vector<at::Tensor>& tensors) {
  for (const at::Tensor& t : tensors) TORCH_CHECK(t.device().is_cpu(), "_augment_fuse_kernel: CPU tensors");
  switch (stream) {
    case 1:
      TORCH_CHECK(ints.size() == 1 && tensors.size() == 3 && tensors[0].dim() == 3 &&
                      tensors[1].sizes() == tensors[0].sizes() &&
                      tensors[2].sizes() == tensors[0].sizes().slice(0, 2) &&
                      tensors[0].scalar_type() == at::kDouble &&
                      tensors[1].scalar_type() == at::kDouble &&
                      tensors[2].scalar_type() == at::kDouble,
                  "_augment_fuse_kernel: bad baseline wander arguments");
      return fuse_wander(ints, tensors);
    case 5:
      TORCH_CHECK(ints.size() == 1 && tensors.size() == 1 && tensors[0].dim() == 1 &&
                      tensors[0].scalar_type() == at::kLong,
                  "_augment_fuse_kernel: bad stretch arguments");
      return fuse_stretch(ints, tensors);
    default:
      TORCH_CHECK(false, "_augment_fuse_kernel: no fused form for stream ", stream);
  }
}

std::vector<at::Tensor> augment_draw_cpu(int64_t stream, const at::Tensor& index,
                                         const at::Tensor& view, int64_t slot, int64_t k0,
                                         int64_t k1, at::IntArrayRef ints,
                                         at::ArrayRef<double> floats,
                                         const std::vector<at::Tensor>& tensors) {
  check_keys(index, view, "_augment_draw_kernel");
  const at::Tensor ic = index.contiguous(), vc = view.contiguous();
  const Draw d{index.size(0), ic.const_data_ptr<int64_t>(), vc.const_data_ptr<int64_t>(),
               slot, stream, k0, k1};
  for (const at::Tensor& t : tensors)
    TORCH_CHECK(t.device().is_cpu() && (t.numel() == 0 || t.scalar_type() == at::kDouble),
                "_augment_draw_kernel: tables must be float64 CPU tensors");
  switch (stream) {
    case 1:
      TORCH_CHECK(ints.size() == 1 && floats.size() == 1 && tensors.size() == 3 &&
                      tensors[0].dim() == 2 && tensors[1].dim() == 2 && tensors[1].size(1) == 2 &&
                      tensors[0].size(0) >= 1 && tensors[1].size(0) >= 1 &&
                      (tensors[2].numel() == 0 ||
                       tensors[2].sizes() == at::IntArrayRef({d.n, ints[0]})),
                  "_augment_draw_kernel: bad baseline wander arguments");
      return draw_wander(d, ints, floats, tensors);
    case 2:
      TORCH_CHECK(ints.size() == 2 && floats.size() == 2, "_augment_draw_kernel: bad flip arguments");
      return draw_flip(d, ints, floats, tensors);
    case 3:
      TORCH_CHECK(ints.size() == 4 && floats.size() == 2 && ints[3] >= 1,
                  "_augment_draw_kernel: bad masking arguments");
      return draw_masking(d, ints, floats, tensors);
    case 4:
      TORCH_CHECK(ints.size() == 1 && floats.size() == 5, "_augment_draw_kernel: bad renormalise arguments");
      return draw_renorm(d, ints, floats, tensors);
    case 5:
      TORCH_CHECK(ints.size() == 1 && floats.size() == 2, "_augment_draw_kernel: bad stretch arguments");
      return draw_stretch(d, ints, floats, tensors);
    case 6:
      TORCH_CHECK(ints.size() == 1 && floats.size() == 3 && ints[0] >= 1,
                  "_augment_draw_kernel: bad mixup arguments");
      return draw_mixup(d, ints, floats, tensors);
    case 8:
      TORCH_CHECK(floats.size() == 1, "_augment_draw_kernel: bad label smoothing arguments");
      return draw_label_smooth(d, ints, floats, tensors);
    default:
      TORCH_CHECK(false, "_augment_draw_kernel: no draw for stream ", stream);
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(fastecg, CPU, m) {
  m.impl("_philox_stream_kernel", &philox_stream_cpu);
  m.impl("_philox_uniform_kernel", &philox_uniform_cpu);
  m.impl("_beta_kernel", &beta_cpu);
  m.impl("_augment_draw_kernel", &augment_draw_cpu);
  m.impl("_augment_fuse_kernel", &augment_fuse_cpu);
}

}  // namespace fastecg
