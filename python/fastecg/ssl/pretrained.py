"""Saved models carry their input contract.

``save_pretrained(model, dir)`` writes ``model.safetensors`` (weights, never pickle) and
``config.json``: the registry entry and arguments that rebuild the model, and the
preprocessing contract it was trained with (sampling rate, lead names and order, signal
length, the PreprocManager config). ``from_pretrained(dir)`` rebuilds both.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
import uuid
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from .._spec import check_lead_names

__all__ = ["Contract", "save_pretrained", "from_pretrained", "read_config",
           "WEIGHTS_NAME", "CONFIG_NAME"]

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "fastecg-pretrained"
FORMAT_VERSION = 1
_REGISTRIES = ("SSL", "MODELS", "BACKBONES")
# Written into both files of a save: a config.json and a model.safetensors of different
# saves (an overwrite interrupted between the two, two processes saving to one folder)
# never load as one model.
SAVE_ID_KEY = "fastecg_save_id"
# Constructor arguments an SSL method builds its input contract from.
_CONTRACT_ARGS = ("fs", "lead_names", "seq_len", "preprocess")
# safetensors' names of the floating dtypes a model's weights keep on loading.
_FLOAT_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
                 "BF16": torch.bfloat16}


class Contract:
    """How input must be prepared for a model: ``fs`` (Hz), ``lead_names`` (order
    matters), ``siglen`` (samples), and a PreprocManager config (``steps``) that turns
    a raw record at any rate into that input.

    ``preprocess`` may be a recipe name (``"st_mem"``), a PreprocManager, a config
    dict as ``PreprocManager.to_config`` writes, or None (input used as given).
    """

    def __init__(self, fs: Optional[float] = None, lead_names: Optional[Sequence[str]] = None,
                 siglen: Optional[int] = None, preprocess: Any = None):
        self.fs = None if fs is None else float(fs)
        self.lead_names = None if lead_names is None else \
            list(check_lead_names(lead_names, "Contract: lead_names"))
        self.siglen = None if siglen is None else int(siglen)
        self.preprocess = _preproc_config(preprocess)
        self._manager = None

    def to_dict(self) -> dict:
        return {"fs": self.fs, "lead_names": self.lead_names, "siglen": self.siglen,
                "preprocess": self.preprocess}

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "Contract":
        d = d or {}
        unknown = set(d) - {"fs", "lead_names", "siglen", "preprocess"}
        if unknown:
            raise ValueError(f"contract: unknown keys {sorted(unknown)}")
        return cls(**d)

    def manager(self):
        """The PreprocManager of the contract (built once), or None."""
        if self.preprocess is None:
            return None
        if self._manager is None:
            from fastecg.preprocessors import PreprocManager
            self._manager = PreprocManager.from_config(self.preprocess)
        return self._manager

    def lead_order(self, lead_names: Optional[Sequence[str]]) -> Optional[list]:
        """Indices that put records whose leads are `lead_names` (in order) into the
        contract's lead order (a ``lead_select``), or None where nothing is to move:
        the same order, or either side without lead names.

        Raises
        ------
        ValueError
            The records' leads are not the contract's (some missing or extra): a model
            fed other leads than it was trained on learns or predicts from the wrong
            signals without any error in shape.

        Examples
        --------
        >>> Contract(lead_names=["I", "II", "V1"]).lead_order(["V1", "I", "II"])
        [1, 2, 0]
        """
        return _lead_order(lead_names, self.lead_names)

    def input_order(self, lead_names: Optional[Sequence[str]]) -> Optional[list]:
        """The lead indices :meth:`apply` selects first: records whose leads are
        `lead_names` put in the order the pipeline takes (its own ``lead_names`` where
        its config has them, else the contract's), or None where nothing is to move."""
        pm = self.manager()
        into = pm.lead_names if pm is not None and pm.lead_names is not None else \
            self.lead_names
        return _lead_order(lead_names, None if into is None else list(into))

    def apply(self, raw: Tensor, fs: float,
              lead_names: Optional[Sequence[str]] = None) -> Tensor:
        """Raw ``(..., n_leads, n_samples)`` at `fs` -> the model's input. Given the
        records' `lead_names`, their leads are first put in the order the pipeline
        takes: the pipeline's own ``lead_names`` where its config has them (a recipe
        built for records in another order, whose ``lead_select`` then gives the
        contract's order), else the contract's (ValueError if they are other leads; see
        :meth:`lead_order`)."""
        pm = self.manager()
        order = self.input_order(lead_names)
        if order is not None:
            raw = raw.index_select(-2, torch.tensor(order, device=raw.device))
        sig, out_fs = (raw, float(fs)) if pm is None else pm(raw, float(fs))
        if self.fs is not None and abs(out_fs - self.fs) > 1e-9:
            raise ValueError(f"input at {out_fs:g} Hz after preprocessing, but the model "
                             f"takes {self.fs:g} Hz: resample first")
        if self.siglen is not None and sig.shape[-1] != self.siglen:
            raise ValueError(f"input has {sig.shape[-1]} samples after preprocessing, the "
                             f"model expects {self.siglen}")
        if self.lead_names is not None and sig.shape[-2] != len(self.lead_names):
            raise ValueError(f"input has {sig.shape[-2]} leads, the model expects "
                             f"{len(self.lead_names)} ({', '.join(self.lead_names)})")
        return sig

    def __eq__(self, other) -> bool:
        return isinstance(other, Contract) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Contract({self.to_dict()!r})"


def _lead_order(lead_names: Optional[Sequence[str]], into: Optional[list]) -> Optional[list]:
    """Indices that put leads `lead_names` into the order `into` (Contract.lead_order)."""
    if lead_names is None or into is None:
        return None
    lead_names = list(check_lead_names(lead_names, "the records' lead_names", distinct=False))
    if lead_names == into:
        return None
    if sorted(lead_names) != sorted(into):
        missing = [n for n in into if n not in lead_names]
        extra = [n for n in lead_names if n not in into]
        raise ValueError(f"the records' leads ({', '.join(lead_names)}) are not the "
                         f"model's ({', '.join(into)}): missing {missing or 'none'}, not "
                         f"expected {extra or 'none'}")
    return [lead_names.index(n) for n in into]


def _preproc_config(preprocess: Any) -> Optional[dict]:
    if preprocess is None:
        return None
    from fastecg.preprocessors import PreprocManager

    if isinstance(preprocess, str):
        preprocess = PreprocManager.from_recipe(preprocess)
    if hasattr(preprocess, "to_config"):
        preprocess = preprocess.to_config()
    if not isinstance(preprocess, (dict, list, tuple)):
        raise ValueError(f"contract: preprocess must be a recipe name, a PreprocManager or "
                         f"its config (a dict or a list of steps), got "
                         f"{type(preprocess).__name__}")
    # The rate comes with each call (pm(raw, fs)): a config pinned to one input rate
    # would refuse records recorded at another. Built here, so that a config that does
    # not build (a misspelt step) fails when the model is made, not when a saved
    # checkpoint is first used; kept in the manager's own canonical form.
    if isinstance(preprocess, dict):
        preprocess = {**preprocess, "fs": None}
    config = PreprocManager.from_config(preprocess).to_config()
    return json.loads(json.dumps({**config, "fs": None}))


def _atomic_write(path: pathlib.Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_pretrained(model: nn.Module, directory: Union[str, os.PathLike],
                    config: Optional[dict] = None, contract: Optional[Contract] = None,
                    registry: Optional[str] = None) -> pathlib.Path:
    """Write ``model.safetensors`` and ``config.json`` into `directory`.

    Parameters
    ----------
    model : nn.Module
        An SSL method (its ``config`` and ``contract`` are used) or any model built
        through a registry (pass `config`: the dict with ``"name"`` that rebuilds it).
    config : dict, optional
        Registry config; defaults to ``model.config``.
    contract : Contract, optional
        Defaults to ``model.contract``.
    registry : {"SSL", "MODELS", "BACKBONES"}, optional
        Defaults to ``model.registry_name`` or ``"MODELS"``.

    Notes
    -----
    A ``torch.compile`` or (Distributed)DataParallel wrapper is saved as the module it
    wraps. Each file is written to a temporary name and renamed, and both carry one id
    of the save: a folder whose files come from different saves (an overwrite
    interrupted between the two) raises ValueError in :func:`from_pretrained`.
    """
    from safetensors.torch import save_model

    from fastecg.models.grad_cam import _unwrapped

    # The module itself, not a torch.compile or DDP wrapper, whose state-dict keys
    # ("_orig_mod.", "module.") the rebuilt model would not have.
    model = _unwrapped(model)
    config = dict(config if config is not None else getattr(model, "config", None) or {})
    if "name" not in config:
        raise ValueError("save_pretrained: need the registry config (a dict with 'name') that "
                         "rebuilds the model; pass config=...")
    registry = registry or getattr(model, "registry_name", "MODELS")
    if registry not in _REGISTRIES:
        raise ValueError(f"save_pretrained: registry must be one of {_REGISTRIES}")
    meta_names = [k for k, v in model.state_dict().items() if v.is_meta]
    if meta_names:
        raise ValueError(f"save_pretrained: the model has tensors on the meta device (no "
                         f"data to save): {', '.join(meta_names[:3])}")
    contract = contract if contract is not None else getattr(model, "contract", None)
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_id = uuid.uuid4().hex
    meta = {"format": FORMAT, "version": FORMAT_VERSION, "registry": registry,
            "model": config, "contract": contract.to_dict() if contract else None,
            "save_id": save_id}
    text = json.dumps(meta, indent=2)  # fails here, before any file is written, if not JSON
    _atomic_write(directory / WEIGHTS_NAME,
                  lambda p: save_model(model, p, metadata={SAVE_ID_KEY: save_id}))
    _atomic_write(directory / CONFIG_NAME, lambda p: pathlib.Path(p).write_text(text))
    return directory


def read_config(directory: Union[str, os.PathLike]) -> dict:
    """The ``config.json`` of a saved model, checked."""
    path = pathlib.Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no {CONFIG_NAME}: not a fastecg "
                                f"save_pretrained directory")
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}): a damaged save_pretrained "
                         f"directory") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{path} is not a fastecg checkpoint (format {fmt!r})")
    if not isinstance(meta.get("version"), int) or meta["version"] > FORMAT_VERSION:
        raise ValueError(f"{path} has format version {meta.get('version')!r}; this fastecg "
                         f"reads up to {FORMAT_VERSION}: upgrade fastecg")
    model = meta.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise ValueError(f"{path}: 'model' must be the registry config (a dict with a "
                         f"'name'), got {model!r}")
    if meta.get("registry") not in _REGISTRIES:
        raise ValueError(f"{path}: unknown registry {meta.get('registry')!r} (one of "
                         f"{_REGISTRIES})")
    if meta.get("contract") is not None and not isinstance(meta["contract"], dict):
        raise ValueError(f"{path}: 'contract' must be a dict or null, got "
                         f"{type(meta['contract']).__name__}")
    return meta


def _weights_header(path: pathlib.Path) -> tuple[dict, dict]:
    """``(metadata, {name: safetensors dtype string})`` of a weights file, checked."""
    from safetensors import safe_open

    if not path.is_file():
        raise FileNotFoundError(f"{path.parent} holds {CONFIG_NAME} but no {WEIGHTS_NAME}: "
                                f"an incomplete save_pretrained directory")
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}), {k: f.get_slice(k).get_dtype() for k in f.keys()}
    except Exception as err:  # safetensors' own error type, from its Rust core
        raise ValueError(f"{path} is not a readable safetensors file ({err})") from None


def from_pretrained(directory: Union[str, os.PathLike], expect: Optional[str] = None,
                    map_location: Union[str, torch.device] = "cpu",
                    dtype: Optional[torch.dtype] = None, **overrides) -> nn.Module:
    """Rebuild a model saved by :func:`save_pretrained`, weights loaded, contract attached
    (``model.contract``).

    Parameters
    ----------
    directory : str or path
        A folder written by :func:`save_pretrained`.
    expect : str, optional
        Registry name the caller needs (``"st_mem"``); a checkpoint of another model
        raises ValueError naming both.
    map_location : str or torch.device
        Device the returned model is on (``"meta"`` gives its structure, no data).
    dtype : torch.dtype, optional
        Floating-point dtype of the returned model (``torch.float32`` to fine-tune a
        bfloat16 checkpoint in full precision). By default the floating-point weights
        and buffers keep the dtype each was saved in: a float64 or bfloat16 model loads
        as one.
    overrides
        Constructor arguments to change (e.g. ``mask_ratio``); the weights must still fit.
        The saved contract is attached, unless an override changes what the model builds
        its own contract from (``fs``, ``lead_names``, ``seq_len``, ``preprocess``): then
        the model keeps its own.

    Notes
    -----
    Nothing in the folder is executed: the weights are safetensors and the config JSON.
    """
    from safetensors.torch import load_model

    from fastecg import registry as reg

    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"from_pretrained: dtype must be a floating-point torch.dtype, got "
                        f"{dtype!r}")
    meta = read_config(directory)
    config = dict(meta["model"])
    if expect is not None and config.get("name") != expect:
        raise ValueError(f"{directory} holds a {meta['registry']} {config.get('name')!r} "
                         f"checkpoint, not {expect!r}")
    weights = pathlib.Path(directory) / WEIGHTS_NAME
    file_meta, dtypes = _weights_header(weights)
    # A weights file without an id was written by other tools (a conversion): only two
    # different ids are two saves.
    if SAVE_ID_KEY in file_meta and file_meta[SAVE_ID_KEY] != meta.get("save_id"):
        raise ValueError(f"{directory}: {WEIGHTS_NAME} and {CONFIG_NAME} come from different "
                         f"saves (an interrupted or concurrent save_pretrained): save the "
                         f"model again")
    model = getattr(reg, meta["registry"]).build({**config, **overrides})
    # Floating tensors take the saved precision (a float64 or bfloat16 model loads as
    # such, not rounded into the constructor's float32); keyed by tensor, so tied
    # weights are cast once and stay tied.
    cast = {}
    for name, t in model.state_dict(keep_vars=True).items():
        saved = _FLOAT_DTYPES.get(dtypes.get(name))
        if saved is not None and t.is_floating_point() and t.dtype != saved:
            cast[id(t)] = saved
    if cast:
        model._apply(lambda t: t.to(cast[id(t)]) if id(t) in cast else t)
    load_model(model, str(weights), strict=True, device="cpu")
    if dtype is None:
        model.to(map_location)
    else:
        model.to(map_location, dtype)
    contract = meta.get("contract")
    contract = None if contract is None else Contract.from_dict(contract)
    # An override of what a method builds its contract from (from_pretrained(dir,
    # preprocess=None)) makes the model's own contract the one that holds: the saved
    # one describes the input of the model as it was saved.
    if getattr(model, "contract", None) is None or not set(overrides) & set(_CONTRACT_ARGS):
        model.contract = contract
    return model
