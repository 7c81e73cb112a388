"""``nn.Module`` preprocessors, registered in ``fastecg.registry.PREPROCESSORS``."""

from .bandpass import BandPass
from .normalize import MinMaxNormalize, NaiveNormalize, Normalize, ZScoreNormalize

__all__ = ["BandPass", "Normalize", "MinMaxNormalize", "NaiveNormalize", "ZScoreNormalize"]
