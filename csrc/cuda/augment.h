// Raw-pointer launcher of the fused augmentation pass's CUDA kernel (csrc/cuda/augment.cu;
// the op table in python/fastecg/ops/augment.py, the CPU twin csrc/cpu/augment.cpp). No
// torch headers: `nvcc -c` compile-checks the kernel without torch's CUDA build.
//
// The glue (augment_ops.cpp) splits the op list into stages at every warp and pairing:
// a stage reads its input x (n, lin, t_in) as is, warped or paired, applies its
// point-wise ops and writes (n, lout, t_len). One launch per stage.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace fastecg {

// Point-wise ops one launch applies at most (the stage travels as a kernel argument); the
// glue starts a new stage, reading the materialised one before, after as many.
constexpr int kAugmentMaxOps = 16;

// One point-wise op (codes as OpCode in python/fastecg/ops/augment.py), its tensors on the
// device, contiguous:
//   LEAD_MIX    a: matrix (N, lout, lin) double
//   LEAD_AFFINE a: gain (N, lin), b: shift (N, lin)
//   SINES       a: coef (N, lin, count), b: basis (count, t_len), c: noise keys (N, lin, 2)
//               int64 or null, d: noise std (N, lin)
//   NOISE       a: keys (N, lin, 2) int64, b: std (N, lin)
//   TIME_MASK   a: starts (N, count), b: ends (N, count) int64; value
//   ADD_ROWS    a: rows (N, lin, t_len)
//   FIR_NOISE   a: keys (N, lin, 2) int64, b: std (N, lin), c: taps (count,)
struct AugmentOp {
  int64_t code = -1;
  int64_t lin = 0, lout = 0, count = 0;
  const void* a = nullptr;
  const void* b = nullptr;
  const void* c = nullptr;
  const void* d = nullptr;
  double value = 0.0;
};

struct AugmentStage {
  // -1: x as is (t_in == t_len); 6 (WARP): y(t) = x at (t + h0[n]) * hr[n], linear
  // interpolation, 0 unless 0 <= t + h0[n] < h1[n]; 7 (PAIR): lerp(x[h0[n]], x[n], hr[n]).
  int64_t head = -1;
  const int64_t* h0 = nullptr;
  const int64_t* h1 = nullptr;
  const double* hr = nullptr;
  int64_t lin = 0, lout = 0, lmax = 0;  // leads of x, of the output, most held at once
  int64_t t_len = 0, t_in = 0;          // output length, x's length
  int64_t taps = 0;                     // most taps of a FIR_NOISE op (0: none)
  int64_t n_ops = 0;
  AugmentOp ops[kAugmentMaxOps];
};

// Output samples per block of a stage (its leads share the block's shared memory).
int64_t augment_block(const AugmentStage& st, int64_t elem_size);

// Run a stage over n samples: out (n, lout, t_len) unless null; partial, unless null,
// (n, tiles, lout, 4) doubles of each block's per-lead (min, max, sum, sum of squares), with
// tiles = ceil(t_len / augment_block). radius, cosine: the noise tables (kNoiseTable radii;
// kNoiseTable cosines then kNoiseTable sines: common/hash_noise.h) on the device.
template <typename T>
cudaError_t augment_stage_cuda(const T* x, T* out, double* partial, const AugmentStage& st,
                               const T* radius, const T* cosine, int64_t n,
                               cudaStream_t stream);

}  // namespace fastecg
