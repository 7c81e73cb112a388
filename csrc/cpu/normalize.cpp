// CPU kernel of fastecg::_normalize_kernel: one row = one normalised record.
// Statistics accumulate in double (two passes: mean, then deviations from it, whose sum
// refines the mean) so float32 records of Holter length do not lose precision, and the
// map is applied centred, y = ((x - center) - fine) * scale + offset: as x * scale +
// shift, a record at a DC offset far above its spread lost the digits the offset cancels
// (a flat float64 lead at 1e6 gave 0.97 instead of 0), and the refined mean is kept in
// two parts (the first mean and the mean deviation from it), as one double it would be
// rounded to the offset's ulp.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "../common/codes.h"
#include "../common/huge_pages.h"
#include "../common/lanes4.h"
#include "../common/parallel.h"
#include "isa.h"

namespace fastecg {
namespace {

constexpr int kLanes = 8;  // independent partial sums: the loops vectorise, results stay deterministic
// kLanes values of T in one GCC vector (a struct: GCC drops vector_size on a dependent
// alias template).
template <typename T> struct LanesOf {
  typedef T type __attribute__((vector_size(kLanes * sizeof(T))));
};

// Sum of f(x[i]) in double over kLanes interleaved accumulators.
template <typename T, typename F>
FASTECG_INLINE double lane_sum(const T* x, int64_t n, F f) {
  double acc[kLanes] = {0};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += f(static_cast<double>(x[i + k]));
  double total = 0.0;
  for (; i < n; ++i) total += f(static_cast<double>(x[i]));
  for (int k = 0; k < kLanes; ++k) total += acc[k];
  return total;
}

// (center, fine, scale, offset) of this row's map y = ((x - center) - fine) * scale +
// offset (naive divides instead: normalize_row).
template <typename T>
FASTECG_INLINE void row_affine(const T* x, int64_t n, int64_t method, double mean, double std,
                               double eps, int64_t ddof, double& center, double& fine,
                               double& scale, double& offset) {
  offset = fine = 0.0;
  if (method == kNaive) {
    center = mean;
    scale = 1.0 / std;
    return;
  }
  if (method == kMinMax) {
    // Whole vectors of kLanes values (GCC vector code: one ymm of float32 in the AVX2
    // variant; as arrays of lanes GCC left the loop scalar, its lanes on the stack).
    typedef typename LanesOf<T>::type Lanes;
    Lanes lo = Lanes{} + x[0], hi = lo, bad = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
      Lanes v;
      std::memcpy(&v, x + i, sizeof v);
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
      bad += v - v;  // 0 for finite v, NaN for NaN/Inf
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
    const double range = finite ? high - low + eps : std::numeric_limits<double>::quiet_NaN();
    center = low;
    scale = 1.0 / range;
    return;
  }
  const double mu = lane_sum(x, n, [](double v) { return v; }) / n;
  // The deviations' sum is the first mean's rounding: adding it back centres a flat row
  // exactly (its deviations are then exact and equal), and the squares are corrected
  // to the refined mean.
  double ds[kLanes] = {0}, ss[kLanes] = {0};  // one pass for both sums
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int k = 0; k < kLanes; ++k) {
      const double d = static_cast<double>(x[i + k]) - mu;
      ds[k] += d;
      ss[k] += d * d;
    }
  for (; i < n; ++i) {
    const double d = static_cast<double>(x[i]) - mu;
    ds[0] += d;
    ss[0] += d * d;
  }
  double d_sum = 0.0, sq_sum = 0.0;
  for (int k = 0; k < kLanes; ++k) d_sum += ds[k], sq_sum += ss[k];
  // ddof 1: unbiased, as torch.std
  const double sigma = std::sqrt(std::max(sq_sum - d_sum * d_sum / n, 0.0) / (n - ddof));
  center = mu;
  fine = d_sum / n;
  scale = std / (sigma + eps);
  offset = mean;
}

// One row: its statistics, then y = ((x - center) - fine) * scale + offset (in double,
// rounded to T). In the x86-64-v3 variant (with_isa, isa.h) the statistics' lanes and the affine map
// run on AVX2 vectors, which is what puts it ahead of plain PyTorch
// (benchmarks/CPU_NOTES.md).
template <typename T>
FASTECG_INLINE void normalize_row(const T* x, T* y, int64_t n, int64_t method, double mean,
                                       double std, double eps, int64_t ddof) {
  double center, fine, scale, offset;
  row_affine(x, n, method, mean, std, eps, ddof, center, fine, scale, offset);
  if (method == kNaive) {
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<T>((x[i] - mean) / std);
  } else {
    for (int64_t i = 0; i < n; ++i)
      y[i] = static_cast<T>((static_cast<double>(x[i]) - center - fine) * scale + offset);
  }
}

template <typename T>
void normalize_rows(const T* x, T* y, int64_t rows, int64_t n, int64_t method, double mean,
                    double std, double eps, int64_t ddof) {
  const Isa isa = cpu_isa();
  parallel_claim(rows, [&](auto& claim) {
    with_isa(isa, [&](auto) __attribute__((always_inline)) {
      for (int64_t r; (r = claim()) >= 0;)
        normalize_row(x + r * n, y + r * n, n, method, mean, std, eps, ddof);
    });
  });
}

at::Tensor normalize_forward_cpu(const at::Tensor& x, int64_t method, double mean, double std,
                                 double eps, int64_t ddof) {
  TORCH_CHECK(x.dim() == 2, "_normalize_kernel: expected (rows, n), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "_normalize_kernel: expected float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(method >= kZScore && method <= kNaive, "_normalize_kernel: bad method ", method);
  TORCH_CHECK(method != kZScore || x.size(1) > ddof || x.size(0) == 0,
              "_normalize_kernel: z-score needs more than ddof samples per row");
  TORCH_CHECK(ddof >= 0 && eps >= 0, "_normalize_kernel: needs ddof >= 0 and eps >= 0");
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty_like(xc);
  advise_huge_pages(y.data_ptr(), y.nbytes());
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "normalize_forward_cpu", [&] {
    normalize_rows<scalar_t>(xc.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(),
                             xc.size(0), xc.size(1), method, mean, std, eps, ddof);
  });
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastecg, CPU, m) { m.impl("_normalize_kernel", &normalize_forward_cpu); }

}  // namespace fastecg
