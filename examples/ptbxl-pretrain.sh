#!/usr/bin/env bash
# The pretraining protocol of benchmarks/pretrain_protocol.py on PTB-XL, for a GPU node: each method pretrained
# with its reference defaults (`ecgtool pretrain --list`) on the training folds 1-8 (labels never read),
# then, for each of the six PTB-XL tasks and 1 / 10 / 100 % of the training labels, a linear probe
# (--init --freeze-encoder) and a fine-tune (--init) against the random-encoder probe (--init random --freeze-encoder)
# and supervised training from scratch; best epoch and thresholds on fold 9; tested once on fold 10 with
# `eval --compare` (paired bootstrap on the same resamples). Ends with one markdown table.
# Every step is skipped when its output exists, so a rerun continues where it stopped.
#   bash examples/ptbxl-pretrain.sh WORK_DIR
#   METHODS="cpc st-mem" TASKS="all superdiagnostic" PRETRAIN_EPOCHS=100 bash examples/ptbxl-pretrain.sh WORK_DIR
#
# Published numbers to compare against (macro AUC on fold 10):
#   CPC (Mehari & Strodthoff 2022), PTB-XL all, 4FC+2LSTM+2FC at 100 Hz:  fine-tune .942, linear .927
#       random-init xresnet1d50 in the same paper:                       fine-tune .924, linear .721
#   ST-MEM (Na et al. 2024), PTB-XL superdiagnostic, ViT-B/75 at 250 Hz:  fine-tune .933, linear .838
#   ECG-JEPA (Weimann & Conrad 2024), PTB-XL all, ViT-S at 500 Hz:        fine-tune .945
# CLOCS reports no PTB-XL macro AUC in this protocol. The references pretrain on more than PTB-XL's folds 1-8
# (CPC and ECG-JEPA on several pooled datasets, ST-MEM on Chapman + Ningbo + CODE-15); pool more stores into
# `ecgtool pretrain` for a like-for-like comparison, never a store that holds fold 10's records.
set -euo pipefail
work=$1
methods=${METHODS:-"cpc clocs-cmsc clocs-cmlc clocs-cmsmlc st-mem jepa"}
tasks=${TASKS:-"all diagnostic subdiagnostic superdiagnostic form rhythm"}
fractions=${FRACTIONS:-"0.01 0.1 1"}
epochs=${EPOCHS:-50}  # downstream epochs
device=${DEVICE:-cuda} precision=${PRECISION:-bf16}
pretrain_epochs=()
[ -n "${PRETRAIN_EPOCHS:-}" ] && pretrain_epochs=(--epochs "$PRETRAIN_EPOCHS")
mkdir -p "$work"

[ -d "$work/raw" ] || ecgtool fetch ptbxl -o "$work/raw"

# Each method's reference rate and backbone, and the encoder's input length (train --crop repeats it).
rate() { case $1 in cpc) echo 100 ;; st-mem) echo 250 ;; *) echo 500 ;; esac; }
backbone() { case $1 in cpc) echo cpc ;; clocs-*) echo clocs_cnn ;; st-mem) echo st_mem_vit_base ;; jepa) echo ecg_jepa_vit_s ;; esac; }
crop() { case $1 in clocs-*) echo 2500 ;; st-mem) echo 2250 ;; *) echo 0 ;; esac; }  # 5 s at 500 Hz; 9 s at 250 Hz
# clocs_cnn is the reference's single-lead encoder: its checkpoint takes lead II, so its downstream stores do too.
leads() { case $1 in clocs-*) echo II ;; *) echo all ;; esac; }

# prep STORE_NAME TASK FS LEADS [extra prep options]: one store, split on PTB-XL's official folds (1-8 / 9 / 10)
prep_split() {
  local name=$1 task=$2 fs=$3 leads=$4
  shift 4
  local rate_files=500
  [ "$fs" = 100 ] && rate_files=100
  local lead_opt=()
  [ "$leads" = all ] || lead_opt=(--leads "$leads")
  [ -d "$work/$name.zarr" ] || ecgtool prep "$work/raw" --task "$task" --rate "$rate_files" --fs "$fs" --seconds 10 \
    "${lead_opt[@]}" "$@" -o "$work/$name.zarr"
  [ -d "$work/$name" ] || ecgtool split "$work/$name.zarr" -o "$work/$name"
}

# -- pretraining: folds 1-8 of every record (unlabelled ones kept), at the method's rate, all 12 leads -----------
for m in $methods; do
  fs=$(rate "$m")
  prep_split "pretrain-$fs" all "$fs" all --keep-unlabelled
  [ -f "$work/$m.enc.ckpt" ] || ecgtool pretrain "$m" "$work/pretrain-$fs/train.zarr" -o "$work/$m.enc.ckpt" \
    "${pretrain_epochs[@]}" --device "$device" --precision "$precision"
done

# -- downstream: six tasks x fractions x {probe, fine-tune, random probe, scratch} ----------------------------------
train_one() {  # OUT MODEL TASK_SPLITS FRACTION CROP [options]
  local out=$1 model=$2 splits=$3 fraction=$4 crop=$5
  shift 5
  local crop_opt=()
  [ "$crop" = 0 ] || crop_opt=(--crop "$crop")
  [ -f "$out" ] || ecgtool train "$model" "$splits/train.zarr" --val "$splits/val.zarr" --label-fraction "$fraction" \
    --epochs "$epochs" "${crop_opt[@]}" "$@" --device "$device" --precision "$precision" -o "$out"
}
eval_one() {  # NAME OTHER TASK_SPLITS: eval on fold 10 against OTHER on the same resamples
  local name=$1 other=$2 splits=$3
  [ -f "$work/$name.test.json" ] && return
  ecgtool eval "$work/$name.ckpt" "$splits/test.zarr" --compare "$work/$other.ckpt" --bootstrap 1000 --seed 0 \
    --device "$device" --json > "$work/$name.test.json.partial"
  mv "$work/$name.test.json.partial" "$work/$name.test.json"
}

for m in $methods; do
  fs=$(rate "$m") model=$(backbone "$m") c=$(crop "$m") l=$(leads "$m")
  for task in $tasks; do
    store="$task-$fs-$l"
    prep_split "$store" "$task" "$fs" "$l"
    for f in $fractions; do
      base="$store-$model-crop$c-$f"  # the baselines depend on the backbone and input, not the method
      train_one "$work/random-probe-$base.ckpt" "$model" "$work/$store" "$f" "$c" --init random --freeze-encoder --lr 1e-2
      train_one "$work/scratch-$base.ckpt" "$model" "$work/$store" "$f" "$c" --lr 1e-3
      train_one "$work/probe-$m-$task-$f.ckpt" "$model" "$work/$store" "$f" "$c" --init "$work/$m.enc.ckpt" \
        --freeze-encoder --lr 1e-2
      train_one "$work/finetune-$m-$task-$f.ckpt" "$model" "$work/$store" "$f" "$c" --init "$work/$m.enc.ckpt" \
        --lr 1e-3 --encoder-lr 1e-4
      eval_one "random-probe-$base" "scratch-$base" "$work/$store"
      eval_one "scratch-$base" "random-probe-$base" "$work/$store"
      eval_one "probe-$m-$task-$f" "random-probe-$base" "$work/$store"
      eval_one "finetune-$m-$task-$f" "scratch-$base" "$work/$store"
      echo "$m $task $f $fs $l $model $c" >> "$work/runs.txt"
    done
  done
done

python3 - "$work" <<'PY' | tee "$work/pretrain-comparison.md"
import json, sys
from pathlib import Path

work = Path(sys.argv[1])
published = {("cpc", "all"): "ft .942 / lin .927 (random xresnet1d50 .924 / .721)",
             ("st-mem", "superdiagnostic"): "ft .933 / lin .838", ("jepa", "all"): "ft .945"}
cell = lambda r: f"{r['macro']['auroc']:.3f} [{r['bootstrap']['intervals']['auroc']['low']:.3f}, " \
                 f"{r['bootstrap']['intervals']['auroc']['high']:.3f}]"
def diff(r):
    d = r["comparison"]["difference"]["auroc"]
    return f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
print("| method | task | labels | probe | random probe | probe − random | fine-tune | scratch | fine-tune − scratch | published |")
print("|---|---|---|---|---|---|---|---|---|---|")
seen = set()
for line in (work / "runs.txt").read_text().splitlines():
    m, task, f, fs, l, model, c = line.split()
    if (m, task, f) in seen:
        continue
    seen.add((m, task, f))
    base = f"{task}-{fs}-{l}-{model}-crop{c}-{f}"
    r = {k: json.loads((work / f"{k}.test.json").read_text()) for k in
         (f"probe-{m}-{task}-{f}", f"finetune-{m}-{task}-{f}", f"random-probe-{base}", f"scratch-{base}")}
    p, ft, rp, sc = r.values()
    print(f"| {m} | {task} | {float(f):.0%} | {cell(p)} | {cell(rp)} | {diff(p)} | {cell(ft)} | {cell(sc)} | {diff(ft)} | "
          f"{published.get((m, task), '') if f == '1' else ''} |")
PY
