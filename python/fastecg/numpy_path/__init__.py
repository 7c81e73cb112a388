"""fastecg's preprocessors on NumPy/SciPy only: no torch import.

For offline data preparation and deployment without torch; also the reference in
tests and the baseline in benchmarks, so it calls NumPy/SciPy the fast way.
"""

from .bandpass import BandPass, bandpass
from .baseline import BaselineRemove, remove_baseline
from .normalize import normalize

__all__ = ["BandPass", "BaselineRemove", "bandpass", "normalize", "remove_baseline"]
