# Sourced by demo.sh and test.sh: make .venv (when missing), install the pinned torch
# and the dependencies, build fastecg._C. Needs only python3.
#   FASTECG_TORCH  torch requirement (default torch==2.13.0, a CPU build that installs fast)
#   FASTECG_VENV   virtual environment folder (default .venv in the repository)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${FASTECG_VENV:-$ROOT/.venv}"
TORCH_SPEC="${FASTECG_TORCH:-torch==2.13.0}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }
if ! "$PY" -c "import torch, numpy, scipy, ninja" 2>/dev/null; then
  pip_install "$TORCH_SPEC" numpy scipy ninja setuptools wheel
fi
export MAX_JOBS="${MAX_JOBS:-2}"
if "$PY" -c "import fastecg._C" 2>/dev/null; then
  # Installed already: rebuild only what changed (ninja keeps state).
  "$PY" setup.py -q build_ext --inplace >/dev/null
else
  pip_install --no-build-isolation -e .
fi
