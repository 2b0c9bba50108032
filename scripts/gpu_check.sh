#!/usr/bin/env bash
# One device run for the GPU side of extract: CUDA tests, then the GPU bench; logs and results into $OUT.
#
#   on the lent GPU machine (carry .whl):  bash scripts/gpu_check.sh
#   anywhere else, by hand:                OUT=/tmp/gpu-check PYTHON=.venv/bin/python bash scripts/gpu_check.sh
#
# Knobs: TEST_TIMEOUT / BENCH_TIMEOUT (seconds per step), BENCH_ARGS (extra pipelines.devtools.bench options),
# SKIP_INSTALL=1 (packages already there). Takes about 8 minutes on an H200; BENCH_ARGS="--images 4096" halves the bench. Wheels in .whl/ (git-ignored) fill what the image lacks.
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
if [[ -z "${SKIP_INSTALL:-}" ]] && compgen -G ".whl/*.whl" >/dev/null; then
    $PYTHON -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        2>&1 | tail -3
    export PYTHONPATH=/tmp/site:$PWD
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
    nproc
    $PYTHON -c "import torch, torchvision, timm, pandas, numpy; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__, 'pandas', pandas.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$OUT/env.txt"

echo "== CUDA tests"
timeout "${TEST_TIMEOUT:-150}" $PYTHON -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_gpu_scaling.py 2>&1 \
    | tee "$OUT/tests.log"
echo "tests exit: ${PIPESTATUS[0]}" | tee -a "$OUT/tests.log"

echo "== nvJPEG alone"
timeout 60 $PYTHON scripts/nvjpeg_probe.py 1024 2>&1 | grep -v -i warning | tee "$OUT/nvjpeg.txt"

echo "== bench"
# shellcheck disable=SC2086
timeout "${BENCH_TIMEOUT:-400}" $PYTHON -m pipelines.devtools.bench --skip-heads --output "$OUT/results.json" ${BENCH_ARGS:-} 2>&1 \
    | grep -v -i "warning" | tee "$OUT/bench.log"
echo "bench exit: ${PIPESTATUS[0]}" | tee -a "$OUT/bench.log"
