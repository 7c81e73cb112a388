// Argument checks of the patch masking kernels, shared by the CPU kernels
// (csrc/cpu/patch_mask.cpp) and the CUDA glue (csrc/cuda/patch_mask_ops.cpp), so both
// reject the same input with the same message. Torch headers: C++ translation units only.
#pragma once
#include <ATen/ATen.h>

#include "patch_layout.h"

namespace fastecg {

inline PatchLayout checked_layout(int64_t n_leads, int64_t n_samples, int64_t patch_size,
                                  int64_t mode, const char* name) {
  TORCH_CHECK(patch_size >= 1 && n_samples % patch_size == 0, name, ": n_samples ", n_samples,
              " is not a multiple of patch_size ", patch_size);
  TORCH_CHECK(mode >= kMaskTemporal && mode <= kMaskLead, name, ": bad mode code ", mode);
  return patch_layout(n_leads, n_samples, patch_size, mode);
}

struct LossArgs {
  PatchLayout lay;
  int64_t batch;
  at::Tensor pred, x, mask;  // contiguous
};

inline LossArgs check_loss_args(const at::Tensor& pred, const at::Tensor& x,
                                const at::Tensor& mask, int64_t patch_size, int64_t mode,
                                bool norm_pix, double eps, const char* name) {
  TORCH_CHECK(x.dim() == 3, name, ": expected x (batch, n_leads, n_samples), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, name,
              ": expected float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(pred.scalar_type() == x.scalar_type() && mask.scalar_type() == x.scalar_type(),
              name, ": pred, x and mask must share one dtype");
  TORCH_CHECK(pred.device() == x.device() && mask.device() == x.device(), name,
              ": pred, x and mask must be on one device");
  const PatchLayout lay = checked_layout(x.size(1), x.size(2), patch_size, mode, name);
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

}  // namespace fastecg
