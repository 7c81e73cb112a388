"""Helpers shared by the test files: one error measure, one test signal, one check of the
`fastecg` command's usage errors."""

import numpy as np
import pytest
import torch


def rel_err(ours, ref) -> float:
    """Max absolute difference relative to the reference's peak (arrays or tensors on
    any device)."""
    if isinstance(ours, torch.Tensor):
        ours = ours.detach().double().cpu().numpy()
    if isinstance(ref, torch.Tensor):
        ref = ref.detach().double().cpu().numpy()
    ours, ref = np.asarray(ours, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.abs(ours - ref).max() / max(np.abs(ref).max(), 1e-300))


def signal(shape, dtype=torch.float32, seed=0) -> torch.Tensor:
    """A random walk (baseline wander) plus white noise, seeded, in `dtype`."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64).cumsum(-1) * 0.05
            + torch.randn(shape, generator=g, dtype=torch.float64)).to(dtype)


def assert_usage_error(capsys, argv) -> str:
    """``fastecg <argv>`` exits with argparse's usage error (code 2, "error:" on stderr,
    no traceback); returns stderr."""
    from fastecg import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, (argv, exc.value.code, err)
    assert "error:" in err and "Traceback" not in err, (argv, err)
    return err
