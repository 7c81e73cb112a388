"""Backbones: parameter count and forward throughput of every registered backbone.

Workload: (32, 12, 5000) float32 (a batch of 10 s 12-lead records at 500 Hz), each
backbone built by name with its defaults, eval mode, ``torch.no_grad()``, 2 threads,
CPU. One warm-up forward, then 5 timed rounds. ``samples_per_s`` is records per second
(32 / median time). The 1-minute load average is recorded with each backbone: on a
shared machine other processes' load slows the timed threads. Results:
``benchmarks/results/models.json``; the README table comes from
``python benchmarks/models_table.py``.
"""

import os

import pytest
import torch

from fastecg.registry import BACKBONES

torch.set_num_threads(2)
SHAPE = (32, 12, 5000)
ROUNDS = 5


@pytest.mark.parametrize("name", BACKBONES.list())
def test_backbone_forward(benchmark, name):
    torch.manual_seed(0)
    model = BACKBONES.build(name, in_channels=SHAPE[1]).eval()
    x = torch.randn(SHAPE)
    benchmark.group = f"models forward {name}"  # one group each: no cross-model ratios
    info = model.feature_info[-1]
    benchmark.extra_info.update({
        "op": "models", "label": name, "mode": "forward (eval, no_grad)",
        "shape": list(SHAPE), "dtype": "float32", "device": "cpu",
        "params": sum(p.numel() for p in model.parameters()),
        "out_channels": model.out_channels, "reduction": info["reduction"],
        "min_seq_len": model.min_seq_len, "load_avg_1min": os.getloadavg()[0],
    })

    def forward():
        with torch.no_grad():
            return model.forward_features(x)

    out = benchmark.pedantic(forward, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    assert out.shape == model.compute_features_output_shape(SHAPE[-1], SHAPE[0])
    if benchmark.stats is not None:  # None under --benchmark-disable
        median_s = benchmark.stats.stats.median
        benchmark.extra_info["samples_per_s"] = SHAPE[0] / median_s
