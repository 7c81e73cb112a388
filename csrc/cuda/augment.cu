// CUDA kernel of the fused augmentation pass (contracts in augment.h; CPU twin
// csrc/cpu/augment.cpp). One launch per stage: a thread per output sample t of sample n,
// holding the stage's leads of that sample in a column of shared memory (its own column
// only: no synchronisation between the ops), reading its input once (as is, warped or
// paired) and writing its output once. FIR_NOISE is the one op whose threads cooperate:
// the block hashes its span of noise (its samples plus the taps - 1 before them) into a
// shared tile once per lead, then each thread sums its taps from the tile. Per-lead
// statistics: each block reduces its columns (min and max in T, exact; sums in double)
// into one partial per block, which the glue reduces over the blocks in a fixed order.
#include <cfloat>
#include <cmath>

#include "../common/codes.h"
#include "../common/hash_noise.h"
#include "augment.h"

namespace fastecg {
namespace {

constexpr int kMaxThreads = 128;
// Dynamic shared memory a launch may use without opting in.
constexpr int64_t kSharedDefault = 48 * 1024;

template <typename T>
__device__ void run_op(const AugmentOp& op, int64_t n, int64_t t, int64_t t_len, T* y,
                       T* scratch, int bt, const T* radius, const T* cosine) {
  switch (op.code) {
    case kLeadMix: {
      const double* m = static_cast<const double*>(op.a) + n * op.lout * op.lin;
      for (int64_t o = 0; o < op.lout; ++o) {
        T acc = T(0);
        for (int64_t i = 0; i < op.lin; ++i) {
          const T w = static_cast<T>(m[o * op.lin + i]);
          if (w != T(0)) acc += w * y[i * bt];
        }
        scratch[o * bt] = acc;
      }
      for (int64_t o = 0; o < op.lout; ++o) y[o * bt] = scratch[o * bt];
      break;
    }
    case kLeadAffine: {
      const T* g = static_cast<const T*>(op.a) + n * op.lin;
      const T* h = static_cast<const T*>(op.b) + n * op.lin;
      for (int64_t l = 0; l < op.lin; ++l) y[l * bt] = y[l * bt] * g[l] + h[l];
      break;
    }
    case kSines: {
      const T* basis = static_cast<const T*>(op.b) + t;
      const int64_t* keys = static_cast<const int64_t*>(op.c);
      const T* sd = static_cast<const T*>(op.d);
      for (int64_t l = 0; l < op.lin; ++l) {
        const T* c = static_cast<const T*>(op.a) + (n * op.lin + l) * op.count;
        T acc = T(0);
        for (int64_t j = 0; j < op.count; ++j) acc += c[j] * basis[j * t_len];
        if (keys != nullptr) {
          const T s = sd[n * op.lin + l];
          if (s != T(0)) acc += hash_normal_at(keys + (n * op.lin + l) * 2, t, radius, cosine) * s;
        }
        y[l * bt] = acc + y[l * bt];
      }
      break;
    }
    case kNoise: {
      const int64_t* keys = static_cast<const int64_t*>(op.a);
      const T* sd = static_cast<const T*>(op.b);
      for (int64_t l = 0; l < op.lin; ++l) {
        const T s = sd[n * op.lin + l];
        if (s != T(0))
          y[l * bt] += hash_normal_at(keys + (n * op.lin + l) * 2, t, radius, cosine) * s;
      }
      break;
    }
    case kTimeMask: {
      const int64_t* starts = static_cast<const int64_t*>(op.a) + n * op.count;
      const int64_t* ends = static_cast<const int64_t*>(op.b) + n * op.count;
      bool masked = false;
      for (int64_t i = 0; i < op.count; ++i) masked |= starts[i] <= t && t < ends[i];
      if (masked) {
        const T v = static_cast<T>(op.value);
        for (int64_t l = 0; l < op.lin; ++l) y[l * bt] = v;
      }
      break;
    }
    case kAddRows: {
      const T* rows = static_cast<const T*>(op.a);
      for (int64_t l = 0; l < op.lin; ++l) y[l * bt] += rows[(n * op.lin + l) * t_len + t];
      break;
    }
    default:
      break;
  }
}

// FIR_NOISE for the block's samples t_first .. t_first + bt (those `live` add it): per lead
// with a non-zero std (the same for the whole block: the branch and its barriers are
// uniform), the noise z[t_first .. t_first + bt + K - 2] hashed into the shared `tile`,
// then y[t] += std * sum_k h[k] z[t + K - 1 - k]. Every thread of the block calls it.
template <typename T>
__device__ void fir_noise(const AugmentOp& op, int64_t n, int64_t t_first, bool live, T* y,
                          T* tile, int bt, const T* radius, const T* cosine) {
  const int64_t* keys = static_cast<const int64_t*>(op.a);
  const T* sd = static_cast<const T*>(op.b);
  const T* h = static_cast<const T*>(op.c);
  const int64_t K = op.count, span = bt + K - 1;
  for (int64_t l = 0; l < op.lin; ++l) {
    const T s = sd[n * op.lin + l];
    if (s == T(0)) continue;
    const int64_t* row_keys = keys + (n * op.lin + l) * 2;
    __syncthreads();  // the previous lead's sums are done with the tile
    for (int64_t i = threadIdx.x; i < span; i += bt)
      tile[i] = hash_normal_at(row_keys, t_first + i, radius, cosine);
    __syncthreads();
    if (live) {
      const T* z = tile + threadIdx.x + K - 1;
      T acc = T(0);
      for (int64_t k = 0; k < K; ++k) acc += h[k] * z[-k];
      y[l * bt] += acc * s;
    }
  }
}

// The block's (min, max, sum, sum of squares) of v over its threads, in thread 0.
__device__ void block_stats(double (&v)[4], double (*shared)[kMaxThreads / 32]) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    v[0] = fmin(v[0], __shfl_down_sync(0xffffffff, v[0], offset));
    v[1] = fmax(v[1], __shfl_down_sync(0xffffffff, v[1], offset));
    v[2] += __shfl_down_sync(0xffffffff, v[2], offset);
    v[3] += __shfl_down_sync(0xffffffff, v[3], offset);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  if (lane == 0)
    for (int k = 0; k < 4; ++k) shared[k][warp] = v[k];
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < warps; ++w) {
      v[0] = fmin(v[0], shared[0][w]);
      v[1] = fmax(v[1], shared[1][w]);
      v[2] += shared[2][w];
      v[3] += shared[3][w];
    }
  }
  __syncthreads();
}

template <typename T>
__global__ void augment_stage_kernel(const T* __restrict__ x, T* __restrict__ out,
                                     double* __restrict__ partial, const AugmentStage st,
                                     const T* __restrict__ radius, const T* __restrict__ cosine,
                                     int64_t tiles) {
  extern __shared__ __align__(16) unsigned char shared_raw[];
  __shared__ double reduce[4][kMaxThreads / 32];
  const int bt = blockDim.x;
  T* y = reinterpret_cast<T*>(shared_raw) + threadIdx.x;  // lead l at y[l * bt]
  T* scratch = y + st.lmax * bt;
  T* noise = reinterpret_cast<T*>(shared_raw) + 2 * st.lmax * bt;  // FIR_NOISE's tile
  const int64_t item = blockIdx.x;
  const int64_t n = item / tiles, tile = item - n * tiles;
  const int64_t t = tile * bt + threadIdx.x;
  const bool live = t < st.t_len;
  if (live) {
    if (st.head == kWarp) {
      const int64_t m = t + st.h0[n];
      if (m >= 0 && m < st.h1[n]) {
        const double src = static_cast<double>(m) * st.hr[n];
        const double f = fmin(fmax(floor(src), 0.0), static_cast<double>(st.t_in - 1));
        const int64_t i0 = static_cast<int64_t>(f);
        const int64_t i1 = i0 + 1 < st.t_in ? i0 + 1 : st.t_in - 1;
        const T frac = static_cast<T>(src - f);
        for (int64_t l = 0; l < st.lin; ++l) {
          const T* row = x + (n * st.lin + l) * st.t_in;
          y[l * bt] = torch_lerp(row[i0], row[i1], frac);
        }
      } else {
        for (int64_t l = 0; l < st.lin; ++l) y[l * bt] = T(0);
      }
    } else if (st.head == kPair) {
      const int64_t p = st.h0[n];
      const T w = static_cast<T>(st.hr[n]);
      // A sample paired with itself is left as it is (lerp(a, a, 1) would make an Inf NaN).
      for (int64_t l = 0; l < st.lin; ++l) {
        const T mine = x[(n * st.lin + l) * st.t_len + t];
        y[l * bt] = p == n ? mine : torch_lerp(x[(p * st.lin + l) * st.t_len + t], mine, w);
      }
    } else {
      for (int64_t l = 0; l < st.lin; ++l) y[l * bt] = x[(n * st.lin + l) * st.t_len + t];
    }
  }
  for (int64_t k = 0; k < st.n_ops; ++k) {
    if (st.ops[k].code == kFirNoise)
      fir_noise(st.ops[k], n, tile * bt, live, y, noise, bt, radius, cosine);
    else if (live)
      run_op(st.ops[k], n, t, st.t_len, y, scratch, bt, radius, cosine);
  }
  if (live && out != nullptr)
    for (int64_t l = 0; l < st.lout; ++l) out[(n * st.lout + l) * st.t_len + t] = y[l * bt];
  if (partial == nullptr) return;
  for (int64_t l = 0; l < st.lout; ++l) {
    double v[4] = {INFINITY, -INFINITY, 0.0, 0.0};
    if (live) {
      const double value = static_cast<double>(y[l * bt]);
      v[0] = v[1] = v[2] = value;
      v[3] = value * value;
    }
    block_stats(v, reduce);
    if (threadIdx.x == 0)
      for (int k = 0; k < 4; ++k) partial[((n * tiles + tile) * st.lout + l) * 4 + k] = v[k];
  }
}

int64_t shared_bytes(const AugmentStage& st, int64_t block, int64_t elem_size) {
  // The leads, a lead mix's scratch and FIR_NOISE's noise tile.
  return (2 * st.lmax * block + (st.taps > 0 ? block + st.taps - 1 : 0)) * elem_size;
}

}  // namespace

int64_t augment_block(const AugmentStage& st, int64_t elem_size) {
  int64_t block = kMaxThreads;
  while (block > 32 && shared_bytes(st, block, elem_size) > kSharedDefault) block /= 2;
  return block;
}

template <typename T>
cudaError_t augment_stage_cuda(const T* x, T* out, double* partial, const AugmentStage& st,
                               const T* radius, const T* cosine, int64_t n,
                               cudaStream_t stream) {
  if (n == 0 || st.t_len == 0 || st.lout == 0) return cudaSuccess;
  const int64_t block = augment_block(st, sizeof(T));
  const int64_t tiles = (st.t_len + block - 1) / block;
  const int64_t bytes = shared_bytes(st, block, sizeof(T));
  if (n * tiles > 0x7FFFFFFF) return cudaErrorInvalidConfiguration;
  if (bytes > kSharedDefault) {
    // Many leads: opt in to more shared memory (fails cleanly past the device's limit).
    const cudaError_t err = cudaFuncSetAttribute(
        augment_stage_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
        static_cast<int>(bytes));
    if (err != cudaSuccess) return err;
  }
  augment_stage_kernel<T><<<static_cast<unsigned>(n * tiles), static_cast<unsigned>(block),
                            static_cast<size_t>(bytes), stream>>>(x, out, partial, st, radius,
                                                                  cosine, tiles);
  return cudaGetLastError();
}

template cudaError_t augment_stage_cuda<float>(const float*, float*, double*,
                                               const AugmentStage&, const float*, const float*,
                                               int64_t, cudaStream_t);
template cudaError_t augment_stage_cuda<double>(const double*, double*, double*,
                                                const AugmentStage&, const double*,
                                                const double*, int64_t, cudaStream_t);

}  // namespace fastecg
