// Raw-pointer launchers of the patch masking CUDA kernels (csrc/cuda/patch_mask.cu), the
// same contracts as csrc/cpu/patch_mask.cpp. No torch headers: `nvcc -c` compile-checks
// the kernels without torch's CUDA build. Token l of a record (n_leads, n_samples) is
// `groups` runs of `patch` samples, run g at record + l * patch + g * n_samples (groups =
// n_leads for temporal tokens, 1 for per-lead tokens); dim = groups * patch.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

#include "../common/patch_layout.h"

namespace fastecg {


// kept (batch, keep, dim) = the tokens ids (batch, keep) of x (batch, n_leads, n_samples),
// copied as elements of elem_size bytes (2, 4 or 8: any dtype, bit for bit).
cudaError_t patch_gather_cuda(const void* x, const int64_t* ids, void* kept, int64_t elem_size,
                              int64_t batch, int64_t keep, PatchLayout lay, cudaStream_t stream);

// The adjoint: out (batch, n_leads, n_samples) zero except the kept tokens' runs.
cudaError_t patch_scatter_cuda(const void* kept, const int64_t* ids, void* out, int64_t elem_size,
                               int64_t batch, int64_t keep, PatchLayout lay, cudaStream_t stream);

// loss[0] = sum_l m_l |pred_l - z_l|^2 / D / sum_l m_l over tokens with m_l != 0, z the
// target read from x (per-patch mean and unbiased std + eps when norm_pix); pred (batch,
// tokens, dim), mask (batch, tokens). terms: batch * tokens doubles of scratch. The sum
// runs in one fixed order (deterministic).
template <typename T>
cudaError_t masked_recon_loss_cuda(const T* pred, const T* x, const T* mask, T* loss,
                                   double* terms, int64_t batch, PatchLayout lay, bool norm_pix,
                                   double eps, cudaStream_t stream);

// dpred (batch, tokens, dim) and, unless dx is null, dx (batch, n_leads, n_samples) of the
// loss times grad[0] (one float64 on the device: no host sync); zeros on kept tokens.
// total: one double of scratch (the mask's sum).
template <typename T>
cudaError_t masked_recon_loss_backward_cuda(const double* grad, const T* pred, const T* x,
                                            const T* mask, T* dpred, T* dx, double* total,
                                            int64_t batch, PatchLayout lay, bool norm_pix,
                                            double eps, cudaStream_t stream);

}  // namespace fastecg
