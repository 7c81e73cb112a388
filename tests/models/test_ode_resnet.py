"""Runge-Kutta tableaux and blocks of the ODE-ResNets against independent references:
rooted-tree order conditions (Butcher) and NumPy/SciPy solutions of linear ODEs."""

import itertools
import math
from functools import lru_cache

import numpy as np
import pytest
import scipy.linalg
import torch

from fastecg.models.backbones.ode_resnet import (COOPER_VERNER8, MIDPOINT, RK4,
                                                 ButcherTableau, ODEResNet, RungeKuttaBlock)
from fastecg.registry import BACKBONES

TABLEAUX = [MIDPOINT, RK4, COOPER_VERNER8]


def as_arrays(t: ButcherTableau):
    s = len(t.b)
    a = np.zeros((s, s))
    for i, row in enumerate(t.a):
        a[i, : len(row)] = row
    return a, np.array(t.b), np.array(t.c)


@lru_cache(maxsize=None)
def rooted_trees(n: int) -> tuple:
    """Unlabelled rooted trees with ``n`` vertices, each a sorted tuple of subtrees."""
    if n == 1:
        return ((),)

    def partitions(rest, largest):
        if rest == 0:
            yield ()
            return
        for k in range(min(rest, largest), 0, -1):
            for tail in partitions(rest - k, k):
                yield (k,) + tail

    trees = set()
    for sizes in partitions(n - 1, n - 1):
        for children in itertools.product(*(rooted_trees(k) for k in sizes)):
            trees.add(tuple(sorted(children)))
    return tuple(sorted(trees))


def density(tree) -> int:
    """gamma(t): the tree's order times its subtrees' densities."""
    return (1 + sum(_order(c) for c in tree)) * math.prod(density(c) for c in tree)


def _order(tree) -> int:
    return 1 + sum(_order(c) for c in tree)


def stage_weights(a, tree):
    """Phi_i(t): 1 for a leaf, else the product over subtrees u of (A Phi(u))_i."""
    out = np.ones(a.shape[0])
    for child in tree:
        out = out * (a @ stage_weights(a, child))
    return out


def test_rooted_tree_counts():
    # OEIS A000081
    assert [len(rooted_trees(n)) for n in range(1, 10)] == [1, 1, 2, 4, 9, 20, 48, 115, 286]


@pytest.mark.parametrize("tableau", TABLEAUX, ids=lambda t: t.name)
def test_tableau_row_sums_and_quadrature_conditions(tableau):
    a, b, c = as_arrays(tableau)
    assert np.all(np.triu(a) == 0), "explicit methods have a strictly lower-triangular A"
    np.testing.assert_allclose(a.sum(axis=1), c, rtol=0, atol=1e-12)
    for k in range(1, tableau.order + 1):
        assert abs(np.sum(b * c ** (k - 1)) - 1.0 / k) < 1e-12, f"sum(b c^{k - 1}) != 1/{k}"


@pytest.mark.parametrize("tableau", TABLEAUX, ids=lambda t: t.name)
def test_tableau_satisfies_all_order_conditions_and_no_more(tableau):
    a, b, _ = as_arrays(tableau)
    checked = 0
    for n in range(1, tableau.order + 1):
        for tree in rooted_trees(n):
            assert abs(b @ stage_weights(a, tree) - 1.0 / density(tree)) < 1e-12, (n, tree)
            checked += 1
    assert checked == {2: 2, 4: 8, 8: 200}[tableau.order]
    # the stated order is the exact order: some condition of the next order fails
    worst = max(abs(b @ stage_weights(a, t) - 1.0 / density(t))
                for t in rooted_trees(tableau.order + 1))
    assert worst > 1e-6


def linear_block(tableau, channels, h, seed=0, scale=1.0):
    """A block whose f is x -> M x (a bias-free 1-tap conv), and M as NumPy float64."""
    g = torch.Generator().manual_seed(seed)
    f = torch.nn.Conv1d(channels, channels, 1, bias=False).double()
    with torch.no_grad():
        f.weight.copy_(torch.randn(channels, channels, 1, generator=g, dtype=torch.float64)
                       * (scale / math.sqrt(channels)))
    return RungeKuttaBlock(f, tableau, step_size=h), f.weight[:, :, 0].detach().numpy()


def test_rk4_block_with_linear_f_is_the_exact_rk4_step():
    block, m = linear_block(RK4, channels=5, h=0.3)
    x = torch.randn(2, 5, 7, dtype=torch.float64)
    # For x' = M x, classic RK4 is x + h k1/6 + h k2/3 + h k3/3 + h k4/6 with the stages
    # written out by hand; it equals the degree-4 Taylor polynomial of exp(hM).
    h, xs = 0.3, x.numpy()
    apply = lambda v: np.einsum("ij,bjl->bil", m, v)  # noqa: E731
    k1 = apply(xs)
    k2 = apply(xs + h / 2 * k1)
    k3 = apply(xs + h / 2 * k2)
    k4 = apply(xs + h * k3)
    by_hand = xs + h * (k1 + 2 * k2 + 2 * k3 + k4) / 6
    hm = h * m
    taylor = sum(np.linalg.matrix_power(hm, k) / math.factorial(k) for k in range(5))
    np.testing.assert_allclose(by_hand, np.einsum("ij,bjl->bil", taylor, xs), atol=1e-13)
    with torch.no_grad():
        out = block(x).numpy()
    np.testing.assert_allclose(out, by_hand, rtol=0, atol=1e-13)


def test_midpoint_block_is_x_plus_h_f_of_half_step():
    block, m = linear_block(MIDPOINT, channels=4, h=0.5, seed=1)
    x = torch.randn(3, 4, 6, dtype=torch.float64)
    xs, h = x.numpy(), 0.5
    apply = lambda v: np.einsum("ij,bjl->bil", m, v)  # noqa: E731
    expected = xs + h * apply(xs + h / 2 * apply(xs))
    with torch.no_grad():
        np.testing.assert_allclose(block(x).numpy(), expected, rtol=0, atol=1e-13)


@pytest.mark.parametrize("tableau", TABLEAUX, ids=lambda t: t.name)
def test_linear_ode_converges_at_the_methods_order(tableau):
    # Integrate x' = M x over [0, 1] in n steps; the error against expm(M) x must fall
    # like n^-order. ||M|| ~ 3 keeps the rk8 error well above float64 round-off.
    x = torch.randn(1, 4, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    errors = []
    for n in ((2, 4) if tableau.order == 8 else (16, 32)):
        block, m = linear_block(tableau, 4, h=1.0 / n, seed=2, scale=3.0)
        y = x
        with torch.no_grad():
            for _ in range(n):
                y = block(y)
        exact = scipy.linalg.expm(m) @ x[0, :, 0].numpy()
        errors.append(np.abs(y[0, :, 0].numpy() - exact).max())
    rate = math.log2(errors[0] / errors[1])
    assert abs(rate - tableau.order) < 0.6, (errors, rate)


def test_euler_tableau_with_unit_step_is_a_plain_residual_block():
    euler = ButcherTableau("euler", 1, a=((),), b=(1.0,), c=(0.0,))
    f = torch.nn.Conv1d(3, 3, 3, padding=1)
    block = RungeKuttaBlock(f, euler)
    x = torch.randn(2, 3, 10)
    torch.testing.assert_close(block(x), x + f(x), rtol=0, atol=0)


def test_block_rejects_implicit_tableau():
    implicit = ButcherTableau("implicit_midpoint", 2, a=((0.5,),), b=(1.0,), c=(0.5,))
    with pytest.raises(ValueError, match="not explicit"):
        RungeKuttaBlock(torch.nn.Identity(), implicit)


@pytest.mark.parametrize("name,stages", [("midpoint_resnet", 2), ("rk4_resnet", 4),
                                         ("rk8_resnet", 11)])
def test_registered_ode_resnets_evaluate_f_once_per_stage(name, stages):
    net = BACKBONES.build(name, in_channels=2, widths=(8, 16), depths=(1, 2)).eval()
    calls = []
    for block in net.modules():
        if isinstance(block, RungeKuttaBlock):
            block.f.register_forward_hook(lambda *_: calls.append(1))
    x = torch.randn(1, 2, 64)
    assert net(x).shape == (1, 16, 8)
    assert len(calls) == 3 * stages


def test_transitions_downsample_and_blocks_keep_shape():
    net = ODEResNet(in_channels=1, method="rk4", widths=(8, 16, 32), depths=(1, 1, 1))
    x = torch.randn(2, 1, 400)
    _, feats = net.forward_intermediates(x)
    assert [tuple(f.shape) for f in feats] == [(2, 8, 100), (2, 16, 50), (2, 32, 25)]
    for block in net.modules():
        if isinstance(block, RungeKuttaBlock):
            assert block.output_length(123) == 123


def test_unknown_method_and_mismatched_stages_raise():
    with pytest.raises(ValueError, match="rk5"):
        ODEResNet(method="rk5")
    with pytest.raises(ValueError, match="equal length"):
        ODEResNet(widths=(8, 16), depths=(1,))
