#!/usr/bin/env bash
# Every GPU check of tinygpt in one run, for a machine with an NVIDIA GPU and CuPy:
#   1. the fused kernels against their twins (tests/test_cuda_kernels.py, test_philox.py)
#   2. tinygpt selftest on the GPU
#   3. bench/bench_gpu.py: training steps, the chapter run, generation, against torch CUDA
#   4. the whole test suite under TINYGPT_BACKEND=cupy
# Each stage has a time limit and its own log in $OUT (default gpu-logs/); a failing
# stage does not stop the others. The summary is $OUT/summary.txt.
#
#   bash bench/gpu_check.sh [stage ...]        (stages: kernels selftest bench suite)
#
# BUDGET (seconds, default 570) caps the whole run: each stage gets at most what is left.
# Where the machine lacks packages, put wheels in .gpu/whl/ (installed to /tmp/site), and
# the-verdict.txt in .gpu/data/ (or set TINYGPT_DATA).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-logs}
mkdir -p "$OUT"
if ls .gpu/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -d .gpu/data ] && export TINYGPT_DATA=${TINYGPT_DATA:-$PWD/.gpu/data}
export TINYGPT_BACKEND=cupy
{
  # the command line's tests call the `tinygpt` script: install it (no downloads)
  python3 -m pip install -q --no-index --no-deps --no-build-isolation -e . 2>&1 | tail -3
  nvidia-smi --query-gpu=name,driver_version,memory.total,utilization.gpu,clocks.sm \
    --format=csv 2>&1
  python3 -c "import cupy, numpy, torch; print(cupy.__version__, numpy.__version__, torch.__version__)" 2>&1
  echo "cpu busy: $(top -bn1 | grep -m1 '%Cpu' || true)"
} >"$OUT/env.txt"
cat "$OUT/env.txt"

deadline=$(( $(date +%s) + ${BUDGET:-570} ))
stage() {  # name, seconds, command...
  local name=$1 limit=$2 started rc left
  shift 2
  started=$(date +%s)
  left=$(( deadline - started - 5 ))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -le 10 ]; then echo "$name: skipped, no time left" | tee -a "$OUT/summary.txt"; return; fi
  timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  echo "$name: exit $rc in $(( $(date +%s) - started )) s" | tee -a "$OUT/summary.txt"
  tail -n 25 "$OUT/$name.log"
}

stages=${*:-kernels selftest bench suite}
for s in $stages; do
  case $s in
    kernels)  stage kernels 150 python3 -m pytest -q -p no:cacheprovider \
                tests/test_cuda_kernels.py tests/test_philox.py tests/test_backend.py ;;
    selftest) stage selftest 90 python3 -m tinygpt selftest ;;
    bench)    stage bench 330 python3 bench/bench_gpu.py --rounds 1 --steps 3 --warmup 2 \
                --no-dropout --json "$OUT/bench.json" ;;
    suite)    stage suite 600 python3 -m pytest -q -p no:cacheprovider -n 8 \
                --timeout 200 --maxfail 60 ;;
  esac
done
cat "$OUT/summary.txt"
