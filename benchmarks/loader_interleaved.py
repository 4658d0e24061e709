"""The stream loader against the memmap baseline, epoch for epoch, in one process.

    python benchmarks/loader_interleaved.py --work /tmp/speedw [--epochs 16]

``speed.py``'s loader section measures each loader a few times in turn, and the memmap
baseline (c) moves between runs by up to 3× on a shared VM. This script alternates the two
on the same store and ``.npy`` (the files ``speed.py --work DIR`` leaves there): one shuffled
stream epoch of ``ChunkLoader`` (workers 2, batch 64, one loader kept from epoch to epoch, as
``train`` keeps it), then one shuffled epoch of (c) — an ``np.memmap`` opened anew and indexed
batch by batch — and prints the median ratio of their rates with its quartiles (the first
pair, which pays the start-up, left out) and the load average. Issue 16's target: ≥ 0.5×.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH = 64


def _memmap_epoch(npy: Path, epoch: int) -> float:
    import torch

    x = np.load(npy, mmap_mode="r")
    order = np.random.default_rng(epoch).permutation(len(x))
    t = time.perf_counter()
    for b in range(0, len(order), BATCH):
        idx = np.sort(order[b : b + BATCH])
        torch.from_numpy(np.ascontiguousarray(x[idx], dtype=np.float32))
    return time.perf_counter() - t


def measure(store_path: Path, epochs: int) -> str:
    from ecgtool.data.loader import ChunkLoader
    from ecgtool.data.store import open_store

    store = open_store(store_path)
    loader = ChunkLoader(store, BATCH, shuffle=True, seed=0, workers=2, mode="stream")
    ratios = []
    for epoch in range(epochs + 1):
        loader.set_epoch(epoch)
        t = time.perf_counter()
        for _ in loader:
            pass
        stream = time.perf_counter() - t
        memmap = _memmap_epoch(store_path.with_suffix(".npy"), epoch)
        if epoch:
            ratios.append(memmap / stream)  # rates: records/stream over records/memmap
    q1, med, q3 = statistics.quantiles(ratios, n=4)
    shape = f"{store.signals.shape[1]} × {store.signals.shape[2]}"
    return f"| {shape} | {len(store)} | {med:.2f}× | {q1:.2f}–{q3:.2f}× | {'meets' if med >= 0.5 else 'MISSES'} |"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, required=True, help="speed.py's --work directory (its stores and .npy files)")
    ap.add_argument("--epochs", type=int, default=16)
    args = ap.parse_args(argv)
    stores = sorted(p for p in args.work.glob("*.zarr") if p.with_suffix(".npy").exists())
    if not stores:
        ap.error(f"{args.work} holds no store with its .npy beside it: run benchmarks/speed.py --only loader --work {args.work}")
    print(f"load average at start: {', '.join(f'{v:.2f}' for v in os.getloadavg())}\n")
    print("| shape | records | stream ÷ memmap, median | quartiles | ≥ 0.5× |")
    print("|---|--:|--:|--:|---|")
    for store in stores:
        print(measure(store, args.epochs), flush=True)
    print(f"\nload average at end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
