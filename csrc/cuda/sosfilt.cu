// CUDA kernels of fastecg::_sosfilt_kernel / _sosfiltfilt_kernel: the block scan along
// time of triton_kernels/sosfilt.py, kernel for kernel (its docstring has the maths).
// A recurrence has only `rows` independent channels, so time is cut into blocks of L
// samples and the cascade is treated as one linear system of K = 2 * n_sections
// float64 states:
//   1. block_filter_kernel: one thread per (row, block) filters its block from zero
//      state and keeps its final state;
//   2. carry_scan_kernel: one thread block per row, one thread per state component,
//      scans the blocks: s_in[b + 1] = A^L s_in[b] + s_zero[b], s_in[0] = zi;
//   3. add_carry_kernel: one thread per sample adds the zero-input response of its
//      block's incoming state, sum_i s_in[b][i] * zir[i][t - b L].
// A^L and zir are block_filter_kernel itself run on zeros from the K unit states.
#include <algorithm>
#include <cstdint>

#include "launchers.h"

namespace fastecg {
namespace {

constexpr int kLanes = 128;  // (row, block) lanes per thread block in phase 1
constexpr int kTile = 256;   // samples per thread block in phase 3

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Filter each block of y (rows, n) in place, from state z0 (lanes, n_sections, 2)
// or zero (z0 == nullptr); final states to zf (lanes, n_sections, 2).
__global__ void block_filter_kernel(double* __restrict__ y, const double* __restrict__ z0,
                                    double* __restrict__ zf, const double* __restrict__ sos,
                                    int64_t n_lanes, int64_t n, int64_t n_blocks,
                                    int64_t n_sections, int64_t block) {
  const int64_t lane = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (lane >= n_lanes) return;
  const int64_t start = (lane % n_blocks) * block;
  const int64_t length = min(n - start, block);
  double* y_lane = y + (lane / n_blocks) * n + start;
  // Section after section over the whole block: two scalar states per thread. A
  // thread reads back only what it wrote itself, so no barrier is needed.
  for (int64_t s = 0; s < n_sections; ++s) {
    const double* c = sos + 6 * s;
    const double b0 = c[0], b1 = c[1], b2 = c[2], a1 = c[4], a2 = c[5];
    const int64_t z_lane = (lane * n_sections + s) * 2;
    double z1 = z0 ? z0[z_lane] : 0.0;
    double z2 = z0 ? z0[z_lane + 1] : 0.0;
    for (int64_t t = 0; t < length; ++t) {
      const double v = y_lane[t];
      const double out = b0 * v + z1;
      z1 = b1 * v - a1 * out + z2;
      z2 = b2 * v - a2 * out;
      y_lane[t] = out;
    }
    zf[z_lane] = z1;
    zf[z_lane + 1] = z2;
  }
}

// One thread block per row, thread j = state component j (blockDim.x == K). s_in
// (rows, n_blocks, K), zf (rows, K); power[i * K + j] = (A^L e_i)[j] (power_last: the
// last block's length), so (A^L s)[j] = sum_i power[i * K + j] * s[i].
__global__ void carry_scan_kernel(const double* __restrict__ zi, const double* __restrict__ zero,
                                  const double* __restrict__ power,
                                  const double* __restrict__ power_last,
                                  double* __restrict__ s_in, double* __restrict__ zf,
                                  int64_t n_blocks, int K) {
  extern __shared__ double state[];
  const int64_t row = blockIdx.x;
  const int j = threadIdx.x;
  const int64_t blocks = row * n_blocks * K;
  state[j] = zi[row * K + j];
  __syncthreads();
  for (int64_t b = 0; b < n_blocks; ++b) {
    const double* p = b + 1 < n_blocks ? power : power_last;
    double next = zero[blocks + b * K + j];
    for (int i = 0; i < K; ++i) next += p[i * K + j] * state[i];
    s_in[blocks + b * K + j] = state[j];
    __syncthreads();  // every thread has read the old state
    state[j] = next;
    __syncthreads();
  }
  zf[row * K + j] = state[j];
}

// out[r, t] = y[r, t] + sum_i s_in[r, b, i] * zir[i, t - b L] (b = t / L), rounded
// once to T; y (rows, n) float64, zir (K, L) float64.
template <typename T>
__global__ void add_carry_kernel(const double* __restrict__ y, const double* __restrict__ s_in,
                                 const double* __restrict__ zir, T* __restrict__ out,
                                 int64_t total, int64_t n, int64_t n_blocks, int64_t block,
                                 int K) {
  const int64_t gid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (gid >= total) return;
  const int64_t row = gid / n, t = gid % n, b = t / block, j = t - b * block;
  const double* s = s_in + (row * n_blocks + b) * K;
  double acc = y[gid];
  for (int i = 0; i < K; ++i) acc += s[i] * zir[i * block + j];
  out[gid] = static_cast<T>(acc);
}

__global__ void unit_states_kernel(double* unit, int K) {
  for (int idx = threadIdx.x; idx < K * K; idx += blockDim.x) unit[idx] = idx / K == idx % K;
}

void filter_blocks(double* y, const double* z0, double* zf, const double* sos, int64_t rows,
                   int64_t n, int64_t block, int64_t n_sections, cudaStream_t stream) {
  const int64_t n_blocks = cdiv(n, block), n_lanes = rows * n_blocks;
  block_filter_kernel<<<static_cast<unsigned>(cdiv(n_lanes, kLanes)), kLanes, 0, stream>>>(
      y, z0, zf, sos, n_lanes, n, n_blocks, n_sections, block);
}

}  // namespace

int64_t sosfilt_scan_workspace(int64_t rows, int64_t n, int64_t n_sections, int64_t block) {
  const int64_t L = std::max<int64_t>(1, std::min(block, n)), K = 2 * n_sections;
  // zir and the last block's basis scratch (K * L each), unit states, A^L and A^last
  // (K * K each), zero-state final and incoming states (rows * n_blocks * K each).
  return 2 * K * L + 3 * K * K + 2 * rows * cdiv(n, L) * K;
}

template <typename T>
cudaError_t sosfilt_scan_cuda(double* y, T* out, const double* zi, double* zf,
                              const double* sos, int64_t rows, int64_t n, int64_t n_sections,
                              int64_t block, double* work, cudaStream_t stream) {
  if (rows == 0 || n == 0) return cudaSuccess;
  const int64_t L = std::min(block, n), K = 2 * n_sections, n_blocks = cdiv(n, L);
  const int64_t last = n - (n_blocks - 1) * L;
  double* zir = work;
  double* scratch = zir + K * L;
  double* unit = scratch + K * L;
  double* power = unit + K * K;
  double* power_last = power + K * K;
  double* zero = power_last + K * K;
  double* s_in = zero + rows * n_blocks * K;
  // The bases: zeros filtered from each unit state (one "row" per state, one block).
  unit_states_kernel<<<1, 256, 0, stream>>>(unit, static_cast<int>(K));
  cudaMemsetAsync(zir, 0, sizeof(double) * K * L, stream);
  filter_blocks(zir, unit, power, sos, K, L, L, n_sections, stream);
  if (last != L) {
    cudaMemsetAsync(scratch, 0, sizeof(double) * K * last, stream);
    filter_blocks(scratch, unit, power_last, sos, K, last, last, n_sections, stream);
  } else {
    power_last = power;
  }
  filter_blocks(y, nullptr, zero, sos, rows, n, L, n_sections, stream);
  carry_scan_kernel<<<static_cast<unsigned>(rows), static_cast<unsigned>(K),
                      sizeof(double) * K, stream>>>(zi, zero, power, power_last, s_in, zf,
                                                    n_blocks, static_cast<int>(K));
  add_carry_kernel<T><<<static_cast<unsigned>(cdiv(rows * n, kTile)), kTile, 0, stream>>>(
      y, s_in, zir, out, rows * n, n, n_blocks, L, static_cast<int>(K));
  return cudaGetLastError();
}

template cudaError_t sosfilt_scan_cuda<float>(double*, float*, const double*, double*,
                                              const double*, int64_t, int64_t, int64_t, int64_t,
                                              double*, cudaStream_t);
template cudaError_t sosfilt_scan_cuda<double>(double*, double*, const double*, double*,
                                               const double*, int64_t, int64_t, int64_t,
                                               int64_t, double*, cudaStream_t);

}  // namespace fastecg
