"""ECG_CRNN: backbone -> optional RNN -> optional attention -> global pooling -> classifier.

The record-level multi-label classifier of torch_ecg (same name and signature,
``ECG_CRNN(classes, n_leads, config)``), on fastecg's registry-built backbones.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
from torch import Tensor

from ..registry import MODELS
from ._downstream import DownstreamModel, MultiLabelClassificationOutput
from ._head import AttentionPool, MLPHead, build_global_pool

__all__ = ["ECG_CRNN", "AttentionPool"]


@MODELS.register("ECG_CRNN")
class ECG_CRNN(DownstreamModel):
    """Convolutional(-recurrent) multi-label classifier of whole records.

    ``backbone.forward_features -> [RNN] -> [attention] -> global pooling -> classifier``.
    The classifier's input width is the encoder's (``num_features``), read from the
    backbone and RNN when the model is built.

    Parameters
    ----------
    classes : list of str or int
        Class names (``n_classes = len(classes)``); an int ``n`` stands for ``n``
        unnamed classes.
    n_leads : int, optional
        Leads of the input, ``(batch, n_leads, n_samples)``.
    config : dict, optional
        Keys (torch_ecg's ``cnn``/``attn`` are accepted for ``backbone``/``attention``):

        ``backbone``
            ``BACKBONES`` name, dict with ``"name"`` and its arguments, or a built
            backbone module. Default ``"resnet"``.
        ``rnn``
            ``None``/``"none"``, ``"lstm"``, ``"gru"``, or a dict
            ``{"name": "lstm", "hidden_size": 128, "num_layers": 1,
            "bidirectional": True, "dropout": 0.0}``. Default ``None``.
        ``attention``
            ``None`` or an ``ATTN_LAYERS`` name or dict (``self_attention``,
            ``squeeze_excitation``, ``global_context``, ``non_local``, or torch_ecg's
            ``sa``, ``se``/``se_block``, ``gc``, ``nl``); its ``channels`` come from
            the previous module. Default ``None``.
        ``global_pool``
            ``"max"`` (default), ``"avg"`` or ``"attn"``.
        ``dropout``
            In the classifier (:class:`~fastecg.models._head.MLPHead`): after each hidden
            layer, or before the only linear layer when there is none. Default 0.2.
        ``clf_hidden``
            Widths of hidden classifier layers. Default ``()`` (one linear layer).
    **kwargs
        Override ``config`` keys.

    Raises
    ------
    KeyError
        Unknown config key, backbone, attention, rnn or pooling name (with close matches).

    Notes
    -----
    ``torch.compile(model, fullgraph=True)`` works for configurations without an RNN.
    Dynamo refuses ``nn.LSTM``/``nn.GRU`` unless ``torch._dynamo.config.allow_rnn =
    True``; with it the graph is complete and matches eager, but tracing unrolls the
    recurrence, one copy per time step, which takes minutes for ordinary record lengths;
    compile RNN models without ``fullgraph`` instead.

    Examples
    --------
    >>> import torch
    >>> from fastecg.models import ECG_CRNN
    >>> model = ECG_CRNN(["AF", "RBBB"], n_leads=12,
    ...                  config={"backbone": "resnet", "rnn": "lstm",
    ...                          "attention": "squeeze_excitation"})
    >>> model(torch.randn(4, 12, 5000)).shape
    torch.Size([4, 2])
    """

    DEFAULT_CONFIG = {"backbone": "resnet", "rnn": None, "attention": None,
                      "global_pool": "max", "dropout": 0.2, "clf_hidden": ()}

    def __init__(self, classes: Union[Sequence[str], int], n_leads: int = 12,
                 config: Optional[Mapping[str, Any]] = None, **kwargs):
        super().__init__()
        cfg = self._setup(classes, n_leads, config, kwargs)
        self.num_features = self._build_encoder(cfg)
        self.pool = build_global_pool(cfg["global_pool"], self.num_features)
        self.clf = MLPHead(self.num_features, cfg["clf_hidden"], self.n_classes,
                           float(cfg["dropout"]))

    def reset_classifier(self, classes: Union[Sequence[str], int],
                         global_pool: Optional[str] = None) -> None:
        """A fresh last classifier layer for ``classes`` (names or a number; hidden layers
        kept), and a fresh pooling if ``global_pool`` is given, as timm's
        ``reset_classifier``. ``0`` removes the last layer: ``forward`` then returns the
        ``(batch, clf.pre_logits_features)`` features it would have classified."""
        pool = None if global_pool is None else build_global_pool(global_pool,
                                                                   self.num_features)
        self._set_classes(classes, allow_none=True)
        if pool is not None:
            self.pool = pool
            self.config["global_pool"] = global_pool
        self.clf.reset(self.n_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(batch, num_features, L_out)``: backbone features after the RNN and attention."""
        return self._encode(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Pool over time, then classify; ``pre_logits`` returns the pooled features."""
        x = self.pool(x)
        return x if pre_logits else self.clf(x)

    def forward(self, x: Tensor) -> Tensor:
        """Multi-label logits ``(batch, n_classes)`` (apply a sigmoid for probabilities)."""
        return self.forward_head(self.forward_features(x))

    def inference(self, input: Union[np.ndarray, Tensor], class_names: bool = False,
                  bin_pred_thr: float = 0.5,
                  at_least_one: bool = True) -> MultiLabelClassificationOutput:
        """Probabilities and binary predictions, as torch_ecg's task models' ``inference``.

        Runs in eval mode without gradients (the train/eval state is restored) on the
        model's device and dtype.

        Parameters
        ----------
        input : numpy.ndarray or torch.Tensor
            ``(batch, n_leads, n_samples)``, or one record ``(n_leads, n_samples)``;
            already preprocessed as in training.
        class_names : bool, optional
            Return ``prob`` as a pandas DataFrame with the class names as columns and a
            ``"pred"`` column listing each row's predicted classes.
        bin_pred_thr : float, optional
            A class is predicted where its probability is ``>= bin_pred_thr``.
        at_least_one : bool, optional
            A row with no probability above the threshold predicts its most probable
            class (the rule of torch_ecg's record classifiers, every record has a
            label); ``False`` leaves it empty.

        Returns
        -------
        MultiLabelClassificationOutput
            ``classes``, ``thr``, ``prob`` ``(batch, n_classes)`` sigmoid probabilities,
            ``pred`` ``(batch, n_classes)`` 0/1 ints.
        """
        prob = self._inference_probs(input, bin_pred_thr)
        pred = (prob >= bin_pred_thr).astype(int)
        if at_least_one and pred.shape[-1]:
            empty = pred.sum(axis=-1) == 0
            pred[empty, prob[empty].argmax(axis=-1)] = 1
        if class_names:
            import pandas as pd

            table = pd.DataFrame(prob, columns=self.classes)
            table["pred"] = [[c for c, p in zip(self.classes, row) if p] for row in pred]
            prob = table
        return MultiLabelClassificationOutput(classes=list(self.classes),
                                              thr=float(bin_pred_thr), prob=prob, pred=pred)

    def compute_output_shape(self, seq_len: Optional[int] = None,
                             batch_size: Optional[int] = None) -> tuple:
        """``(batch_size, n_classes)``; checks that ``seq_len`` (if given) is long enough."""
        if seq_len is not None:
            self.backbone.compute_features_output_shape(seq_len, batch_size)
        return (batch_size, self.clf.out_features)

    def compute_features_output_shape(self, seq_len: Optional[int] = None,
                                      batch_size: Optional[int] = None) -> tuple:
        """``(batch_size, num_features, L_out)`` of :meth:`forward_features` (``L_out``
        None when ``seq_len`` is)."""
        _, _, length = self.backbone.compute_features_output_shape(seq_len, batch_size)
        return (batch_size, self.num_features, length)
