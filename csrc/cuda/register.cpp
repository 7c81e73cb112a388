// Torch glue of the CUDA kernels: validate, allocate, launch on the current
// stream. Built only with CUDA (setup.py); the kernels themselves are in *.cu.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "launchers.h"

namespace fastecg {
namespace {

at::Tensor normalize_forward_cuda_op(const at::Tensor& x, int64_t method, double mean, double std,
                                     double eps, int64_t ddof) {
  TORCH_CHECK(x.dim() == 2, "_normalize_kernel: expected (rows, n), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "_normalize_kernel: expected float32 or float64, got ", x.scalar_type());
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty_like(xc);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  cudaError_t err;
  if (xc.scalar_type() == at::kFloat) {
    err = normalize_forward_cuda<float>(xc.const_data_ptr<float>(), y.mutable_data_ptr<float>(),
                                        xc.size(0), xc.size(1), method, mean, std, eps, ddof, stream);
  } else {
    err = normalize_forward_cuda<double>(xc.const_data_ptr<double>(), y.mutable_data_ptr<double>(),
                                         xc.size(0), xc.size(1), method, mean, std, eps, ddof, stream);
  }
  TORCH_CHECK(err == cudaSuccess, "_normalize_kernel: ", cudaGetErrorString(err));
  return y;
}

std::tuple<at::Tensor, at::Tensor> median_filter_cuda_op(const at::Tensor& x, at::IntArrayRef sizes,
                                                         at::IntArrayRef origins, int64_t mode,
                                                         double cval, bool subtract,
                                                         bool need_index) {
  TORCH_CHECK(x.dim() == 2, "_median_filter_kernel: expected (rows, n), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "_median_filter_kernel: expected float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(!sizes.empty() && sizes.size() == origins.size(), "one origin per size");
  TORCH_CHECK(mode >= kReflect && mode <= kWrap, "bad mode code ", mode);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor index;
  for (size_t s = 0; s < sizes.size(); ++s) {
    TORCH_CHECK(sizes[s] >= 1, "bad window size ", sizes[s]);
    TORCH_CHECK(-(sizes[s] / 2) <= origins[s] && origins[s] <= (sizes[s] - 1) / 2,
                "origin ", origins[s], " out of range for size ", sizes[s]);
    at::Tensor sel = at::empty(xc.sizes(), xc.options().dtype(at::kLong));
    const int64_t start = -(sizes[s] / 2) - origins[s];
    const int64_t* src = index.defined() ? index.const_data_ptr<int64_t>() : nullptr;
    cudaError_t err;
    if (xc.scalar_type() == at::kFloat) {
      err = median_stage_cuda<float>(xc.const_data_ptr<float>(), src, sel.mutable_data_ptr<int64_t>(),
                                     xc.size(0), xc.size(1), start, sizes[s], int(mode), cval, stream);
    } else {
      err = median_stage_cuda<double>(xc.const_data_ptr<double>(), src,
                                      sel.mutable_data_ptr<int64_t>(), xc.size(0), xc.size(1),
                                      start, sizes[s], int(mode), cval, stream);
    }
    TORCH_CHECK(err == cudaSuccess, "_median_filter_kernel: ", cudaGetErrorString(err));
    index = sel;
  }
  const at::Tensor med = at::where(index >= 0, xc.gather(1, index.clamp_min(0)),
                                   at::scalar_tensor(cval, xc.options()));
  at::Tensor out = subtract ? xc - med : med;
  return {out, need_index ? index : at::empty({0}, index.options())};
}

void check_sos_cuda(const at::Tensor& x, const at::Tensor& sos, const char* name) {
  TORCH_CHECK(x.dim() == 2, name, ": expected (rows, n_samples), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              name, ": expected float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(sos.dim() == 2 && sos.size(1) == 6 && sos.size(0) >= 1,
              name, ": sos must have shape (n_sections, 6), got ", sos.sizes());
  TORCH_CHECK(sos.scalar_type() == at::kDouble && sos.device() == x.device(),
              name, ": sos must be float64 on the signal's device");
}

// sosfiltfilt's edge extension (and its transpose's): a known padtype, a padlen the rows
// exceed.
void check_padding(const at::Tensor& x, int64_t padlen, int64_t padtype) {
  TORCH_CHECK(padtype >= kPadNone && padtype <= kPadConstant, "bad padtype code ", padtype);
  TORCH_CHECK(padlen >= 0 && (padtype != 0 || padlen == 0), "bad padlen ", padlen);
  TORCH_CHECK(x.size(1) > padlen, "signal length ", x.size(1), " must exceed padlen ", padlen);
}

std::tuple<at::Tensor, at::Tensor> sosfilt_cuda_op(const at::Tensor& x, const at::Tensor& sos,
                                                   const at::Tensor& zi) {
  check_sos_cuda(x, sos, "_sosfilt_kernel");
  const int64_t rows = x.size(0), n = x.size(1), n_sections = sos.size(0);
  TORCH_CHECK(zi.scalar_type() == at::kDouble && zi.dim() == 3 && zi.size(0) == rows &&
                  zi.size(1) == n_sections && zi.size(2) == 2 && zi.device() == x.device(),
              "_sosfilt_kernel: zi must be float64 of shape (rows, n_sections, 2) on the "
              "signal's device, got ", zi.sizes());
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), zc = zi.contiguous(), sc = sos.contiguous();
  at::Tensor y = at::empty_like(xc);
  if (rows == 0 || n == 0) return {y, zc.clone()};
  at::Tensor zf = at::empty_like(zc);
  at::Tensor work = at::empty({sosfilt_scan_workspace(rows, n, n_sections)}, zc.options());
  cudaError_t err;
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "_sosfilt_kernel", [&] {
    err = sosfilt_scan_cuda<scalar_t>(xc.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(),
                                      zc.const_data_ptr<double>(), zf.mutable_data_ptr<double>(),
                                      sc.const_data_ptr<double>(), rows, n, n_sections,
                                      work.mutable_data_ptr<double>(),
                                      c10::cuda::getCurrentCUDAStream());
  });
  TORCH_CHECK(err == cudaSuccess, "sosfilt block scan: ", cudaGetErrorString(err));
  return {y, zf};
}

at::Tensor sosfiltfilt_cuda_op(const at::Tensor& x, const at::Tensor& sos, const at::Tensor& zi,
                               int64_t padlen, int64_t padtype) {
  check_sos_cuda(x, sos, "_sosfiltfilt_kernel");
  TORCH_CHECK(zi.scalar_type() == at::kDouble && zi.numel() == 2 * sos.size(0) &&
                  zi.device() == x.device(),
              "_sosfiltfilt_kernel: zi must be float64 of shape (n_sections, 2) on the "
              "signal's device");
  check_padding(x, padlen, padtype);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), sc = sos.contiguous(), zc = zi.contiguous();
  const int64_t rows = xc.size(0), n = xc.size(1), width = n + 2 * padlen;
  const int64_t n_sections = sc.size(0);
  at::Tensor out = at::empty_like(xc);
  if (rows == 0) return out;
  at::Tensor mid = at::empty({rows, width}, zc.options());
  at::Tensor work = at::empty({sosfilt_scan_workspace(rows, width, n_sections)}, zc.options());
  cudaError_t err;
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "_sosfiltfilt_kernel", [&] {
    err = sosfiltfilt_scan_cuda<scalar_t>(
        xc.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
        mid.mutable_data_ptr<double>(), zc.const_data_ptr<double>(), sc.const_data_ptr<double>(),
        rows, n, padlen, int(padtype), n_sections, work.mutable_data_ptr<double>(),
        c10::cuda::getCurrentCUDAStream());
  });
  TORCH_CHECK(err == cudaSuccess, "sosfiltfilt block scan: ", cudaGetErrorString(err));
  return out;
}

at::Tensor sosfiltfilt_adjoint_cuda_op(const at::Tensor& g, const at::Tensor& sos,
                                       const at::Tensor& edge_terms, int64_t padlen,
                                       int64_t padtype) {
  check_sos_cuda(g, sos, "_sosfiltfilt_adjoint_kernel");
  TORCH_CHECK(edge_terms.scalar_type() == at::kDouble && edge_terms.dim() == 2 &&
                  edge_terms.size(0) == g.size(0) && edge_terms.size(1) == 2 &&
                  edge_terms.device() == g.device(),
              "edge_terms must be float64 of shape (rows, 2) on the signal's device, got ",
              edge_terms.sizes());
  check_padding(g, padlen, padtype);
  const c10::cuda::CUDAGuard guard(g.device());
  const at::Tensor gc = g.contiguous(), sc = sos.contiguous(), ec = edge_terms.contiguous();
  const int64_t rows = gc.size(0), n = gc.size(1), width = n + 2 * padlen;
  const int64_t n_sections = sc.size(0);
  at::Tensor xg = at::empty_like(gc);
  if (rows == 0) return xg;
  at::Tensor mid = at::empty({2, rows, width}, ec.options());
  at::Tensor work = at::empty({sosfilt_scan_workspace(rows, width, n_sections)}, ec.options());
  cudaError_t err;
  AT_DISPATCH_FLOATING_TYPES(gc.scalar_type(), "_sosfiltfilt_adjoint_kernel", [&] {
    err = sosfiltfilt_adjoint_scan_cuda<scalar_t>(
        gc.const_data_ptr<scalar_t>(), xg.mutable_data_ptr<scalar_t>(),
        mid[0].mutable_data_ptr<double>(), mid[1].mutable_data_ptr<double>(),
        ec.const_data_ptr<double>(), sc.const_data_ptr<double>(), rows, n, padlen,
        int(padtype), n_sections, work.mutable_data_ptr<double>(),
        c10::cuda::getCurrentCUDAStream());
  });
  TORCH_CHECK(err == cudaSuccess, "sosfiltfilt adjoint scan: ", cudaGetErrorString(err));
  return xg;
}

at::Tensor resample_poly_cuda_op(const at::Tensor& x, const at::Tensor& taps, int64_t up,
                                int64_t down, int64_t offset, int64_t n_out, double cval) {
  TORCH_CHECK(x.dim() >= 1, "_resample_poly_kernel: expected (..., n_samples), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "_resample_poly_kernel: expected float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(taps.dim() == 1 && taps.numel() >= 1 && taps.scalar_type() == x.scalar_type() &&
                  taps.device() == x.device(),
              "_resample_poly_kernel: taps must be a non-empty 1-D tensor of x's dtype on its "
              "device, got ", taps.sizes(), " ", taps.scalar_type());
  TORCH_CHECK(up >= 1 && down >= 1 && n_out >= 0,
              "_resample_poly_kernel: needs up >= 1, down >= 1 and n_out >= 0");
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), hc = taps.contiguous();
  // Any leading dims, filtered as rows: (..., n_in) -> (..., n_out).
  const int64_t rows = c10::multiply_integers(xc.sizes().slice(0, xc.dim() - 1));
  std::vector<int64_t> shape = xc.sizes().vec();
  shape.back() = n_out;
  at::Tensor y = at::empty(shape, xc.options());
  if (y.numel() == 0) return y;
  cudaError_t err;
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "_resample_poly_kernel", [&] {
    err = resample_poly_cuda<scalar_t>(xc.const_data_ptr<scalar_t>(), y.mutable_data_ptr<scalar_t>(),
                                       hc.const_data_ptr<scalar_t>(), rows, xc.size(-1),
                                       n_out, up, down, offset, hc.numel(), cval,
                                       c10::cuda::getCurrentCUDAStream());
  });
  TORCH_CHECK(err == cudaSuccess, "_resample_poly_kernel: ", cudaGetErrorString(err));
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastecg, CUDA, m) {
  m.impl("_normalize_kernel", &normalize_forward_cuda_op);
  m.impl("_median_filter_kernel", &median_filter_cuda_op);
  m.impl("_sosfilt_kernel", &sosfilt_cuda_op);
  m.impl("_sosfiltfilt_kernel", &sosfiltfilt_cuda_op);
  m.impl("_sosfiltfilt_adjoint_kernel", &sosfiltfilt_adjoint_cuda_op);
  m.impl("_resample_poly_kernel", &resample_poly_cuda_op);
}

}  // namespace fastecg
