"""Reduced-lead distillation on the synthetic data (issue 14): does a distilled lead-I student beat one trained alone?

    python benchmarks/distill_protocol.py [--records 2000] [--epochs 8] [--work DIR] [--mvms-pair] [--full]

Generates the synthetic dataset with the ecgtool CLI and prepares it twice from the same raw records: a 12-lead
store and a lead-I store (``prep --leads I``). Both are split patient-wise with the same seed and folds; the
script checks that the record ids of every split are identical in the two (the split depends only on the
records' patients and labels, which the two stores share), so the student trained alone sees exactly the
records the distilled students see. Then, all through the CLI:

* the teacher: ``train TEACHER`` on the 12-lead train split;
* the student alone: ``train STUDENT`` on the lead-I train split (a plain supervised run that never reads the
  teacher);
* the student distilled by each method: ``distill TEACHER.ckpt train12 --student STUDENT --student-leads I
  --method kd|mvms|mvkt`` (the same architecture, seed, optimiser and epochs as the student alone);
* optionally (``--mvms-pair``, on by ``--full``) the MVMS-ECG paper's pairing: an ``mvms_ecg`` teacher and an
  ``mvms_single`` lead-I student, alone and distilled by ``--method mvms``;

and evaluates each student on the same 12-lead test store (the student selects lead I by name) with
``eval STUDENT test12 --compare ALONE`` (paired bootstrap: the same resamples for both checkpoints). Prints one
table: method, test macro AUROC with its interval, the difference to the student alone with its interval and
p-value, and the teacher's AUROC for reference; plus wall times and the machine's load.

The CPU defaults (2000 records generated at 500 Hz and prepared at 100 Hz, 10 s; a resnet18 base_width 32
teacher, a resnet18 base_width 16 student, 8 epochs) took 27 minutes on 2 cores shared with other work (load
5-8). ``--full`` is for a GPU node (10000 records, 30 epochs, ``--device cuda --precision bf16``, a resnet18
teacher at full width and a base_width 32 student, the MVMS pairing included; its students read lead I too,
where the MVMS paper's student reads all 12 leads).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from workdir import work_dir  # benchmarks/workdir.py: the scripts run from this directory

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("kd", "mvms", "mvkt")


def _cli(*args: str, capture: bool = False, log: list | None = None) -> str:
    cmd = [sys.executable, "-m", "ecgtool", *args]
    if log is not None:
        log.append("ecgtool " + shlex.join(args))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    res = subprocess.run(cmd, check=True, text=True, env=env, stdout=subprocess.PIPE if capture else subprocess.DEVNULL)
    return res.stdout if capture else ""


def _timed(label: str, fn, timings: dict, loads: dict):
    t0 = time.perf_counter()
    out = fn()
    timings[label] = time.perf_counter() - t0
    loads[label] = os.getloadavg()[0]
    print(f"  {label:<22s} {timings[label]:7.1f} s  (load {loads[label]:.2f})", file=sys.stderr, flush=True)
    return out


def _same_splits(splits12: Path, splits1: Path) -> dict:
    """The record ids of each split, identical in the 12-lead and the lead-I store (or an error)."""
    from ecgtool.data.store import open_store

    sizes = {}
    for part in ("train", "val", "test"):
        a, b = open_store(splits12 / f"{part}.zarr"), open_store(splits1 / f"{part}.zarr")
        ids_a, ids_b = [str(r) for r in a.record_id], [str(r) for r in b.record_id]
        if ids_a != ids_b:
            raise SystemExit(f"the {part} splits of the 12-lead and the lead-I store differ "
                             f"({len(set(ids_a) ^ set(ids_b))} records in one only): the comparison would not be paired")
        if list(b.leads) != ["I"]:
            raise SystemExit(f"the lead-I store holds leads {list(b.leads)}")
        sizes[part] = len(ids_a)
    return sizes


def _eval(ckpt: Path, test: Path, compare: Path | None, bootstrap: int, device: str, log: list) -> dict:
    args = ["eval", str(ckpt), str(test), "--json", "--bootstrap", str(bootstrap), "--device", device]
    if compare is not None:
        args += ["--compare", str(compare)]
    report = json.loads(_cli(*args, capture=True, log=log))
    ci = report.get("bootstrap", {}).get("intervals", {}).get("auroc", {})
    row = {"auroc": report["macro"]["auroc"], "low": ci.get("low"), "high": ci.get("high"),
           "per_class": {c["class"]: c["auroc"] for c in report["per_class"]}}
    if compare is not None:
        d = report["comparison"].get("difference", {}).get("auroc", {})
        row.update(alone=report["comparison"]["macro"]["auroc"], diff=d.get("difference"), diff_low=d.get("low"),
                   diff_high=d.get("high"), p=d.get("p_value"))
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=None, help="synthetic records (default 2000; --full 10000)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of every run (default 8; --full 30)")
    ap.add_argument("--teacher", default="resnet18", help="12-lead teacher model")
    ap.add_argument("--teacher-arg", action="append", default=None, metavar="KEY=VALUE",
                    help="teacher --model-arg (default for resnet18: base_width=32; --full: none, i.e. 64)")
    ap.add_argument("--student", default="resnet18", help="lead-I student model (alone and distilled)")
    ap.add_argument("--student-arg", action="append", default=None, metavar="KEY=VALUE",
                    help="student --model-arg (default for resnet18: base_width=16; --full: base_width=32)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated distillation methods")
    ap.add_argument("--distill-arg", action="append", default=[], metavar="OPTION",
                    help="extra distill option, e.g. --distill-arg=--temperature=4 (repeatable; every method)")
    ap.add_argument("--mvms-pair", action="store_true", help="also mvms_ecg teacher -> mvms_single student (slow on CPU)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="dataset, split and training seed")
    ap.add_argument("--train-seeds", default=None, metavar="S,S,…",
                    help="the students' training seeds, each student alone and distilled once per seed, compared "
                         "seed by seed (default: --seed); the teacher is trained once, with --seed")
    ap.add_argument("--label-fraction", type=float, default=1.0,
                    help="the students train on this fraction of the training records (train/distill --label-fraction; "
                         "the teacher on all of them)")
    ap.add_argument("--device", default=None, help="cpu, cuda, … (default cpu; --full cuda)")
    ap.add_argument("--precision", default=None, help="fp32 or bf16 (default fp32; --full bf16)")
    ap.add_argument("--full", action="store_true", help="the GPU-node protocol: 10000 records, 30 epochs, cuda, bf16, MVMS pair")
    ap.add_argument("--work", type=Path, default=None, help="working directory, reused when present (default: a temporary one)")
    ap.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    a = ap.parse_args(argv)

    records = a.records or (10000 if a.full else 2000)
    epochs = a.epochs or (30 if a.full else 8)
    device = a.device or ("cuda" if a.full else "cpu")
    precision = a.precision or ("bf16" if a.full else "fp32")
    mvms_pair = a.mvms_pair or a.full
    teacher_args = a.teacher_arg if a.teacher_arg is not None else (
        ["base_width=32"] if a.teacher == "resnet18" and not a.full else [])
    student_args = a.student_arg if a.student_arg is not None else (
        [f"base_width={32 if a.full else 16}"] if a.student == "resnet18" else [])
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    seeds = [int(x) for x in a.train_seeds.split(",")] if a.train_seeds else [a.seed]
    fraction = "" if a.label_fraction == 1.0 else f"-f{round(a.label_fraction * 100)}"

    work, tmp = work_dir(a.work, "ecg_distill_")
    print(f"work dir {work}; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at start", file=sys.stderr)
    timings: dict[str, float] = {}
    loads: dict[str, float] = {}
    log: list[str] = []
    start = time.perf_counter()
    load_start = os.getloadavg()

    raw = work / "raw"
    s12, s1, sp12, sp1 = work / "syn12.zarr", work / "synI.zarr", work / "splits12", work / "splitsI"
    if not raw.exists():
        _timed("generate", lambda: _cli("fetch", "synthetic", "-o", str(raw), "--num-records", str(records), "--fs", "500",
                                        "--seconds", "10", "--seed", str(a.seed), log=log), timings, loads)
    workers = str(min(8, os.cpu_count() or 1))
    if not s12.exists():
        _timed("prep 12 leads", lambda: _cli("prep", str(raw), "-o", str(s12), "--fs", "100", "--seconds", "10",
                                             "--jobs", workers, log=log), timings, loads)
    if not s1.exists():
        _timed("prep lead I", lambda: _cli("prep", str(raw), "-o", str(s1), "--fs", "100", "--seconds", "10",
                                           "--leads", "I", "--jobs", workers, log=log), timings, loads)
    for store, splits in ((s12, sp12), (s1, sp1)):
        if not (splits / "test.zarr").exists():
            _timed(f"split {store.stem}", lambda: _cli("split", str(store), "-o", str(splits), "--seed", str(a.seed),
                                                      "--overwrite", log=log), timings, loads)
    sizes = _same_splits(sp12, sp1)
    train12, val12, test12 = (sp12 / f"{p}.zarr" for p in ("train", "val", "test"))
    train1, val1 = sp1 / "train.zarr", sp1 / "val.zarr"

    common = ["--epochs", str(epochs), "--batch-size", str(a.batch_size), "--lr", str(a.lr), "--device", device,
              "--precision", precision, "--overwrite"]
    students = ["--label-fraction", str(a.label_fraction)] if fraction else []

    def margs(values):
        return [x for v in values for x in ("--model-arg", v)]

    def train(model, margs_, tr, va, out, seed, extra=()):
        if not out.exists():
            _timed(out.stem, lambda: _cli("train", model, str(tr), "--val", str(va), "-o", str(out), *margs_, *common,
                                          "--seed", str(seed), *extra, log=log), timings, loads)

    def distill(teacher_ckpt, student, margs_, method, out, seed):
        if not out.exists():
            _timed(out.stem, lambda: _cli("distill", str(teacher_ckpt), str(train12), "--val", str(val12), "--student",
                                          student, "--student-leads", "I", "--method", method, "-o", str(out), *margs_,
                                          *a.distill_arg, *common, "--seed", str(seed), *students, log=log), timings, loads)

    def student_ckpt(prefix, name, seed):  # the first runs' names (seed = --seed, all labels) are kept
        return work / f"{prefix}{name}{fraction}{'' if seed == a.seed else f'-s{seed}'}.ckpt"

    # (label, teacher model, teacher args, student model, student args, methods)
    pairs = [("", a.teacher, teacher_args, a.student, student_args, methods)]
    if mvms_pair:
        pairs.append(("mvms_", "mvms_ecg", [], "mvms_single", [], ["mvms"]))
    results = []
    for prefix, teacher, targs, student, sargs, ms in pairs:
        tckpt = work / f"{prefix}teacher.ckpt"
        train(teacher, margs(targs), train12, val12, tckpt, a.seed)
        teacher_row = _timed(f"eval {prefix}teacher", lambda: _eval(tckpt, test12, None, a.bootstrap, device, log),
                             timings, loads)

        def named(model, margs_):
            return model + (f"({','.join(margs_)})" if margs_ else "")

        pair = f"{named(teacher, targs)} -> {named(student, sargs)}"
        results.append({"pair": pair, "method": "teacher (12 leads)", **teacher_row})
        for seed in seeds:
            tag = "" if len(seeds) == 1 else f" s{seed}"
            alone = student_ckpt(prefix, "alone", seed)
            train(student, margs(sargs), train1, val1, alone, seed, students)
            for m in ms:
                distill(tckpt, student, margs(sargs), m, student_ckpt(prefix, m, seed), seed)
            alone_row = _timed(f"eval {alone.stem}", lambda: _eval(alone, test12, None, a.bootstrap, device, log),
                               timings, loads)
            results.append({"pair": pair, "method": f"alone (lead I){tag}", "seed": seed, **alone_row})
            for m in ms:
                ckpt = student_ckpt(prefix, m, seed)
                row = _timed(f"eval {ckpt.stem}", lambda: _eval(ckpt, test12, alone, a.bootstrap, device, log),
                             timings, loads)
                results.append({"pair": pair, "method": f"{m} (lead I){tag}", "seed": seed, "distilled": m,
                                "teacher_auroc": teacher_row["auroc"], **row})
    wall = time.perf_counter() - start

    def ci(v, lo, hi, signed=False):
        f = "{:+.3f}" if signed else "{:.3f}"
        return "—" if v is None else f.format(v) + ("" if lo is None else f" [{f.format(lo)}, {f.format(hi)}]")

    print(f"\nDistillation protocol on synthetic data: {records} records (500 Hz → 100 Hz, 10 s), patient-wise split "
          f"{sizes['train']}/{sizes['val']}/{sizes['test']} (identical record ids in the 12-lead and lead-I stores), "
          f"{epochs} epochs, batch {a.batch_size}, AdamW lr {a.lr:g} cosine, seed {a.seed}"
          + (f", students' seeds {','.join(map(str, seeds))}" if len(seeds) > 1 else "")
          + (f", students on {a.label_fraction:g} of the labels" if fraction else "") + f", {device} {precision}; "
          f"test macro AUROC, {a.bootstrap} paired bootstrap resamples, 95% intervals"
          + (f"; distill options {' '.join(a.distill_arg)}" if a.distill_arg else ""))
    pw = max(len(r["pair"]) for r in results) + 2
    mw = max(len(r["method"]) for r in results) + 2
    head = f"{'teacher -> student':<{pw}}{'method':<{mw}}{'macro AUROC [CI]':<26}{'vs alone [CI]':<28}{'p':>7}{'teacher':>9}"
    print(head)
    print("-" * len(head))
    for r in results:
        diff = ci(r.get("diff"), r.get("diff_low"), r.get("diff_high"), signed=True) if "diff" in r else ""
        p = "" if r.get("p") is None else (f"<{1 / a.bootstrap:.3g}" if r["p"] == 0 else f"{r['p']:.3f}")
        teacher = f"{r['teacher_auroc']:.3f}" if "teacher_auroc" in r else ""
        print(f"{r['pair']:<{pw}}{r['method']:<{mw}}{ci(r['auroc'], r['low'], r['high']):<26}{diff:<28}{p:>7}{teacher:>9}")
    if len(seeds) > 1:  # the difference to the student alone, seed by seed
        print(f"\nvs alone, seed by seed (* interval above zero)\n{'method':<12}"
              + "".join(f"{f'seed {s}':>12}" for s in seeds) + f"{'mean':>10}")
        for pair in dict.fromkeys(r["pair"] for r in results):
            for m in dict.fromkeys(r["distilled"] for r in results if r["pair"] == pair and "distilled" in r):
                rows = [r for r in results if r["pair"] == pair and r.get("distilled") == m]
                cells = "".join(f"{r['diff']:>+11.3f}{'*' if (r['diff_low'] or 0) > 0 else ' '}" for r in rows)
                print(f"{m:<12}{cells}{sum(r['diff'] for r in rows) / len(rows):>+10.3f}")
    classes = list(results[0]["per_class"])
    print("\nper-class test AUROC")
    print(f"{'method':<30}" + "".join(f"{c:>7}" for c in classes))
    for r in results:
        model = r["pair"].split(" -> ")[0 if r["method"].startswith("teacher") else 1].split("(")[0]
        label = (model + " " if r["pair"] != results[0]["pair"] else "") + r["method"]
        print(f"{label[:29]:<30}" + "".join("    —  " if r["per_class"][c] is None else f"{r['per_class'][c]:>7.3f}"
                                           for c in classes))
    load_end = os.getloadavg()
    print(f"\nwall {wall / 60:.1f} min on {os.cpu_count()} CPUs; load average (1/5/15 min) at start "
          f"{'/'.join(f'{x:.2f}' for x in load_start)}, at end {'/'.join(f'{x:.2f}' for x in load_end)}")
    print("timings: " + ", ".join(f"{k} {v:.0f} s (load {loads[k]:.1f})" for k, v in timings.items()))
    if a.json:
        print(json.dumps({"results": results, "timings": timings, "loads": loads, "records": records, "epochs": epochs,
                          "commands": log, "wall_s": wall}, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
