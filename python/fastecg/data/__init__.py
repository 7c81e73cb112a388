"""ECG data: WFDB records, CinC labels, a labelled synthetic ECG, datasets and the
memory-mapped record store.

Importing ``fastecg.data`` imports no torch (the NumPy path uses the generator and the
reader); the torch datasets load on first use of their names.
"""

from .labels import LabelMap, parse_dx
from .synthetic import SYNTHETIC_CLASSES, WAVE_NAMES, synthetic_ecg, synthetic_record
from .wfdb import (bundled_records, check_record, find_records, load_cinc_record,
                   read_header, read_signal, rhythm_mask)

# name -> submodule, for the names that need torch (resolved by __getattr__).
_LAZY = {"WFDBDataset": "datasets", "ArrayDataset": "datasets",
         "SyntheticECGDataset": "datasets", "split": "datasets", "prepare_signal": "datasets",
         "collate_with_meta": "datasets",
         "ECGStore": "store", "write_store": "store", "HDF5Dataset": "hdf5"}

__all__ = ["LabelMap", "parse_dx", "SYNTHETIC_CLASSES", "WAVE_NAMES", "synthetic_ecg",
           "synthetic_record", "bundled_records", "check_record", "find_records",
           "load_cinc_record", "read_header", "read_signal", "rhythm_mask", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
