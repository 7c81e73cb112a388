"""WFDB records (``.hea`` + ``.dat``/``.mat``, ``.atr`` annotations) read with the
`wfdb <https://github.com/MIT-LCP/wfdb-python>`_ package. Torch-free.

The functions here read one record and check it against its header; the datasets in
:mod:`fastecg.data.datasets` build on them.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import numpy as np

from .._spec import check_lead_names

__all__ = ["read_header", "read_signal", "load_cinc_record", "check_record", "rhythm_mask",
           "find_records", "bundled_records"]

# Bytes per sample of the WFDB storage formats (the format number as the header writes it).
_FORMAT_BYTES = {"8": 1, "16": 2, "24": 3, "32": 4, "61": 2, "80": 1, "160": 2, "212": 1.5,
                 "310": 4 / 3, "311": 4 / 3}
# Units converted to mV so that every record comes out in the same unit.
_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}


def _wfdb():
    try:
        import wfdb
    except ImportError as err:  # an optional dependency: say how to get it
        raise ImportError("reading WFDB records needs the wfdb package: "
                          "pip install 'fastecg[data]'") from err
    return wfdb


def _stem(path: str) -> str:
    path = os.fspath(path)
    root, ext = os.path.splitext(path)
    return root if ext in (".hea", ".mat", ".dat", ".atr", ".qrs") else path


def find_records(root: str) -> list[str]:
    """Paths (without extension) of every ``.hea`` under `root`, sorted, so that a
    folder always gives its records in the same order.

    Examples
    --------
    >>> import os
    >>> from fastecg.data import bundled_records, find_records
    >>> folder = os.path.dirname(bundled_records()[0])
    >>> [os.path.basename(p) for p in find_records(folder)]
    ['E07506', 'E07509', 'E07517', 'HR06002']
    """
    stems = []
    for folder, dirs, files in os.walk(os.fspath(root)):
        dirs.sort()
        stems.extend(os.path.join(folder, f[:-4]) for f in sorted(files) if f.endswith(".hea"))
    return stems


def bundled_records() -> list[str]:
    """Paths (without extension) of the real records shipped with fastecg: four CinC 2021
    training records (Georgia and PTB-XL, CC BY 4.0; ``samples/README.md`` in this
    folder gives the attribution).

    Examples
    --------
    >>> import os
    >>> from fastecg.data import bundled_records
    >>> [os.path.basename(p) for p in bundled_records()]
    ['E07506', 'E07509', 'E07517', 'HR06002']
    """
    return find_records(os.path.join(os.path.dirname(os.path.abspath(__file__)), "samples"))


def read_header(path: str) -> dict[str, Any]:
    """The header of a record as a dict.

    Returns
    -------
    dict
        ``record``, ``path`` (without extension), ``fs`` (Hz), ``n_samples``,
        ``lead_names``, ``units``, ``files`` (signal file of each lead), and every
        ``# Key: value`` comment line under its key (CinC's ``Age``, ``Sex``, ``Dx``).

    Raises
    ------
    ValueError
        If the header cannot be parsed.
    OSError
        If it cannot be read.

    Examples
    --------
    >>> from fastecg.data import bundled_records, read_header
    >>> h = read_header(bundled_records()[0])
    >>> h["fs"], h["n_samples"], h["lead_names"][:3], h["Dx"]
    (500.0, 5000, ['I', 'II', 'III'], '426783006')
    """
    stem = _stem(path)
    try:
        header = _wfdb().rdheader(stem)
    except (OSError, ImportError):
        raise
    except Exception as err:  # wfdb raises several types for a malformed header
        raise ValueError(f"{stem}.hea: unreadable header ({type(err).__name__}: {err})") from err
    if getattr(header, "seg_name", None) is not None:  # (wfdb's MultiRecord)
        raise ValueError(f"{stem}.hea: a multi-segment record, which this reader does not "
                         "read: convert it with wfdb.rdrecord(..., m2s=True) and wfdb.wrsamp")
    if not header.n_sig or header.sig_len is None or not header.fs or not header.sig_name:
        raise ValueError(f"{stem}.hea: no signals, length or sampling rate in the header")
    info: dict[str, Any] = {
        "record": os.path.basename(stem), "path": stem, "fs": float(header.fs),
        "n_samples": int(header.sig_len), "lead_names": list(header.sig_name),
        "units": list(header.units or [""] * header.n_sig),
        "files": list(header.file_name), "formats": list(header.fmt),
        "byte_offsets": [int(b or 0) for b in (header.byte_offset or [0] * header.n_sig)],
    }
    for line in header.comments or []:
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def check_record(header: dict[str, Any], leads: Optional[Sequence[str]] = None) -> Optional[str]:
    """Why the record described by `header` cannot be used, or None when it can: every
    signal file exists and holds exactly the samples the header promises, and every lead
    in `leads` is there. Reads no samples (file sizes only).

    Examples
    --------
    >>> from fastecg.data import bundled_records, check_record, read_header
    >>> h = read_header(bundled_records()[0])
    >>> check_record(h) is None
    True
    >>> check_record(h, ["II", "X9"])
    "missing leads ['X9'] (has ['I', 'II', 'III', 'aVR', 'aVL', 'aVF', 'V1', 'V2', 'V3', 'V4', 'V5', 'V6'])"
    """
    if leads is not None:
        leads = check_lead_names(leads, "check_record: leads", distinct=False)
        missing = [name for name in leads if name not in header["lead_names"]]
        if missing:
            return f"missing leads {missing} (has {header['lead_names']})"
    folder = os.path.dirname(header["path"])
    per_file: dict[str, list[str]] = {}
    offsets: dict[str, int] = {}
    for name, fmt, offset in zip(header["files"], header["formats"], header["byte_offsets"]):
        per_file.setdefault(name, []).append(fmt)
        offsets[name] = offset
    for name, formats in per_file.items():
        file_path = os.path.join(folder, name)
        if not os.path.isfile(file_path):
            return f"signal file {name} not found"
        if any(f not in _FORMAT_BYTES for f in formats):
            continue  # a format whose size we do not model: the read will tell
        expected = offsets[name] + int(np.ceil(header["n_samples"] *
                                               sum(_FORMAT_BYTES[f] for f in formats)))
        size = os.path.getsize(file_path)
        if size != expected:
            return f"signal file {name} has {size} bytes; the header promises {expected}"
    return None


def read_signal(header: dict[str, Any], leads: Optional[Sequence[str]] = None) -> np.ndarray:
    """Samples of a record in mV, float32, shape ``(n_leads, n_samples)``, leads in the
    order of `leads` (all of them, in the header's order, by default).

    Physical values are computed in float64 (``(digital - baseline) / gain``, as the
    header says) and rounded once to float32. Samples the format marks as missing come
    out as NaN. Raises ValueError if the samples disagree with the header.

    Examples
    --------
    >>> from fastecg.data import bundled_records, read_header, read_signal
    >>> s = read_signal(read_header(bundled_records()[0]), leads=["II", "V1"])
    >>> s.shape, s.dtype
    ((2, 5000), dtype('float32'))
    """
    wfdb = _wfdb()
    names = header["lead_names"]
    if leads is not None:
        leads = check_lead_names(leads, "read_signal: leads", distinct=False)
        missing = [name for name in leads if name not in names]
        if missing:
            raise ValueError(f"{header['path']}: no lead {missing[0]!r} (the record has "
                             f"{list(names)})")
    channels = None if leads is None else [names.index(name) for name in leads]
    try:
        record = wfdb.rdrecord(header["path"], channels=channels, return_res=64)
    except (OSError, ImportError):
        raise
    except Exception as err:  # truncated or corrupt files surface as various types
        raise ValueError(f"{header['path']}: unreadable samples ({type(err).__name__}: "
                         f"{err})") from err
    sig = record.p_signal
    if sig is None or sig.shape != (header["n_samples"], len(channels or names)):
        shape = None if sig is None else sig.shape[::-1]
        raise ValueError(f"{header['path']}: samples of shape {shape}, header says "
                         f"{(len(channels or names), header['n_samples'])}")
    scale = np.array([_TO_MV.get(str(u).strip().lower(), 1.0) for u in record.units])
    sig = sig.T
    if np.any(scale != 1.0):
        sig = sig * scale[:, None]
    return sig.astype(np.float32)


def load_cinc_record(path: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Load a CinC record given its path with or without extension.

    Returns
    -------
    signal : ndarray, shape (n_leads, n_samples), float32
        In mV: ``(digital - baseline) / gain`` per lead, as the header says.
    header : dict
        :func:`read_header`'s fields: ``fs`` (Hz), ``lead_names``, ``n_samples``, and
        the comment fields (``Age``, ``Sex``, ``Dx``, ...) as strings.

    Examples
    --------
    >>> from fastecg.data import bundled_records, load_cinc_record
    >>> signal, header = load_cinc_record(bundled_records()[0])
    >>> signal.shape, signal.dtype, header["fs"]
    ((12, 5000), dtype('float32'), 500.0)
    """
    header = read_header(path)
    return read_signal(header), header


def rhythm_mask(path: str, n_samples: int, rhythms: Sequence[str] = ("AFIB", "AFL"),
                extension: str = "atr") -> Optional[np.ndarray]:
    """Per-sample rhythm episodes of an annotated record (MIT-BIH / CPSC 2021 style).

    An aux note ``"(AFIB"`` starts an atrial fibrillation episode that lasts until the
    next rhythm note (any aux note starting with ``"("``) or the end of the record.

    Returns
    -------
    ndarray of bool, shape (len(rhythms), n_samples), or None
        ``mask[k, t]``: sample `t` lies in an episode of ``rhythms[k]``. None when the
        record has no annotation file.

    Examples
    --------
    >>> from fastecg.data import bundled_records, rhythm_mask
    >>> rhythm_mask(bundled_records()[0], 5000) is None     # CinC records have no .atr
    True
    """
    stem = _stem(path)
    if not os.path.isfile(f"{stem}.{extension}"):
        return None
    ann = _wfdb().rdann(stem, extension)
    mask = np.zeros((len(rhythms), n_samples), dtype=bool)
    changes = [(int(s), note.strip().lstrip("(").rstrip("\x00").strip())
               for s, note in zip(ann.sample, ann.aux_note) if note and note.startswith("(")]
    for (start, name), end in zip(changes, [c[0] for c in changes[1:]] + [n_samples]):
        if name in rhythms:
            mask[rhythms.index(name), max(start, 0):min(end, n_samples)] = True
    return mask


def annotation_symbols(path: str, extension: str = "atr") -> list[str]:
    """Beat and rhythm symbols of the record's annotation file, in order (empty when
    there is none)."""
    stem = _stem(path)
    if not os.path.isfile(f"{stem}.{extension}"):
        return []
    return [str(s) for s in _wfdb().rdann(stem, extension).symbol]
