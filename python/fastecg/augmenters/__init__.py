"""Augmenters: torch_ecg's eight (same class names and keyword arguments) and ECG-physics
ones, per-sample random parameters from a counter-based generator keyed by (seed, epoch,
sample index), and :class:`AugmenterManager`. Importing this package fills
``fastecg.registry.AUGMENTERS``.

Every augmenter (``(..., n_leads, n_samples)``, any leading dims):

==================== ==================================================================
baseline_wander      sinusoids at 0.01-0.33 Hz + Gaussian noise, per lead, amplitude-relative
random_flip          sign flip per sample, or per lead of a chosen sample
random_masking       stretches of the signal set to a value (all leads)
random_renormalize   z-score to a random mean and standard deviation
stretch_compress     time stretch (cut) or compression (zero pad), masks alike
mixup                convex mix with a partner in the batch, lambda ~ Beta per sample
cutmix               a stretch replaced by the partner's; labels by the kept fraction
label_smooth         (1 - s) * label + s / n_classes
powerline_noise      50/60 Hz mains interference and harmonics, per-lead amplitude/phase
emg_noise            band-limited (20-150 Hz) Gaussian muscle noise at a given RMS
gaussian_noise       white noise at a signal-to-noise ratio per lead
amplitude_scale      random gain per sample or lead
time_shift           whole-sample shift, zero fill, masks alike
random_crop          crop to a fixed length at a random start, masks alike
random_leads_mask    zero random leads, keeping at least k
reduced_lead_set     PhysioNet/CinC 2021 lead sets (12, 6, 4, 3, 2), zeroed or dropped
vcg_rotation         3KG: inverse Dower -> rotate/scale the VCG -> Dower back
==================== ==================================================================
"""

from .base import Augmenter
from .classic import (BaselineWander, CutMix, LabelSmooth, Mixup, RandomFlip, RandomMasking,
                      RandomRenormalize, StretchCompress)
from .manager import AugmenterManager, DeviceAugmentLoader, IndexedDataset
from .physics import (AmplitudeScale, EMGNoise, GaussianNoise, PowerlineNoise, RandomCrop,
                      RandomLeadsMask, ReducedLeadSet, TimeShift, VCGRotation)

# torch_ecg's name of the class, so that its users' imports keep working
BaselineWanderAugmenter = BaselineWander

__all__ = ["Augmenter", "AugmenterManager", "DeviceAugmentLoader", "IndexedDataset",
           "BaselineWander", "BaselineWanderAugmenter", "RandomFlip", "RandomMasking", "RandomRenormalize",
           "StretchCompress", "Mixup", "CutMix", "LabelSmooth", "PowerlineNoise", "EMGNoise",
           "GaussianNoise", "AmplitudeScale", "TimeShift", "RandomCrop", "RandomLeadsMask",
           "ReducedLeadSet", "VCGRotation"]
