"""patch masking: the fused MAE step (mask + embed of kept patches + masked loss, forward
and backward) against the MAE reference code's path, same input, same noise.

Workload (issue #33): (32, 12, 5000) float32, temporal patches of 50 samples, embedding
width 256, mask ratio 0.75; gradients to the embedding's weight, bias and positions and to
the prediction (the signal needs none, as in pretraining). Candidates: fastecg's fused ops
on the C++ kernels (backend "cpu") and on the torch reference kernels (backend "torch"),
and the unfused reference path (strided conv over every patch, argsort, gather, loss on a
patchified target), all from fastecg.bench.workloads. 2 threads; run with
OMP_WAIT_POLICY=PASSIVE (benchmarks/README.md).
"""

import pytest
import torch

import fastecg
from fastecg.bench.workloads import (MAE_STEP_SHAPE, fused_mae_step, mae_step_inputs,
                                     reference_mae_step)

torch.set_num_threads(2)
INPUTS = mae_step_inputs()
GRADS = ("weight", "bias", "pos", "pred")

CANDIDATES = {"reference_path": reference_mae_step,
              "fused_torch": lambda inputs: fused_mae_step(inputs, "torch")}
if fastecg.backends()["cpu"].available:
    CANDIDATES["fused_cpu"] = lambda inputs: fused_mae_step(inputs, "cpu")


def _result(fn):
    loss = fn(INPUTS)
    return [loss] + [INPUTS[k].grad.clone() for k in GRADS]


REFERENCE = _result(reference_mae_step)


def _info(label):
    out = _result(CANDIDATES[label])
    # Relative to each output's largest magnitude: the paths sum in different orders.
    errors = {name: float((a - b).abs().max() / b.abs().max())
              for name, a, b in zip(("loss",) + GRADS, out, REFERENCE)}
    assert max(errors.values()) < 1e-4, errors
    return {"op": "patch_mask", "label": label, "mode": "forward+backward",
            "shape": list(MAE_STEP_SHAPE), "dtype": "float32", "device": "cpu",
            "max_rel_error": errors}


@pytest.mark.parametrize("label", list(CANDIDATES))
def test_mae_step(benchmark, label):
    benchmark.group = "patch_mask fused MAE step fwd+bwd"
    benchmark.extra_info.update(_info(label))
    benchmark.pedantic(CANDIDATES[label], args=(INPUTS,), rounds=20, iterations=1,
                       warmup_rounds=5)


def test_mae_step_paired(paired):
    paired("patch_mask fused MAE step fwd+bwd (paired)", "patch_mask",
           {label: (lambda fn=fn: fn(INPUTS)) for label, fn in CANDIDATES.items()}, rounds=60)


def test_mae_step_cpu_time(benchmark):
    """The same paired rounds on the process's CPU time (both threads' user + system time)
    instead of the wall clock: on a shared machine a preempted thread stalls every parallel
    region of a step (wall time) but does not burn CPU time (OMP_WAIT_POLICY=PASSIVE), so
    this ratio of work drifts less with the load than the wall-clock one."""
    import time

    import numpy as np

    labels = list(CANDIDATES)
    seconds = {label: [] for label in labels}

    def one_round():
        first = len(seconds[labels[0]]) % len(labels)
        for label in labels[first:] + labels[:first]:
            start = time.process_time()
            CANDIDATES[label](INPUTS)
            seconds[label].append(time.process_time() - start)

    for label in labels:
        CANDIDATES[label](INPUTS)
    benchmark.group = "patch_mask fused MAE step fwd+bwd (CPU time, paired)"
    benchmark.pedantic(one_round, rounds=40, iterations=1)
    if benchmark.disabled:
        return
    cpu_ms = {k: np.asarray(v) * 1e3 for k, v in seconds.items()}
    info = {"op": "patch_mask", "label": "cpu_time_paired", "mode": "forward+backward",
            "cpu_time_median_ms": {k: round(float(np.median(v)), 2) for k, v in cpu_ms.items()}}
    for label in labels[1:]:
        ratio = cpu_ms["reference_path"] / cpu_ms[label]
        info[f"reference_path_over_{label}"] = {
            "median": round(float(np.median(ratio)), 3),
            "p20": round(float(np.percentile(ratio, 20)), 3),
            "p80": round(float(np.percentile(ratio, 80)), 3)}
    benchmark.extra_info.update(info)
