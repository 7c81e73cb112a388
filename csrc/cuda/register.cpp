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

}  // namespace

TORCH_LIBRARY_IMPL(fastecg, CUDA, m) { m.impl("_normalize_kernel", &normalize_forward_cuda_op); }

}  // namespace fastecg
