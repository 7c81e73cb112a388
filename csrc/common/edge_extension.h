// Shared by the CPU (csrc/cpu/sosfilt.cpp) and CUDA (csrc/cuda/sosfilt.cu) filters:
// sosfiltfilt's edge extensions, SciPy's rules. No torch headers.
#pragma once
#include <cstdint>

#include "codes.h"
#include "host_device.h"

namespace fastecg {


// The extension sample beyond the edge sample `edge` whose mirror image in the row is
// `mirrored`, computed in T (SciPy builds it in the input's dtype).
template <typename T>
FASTECG_HOST_DEVICE T extension_value(T edge, T mirrored, int64_t padtype) {
  return padtype == kPadOdd ? static_cast<T>(T(2) * edge - mirrored)
                            : padtype == kPadEven ? mirrored : edge;
}

}  // namespace fastecg
