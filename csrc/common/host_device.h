// FASTECG_HOST_DEVICE: a helper compiled for the host and, under nvcc, for the device.
#pragma once

#ifdef __CUDACC__
#define FASTECG_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FASTECG_HOST_DEVICE inline
#endif
