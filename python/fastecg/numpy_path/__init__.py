"""fastecg's preprocessors on NumPy/SciPy only: no torch import.

For offline data preparation and deployment without torch; also the reference in
tests and the baseline in benchmarks, so it calls NumPy/SciPy the fast way.
:class:`PreprocManager` runs the same pipeline configs and published recipes as
``fastecg.preprocessors.PreprocManager``.
"""

from .bandpass import BandPass, bandpass
from .baseline import BaselineRemove, remove_baseline
from .normalize import normalize
from .preproc import PreprocManager

__all__ = ["BandPass", "BaselineRemove", "PreprocManager", "bandpass", "normalize",
           "remove_baseline"]
