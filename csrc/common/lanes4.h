// Four rows side by side, one per lane of a float64 vector: the layout of the CPU
// kernels that vectorise a per-row recurrence across rows (csrc/cpu/sosfilt.cpp,
// csrc/cpu/median.cpp's moving average). Written in GCC vector code rather than
// intrinsics, so one source serves every instruction set a caller is compiled for (its
// AVX2 variant gets vcvtps2pd, vunpcklpd and vperm2f128). No torch headers.
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace fastecg {

typedef double V4 __attribute__((vector_size(32)));
typedef float F4 __attribute__((vector_size(16)));

// Always inlined: each ISA variant of a kernel (csrc/cpu/isa.h) then compiles these helpers
// with its own instruction set, and V4 values stay in its registers (a call from an AVX2
// function to a baseline-ISA helper would pass them under a different ABI).
#define FASTECG_INLINE inline __attribute__((always_inline))

// Four consecutive samples of one row, widened to double (element-wise, which GCC turns
// into one vcvtps2pd from memory; converting a float vector splits it in halves).
template <typename T> FASTECG_INLINE V4 load4(const T* p) {
  return V4{double(p[0]), double(p[1]), double(p[2]), double(p[3])};
}

// ... and back, rounded to T.
template <typename T> FASTECG_INLINE void store4(T* p, V4 v) {
  if constexpr (std::is_same_v<T, float>) {
    const F4 f = __builtin_convertvector(v, F4);
    std::memcpy(p, &f, sizeof f);
  } else {
    std::memcpy(p, &v, sizeof v);
  }
}

// v[k][j] <-> v[j][k]: four samples of four rows to four rows of four samples.
FASTECG_INLINE void transpose4(V4 (&v)[4]) {
  const V4 lo01 = __builtin_shufflevector(v[0], v[1], 0, 4, 2, 6);
  const V4 hi01 = __builtin_shufflevector(v[0], v[1], 1, 5, 3, 7);
  const V4 lo23 = __builtin_shufflevector(v[2], v[3], 0, 4, 2, 6);
  const V4 hi23 = __builtin_shufflevector(v[2], v[3], 1, 5, 3, 7);
  v[0] = __builtin_shufflevector(lo01, lo23, 0, 1, 4, 5);
  v[1] = __builtin_shufflevector(hi01, hi23, 0, 1, 4, 5);
  v[2] = __builtin_shufflevector(lo01, lo23, 2, 3, 6, 7);
  v[3] = __builtin_shufflevector(hi01, hi23, 2, 3, 6, 7);
}

}  // namespace fastecg
