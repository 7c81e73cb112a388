"""``nn.Module`` preprocessors, registered in ``fastecg.registry.PREPROCESSORS``."""

from .normalize import MinMaxNormalize, NaiveNormalize, Normalize, ZScoreNormalize

__all__ = ["Normalize", "MinMaxNormalize", "NaiveNormalize", "ZScoreNormalize"]
