// Shared by the CPU (csrc/cpu/median.cpp) and CUDA (csrc/cuda/median.cu) running
// medians: SciPy's boundary rules and order-preserving integer keys. No torch headers.
#pragma once
#include <cstdint>
#include <cstring>

#include "codes.h"
#include "host_device.h"

namespace fastecg {


// Index of the sample that extended position q reads (SciPy's ni_support rules, periodic
// for extensions longer than the signal); -1 means the constant cval.
FASTECG_HOST_DEVICE int64_t map_index(int64_t q, int64_t n, int64_t mode) {
  if (q >= 0 && q < n) return q;
  switch (mode) {
    case kNearest:
      return q < 0 ? 0 : n - 1;
    case kWrap: {
      const int64_t r = q % n;
      return r < 0 ? r + n : r;
    }
    case kReflect: {  // d c b a | a b c d | d c b a
      const int64_t p = 2 * n;
      int64_t r = q % p;
      if (r < 0) r += p;
      return r < n ? r : p - 1 - r;
    }
    case kMirror: {  // d c b | a b c d | c b a
      if (n == 1) return 0;
      const int64_t p = 2 * n - 2;
      int64_t r = q % p;
      if (r < 0) r += p;
      return r < n ? r : p - r;
    }
    default:
      return -1;
  }
}

// Order-preserving unsigned keys: a < b (as floats) iff key(a) < key(b). -0.0 maps to
// +0.0 (they compare equal), every NaN to the largest key. Branch-free: signs are
// unpredictable in a signal that crosses zero.
template <typename T> constexpr uint64_t kNanKey = sizeof(T) == 4 ? 0xFFFFFFFFull : ~0ull;
FASTECG_HOST_DEVICE uint64_t order_key(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  u = u == 0x80000000u ? 0u : u;
  const uint32_t flip = uint32_t(int32_t(u) >> 31) | 0x80000000u;
  return v != v ? kNanKey<float> : uint64_t(u ^ flip);
}
FASTECG_HOST_DEVICE uint64_t order_key(double v) {
  uint64_t u;
  std::memcpy(&u, &v, sizeof u);
  u = u == 0x8000000000000000ull ? 0ull : u;
  const uint64_t flip = uint64_t(int64_t(u) >> 63) | 0x8000000000000000ull;
  return v != v ? kNanKey<double> : (u ^ flip);
}

}  // namespace fastecg
