#!/usr/bin/env bash
# A template for your own runs: every step is one command reading and writing files,
# so a shell script (or a Slurm job, see examples/slurm/) is the whole config.
#   bash examples/pipeline.sh RAW_WFDB_DIR WORK_DIR [MODEL]
set -euo pipefail
raw=$1 work=$2 model=${3:-resnet18}
mkdir -p "$work"
ecgtool prep "$raw" -o "$work/data.zarr" --fs 100 --seconds 10 --on-error skip
ecgtool info "$work/data.zarr"
ecgtool split "$work/data.zarr" -o "$work/splits"
ecgtool train "$model" "$work/splits/train.zarr" --val "$work/splits/val.zarr" -o "$work/$model.ckpt"
ecgtool eval "$work/$model.ckpt" "$work/splits/test.zarr" --json --plots "$work/$model.plots" \
  --predictions "$work/$model.predictions.zarr" > "$work/$model.metrics.json"
ecgtool profile "$work/$model.ckpt" --json > "$work/$model.profile.json"
