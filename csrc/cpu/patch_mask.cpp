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
#include "isa.h"

namespace fastecg {
namespace {

constexpr int64_t kTemporal = 0;  // patch_mask.py's MASK_MODES["temporal"]
constexpr int64_t kChunk = 8;     // tokens per claimed work item
constexpr int kLanes = 8;         // independent partial sums: vectorised and deterministic

struct Layout {
  int64_t n_leads, n_samples, patch, tokens, groups, dim;
};

Layout layout_of(int64_t n_leads, int64_t n_samples, int64_t patch_size, int64_t mode,
                 const char* name) {
  TORCH_CHECK(patch_size >= 1 && n_samples % patch_size == 0, name, ": n_samples ", n_samples,
              " is not a multiple of patch_size ", patch_size);
  TORCH_CHECK(mode >= 0 && mode <= 2, name, ": bad mode code ", mode);
  const int64_t t = n_samples / patch_size;
  const bool temporal = mode == kTemporal;
  return {n_leads, n_samples, patch_size, temporal ? t : n_leads * t, temporal ? n_leads : 1,
          temporal ? n_leads * patch_size : patch_size};
}

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
  const Layout lay = layout_of(x.size(1), x.size(2), patch_size, mode, "_patch_gather_kernel");
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
  const Layout lay = layout_of(n_leads, n_samples, patch_size, mode, "_patch_scatter_kernel");
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

// sum over the token's values of f(value index within its run, run pointers offset), in
// kLanes partial sums: f(g, i) returns the term of run g, sample i.
template <typename F>
FASTECG_INLINE double token_sum(const Layout& lay, F f) {
  double acc[kLanes] = {0};
  for (int64_t g = 0; g < lay.groups; ++g) {
    int64_t i = 0;
    for (; i + kLanes <= lay.patch; i += kLanes)
      for (int k = 0; k < kLanes; ++k) acc[k] += f(g, i + k);
    for (int k = 0; i < lay.patch; ++i, ++k) acc[k] += f(g, i);
  }
  double total = 0.0;
  for (int k = 0; k < kLanes; ++k) total += acc[k];
  return total;
}

// The target's mean and 1 / std of one token (norm_pix; mean 0 and scale 1 without): two
// passes, centre then square, in double.
template <typename T>
FASTECG_INLINE void token_moments(const T* xt, const Layout& lay, bool norm_pix, double eps,
                                  double& mean, double& inv_std) {
  mean = 0.0;
  inv_std = 1.0;
  if (!norm_pix) return;
  const int64_t n = lay.n_samples;
  mean = token_sum(lay, [&](int64_t g, int64_t i) { return double(xt[g * n + i]); }) / lay.dim;
  const double ss = token_sum(lay, [&](int64_t g, int64_t i) {
    const double u = double(xt[g * n + i]) - mean;
    return u * u;
  });
  inv_std = 1.0 / std::sqrt(ss / double(lay.dim - 1) + eps);
}

// Per-token weighted squared errors m_l * |pred_l - target_l|^2 / D into `terms` (batch x
// tokens), summed afterwards in one order: the loss does not depend on the thread count.
template <typename T>
void loss_terms(const T* pred, const T* x, const T* mask, double* terms, int64_t batch,
                const Layout& lay, bool norm_pix, double eps) {
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
          double mean, inv_std;
          token_moments(xt, lay, norm_pix, eps, mean, inv_std);
          const int64_t n = lay.n_samples, p = lay.patch;
          const double ss = token_sum(lay, [&](int64_t g, int64_t i) {
            const double r = double(pt[g * p + i]) - (double(xt[g * n + i]) - mean) * inv_std;
            return r * r;
          });
          terms[tok] = m * ss / double(lay.dim);
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

struct LossArgs {
  Layout lay;
  int64_t batch;
  at::Tensor pred, x, mask;
};

LossArgs check_loss_args(const at::Tensor& pred, const at::Tensor& x, const at::Tensor& mask,
                         int64_t patch_size, int64_t mode, bool norm_pix, double eps,
                         const char* name) {
  TORCH_CHECK(x.dim() == 3, name, ": expected x (batch, n_leads, n_samples), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, name,
              ": expected float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(pred.scalar_type() == x.scalar_type() && mask.scalar_type() == x.scalar_type(),
              name, ": pred, x and mask must share one dtype");
  const Layout lay = layout_of(x.size(1), x.size(2), patch_size, mode, name);
  const int64_t batch = x.size(0);
  TORCH_CHECK(pred.dim() == 3 && pred.size(0) == batch && pred.size(1) == lay.tokens &&
                  pred.size(2) == lay.dim,
              name, ": pred must be (", batch, ", ", lay.tokens, ", ", lay.dim, "), got ",
              pred.sizes());
  TORCH_CHECK(mask.dim() == 2 && mask.size(0) == batch && mask.size(1) == lay.tokens, name,
              ": mask must be (", batch, ", ", lay.tokens, "), got ", mask.sizes());
  TORCH_CHECK(!norm_pix || lay.dim >= 2, name, ": norm_pix needs patches of 2+ values");
  TORCH_CHECK(eps >= 0, name, ": eps must be >= 0");
  return {lay, batch, pred.contiguous(), x.contiguous(), mask.contiguous()};
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
  return at::scalar_tensor(loss / total, a.x.options());
}

// dpred = w (pred - z) and, when dx, the target's part: z = (x - mean) / std with the
// unbiased variance, so dx = -(r - mean(r) - z sum(r z) / (D - 1)) / std for r = dpred
// (-r without norm_pix); w = grad 2 m / (D sum(m)). Kept tokens get zeros.
template <typename T>
void loss_backward(double grad, const T* pred, const T* x, const T* mask, T* dpred, T* dx,
                   int64_t batch, const Layout& lay, bool norm_pix, double eps) {
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
          double mean, inv_std;
          token_moments(xt, lay, norm_pix, eps, mean, inv_std);
          for (int64_t g = 0; g < lay.groups; ++g)
            for (int64_t i = 0; i < p; ++i)
              dp[g * p + i] = T(w * (double(pt[g * p + i]) - (double(xt[g * n + i]) - mean) * inv_std));
          if (!dxt) continue;
          if (!norm_pix) {
            for (int64_t g = 0; g < lay.groups; ++g)
              for (int64_t i = 0; i < p; ++i)
                dxt[g * n + i] = T(-w * (double(pt[g * p + i]) - double(xt[g * n + i])));
            continue;
          }
          // r recomputed in double from pred and x (dpred holds it rounded to T).
          auto r_at = [&](int64_t g, int64_t i) {
            return w * (double(pt[g * p + i]) - (double(xt[g * n + i]) - mean) * inv_std);
          };
          const double r_mean = token_sum(lay, r_at) / double(d);
          const double rz = token_sum(lay, [&](int64_t g, int64_t i) {
            return r_at(g, i) * ((double(xt[g * n + i]) - mean) * inv_std);
          }) / double(d - 1);
          for (int64_t g = 0; g < lay.groups; ++g)
            for (int64_t i = 0; i < p; ++i) {
              const double z = (double(xt[g * n + i]) - mean) * inv_std;
              const double r = w * (double(pt[g * p + i]) - z);
              dxt[g * n + i] = T(-(r - r_mean - z * rz) * inv_std);
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
