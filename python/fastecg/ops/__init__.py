"""fastecg ops: differentiable, ``torch.compile``-safe custom ops with compiled kernels.

Every op takes ``backend="auto" | "cuda" | "triton" | "cpu" | "torch"``.
"""

from .bandpass import bandpass, butter_sos, fir_taps
from .baseline import median_filter1d, remove_baseline
from .normalize import normalize
from .resample import resample
from .sosfilt import sosfilt, sosfiltfilt

__all__ = ["bandpass", "butter_sos", "fir_taps", "median_filter1d", "normalize", "remove_baseline", "sosfilt",
           "sosfiltfilt"]
__all__ += ["resample"]
from .patch_mask import masked_patch_embed, masked_reconstruction_loss, patch_mask

__all__ += ["masked_patch_embed", "masked_reconstruction_loss", "patch_mask"]
