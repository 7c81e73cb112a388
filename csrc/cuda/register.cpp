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

}  // namespace

TORCH_LIBRARY_IMPL(fastecg, CUDA, m) {
  m.impl("_normalize_kernel", &normalize_forward_cuda_op);
  m.impl("_median_filter_kernel", &median_filter_cuda_op);
}

}  // namespace fastecg
