"""The integer codes the kernels take are defined once in Python (fastecg._spec, and the
fused augmentation pass's OpCode in fastecg.ops.augment) and once in C++
(csrc/common/codes.h): the two must agree, name for name and value for value."""

import pathlib
import re

import pytest

from fastecg._spec import BoundaryMode, MaskMode, NormalizeMethod, PadType
from fastecg.ops.augment import OpCode

CODES_H = pathlib.Path(__file__).resolve().parents[1] / "csrc" / "common" / "codes.h"

# C++ enum name -> (Python enum, the C++ names in Python's order)
EXPECTED = {
    "NormalizeMethod": (NormalizeMethod, ["kZScore", "kMinMax", "kNaive"]),
    "PadType": (PadType, ["kPadNone", "kPadOdd", "kPadEven", "kPadConstant"]),
    "BoundaryMode": (BoundaryMode, ["kReflect", "kMirror", "kNearest", "kConstant", "kWrap"]),
    "MaskMode": (MaskMode, ["kMaskTemporal", "kMaskLeadTemporal", "kMaskLead"]),
    "AugmentCode": (OpCode, ["kLeadMix", "kLeadAffine", "kSines", "kNoise", "kTimeMask",
                             "kAddRows", "kWarp", "kPair", "kFirNoise", "kRenorm",
                             "kSinesPtp"]),
}


def _cpp_enums() -> dict[str, dict[str, int]]:
    text = CODES_H.read_text()
    enums = {}
    for name, body in re.findall(r"enum\s+(\w+)\s*:\s*int64_t\s*\{([^}]*)\}", text):
        enums[name] = {k: int(v) for k, v in re.findall(r"(\w+)\s*=\s*(-?\d+)", body)}
    return enums


@pytest.mark.skipif(not CODES_H.exists(), reason="csrc/ not present (installed package)")
@pytest.mark.parametrize("enum_name", sorted(EXPECTED))
def test_python_and_cpp_codes_agree(enum_name):
    py_enum, cpp_names = EXPECTED[enum_name]
    cpp = _cpp_enums()[enum_name]
    assert list(cpp) == cpp_names
    assert [cpp[n] for n in cpp_names] == [member.value for member in py_enum]


def test_every_cpp_enum_is_checked():
    if not CODES_H.exists():
        pytest.skip("csrc/ not present")
    assert set(_cpp_enums()) == set(EXPECTED)


def test_the_ops_tables_use_the_enums():
    from fastecg._rows import PADTYPES
    from fastecg.ops.baseline import MEDIAN_MODES
    from fastecg.ops.normalize import NORMALIZE_METHODS
    from fastecg.ops.patch_mask import MASK_MODES

    assert {int(v) for v in PADTYPES.values()} == {m.value for m in PadType}
    assert MEDIAN_MODES == {m.name.lower(): m for m in BoundaryMode}
    assert sorted(int(v) for v in NORMALIZE_METHODS.values()) == [m.value for m in NormalizeMethod]
    assert MASK_MODES == {m.name.lower(): m for m in MaskMode}
