"""How hard is the synthetic dataset?  Linear baseline vs a 1D ResNet.

Generates the default synthetic dataset with the ecgtool CLI, prepares and
splits it exactly as a user would, then trains

* (a) a one-vs-rest logistic regression on the raw (band-passed, z-scored)
  samples of the train split, flattened to 12 x 1000 features, and
* (b) ``resnet18`` with ``ecgtool train``,

and prints macro and per-class test AUCs side by side.  The issue's target:
a linear classifier must not solve the task (macro AUC <= 0.70) while a 1D
ResNet reaches a high but not perfect macro AUC (roughly 0.93-0.97).

    python benchmarks/synthetic_difficulty.py [--records 2000] [--epochs 8] [--work DIR]

Runs in about 3-4 minutes on 2 CPU cores at the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from workdir import work_dir  # benchmarks/workdir.py: the scripts run from this directory


def _cli(*args: str, capture: bool = False) -> str:
    cmd = [sys.executable, "-m", "ecgtool", *args]
    res = subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE if capture else subprocess.DEVNULL)
    return res.stdout if capture else ""


def _timed(label: str, fn, timings: dict):
    t0 = time.perf_counter()
    out = fn()
    timings[label] = time.perf_counter() - t0
    print(f"  {label:<10s} {timings[label]:6.1f} s", file=sys.stderr, flush=True)
    return out


def _auc_table(y: np.ndarray, p: np.ndarray, classes: list[str]) -> dict:
    from sklearn.metrics import roc_auc_score

    per = {}
    for k, c in enumerate(classes):
        pos = y[:, k].sum()
        per[c] = float(roc_auc_score(y[:, k], p[:, k])) if 0 < pos < len(y) else float("nan")
    vals = [v for v in per.values() if np.isfinite(v)]
    return {"macro": float(np.mean(vals)), "per_class": per}


def linear_baseline(train_path: Path, test_path: Path, seed: int = 0) -> dict:
    """One-vs-rest logistic regression on the flattened raw samples."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from ecgtool.data.store import open_store

    tr, te = open_store(train_path), open_store(test_path)
    xtr = tr.rows().reshape(len(tr), -1)
    xte = te.rows().reshape(len(te), -1)
    ytr, yte = np.asarray(tr.labels).astype(int), np.asarray(te.labels).astype(int)
    clf = OneVsRestClassifier(
        LogisticRegression(C=0.01, max_iter=300, random_state=seed), n_jobs=min(2, os.cpu_count() or 1)
    )
    clf.fit(xtr, ytr)
    return _auc_table(yte, clf.predict_proba(xte), tr.classes)


def resnet(train_path: Path, val_path: Path, test_path: Path, ckpt: Path, epochs: int, seed: int) -> dict:
    _cli("train", "resnet18", str(train_path), "--val", str(val_path), "-o", str(ckpt),
         "--epochs", str(epochs), "--seed", str(seed), "--overwrite")
    report = json.loads(_cli("eval", str(ckpt), str(test_path), "--json", capture=True))
    per = {c["class"]: (float("nan") if c["auroc"] is None else float(c["auroc"])) for c in report["per_class"]}
    return {"macro": float(report["macro"]["auroc"]), "per_class": per}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--snr", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0, help="dataset seed")
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="working directory (default: a temporary one)")
    ap.add_argument("--reuse", action="store_true", help="reuse raw/prepared data already in --work")
    ap.add_argument("--skip-resnet", action="store_true")
    ap.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    a = ap.parse_args(argv)

    work, tmp = work_dir(a.work, "ecg_difficulty_")
    raw, store, splits = work / "raw", work / "syn.zarr", work / "splits"
    timings: dict[str, float] = {}
    print(f"work dir {work}", file=sys.stderr)

    if not (a.reuse and raw.exists()):
        _timed("generate", lambda: _cli("fetch", "synthetic", "-o", str(raw), "--records", str(a.records),
                                        "--fs", "500", "--snr", str(a.snr), "--seed", str(a.seed), "--overwrite"),
               timings)
    if not (a.reuse and store.exists()):
        _timed("prep", lambda: _cli("prep", str(raw), "-o", str(store), "--fs", "100", "--workers", "2",
                                    "--overwrite"), timings)
    if not (a.reuse and (splits / "test.zarr").exists()):
        _timed("split", lambda: _cli("split", str(store), "-o", str(splits), "--overwrite"), timings)
    tr, va, te = splits / "train.zarr", splits / "val.zarr", splits / "test.zarr"

    results = {}
    results["logreg"] = _timed("logreg", lambda: linear_baseline(tr, te, a.train_seed), timings)
    if not a.skip_resnet:
        results["resnet18"] = _timed(
            "resnet18", lambda: resnet(tr, va, te, work / "r18.ckpt", a.epochs, a.train_seed), timings
        )

    from ecgtool.data.store import open_store

    test = open_store(te)
    classes = test.classes
    support = test.class_counts()
    names = list(results)
    w = 9
    print(f"\nSynthetic difficulty: {a.records} records, SNR {a.snr:g} dB, seed {a.seed}, "
          f"test split {len(test)} records; resnet18 {a.epochs} epochs")
    head = f"{'class':<8}{'support':>8}" + "".join(f"{n:>{w}}" for n in names)
    if len(names) == 2:
        head += f"{'diff':>{w}}"
    print(head)
    print("-" * len(head))
    for c in classes + ["macro"]:
        vals = [results[n]["macro"] if c == "macro" else results[n]["per_class"][c] for n in names]
        sup = len(test) if c == "macro" else support[c]
        row = f"{c:<8}{sup:>8}" + "".join(f"{v:>{w}.3f}" for v in vals)
        if len(names) == 2:
            row += f"{vals[1] - vals[0]:>+{w}.3f}"
        print(row)
    if len(names) == 2:
        lin, net = results["logreg"]["macro"], results["resnet18"]["macro"]
        # ratio of the discriminative margins above chance (undefined when logreg is at chance)
        ratio = f"{(net - 0.5) / (lin - 0.5):.1f}" if lin - 0.5 > 0.02 else "n/a (logreg at chance)"
        print(f"\nresnet18 - logreg macro AUC: {net - lin:+.3f};  resnet18/logreg macro AUC: {net / lin:.2f};  "
              f"(AUC-0.5) ratio: {ratio}")
    print("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    if a.json:
        print(json.dumps({"results": results, "timings": timings, "records": a.records, "epochs": a.epochs}, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
