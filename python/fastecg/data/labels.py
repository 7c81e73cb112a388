"""SNOMED CT diagnosis codes of the PhysioNet/CinC Challenges 2020 and 2021 -> class
indices (multi-label). Torch-free.

The scored classes are the challenges' published tables (``dx_mapping_scored.csv`` of
the official evaluation code, physionetchallenges/evaluation-2020 and -2021; Perez Alday
et al., "Classification of 12-lead ECGs: the PhysioNet/Computing in Cardiology Challenge
2020", Physiol. Meas. 41, 2020; Reyna et al., "Will Two Do? Varying Dimensions in
Electrocardiography: the PhysioNet/Computing in Cardiology Challenge 2021", CinC 2021).
The challenges score some pairs of codes as one diagnosis ("We score 713427006 and
59118001 as the same diagnosis"); ``merge_equivalent=True`` gives each pair one index.
"""

from __future__ import annotations

import operator
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np

__all__ = ["SCORED_2020", "SCORED_2021", "EQUIVALENT_2020", "EQUIVALENT_2021", "LabelMap",
           "parse_dx"]

# (SNOMED CT code, abbreviation, diagnosis), in the order of the challenge's table.
SCORED_2020 = (
    ("270492004", "IAVB", "1st degree av block"),
    ("164889003", "AF", "atrial fibrillation"),
    ("164890007", "AFL", "atrial flutter"),
    ("426627000", "Brady", "bradycardia"),
    ("713427006", "CRBBB", "complete right bundle branch block"),
    ("713426002", "IRBBB", "incomplete right bundle branch block"),
    ("445118002", "LAnFB", "left anterior fascicular block"),
    ("39732003", "LAD", "left axis deviation"),
    ("164909002", "LBBB", "left bundle branch block"),
    ("251146004", "LQRSV", "low qrs voltages"),
    ("698252002", "NSIVCB", "nonspecific intraventricular conduction disorder"),
    ("10370003", "PR", "pacing rhythm"),
    ("284470004", "PAC", "premature atrial contraction"),
    ("427172004", "PVC", "premature ventricular contractions"),
    ("164947007", "LPR", "prolonged pr interval"),
    ("111975006", "LQT", "prolonged qt interval"),
    ("164917005", "QAb", "qwave abnormal"),
    ("47665007", "RAD", "right axis deviation"),
    ("59118001", "RBBB", "right bundle branch block"),
    ("427393009", "SA", "sinus arrhythmia"),
    ("426177001", "SB", "sinus bradycardia"),
    ("426783006", "NSR", "sinus rhythm"),
    ("427084000", "STach", "sinus tachycardia"),
    ("63593006", "SVPB", "supraventricular premature beats"),
    ("164934002", "TAb", "t wave abnormal"),
    ("59931005", "TInv", "t wave inversion"),
    ("17338001", "VPB", "ventricular premature beats"),
)
# 2021 scores three more: bundle branch block, complete LBBB, poor R wave progression.
SCORED_2021 = (
    ("164889003", "AF", "atrial fibrillation"),
    ("164890007", "AFL", "atrial flutter"),
    ("6374002", "BBB", "bundle branch block"),
    ("426627000", "Brady", "bradycardia"),
    ("733534002", "CLBBB", "complete left bundle branch block"),
    ("713427006", "CRBBB", "complete right bundle branch block"),
    ("270492004", "IAVB", "1st degree av block"),
    ("713426002", "IRBBB", "incomplete right bundle branch block"),
    ("39732003", "LAD", "left axis deviation"),
    ("445118002", "LAnFB", "left anterior fascicular block"),
    ("164909002", "LBBB", "left bundle branch block"),
    ("251146004", "LQRSV", "low qrs voltages"),
    ("698252002", "NSIVCB", "nonspecific intraventricular conduction disorder"),
    ("426783006", "NSR", "sinus rhythm"),
    ("284470004", "PAC", "premature atrial contraction"),
    ("10370003", "PR", "pacing rhythm"),
    ("365413008", "PRWP", "poor R wave Progression"),
    ("427172004", "PVC", "premature ventricular contractions"),
    ("164947007", "LPR", "prolonged pr interval"),
    ("111975006", "LQT", "prolonged qt interval"),
    ("164917005", "QAb", "qwave abnormal"),
    ("47665007", "RAD", "right axis deviation"),
    ("59118001", "RBBB", "right bundle branch block"),
    ("427393009", "SA", "sinus arrhythmia"),
    ("426177001", "SB", "sinus bradycardia"),
    ("427084000", "STach", "sinus tachycardia"),
    ("63593006", "SVPB", "supraventricular premature beats"),
    ("164934002", "TAb", "t wave abnormal"),
    ("59931005", "TInv", "t wave inversion"),
    ("17338001", "VPB", "ventricular premature beats"),
)
# Pairs scored as one diagnosis; the first code of a pair names the merged class.
EQUIVALENT_2020 = (("713427006", "59118001"), ("284470004", "63593006"),
                   ("427172004", "17338001"))
EQUIVALENT_2021 = EQUIVALENT_2020 + (("733534002", "164909002"),)

_TABLES = {2020: (SCORED_2020, EQUIVALENT_2020), 2021: (SCORED_2021, EQUIVALENT_2021)}


def parse_dx(text: Optional[str]) -> list[str]:
    """``"164889003,59118001"`` -> ``["164889003", "59118001"]`` (empty for None or "").

    Examples
    --------
    >>> from fastecg.data import parse_dx
    >>> parse_dx("164889003,59118001")
    ['164889003', '59118001']
    >>> parse_dx(None)
    []
    """
    if not text:
        return []
    return [code.strip() for code in str(text).split(",") if code.strip()]


def _checked_mapping(mapping: Mapping) -> dict[str, int]:
    """`mapping` as ``{str code: int index}``; ValueError for an index that is not an
    integer (a truncated 0.7 would silently be class 0)."""
    out = {}
    for code, index in mapping.items():
        try:
            value = operator.index(index)
        except TypeError:
            if not (isinstance(index, (float, np.floating)) and float(index).is_integer()):
                raise ValueError(f"LabelMap: the class index of code {code!r} must be an "
                                 f"integer, got {index!r}") from None
            value = int(index)
        out[str(code)] = value
    return out


class LabelMap:
    """Diagnosis codes -> class indices.

    Parameters
    ----------
    mapping : mapping of str to int
        Code -> class index; several codes may share an index.
    class_names : sequence of str
        Name of each index, ``len(class_names)`` classes.

    Notes
    -----
    Codes outside the mapping are ignored (the challenges leave unscored codes out).

    Examples
    --------
    >>> lm = LabelMap.cinc(2021)                 # 26 classes after the merges
    >>> lm.indices(["59118001", "713427006", "1234"])   # RBBB and CRBBB: one class
    [5]
    >>> lm.multi_hot(["164889003"]).shape
    (26,)
    """

    def __init__(self, mapping: Mapping[str, int], class_names: Sequence[str]):
        self.mapping = _checked_mapping(mapping)
        self.class_names = list(class_names)
        bad = [v for v in self.mapping.values() if not 0 <= v < len(self.class_names)]
        if bad:
            raise ValueError(f"LabelMap: indices {sorted(set(bad))} outside "
                             f"[0, {len(self.class_names)})")

    @classmethod
    def cinc(cls, year: int = 2021, merge_equivalent: bool = True) -> "LabelMap":
        """The scored classes of the CinC Challenge `year` (2020: 27 codes, 24 classes
        merged; 2021: 30 codes, 26 classes merged)."""
        if year not in _TABLES:
            raise ValueError(f"LabelMap.cinc: year must be 2020 or 2021, got {year!r}")
        table, pairs = _TABLES[year]
        alias = {b: a for a, b in pairs} if merge_equivalent else {}
        mapping: dict[str, int] = {}
        names: list[str] = []
        abbrev = {code: short for code, short, _ in table}
        for code, short, _ in table:
            if code in alias:
                continue
            mapping[code] = len(names)
            names.append(short if not merge_equivalent else
                         "|".join([short] + [abbrev[b] for a, b in pairs if a == code]))
        for b, a in alias.items():
            mapping[b] = mapping[a]
        return cls(mapping, names)

    @classmethod
    def from_any(cls, spec: Union["LabelMap", Mapping, str, None]) -> "LabelMap":
        """A LabelMap from itself, a ``{code: index}`` dict, ``"cinc2020"`` /
        ``"cinc2021"`` (merged) or ``"cinc2020-unmerged"`` / ``"cinc2021-unmerged"``;
        None gives CinC 2021 merged."""
        if spec is None:
            return cls.cinc(2021)
        if isinstance(spec, LabelMap):
            return spec
        if isinstance(spec, str):
            names = {f"cinc{y}{suffix}": (y, suffix == "") for y in (2020, 2021)
                     for suffix in ("", "-unmerged")}
            if spec not in names:
                raise ValueError(f"unknown label map {spec!r}; expected one of {sorted(names)}")
            return cls.cinc(*names[spec])
        if isinstance(spec, Mapping):
            mapping = _checked_mapping(spec)
            names = [""] * (max(mapping.values(), default=-1) + 1)
            for code, index in mapping.items():
                if index >= 0:  # (a negative one: the constructor says so)
                    names[index] = names[index] or code
            return cls(mapping, names)
        raise TypeError(f"label_map: expected a LabelMap, dict or name, got "
                        f"{type(spec).__name__}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def indices(self, codes: Iterable[str]) -> list[int]:
        """Sorted class indices of `codes` (a list of codes: :func:`parse_dx` splits a
        header's ``Dx`` text), each once."""
        if isinstance(codes, (str, bytes)):  # its characters are no codes
            raise TypeError(f"LabelMap: codes must be a sequence of codes, got the string "
                            f"{codes!r} (split a Dx text with parse_dx)")
        return sorted({self.mapping[c] for c in codes if c in self.mapping})

    def multi_hot(self, codes: Iterable[str]) -> np.ndarray:
        """float32 vector of ``num_classes`` with 1 at each class of `codes`."""
        out = np.zeros(self.num_classes, dtype=np.float32)
        out[self.indices(codes)] = 1.0
        return out

    def __repr__(self) -> str:
        return f"LabelMap({self.num_classes} classes, {len(self.mapping)} codes)"
