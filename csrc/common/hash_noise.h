// The fused augmentation pass's dense noise, shared by its host and device kernels: elements
// 2m and 2m + 1 of a row with keys (k1, k2) are the two outputs of Box-Muller on the 16-bit
// halves of h = lowbias32(m * (k1 | 1) + k2): the radius sqrt(-2 ln u) from the high half
// times the cosine (even element) or the sine (odd) of the angle from the low half
// (python/fastecg/augmenters/_random.py, hash_normal). Each half takes only 65536 values,
// so the radius, cosine and sine come from tables, rounded as torch's float32 (or float64)
// arithmetic rounds them (the CPU kernel's float32 AVX2 loop computes them by polynomials
// instead: csrc/cpu/augment.cpp, box_muller_radius and box_muller_cos_sin).
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "host_device.h"

namespace fastecg {

constexpr int64_t kNoiseTable = 65536;

FASTECG_HOST_DEVICE uint32_t lowbias32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

// Normal value j >= 0 of a row with k1 (odd) and k2: cos_sin holds the cosines, then the
// sines (kNoiseTable each).
template <typename T>
FASTECG_HOST_DEVICE T hash_normal_value(int64_t j, uint32_t k1, uint32_t k2, const T* radius,
                                        const T* cos_sin) {
  const uint32_t h = lowbias32(static_cast<uint32_t>(j >> 1) * k1 + k2);
  return radius[h >> 16] * cos_sin[(j & 1) * kNoiseTable + (h & 0xFFFFu)];
}

// Normal value j of the row whose two Philox words are keys[0], keys[1].
template <typename T>
FASTECG_HOST_DEVICE T hash_normal_at(const int64_t* keys, int64_t j, const T* radius,
                                     const T* cos_sin) {
  return hash_normal_value(j, static_cast<uint32_t>(keys[0]) | 1u,
                           static_cast<uint32_t>(keys[1]), radius, cos_sin);
}

// torch.lerp's formula (the branch keeps lerp(a, b, 1) == b exactly).
template <typename T>
FASTECG_HOST_DEVICE T torch_lerp(T a, T b, T w) {
  return (w < T(0) ? -w : w) < T(0.5) ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}

// The tables on the host: radius[k] = sqrt(-2 ln((k + 0.5) / 65536)) (kNoiseTable) and
// cos_sin[k] = cos(k * 2 pi / 65536), cos_sin[kNoiseTable + k] = sin(k * 2 pi / 65536)
// (2 kNoiseTable), each step rounded to T as torch's element-wise ops round it.
template <typename T>
void fill_noise_tables(T* radius, T* cos_sin) {
  const double step = 2 * M_PI / 65536;
  for (int64_t k = 0; k < kNoiseTable; ++k) {
    if constexpr (std::is_same_v<T, float>) {
      const float u = (static_cast<float>(k) + 0.5f) * (1.0f / 65536);
      const float lg = static_cast<float>(std::log(static_cast<double>(u)));
      radius[k] = std::sqrt(-2.0f * lg);
      const float angle = static_cast<float>(k) * static_cast<float>(step);
      cos_sin[k] = static_cast<float>(std::cos(static_cast<double>(angle)));
      cos_sin[kNoiseTable + k] = static_cast<float>(std::sin(static_cast<double>(angle)));
    } else {
      radius[k] = std::sqrt(-2.0 * std::log((k + 0.5) * (1.0 / 65536)));
      cos_sin[k] = std::cos(k * step);
      cos_sin[kNoiseTable + k] = std::sin(k * step);
    }
  }
}

}  // namespace fastecg
