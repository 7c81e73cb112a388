"""WFDBDataset on the CinC 2021 sample records and on broken copies of them: shapes,
rates, lead order, Dx labels, metadata dtypes under pandas 3, records skipped with their
reasons, rhythm masks from .atr aux notes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

pd = pytest.importorskip("pandas")
wfdb = pytest.importorskip("wfdb")
pytest.importorskip("pyarrow")

from fastecg.data import LabelMap, WFDBDataset, load_cinc_record, read_header, split  # noqa: E402

if int(pd.__version__.split(".")[0]) < 3:
    pytest.skip("fastecg requires pandas >= 3", allow_module_level=True)

STANDARD = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def _copy(records, folder, n):
    folder.mkdir(exist_ok=True)
    for path in records[:n]:
        for ext in (".hea", ".mat"):
            shutil.copy(path + ext, folder)
            (folder / (path.split("/")[-1] + ext)).chmod(0o644)
    return folder


@pytest.fixture(scope="module")
def small(cinc_records, tmp_path_factory):
    """Four real records, in a folder of their own."""
    return _copy(cinc_records, tmp_path_factory.mktemp("four"), 4)


@pytest.fixture(scope="module")
def dataset(small):
    return WFDBDataset(small, return_meta=True)


def test_items_shapes_rate_and_lead_order(dataset, small):
    assert len(dataset) == 4 and dataset.skipped == []
    sig, label, meta = dataset[0]
    assert sig.dtype == torch.float32 and sig.shape == (12, 5000)
    assert label.dtype == torch.float32 and label.shape == (26,)
    assert meta["fs"] == 500.0 and list(meta["lead_names"]) == STANDARD
    # Same samples as wfdb's own physical values, rounded once to float32.
    ref = wfdb.rdrecord(meta["path"]).p_signal.T.astype(np.float32)
    np.testing.assert_array_equal(sig.numpy(), ref)
    picked = WFDBDataset(small, leads=["V1", "II"], fs=250.0, siglen=2000)
    x, _ = picked[0]
    assert x.shape == (2, 2000)
    full = WFDBDataset(small, leads=["V1", "II"])[0][0]
    import scipy.signal
    expected = scipy.signal.resample_poly(full.numpy().astype(np.float64), 1, 2, axis=-1)[:, :2000]
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-4 * np.abs(expected).max())


def test_labels_follow_the_dx_codes(dataset):
    meta = dataset.metadata
    lm = LabelMap.cinc(2021)
    for i in range(len(dataset)):
        codes = meta["dx_codes"].iat[i]
        assert codes == read_header(meta["path"].iat[i])["Dx"].split(",")
        assert meta["labels"].iat[i] == lm.indices(codes)
        np.testing.assert_array_equal(np.flatnonzero(dataset[i][1].numpy()), lm.indices(codes))


def test_metadata_dtypes_under_pandas3(dataset):
    meta = dataset.metadata
    for name in ("record", "path", "sex", "patient_id"):
        dtype = meta[name].dtype
        assert isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow", (name, dtype)
    for name in ("lead_names", "dx_codes", "labels", "ann_symbols"):
        assert meta[name].dtype == object, name
        assert all(isinstance(v, list) for v in meta[name]), name
    assert meta["fs"].dtype == np.float64 and meta["age"].dtype == np.float64
    assert meta["n_samples"].dtype == np.int64 and meta["n_leads"].dtype == np.int64
    assert set(meta["sex"]) <= {"Male", "Female"}
    assert meta["patient_id"].isna().all()  # CinC headers name no patient


def test_label_map_merges_equivalent_classes():
    merged, plain = LabelMap.cinc(2021), LabelMap.cinc(2021, merge_equivalent=False)
    assert (merged.num_classes, plain.num_classes) == (26, 30)
    assert (LabelMap.cinc(2020).num_classes, LabelMap.cinc(2020, False).num_classes) == (24, 27)
    for a, b in [("713427006", "59118001"), ("284470004", "63593006"),
                 ("427172004", "17338001"), ("733534002", "164909002")]:
        assert merged.indices([a]) == merged.indices([b])
        assert plain.indices([a]) != plain.indices([b])
    assert merged.indices(["67741000119109"]) == []  # unscored codes are left out
    with pytest.raises(ValueError, match="2020 or 2021"):
        LabelMap.cinc(2019)


def test_load_cinc_record_keeps_its_outputs(cinc_records):
    sig, header = load_cinc_record(cinc_records[0])
    assert sig.shape == (12, header["n_samples"]) and header["fs"] == 500.0
    assert header["lead_names"] == STANDARD and "Dx" in header


def test_another_rate_and_dat_format(tmp_path):
    """A 250 Hz record in format 16 .dat (written with wfdb), resampled to 500 Hz."""
    rng = np.random.default_rng(0)
    sig = np.cumsum(rng.standard_normal((1000, 3)), axis=0) * 0.01
    wfdb.wrsamp("rec250", fs=250, units=["mV"] * 3, sig_name=["II", "V1", "I"], p_signal=sig,
                fmt=["16"] * 3, adc_gain=[1000.0] * 3, baseline=[0] * 3,
                comments=["Age: 61", "Sex: Female", "Dx: 164889003"], write_dir=str(tmp_path))
    ds = WFDBDataset(tmp_path, leads=["I", "II"])
    x, y = ds[0]
    assert ds.metadata["fs"].iat[0] == 250.0 and x.shape == (2, 1000)
    np.testing.assert_allclose(x.numpy(), sig[:, [2, 0]].T, atol=6e-4)
    assert y[LabelMap.cinc(2021).indices(["164889003"])].item() == 1.0
    up = WFDBDataset(tmp_path, fs=500.0, siglen=1500)
    assert up[0][0].shape == (3, 1500)


def test_bad_records_are_skipped_with_their_reasons(cinc_records, tmp_path):
    folder = _copy(cinc_records, tmp_path / "bad", 6)
    names = [p.split("/")[-1] for p in cinc_records[:6]]
    # Truncated signal file.
    data = (folder / f"{names[0]}.mat").read_bytes()
    (folder / f"{names[0]}.mat").write_bytes(data[:len(data) // 2])
    # A header that lies about the length.
    hea = folder / f"{names[1]}.hea"
    first, rest = hea.read_text().split("\n", 1)
    hea.write_text(first.replace(" 5000", " 6000") + "\n" + rest)
    # A corrupted header.
    (folder / f"{names[2]}.hea").write_bytes(b"\x00\xff garbage\nnot a header\n")
    # Missing samples: -32768 is format 16's "no value", read as NaN.
    raw = bytearray((folder / f"{names[3]}.mat").read_bytes())
    raw[24 + 200:24 + 204] = np.array([-32768, -32768], dtype="<i2").tobytes()
    (folder / f"{names[3]}.mat").write_bytes(bytes(raw))
    # A signal file that is not there.
    (folder / f"{names[4]}.mat").unlink()

    ds = WFDBDataset(folder)
    reasons = dict((p.split("/")[-1], r) for p, r in ds.skipped)
    assert len(ds) == 1 and ds.metadata["record"].tolist() == [names[5]]
    assert "bytes" in reasons[names[0]] and "bytes" in reasons[names[1]]
    assert "header" in reasons[names[2]] and "NaN" in reasons[names[3]]
    assert "not found" in reasons[names[4]]
    # Missing samples are repaired on request, and a missing lead skips the record.
    zero = WFDBDataset(folder, nan="zero")
    assert names[3] in zero.metadata["record"].tolist()
    i = zero.metadata["record"].tolist().index(names[3])
    assert torch.isfinite(zero[i][0]).all()
    # A lead no record has (a misspelt name) leaves none: an error that says why; a
    # folder that is not there is one too.
    with pytest.raises(ValueError, match=r"all 6 records were skipped.*V7"):
        WFDBDataset(folder, leads=["II", "V7"])
    with pytest.raises(FileNotFoundError, match="not a folder"):
        WFDBDataset(tmp_path / "nowhere")


def test_rhythm_masks_from_aux_notes(tmp_path):
    sig = np.zeros((2000, 1))
    wfdb.wrsamp("af", fs=200, units=["mV"], sig_name=["II"], p_signal=sig, fmt=["16"],
                adc_gain=[200.0], baseline=[0], write_dir=str(tmp_path))
    wfdb.wrann("af", "atr", np.array([0, 500, 1200]), symbol=["+", "+", "+"],
               aux_note=["(N", "(AFIB", "(N"], write_dir=str(tmp_path))
    ds = WFDBDataset(tmp_path, rhythms=["AFIB", "AFL"], return_meta=True)
    x, mask, meta = ds[0]
    assert mask.shape == (2, 2000) and mask.dtype == torch.float32
    expected = np.zeros(2000)
    expected[500:1200] = 1
    np.testing.assert_array_equal(mask[0].numpy(), expected)
    assert mask[1].sum() == 0 and meta["ann_symbols"] == ["+", "+", "+"]
    up = WFDBDataset(tmp_path, fs=400.0, rhythms=["AFIB"])
    assert up[0][1].shape == (1, 4000) and up[0][1].sum() == 1400


def test_patient_split_never_leaks_and_is_reproducible(dataset):
    from fastecg.data import SyntheticECGDataset

    syn = SyntheticECGDataset(60, seconds=1.0, records_per_patient=3)
    parts = split(syn, by="patient", fractions=(0.6, 0.2, 0.2), seed=3)
    assert sum(len(p) for p in parts) == 60
    patients = [set(syn.metadata["patient_id"].iloc[p.indices]) for p in parts]
    assert not (patients[0] & patients[1] or patients[0] & patients[2]
                or patients[1] & patients[2])
    for k in range(5):  # stratified: the floor or the ceiling of each share of a class
        n_k = (syn.metadata["label"] == k).sum() // 3  # patients of the class
        for p, f in zip(parts, (0.6, 0.2, 0.2)):
            got = (syn.metadata["label"].iloc[p.indices] == k).sum() // 3
            assert np.floor(f * n_k) <= got <= np.ceil(f * n_k)
    again = split(syn, by="patient", fractions=(0.6, 0.2, 0.2), seed=3)
    assert [p.indices for p in parts] == [p.indices for p in again]
    records = split(dataset, by="record", fractions=(0.5, 0.5))
    assert sorted(records[0].indices + records[1].indices) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="sum to 1"):
        split(syn, fractions=(0.5, 0.2))


def test_bundled_samples_ship_with_the_package():
    from fastecg.data import bundled_records

    paths = bundled_records()
    assert len(paths) == 4
    ds = WFDBDataset(paths)
    assert len(ds) == 4 and ds.skipped == []
    names = [[ds.label_map.class_names[i] for i in labels] for labels in ds.metadata["labels"]]
    assert names == [["NSR"], ["CRBBB|RBBB", "SB"], ["STach"], ["IRBBB", "NSR", "SB"]]
    x, _ = ds[0]
    assert x.shape == (12, 5000) and 0.05 < float(x.abs().max()) < 20


def test_an_items_metadata_is_the_callers_own():
    """The metadata dict of an item held the dataset's own list cells (dx_codes, labels,
    lead_names): appending to one changed ``dataset.metadata`` and every later item."""
    from fastecg.data import bundled_records

    ds = WFDBDataset(bundled_records(), return_meta=True)
    codes = [list(c) for c in ds.metadata["dx_codes"]]
    labels = [list(c) for c in ds.metadata["labels"]]
    _, _, meta = ds[1]
    assert meta["dx_codes"] == codes[1] and meta["labels"] == labels[1]
    meta["dx_codes"].append("999999")
    meta["labels"].clear()
    meta["lead_names"].reverse()
    assert [list(c) for c in ds.metadata["dx_codes"]] == codes
    assert [list(c) for c in ds.metadata["labels"]] == labels
    assert list(ds.metadata["lead_names"].iat[1]) == STANDARD
    again = ds[1][2]
    assert again["dx_codes"] == codes[1] and list(again["lead_names"]) == STANDARD


def test_rhythm_masks_follow_the_transforms_rate(tmp_path):
    """The masks are on the item's grid whatever changed the rate: the dataset's fs or
    a resampling step in transforms (AFIB from 4 s to 6 s of a 250 Hz record)."""
    from fastecg.preprocessors import PreprocManager

    wfdb.wrsamp("r1", fs=250, units=["mV"], sig_name=["II"], p_signal=np.zeros((2500, 1)),
                fmt=["16"], adc_gain=[200.0], baseline=[0], write_dir=str(tmp_path))
    wfdb.wrann("r1", "atr", np.array([0, 1000, 1500]), symbol=["+"] * 3,
               aux_note=["(N", "(AFIB", "(N"], write_dir=str(tmp_path))
    expected = np.zeros(5000, np.float32)
    expected[2000:3000] = 1
    by_fs = WFDBDataset(tmp_path, fs=500.0, rhythms=["AFIB"])[0][1]
    up = PreprocManager({"name": "resample", "dst_fs": 500.0})
    by_step = WFDBDataset(tmp_path, rhythms=["AFIB"], transforms=up)[0][1]
    np.testing.assert_array_equal(by_fs[0].numpy(), expected)
    np.testing.assert_array_equal(by_step[0].numpy(), expected)
    left = PreprocManager.from_config([{"name": "resample", "dst_fs": 500.0},
                                       {"name": "crop_or_pad", "length": 2500, "mode": "left"}])
    np.testing.assert_array_equal(
        WFDBDataset(tmp_path, rhythms=["AFIB"], transforms=left)[0][1][0].numpy(),
        expected[:2500])
    centre = PreprocManager({"name": "crop_or_pad", "length": 2000})
    with pytest.raises(ValueError, match="crop_or_pad step with mode 'center'"):
        WFDBDataset(tmp_path, rhythms=["AFIB"], transforms=centre)
    assert WFDBDataset(tmp_path, transforms=centre)[0][0].shape == (1, 2000)  # no masks: fine


def test_repeated_or_empty_lead_lists_are_refused(small):
    for leads in (["II", "II", "V1"], [], "II"):
        with pytest.raises(ValueError, match="distinct lead names"):
            WFDBDataset(small, leads=leads)


def test_metadata_items_batch_with_collate_with_meta(dataset):
    from fastecg.data import collate_with_meta

    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collate_with_meta)
    sig, label, meta = next(iter(loader))
    assert sig.shape == (4, 12, 5000) and label.shape == (4, 26)
    assert [m["record"] for m in meta] == dataset.metadata["record"].tolist()
    assert [m["dx_codes"] for m in meta] == dataset.metadata["dx_codes"].tolist()


def test_store_lead_names_say_none_when_records_differ(tmp_path):
    """store.json's lead names are the records' own when they all share them, None
    when they differ (never those of whichever batch came last)."""
    from fastecg.data import ECGStore, write_store

    src = tmp_path / "records"
    src.mkdir()
    for name, order in (("a", STANDARD), ("b", STANDARD[::-1])):
        wfdb.wrsamp(name, fs=500, units=["mV"] * 12, sig_name=order,
                    p_signal=np.zeros((100, 12)), fmt=["16"] * 12, adc_gain=[200.0] * 12,
                    baseline=[0] * 12, write_dir=str(src))
    write_store(WFDBDataset(src), tmp_path / "mixed", progress=False)
    assert ECGStore(tmp_path / "mixed").lead_names is None
    write_store(WFDBDataset(src, leads=STANDARD), tmp_path / "one", progress=False)
    assert ECGStore(tmp_path / "one").lead_names == STANDARD


def test_patient_ids_of_any_type_keep_patients_whole():
    """Integer (or other non-string) patient ids group records as strings do; only a
    missing id makes a record its own unit."""
    class Table(torch.utils.data.Dataset):
        def __init__(self, ids):
            self.metadata = pd.DataFrame({"record": [str(i) for i in range(len(ids))],
                                          "patient_id": ids})

        def __len__(self):
            return len(self.metadata)

    for ids in ([i // 4 for i in range(40)], [float(i // 4) for i in range(40)],
                list(np.arange(40) // 4)):
        parts = split(Table(ids), by="patient", fractions=(0.5, 0.5), seed=1)
        sides = [{ids[i] for i in p.indices} for p in parts]
        assert not sides[0] & sides[1] and len(sides[0]) == len(sides[1]) == 5
    alone = split(Table([None] * 40), by="patient", fractions=(0.5, 0.5), seed=1)
    assert [len(p) for p in alone] == [20, 20]


def test_a_multi_segment_record_is_skipped_with_its_reason(tmp_path):
    """A valid multi-segment WFDB record (wfdb reads it with m2s=True): read_header says
    it is not read (it raised a TypeError that aborted the whole folder), the dataset
    skips it with that reason and keeps the single-segment records beside it."""
    rng = np.random.default_rng(0)
    for name in ("seg1", "seg2"):
        wfdb.wrsamp(name, fs=360, units=["mV", "mV"], sig_name=["II", "V1"],
                    p_signal=rng.normal(size=(500, 2)), fmt=["16", "16"],
                    write_dir=str(tmp_path))
    (tmp_path / "multi.hea").write_text("multi/2 2 360 1000\nseg1 500\nseg2 500\n")
    assert wfdb.rdrecord(str(tmp_path / "multi"), m2s=True).p_signal.shape == (1000, 2)
    with pytest.raises(ValueError, match="multi-segment record"):
        read_header(str(tmp_path / "multi"))
    ds = WFDBDataset(str(tmp_path))
    assert sorted(ds.metadata["record"]) == ["seg1", "seg2"]
    assert [(p.endswith("multi"), "multi-segment" in why) for p, why in ds.skipped] == \
        [(True, True)]


def test_all_skipped_names_the_most_common_reason_first(tmp_path):
    # One broken header sorted first used to be the only reason given, when every other
    # record was skipped for a misspelt lead.
    from fastecg.data import bundled_records

    folder = _copy(bundled_records(), tmp_path / "f", 4)
    (folder / "A0000.hea").write_bytes(b"\x00\xff garbage\nnot a header\n")
    with pytest.raises(ValueError) as info:
        WFDBDataset(folder, leads=["II", "XX"])
    message = str(info.value)
    assert message.startswith("WFDBDataset: all 5 records were skipped: 4 x ")
    assert message.index("XX") < message.index("A0000")
    assert "1 x " in message
