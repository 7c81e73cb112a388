#!/usr/bin/env bash
# One session on a lent GPU machine (see ../.library/device): build fastecg._C with the
# CUDA kernels for Hopper, run the kernel tests (Triton and CUDA for real, then the rest
# of tests/ops), record benchmarks/results/*_gpu.json. Logs and results go to $OUT.
# Usage: OUT=/some/dir bash scripts/gpu_session.sh [build|test|bench|all]...
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/fastecg_gpu}; mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
export FASTECG_CUDA=1 PYTHONUNBUFFERED=1 PYTHONPATH=$PWD/python
[ -e python/fastecg/triton_kernels ] || ln -s ../../triton_kernels python/fastecg/triton_kernels

build() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv \
    | tee "$OUT/gpu.txt"
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  local t0=$SECONDS
  python3 setup.py -q build_ext --inplace > "$OUT/build.log" 2>&1 \
    || { tail -40 "$OUT/build.log"; return 1; }
  echo "build: $((SECONDS - t0)) s"; grep -i "warning" "$OUT/build.log" | head -20
  python3 -c "import fastecg; [print(k, v) for k, v in fastecg.backends().items()]"
}
gpu_tests() {
  python3 -m pytest tests/ops -m "cuda or triton" -q -rfE -p no:cacheprovider 2>&1 \
    | tee "$OUT/tests_gpu.log" | tail -30
}
all_op_tests() {
  timeout 420 python3 -m pytest tests/ops -q -rfE -p no:cacheprovider -x 2>&1 \
    | tee "$OUT/tests_ops.log" | tail -15
}
bench() {
  python3 -m pytest benchmarks/bench_gpu.py -q -p no:cacheprovider \
    --benchmark-columns=median,rounds --benchmark-sort=name > "$OUT/bench.log" 2>&1
  tail -3 "$OUT/bench.log"
  cp benchmarks/results/*_gpu.json "$OUT/" 2>/dev/null
  python3 benchmarks/gpu_table.py benchmarks/results/*_gpu.json
}
profile() {
  python3 benchmarks/profile_gpu.py > "$OUT/profile.log" 2>&1; tail -2 "$OUT/profile.log"
}
for step in "${@:-all}"; do
  case $step in
    build) build || exit 1 ;;
    test) gpu_tests ;;
    ops) all_op_tests ;;
    bench) bench ;;
    profile) profile ;;
    all) build || exit 1; gpu_tests; bench ;;
  esac
done
