"""``nn.Module`` preprocessing steps and :class:`PreprocManager`; importing this package
fills ``fastecg.registry.PREPROCESSORS``."""

from .bandpass import BandPass
from .baseline import BaselineRemove
from .crop import CropOrPad, LeadSelect
from .manager import PreprocManager
from .normalize import MinMaxNormalize, NaiveNormalize, Normalize, ZScoreNormalize
from .resample import Resample
from .sos_filter import SOSFilter

__all__ = ["BandPass", "BaselineRemove", "CropOrPad", "LeadSelect", "MinMaxNormalize",
           "NaiveNormalize", "Normalize", "PreprocManager", "Resample", "SOSFilter",
           "ZScoreNormalize"]
