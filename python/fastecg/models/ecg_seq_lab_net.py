"""ECG_SEQ_LAB_NET: per-sample labelling (torch_ecg's sequence labelling network).

``backbone -> [RNN] -> [attention] -> per-step classifier -> upsampling to the input
length``; output ``(batch, n_samples, n_classes)`` logits.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from ..registry import MODELS
from ._downstream import DownstreamModel, SequenceLabellingOutput, check_upsample_mode
from ._head import MLPHead

__all__ = ["ECG_SEQ_LAB_NET"]


@MODELS.register("ECG_SEQ_LAB_NET")
class ECG_SEQ_LAB_NET(DownstreamModel):
    """Sequence labelling: one logit vector per time step.

    Parameters
    ----------
    classes : list of str or int
        Class names of each time step (e.g. ``["N", "S", "V"]`` beats, or wave types).
    n_leads : int, optional
        Leads of the input, ``(batch, n_leads, n_samples)``.
    config : dict, optional
        ``backbone``, ``rnn``, ``attention``, ``dropout``, ``clf_hidden`` as in
        :class:`~fastecg.models.ECG_CRNN` (default ``rnn`` here is a bidirectional
        LSTM, as in torch_ecg), plus

        ``recover_length``
            Upsample the per-step logits to the input length (default ``True``, so that
            the output lines up with per-sample labels; torch_ecg's default is
            ``False``); ``False`` leaves them at the backbone's resolution.
        ``upsample_mode``
            ``"linear"`` (default) or ``"nearest"``.
    **kwargs
        Override ``config`` keys.

    Examples
    --------
    >>> import torch
    >>> from fastecg.models import ECG_SEQ_LAB_NET
    >>> model = ECG_SEQ_LAB_NET(["N", "S", "V"], backbone="resnet")
    >>> model(torch.randn(2, 12, 2000)).shape
    torch.Size([2, 2000, 3])
    """

    DEFAULT_CONFIG = {"backbone": "resnet",
                      "rnn": {"name": "lstm", "hidden_size": 128, "bidirectional": True},
                      "attention": None, "dropout": 0.2, "clf_hidden": (),
                      "recover_length": True, "upsample_mode": "linear"}

    def __init__(self, classes: Union[Sequence[str], int], n_leads: int = 12,
                 config: Optional[Mapping[str, Any]] = None, **kwargs):
        super().__init__()
        cfg = self._setup(classes, n_leads, config, kwargs)
        self.upsample_mode = check_upsample_mode(cfg["upsample_mode"])
        self.recover_length = bool(cfg["recover_length"])
        self.num_features = self._build_encoder(cfg)
        self.clf = MLPHead(self.num_features, cfg["clf_hidden"], self.n_classes,
                           float(cfg["dropout"]))

    def reset_classifier(self, classes: Union[Sequence[str], int]) -> None:
        """A fresh last classifier layer for ``classes`` (names or a number; hidden layers
        kept), as timm's ``reset_classifier``; ``0`` removes it, so each time step gets
        the ``clf.pre_logits_features`` features it would have classified."""
        self._set_classes(classes, allow_none=True)
        self.clf.reset(self.n_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(batch, num_features, L_out)`` at the backbone's resolution."""
        return self._encode(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(batch, n_samples, n_classes)`` (``L_out`` instead of ``n_samples``
        when ``recover_length`` is off)."""
        n_samples = x.shape[-1]
        logits = self.clf(self.forward_features(x).transpose(1, 2))   # (batch, L_out, n)
        if not self.recover_length:
            return logits
        logits = F.interpolate(logits.transpose(1, 2), size=n_samples,
                               mode=self.upsample_mode)
        return logits.transpose(1, 2)

    def inference(self, input: Union[np.ndarray, Tensor], class_names: bool = False,
                  bin_pred_thr: float = 0.5) -> SequenceLabellingOutput:
        """Per-step probabilities and binary predictions (torch_ecg's signature).

        Runs in eval mode without gradients (the train/eval state is restored) on the
        model's device and dtype.

        Parameters
        ----------
        input : numpy.ndarray or torch.Tensor
            ``(batch, n_leads, n_samples)``, or one record ``(n_leads, n_samples)``.
        class_names : bool, optional
            Only ``False``: per-step probabilities have no table form.
        bin_pred_thr : float, optional
            A class is predicted at a step where its probability is ``>= bin_pred_thr``.

        Returns
        -------
        SequenceLabellingOutput
            ``classes``, ``thr``, ``prob`` ``(batch, length, n_classes)`` sigmoid
            probabilities and ``pred`` the same shape in 0/1 ints (``length`` is
            ``n_samples``, or ``L_out`` when ``recover_length`` is off).
        """
        if class_names:
            raise ValueError("class_names=True is not supported for sequence labelling: "
                             "per-step probabilities have no table form")
        prob = self._inference_probs(input, bin_pred_thr)
        return SequenceLabellingOutput(classes=list(self.classes), thr=float(bin_pred_thr),
                                       prob=prob, pred=(prob >= bin_pred_thr).astype(int))

    def compute_output_shape(self, seq_len: Optional[int] = None,
                             batch_size: Optional[int] = None) -> tuple:
        """``(batch_size, seq_len or L_out, n_classes)``, without a forward pass (the
        length None when ``seq_len`` is, as torch_ecg's)."""
        _, _, length = self.backbone.compute_features_output_shape(seq_len, batch_size)
        return (batch_size, seq_len if self.recover_length else length, self.clf.out_features)
