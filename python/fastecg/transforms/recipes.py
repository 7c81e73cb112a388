"""The preprocessing of published ECG models, as pipeline configs (torch-free, so
``fastecg.preprocessors.PreprocManager`` and ``fastecg.numpy_path.PreprocManager`` build
the same pipeline from them).

Each recipe is written from the authors' paper and public code, every step the SciPy
call they make; its docstring cites the source and says which choice was made where the
sources are ambiguous or disagree. Recipes take 12-lead ECG in the standard lead order
(:data:`STANDARD_LEADS`); ``recipe_config(name, lead_names)`` prepends a lead selection
for records in another order. The input rate is given when the pipeline is called (or
built): every recipe resamples to its model's rate first, which passes a signal already
at that rate through untouched.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from .._spec import check_lead_names
from ..registry import did_you_mean

__all__ = ["RECIPES", "STANDARD_LEADS", "recipe_config", "ecgfounder", "st_mem", "hubert_ecg",
           "ecg_fm", "torch_ecg_default"]

STANDARD_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def ecgfounder() -> list[dict]:
    """ECGFounder (Li et al., "An Electrocardiogram Foundation Model Built on over 10
    Million Recordings with External Evaluation across Multiple Domains", 2024;
    github.com/PKUDigitalHealth/ECGFounder): 500 Hz, 10 s (5000 samples).

    Steps: resample to 500 Hz (``resample_poly``) -> centre crop / zero pad to 5000
    samples -> 50 Hz notch (``iirnotch(50, Q=30)``, zero phase) -> Butterworth order 4
    band-pass 0.67-40 Hz (``sosfiltfilt``) -> baseline: ``x - medfilt(x, 0.4 s)``
    (201 samples, zero padding as ``scipy.signal.medfilt``) -> z-score over the whole
    record (``(x - x.mean()) / (x.std() + 1e-8)``, NumPy's std, ddof 0).

    Sources and choices: the z-score (whole record, ``np.std``, ``+ 1e-8``) is the
    authors' ``z_score_normalization`` in ``dataset.py``; the filter chain (notch, band,
    median baseline) is the paper's description as the issue that asked for this recipe
    summarises it, with the constants of the common implementation (Q = 30,
    ``int(0.4 * fs)`` made odd, ``scipy.signal.medfilt``). The authors' released code
    reads MIMIC-IV-ECG, already 500 Hz and 10 s, so it has no resampling or cropping;
    SciPy's default polyphase resampler and a centre crop are this recipe's choices for
    other records. The authors also replace NaN by 0 (``np.nan_to_num``) before
    normalising; the pipeline does not (NaN stays NaN). Notch and band-pass use SOS
    forms (``tf2sos``, ``output="sos"``) of the same designs: the same filters, better
    conditioned than transfer functions at 0.67 Hz.
    """
    return [
        {"name": "resample", "dst_fs": 500.0, "method": "poly"},
        {"name": "crop_or_pad", "length": 5000, "mode": "center", "pad": "zero"},
        {"name": "sos_filter", "design": "iirnotch", "freq": 50.0, "q": 30.0},
        {"name": "bandpass", "lowcut": 0.67, "highcut": 40.0, "filter_order": 4},
        {"name": "baseline_remove", "window1": 0.4, "window2": None, "mode": "constant"},
        {"name": "normalize", "method": "z-score", "per_channel": False, "ddof": 0,
         "eps": 1e-8},
    ]


def st_mem() -> list[dict]:
    """ST-MEM (Na et al., "Guiding Masked Representation Learning to Capture
    Spatio-Temporal Relationship of Electrocardiogram", ICLR 2024;
    github.com/bakqui/ST-MEM): 250 Hz, 2250 samples (9 s).

    Steps, as ``util/dataset.py``, ``util/transforms.py`` and ``configs/*/st_mem.yaml``
    run them: resample to 250 Hz with ``scipy.signal.resample`` (Fourier method, length
    ``int(n * 250 / fs)``) -> crop 2250 samples -> Butterworth high-pass order 5 at
    0.67 Hz (``sosfiltfilt``) -> Butterworth low-pass order 5 at 40 Hz
    (``sosfiltfilt``) -> standardise over the whole record (``Standardize(axis=(-1,
    -2))``: ``(x - mean) / std``, ddof 0).

    Choices: the authors crop *before* filtering (their transform order), so this
    recipe does too; they crop at random for training and take three evenly spaced
    crops for evaluation (``NCrop(2250, 3)``), of which this recipe's centre crop is the
    middle one (set the crop step's ``mode`` to ``"random"`` for training). A record
    shorter than 2250 samples at 250 Hz is an error there and here (``pad=None``). The
    order-5 high- and low-pass are two filters, not one order-5 band-pass design. The
    standardisation is per record, not per lead (``axis=(-1, -2)`` in their configs).
    A constant record gives NaN here (eps 0) where the authors return zeros.
    """
    return [
        {"name": "resample", "dst_fs": 250.0, "method": "fft"},
        {"name": "crop_or_pad", "length": 2250, "mode": "center", "pad": None},
        {"name": "bandpass", "lowcut": 0.67, "highcut": None, "filter_order": 5},
        {"name": "bandpass", "lowcut": None, "highcut": 40.0, "filter_order": 5},
        {"name": "normalize", "method": "z-score", "per_channel": False, "ddof": 0,
         "eps": 0.0},
    ]


def hubert_ecg() -> list[dict]:
    """HuBERT-ECG (Coppola et al., "HuBERT-ECG as a Self-Supervised Foundation Model for
    Broad and Scalable Cardiac Applications", medRxiv 2024;
    github.com/Edoardo-BS/HuBERT-ECG): 100 Hz, 5 s (500 samples).

    Steps, as the authors' ``utils.ecg_preprocessing`` (run once to store the data)
    and ``ECGDataset.__getitem__`` (run per sample) do them: resample to 500 Hz with
    ``scipy.signal.resample`` -> FIR band-pass 0.05-47 Hz, ``int(0.3 * fs)`` taps made
    odd (151), ``firwin(..., pass_zero=False)`` applied by ``filtfilt`` (BioSPPy's
    ``filter_signal``) -> per-lead scaling to [-1, 1], ``2 (x - min) / (max - min +
    1e-8) - 1`` -> the first 5 s (2500 samples; zero padding, which their attention
    mask treats as padding) -> ``scipy.signal.decimate(x, 5)`` to 100 Hz.

    Choices: the repository has two versions of the band-pass. The first calls
    BioSPPy's ``filter_signal`` (zero phase, ``filtfilt``), but with ``fs=100`` as the
    default rate of a 500 Hz signal; the later one designs the same FIR at 500 Hz and
    applies it causally (``lfilter`` with 150 taps: a 74.5-sample, 149 ms delay). This
    recipe takes the paper's band at the signal's real rate with BioSPPy's zero-phase
    filter. The scaling is one
    min-max step and one ``(x - 0.5) / 0.5`` step (equal to rounding). The authors
    decimate the 12 leads concatenated end to end (one ``decimate`` call on the
    flattened record), so the filter's edge transients cross from each lead into the
    next; here each lead is decimated on its own. On the CinC 2021 sample records the
    two differ by more than 1% of the [-1, 1] range only in the first 10 and last 13 of
    each lead's 500 samples (more than 0.1%: 26 and 25), and agree to 1e-14 elsewhere.
    """
    return [
        {"name": "resample", "dst_fs": 500.0, "method": "fft"},
        {"name": "bandpass", "lowcut": 0.05, "highcut": 47.0, "filter_type": "fir",
         "filter_order": 150},
        {"name": "normalize", "method": "min-max", "per_channel": True, "eps": 1e-8},
        {"name": "naive_normalize", "mean": 0.5, "std": 0.5},
        {"name": "crop_or_pad", "length": 2500, "mode": "left", "pad": "zero"},
        {"name": "resample", "dst_fs": 100.0, "method": "decimate"},
    ]


def ecg_fm() -> list[dict]:
    """ECG-FM (McKeen et al., "ECG-FM: An Open Electrocardiogram Foundation Model",
    2024; github.com/bowang-lab/ECG-FM on fairseq-signals, github.com/Jwoo5/fairseq-signals):
    500 Hz, 5 s segments (2500 samples).

    Steps, as fairseq-signals' ``data/ecg/preprocess/preprocess.py`` runs them:
    resample to 500 Hz by linear interpolation (``interp1d`` on a grid aligning the
    first and last samples; skipped at 500 Hz) -> per-lead standardisation over the
    whole record (``x - mean``, then ``/ std``, ddof 0) -> the first 5 s segment.

    Choices: the authors cut every record into all its whole 5 s segments and keep
    each as a sample; a pipeline returns one tensor, so this recipe keeps the first
    (apply a ``crop_or_pad`` with another offset, or crop before calling, for the
    others). A record shorter than 5 s has no segment there and is an error here. A
    constant lead gives NaN here (eps 0) where their default strategy writes zeros.
    """
    return [
        {"name": "resample", "dst_fs": 500.0, "method": "linear"},
        {"name": "normalize", "method": "z-score", "per_channel": True, "ddof": 0,
         "eps": 0.0},
        {"name": "crop_or_pad", "length": 2500, "mode": "left", "pad": None},
    ]


def torch_ecg_default() -> list[dict]:
    """torch_ecg's preprocessors at their default arguments (github.com/DeepPSP/torch_ecg,
    ``torch_ecg/_preprocessors``, its SciPy path): Butterworth band-pass 0.5-45 Hz of
    order ``round(0.01 * fs)`` (5 at 500 Hz), zero phase -> baseline removal by two
    medians of 0.2 s and 0.6 s -> z-score per record to mean 0, std 1 (``torch.std``,
    ddof 1).

    Choices: torch_ecg has no single default pipeline; its ``PreprocManager`` builds
    ``bandpass``, ``baseline_remove``, ``normalize`` and ``resample`` from a config, in
    that documented order. This recipe is those three steps with torch_ecg's defaults
    (``resample`` has no default rate, so it is left out; the signal keeps its rate).
    torch_ecg applies the band-pass as a transfer function (``filtfilt(b, a)``), which at
    0.5 Hz and 500 Hz is ill-conditioned: its output moves ~2% of the peak from the
    Butterworth filter it designs (also in float64); this recipe applies that filter
    exactly (SOS, ``sosfiltfilt``). torch_ecg's tensor preprocessors
    (``torch_ecg/preprocessors``) are different methods again (an FFT mask band-pass, a
    mean-filter baseline).
    """
    return [
        {"name": "bandpass", "lowcut": 0.5, "highcut": 45.0},
        {"name": "baseline_remove", "window1": 0.2, "window2": 0.6},
        {"name": "normalize", "method": "z-score", "mean": 0.0, "std": 1.0},
    ]


RECIPES: dict[str, Callable[[], list]] = {
    "ecgfounder": ecgfounder,
    "st_mem": st_mem,
    "hubert_ecg": hubert_ecg,
    "ecg_fm": ecg_fm,
    "torch_ecg_default": torch_ecg_default,
}


def recipe_config(name: str, lead_names: Optional[Sequence[str]] = None) -> dict:
    """The pipeline config of recipe `name`; with `lead_names` (the records' leads), a
    first step selects the standard 12 leads in order. ValueError for an unknown name,
    with close matches."""
    if not isinstance(name, str) or name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}{did_you_mean(name, RECIPES)} "
                         f"(recipes: {', '.join(sorted(RECIPES))})")
    if lead_names is not None:
        lead_names = list(check_lead_names(lead_names, f"recipe {name!r}: lead_names",
                                           distinct=False))
    steps = RECIPES[name]()
    if lead_names is not None:
        steps.insert(0, {"name": "lead_select", "leads": list(STANDARD_LEADS)})
    return {"fs": None, "random": False, "steps": steps, "lead_names": lead_names}
