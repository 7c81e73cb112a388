// Torch glue of the patch masking CUDA kernels (patch_mask.cu): validate, allocate, launch
// on the current stream, never synchronise. Registered here, beside its glue, rather than
// in register.cpp: a second TORCH_LIBRARY_IMPL(fastecg, CUDA) block, as every CPU kernel
// file has its own. Built only with CUDA (setup.py).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/patch_mask_args.h"
#include "patch_mask.h"

namespace fastecg {
namespace {

// Shape and device here; the ids' range on the device, asynchronously (no sync).
at::Tensor checked_ids(const at::Tensor& ids_keep, const at::Tensor& like, int64_t batch,
                       int64_t tokens, const char* name) {
  TORCH_CHECK(ids_keep.dim() == 2 && ids_keep.size(0) == batch &&
                  ids_keep.scalar_type() == at::kLong && ids_keep.device() == like.device(),
              name, ": ids_keep must be int64 of shape (batch, n_keep) on the signal's device, "
              "got ", ids_keep.sizes(), " ", ids_keep.scalar_type());
  TORCH_CHECK(ids_keep.size(1) <= tokens, name, ": ", ids_keep.size(1), " kept ids for ", tokens,
              " tokens");
  const at::Tensor ids = ids_keep.contiguous();
  if (ids.numel()) at::_assert_async(((ids >= 0) & (ids < tokens)).all(), "token id out of range");
  return ids;
}

void check_copy(cudaError_t err, const char* name) {
  TORCH_CHECK(err == cudaSuccess, name, ": ", cudaGetErrorString(err));
}

at::Tensor patch_gather_cuda_op(const at::Tensor& x, const at::Tensor& ids_keep,
                                int64_t patch_size, int64_t mode) {
  TORCH_CHECK(x.dim() == 3, "_patch_gather_kernel: expected x (batch, n_leads, n_samples), got ",
              x.sizes());
  const PatchLayout lay = checked_layout(x.size(1), x.size(2), patch_size, mode,
                                    "_patch_gather_kernel");
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous();
  const at::Tensor ids = checked_ids(ids_keep, xc, xc.size(0), lay.tokens,
                                     "_patch_gather_kernel");
  at::Tensor kept = at::empty({xc.size(0), ids.size(1), lay.dim}, xc.options());
  check_copy(patch_gather_cuda(xc.const_data_ptr(), ids.const_data_ptr<int64_t>(),
                               kept.mutable_data_ptr(), xc.element_size(), xc.size(0),
                               ids.size(1), lay, c10::cuda::getCurrentCUDAStream()),
             "_patch_gather_kernel");
  return kept;
}

at::Tensor patch_scatter_cuda_op(const at::Tensor& kept, const at::Tensor& ids_keep,
                                 int64_t patch_size, int64_t mode, int64_t n_leads,
                                 int64_t n_samples) {
  TORCH_CHECK(kept.dim() == 3, "_patch_scatter_kernel: expected kept (batch, n_keep, D), got ",
              kept.sizes());
  TORCH_CHECK(n_leads >= 1 && n_samples >= 0, "_patch_scatter_kernel: bad signal shape");
  const PatchLayout lay = checked_layout(n_leads, n_samples, patch_size, mode,
                                    "_patch_scatter_kernel");
  TORCH_CHECK(kept.size(2) == lay.dim, "_patch_scatter_kernel: tokens of ", kept.size(2),
              " values, expected ", lay.dim);
  const c10::cuda::CUDAGuard guard(kept.device());
  const at::Tensor kc = kept.contiguous();
  const at::Tensor ids = checked_ids(ids_keep, kc, kc.size(0), lay.tokens,
                                     "_patch_scatter_kernel");
  TORCH_CHECK(ids.size(1) == kc.size(1), "_patch_scatter_kernel: ", ids.size(1), " ids for ",
              kc.size(1), " tokens");
  at::Tensor out = at::empty({kc.size(0), n_leads, n_samples}, kc.options());
  check_copy(patch_scatter_cuda(kc.const_data_ptr(), ids.const_data_ptr<int64_t>(),
                                out.mutable_data_ptr(), kc.element_size(), kc.size(0),
                                kc.size(1), lay, c10::cuda::getCurrentCUDAStream()),
             "_patch_scatter_kernel");
  return out;
}

at::Tensor masked_recon_loss_cuda_op(const at::Tensor& pred, const at::Tensor& x,
                                     const at::Tensor& mask, int64_t patch_size, int64_t mode,
                                     bool norm_pix, double eps) {
  const LossArgs a = check_loss_args(pred, x, mask, patch_size, mode, norm_pix, eps,
                                     "_masked_recon_loss_kernel");
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor loss = at::empty({}, a.x.options());
  at::Tensor terms = at::empty({a.batch * a.lay.tokens}, a.x.options().dtype(at::kDouble));
  cudaError_t err;
  AT_DISPATCH_FLOATING_TYPES(a.x.scalar_type(), "_masked_recon_loss_kernel", [&] {
    err = masked_recon_loss_cuda<scalar_t>(
        a.pred.const_data_ptr<scalar_t>(), a.x.const_data_ptr<scalar_t>(),
        a.mask.const_data_ptr<scalar_t>(), loss.mutable_data_ptr<scalar_t>(),
        terms.mutable_data_ptr<double>(), a.batch, a.lay, norm_pix, eps,
        c10::cuda::getCurrentCUDAStream());
  });
  TORCH_CHECK(err == cudaSuccess, "_masked_recon_loss_kernel: ", cudaGetErrorString(err));
  return loss;
}

std::tuple<at::Tensor, at::Tensor> masked_recon_loss_backward_cuda_op(
    const at::Tensor& grad, const at::Tensor& pred, const at::Tensor& x, const at::Tensor& mask,
    int64_t patch_size, int64_t mode, bool norm_pix, double eps, bool need_dx) {
  const LossArgs a = check_loss_args(pred, x, mask, patch_size, mode, norm_pix, eps,
                                     "_masked_recon_loss_backward_kernel");
  TORCH_CHECK(grad.numel() == 1 && grad.device() == x.device(),
              "_masked_recon_loss_backward_kernel: grad must be a scalar on x's device");
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor g = grad.reshape({1}).to(at::kDouble);  // on the device: no sync
  at::Tensor dpred = at::empty_like(a.pred);
  at::Tensor dx = need_dx ? at::empty_like(a.x) : at::empty({0}, a.x.options());
  at::Tensor total = at::empty({1}, a.x.options().dtype(at::kDouble));
  cudaError_t err;
  AT_DISPATCH_FLOATING_TYPES(a.x.scalar_type(), "_masked_recon_loss_backward_kernel", [&] {
    err = masked_recon_loss_backward_cuda<scalar_t>(
        g.const_data_ptr<double>(), a.pred.const_data_ptr<scalar_t>(),
        a.x.const_data_ptr<scalar_t>(), a.mask.const_data_ptr<scalar_t>(),
        dpred.mutable_data_ptr<scalar_t>(), need_dx ? dx.mutable_data_ptr<scalar_t>() : nullptr,
        total.mutable_data_ptr<double>(), a.batch, a.lay, norm_pix, eps,
        c10::cuda::getCurrentCUDAStream());
  });
  TORCH_CHECK(err == cudaSuccess, "_masked_recon_loss_backward_kernel: ",
              cudaGetErrorString(err));
  return {dpred, dx};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastecg, CUDA, m) {
  m.impl("_patch_gather_kernel", &patch_gather_cuda_op);
  m.impl("_patch_scatter_kernel", &patch_scatter_cuda_op);
  m.impl("_masked_recon_loss_kernel", &masked_recon_loss_cuda_op);
  m.impl("_masked_recon_loss_backward_kernel", &masked_recon_loss_backward_cuda_op);
}

}  // namespace fastecg
