// CUDA kernels of MAE patch masking (contracts in patch_mask.h; CPU twin in
// csrc/cpu/patch_mask.cpp). Gather and scatter: one thread per copied element. Loss: one
// warp per token, statistics in float64 (shifted sums as on the CPU), per-token terms
// summed by one block in a fixed order.
#include <cmath>

#include "patch_mask.h"

namespace fastecg {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

unsigned blocks_for(int64_t n, int per_block) {
  return static_cast<unsigned>((n + per_block - 1) / per_block);
}

// Element j of kept token i (of dim) lies at this offset of its record.
__device__ __forceinline__ int64_t run_offset(int64_t id, int64_t j, const PatchLayout& lay) {
  const int64_t g = j / lay.patch;
  return id * lay.patch + g * lay.n_samples + (j - g * lay.patch);
}

template <typename E>
__global__ void gather_kernel(const E* __restrict__ x, const int64_t* __restrict__ ids,
                              E* __restrict__ kept, int64_t keep, int64_t count, PatchLayout lay) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= count) return;
  const int64_t i = e / lay.dim, j = e - i * lay.dim, b = i / keep;
  kept[e] = x[b * lay.n_leads * lay.n_samples + run_offset(ids[i], j, lay)];
}

template <typename E>
__global__ void scatter_kernel(const E* __restrict__ kept, const int64_t* __restrict__ ids,
                               E* __restrict__ out, int64_t keep, int64_t count, PatchLayout lay) {
  const int64_t e = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (e >= count) return;
  const int64_t i = e / lay.dim, j = e - i * lay.dim, b = i / keep;
  out[b * lay.n_leads * lay.n_samples + run_offset(ids[i], j, lay)] = kept[e];
}

template <typename E>
cudaError_t launch_copy(bool gather, const void* src, const int64_t* ids, void* dst,
                        int64_t batch, int64_t keep, const PatchLayout& lay,
                        cudaStream_t stream) {
  const int64_t count = batch * keep * lay.dim;
  if (count == 0) return cudaGetLastError();
  if (gather)
    gather_kernel<E><<<blocks_for(count, kThreads), kThreads, 0, stream>>>(
        static_cast<const E*>(src), ids, static_cast<E*>(dst), keep, count, lay);
  else
    scatter_kernel<E><<<blocks_for(count, kThreads), kThreads, 0, stream>>>(
        static_cast<const E*>(src), ids, static_cast<E*>(dst), keep, count, lay);
  return cudaGetLastError();
}

cudaError_t copy_by_size(bool gather, const void* src, const int64_t* ids, void* dst,
                         int64_t elem_size, int64_t batch, int64_t keep, const PatchLayout& lay,
                         cudaStream_t stream) {
  switch (elem_size) {
    case 1: return launch_copy<uint8_t>(gather, src, ids, dst, batch, keep, lay, stream);
    case 2: return launch_copy<uint16_t>(gather, src, ids, dst, batch, keep, lay, stream);
    case 4: return launch_copy<uint32_t>(gather, src, ids, dst, batch, keep, lay, stream);
    case 8: return launch_copy<uint64_t>(gather, src, ids, dst, batch, keep, lay, stream);
    default: return cudaErrorInvalidValue;
  }
}

__device__ __forceinline__ double warp_sum(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffff, v, offset);
  return v;  // every lane holds the total
}

// The target's centring and scale of one token, z = (x - zoff) * inv, and its centred
// sums (see csrc/cpu/patch_mask.cpp: token_stats), from one warp-strided pass.
struct WarpStats {
  double zoff, inv, zz, pz, sp;
};

template <typename T>
__device__ WarpStats warp_stats(const T* xt, const T* pt, const PatchLayout& lay, bool norm_pix,
                                double eps, int lane) {
  const double shift = norm_pix ? double(xt[0]) : 0.0;
  double su = 0, suu = 0, sp = 0, spu = 0;
  for (int64_t j = lane; j < lay.dim; j += 32) {
    const double u = double(xt[run_offset(0, j, lay)]) - shift, v = double(pt[j]);
    su += u;
    suu += u * u;
    sp += v;
    spu += v * u;
  }
  su = warp_sum(su);
  suu = warp_sum(suu);
  sp = warp_sum(sp);
  spu = warp_sum(spu);
  const double d = double(lay.dim);
  WarpStats st{shift, 1.0, suu, spu, sp};
  if (norm_pix) {
    const double mean_u = su / d;
    const double ss = fmax(suu - su * mean_u, 0.0);
    st.zoff = shift + mean_u;
    st.inv = 1.0 / sqrt(ss / (d - 1.0) + eps);
    st.zz = ss * st.inv * st.inv;
    st.pz = (spu - mean_u * sp) * st.inv;
  }
  return st;
}

template <typename T>
__global__ void loss_terms_kernel(const T* __restrict__ pred, const T* __restrict__ x,
                                  const T* __restrict__ mask, double* __restrict__ terms,
                                  int64_t count, PatchLayout lay, bool norm_pix, double eps) {
  const int64_t tok = blockIdx.x * int64_t(kWarps) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (tok >= count) return;
  const double m = double(mask[tok]);
  if (m == 0.0) {  // masked patches only: the kept ones are never read
    if (lane == 0) terms[tok] = 0.0;
    return;
  }
  const int64_t b = tok / lay.tokens, l = tok - b * lay.tokens;
  const T* xt = x + b * lay.n_leads * lay.n_samples + l * lay.patch;
  const T* pt = pred + tok * lay.dim;
  const WarpStats st = warp_stats(xt, pt, lay, norm_pix, eps, lane);
  // The squared error directly, not from the sums: they cancel near a good prediction.
  double sq = 0.0;
  for (int64_t j = lane; j < lay.dim; j += 32) {
    const double r = double(pt[j]) - (double(xt[run_offset(0, j, lay)]) - st.zoff) * st.inv;
    sq += r * r;
  }
  sq = warp_sum(sq);
  if (lane == 0) terms[tok] = m * sq / double(lay.dim);
}

// One block: sum of a[0..count) (and of mask, as doubles) in a fixed order per thread and
// a fixed tree: the same bits on every run.
template <typename T>
__device__ double block_total(const double* a, const T* mask, int64_t count, double* shared) {
  double v = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) v += a ? a[i] : double(mask[i]);
  v = warp_sum(v);
  if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = v;
  __syncthreads();
  double total = 0.0;
  if (threadIdx.x == 0)
    for (int w = 0; w < int(blockDim.x / 32); ++w) total += shared[w];
  __syncthreads();
  return total;  // on thread 0
}

template <typename T>
__global__ void loss_total_kernel(const double* __restrict__ terms, const T* __restrict__ mask,
                                  T* __restrict__ loss, int64_t count) {
  __shared__ double shared[32];
  const double sum = block_total<T>(terms, nullptr, count, shared);
  const double weight = block_total<T>(nullptr, mask, count, shared);
  if (threadIdx.x == 0) loss[0] = T(sum / weight);
}

template <typename T>
__global__ void mask_total_kernel(const T* __restrict__ mask, double* __restrict__ total,
                                  int64_t count) {
  __shared__ double shared[32];
  const double weight = block_total<T>(nullptr, mask, count, shared);
  if (threadIdx.x == 0) total[0] = weight;
}

template <typename T>
__global__ void loss_backward_kernel(const double* __restrict__ grad, const T* __restrict__ pred,
                                     const T* __restrict__ x, const T* __restrict__ mask,
                                     T* __restrict__ dpred, T* __restrict__ dx,
                                     const double* __restrict__ total, int64_t count,
                                     PatchLayout lay, bool norm_pix, double eps) {
  const int64_t tok = blockIdx.x * int64_t(kWarps) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (tok >= count) return;
  const int64_t b = tok / lay.tokens, l = tok - b * lay.tokens;
  const int64_t at = b * lay.n_leads * lay.n_samples + l * lay.patch;
  const T* xt = x + at;
  const T* pt = pred + tok * lay.dim;
  T* dp = dpred + tok * lay.dim;
  T* dxt = dx ? dx + at : nullptr;
  const double d = double(lay.dim);
  const double w = grad[0] * 2.0 / (d * total[0]) * double(mask[tok]);
  if (w == 0.0) {
    for (int64_t j = lane; j < lay.dim; j += 32) {
      dp[j] = T(0);
      if (dxt) dxt[run_offset(0, j, lay)] = T(0);
    }
    return;
  }
  const WarpStats st = warp_stats(xt, pt, lay, norm_pix, eps, lane);
  // dx = -(r - mean(r) - z sum(r z) / (D - 1)) / std, sum r = w sum pred, sum r z = w (pz - zz)
  const double r_mean = w * st.sp / d, rz = w * (st.pz - st.zz) / (d - 1.0);
  for (int64_t j = lane; j < lay.dim; j += 32) {
    const int64_t o = run_offset(0, j, lay);
    const double z = (double(xt[o]) - st.zoff) * st.inv;
    const double r = w * (double(pt[j]) - z);
    dp[j] = T(r);
    if (dxt) dxt[o] = T(norm_pix ? (r_mean - r + z * rz) * st.inv : -r);
  }
}

}  // namespace

cudaError_t patch_gather_cuda(const void* x, const int64_t* ids, void* kept, int64_t elem_size,
                              int64_t batch, int64_t keep, PatchLayout lay, cudaStream_t stream) {
  return copy_by_size(true, x, ids, kept, elem_size, batch, keep, lay, stream);
}

cudaError_t patch_scatter_cuda(const void* kept, const int64_t* ids, void* out, int64_t elem_size,
                               int64_t batch, int64_t keep, PatchLayout lay, cudaStream_t stream) {
  const size_t bytes = size_t(batch * lay.n_leads * lay.n_samples * elem_size);
  if (bytes) {
    const cudaError_t err = cudaMemsetAsync(out, 0, bytes, stream);
    if (err != cudaSuccess) return err;
  }
  return copy_by_size(false, kept, ids, out, elem_size, batch, keep, lay, stream);
}

template <typename T>
cudaError_t masked_recon_loss_cuda(const T* pred, const T* x, const T* mask, T* loss,
                                   double* terms, int64_t batch, PatchLayout lay, bool norm_pix,
                                   double eps, cudaStream_t stream) {
  const int64_t count = batch * lay.tokens;
  if (count > 0)
    loss_terms_kernel<T><<<blocks_for(count, kWarps), kThreads, 0, stream>>>(
        pred, x, mask, terms, count, lay, norm_pix, eps);
  loss_total_kernel<T><<<1, 1024, 0, stream>>>(terms, mask, loss, count);
  return cudaGetLastError();
}

template <typename T>
cudaError_t masked_recon_loss_backward_cuda(const double* grad, const T* pred, const T* x,
                                            const T* mask, T* dpred, T* dx, double* total,
                                            int64_t batch, PatchLayout lay, bool norm_pix,
                                            double eps, cudaStream_t stream) {
  const int64_t count = batch * lay.tokens;
  if (count == 0) return cudaGetLastError();
  mask_total_kernel<T><<<1, 1024, 0, stream>>>(mask, total, count);
  loss_backward_kernel<T><<<blocks_for(count, kWarps), kThreads, 0, stream>>>(
      grad, pred, x, mask, dpred, dx, total, count, lay, norm_pix, eps);
  return cudaGetLastError();
}

#define FASTECG_PATCH_MASK_INSTANTIATE(T)                                                       \
  template cudaError_t masked_recon_loss_cuda<T>(const T*, const T*, const T*, T*, double*,      \
                                                 int64_t, PatchLayout, bool, double,             \
                                                 cudaStream_t);                                  \
  template cudaError_t masked_recon_loss_backward_cuda<T>(const double*, const T*, const T*,     \
                                                          const T*, T*, T*, double*, int64_t,    \
                                                          PatchLayout, bool, double,             \
                                                          cudaStream_t);
FASTECG_PATCH_MASK_INSTANTIATE(float)
FASTECG_PATCH_MASK_INSTANTIATE(double)
#undef FASTECG_PATCH_MASK_INSTANTIATE

}  // namespace fastecg
