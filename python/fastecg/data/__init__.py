"""ECG data: synthetic generator and PhysioNet/CinC record reader (NumPy only)."""

from .synthetic import synthetic_ecg
from .wfdb import load_cinc_record

__all__ = ["synthetic_ecg", "load_cinc_record"]
