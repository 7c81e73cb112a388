// The fused augmentation pass's dense noise, shared by its host and device kernels: element
// j of a row with keys (k1, k2) is lowbias32(j * (k1 | 1) + k2), turned into a normal value
// by Box-Muller on its two 16-bit halves (python/fastecg/augmenters/_random.py,
// hash_normal). Each half takes only 65536 values, so the radius sqrt(-2 ln u) and the
// cosine come from two tables, rounded as torch's float32 (or float64) arithmetic rounds
// them (the CPU kernel's float32 AVX2 loop computes them by polynomials instead:
// csrc/cpu/augment.cpp, box_muller_radius and box_muller_cosine).
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

// Normal value j of the row whose two Philox words are keys[0], keys[1].
template <typename T>
FASTECG_HOST_DEVICE T hash_normal_at(const int64_t* keys, int64_t j, const T* radius,
                                     const T* cosine) {
  const uint32_t k1 = static_cast<uint32_t>(keys[0]) | 1u;
  const uint32_t k2 = static_cast<uint32_t>(keys[1]);
  const uint32_t h = lowbias32(static_cast<uint32_t>(j) * k1 + k2);
  return radius[h >> 16] * cosine[h & 0xFFFFu];
}

// torch.lerp's formula (the branch keeps lerp(a, b, 1) == b exactly).
template <typename T>
FASTECG_HOST_DEVICE T torch_lerp(T a, T b, T w) {
  return (w < T(0) ? -w : w) < T(0.5) ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}

// The tables on the host: radius[k] = sqrt(-2 ln((k + 0.5) / 65536)) and
// cosine[k] = cos(k * 2 pi / 65536), kNoiseTable each, each step rounded to T as torch's
// element-wise ops round it.
template <typename T>
void fill_noise_tables(T* radius, T* cosine) {
  const double step = 2 * M_PI / 65536;
  for (int64_t k = 0; k < kNoiseTable; ++k) {
    if constexpr (std::is_same_v<T, float>) {
      const float u = (static_cast<float>(k) + 0.5f) * (1.0f / 65536);
      const float lg = static_cast<float>(std::log(static_cast<double>(u)));
      radius[k] = std::sqrt(-2.0f * lg);
      const float angle = static_cast<float>(k) * static_cast<float>(step);
      cosine[k] = static_cast<float>(std::cos(static_cast<double>(angle)));
    } else {
      radius[k] = std::sqrt(-2.0 * std::log((k + 0.5) * (1.0 / 65536)));
      cosine[k] = std::cos(k * step);
    }
  }
}

}  // namespace fastecg
