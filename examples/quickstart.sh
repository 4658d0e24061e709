#!/usr/bin/env bash
# The whole pipeline on the built-in synthetic dataset, from a fresh machine with Python:
#   bash examples/quickstart.sh [WORK_DIR]
# Sets up .venv if needed, then fetch → prep → split → train → eval → profile.
# About 3 minutes on 2 CPU cores; the per-class metrics table is the last thing printed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/examples/setup.sh"
export PATH="${ECGTOOL_VENV:-$root/.venv}/bin:$PATH"
work=${1:-$root/runs/quickstart}
mkdir -p "$work"
cd "$work"
set -x
ecgtool fetch synthetic -o raw --num-records 2000 --fs 500 --seed 0 --overwrite
ecgtool prep raw -o synthetic.zarr --fs 100 --seconds 10 --lowcut 0.5 --highcut 50 --normalise zscore --overwrite
ecgtool split synthetic.zarr -o splits --seed 0 --overwrite
ecgtool train resnet18 splits/train.zarr --val splits/val.zarr -o resnet18.ckpt \
  --epochs 8 --batch-size 64 --lr 1e-3 --seed 0 --overwrite
ecgtool profile resnet18.ckpt --repeats 10
ecgtool eval resnet18.ckpt splits/test.zarr --json --plots plots --overwrite > metrics.json
ecgtool explain resnet18.ckpt splits/test.zarr --limit 2 --method gradcam -o explain --overwrite
ecgtool eval resnet18.ckpt splits/test.zarr
