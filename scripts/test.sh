#!/usr/bin/env bash
# Set up (first run only) and run the test suite, then the benchmarks once in smoke mode.
source "$(dirname "$0")/_env.sh"
"$PY" -c "import pytest, pytest_benchmark, triton" 2>/dev/null \
  || pip_install pytest pytest-benchmark triton
"$PY" -m pytest tests -q "$@"
"$PY" -m pytest benchmarks -q --benchmark-disable -p no:cacheprovider
