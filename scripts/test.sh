#!/usr/bin/env bash
# Set up (first run only) and run the test suite, then the benchmarks once in smoke mode,
# the documentation build, then the wheel check (build, install into a fresh environment,
# import, smoke each op; ~3 minutes on 2 cores; FASTECG_WHEEL_CHECK=0 skips it).
source "$(dirname "$0")/_env.sh"
# The test extra's packages (pyproject.toml) and triton (its kernels run under the CPU
# interpreter in the tests).
"$PY" -c "import pytest, pytest_benchmark, triton, wfdb, pandas, pyarrow, tqdm, safetensors, sklearn, matplotlib, h5py" \
  2>/dev/null || pip_install pytest pytest-benchmark triton wfdb "pandas>=3" pyarrow tqdm safetensors \
  scikit-learn matplotlib h5py
"$PY" -m pytest tests -q "$@"
"$PY" -m pytest benchmarks -q --benchmark-disable -p no:cacheprovider
# The documentation site builds with warnings as errors (the docs extra).
"$PY" -c "import sphinx, furo, matplotlib" 2>/dev/null || pip_install "sphinx>=7" furo matplotlib
"$PY" -m sphinx -b html -W --keep-going -q "$ROOT/docs" "$ROOT/docs/_build/html"
if [ "${FASTECG_WHEEL_CHECK:-1}" != 0 ]; then
  bash "$ROOT/scripts/wheel_check.sh"
fi
