// Torch glue of the CUDA kernels: validate, allocate, launch on the current
// stream. Built only with CUDA (setup.py); the kernels themselves are in *.cu.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "launchers.h"

namespace fastecg {
namespace {

at::Tensor normalize_forward_cuda_op(const at::Tensor& x, int64_t method, double mean, double std) {
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
                                        xc.size(0), xc.size(1), method, mean, std, stream);
  } else {
    err = normalize_forward_cuda<double>(xc.const_data_ptr<double>(), y.mutable_data_ptr<double>(),
                                         xc.size(0), xc.size(1), method, mean, std, stream);
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
  TORCH_CHECK(mode >= 0 && mode <= 4, "bad mode code ", mode);
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

// One block-scan pass: work (rows, n) float64 holds the input and is overwritten; the
// result goes to out (float32 or float64); zi (rows, n_sections, 2). Returns zf.
at::Tensor scan_filter(at::Tensor& work, at::Tensor& out, const at::Tensor& zi,
                       const at::Tensor& sos, OutputMap map = {}) {
  const int64_t rows = work.size(0), n = work.size(1), n_sections = sos.size(0);
  const at::Tensor zc = zi.contiguous();
  at::Tensor zf = at::empty_like(zc);
  at::Tensor scratch = at::empty({sosfilt_scan_workspace(rows, n, n_sections)}, work.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  double* w = work.mutable_data_ptr<double>();
  const double* z = zc.const_data_ptr<double>();
  const double* s = sos.const_data_ptr<double>();
  double* ws = scratch.mutable_data_ptr<double>();
  cudaError_t err;
  if (out.scalar_type() == at::kFloat) {
    err = sosfilt_scan_cuda<float>(w, out.mutable_data_ptr<float>(), z,
                                   zf.mutable_data_ptr<double>(), s, rows, n, n_sections,
                                   ws, stream, map);
  } else {
    err = sosfilt_scan_cuda<double>(w, out.mutable_data_ptr<double>(), z,
                                    zf.mutable_data_ptr<double>(), s, rows, n, n_sections,
                                    ws, stream, map);
  }
  TORCH_CHECK(err == cudaSuccess, "sosfilt block scan: ", cudaGetErrorString(err));
  return zf;
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
  const at::Tensor xc = x.contiguous();
  at::Tensor y = at::empty_like(xc);
  if (rows == 0 || n == 0) return {y, zi.contiguous().clone()};
  at::Tensor work = xc.to(at::kDouble, /*non_blocking=*/false, /*copy=*/true);
  at::Tensor zf = scan_filter(work, y, zi, sos.contiguous());
  return {y, zf};
}

at::Tensor sosfiltfilt_cuda_op(const at::Tensor& x, const at::Tensor& sos, const at::Tensor& zi,
                               int64_t padlen, int64_t padtype) {
  check_sos_cuda(x, sos, "_sosfiltfilt_kernel");
  TORCH_CHECK(zi.scalar_type() == at::kDouble && zi.numel() == 2 * sos.size(0) &&
                  zi.device() == x.device(),
              "_sosfiltfilt_kernel: zi must be float64 of shape (n_sections, 2) on the "
              "signal's device");
  TORCH_CHECK(padtype >= 0 && padtype <= 3, "bad padtype code ", padtype);
  TORCH_CHECK(padlen >= 0 && (padtype != 0 || padlen == 0), "bad padlen ", padlen);
  TORCH_CHECK(x.size(1) > padlen, "signal length ", x.size(1), " must exceed padlen ", padlen);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), sc = sos.contiguous();
  const int64_t rows = xc.size(0), n = xc.size(1), width = n + 2 * padlen;
  at::Tensor out = at::empty_like(xc);
  if (rows == 0) return out;
  const at::Tensor z = zi.reshape({1, -1, 2});
  // The extension (in x's dtype, as SciPy) widened to float64; each pass writes its
  // output time-reversed, so the second pass runs forward over the first one's output
  // and writes the cropped result in x's dtype: one rounding, no flips or copies.
  at::Tensor work = at::empty({rows, width}, xc.options().dtype(at::kDouble));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const cudaError_t err =
      xc.scalar_type() == at::kFloat
          ? extend_to_double_cuda<float>(xc.const_data_ptr<float>(),
                                         work.mutable_data_ptr<double>(), rows, n, padlen,
                                         int(padtype), stream)
          : extend_to_double_cuda<double>(xc.const_data_ptr<double>(),
                                          work.mutable_data_ptr<double>(), rows, n, padlen,
                                          int(padtype), stream);
  TORCH_CHECK(err == cudaSuccess, "sosfiltfilt extension: ", cudaGetErrorString(err));
  at::Tensor reversed = at::empty_like(work);
  scan_filter(work, reversed, z * work.narrow(1, 0, 1).unsqueeze(2), sc, {true, 0, width});
  scan_filter(reversed, out, z * reversed.narrow(1, 0, 1).unsqueeze(2), sc, {true, padlen, n});
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastecg, CUDA, m) {
  m.impl("_normalize_kernel", &normalize_forward_cuda_op);
  m.impl("_median_filter_kernel", &median_filter_cuda_op);
  m.impl("_sosfilt_kernel", &sosfilt_cuda_op);
  m.impl("_sosfiltfilt_kernel", &sosfiltfilt_cuda_op);
}

}  // namespace fastecg
