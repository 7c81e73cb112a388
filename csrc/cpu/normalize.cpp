// CPU kernel of fastecg::_normalize_kernel: one row = one normalised record.
// Statistics accumulate in double (two passes: mean, then squared deviations)
// so float32 records of Holter length do not lose precision.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "../common/huge_pages.h"
#include "../common/parallel.h"

namespace fastecg {
namespace {

constexpr double kEps = 1e-7;  // torch_ecg's guard against a zero spread
enum Method : int64_t { kZScore = 0, kMinMax = 1, kNaive = 2 };

constexpr int kLanes = 8;  // independent partial sums: the loops vectorise, results stay deterministic

// Sum of f(x[i]) in double over kLanes interleaved accumulators.
template <typename T, typename F>
double lane_sum(const T* x, int64_t n, F f) {
  double acc[kLanes] = {0};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += f(static_cast<double>(x[i + k]));
  double total = 0.0;
  for (; i < n; ++i) total += f(static_cast<double>(x[i]));
  for (int k = 0; k < kLanes; ++k) total += acc[k];
  return total;
}

// Returns (scale, shift) so that y = x * scale + shift for this row.
template <typename T>
void row_affine(const T* x, int64_t n, int64_t method, double mean, double std, double& scale,
                double& shift) {
  if (method == kNaive) {
    scale = 1.0 / std;
    shift = -mean / std;
    return;
  }
  if (method == kMinMax) {
    T lo[kLanes], hi[kLanes], bad[kLanes];
    for (int k = 0; k < kLanes; ++k) lo[k] = hi[k] = x[0], bad[k] = 0;
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      for (int k = 0; k < kLanes; ++k) {
        const T v = x[i + k];
        lo[k] = v < lo[k] ? v : lo[k];
        hi[k] = v > hi[k] ? v : hi[k];
        bad[k] += v - v;  // 0 for finite v, NaN for NaN/Inf
      }
    for (; i < n; ++i) {
      const T v = x[i];
      lo[0] = v < lo[0] ? v : lo[0];
      hi[0] = v > hi[0] ? v : hi[0];
      bad[0] += v - v;
    }
    double low = lo[0], high = hi[0];
    bool finite = std::isfinite(static_cast<double>(x[0]));
    for (int k = 0; k < kLanes; ++k) {
      low = std::min<double>(low, lo[k]);
      high = std::max<double>(high, hi[k]);
      finite &= bad[k] == 0;
    }
    // A record with NaN/Inf has no defined range: the whole record becomes NaN.
    const double range = finite ? high - low + kEps : std::numeric_limits<double>::quiet_NaN();
    scale = 1.0 / range;
    shift = -low / range;
    return;
  }
  const double mu = lane_sum(x, n, [](double v) { return v; }) / n;
  const double ss = lane_sum(x, n, [mu](double v) { return (v - mu) * (v - mu); });
  const double sigma = std::sqrt(ss / (n - 1));  // unbiased, as torch.std
  scale = std / (sigma + kEps);
  shift = mean - mu * scale;
}

template <typename T>
void normalize_rows(const T* x, T* y, int64_t rows, int64_t n, int64_t method, double mean,
                    double std) {
  parallel_claim(rows, [&](auto& claim) {
    for (int64_t r; (r = claim()) >= 0;) {
      const T* xr = x + r * n;
      T* yr = y + r * n;
      double scale, shift;
      row_affine(xr, n, method, mean, std, scale, shift);
      if (method == kNaive) {
        for (int64_t i = 0; i < n; ++i) yr[i] = static_cast<T>((xr[i] - mean) / std);
      } else {
        for (int64_t i = 0; i < n; ++i) yr[i] = static_cast<T>(xr[i] * scale + shift);
      }
    }
  });
}

at::Tensor normalize_forward_cpu(const at::Tensor& x, int64_t method, double mean, double std) {
  TORCH_CHECK(x.dim() == 2, "_normalize_kernel: expected (rows, n), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "_normalize_kernel: expected float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(method >= kZScore && method <= kNaive, "_normalize_kernel: bad method ", method);
  TORCH_CHECK(method != kZScore || x.size(1) >= 2 || x.size(0) == 0,
              "_normalize_kernel: z-score needs at least 2 samples per row");
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty_like(xc);
  advise_huge_pages(y.data_ptr(), y.nbytes());
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "normalize_forward_cpu", [&] {
    normalize_rows<scalar_t>(xc.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(),
                             xc.size(0), xc.size(1), method, mean, std);
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastecg, CPU, m) { m.impl("_normalize_kernel", &normalize_forward_cpu); }

}  // namespace fastecg
