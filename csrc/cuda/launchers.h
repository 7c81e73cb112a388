// Raw-pointer launchers of the CUDA kernels. No torch headers here or in the .cu
// files, so `nvcc -c` compile-checks them on a machine without torch's CUDA build.
#pragma once
#include <cstdint>
#include <cuda_runtime.h>

namespace fastecg {

// x, y: (rows, n) contiguous; method: 0 z-score, 1 min-max, 2 naive.
template <typename T>
cudaError_t normalize_forward_cuda(const T* x, T* y, int64_t rows, int64_t n, int method,
                                   double mean, double std, cudaStream_t stream);

}  // namespace fastecg
