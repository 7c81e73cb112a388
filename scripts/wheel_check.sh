#!/usr/bin/env bash
# Build a wheel from the working tree, install it into a fresh virtual environment, and
# check the installed package rather than the checkout: every subpackage imports,
# `fastecg info` runs, and each public op runs once. scripts/test.sh calls it (so CI does).
#   FASTECG_VENV   environment that builds the wheel (default .venv: torch, setuptools, wheel, ninja)
#   FASTECG_TORCH  torch requirement of the fresh environment (default torch==2.13.0)
#   MAX_JOBS       parallel compile jobs (default 2)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_PY="${FASTECG_VENV:-$ROOT/.venv}/bin/python"
TORCH_SPEC="${FASTECG_TORCH:-torch==2.13.0}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/fastecg-wheel.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
SECONDS=0

# Build from a copy of what git would ship (tracked and untracked, not ignored), so the
# checkout's build/ folder and in-place fastecg._C are neither used nor touched.
mkdir "$WORK/src"
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
  | "$BUILD_PY" -c 'import os, sys; sys.stdout.write("".join(
        p + "\0" for p in sys.stdin.read().split("\0") if p and os.path.isfile(p)))' \
  | tar --null -T - -cf -) | tar -xf - -C "$WORK/src"
MAX_JOBS="${MAX_JOBS:-2}" "$BUILD_PY" -m pip wheel -q --disable-pip-version-check \
  --no-build-isolation --no-deps -w "$WORK/dist" "$WORK/src" >/dev/null
WHEEL="$(ls "$WORK"/dist/fastecg-*.whl)"
echo "wheel_check: built $(basename "$WHEEL") in ${SECONDS}s"

"$BUILD_PY" - "$WHEEL" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["fastecg/models/backbones/resnet.py", "fastecg/models/__init__.py",
        "fastecg/triton_kernels/__init__.py", "fastecg/numpy_path/__init__.py"]
missing = [n for n in need if n not in names]
if not any(n.startswith("fastecg/_C") and n.endswith(".so") for n in names):
    missing.append("fastecg/_C*.so")
assert not missing, f"wheel lacks {missing}"
EOF

"$BUILD_PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install -qq --disable-pip-version-check "$TORCH_SPEC" numpy scipy "$WHEEL"
echo "wheel_check: installed into a fresh environment at ${SECONDS}s"

# From outside the checkout, so nothing resolves to the source tree.
cd "$WORK"
"$WORK/venv/bin/fastecg" info > info.txt
grep -q "cpu     yes" info.txt || { cat info.txt; echo "wheel_check: no cpu backend" >&2; exit 1; }
grep -q "resnet" info.txt || { cat info.txt; echo "wheel_check: no backbones" >&2; exit 1; }
"$VPY" - <<'EOF'
import importlib, pkgutil, sys

import fastecg

assert "site-packages" in fastecg.__file__, f"imported the checkout: {fastecg.__file__}"
OPTIONAL = {"triton"}  # extras the fresh environment does not install
imported, skipped = [], []
names = ["fastecg"] + [m.name for m in pkgutil.walk_packages(fastecg.__path__, "fastecg.",
                                                            onerror=lambda name: None)]
for name in names:
    try:
        importlib.import_module(name)
        imported.append(name)
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] not in OPTIONAL:
            raise
        skipped.append(f"{name} (needs {err.name})")
assert "fastecg.models.backbones.resnet" in imported, imported

import numpy as np
import scipy.signal
import torch
from fastecg import ops

x = torch.randn(2, 12, 1000)
sos = scipy.signal.butter(4, [0.5, 45.0], btype="bandpass", fs=500.0, output="sos")
calls = {
    "normalize": lambda: ops.normalize(x),
    "normalize min-max": lambda: ops.normalize(x, method="min-max"),
    "bandpass iir": lambda: ops.bandpass(x, 500.0, method="iir"),
    "bandpass fft": lambda: ops.bandpass(x, 500.0, method="fft"),
    "bandpass fir": lambda: ops.bandpass(x, 500.0, method="fir"),
    "remove_baseline median": lambda: ops.remove_baseline(x, 500.0, method="median"),
    "remove_baseline mean": lambda: ops.remove_baseline(x, 500.0, method="mean"),
    "median_filter1d": lambda: ops.median_filter1d(x, 51),
    "sosfiltfilt": lambda: ops.sosfiltfilt(sos, x),
    "sosfilt": lambda: ops.sosfilt(sos, x),
}
for name, call in calls.items():
    y = call()
    y = y[0] if isinstance(y, tuple) else y
    assert y.shape == x.shape and y.dtype == x.dtype and bool(torch.isfinite(y).all()), name
ref = scipy.signal.sosfiltfilt(sos, x.double().numpy())
err = np.abs(ops.sosfiltfilt(sos, x.double()).numpy() - ref).max() / np.abs(ref).max()
assert err < 1e-9, f"sosfiltfilt differs from SciPy by {err:.1e} of the peak"
print(f"wheel_check: {len(imported)} modules imported"
      + (f", skipped {', '.join(skipped)}" if skipped else "")
      + f"; {len(calls)} op calls ran")
EOF
echo "wheel_check: passed in ${SECONDS}s"
