"""Grad-CAM saliency over time for any model built on a fastecg backbone."""

from __future__ import annotations

import operator
import sys
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import Backbone

__all__ = ["GradCam"]


def _check_class_type(target_class) -> None:
    """An integer (Python or NumPy, not bool) or an integer tensor; raises TypeError."""
    if isinstance(target_class, Tensor):
        if target_class.is_floating_point() or target_class.is_complex() \
                or target_class.dtype == torch.bool:
            raise TypeError(f"target_class must be an integer tensor, got "
                            f"{target_class.dtype}")
        return
    if isinstance(target_class, bool) or not hasattr(type(target_class), "__index__"):
        raise TypeError(f"target_class must be an int, an integer tensor or None, got "
                        f"{target_class!r}")


def _class_indices(target_class: Union[int, Tensor], batch: int, n_classes: int,
                   device: torch.device) -> Tensor:
    """``(batch,)`` class indices in ``[0, n_classes)``; negative ones count from the end,
    as in Python indexing. Raises ValueError for an index outside ``[-n_classes,
    n_classes)`` or a tensor whose length is neither 1 nor `batch`."""
    def out_of_range(value) -> ValueError:
        return ValueError(f"target_class {value} is out of range for a model with {n_classes} "
                          f"classes: expected {-n_classes} <= target_class < {n_classes}")

    if not isinstance(target_class, Tensor):
        index = operator.index(target_class)
        if not -n_classes <= index < n_classes:  # before torch.full: it would overflow
            raise out_of_range(index)
        return torch.full((batch,), index % n_classes, dtype=torch.long, device=device)
    cls = target_class.to(device=device, dtype=torch.long).reshape(-1)
    if cls.numel() == 1:
        cls = cls.expand(batch)
    if cls.shape[0] != batch:
        raise ValueError(f"target_class has {cls.shape[0]} entries for a batch of {batch}")
    bad = (cls < -n_classes) | (cls >= n_classes)
    if bad.any():  # a sync, once per call: an explanation, not a training step
        raise out_of_range(cls[bad][0].item())
    return torch.where(cls < 0, cls + n_classes, cls)


def _unwrapped(model: nn.Module) -> nn.Module:
    """The module that ``torch.compile`` (``_orig_mod``) and (Distributed)DataParallel
    (``module``) wrappers hold, through any nesting of them, else `model`."""
    wrappers = (nn.parallel.DistributedDataParallel, nn.DataParallel)
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")  # not loaded: nothing compiled
    while True:
        if isinstance(model, wrappers):
            model = model.module
        elif eval_frame is not None and isinstance(model, eval_frame.OptimizedModule):
            model = model._orig_mod
        else:
            return model


def _default_target_layer(model: nn.Module) -> str:
    """Name of the backbone's last stage, e.g. ``"backbone.stages.3"``."""
    for name, module in model.named_modules():
        if getattr(module, "feature_info", None) and hasattr(module, "forward_features"):
            prefix = f"{name}." if name else ""
            return prefix + module.feature_info[-1]["module"]
    raise ValueError(f"{type(model).__name__} has no backbone with feature_info; "
                     f"pass target_layer")


class GradCam:
    """Grad-CAM (Selvaraju et al. 2017) in 1-D: which samples drove a class's logit.

    For the target layer's activations ``A`` of shape ``(batch, channels, L')`` and the
    chosen class's logit ``y``, the map is ``relu(sum_c mean_t(dy/dA_c) A_c)``, upsampled
    linearly to the input length and scaled to ``[0, 1]`` per sample.

    Parameters
    ----------
    model : nn.Module
        Maps ``(batch, n_leads, n_samples)`` to logits ``(batch, n_classes)``; outputs
        ``(batch, n_samples', n_classes)`` (sequence models) are summed over time. A bare
        backbone needs its classifier (``reset_classifier``): without one it returns
        feature maps, a ``ValueError``.
    target_layer : str or nn.Module, optional
        Module whose output is explained: a name for ``model.get_submodule`` or the
        module itself. Default: the last stage of the model's backbone, from its
        ``feature_info``.

    Attributes
    ----------
    model : nn.Module
        The model explained; for a ``torch.compile`` or (Distributed)DataParallel wrapper
        (or any nesting of them), the module it wraps, which GradCam runs eagerly on this
        process alone: the compiled graph does not expose the target layer's output to
        autograd, and DDP's forward is a collective (it broadcasts buffers) that would
        wait for every rank.
    target_name : str
        The target layer's name in `model` (e.g. ``"backbone.stages.3"``), without the
        wrappers' ``"_orig_mod."`` / ``"module."`` prefixes.

    Notes
    -----
    Each call runs the model in eval mode with parameter gradients off, then restores
    the train/eval state and ``requires_grad`` flags of every module and parameter; the
    forward hook is removed even if the call fails. Parameters' ``.grad`` are untouched.

    Examples
    --------
    >>> import torch
    >>> from fastecg.models import ECG_CRNN, GradCam
    >>> model = ECG_CRNN(["AF", "RBBB"], n_leads=12)
    >>> cam = GradCam(model)                        # explains the backbone's last stage
    >>> cam.target_name
    'backbone.stages.3'
    >>> saliency = cam(torch.randn(2, 12, 1000), target_class=0)
    >>> saliency.shape                              # (batch, n_samples)
    torch.Size([2, 1000])
    >>> bool(saliency.min() >= 0) and bool(saliency.max() <= 1)
    True
    """

    def __init__(self, model: nn.Module, target_layer: Union[str, nn.Module, None] = None):
        if isinstance(target_layer, str):
            target_layer = model.get_submodule(target_layer)
        elif target_layer is not None and not isinstance(target_layer, nn.Module):
            raise TypeError(f"target_layer must be a name or a module, got "
                            f"{type(target_layer).__name__}")
        # a wrapped model is explained through the module it wraps, run eagerly: the
        # compiled graph hides the target layer's output from autograd; DDP's forward
        # broadcasts buffers, a collective that hangs when one rank explains alone;
        # DataParallel runs replicas whose activations the hook would mix up
        model = _unwrapped(model)
        if isinstance(model, Backbone) and model.head is None:
            # its output, (batch, channels, L'), would pass for (batch, time, classes)
            raise ValueError(f"{type(model).__name__} has no classifier: it returns feature "
                             f"maps, not logits; call reset_classifier(num_classes) first, "
                             f"or explain a model built on it")
        self.model = model
        if target_layer is None:
            target_layer = model.get_submodule(_default_target_layer(model))
        self.target_layer = target_layer
        self.target_name = next((n for n, m in model.named_modules() if m is target_layer),
                                None)
        if self.target_name is None:
            raise ValueError("target_layer is not a submodule of model")

    def __call__(self, x: Tensor, target_class: Union[int, Tensor, None] = None,
                 normalize: bool = True) -> Tensor:
        return self.cam(x, target_class, normalize)

    def cam(self, x: Tensor, target_class: Union[int, Tensor, None] = None,
            normalize: bool = True) -> Tensor:
        """Saliency ``(batch, n_samples)`` for ``target_class``.

        Parameters
        ----------
        x : Tensor, shape (batch, n_leads, n_samples)
            Input; not modified, and needs no ``requires_grad``.
        target_class : int or Tensor, optional
            One class for the whole batch, or one per sample (integer tensor of shape
            ``(batch,)``), in ``[-n_classes, n_classes)``; a negative index counts from
            the last class, as in Python (``-1``: the last). Default: each sample's
            highest logit.
        normalize : bool, optional
            Scale each map to ``[0, 1]`` (an all-zero map stays zero).

        Returns
        -------
        Tensor
            On ``x``'s device, in the activations' dtype, detached.

        Raises
        ------
        ValueError
            `x` not 3-D; `target_class` outside ``[-n_classes, n_classes)``, or a tensor
            whose length is neither 1 nor the batch size (checked after the forward, which
            gives ``n_classes``).
        TypeError
            `target_class` neither None, an int nor an integer tensor.
        """
        if x.ndim != 3:
            raise ValueError(f"expected (batch, n_leads, n_samples), got {tuple(x.shape)}")
        if target_class is not None:
            _check_class_type(target_class)
        if torch.is_inference_mode_enabled():
            raise RuntimeError("GradCam needs gradients: call it outside torch.inference_mode() "
                               "(torch.no_grad() is fine, it re-enables them inside)")
        captured: list[Tensor] = []

        def keep(module, inputs, output):
            captured.append(output)

        was_training = {m: m.training for m in self.model.modules()}
        requires_grad = {p: p.requires_grad for p in self.model.parameters()}
        handle = self.target_layer.register_forward_hook(keep)
        try:
            self.model.eval()
            for p in requires_grad:
                p.requires_grad_(False)
            with torch.enable_grad():
                # a leaf that requires grad makes the activations part of a graph even
                # though every parameter is frozen
                inp = x.detach().clone().requires_grad_(True)
                logits = self.model(inp)
                if not captured:
                    raise RuntimeError(f"target layer {self.target_name!r} did not run")
                acts = captured[-1]
                if not isinstance(acts, Tensor):
                    raise TypeError(f"target layer {self.target_name!r} returns a "
                                    f"{type(acts).__name__}, not a tensor; choose a layer "
                                    "whose output is the feature map")
                if logits.ndim == 3:  # (batch, time, classes): explain the whole sequence
                    logits = logits.sum(dim=1)
                if target_class is None:
                    cls = logits.argmax(dim=1)
                else:
                    cls = _class_indices(target_class, logits.shape[0], logits.shape[1],
                                         logits.device)
                score = logits.gather(1, cls[:, None]).sum()
                (grads,) = torch.autograd.grad(score, acts)
        finally:
            handle.remove()
            for p, flag in requires_grad.items():
                p.requires_grad_(flag)
            for m, flag in was_training.items():
                m.training = flag
        weights = grads.mean(dim=-1, keepdim=True)                 # (batch, channels, 1)
        cam = F.relu((weights * acts).sum(dim=1, keepdim=True))    # (batch, 1, L')
        cam = F.interpolate(cam.detach(), size=x.shape[-1], mode="linear",
                            align_corners=False)[:, 0]
        if normalize:
            lo = cam.amin(dim=-1, keepdim=True)
            span = cam.amax(dim=-1, keepdim=True) - lo
            cam = torch.where(span > 0, (cam - lo) / span.clamp_min(1e-12),
                              torch.zeros_like(cam))
        return cam
