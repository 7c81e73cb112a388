// The token layout of patch masking, shared by the CPU kernels, the CUDA kernels and their
// glue. Token l of a record (n_leads, n_samples) is `groups` runs of `patch` samples, run g
// at record + l * patch + g * n_samples (groups = n_leads for temporal tokens, 1 for
// per-lead tokens); dim = groups * patch. No torch headers (the .cu files include it).
#pragma once
#include <cstdint>

#include "codes.h"

namespace fastecg {

struct PatchLayout {
  int64_t n_leads, n_samples, patch, tokens, groups, dim;
};

// The layout of mode (MaskMode) for records of (n_leads, n_samples), n_samples a multiple
// of patch_size (the caller checks: the error message is torch's).
inline PatchLayout patch_layout(int64_t n_leads, int64_t n_samples, int64_t patch_size,
                                int64_t mode) {
  const int64_t t = n_samples / patch_size;
  const bool temporal = mode == kMaskTemporal;
  return {n_leads, n_samples, patch_size, temporal ? t : n_leads * t, temporal ? n_leads : 1,
          temporal ? n_leads * patch_size : patch_size};
}

}  // namespace fastecg
