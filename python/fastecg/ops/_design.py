"""Filter designs as the ops use them: SOS validation (SciPy's rules), designs and their
initial conditions cached per (design, device), SciPy's padding rules, and the design
custom ops that let ``torch.compile`` trace a call whose band edges or fs change."""

from __future__ import annotations

import functools
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

from .._rows import PADTYPES
from .._spec import butter_sos, fir_taps
from ._cache import design_op, tensor_cache

__all__ = ["default_padlen", "extension_length", "check_longer_than_padding", "butter_sections",
           "butter_padlen"]


def _as_sos(sos: Union[np.ndarray, Tensor], device: torch.device) -> Tensor:
    """Validate like scipy.signal's _validate_sos; float64 on `device`. An array_like
    `sos` is validated once per design and cached. A tensor, and under torch.compile any
    `sos`, stays a tensor the graph reads when it runs (a NumPy array or a tensor is a
    graph input, a tuple of numbers a guarded constant), so a compiled function given
    another design filters with that design; its values are unknown while tracing, so
    only its shape is checked then."""
    if not isinstance(sos, Tensor) and not torch.compiler.is_compiling():
        return _sos_on_device(_sos_key(sos), str(device))
    if isinstance(sos, Tensor):
        _check_constant_sos(sos)
        _check_real(sos.is_complex(), "sos")
    sos_t = torch.as_tensor(sos, dtype=torch.float64, device=device)
    if sos_t.dim() == 1:  # one section, as SciPy's atleast_2d takes it
        sos_t = sos_t.unsqueeze(0)
    if sos_t.dim() != 2 or sos_t.shape[-1] != 6:
        raise ValueError(f"sos array must be shape (n_sections, 6), got {tuple(sos_t.shape)}")
    if not torch.compiler.is_compiling() and not bool((sos_t[:, 3] == 1).all()):
        raise ValueError("sos[:, 3] should be all ones")
    return sos_t


def _check_constant_sos(sos: Tensor) -> None:
    """The filter is a constant of these ops: no gradient flows to `sos`. Say so rather
    than return a result whose backward leaves ``sos.grad`` silently None."""
    if sos.requires_grad and torch.is_grad_enabled():
        raise ValueError("sos requires grad, but gradients with respect to the filter "
                         "coefficients are not supported (only with respect to x and zi); "
                         "pass sos.detach()")


def _sos_key(sos) -> tuple:
    if _is_design_tuple(sos):  # bandpass's designs: validated once per filter
        return _tuple_sos_key(sos)
    return _validated_key(sos)


def _is_design_tuple(sos) -> bool:
    """A tuple of tuples of plain numbers (bandpass's cached designs): hashed by value.
    Rows given as lists are unhashable, and tensors hash by identity (a cache keyed on
    them would miss an in-place change), so both are validated on every call."""
    return isinstance(sos, tuple) and all(
        isinstance(row, tuple) and all(type(v) in (float, int) for v in row) for row in sos)


@functools.lru_cache(maxsize=256)
def _tuple_sos_key(sos: tuple) -> tuple:
    return _validated_key(sos)


def _check_real(is_complex: bool, what: str) -> None:
    """A complex filter or state is refused (a cast would drop its imaginary part with
    only a warning)."""
    if is_complex:
        raise TypeError(f"{what} must be real: complex filters and states are not supported")


def _validated_key(sos) -> tuple:
    _check_real(np.iscomplexobj(np.asarray(sos)), "sos")
    arr = np.atleast_2d(np.asarray(sos, dtype=np.float64))
    if arr.ndim != 2 or arr.shape[1] != 6:
        raise ValueError(f"sos array must be shape (n_sections, 6), got {arr.shape}")
    if not (arr[:, 3] == 1).all():
        raise ValueError("sos[:, 3] should be all ones")
    return tuple(map(tuple, arr))


@tensor_cache(maxsize=256)
def _sos_on_device(key: tuple, device: str) -> Tensor:
    # Cached per (filter, device): no host-to-device copy per call.
    return torch.tensor(key, dtype=torch.float64, device=device)


@tensor_cache(maxsize=256)
def _zi_on_device(key: tuple, device: str) -> Tensor:
    from scipy.signal import sosfilt_zi

    return torch.tensor(sosfilt_zi(np.array(key)), dtype=torch.float64, device=device)


def check_longer_than_padding(x: Union[Tensor, int], padlen: int) -> None:
    """SciPy's rule: the signal (or a length) must be longer than the edge extension."""
    n = x if isinstance(x, int) else x.shape[-1]
    if n <= padlen:
        raise ValueError(f"The length of the input vector x must be greater than padlen, which "
                         f"is {padlen}: got {n} samples")


def extension_length(x: Tensor, padtype: Optional[str], padlen: Optional[int],
                     default: Optional[int]) -> int:
    """Samples of edge extension each side, by SciPy's filtfilt rules: none without a
    `padtype`, else `padlen` (`default` when None), at least 0 and below the signal's
    length. Raises ValueError naming the bad value."""
    if padtype not in PADTYPES:
        raise ValueError(f"Unknown value '{padtype}' given to padtype. padtype must be 'even', "
                         "'odd', 'constant', or None.")
    edge = 0 if padtype is None else (default if padlen is None else padlen)
    if edge is None:  # the design's default, found from its values when the op runs
        return -1
    if isinstance(edge, (bool, float)):
        raise ValueError(f"padlen must be an integer, got {padlen!r}")
    if edge < 0:
        raise ValueError(f"padlen must be >= 0, got {edge}")
    check_longer_than_padding(x, edge)
    return edge


def default_padlen(sos: Union[np.ndarray, Tensor]) -> int:
    """SciPy's default padding of sosfiltfilt: ``3 * (2 * n_sections + 1 - min(#b2 == 0,
    #a2 == 0))`` (27 for a 4th-order Butterworth band-pass)."""
    arr = np.asarray(sos.detach().cpu() if isinstance(sos, Tensor) else sos, dtype=np.float64)
    arr = np.atleast_2d(arr)
    n_sections = arr.shape[0]
    zeros = min(int((arr[:, 2] == 0).sum()), int((arr[:, 5] == 0).sum()))
    return 3 * (2 * n_sections + 1 - zeros)


def _zi_for(sos, sos_t: Tensor) -> Tensor:
    key = _sos_key(sos.detach().cpu().numpy() if isinstance(sos, Tensor) else sos)
    return _zi_on_device(key, str(sos_t.device))


@torch.library.custom_op("fastecg::sosfilt_zi", mutates_args=())
def _sosfilt_zi(sos: Tensor) -> Tensor:
    """``scipy.signal.sosfilt_zi(sos)``, float64 on sos's device (an op: under
    torch.compile `sos` may be a graph input, whose values only exist when it runs)."""
    from scipy.signal import sosfilt_zi

    zi = sosfilt_zi(sos.detach().cpu().numpy())
    return torch.as_tensor(zi, dtype=torch.float64).to(sos.device)


@_sosfilt_zi.register_fake
def _(sos):
    return sos.new_empty(sos.shape[0], 2)


@functools.lru_cache(maxsize=256)
def _tuple_padlen(sos: tuple) -> int:
    return default_padlen(sos)


# Filter designs come from SciPy, which torch.compile cannot trace: design_op makes each
# a cache lookup per (design, device) in eager mode and a custom op of the graph under
# torch.compile, so the band edges and fs may be symbolic (a compiled function called
# with another fs, or dynamic=True, does not need them as constants).
def _butter_fake(order, lowcut, highcut, fs, device):
    n_sections = butter_sections(order, lowcut, highcut)
    return (torch.empty(n_sections, 6, dtype=torch.float64, device=device),
            torch.empty(n_sections, 2, dtype=torch.float64, device=device))


@design_op("fastecg::butter_design", _butter_fake)
def butter_design(order: int, lowcut: Optional[float], highcut: Optional[float], fs: float,
                  device: str) -> tuple[Tensor, Tensor]:
    """(sos, sosfilt_zi(sos)) of ``butter_sos(order, lowcut, highcut, fs)``, float64 on
    `device`."""
    key = _butter_key(order, lowcut, highcut, fs)
    return _sos_on_device(key, device), _zi_on_device(key, device)


def butter_sections(order: int, lowcut: Optional[float], highcut: Optional[float]) -> int:
    """Sections of SciPy's Butterworth design: a band-pass has 2 * order poles (order
    sections), a low- or high-pass order poles (an odd one alone in a section)."""
    return order if lowcut is not None and highcut is not None else (order + 1) // 2


def butter_padlen(order: int, lowcut: Optional[float], highcut: Optional[float]) -> int:
    """:func:`default_padlen` of the Butterworth design without designing it: only an
    odd-order low- or high-pass has a first-order section (b2 == a2 == 0)."""
    single_edge = lowcut is None or highcut is None
    return 3 * (2 * butter_sections(order, lowcut, highcut) + 1 - int(single_edge and order % 2))


@functools.lru_cache(maxsize=128)
def _butter_key(order, lowcut, highcut, fs) -> tuple:
    return tuple(map(tuple, butter_sos(order, lowcut, highcut, fs).tolist()))


def _fir_fake(numtaps, lowcut, highcut, fs, device, dtype):
    return torch.empty(numtaps, dtype=dtype, device=device)


@design_op("fastecg::fir_design", _fir_fake)
def fir_design(numtaps: int, lowcut: Optional[float], highcut: Optional[float], fs: float,
               device: str, dtype: torch.dtype) -> Tensor:
    """``fir_taps(numtaps, lowcut, highcut, fs)`` in `dtype` on `device`."""
    return torch.tensor(fir_taps(numtaps, lowcut, highcut, fs), dtype=dtype, device=device)
