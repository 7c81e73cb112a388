"""``nn.Module`` preprocessors; importing this package fills ``fastecg.registry.PREPROCESSORS``."""

from .bandpass import BandPass
from .baseline import BaselineRemove
from .normalize import MinMaxNormalize, NaiveNormalize, Normalize, ZScoreNormalize

__all__ = ["BandPass", "BaselineRemove", "Normalize", "MinMaxNormalize", "NaiveNormalize", "ZScoreNormalize"]
