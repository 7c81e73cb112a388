// CPU kernels of MAE patch masking (python/fastecg/ops/patch_mask.py): the gather of kept
// tokens straight from the raw signal, its adjoint scatter, and the masked reconstruction
// loss with its backward, the normalised target computed per patch from the signal and
// never stored.
//
// Token l of a record x (n_leads, n_samples) is `groups` runs of P contiguous samples, run
// g starting at x + l * P + g * n_samples: temporal tokens (every lead of time patch l) have
// n_leads runs, the per-lead tokens (c * T + t, lead c's patch t) one run, since with
// n_samples = T * P lead c's patch t starts at (c * T + t) * P either way.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "../common/huge_pages.h"
#include "../common/lanes4.h"
#include "../common/parallel.h"
#include "../common/patch_mask_args.h"
#include "isa.h"

namespace fastecg {
namespace {

constexpr int64_t kChunk = 8;  // tokens per claimed work item

void check_ids(const at::Tensor& ids, int64_t batch, int64_t tokens, const char* name) {
  TORCH_CHECK(ids.dim() == 2 && ids.size(0) == batch && ids.scalar_type() == at::kLong,
              name, ": ids_keep must be int64 of shape (batch, n_keep), got ", ids.sizes(), " ",
              ids.scalar_type());
  TORCH_CHECK(ids.size(1) <= tokens, name, ": ", ids.size(1), " kept ids for ", tokens,
              " tokens");
  const int64_t* p = ids.const_data_ptr<int64_t>();
  for (int64_t i = 0; i < ids.numel(); ++i)
    TORCH_CHECK(p[i] >= 0 && p[i] < tokens, name, ": token id ", p[i], " outside [0, ", tokens,
                ")");
}

// ---- gather / scatter: byte copies of whole runs, any dtype, bit for bit -----------------

at::Tensor patch_gather_cpu(const at::Tensor& x, const at::Tensor& ids_keep, int64_t patch_size,
                            int64_t mode) {
  TORCH_CHECK(x.dim() == 3, "_patch_gather_kernel: expected x (batch, n_leads, n_samples), got ",
              x.sizes());
  const PatchLayout lay =
      checked_layout(x.size(1), x.size(2), patch_size, mode, "_patch_gather_kernel");
  const at::Tensor xc = x.contiguous(), ids = ids_keep.contiguous();
  const int64_t batch = xc.size(0), keep = ids.size(1);
  check_ids(ids, batch, lay.tokens, "_patch_gather_kernel");
  at::Tensor kept = at::empty({batch, keep, lay.dim}, xc.options());
  const int64_t items = batch * keep;
  if (items == 0 || lay.dim == 0) return kept;
  advise_huge_pages(kept.data_ptr(), kept.nbytes());
  const int64_t esize = xc.element_size(), run = lay.patch * esize;
  const char* src = static_cast<const char*>(xc.const_data_ptr());
  char* dst = static_cast<char*>(kept.mutable_data_ptr());
  const int64_t* id = ids.const_data_ptr<int64_t>();
  const int64_t chunks = (items + kChunk - 1) / kChunk;
  parallel_claim(chunks, [&](auto& claim) {
    for (int64_t c; (c = claim()) >= 0;) {
      for (int64_t i = c * kChunk, end = std::min(items, i + kChunk); i < end; ++i) {
        const int64_t b = i / keep;
        const char* rec = src + (b * lay.n_leads * lay.n_samples + id[i] * lay.patch) * esize;
        char* out = dst + i * lay.dim * esize;
        for (int64_t g = 0; g < lay.groups; ++g)
          std::memcpy(out + g * run, rec + g * lay.n_samples * esize, run);
      }
    }
  });
  return kept;
}

at::Tensor patch_scatter_cpu(const at::Tensor& kept, const at::Tensor& ids_keep,
                             int64_t patch_size, int64_t mode, int64_t n_leads,
                             int64_t n_samples) {
  TORCH_CHECK(kept.dim() == 3, "_patch_scatter_kernel: expected kept (batch, n_keep, D), got ",
              kept.sizes());
  TORCH_CHECK(n_leads >= 1 && n_samples >= 0, "_patch_scatter_kernel: bad signal shape");
  const PatchLayout lay =
      checked_layout(n_leads, n_samples, patch_size, mode, "_patch_scatter_kernel");
  const at::Tensor kc = kept.contiguous(), ids = ids_keep.contiguous();
  const int64_t batch = kc.size(0), keep = kc.size(1);
  TORCH_CHECK(kc.size(2) == lay.dim, "_patch_scatter_kernel: tokens of ", kc.size(2),
              " values, expected ", lay.dim);
  check_ids(ids, batch, lay.tokens, "_patch_scatter_kernel");
  TORCH_CHECK(ids.size(1) == keep, "_patch_scatter_kernel: ", ids.size(1), " ids for ", keep,
              " tokens");
  at::Tensor out = at::empty({batch, n_leads, n_samples}, kc.options());
  if (out.numel() == 0) return out;
  advise_huge_pages(out.data_ptr(), out.nbytes());
  const int64_t esize = kc.element_size(), run = lay.patch * esize;
  const int64_t record = n_leads * n_samples * esize;
  const char* src = static_cast<const char*>(kc.const_data_ptr());
  char* dst = static_cast<char*>(out.mutable_data_ptr());
  const int64_t* id = ids.const_data_ptr<int64_t>();
  // One record per item: its zeros, then its kept runs, while the record is in cache.
  parallel_claim(batch, [&](auto& claim) {
    for (int64_t b; (b = claim()) >= 0;) {
      char* rec = dst + b * record;
      std::memset(rec, 0, record);
      for (int64_t k = 0; k < keep; ++k) {
        const char* in = src + (b * keep + k) * lay.dim * esize;
        char* at = rec + id[b * keep + k] * run;
        for (int64_t g = 0; g < lay.groups; ++g)
          std::memcpy(at + g * lay.n_samples * esize, in + g * run, run);
      }
    }
  });
  return out;
}

// ---- masked reconstruction loss ------------------------------------------------------------

// One token's statistics from a single pass over x and pred, in float64: with u = x - shift
// (shift = the token's first sample under norm_pix, so that u stays on the patch's own
// scale and the centred sums lose nothing to an offset such as baseline wander; 0 without
// norm_pix), the sums of u, u^2, pred and pred u. The mean, the std and the centred sums
// the gradient needs follow in closed form (TokenStats): the target is never formed, and
// each token is read from memory once per call (a second pass over it runs from cache).
struct TokenSums {
  double u = 0, uu = 0, p = 0, pu = 0;
};

FASTECG_INLINE double lane_total(V4 v, double tail) { return (v[0] + v[1]) + (v[2] + v[3]) + tail; }

template <typename T>
FASTECG_INLINE TokenSums token_sums(const T* xt, const T* pt, const PatchLayout& lay,
                                    double shift) {
  const int64_t n = lay.n_samples, p = lay.patch;
  V4 su = {}, suu = {}, sp = {}, spu = {};
  TokenSums tail;
  for (int64_t g = 0; g < lay.groups; ++g) {
    const T* xr = xt + g * n;
    const T* pr = pt + g * p;
    int64_t i = 0;
    for (; i + 4 <= p; i += 4) {
      const V4 u = load4(xr + i) - shift, v = load4(pr + i);
      su += u;
      suu += u * u;
      sp += v;
      spu += v * u;
    }
    for (; i < p; ++i) {
      const double u = double(xr[i]) - shift, v = double(pr[i]);
      tail.u += u;
      tail.uu += u * u;
      tail.p += v;
      tail.pu += v * u;
    }
  }
  return {lane_total(su, tail.u), lane_total(suu, tail.uu), lane_total(sp, tail.p),
          lane_total(spu, tail.pu)};
}

// The target z = (x - mean) * inv_std (mean 0, inv_std 1 without norm_pix: z = x) and the
// token's centred sums: zz = sum z^2, pz = sum pred z, sp = sum pred.
struct TokenStats {
  double shift, mean_u, inv_std, zz, pz, sp;
};

template <typename T>
FASTECG_INLINE TokenStats token_stats(const T* xt, const T* pt, const PatchLayout& lay,
                                      bool norm_pix, double eps) {
  const double shift = norm_pix ? double(xt[0]) : 0.0;
  const TokenSums s = token_sums(xt, pt, lay, shift);
  const double d = double(lay.dim);
  TokenStats st{shift, 0.0, 1.0, s.uu, s.pu, s.p};
  if (norm_pix) {
    st.mean_u = s.u / d;
    const double ss = std::max(s.uu - s.u * st.mean_u, 0.0);  // sum (x - mean)^2
    st.inv_std = 1.0 / std::sqrt(ss / (d - 1.0) + eps);
    st.zz = ss * st.inv_std * st.inv_std;
    st.pz = (s.pu - st.mean_u * s.p) * st.inv_std;
  }
  return st;
}

// sum (pred - z)^2 over a token, z = (x - zoff) * inv, directly (a second pass, from cache):
// sum pred^2 - 2 pz + zz cancels when the prediction is close, and the loss is small
// exactly then (training's end).
template <typename T>
FASTECG_INLINE double token_sq_error(const T* xt, const T* pt, const PatchLayout& lay, double zoff,
                                     double inv) {
  const int64_t n = lay.n_samples, p = lay.patch;
  const V4 off = V4{} + zoff, iv = V4{} + inv;
  V4 acc = {};
  double tail = 0.0;
  for (int64_t g = 0; g < lay.groups; ++g) {
    const T* xr = xt + g * n;
    const T* pr = pt + g * p;
    int64_t i = 0;
    for (; i + 4 <= p; i += 4) {
      const V4 r = load4(pr + i) - (load4(xr + i) - off) * iv;
      acc += r * r;
    }
    for (; i < p; ++i) {
      const double r = double(pr[i]) - (double(xr[i]) - zoff) * inv;
      tail += r * r;
    }
  }
  return lane_total(acc, tail);
}

// Per-token weighted squared errors m_l * |pred_l - target_l|^2 / D into `terms` (batch x
// tokens), summed afterwards in one order: the loss does not depend on the thread count.
template <typename T>
void loss_terms(const T* pred, const T* x, const T* mask, double* terms, int64_t batch,
                const PatchLayout& lay, bool norm_pix, double eps) {
  const int64_t per_record = (lay.tokens + kChunk - 1) / kChunk;
  const Isa isa = cpu_isa();
  parallel_claim(batch * per_record, [&](auto& claim) {
    with_isa(isa, [&](auto) __attribute__((always_inline)) {
      for (int64_t c; (c = claim()) >= 0;) {
        const int64_t b = c / per_record, first = (c % per_record) * kChunk;
        const T* rec = x + b * lay.n_leads * lay.n_samples;
        for (int64_t l = first, end = std::min(lay.tokens, first + kChunk); l < end; ++l) {
          const int64_t tok = b * lay.tokens + l;
          const double m = double(mask[tok]);
          if (m == 0.0) {  // masked patches only: the kept ones are never read
            terms[tok] = 0.0;
            continue;
          }
          const T* xt = rec + l * lay.patch;
          const T* pt = pred + tok * lay.dim;
          const TokenStats st = token_stats(xt, pt, lay, norm_pix, eps);
          const double sq = token_sq_error(xt, pt, lay, st.shift + st.mean_u, st.inv_std);
          terms[tok] = m * sq / double(lay.dim);
        }
      }
    });
  });
}

template <typename T>
double mask_total(const T* mask, int64_t count) {
  double total = 0.0;
  for (int64_t i = 0; i < count; ++i) total += double(mask[i]);
  return total;
}

at::Tensor masked_recon_loss_cpu(const at::Tensor& pred, const at::Tensor& x,
                                 const at::Tensor& mask, int64_t patch_size, int64_t mode,
                                 bool norm_pix, double eps) {
  const LossArgs a = check_loss_args(pred, x, mask, patch_size, mode, norm_pix, eps,
                                     "_masked_recon_loss_kernel");
  const int64_t count = a.batch * a.lay.tokens;
  std::vector<double> terms(count);
  double loss = 0.0, total = 0.0;
  AT_DISPATCH_FLOATING_TYPES(a.x.scalar_type(), "masked_recon_loss_cpu", [&] {
    loss_terms<scalar_t>(a.pred.const_data_ptr<scalar_t>(), a.x.const_data_ptr<scalar_t>(),
                         a.mask.const_data_ptr<scalar_t>(), terms.data(), a.batch, a.lay,
                         norm_pix, eps);
    total = mask_total(a.mask.const_data_ptr<scalar_t>(), count);
  });
  for (double v : terms) loss += v;
  // through a double tensor: a loss past the dtype's range rounds to Inf (as the other
  // backends) instead of failing scalar_tensor's overflow check
  return at::scalar_tensor(loss / total, a.x.options().dtype(at::kDouble)).to(a.x.scalar_type());
}

// dpred = r = w (pred - z), w = grad 2 m / (D sum(m)), and, when dx, the target's part:
// z = (x - mean) / std with the unbiased variance, so dx = -(r - mean(r) - z sum(r z) /
// (D - 1)) / std (-r without norm_pix), where sum r = w sum pred (z sums to 0) and
// sum r z = w (pz - zz). Kept tokens get zeros.
template <typename T>
void loss_backward(double grad, const T* pred, const T* x, const T* mask, T* dpred, T* dx,
                   int64_t batch, const PatchLayout& lay, bool norm_pix, double eps) {
  const double total = mask_total(mask, batch * lay.tokens);
  const double scale = grad * 2.0 / (double(lay.dim) * total);
  const int64_t per_record = (lay.tokens + kChunk - 1) / kChunk;
  const Isa isa = cpu_isa();
  parallel_claim(batch * per_record, [&](auto& claim) {
    with_isa(isa, [&](auto) __attribute__((always_inline)) {
      const int64_t n = lay.n_samples, p = lay.patch, d = lay.dim;
      for (int64_t c; (c = claim()) >= 0;) {
        const int64_t b = c / per_record, first = (c % per_record) * kChunk;
        const int64_t rec = b * lay.n_leads * n;
        for (int64_t l = first, end = std::min(lay.tokens, first + kChunk); l < end; ++l) {
          const int64_t tok = b * lay.tokens + l;
          const double w = scale * double(mask[tok]);
          T* dp = dpred + tok * d;
          T* dxt = dx ? dx + rec + l * p : nullptr;
          if (w == 0.0) {
            std::memset(dp, 0, d * sizeof(T));
            if (dxt)
              for (int64_t g = 0; g < lay.groups; ++g) std::memset(dxt + g * n, 0, p * sizeof(T));
            continue;
          }
          const T* xt = x + rec + l * p;
          const T* pt = pred + tok * d;
          const TokenStats st = token_stats(xt, pt, lay, norm_pix, eps);
          const double zoff = st.shift + st.mean_u, inv = st.inv_std;
          double r_mean = 0.0, rz = 0.0;
          if (dxt && norm_pix) {
            r_mean = w * st.sp / double(d);
            rz = w * (st.pz - st.zz) / double(d - 1);
          }
          const V4 wv = V4{} + w, off = V4{} + zoff, iv = V4{} + inv;
          const V4 rm = V4{} + r_mean, rzv = V4{} + rz;
          for (int64_t g = 0; g < lay.groups; ++g) {
            const T* xr = xt + g * n;
            const T* pr = pt + g * p;
            T* dpr = dp + g * p;
            T* dxr = dxt ? dxt + g * n : nullptr;
            int64_t i = 0;
            for (; i + 4 <= p; i += 4) {
              const V4 z = (load4(xr + i) - off) * iv;
              const V4 r = wv * (load4(pr + i) - z);
              store4(dpr + i, r);
              if (dxr) store4(dxr + i, norm_pix ? (rm - r + z * rzv) * iv : -r);
            }
            for (; i < p; ++i) {
              const double z = (double(xr[i]) - zoff) * inv;
              const double r = w * (double(pr[i]) - z);
              dpr[i] = T(r);
              if (dxr) dxr[i] = T(norm_pix ? (r_mean - r + z * rz) * inv : -r);
            }
          }
        }
      }
    });
  });
}

std::tuple<at::Tensor, at::Tensor> masked_recon_loss_backward_cpu(
    const at::Tensor& grad, const at::Tensor& pred, const at::Tensor& x, const at::Tensor& mask,
    int64_t patch_size, int64_t mode, bool norm_pix, double eps, bool need_dx) {
  const LossArgs a = check_loss_args(pred, x, mask, patch_size, mode, norm_pix, eps,
                                     "_masked_recon_loss_backward_kernel");
  TORCH_CHECK(grad.numel() == 1, "_masked_recon_loss_backward_kernel: grad must be a scalar");
  const double g = grad.item<double>();
  at::Tensor dpred = at::empty_like(a.pred);
  at::Tensor dx = need_dx ? at::empty_like(a.x) : at::empty({0}, a.x.options());
  if (a.pred.numel() == 0) return {dpred, need_dx ? dx.zero_() : dx};
  advise_huge_pages(dpred.data_ptr(), dpred.nbytes());
  if (need_dx) advise_huge_pages(dx.data_ptr(), dx.nbytes());
  AT_DISPATCH_FLOATING_TYPES(a.x.scalar_type(), "masked_recon_loss_backward_cpu", [&] {
    loss_backward<scalar_t>(g, a.pred.const_data_ptr<scalar_t>(), a.x.const_data_ptr<scalar_t>(),
                            a.mask.const_data_ptr<scalar_t>(), dpred.mutable_data_ptr<scalar_t>(),
                            need_dx ? dx.mutable_data_ptr<scalar_t>() : nullptr, a.batch, a.lay,
                            norm_pix, eps);
  });
  return {dpred, dx};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastecg, CPU, m) {
  m.impl("_patch_gather_kernel", &patch_gather_cpu);
  m.impl("_patch_scatter_kernel", &patch_scatter_cpu);
  m.impl("_masked_recon_loss_kernel", &masked_recon_loss_cpu);
  m.impl("_masked_recon_loss_backward_kernel", &masked_recon_loss_backward_cpu);
}

}  // namespace fastecg
