"""LabelMap: codes given as a string and class indices that are not integers are refused
rather than silently giving empty or truncated labels."""

import numpy as np
import pytest

from fastecg.data import LabelMap, parse_dx


def test_a_dx_string_is_refused_and_its_split_codes_are_mapped():
    lm = LabelMap.cinc(2021)
    with pytest.raises(TypeError, match="parse_dx"):
        lm.indices("164889003")
    with pytest.raises(TypeError, match="codes"):
        lm.multi_hot("164889003,59118001")
    # AF is the table's first class; RBBB is scored as CRBBB, the sixth class (after AF,
    # AFL, BBB, Brady, CLBBB|LBBB).
    expected = np.zeros(26, np.float32)
    expected[[0, 5]] = 1.0
    np.testing.assert_array_equal(lm.multi_hot(parse_dx("164889003,59118001")), expected)


def test_class_indices_must_be_integers():
    with pytest.raises(ValueError, match="code 'a' must be an integer, got 0.7"):
        LabelMap.from_any({"a": 0.7, "b": 1})
    with pytest.raises(ValueError, match="must be an integer"):
        LabelMap({"a": 1.5}, ["x", "y"])
    lm = LabelMap.from_any({"a": 1.0, "b": np.int64(0)})  # integral values are indices
    assert lm.class_names == ["b", "a"]
    np.testing.assert_array_equal(lm.multi_hot(["a", "unknown"]), [0.0, 1.0])
