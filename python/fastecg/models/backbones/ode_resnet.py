"""ODE-ResNets: residual networks whose blocks are one explicit Runge-Kutta step.

A ResNet block ``x + f(x)`` is one forward-Euler step of ``dx/dt = f(x)`` [1]_. Here
each block takes one step of a higher-order explicit Runge-Kutta method over the same
residual function ``f`` (conv-BN-act-conv-BN, shared by all stages of the step):

* ``midpoint_resnet``: explicit midpoint rule, order 2, 2 evaluations of ``f``;
* ``rk4_resnet``: the classic Runge-Kutta method, order 4, 4 evaluations;
* ``rk8_resnet``: Cooper and Verner's method [2]_, order 8, 11 evaluations.

Blocks keep the shape; a plain strided conv between stages changes width and length.
The Butcher tableaux are module constants (:data:`MIDPOINT`, :data:`RK4`,
:data:`COOPER_VERNER8`).

References
----------
.. [1] E. Weinan, "A Proposal on Machine Learning via Dynamical Systems", Commun. Math.
   Stat. 5, 2017; Y. Lu et al., "Beyond Finite Layer Neural Networks: Bridging Deep
   Architectures and Numerical Differential Equations", ICML 2018.
.. [2] G. J. Cooper and J. H. Verner, "Some Explicit Runge-Kutta Methods of High
   Order", SIAM J. Numer. Anal. 9(3), 389-405, 1972.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

from torch import Tensor, nn

from ...registry import BACKBONES
from .._base import Backbone
from .._layers import ConvBnAct, build_stages

__all__ = ["ButcherTableau", "MIDPOINT", "RK4", "COOPER_VERNER8", "TABLEAUX",
           "RungeKuttaBlock", "ResidualFunction", "ODEResNet"]


class ButcherTableau(NamedTuple):
    """An explicit Runge-Kutta method: ``a`` (strictly lower triangular, as rows of
    lengths 0, 1, ..., s-1), weights ``b`` and nodes ``c`` (``c_i = sum_j a_ij``).

    One step of ``dx/dt = f(x)`` with step ``h``: ``k_i = f(x + h sum_j a_ij k_j)``,
    ``x_next = x + h sum_i b_i k_i``.
    """

    name: str
    order: int
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    c: tuple[float, ...]


MIDPOINT = ButcherTableau("midpoint", 2, a=((), (0.5,)), b=(0.0, 1.0), c=(0.0, 0.5))

RK4 = ButcherTableau(
    "rk4", 4,
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    c=(0.0, 0.5, 0.5, 1.0),
)

_S21 = math.sqrt(21.0)
# The 11-stage order-8 method of Cooper & Verner (1972) [2]; its weights and nodes are
# those of Lobatto quadrature (nodes 1/2 +- sqrt(21)/14). tests/models/test_ode_resnet.py
# checks all 200 rooted-tree order conditions of order <= 8.
COOPER_VERNER8 = ButcherTableau(
    "cooper_verner8", 8,
    a=(
        (),
        (1 / 2,),
        (1 / 4, 1 / 4),
        (1 / 7, -(7 + 3 * _S21) / 98, (21 + 5 * _S21) / 49),
        ((11 + _S21) / 84, 0.0, (18 + 4 * _S21) / 63, (21 - _S21) / 252),
        ((5 + _S21) / 48, 0.0, (9 + _S21) / 36, (-231 + 14 * _S21) / 360,
         (63 - 7 * _S21) / 80),
        ((10 - _S21) / 42, 0.0, (-432 + 92 * _S21) / 315, (633 - 145 * _S21) / 90,
         (-504 + 115 * _S21) / 70, (63 - 13 * _S21) / 35),
        (1 / 14, 0.0, 0.0, 0.0, (14 - 3 * _S21) / 126, (13 - 3 * _S21) / 63, 1 / 9),
        (1 / 32, 0.0, 0.0, 0.0, (91 - 21 * _S21) / 576, 11 / 72,
         -(385 + 75 * _S21) / 1152, (63 + 13 * _S21) / 128),
        (1 / 14, 0.0, 0.0, 0.0, 1 / 9, -(733 + 147 * _S21) / 2205,
         (515 + 111 * _S21) / 504, -(51 + 11 * _S21) / 56, (132 + 28 * _S21) / 245),
        (0.0, 0.0, 0.0, 0.0, (-42 + 7 * _S21) / 18, (-18 + 28 * _S21) / 45,
         -(273 + 53 * _S21) / 72, (301 + 53 * _S21) / 72, (28 - 28 * _S21) / 45,
         (49 - 7 * _S21) / 18),
    ),
    b=(1 / 20, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 49 / 180, 16 / 45, 49 / 180, 1 / 20),
    c=(0.0, 1 / 2, 1 / 2, (7 + _S21) / 14, (7 + _S21) / 14, 1 / 2, (7 - _S21) / 14,
       (7 - _S21) / 14, 1 / 2, (7 + _S21) / 14, 1.0),
)

TABLEAUX = {t.name: t for t in (MIDPOINT, RK4, COOPER_VERNER8)}


class ResidualFunction(nn.Sequential):
    """The vector field ``f``: conv -> BN -> act -> conv -> BN, width-preserving.

    Parameters
    ----------
    channels : int
        Width of the state.
    kernel_size : int, optional
        Taps of both convolutions ("same" padding, so the length is kept).
    act : str, optional
        Activation name.
    """

    def __init__(self, channels: int, kernel_size: int = 3, act: str = "relu"):
        super().__init__(ConvBnAct(channels, channels, kernel_size, act=act),
                         ConvBnAct(channels, channels, kernel_size, act=None))


class RungeKuttaBlock(nn.Module):
    """One explicit Runge-Kutta step of ``dx/dt = f(x)``:
    ``x + h * sum_i b_i k_i`` with ``k_i = f(x + h * sum_j a_ij k_j)``.

    Parameters
    ----------
    f : nn.Module
        The vector field, shape-preserving; evaluated ``len(tableau.b)`` times (the
        same weights at every stage, as the ODE view requires).
    tableau : ButcherTableau
        The method (its ``c`` is unused: ``f`` does not depend on time).
    step_size : float, optional
        ``h``. With Euler's tableau and ``h = 1`` the block is a plain residual block.

    Notes
    -----
    Zero entries of the tableau are skipped, and the coefficients are Python floats, so
    the step keeps the input's dtype and compiles to a fixed graph.

    Shapes: ``(batch, C, L) -> (batch, C, L)``.
    """

    def __init__(self, f: nn.Module, tableau: ButcherTableau, step_size: float = 1.0):
        super().__init__()
        if len(tableau.a) != len(tableau.b) or any(
                len(row) != i for i, row in enumerate(tableau.a)):
            raise ValueError(f"tableau {tableau.name!r} is not explicit with "
                             f"{len(tableau.b)} stages")
        self.f = f
        self.tableau = tableau
        self.step_size = float(step_size)
        h = self.step_size
        self._stage_terms = tuple(tuple((j, h * a) for j, a in enumerate(row) if a != 0.0)
                                  for row in tableau.a)
        self._out_terms = tuple((i, h * b) for i, b in enumerate(tableau.b) if b != 0.0)

    def forward(self, x: Tensor) -> Tensor:
        ks: list[Tensor] = []
        for terms in self._stage_terms:
            xi = x
            for j, coef in terms:
                xi = xi + coef * ks[j]
            ks.append(self.f(xi))
        out = x
        for i, coef in self._out_terms:
            out = out + coef * ks[i]
        return out

    def output_length(self, seq_len: int) -> int:
        return seq_len

    def extra_repr(self) -> str:
        return f"method={self.tableau.name}, order={self.tableau.order}, h={self.step_size}"


class ODEResNet(Backbone):
    """ResNet-like backbone of Runge-Kutta blocks.

    ``stem`` (``k``-tap stride-2 conv to ``widths[0]`` + stride-2 max pool) -> per stage:
    a transition ``ConvBnAct`` (3 taps, stride 2; none in the first stage, which keeps
    the stem's width) and ``depths[i]`` :class:`RungeKuttaBlock` s.

    Parameters
    ----------
    in_channels : int, optional
        Leads on dim 1.
    method : str or ButcherTableau, optional
        ``"midpoint"``, ``"rk4"``, ``"cooper_verner8"`` or a tableau.
    widths : sequence of int, optional
        Channels per stage.
    depths : sequence of int, optional
        Runge-Kutta blocks per stage (each with its own ``f``).
    kernel_size : int, optional
        Taps of the convolutions inside ``f``.
    stem_kernel_size : int, optional
        Taps of the stem conv.
    step_size : float, optional
        ``h`` of every step.
    act : str, optional
        Activation name.

    Notes
    -----
    Output ``(batch, widths[-1], L_out)`` with ``L_out ~ L / 32`` for four stages
    (reductions 4, 8, 16, 32). Compute grows with the number of stages of the method
    (2, 4, 11 evaluations of ``f`` per block), parameters do not.
    """

    def __init__(self, in_channels: int = 12, method="rk4",
                 widths: Sequence[int] = (32, 64, 128, 256),
                 depths: Sequence[int] = (1, 1, 1, 1), kernel_size: int = 3,
                 stem_kernel_size: int = 7, step_size: float = 1.0, act: str = "relu"):
        super().__init__(in_channels)
        tableau = TABLEAUX.get(method) if isinstance(method, str) else method
        if not isinstance(tableau, ButcherTableau):
            raise ValueError(f"method must be one of {sorted(TABLEAUX)} or a "
                             f"ButcherTableau, got {method!r}")
        if len(widths) != len(depths) or not widths:
            raise ValueError(f"widths {tuple(widths)} and depths {tuple(depths)} must be "
                             "non-empty and of equal length")
        self.stem = nn.Sequential(
            ConvBnAct(in_channels, widths[0], stem_kernel_size, stride=2, act=act),
            nn.MaxPool1d(3, stride=2, padding=1),
        )

        def block(slot, channels):
            if slot.stage > 0 and slot.index == 0:
                return ConvBnAct(channels, widths[slot.stage], 3, stride=2, act=act)
            return RungeKuttaBlock(ResidualFunction(channels, kernel_size, act), tableau,
                                   step_size)

        # the stem already has the first stage's width; later stages open with a transition
        blocks_per_stage = [d + (i > 0) for i, d in enumerate(depths)]
        self.stages, stage_channels = build_stages(widths[0], blocks_per_stage, block)
        self._finish(stage_channels)


def _factory(method: str, doc: str, widths: Sequence[int] = (32, 64, 128, 256)):
    def build(in_channels: int = 12, **kwargs) -> ODEResNet:
        kwargs.setdefault("widths", widths)
        return ODEResNet(in_channels, method=method, **kwargs)

    build.__doc__ = doc
    return build


midpoint_resnet = BACKBONES.register("midpoint_resnet")(_factory("midpoint", """\
ODE-ResNet whose blocks are explicit-midpoint steps (order 2):
``x + h f(x + h/2 f(x))``. Keyword arguments as :class:`ODEResNet`.

Examples
--------
>>> BACKBONES.build("midpoint_resnet").compute_features_output_shape(5000, 2)
(2, 256, 157)
"""))

rk4_resnet = BACKBONES.register("rk4_resnet")(_factory("rk4", """\
ODE-ResNet whose blocks are classic fourth-order Runge-Kutta steps (4 evaluations of
``f`` per block). Keyword arguments as :class:`ODEResNet`.

Examples
--------
>>> BACKBONES.build("rk4_resnet").compute_features_output_shape(5000, 2)
(2, 256, 157)
"""))

rk8_resnet = BACKBONES.register("rk8_resnet")(_factory("cooper_verner8", """\
ODE-ResNet whose blocks are steps of Cooper and Verner's 11-stage eighth-order
Runge-Kutta method [1]_. Keyword arguments as :class:`ODEResNet`; the default widths
are halved, ``(16, 32, 64, 128)``, so that 11 evaluations of ``f`` per block cost about
as much as ``rk4_resnet``'s 4 (pass ``widths=(32, 64, 128, 256)`` to match it).

References
----------
.. [1] G. J. Cooper and J. H. Verner, "Some Explicit Runge-Kutta Methods of High
   Order", SIAM J. Numer. Anal. 9(3), 389-405, 1972.

Examples
--------
>>> BACKBONES.build("rk8_resnet").compute_features_output_shape(5000, 2)
(2, 128, 157)
""", widths=(16, 32, 64, 128)))
