"""CLOCS (Kiyasseh, Zhu & Clifton, ICML 2021): contrastive learning of cardiac signals
across space (leads), time (segments) and patients, written from the paper."""

from __future__ import annotations

import hashlib
import math
import numbers
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from fastecg._spec import check_lead_names
from fastecg.registry import SSL

from ._distributed import (gather_no_grad, gather_with_grad, global_indices, mean_over_ranks,
                           rank_and_world)
from .base import BaseContrastiveLearner, check_global_batch, loss_in_float32, signal_of

__all__ = ["CLOCS", "clocs_loss", "cut_segments", "CLOCS_VARIANTS"]

CLOCS_VARIANTS = ("cmsc", "cmlc", "cmsmlc")
_SEGMENTS = {"cmsc": 2, "cmlc": 1, "cmsmlc": 2}


def cut_segments(x: Tensor, n_segments: int, segment_len: int,
                 start: Optional[Tensor] = None) -> Tensor:
    """`n_segments` adjacent, non-overlapping segments of `segment_len` samples of each
    record, from ``start`` on, in one gather: ``(B, n_leads, n_segments, segment_len)``.

    Parameters
    ----------
    x : Tensor, shape (B, n_leads, n_samples)
    n_segments, segment_len : int
        ``n_segments * segment_len <= n_samples``.
    start : Tensor of int64, shape (B,), optional
        First sample per record, in ``[0, n_samples - n_segments * segment_len]``; 0 for
        every record by default.

    Raises
    ------
    ValueError
        If the segments together are longer than the record.

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(10.0).view(1, 1, 10)
    >>> cut_segments(x, 2, 4, torch.tensor([1]))[0, 0]
    tensor([[1., 2., 3., 4.],
            [5., 6., 7., 8.]])
    """
    b, c, n = x.shape
    span = n_segments * segment_len
    if span > n:
        raise ValueError(f"clocs: {n_segments} segments of segment_len={segment_len} samples "
                         f"({span}) are longer than the record ({n} samples)")
    if start is None:
        return x[..., :span].reshape(b, c, n_segments, segment_len)
    idx = start.to(x.device).view(b, 1, 1) + torch.arange(span, device=x.device)
    return x.gather(2, idx.expand(b, c, span)).view(b, c, n_segments, segment_len)


@loss_in_float32
def clocs_loss(z: Tensor, temperature: float, patient_ids: Optional[Tensor] = None) -> Tensor:
    """CLOCS's loss over views of a batch, patient-aware when `patient_ids` are given.

    For views ``A != B`` the similarity of record ``i`` in view A to record ``k`` in
    view B is ``s = cos(z_i^A, z_k^B) / temperature`` and

    .. math::

        \\ell^{A,B} = -\\mathbb E_{(i,k) \\in P}
        \\log \\frac{e^{s(z_i^A, z_k^B)}}{\\sum_j e^{s(z_i^A, z_j^B)}}, \\qquad
        \\mathcal L = \\mathbb E_{\\{A,B\\}} \\left[\\ell^{A,B} + \\ell^{B,A}\\right]

    where ``P`` holds the pairs of records of the same patient (each record with itself
    when no ids are given), the denominator runs over the records of the (global)
    batch in view B, and the outer mean over the unordered pairs of distinct views.

    Parameters
    ----------
    z : Tensor, shape (n_views, n, D)
        Projections of every view of this rank's `n` records.
    temperature : float
    patient_ids : Tensor of int64, shape (n,), optional
        Records with equal ids are positives of each other.

    Returns
    -------
    Tensor
        Scalar. Under ``torch.distributed`` (world > 1) the projections and ids are
        gathered from every rank; the value is the global batch's loss, and the
        gradient (after DistributedDataParallel's mean) that of the global loss.

    Examples
    --------
    >>> import torch
    >>> z = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]])
    >>> round(clocs_loss(z, 1.0).item(), 4)  # 2 * -log(e / (e + 1))
    0.6265
    """
    if z.dim() != 3 or z.shape[0] < 2:
        raise ValueError(f"clocs_loss: z must be (n_views >= 2, n, D), got {tuple(z.shape)}")
    m, n, _ = z.shape
    check_global_batch(n, "clocs")
    _, world = rank_and_world()
    # (z is float32 or float64 here, and autocast off: exact pair counts, exact logits)
    local = nn.functional.normalize(z, dim=-1)
    keys = nn.functional.normalize(gather_with_grad(z.transpose(0, 1)), dim=-1)  # (N, M, D)
    if patient_ids is None:
        ids = global_indices(n, z.device)
    else:
        ids = torch.as_tensor(patient_ids, device=z.device).reshape(-1).long()
        if ids.numel() != n:
            raise ValueError(f"clocs: {ids.numel()} patient ids for a batch of {n} records")
    all_ids = gather_no_grad(ids)
    pos = (ids[:, None] == all_ids[None, :]).to(z.dtype)                       # (n, N)
    n_pos = (all_ids[:, None] == all_ids[None, :]).sum().to(z.dtype)           # global |P|
    sim = torch.einsum("aid,kbd->aibk", local, keys) / temperature            # (M, n, M, N)
    logp = sim.log_softmax(-1)
    per_pair = -(logp * pos[None, :, None, :]).sum((1, 3)) * (world / n_pos)   # (M, M)
    off_diag = ~torch.eye(m, dtype=torch.bool, device=z.device)
    # E over unordered pairs of (l^AB + l^BA) = 2 x the mean over ordered pairs.
    return mean_over_ranks(2 * per_pair[off_diag].mean())


def _hash_id(s: str) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "little",
                          signed=True)


def _patient_tensor(ids: Any, device) -> Tensor:
    """Patient ids as int64: integers as given, other values (strings) hashed through
    ``str`` (stable across processes, unlike ``hash``), so that ids can be gathered
    across ranks. A missing id (None, NaN, "") makes the record its own patient, as in
    :func:`~fastecg.ssl.evaluate.train_test_indices`: records without one are not
    positives of each other."""
    if isinstance(ids, Tensor) and not ids.is_floating_point():
        return ids.to(device).reshape(-1).long()
    ids = ids.reshape(-1).tolist() if isinstance(ids, Tensor) else list(ids)
    records = global_indices(len(ids)).tolist()
    out = []
    for v, record in zip(ids, records):
        v = v.item() if isinstance(v, Tensor) else v
        if v is None or (isinstance(v, str) and v == "") or \
                (isinstance(v, numbers.Real) and math.isnan(v)):
            out.append(_hash_id(f"\0record {record}"))  # its own patient
        elif isinstance(v, numbers.Integral) or (isinstance(v, numbers.Real) and
                                                 float(v).is_integer()):
            out.append(int(v))
        else:
            out.append(_hash_id(str(v)))
    return torch.tensor(out, dtype=torch.long, device=device)


@SSL.register("clocs")
class CLOCS(BaseContrastiveLearner):
    """CLOCS: contrastive multi-segment (CMSC), multi-lead (CMLC) coding, or both.

    * ``cmsc``: two adjacent non-overlapping segments of `segment_len` samples of one
      record (cut at a random start in one gather) are positives; the encoder sees all
      leads of a segment.
    * ``cmlc``: the leads of one record (`leads`, all by default) are positives of
      each other; the encoder sees single-lead input (``in_channels=1``).
    * ``cmsmlc``: both: every (segment, lead) of a record is a view, all its views are
      positives of each other.

    Negatives are the other records of the global batch in the other view. With patient
    ids (``pretrain_step(batch, patient_ids=...)``, or a ``"patient_id"`` entry of a
    dict batch) every record of the same patient is a positive too; a record whose id
    is missing (None, NaN, "") is its own patient. See :func:`clocs_loss`.

    Parameters
    ----------
    encoder : str or dict
        Any :data:`fastecg.registry.BACKBONES` entry.
    n_leads, seq_len : int
        Input leads and (at most) samples.
    variant : {"cmsc", "cmlc", "cmsmlc"}
    segment_len : int, optional
        Samples per segment; ``seq_len // 2`` for CMSC/CMSMLC (the paper splits each
        record in two), ``seq_len`` for CMLC.
    leads : sequence of int or str, optional
        Leads used as views in CMLC/CMSMLC (indices or names; the paper uses II, V2,
        aVL, aVR); all by default.
    proj_dim : int
    temperature : float
        0.1, as the paper.
    fs, lead_names, preprocess
        The input contract (500 Hz, the standard leads, no preprocessing).

    Raises
    ------
    ValueError
        An unknown variant or lead; segments longer than `seq_len` (at construction) or
        than the record (at a step); a global batch of one record; input with another
        number of leads or more than `seq_len` samples.

    Notes
    -----
    :meth:`embed` of a single-lead encoder (CMLC, CMSMLC) averages its representation
    of every lead of the input. A projection head follows the encoder (the paper scores
    the encoder's output directly).

    References
    ----------
    .. [1] D. Kiyasseh, T. Zhu, D. A. Clifton, "CLOCS: Contrastive Learning of Cardiac
       Signals Across Space, Time, and Patients", ICML 2021.

    Examples
    --------
    >>> import torch
    >>> enc = {"name": "resnet18", "widths": [8, 8, 8, 8], "stem_channels": 8}
    >>> model = CLOCS(enc, n_leads=3, seq_len=400, variant="cmsmlc", fs=100.0)
    >>> model.pretrain_step(torch.randn(4, 3, 400), patient_ids=[0, 0, 1, 2])["loss"].ndim
    0
    >>> model.embed(torch.randn(2, 3, 400)).shape
    torch.Size([2, 8])
    """

    method_name = "clocs"

    def __init__(self, encoder: Union[str, dict] = "resnet18", n_leads: int = 12,
                 seq_len: int = 5000, variant: str = "cmsc", segment_len: Optional[int] = None,
                 leads: Optional[Sequence[Union[int, str]]] = None, proj_dim: int = 128,
                 temperature: float = 0.1, fs: float = 500.0,
                 lead_names: Optional[Sequence[str]] = None, preprocess: Any = None):
        if variant not in CLOCS_VARIANTS:
            raise ValueError(f"clocs: variant must be one of {CLOCS_VARIANTS}, got {variant!r}")
        single_lead = variant != "cmsc"
        super().__init__(encoder, n_leads, proj_dim, temperature,
                         in_channels=1 if single_lead else n_leads)
        contract = self._set_contract(seq_len, fs, lead_names, preprocess)
        self.variant, self.single_lead = variant, single_lead
        self.n_segments = _SEGMENTS[variant]
        self.segment_len = seq_len // self.n_segments if segment_len is None else segment_len
        if isinstance(self.segment_len, bool) or not isinstance(self.segment_len, int) or \
                self.segment_len < 1:
            raise ValueError(f"clocs: segment_len must be a positive int, got {segment_len!r}")
        if self.n_segments * self.segment_len > seq_len:
            raise ValueError(f"clocs: {self.n_segments} segments of segment_len="
                             f"{self.segment_len} samples are longer than seq_len={seq_len}")
        self.lead_index = self._lead_index(leads)
        if single_lead and len(self.lead_index) * self.n_segments < 2:
            raise ValueError(f"clocs: {variant} needs at least 2 views; got leads={leads!r}")
        if leads is not None:
            leads = list(leads)
        self._record(locals(), contract)

    def _lead_index(self, leads) -> list[int]:
        if leads is None:
            return list(range(self.n_leads))
        if isinstance(leads, (str, bytes)):  # not its letters: the validator's TypeError
            check_lead_names(leads, "clocs: leads")
        out = []
        for lead in leads:
            if isinstance(lead, str):
                if lead not in self.lead_names:
                    raise ValueError(f"clocs: lead {lead!r} is not among the model's leads "
                                     f"{self.lead_names}")
                out.append(self.lead_names.index(lead))
            elif isinstance(lead, int) and not isinstance(lead, bool) and \
                    0 <= lead < self.n_leads:
                out.append(lead)
            else:
                raise ValueError(f"clocs: lead {lead!r} is not a lead name or an index in "
                                 f"[0, {self.n_leads})")
        if len(set(out)) != len(out) or not out:
            raise ValueError(f"clocs: leads must be distinct and non-empty, got {leads!r}")
        return out

    def forward_features(self, x: Tensor) -> Tensor:
        """Encoder features ``(B, D, L)``; a single-lead encoder sees each lead on its own
        and its features of all leads are concatenated along time, ``(B, D, C * L)``."""
        if not self.single_lead:
            return self.encoder.forward_features(x)
        b, c, n = x.shape
        f = self.encoder.forward_features(x.reshape(b * c, 1, n))
        return f.view(b, c, f.shape[1], f.shape[2]).transpose(1, 2).reshape(b, f.shape[1], -1)

    def views(self, x: Tensor, generator: Optional[torch.Generator] = None, *,
              seed: Optional[int] = None, epoch: int = 0, indices: Any = None) -> Tensor:
        """The views of `x` ``(B, n_leads, n_samples)``: ``(n_views, B, C_in,
        segment_len)`` with ``C_in`` the encoder's input channels; the segments start
        at a random sample per record (one gather).

        A record's start is a function of ``(seed, epoch, index)`` only (Philox, keyed
        as an augmenter's draws), so the same records give the same segments whatever
        the batch split. Without `seed` one is drawn from `generator`, else from
        torch's global CPU generator, so unseeded calls differ; without `indices` the
        records are numbered by their position in the global batch.
        """
        from fastecg.augmenters.base import make_keys

        b, _, n = x.shape
        span = self.n_segments * self.segment_len
        if span > n:
            raise ValueError(f"clocs: {self.n_segments} segments of segment_len="
                             f"{self.segment_len} samples ({span}) are longer than the record "
                             f"({n} samples)")
        if seed is None and generator is not None:  # (a generator on any device)
            seed = int(torch.randint(0, 2 ** 32, (), generator=generator,
                                     device=generator.device))
        if indices is None and rank_and_world()[1] > 1:
            indices = global_indices(b, x.device)
        keys = make_keys(b, x.device, seed, epoch, indices)
        room = n - span
        start = (keys.uniform(0)[:, 0] * (room + 1)).long().clamp_max(room)
        seg = cut_segments(x, self.n_segments, self.segment_len, start)  # (B, C, S, L)
        if not self.single_lead:
            return seg.permute(2, 0, 1, 3)
        if len(self.lead_index) != self.n_leads:
            seg = seg[:, self.lead_index]
        views = seg.permute(2, 1, 0, 3)                                 # (S, C', B, L)
        return views.reshape(-1, b, 1, self.segment_len)

    def pretrain_step(self, batch: Any, patient_ids: Any = None,
                      generator: Optional[torch.Generator] = None, *,
                      seed: Optional[int] = None, epoch: int = 0, indices: Any = None) -> dict:
        """``{"loss": ...}`` of a batch ``(B, n_leads, n_samples)``, ``(signal, ...)``
        or ``{"signal": ..., "patient_id": ...}``; all views through the encoder in one
        call. `generator`, `seed`, `epoch` and `indices` key the segments' starts (see
        :meth:`views`)."""
        x = signal_of(batch)
        if patient_ids is None and isinstance(batch, dict):
            patient_ids = batch.get("patient_id")
        self._check_signal(x)
        ids = None if patient_ids is None else _patient_tensor(patient_ids, x.device)
        v = self.views(x, generator, seed=seed, epoch=epoch, indices=indices)
        m, b = v.shape[:2]
        z = self.projector(self.encoder.forward_features(v.flatten(0, 1)).mean(-1))
        return {"loss": clocs_loss(z.view(m, b, -1), self.temperature, ids)}
