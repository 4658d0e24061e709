"""Every registered model on the synthetic dataset, for the same short budget.

    python benchmarks/model_zoo.py [--records 1000] [--epochs 3] [--models 'resnet*'] [--work DIR]

Generates the synthetic dataset (ecgtool's generator, 12 leads, 10 s at 100 Hz),
splits it patient-wise, then trains each model with the same optimiser, batch
size and number of epochs through ecgtool's own training loop and evaluates it on
the test split. Prints one row per model: parameters, MACs per record (thop),
MACs including the attention matrix products (FlopCounterMode), training
throughput (records/s, wall clock over the epochs, validation included), test
macro AUC, and the machine's 1-minute load after the model's run. The budget is deliberately small: the table
compares cost and early learning, not converged accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_data(work: Path, records: int, seed: int) -> Path:
    from ecgtool.data import synthetic
    from ecgtool.data.prep import run_prep
    from ecgtool.data.readers import open_reader
    from ecgtool.data.split import folds_for_ratios, plan_split, run_split
    from ecgtool.data.store import open_store
    from ecgtool.data.transforms import PrepConfig

    splits = work / "splits"
    if (splits / "test.zarr").exists():
        return splits
    raw = work / "raw"
    if not raw.exists():
        raw.mkdir(parents=True)
        synthetic.write_dataset(raw, synthetic.SyntheticConfig(n_records=records, fs=500, seed=seed))
    store = work / "synthetic.zarr"
    if not store.exists():
        run_prep(open_reader(raw), store, PrepConfig(fs=100, seconds=10), workers=2)
    k, lists = folds_for_ratios([0.8, 0.1, 0.1])
    splits.mkdir(exist_ok=True)
    s = open_store(store)
    run_split(s, splits, plan_split(s, lists, k, seed, use_official=False), overwrite=True)
    return splits


def bench_model(name: str, splits: Path, work: Path, epochs: int, batch_size: int, seed: int) -> dict:
    from ecgtool.data.store import open_store
    from ecgtool.eval.evaluate import run_eval
    from ecgtool.eval.options import EvalOptions
    from ecgtool.models import create_model
    from ecgtool.profile.measure import count_macs, count_parameters
    from ecgtool.train.loop import TrainArgs, Trainer

    store = open_store(splits / "train.zarr")
    model = create_model(name, num_classes=len(store.classes), num_leads=len(store.leads), num_samples=store.n_samples)
    params = count_parameters(model)["total"]
    from ecgtool.data.views import data_view, extra_channels
    from ecgtool.models import model_info

    channels = len(store.leads) + extra_channels(data_view(model_info(name)["input_view"]))
    counted = count_macs(model, (1, channels, store.n_samples))
    macs, full_macs = counted["macs"], counted["macs_with_attention"]  # thop's, and with attention products
    out = work / f"{name}.ckpt"
    args = TrainArgs(model=name, epochs=epochs, batch_size=batch_size, lr=1e-3, seed=seed, device="cpu")
    start = time.perf_counter()
    Trainer(args, splits / "train.zarr", splits / "val.zarr", out, overwrite=True).run()
    seconds = time.perf_counter() - start
    auc = run_eval(out, splits / "test.zarr", "cpu", EvalOptions(bootstrap=0)).report["macro"]["auroc"]
    return {"model": name, "params": params, "macs": macs, "macs_with_attention": full_macs,
            "train_records_per_s": epochs * len(store) / seconds, "train_seconds": seconds, "test_macro_auc": auc,
            "load_1min": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--models", default="*", help="fnmatch patterns over the registry, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="keep data and checkpoints here (reused when present)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    from ecgtool.models import list_models

    work = a.work or Path(tempfile.mkdtemp(prefix="ecgtool-zoo-"))
    work.mkdir(parents=True, exist_ok=True)
    splits = build_data(work, a.records, a.seed)
    rows = []
    names = sorted({n for pattern in a.models.split(",") for n in list_models(pattern.strip())})
    for name in names:
        print(f"training {name} …", file=sys.stderr, flush=True)
        rows.append(bench_model(name, splits, work, a.epochs, a.batch_size, a.seed))
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"Model zoo on synthetic data: {a.records} records, 12 leads × 1000 samples, {a.epochs} epochs, batch {a.batch_size}, CPU")
    print(f"machine: {os.cpu_count()} CPUs; load (1 min) is sampled after each model's run")
    print(f"{'model':<28}{'params':>12}{'MACs (M)':>10}{'+attn (M)':>11}{'train rec/s':>13}{'test AUC':>10}{'load':>6}")
    for r in rows:
        print(f"{r['model']:<28}{r['params']:>12,}{r['macs'] / 1e6:>10.1f}{r['macs_with_attention'] / 1e6:>11.1f}"
              f"{r['train_records_per_s']:>13.1f}{r['test_macro_auc']:>10.3f}{r['load_1min']:>6.1f}")


if __name__ == "__main__":
    main()
