"""The pretraining protocol of issue 13 on the synthetic data: every method against the random encoder and scratch.

    python benchmarks/pretrain_protocol.py [--methods cpc,jepa] [--fractions 0.01,0.1,1] [--work DIR] [--full]

Generates the synthetic dataset (``ecgtool fetch synthetic``, 12 leads, 10 s at 100 Hz), preps it and splits it
patient-wise (8/1/1 stratified folds), then, for each method, through the real CLI (the commands a user types,
run as subprocesses, fixed seeds):

1. ``ecgtool pretrain METHOD train.zarr [unlabelled.zarr] -o ENC.ckpt`` (labels never read);
2. for each label fraction F (``train --label-fraction F``: whole patients, stratified, nested):
   * linear probe: ``train MODEL train.zarr --init ENC.ckpt --freeze-encoder``,
   * fine-tune: ``train MODEL train.zarr --init ENC.ckpt``,
   * and, once per backbone configuration and fraction, the random-encoder probe (``--init random --freeze-encoder``: no
     checkpoint) and supervised training from scratch (neither), with the same model arguments and input length;
   every run with ``--val val.zarr`` (best epoch by validation macro AUC);
3. ``ecgtool eval PROBE test.zarr --compare RANDOM_PROBE`` and ``eval FINETUNE test.zarr --compare SCRATCH``
   (``eval RANDOM_PROBE --compare SCRATCH`` for the baselines' own intervals): test macro AUC with percentile
   bootstrap intervals, and the paired difference on the same resamples (the same ``--seed``, hence the same
   resample ids, for every eval).

Prints one table: method × fraction × {probe, random probe, probe − random, fine-tune, scratch, fine-tune − scratch}
with intervals; ``*`` marks a difference whose interval excludes 0.

The default configuration is sized for 2 CPU cores (about 20 minutes): small backbones (resnet18 with
base_width=8 for CPC and CLOCS; 3-block, 64-wide ViTs with 50-sample patches for ST-MEM and ECG-JEPA), all at
100 Hz (the references pretrain CLOCS and JEPA at 500 Hz, ST-MEM at 250 Hz: pretrain warns), a few pretraining
epochs at lr 1e-3. ``--full`` is meant for a GPU node: 10 000 records, the methods' reference backbones and
longer schedules (``--device cuda`` is then passed to every command). With 2000 records the 1 % subset holds
16 training records, one or two per rare class; ``--fractions`` sets the fractions.

Writes only under --work (default: a temporary directory, removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from workdir import work_dir  # benchmarks/workdir.py: the scripts run from this directory

ROOT = Path(__file__).resolve().parents[1]

ALL_METHODS = ("cpc", "clocs-cmsc", "clocs-cmlc", "clocs-cmsmlc", "st-mem", "jepa")
SMALL_RESNET = ("resnet18", {"base_width": 8})
SMALL_ST_MEM = ("st_mem_vit_small", {"patch_size": 50, "dim": 64, "depth": 3, "num_heads": 4})
SMALL_JEPA = ("ecg_jepa_vit_xs", {"patch_size": 50, "dim": 64, "depth": 3, "num_heads": 4})

# method -> (backbone, model kwargs, method kwargs, pretraining epochs) for the CPU configuration
QUICK = {
    "cpc": (*SMALL_RESNET, {"negatives": 32, "hidden": 64, "rnn_layers": 1}, 10),
    "clocs-cmsc": (*SMALL_RESNET, {}, 8),
    "clocs-cmlc": (*SMALL_RESNET, {}, 8),
    "clocs-cmsmlc": (*SMALL_RESNET, {}, 8),
    "st-mem": (*SMALL_ST_MEM, {"decoder_dim": 32, "decoder_depth": 1, "decoder_heads": 2}, 40),
    "jepa": (*SMALL_JEPA, {}, 60),
}
# the GPU configuration: the methods' own backbones (clocs_cnn is single-lead: resnet18 keeps all 12 leads
# and one store for every method), reference method arguments, longer schedules
FULL = {
    "cpc": ("cpc", {}, {}, 200),
    "clocs-cmsc": ("resnet18", {}, {}, 200),
    "clocs-cmlc": ("resnet18", {}, {}, 200),
    "clocs-cmsmlc": ("resnet18", {}, {}, 200),
    "st-mem": ("st_mem_vit_small", {"patch_size": 50}, {}, 100),
    "jepa": ("ecg_jepa_vit_xs", {"patch_size": 50}, {}, 100),
}


def _args(flag: str, kv: dict) -> list[str]:
    return [a for k, v in kv.items() for a in (flag, f"{k}={json.dumps(v)}")]


class Runner:
    """Runs ``ecgtool`` subcommands, logs each command line and its stderr under WORK/logs."""

    def __init__(self, work: Path, device: str, threads: int):
        self.work, self.device, self.threads = work, device, threads
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, *args: str, capture: bool = False) -> str:
        cmd = [sys.executable, "-m", "ecgtool", *map(str, args)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        t0 = time.perf_counter()
        with open(self.logs / f"{name}.log", "w") as log:
            log.write("ecgtool " + " ".join(map(str, args)) + "\n")
            log.flush()
            res = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, stderr=log, env=env, check=False)
        self.seconds[name] = time.perf_counter() - t0
        if res.returncode:
            raise SystemExit(f"{name} failed (status {res.returncode}); see {self.logs / f'{name}.log'}")
        print(f"  {name:<40s} {self.seconds[name]:6.1f} s  load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
        return res.stdout


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default=",".join(ALL_METHODS), help="comma-separated, of " + ", ".join(ALL_METHODS))
    ap.add_argument("--fractions", default="0.01,0.1,1.0", help="label fractions for probe and fine-tune")
    ap.add_argument("--records", type=int, default=None, help="synthetic records (default 2000; --full 10000)")
    ap.add_argument("--unlabelled", type=int, default=0,
                    help="extra synthetic records (another seed: other patients) pooled into pretraining only")
    ap.add_argument("--pretrain-epochs", type=int, default=None, help="override every method's pretraining epochs")
    ap.add_argument("--pretrain-lr", type=float, default=None,
                    help="pretraining lr (default 1e-3 on CPU; --full: the method's reference lr)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="downstream epochs at 100 %% labels (default 3; --full 30); a fraction F trains "
                         "round(epochs / sqrt(F)) epochs, at most --max-epochs")
    ap.add_argument("--max-epochs", type=int, default=None, help="default 10; --full 100")
    ap.add_argument("--probe-lr", type=float, default=1e-2, help="lr of the linear probes (pretrained and random)")
    ap.add_argument("--lr", type=float, default=1e-3, help="lr of fine-tuning and scratch training")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--bootstrap", type=int, default=200, help="eval --bootstrap resamples")
    ap.add_argument("--jobs", type=int, default=2, help="commands run at once (each with --threads 2/jobs on CPU)")
    ap.add_argument("--full", action="store_true", help="the GPU configuration (reference backbones, longer)")
    ap.add_argument("--device", default=None, help="passed to every command (default cpu; --full cuda)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="working directory (default: a temporary one, removed)")
    ap.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    a = ap.parse_args(argv)

    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown:
        ap.error(f"unknown methods {unknown}; choose from {', '.join(ALL_METHODS)}")
    fractions = [float(f) for f in a.fractions.split(",")]
    config = FULL if a.full else QUICK
    records = a.records or (10000 if a.full else 2000)
    epochs, max_epochs = a.epochs or (30 if a.full else 3), a.max_epochs or (100 if a.full else 10)
    device = a.device or ("cuda" if a.full else "cpu")
    threads = 0 if device != "cpu" else max(1, (os.cpu_count() or 2) // a.jobs)
    gpu = ["--precision", "bf16"] if device.startswith("cuda") else []
    pool = ThreadPoolExecutor(max_workers=a.jobs)

    work, tmp = work_dir(a.work, "ecg_pretrain_protocol_")
    print(f"work dir {work}", file=sys.stderr)
    run = Runner(work, device, threads)
    t_start = time.perf_counter()
    loads = [os.getloadavg()]

    # -- data: generate, prep, split (patient-wise); optional unlabelled pool ------------------------------------
    splits = work / "splits"
    if not (splits / "test.zarr").exists():
        run("fetch", "fetch", "synthetic", "-o", work / "raw", "--num-records", records, "--fs", 100, "--seed", a.seed,
            "--overwrite")
        run("prep", "prep", work / "raw", "-o", work / "syn.zarr", "--fs", 100, "--seconds", 10, "--overwrite")
        run("split", "split", work / "syn.zarr", "-o", splits, "--seed", a.seed, "--overwrite")
    train, val, test = splits / "train.zarr", splits / "val.zarr", splits / "test.zarr"
    pretrain_stores = [train]
    if a.unlabelled:
        unl = work / "unlabelled.zarr"
        if not unl.exists():
            run("fetch-unlabelled", "fetch", "synthetic", "-o", work / "raw-unlabelled", "--num-records", a.unlabelled,
                "--fs", 100, "--seed", a.seed + 1000, "--overwrite")
            run("prep-unlabelled", "prep", work / "raw-unlabelled", "-o", unl, "--fs", 100, "--seconds", 10,
                "--overwrite")
        pretrain_stores.append(unl)
    cpu = ["--device", device, "--threads", threads, "--workers", 1] + gpu

    # -- the downstream configurations: one per (backbone, model args, crop) ---------------------------------------
    def crop_of(method: str) -> int:
        """The encoder's input samples, which train --crop must repeat: CLOCS CMSC/CMSMLC views are half a
        10 s record, CMLC's window is 5 s (both 500 samples at 100 Hz); ST-MEM pretrains on 9 s (900)."""
        return 500 if method.startswith("clocs-") else 900 if method == "st-mem" else 0

    def key_of(method: str) -> str:
        backbone, margs = config[method][:2]
        crop = crop_of(method)
        return backbone + "".join(f"-{k}{v}" for k, v in margs.items()) + (f"-crop{crop}" if crop else "")

    def train_args(method: str, fraction: float, out: Path) -> list:
        backbone, margs = config[method][:2]
        n = min(max_epochs, max(1, round(epochs / math.sqrt(fraction))))
        crop = crop_of(method)
        return ["train", backbone, train, "--val", val, "-o", out, "--label-fraction", fraction, "--epochs", n,
                "--batch-size", a.batch_size, "--seed", a.seed, *_args("--model-arg", margs),
                *(["--crop", crop] if crop else []), *cpu, "--overwrite"]

    def pretrain(method: str) -> Path:
        backbone, margs, mkw, n = config[method]
        out = work / f"{method}.enc.ckpt"
        lr = a.pretrain_lr or (None if a.full else 1e-3)
        run(f"pretrain-{method}", "pretrain", method, *pretrain_stores, "-o", out, "--backbone", backbone,
            *_args("--model-arg", margs), *_args("--method-arg", mkw), "--epochs", a.pretrain_epochs or n,
            "--batch-size", a.batch_size if not a.full else 256, *(["--lr", lr] if lr else []), "--seed", a.seed,
            *cpu, "--overwrite")
        return out

    def tag(f: float) -> str:
        return f"{f:g}".replace(".", "p")

    jobs = []  # (name, command args)
    baselines = {}
    for m in methods:
        baselines.setdefault(key_of(m), m)
    for key, m in baselines.items():
        for f in fractions:
            jobs.append((f"random-probe-{key}-{tag(f)}", train_args(m, f, work / f"random-probe-{key}-{tag(f)}.ckpt")
                         + ["--init", "random", "--freeze-encoder", "--lr", a.probe_lr]))
            jobs.append((f"scratch-{key}-{tag(f)}", train_args(m, f, work / f"scratch-{key}-{tag(f)}.ckpt")
                         + ["--lr", a.lr]))

    # pretraining and the baselines first (each command its own job), then the downstream runs, then the evals
    print(f"pretraining {', '.join(methods)}; {len(jobs)} baseline runs", file=sys.stderr)
    pretrained = {m: pool.submit(pretrain, m) for m in methods}
    baseline_runs = [pool.submit(run, name, *args) for name, args in jobs]
    encoders = {m: fut.result() for m, fut in pretrained.items()}
    loads.append(os.getloadavg())
    jobs = []
    for m in methods:
        for f in fractions:
            jobs.append((f"probe-{m}-{tag(f)}", train_args(m, f, work / f"probe-{m}-{tag(f)}.ckpt")
                         + ["--init", encoders[m], "--freeze-encoder", "--lr", a.probe_lr]))
            jobs.append((f"finetune-{m}-{tag(f)}", train_args(m, f, work / f"finetune-{m}-{tag(f)}.ckpt")
                         + ["--init", encoders[m], "--lr", a.lr]))
    list(pool.map(lambda job: run(job[0], *job[1]), jobs))
    for fut in baseline_runs:
        fut.result()
    loads.append(os.getloadavg())

    def evaluate(pair: tuple[str, str]) -> tuple[str, dict]:
        first, other = pair
        out = run(f"eval-{first}", "eval", work / f"{first}.ckpt", test, "--compare", work / f"{other}.ckpt",
                  "--bootstrap", a.bootstrap, "--seed", a.seed, "--device", device, "--json", capture=True)
        r = json.loads(out)
        auc, ci = r["macro"]["auroc"], r["bootstrap"]["intervals"]["auroc"]
        d = r["comparison"]["difference"]["auroc"]
        return first, {"auc": auc, "low": ci["low"], "high": ci["high"], "vs": other,
                       "diff": d["difference"], "diff_low": d["low"], "diff_high": d["high"], "p": d["p_value"]}

    pairs = []  # the baselines' own intervals: each against the other, on the same resamples
    for key in baselines:
        for f in fractions:
            pairs.append((f"random-probe-{key}-{tag(f)}", f"scratch-{key}-{tag(f)}"))
            pairs.append((f"scratch-{key}-{tag(f)}", f"random-probe-{key}-{tag(f)}"))
    for m in methods:
        for f in fractions:
            pairs.append((f"probe-{m}-{tag(f)}", f"random-probe-{key_of(m)}-{tag(f)}"))
            pairs.append((f"finetune-{m}-{tag(f)}", f"scratch-{key_of(m)}-{tag(f)}"))
    results = dict(pool.map(evaluate, pairs))
    loads.append(os.getloadavg())
    wall = time.perf_counter() - t_start

    # -- the table ---------------------------------------------------------------------------------------------------
    sys.path.insert(0, str(ROOT))
    from ecgtool.data.store import open_store  # only for the header's counts

    n_train, n_test = len(open_store(train)), len(open_store(test))

    def cell(r: dict) -> str:
        return f"{r['auc']:.3f} [{r['low']:.3f}, {r['high']:.3f}]"

    def diff(r: dict) -> str:
        star = "*" if r["diff_low"] > 0 or r["diff_high"] < 0 else " "
        return f"{r['diff']:+.3f} [{r['diff_low']:+.3f}, {r['diff_high']:+.3f}]{star}"

    print(f"\nPretraining protocol on synthetic data: {records} records (train {n_train}, test {n_test}), 100 Hz, 10 s; "
          f"pretraining on train{' + %d unlabelled' % a.unlabelled if a.unlabelled else ''}; device {device}")
    for m in methods:
        backbone, margs, mkw, n = config[m]
        print(f"  {m:<13s} {backbone} {json.dumps(margs)} method {json.dumps(mkw)}, {a.pretrain_epochs or n} epochs"
              f"{', crop %d' % crop_of(m) if crop_of(m) else ''}")
    print(f"  downstream: {epochs} epochs at 100 % labels, round({epochs}/sqrt(F)) (at most {max_epochs}) at F; "
          f"probe lr {a.probe_lr:g}, fine-tune/scratch lr {a.lr:g}; best epoch on val; "
          f"test macro AUC [95 % bootstrap CI, {a.bootstrap} resamples]; * = paired CI excludes 0")
    head = (f"{'method':<13s} {'labels':>6s} {'probe':>22s} {'random probe':>22s} {'probe - random':>25s} "
            f"{'fine-tune':>22s} {'scratch':>22s} {'fine-tune - scratch':>25s}")
    print(head)
    print("-" * len(head))
    for m in methods:
        for f in fractions:
            p, ft = results[f"probe-{m}-{tag(f)}"], results[f"finetune-{m}-{tag(f)}"]
            rp, sc = results[f"random-probe-{key_of(m)}-{tag(f)}"], results[f"scratch-{key_of(m)}-{tag(f)}"]
            print(f"{m:<13s} {f:>6.0%} {cell(p):>22s} {cell(rp):>22s} {diff(p):>25s} {cell(ft):>22s} {cell(sc):>22s} "
                  f"{diff(ft):>25s}")
    pre = {m: run.seconds[f"pretrain-{m}"] for m in methods}
    print("pretraining seconds: " + ", ".join(f"{m} {s:.0f}" for m, s in pre.items()))
    print(f"wall {wall / 60:.1f} min with {a.jobs} jobs at once; load average (1/5/15 min) at start "
          f"{'/'.join(f'{x:.2f}' for x in loads[0])}, after pretraining {'/'.join(f'{x:.2f}' for x in loads[1])}, "
          f"after training {'/'.join(f'{x:.2f}' for x in loads[2])}, at the end {'/'.join(f'{x:.2f}' for x in loads[3])}")
    if a.json:
        print(json.dumps({"results": results, "seconds": run.seconds, "wall": wall, "loads": loads}, indent=2))
    pool.shutdown()
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
