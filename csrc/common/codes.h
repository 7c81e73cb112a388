// The integer codes the Python side passes to the kernels, one definition each.
// Mirrors the IntEnums in python/fastecg/_spec.py (NormalizeMethod, PadType,
// BoundaryMode, MaskMode) and python/fastecg/ops/augment.py (OpCode); tests/test_codes.py
// checks that the two agree. No torch headers.
#pragma once
#include <cstdint>

namespace fastecg {

// normalize's method.
enum NormalizeMethod : int64_t { kZScore = 0, kMinMax = 1, kNaive = 2 };

// sosfiltfilt's edge extension (SciPy's padtype; None is no extension).
enum PadType : int64_t { kPadNone = 0, kPadOdd = 1, kPadEven = 2, kPadConstant = 3 };

// The running median's boundary mode (scipy.ndimage names).
enum BoundaryMode : int64_t { kReflect = 0, kMirror = 1, kNearest = 2, kConstant = 3, kWrap = 4 };

// patch_mask's token layout.
enum MaskMode : int64_t { kMaskTemporal = 0, kMaskLeadTemporal = 1, kMaskLead = 2 };

// The fused augmentation pass's ops (their tensors: python/fastecg/ops/augment.py's table).
enum AugmentCode : int64_t {
  kLeadMix = 0,
  kLeadAffine = 1,
  kSines = 2,
  kNoise = 3,
  kTimeMask = 4,
  kAddRows = 5,
  kWarp = 6,
  kPair = 7,
  kFirNoise = 8,
  kRenorm = 9,
  kSinesPtp = 10,
};

}  // namespace fastecg
