"""Lead names are checked alike at every entry point that takes them: a bare string is a
TypeError naming the argument (``list("IIV1")`` would be the four leads I, I, V, 1), so
are items that are not str and sets (no order), and where the names give a lead order a
name given twice is a ValueError."""

import numpy as np
import pytest
import torch

from fastecg._spec import check_lead_names
from fastecg.augmenters import AugmenterManager
from fastecg.augmenters.physics import ReducedLeadSet
from fastecg.data import (ArrayDataset, WFDBDataset, bundled_records, check_record,
                          read_header, read_signal, write_store)
from fastecg.numpy_path import PreprocManager as NumpyPreprocManager
from fastecg.numpy_path.preproc import LeadSelectStep as NumpyLeadSelect
from fastecg.preprocessors import LeadSelect, PreprocManager
from fastecg.registry import SSL
from fastecg.ssl.pretrained import Contract
from fastecg.transforms.recipes import STANDARD_LEADS, recipe_config

pytestmark = pytest.mark.usefixtures("one_thread")

FOUR = ("I", "II", "V1", "V2")
X4 = torch.arange(4.0).view(1, 4, 1).expand(2, 4, 64).contiguous()  # lead k holds k
MAE = {"n_leads": 4, "seq_len": 40, "patch_size": 10, "embed_dim": 16, "depth": 1,
       "num_heads": 2, "decoder_dim": 8, "decoder_depth": 1, "decoder_heads": 2}
CONTRASTIVE = {"encoder": {"name": "resnet18", "stem_channels": 8, "widths": [8, 8, 8, 8]},
               "n_leads": 4, "seq_len": 400, "fs": 50.0}


def _ssl(name, **kw):
    base = MAE if name in ("mae_1d", "mae_ecg", "st_mem") else CONTRASTIVE
    extra = {"preprocess": None} if name == "st_mem" else {}
    return SSL.build({"name": name, **base, **extra, **kw})


def _hdf5(names, tmp_path):
    h5py = pytest.importorskip("h5py")
    from fastecg.data import HDF5Dataset

    path = tmp_path / "part.hdf5"
    with h5py.File(path, "w") as f:
        f["tracings"] = np.zeros((2, 16, 4), np.float32)
        f["exam_id"] = np.array([1, 2])
    return HDF5Dataset(path, lead_names=names)


class _Named(ArrayDataset):
    """Records whose read() names their leads as `names` (a user's dataset)."""

    def __init__(self, names):
        super().__init__(np.zeros((2, 4, 16), np.float32), fs=100.0)
        self.names = names

    def read(self, index):
        sig, fs, _ = super().read(index)
        return sig, fs, self.names


_HEADER = read_header(bundled_records()[0])

# Every public entry point that takes lead names: (names, tmp_path) -> the call.
ENTRY_POINTS = {
    "PreprocManager(lead_names)": lambda n, p: PreprocManager(lead_names=n),
    "PreprocManager.__call__": lambda n, p: PreprocManager()(X4, 500.0, lead_names=n),
    "PreprocManager.from_recipe": lambda n, p: PreprocManager.from_recipe("st_mem",
                                                                          lead_names=n),
    "recipe_config": lambda n, p: recipe_config("st_mem", n),
    "NumpyPreprocManager(lead_names)": lambda n, p: NumpyPreprocManager(lead_names=n),
    "NumpyPreprocManager.__call__": lambda n, p: NumpyPreprocManager()(
        X4.numpy(), 500.0, lead_names=n),
    "NumpyPreprocManager.from_recipe": lambda n, p: NumpyPreprocManager.from_recipe(
        "st_mem", lead_names=n),
    "AugmenterManager(lead_names)": lambda n, p: AugmenterManager(lead_names=n),
    "AugmenterManager.__call__": lambda n, p: AugmenterManager()(X4, fs=500.0, lead_names=n),
    "LeadSelect(leads)": lambda n, p: LeadSelect(n),
    "LeadSelect(input_leads)": lambda n, p: LeadSelect(["I"], input_leads=n),
    "LeadSelect.__call__": lambda n, p: LeadSelect(["I"])(X4, n),
    "numpy LeadSelect.__call__": lambda n, p: NumpyLeadSelect(["I"])(X4.numpy(), n),
    "Contract(lead_names)": lambda n, p: Contract(lead_names=n),
    "Contract.lead_order": lambda n, p: Contract(lead_names=FOUR).lead_order(n),
    "Contract.apply": lambda n, p: Contract(lead_names=FOUR).apply(X4, 500.0, n),
    "mae_1d": lambda n, p: _ssl("mae_1d", lead_names=n),
    "mae_ecg": lambda n, p: _ssl("mae_ecg", lead_names=n),
    "st_mem": lambda n, p: _ssl("st_mem", lead_names=n),
    "simclr": lambda n, p: _ssl("simclr", lead_names=n),
    "moco": lambda n, p: _ssl("moco", lead_names=n),
    "clocs": lambda n, p: _ssl("clocs", lead_names=n),
    "ArrayDataset": lambda n, p: ArrayDataset(np.zeros((2, 4, 16), np.float32), lead_names=n),
    "HDF5Dataset": _hdf5,
    "WFDBDataset(leads)": lambda n, p: WFDBDataset(bundled_records(), leads=n),
    "read_signal(leads)": lambda n, p: read_signal(_HEADER, n),
    "check_record(leads)": lambda n, p: check_record(_HEADER, n),
    "write_store (a dataset's read)": lambda n, p: write_store(_Named(n), p / "store",
                                                               progress=False),
}
# Those where the names give a lead order, so that a name given twice is an error
# (LeadSelect's leads: tests/preprocessors/test_steps.py).
ORDERS = ["Contract(lead_names)", "mae_1d", "mae_ecg", "st_mem", "simclr", "moco", "clocs",
          "ArrayDataset", "HDF5Dataset", "WFDBDataset(leads)"]
SEQUENCE = r"must be a sequence of (distinct )?lead names"


@pytest.mark.parametrize("names", ["IIV1", b"IIV1"], ids=["str", "bytes"])
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_a_bare_string_is_a_type_error_naming_the_argument(entry, names, tmp_path):
    with pytest.raises(TypeError, match=SEQUENCE + r" such as \['I', 'II'\], not the string"):
        ENTRY_POINTS[entry](names, tmp_path)


@pytest.mark.parametrize("names", [("I", "II", 3, "V2"), {"I", "II", "V1", "V2"}],
                         ids=["int-item", "set"])
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_items_that_are_not_str_and_sets_are_type_errors(entry, names, tmp_path):
    with pytest.raises(TypeError, match=SEQUENCE):
        ENTRY_POINTS[entry](names, tmp_path)


@pytest.mark.parametrize("entry", ORDERS)
def test_a_lead_order_naming_a_lead_twice_is_a_value_error(entry, tmp_path):
    with pytest.raises(ValueError, match="names a lead twice"):
        ENTRY_POINTS[entry](("I", "II", "II", "V2"), tmp_path)


def test_the_clocs_leads_argument_refuses_a_string():
    # clocs' leads take names or indices: "II" would otherwise be lead I twice
    with pytest.raises(TypeError, match=r"clocs: leads must be .* not the string 'II'"):
        _ssl("clocs", variant="cmlc", leads="II")
    assert _ssl("clocs", variant="cmlc", leads=["II", 3]).lead_index == [1, 3]


def test_the_error_is_also_a_value_error():
    # the pipelines, LeadSelect and WFDBDataset raised ValueError for a string before
    with pytest.raises(ValueError, match="not the string 'II'"):
        PreprocManager(lead_names="II")
    assert check_lead_names(["II", "II"], "x", distinct=False) == ("II", "II")


@pytest.mark.parametrize("kind", [tuple, list, np.array, "index"])
def test_sequences_of_str_work_everywhere(kind, tmp_path):
    pd = pytest.importorskip("pandas")
    names = pd.Index(FOUR) if kind == "index" else kind(FOUR)
    # the selection is the reference: lead k holds k, so V1 then I is rows 2 and 0
    out = PreprocManager(LeadSelect(["V1", "I"]), lead_names=names)(X4)
    torch.testing.assert_close(out, X4[:, [2, 0]])
    out = NumpyLeadSelect(["V1", "I"])(X4.numpy(), names)
    np.testing.assert_array_equal(out, X4.numpy()[:, [2, 0]])
    contract = Contract(lead_names=names)
    assert contract.lead_names == list(FOUR) and all(type(n) is str for n in contract.lead_names)
    assert contract.lead_order(names[::-1]) == [3, 2, 1, 0]
    assert _ssl("mae_1d", lead_names=names).contract.lead_names == list(FOUR)
    ds = ArrayDataset(np.zeros((2, 4, 16), np.float32), lead_names=names)
    assert ds.read(0)[2] == list(FOUR)
    assert _hdf5(names, tmp_path).lead_names == list(FOUR)
    assert PreprocManager.from_recipe("st_mem", lead_names=kind(STANDARD_LEADS)
                                      if kind != "index" else pd.Index(STANDARD_LEADS)
                                      ).lead_names == STANDARD_LEADS


def test_array_dataset_names_one_lead_each():
    with pytest.raises(ValueError, match=r"3 lead names .* records of \[4\] leads"):
        ArrayDataset(np.zeros((2, 4, 16), np.float32), lead_names=["I", "II", "V1"])


def test_lead_select_refuses_a_lead_the_record_has_twice():
    # which of the two "II" rows is meant cannot be told; the first was taken silently
    x = X4
    with pytest.raises(ValueError, match="'II' is in the record's leads .* more than once"):
        LeadSelect(["II"])(x, ["I", "II", "II", "V2"])
    torch.testing.assert_close(LeadSelect(["V2"])(x, ["I", "II", "II", "V2"]), x[:, [3]])


def test_reduced_lead_set_refuses_lead_names_naming_a_lead_twice():
    names = ["I", "I", *STANDARD_LEADS[1:11]]  # I twice, V6 missing: 12 names
    x = torch.randn(2, 12, 32)
    with pytest.raises(ValueError, match=r"ReducedLeadSet: lead_names names a lead twice \(I\)"):
        ReducedLeadSet(2, mode="drop")(x, lead_names=names)
    # the standard names pick rows 0 and 1 (I, II) as the 2-lead set defines
    out, _ = ReducedLeadSet(2, mode="drop")(x, lead_names=list(STANDARD_LEADS))
    torch.testing.assert_close(out, x[:, :2])


def test_read_signal_names_a_lead_the_record_lacks():
    # it was list.index's "'X9' is not in list", naming neither the record nor its leads
    with pytest.raises(ValueError, match=r"no lead 'X9' \(the record has \['I', 'II'"):
        read_signal(_HEADER, ["II", "X9"])
    assert read_signal(_HEADER, ["II"]).shape[0] == 1


def test_an_augmenter_called_alone_refuses_a_string():
    # "I, II" as one string was split into letters before the augmenter saw it
    x = torch.randn(2, 2, 32)
    with pytest.raises(TypeError, match=r"ReducedLeadSet: lead_names must be a sequence .* "
                                        r"not the string 'III'"):
        ReducedLeadSet(2, mode="drop")(x, lead_names="III")
    out, _ = ReducedLeadSet(2, mode="drop")(x, lead_names=("I", "II"))
    torch.testing.assert_close(out, x)
