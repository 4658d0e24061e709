#!/usr/bin/env bash
# issue 16's GPU checks in one command, under 8 minutes on one H200 (docs/performance.md, "On a GPU"):
# the prefetcher's CUDA tests, then benchmarks/gpu.py (training speed and data wait of resnet18 and
# xresnet1d101 at 100 and 500 Hz, fp32/bf16, --compile, DDP under torchrun, eval on the GPU, the CPU beside).
#
#   benchmarks/gpu.sh [gpu.py options]        # e.g. --records 1024 --budget 300
#
# On a machine without network, first run benchmarks/fetch_gpu_wheels.sh where pip works and carry .whl/:
# the wheels found there are installed into /tmp/site. The markdown section for benchmarks/RESULTS.md is
# printed at the end and, with the logs, written to $OUT (the device tool's folder) or to /tmp/ecgtool-gpu.
set -uo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "gpu.sh: installing .whl/ failed" >&2; exit 1; }
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
DEST=${OUT:-/tmp/ecgtool-gpu}
WORK=/tmp/ecgtool-gpu/work
mkdir -p "$DEST" "$WORK"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "gpu.sh: nvidia-smi failed" >&2
python3 -c "import torch, zarr, wfdb, thop; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpus', torch.cuda.device_count())" \
    || { echo "gpu.sh: a dependency is missing; run benchmarks/fetch_gpu_wheels.sh and carry .whl" >&2; exit 1; }
echo "== CUDA tests of the prefetcher ($((SECONDS - start)) s)"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_prefetch.py 2>&1 | tail -5
echo "== benchmarks/gpu.py ($((SECONDS - start)) s)"
python3 benchmarks/gpu.py --work "$WORK" --out "$DEST/gpu-results.md" "$@"
status=$?
tar -czf "$DEST/gpu-logs.tar.gz" --exclude='*.ckpt' --exclude='*.resume' -C "$WORK" logs runs
echo "== done in $((SECONDS - start)) s (gpu.py exit $status); results in $DEST/gpu-results.md"
exit $status
