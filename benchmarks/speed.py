"""Speed of ecgtool's data path and training loop against the way it is usually written.

    python benchmarks/speed.py [--only loader,train,prep,help] [--repeats 3] [--records 2000] [--work DIR]

One run, four sections, each ecgtool figure next to a named baseline measured in
the same process on the same data (medians over ``--repeats``):

1. **loader** — records/s over one full shuffled epoch (batch 64) of 12 leads ×
   1000 samples (``--records`` records, 100 Hz × 10 s) and 12 × 5000 (half as
   many, 500 Hz × 10 s): ecgtool's ``ChunkLoader`` in the mode it picks (memory:
   epoch 1 including the load, and a later epoch) and in forced stream mode,
   both with workers=2, against (a) a per-record ``wfdb.rdsamp`` loop over the
   same records stacked into batches and (b) a per-index Zarr ``Dataset`` in a
   ``torch.utils.data.DataLoader`` (num_workers 0 and 2). Targets: ≥100× (a)
   and ≥10× (b). A breakdown of the stream mode's decoding follows.
2. **train** — seconds per epoch of ``Trainer.train_epoch`` (resnet18 with
   base_width 16, batch 64, AdamW, BCE, 2 torch threads) against a bare PyTorch
   loop with the same model, optimiser, loss, batch size, seed and threads and
   the data already in a tensor (half of ``--records``), in 20 alternating pairs
   of ~1 s samples. Target: overhead ≤ 5 %.
3. **prep** — records/s of ``run_prep`` (500 Hz → 100 Hz, default band-pass,
   z-score) with 1 and 2 workers against a single-process
   ``wfdb.rdsamp → resample_poly → sosfiltfilt → z-score → np.stack`` loop (half
   of ``--records``), and the peak memory of ``ecgtool prep`` and of that loop at
   a quarter of and all ``--records``.
4. **help** — ``ecgtool --help`` start-up (target 0.3 s), with ``python -c pass``
   and ``python -c "import torch"`` for reference.

Data come from ecgtool itself (``ecgtool fetch synthetic``, ``ecgtool prep``) and
sit in the OS page cache while measured, so the figures are CPU cost, not disk.
"other load" is the CPU (in cores) that processes other than this benchmark used
during a measurement, from /proc/stat: above ~0.2 the machine was shared and the
figures are noisy (torch's two intra-op threads slow down many-fold when another
process holds a core). Before each repeat the script waits up to ``--quiet-wait``
seconds for such processes to finish. With ``--work`` the generated datasets are
kept there and reused by the next run; without it everything goes in a temporary
directory that is removed. About 6 minutes on 2 idle CPU cores at the defaults.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from workdir import work_dir  # benchmarks/workdir.py: the scripts run from this directory

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH = 64
SECTIONS = ("loader", "train", "prep", "help")


# -- measuring ------------------------------------------------------------------------------
def _busy_cpu() -> float | None:
    """CPU-seconds spent by every process on the machine so far (None off Linux)."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(vals) - vals[3] - vals[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def _own_cpu() -> float:
    t = os.times()  # children: every descendant this process has waited for (workers, subprocesses)
    return t.user + t.system + t.children_user + t.children_system


class Timed:
    """Wall seconds of a ``with`` block and the CPU (in cores) other processes used meanwhile."""

    def __enter__(self) -> "Timed":
        self._busy, self._own, self._t = _busy_cpu(), _own_cpu(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t
        busy = _busy_cpu()
        self.other = None
        if busy is not None and self._busy is not None and self.seconds > 0.05:
            self.other = max(0.0, (busy - self._busy) - (_own_cpu() - self._own)) / self.seconds


class Samples:
    """Repeated measurements of one thing: medians of seconds, rates and other load."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.rates: list[float] = []
        self.others: list[float] = []

    def add(self, t: Timed, items: int | None = None) -> None:
        self.seconds.append(t.seconds)
        if items is not None:
            self.rates.append(items / t.seconds)
        if t.other is not None:
            self.others.append(t.other)

    @property
    def s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    @property
    def other(self) -> str:
        return f"{statistics.median(self.others):.2f}" if self.others else "–"


def _other(t: Timed) -> str:
    return "–" if t.other is None else f"{t.other:.2f}"


def _wait_quiet(max_s: float, threshold: float = 0.3) -> None:
    """Wait (up to ``max_s``) until other processes use less than ``threshold`` cores."""
    if max_s <= 0 or _busy_cpu() is None:
        return
    t0, told = time.perf_counter(), False
    while True:
        busy, own = _busy_cpu(), _own_cpu()
        time.sleep(0.5)
        load = ((_busy_cpu() - busy) - (_own_cpu() - own)) / 0.5
        if load < threshold:
            return
        if time.perf_counter() - t0 > max_s:
            _say(f"    other processes still use {load:.1f} cores after {max_s:.0f} s; measuring anyway")
            return
        if not told:
            _say(f"    other processes use {load:.1f} cores; waiting up to {max_s:.0f} s for them to finish …")
            told = True
        time.sleep(2)


def _fmt_rate(r: float) -> str:
    return f"{r:,.0f}" if r >= 100 else f"{r:.1f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:,.0f}×" if a / b >= 10 else f"{a / b:.2f}×"


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]

    def line(r: list[str]) -> str:
        cells = (str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
        return "| " + " | ".join(cells) + " |"

    sep = "|" + "|".join("-" * (w + 1) + ("-" if i == 0 else ":") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(head), sep, *map(line, rows)])


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- data -------------------------------------------------------------------------------------
def _ecgtool_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "ecgtool"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ecgtool"]


def _cli(*args: str) -> None:
    subprocess.run([*_ecgtool_cmd(), *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _synthetic(work: Path, records: int, fs: int, seed: int) -> Path:
    out = work / f"raw{fs}-n{records}-s{seed}"
    if not out.exists():
        _say(f"  ecgtool fetch synthetic -o {out.name} --records {records} --fs {fs} --seed {seed}")
        _cli("fetch", "synthetic", "-o", str(out), "--num-records", str(records), "--fs", str(fs), "--seed", str(seed))
    return out


def _prepped(work: Path, raw: Path, fs: int, limit: int) -> Path:
    out = work / f"{raw.name}-fs{fs}-n{limit}.zarr"
    if not out.exists():
        _say(f"  ecgtool prep {raw.name} -o {out.name} --fs {fs} --limit {limit}")
        _cli("prep", str(raw), "-o", str(out), "--fs", str(fs), "--limit", str(limit), "--jobs", "2")
    return out


# -- 1. loader ------------------------------------------------------------------------------
def _epoch_records(batches) -> int:
    n = 0
    for batch in batches:
        n += len(batch[0])
    return n


def _wfdb_batches(paths: list[str], labels: np.ndarray, rng: np.random.Generator):
    """Baseline (a): every record read with wfdb.rdsamp, stacked into shuffled batches."""
    import torch
    import wfdb

    order = rng.permutation(len(paths))
    for b in range(0, len(order), BATCH):
        idx = order[b : b + BATCH]
        x = np.stack([wfdb.rdsamp(paths[i])[0].T for i in idx]).astype(np.float32)
        yield torch.from_numpy(x), torch.from_numpy(labels[idx].astype(np.float32))


def _array_batches(x: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    """Baselines (c) and (d): shuffled batches indexed out of one array — an ``np.memmap`` of an uncompressed
    ``.npy`` (ecg-selfsupervised's way; the file is in the page cache, as on a node that read it once) or the whole
    array in RAM (the PTB-XL benchmark's). Rows are gathered in sorted order, as a memmap reader would."""
    import torch

    order = rng.permutation(len(x))
    for b in range(0, len(order), BATCH):
        idx = np.sort(order[b : b + BATCH])
        yield torch.from_numpy(np.ascontiguousarray(x[idx], dtype=np.float32)), torch.from_numpy(labels[idx].astype(np.float32))


def _memcpy_batches(x: np.ndarray):
    """Baseline (e): the same bytes copied batch by batch in storage order — what no loader can beat."""
    import torch

    out = np.empty((BATCH, *x.shape[1:]), np.float32)
    for b in range(0, len(x), BATCH):
        part = x[b : b + BATCH]
        np.copyto(out[: len(part)], part)
        yield torch.from_numpy(out[: len(part)]), None


def _zarr_dataset(path: Path):
    """Baseline (b): the per-index Dataset people write over a Zarr array."""
    import torch
    import zarr

    class ZarrDataset(torch.utils.data.Dataset):
        def __init__(self, path):
            group = zarr.open_group(path, mode="r")
            self.signals = group["signals"]
            self.labels = np.asarray(group["labels"][:], dtype=np.float32)
            # an int16 store's rows are signals × signal_scale, which such a Dataset must apply too
            self.scale = np.asarray(group["signal_scale"][:]) if "signal_scale" in group else None

        def __len__(self):
            return self.signals.shape[0]

        def __getitem__(self, i):
            x = self.signals[i]
            x = x * self.scale[i][:, None] if self.scale is not None else x
            return torch.from_numpy(x), torch.from_numpy(self.labels[i])

    return ZarrDataset(path)


def _decode_breakdown(store, repeats: int) -> list[list[str]]:
    """Where the stream mode's time goes: Zarr chunk reads vs raw Blosc decode vs the loader's copies."""
    from concurrent.futures import ThreadPoolExecutor

    import numcodecs

    from ecgtool.data.loader import ChunkLoader

    bounds = store.chunk_bounds()
    n = len(store)
    sig_dir = Path(store.path) / "signals" / "c"
    files = sorted(sig_dir.rglob("*"), key=lambda p: int(p.relative_to(sig_dir).parts[0]))
    files = [p for p in files if p.is_file()]
    raw = [p.read_bytes() for p in files]
    comp = sum(map(len, raw))
    codec = numcodecs.Blosc()  # a Blosc frame names its own codec: the store's
    decoded = sum(store.signals.dtype.itemsize * (e - s) * store.signals.shape[1] * store.signals.shape[2] for s, e in bounds)
    rows = []

    def measure(label: str, fn) -> None:
        smp = Samples()
        for _ in range(repeats):
            with Timed() as t:
                fn()
            smp.add(t, n)
        rows.append([label, _fmt_rate(smp.rate), f"{decoded / smp.s / 1e6:,.0f}", smp.other])

    def zarr_read(chunk):
        return np.asarray(store.signals[chunk[0] : chunk[1]])

    measure("read chunk files (bytes, page cache)", lambda: [p.read_bytes() for p in files])
    old = numcodecs.blosc.get_nthreads()
    numcodecs.blosc.set_nthreads(1)
    measure("Blosc decode only (the store's codec), 1 thread", lambda: [codec.decode(b) for b in raw])
    with ThreadPoolExecutor(2) as pool:
        measure("Blosc decode only (the store's codec), 2 threads", lambda: list(pool.map(codec.decode, raw)))
        numcodecs.blosc.set_nthreads(old)
        measure("zarr signals[start:stop] per chunk, sequential", lambda: [zarr_read(c) for c in bounds])
        measure("zarr signals[start:stop] per chunk, 2 threads", lambda: list(pool.map(zarr_read, bounds)))
    measure("zarr signals[:] (one call)", lambda: np.asarray(store.signals[:]))
    for label, kw in (("ChunkLoader stream, workers=2, shuffled (as above)", {"shuffle": True}),
                      ("ChunkLoader stream, workers=2, not shuffled", {"shuffle": False}),
                      ("ChunkLoader stream, workers=1, shuffled", {"shuffle": True, "workers": 1})):
        loader = ChunkLoader(store, BATCH, mode="stream", **{"workers": 2, **kw})
        measure(label, lambda: _epoch_records(loader))
    cname = store.signals.metadata.codecs[1].to_dict().get("configuration", {}).get("cname", "?")
    rows.append([f"(store: {len(files)} chunks of {store.chunk_records} records of {store.signals.dtype}, Blosc-{cname} "
                 f"compression {decoded / comp:.2f}:1)", "", "", ""])
    # What-if: the same chunks under a faster codec, and a plain copy (the floor of any decode).
    numcodecs.blosc.set_nthreads(1)
    blocks = [codec.decode(b) for b in raw]
    zstd = numcodecs.Blosc(cname="zstd", clevel=3, shuffle=numcodecs.Blosc.SHUFFLE)
    enc = [zstd.encode(b) for b in blocks]
    measure(f"what-if Blosc-zstd level 3 decode, 1 thread (ratio {decoded / sum(map(len, enc)):.2f}:1)",
            lambda: [zstd.decode(b) for b in enc])
    numcodecs.blosc.set_nthreads(old)
    dest = [np.empty(len(b), np.uint8) for b in blocks]
    measure("what-if uncompressed: memcpy of the decoded bytes", lambda: [np.copyto(d, np.frombuffer(b, np.uint8)) for d, b in zip(dest, blocks)])
    return rows


def bench_loader(store_path: Path, raw_dir: Path, repeats: int, seed: int, quiet_wait: float) -> tuple[list, list[str], object]:
    import torch

    from ecgtool.data.loader import ChunkLoader
    from ecgtool.data.store import open_store

    store = open_store(store_path)
    n, shape = len(store), f"{store.signals.shape[1]} × {store.signals.shape[2]}"
    paths = [str(raw_dir / rid) for rid in store.record_id]
    _say(f"  loader {shape}: {n} records")
    res: dict[str, Samples] = {k: Samples() for k in ("mem1", "mem", "stream", "a", "b0", "b2", "c", "d", "e", "f")}
    npy = Path(store_path).with_suffix(".npy")  # the same records, uncompressed float32
    if not npy.exists():
        np.save(npy, store.rows())
    in_ram = np.load(npy)
    mode = None
    for r in range(repeats):
        _wait_quiet(quiet_wait)
        loader = ChunkLoader(store, BATCH, shuffle=True, seed=seed, workers=2)  # mode chosen automatically
        mode = loader.mode
        loader.set_epoch(0)
        with Timed() as t:
            k = _epoch_records(loader)
        res["mem1"].add(t, k)
        with Timed() as t:  # what epoch 1 in memory mode cannot avoid: the kernel's fresh pages for what it holds
            fresh = np.empty(in_ram.shape, np.float32)
            fresh.fill(0)
        res["f"].add(t, n)
        del fresh
        for epoch in range(1, 6):  # later epochs: the decoded records are already in memory
            loader.set_epoch(epoch)
            with Timed() as t:
                k = _epoch_records(loader)
            res["mem"].add(t, k)
        del loader
        loader = ChunkLoader(store, BATCH, shuffle=True, seed=seed, workers=2, mode="stream")
        loader.set_epoch(r)
        with Timed() as t:
            k = _epoch_records(loader)
        res["stream"].add(t, k)
        with Timed() as t:
            k = _epoch_records(_wfdb_batches(paths, store.labels, np.random.default_rng([seed, r])))
        res["a"].add(t, k)
        for w in (0, 2):
            torch.manual_seed(seed + r)
            dl = torch.utils.data.DataLoader(_zarr_dataset(store_path), batch_size=BATCH, shuffle=True, num_workers=w)
            with Timed() as t:
                k = _epoch_records(dl)
            res[f"b{w}"].add(t, k)
        for key, x in (("c", np.load(npy, mmap_mode="r")), ("d", in_ram)):
            with Timed() as t:
                k = _epoch_records(_array_batches(x, store.labels, np.random.default_rng([seed, r])))
            res[key].add(t, k)
        with Timed() as t:
            k = _epoch_records(_memcpy_batches(in_ram))
        res["e"].add(t, k)
        _say(f"    repeat {r + 1}: " + ", ".join(f"{k} {v.rates[-1]:,.0f}/s" for k, v in res.items()))
    a = res["a"].rate
    b = max(res["b0"].rate, res["b2"].rate)
    label = {
        "mem1": f"ChunkLoader {mode}, epoch 1 (incl. load)",
        "mem": f"ChunkLoader {mode}, later epoch",
        "stream": "ChunkLoader stream (forced)",
        "a": "(a) wfdb.rdsamp loop + np.stack",
        "b0": "(b) zarr Dataset + DataLoader, 0 workers",
        "b2": "(b) zarr Dataset + DataLoader, 2 workers",
        "c": "(c) np.memmap of an uncompressed .npy",
        "d": "(d) the whole array in RAM, indexed",
        "e": "(e) memcpy of the same bytes, in order",
        "f": "(f) fresh pages for them: np.empty().fill(0)",
    }
    rows = [[shape, label[k], str(n), f"{v.s:.3f}", _fmt_rate(v.rate), _ratio(v.rate, a), _ratio(v.rate, b), v.other]
            for k, v in res.items()]
    verdicts = []
    for k in ("mem1", "mem", "stream"):
        ra, rb = res[k].rate / a, res[k].rate / b
        ok = "meets" if ra >= 100 and rb >= 10 else "MISSES"
        verdicts.append(f"{shape} {label[k]}: {ra:,.0f}× (a), {rb:,.1f}× (b) — {ok} the ≥100× (a) / ≥10× (b) target")
    c, e = res["c"].rate, res["e"].rate  # issue 16's targets: against the peers' memmap and a plain copy
    for k, floor, base, name in (("mem1", 0.5, c, "memmap (c)"), ("stream", 0.5, c, "memmap (c)"),
                                 ("mem", 0.7, e, "memcpy (e)")):
        ratio = res[k].rate / base
        verdicts.append(f"{shape} {label[k]}: {ratio:.2f}× {name} — {'meets' if ratio >= floor else 'MISSES'} the "
                        f"≥{floor}× target" + (f" (it takes {res[k].s:.3f} s; (f), the kernel's fresh pages for the float32 "
                                              f"rows it keeps, took {res['f'].s:.3f} s alone)" if k == "mem1" else ""))
    if mode == "memory":  # what a training run sees: one loading epoch, then in-memory epochs
        epochs = 20  # ecgtool train's default
        avg = epochs * n / (res["mem1"].s + (epochs - 1) * res["mem"].s)
        verdicts.append(f"{shape} ChunkLoader memory averaged over a {epochs}-epoch run (from the medians above): "
                        f"{_fmt_rate(avg)} records/s = {avg / a:,.0f}× (a), {avg / b:,.1f}× (b)")
    return rows, verdicts, store


def section_loader(work: Path, records: int, repeats: int, seed: int, quiet_wait: float) -> None:
    raw100 = _synthetic(work, records, 100, seed)
    raw500 = _synthetic(work, records, 500, seed)
    s100 = _prepped(work, raw100, 100, records)
    s500 = _prepped(work, raw500, 500, records // 2)
    rows, verdicts, breakdown = [], [], []
    for store_path, raw in ((s100, raw100), (s500, raw500)):
        r, v, store = bench_loader(store_path, raw, repeats, seed, quiet_wait)
        rows += r
        verdicts += v
        shape = f"{store.signals.shape[1]} × {store.signals.shape[2]}"
        _wait_quiet(quiet_wait)
        breakdown += [[f"{shape}: {row[0]}", *row[1:]] for row in _decode_breakdown(store, repeats)]
    print("\n## 1. Loader throughput (one shuffled epoch, batch 64, workers=2; ratios against (a) and the better (b))\n")
    print(_table(["shape", "loader", "records", "s/epoch", "records/s", "vs (a)", "vs (b)", "other load"], rows))
    print()
    for v in verdicts:
        print(f"- {v}")
    print("\nWhere the stream mode's time goes: one full pass over the same store per row, from the raw chunk "
          "bytes through Blosc and Zarr to ChunkLoader's batches, then what a faster codec or none would cost:\n")
    print(_table(["step", "records/s", "MB/s decoded", "other load"], breakdown))


# -- 2. train -----------------------------------------------------------------------------------
def section_train(work: Path, records: int, repeats: int, seed: int, quiet_wait: float) -> None:
    import torch

    from ecgtool.data.store import open_store
    from ecgtool.models import create_model
    from ecgtool.train.loop import TrainArgs, Trainer

    raw100 = _synthetic(work, records, 100, seed)
    n_train = max(BATCH * 2, records // 2)
    train_path = _prepped(work, raw100, 100, n_train)
    out = work / "speed-train.ckpt"
    kwargs = {"base_width": 16}
    # epochs only sets the length of the cosine schedule, which costs the same at any point.
    args = TrainArgs(model="resnet18", epochs=100, batch_size=BATCH, model_kwargs=kwargs, threads=2, seed=seed)
    store = open_store(train_path)

    def new_model():
        return create_model("resnet18", num_classes=len(store.classes), num_leads=len(store.leads),
                            num_samples=store.n_samples, **kwargs)

    # Warm up torch itself (oneDNN kernels for these shapes) on a throwaway model, so that
    # neither loop's first epoch pays for the process's first convolution.
    torch.set_num_threads(2)
    warm = new_model()
    for _ in range(2):
        warm(torch.randn(BATCH, len(store.leads), store.n_samples)).sum().backward()
    del warm

    out.unlink(missing_ok=True)
    _wait_quiet(quiet_wait)
    with Timed() as t_init:
        trainer = Trainer(args, train_path, None, out)

    # The bare loop: same architecture, optimiser, loss, batch size, seed and threads; data already a tensor.
    x_all = torch.from_numpy(store.rows())
    y_all = torch.from_numpy(store.labels.astype(np.float32))
    torch.set_num_threads(2)
    torch.manual_seed(seed)  # as the Trainer does before building its model: the same initial weights
    model = new_model()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    criterion = torch.nn.BCEWithLogitsLoss()
    steps = len(x_all) // BATCH  # drop_last, as the Trainer does

    def bare_epoch(epoch: int) -> float:
        model.train()
        perm = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        total = 0.0
        for b in range(steps):
            idx = perm[b * BATCH : (b + 1) * BATCH]
            x, y = x_all[idx], y_all[idx]
            loss = criterion(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(x)
        return total / (steps * BATCH)

    _say(f"  train: resnet18 base_width 16, {len(store)} records, {steps} steps/epoch")
    first_t, first_b = Samples(), Samples()
    with Timed() as t:
        trainer.train_epoch(0)
    first_t.add(t)
    with Timed() as t:
        bare_epoch(0)
    first_b.add(t)
    # Many short pairs, ecgtool and bare alternately (ABBA), each sample about a second: on a VM the speed
    # drifts by ±10 % over seconds, so adjacent samples and the median of many pair ratios are what is stable.
    k = max(1, round(1.0 / first_b.s))
    pairs = max(20, repeats)
    smp_t, smp_b, ratios, loader_only = Samples(), Samples(), [], Samples()
    epoch = 1
    for r in range(pairs):
        if r % 5 == 0:
            _wait_quiet(quiet_wait)
        pair = {}
        for who in ("ecgtool", "bare") if r % 2 == 0 else ("bare", "ecgtool"):
            with Timed() as t:
                for e in range(epoch, epoch + k):
                    trainer.train_epoch(e) if who == "ecgtool" else bare_epoch(e)
            t.seconds /= k
            (smp_t if who == "ecgtool" else smp_b).add(t)
            pair[who] = t.seconds
        epoch += k
        ratios.append(pair["ecgtool"] / pair["bare"])
        loader = getattr(trainer, "loader", None)
        if loader is not None:  # the loader's share: one epoch of its batches without the model
            loader.set_epoch(epoch)
            with Timed() as t:
                _epoch_records(loader)
            loader_only.add(t)
        if r % 5 == 4:
            _say(f"    pairs {r - 3}-{r + 1}: ecgtool/bare " + ", ".join(f"{x - 1:+.1%}" for x in ratios[-5:]))
    out.unlink(missing_ok=True)
    Path(str(out) + ".resume").unlink(missing_ok=True)
    overhead = smp_t.s / smp_b.s - 1
    paired = statistics.median(ratios) - 1
    rows = [
        ["ecgtool Trainer(...) construction (opens the store, builds the model)", f"{t_init.seconds:.2f}", "", _other(t_init)],
        ["ecgtool Trainer.train_epoch, epoch 1 (incl. loading the store)", f"{first_t.s:.2f}",
         f"{first_t.s / first_b.s - 1:+.1%}", first_t.other],
        ["bare PyTorch loop, epoch 1", f"{first_b.s:.2f}", "", first_b.other],
        [f"ecgtool Trainer.train_epoch, later epochs (median of {pairs} samples of {k} ep.)", f"{smp_t.s:.3f}",
         f"{overhead:+.1%}", smp_t.other],
        [f"bare PyTorch loop, later epochs (median of {pairs} samples of {k} ep.)", f"{smp_b.s:.3f}", "", smp_b.other],
    ]
    if loader_only.seconds:
        rows.append(["  ecgtool's loader alone, one epoch (memory mode)", f"{loader_only.s:.3f}",
                     f"{loader_only.s / smp_b.s:.1%} of bare", loader_only.other])
    print(f"\n## 2. Train-step overhead (resnet18 base_width 16, {len(store)} records × 12 × {store.n_samples}, "
          f"{steps} steps of {BATCH}, AdamW, BCE, 2 threads, seed {seed})\n")
    print(_table(["loop", "s/epoch", "overhead", "other load"], rows))
    verdict = "meets" if paired <= 0.05 else "MISSES"
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    print(f"\n- overhead: {paired:+.1%}, the median of {pairs} paired ratios ecgtool/bare (interquartile range "
          f"{q1 - 1:+.1%} to {q3 - 1:+.1%}); of the median epochs {overhead:+.1%} — {verdict} the ≤5 % target")


# -- 3. prep ------------------------------------------------------------------------------------
def naive_prep(raw: Path, n: int, out: Path, progress=None) -> np.ndarray:
    """The baseline: one process, wfdb.rdsamp → resample_poly → sosfiltfilt → z-score, all kept, np.stack.

    The same work as ecgtool's defaults at 500 → 100 Hz: the 50 Hz low-pass edge is at
    Nyquist, so (as in ecgtool) only the order-3 0.5 Hz high-pass runs, reflect-padded 2 s.
    """
    import wfdb
    from scipy.signal import butter, resample_poly, sosfiltfilt

    with open(raw / "labels.csv", newline="") as f:
        table = {r["record_id"]: r["labels"].split(";") for r in csv.DictReader(f)}
    classes = sorted({c for labels in table.values() for c in labels if c})
    ids = [ln.strip() for ln in (raw / "RECORDS").read_text().splitlines() if ln.strip()][:n]
    sos = butter(3, 0.5, btype="highpass", fs=100, output="sos")
    xs, ys = [], []
    for rid in ids:
        sig, fields = wfdb.rdsamp(str(raw / rid))
        x = resample_poly(sig.T, 1, int(fields["fs"]) // 100, axis=-1)
        x = sosfiltfilt(sos, x, axis=-1, padlen=200)
        x = (x - x.mean(axis=-1, keepdims=True)) / np.maximum(x.std(axis=-1, keepdims=True), 1e-6)
        xs.append(x.astype(np.float32))
        ys.append([c in table[rid] for c in classes])
        if progress:
            progress(len(xs), len(ids))
    x_all = np.stack(xs)
    np.save(out, x_all)
    np.save(out.with_suffix(".labels.npy"), np.array(ys, dtype=np.uint8))
    return x_all


def _tree_memory(pid: int, peaks: dict[int, int]) -> int:
    """Summed resident bytes of a process and all its descendants now (Linux /proc); records each
    process's own high-water mark (VmHWM) in ``peaks``."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                status = {k: v for k, _, v in (ln.partition(":") for ln in f)}
            total += int(status["VmRSS"].split()[0]) * 1024
            peaks[p] = max(peaks.get(p, 0), int(status["VmHWM"].split()[0]) * 1024)
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    stack += [int(c) for c in f.read().split()]
        except (OSError, ValueError, KeyError):
            pass
    return total


def _peak_memory(cmd: list[str]) -> tuple[float, int, int]:
    """(seconds, peak RSS of the largest process, peak summed RSS of the process tree) of a command.

    Read from /proc every 20 ms rather than from ``getrusage``: a child started by ``subprocess``
    (vfork + exec) inherits this process's own high-water mark in ``ru_maxrss``.
    """
    log = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    peak_tree, peaks = 0, {}
    while proc.poll() is None:
        peak_tree = max(peak_tree, _tree_memory(proc.pid, peaks))
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    log.seek(0)
    err = log.read().decode(errors="replace")
    log.close()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err.strip()[-500:]}")
    return seconds, max(peaks.values(), default=0), peak_tree


class _Progress:
    """Times of a run's first record and of its 10 % mark, for start-up and steady-state rates."""

    def __init__(self) -> None:
        self.t0, self.first, self.tenth, self.last, self.n, self.n_tenth = time.perf_counter(), None, None, None, 0, 0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter() - self.t0
        self.first = now if self.first is None else self.first
        if self.tenth is None and done >= max(1, total // 10):
            self.tenth, self.n_tenth = now, done
        self.last, self.n = now, done

    @property
    def steady(self) -> float:
        return (self.n - self.n_tenth) / (self.last - self.tenth) if self.last > self.tenth else float("nan")


def section_prep(work: Path, records: int, repeats: int, seed: int, quiet_wait: float) -> None:
    from ecgtool.data.prep import run_prep
    from ecgtool.data.readers import open_reader
    from ecgtool.data.store import open_store
    from ecgtool.data.transforms import PrepConfig

    raw500 = _synthetic(work, records, 500, seed)
    m = max(BATCH, records // 2)
    reader = open_reader(raw500)
    cfg = PrepConfig(fs=100)  # the CLI's defaults: 10 s, 0.5-50 Hz band-pass, per-record z-score
    _say(f"  prep: {m} records, 500 Hz → 100 Hz")
    res = {k: Samples() for k in ("w1", "w2", "naive")}
    first = {k: [] for k in res}
    steady = {k: [] for k in res}
    scratch = work / "speed-prep"
    scratch.mkdir(exist_ok=True)
    for r in range(repeats):
        _wait_quiet(quiet_wait)
        for k in ("w1", "w2", "naive") if r % 2 == 0 else ("naive", "w2", "w1"):
            prog = _Progress()
            if k == "naive":
                with Timed() as t:
                    x_naive = naive_prep(raw500, m, scratch / "naive.npy", progress=prog)
                res[k].add(t, len(x_naive))
            else:
                with Timed() as t:
                    report = run_prep(reader, scratch / f"{k}.zarr", cfg, workers=int(k[1]), limit=m, overwrite=True,
                                      progress=prog)
                res[k].add(t, report.written)
            first[k].append(prog.first)
            steady[k].append(prog.steady)
        _say(f"    repeat {r + 1}: " + ", ".join(f"{k} {v.rates[-1]:.0f}/s" for k, v in res.items()))
    # Equivalent work: the two outputs agree.
    diff = float(np.abs(open_store(scratch / "w2.zarr").rows() - x_naive).max())
    naive = res["naive"].rate
    labels = {"w1": "ecgtool run_prep, workers=1", "w2": "ecgtool run_prep, workers=2",
              "naive": "naive loop (rdsamp → resample_poly → sosfiltfilt → z-score → np.stack → np.save)"}
    naive_steady = statistics.median(steady["naive"])
    rows = [[labels[k], str(m), f"{v.s:.2f}", _fmt_rate(v.rate), _ratio(v.rate, naive),
             f"{statistics.median(first[k]):.2f}", _fmt_rate(statistics.median(steady[k])),
             _ratio(statistics.median(steady[k]), naive_steady), v.other] for k, v in res.items()]

    mem_rows = []
    for n in (max(BATCH, records // 4), records):
        _wait_quiet(quiet_wait)
        cli = [*_ecgtool_cmd(), "prep", str(raw500), "-o", str(scratch / f"cli{n}.zarr"), "--fs", "100",
               "--jobs", "2", "--limit", str(n), "--overwrite"]
        naive_cmd = [sys.executable, str(Path(__file__).resolve()), "--naive-prep", str(raw500), str(n), str(scratch / f"naive{n}.npy")]
        for label, cmd in (("ecgtool prep --jobs 2 (CLI)", cli), ("naive loop (subprocess)", naive_cmd)):
            _say(f"    peak memory: {label}, {n} records")
            s, largest, tree = _peak_memory(cmd)
            mem_rows.append([label, str(n), f"{s:.1f}", f"{largest / 2**20:,.0f}", f"{tree / 2**20:,.0f}"])
    shutil.rmtree(scratch, ignore_errors=True)
    print(f"\n## 3. prep throughput (500 Hz → 100 Hz, 12 leads × 10 s, band-pass 0.5-50 Hz, z-score; {m} records)\n")
    print(_table(["prep", "records", "s", "records/s", "vs naive", "1st record at s", "steady rec/s", "steady vs naive",
                  "other load"], rows))
    print("\n(steady: from the 10 % mark to the last record, i.e. without process start-up and the store's finalisation)")
    print(f"\n- largest |ecgtool store − naive array| over all {m} records: {diff:.2g} (the same work)")
    print("\nPeak memory of a subprocess (\"largest\": the high-water RSS of its biggest process, \"all\": the "
          "summed RSS of the process tree, both sampled from /proc every 20 ms; the time includes start-up):\n")
    print(_table(["program", "records", "s", "MiB largest", "MiB all"], mem_rows))


# -- 4. help ------------------------------------------------------------------------------------
def section_help(repeats: int, quiet_wait: float) -> None:
    runs = max(10, repeats)
    _wait_quiet(quiet_wait)
    cmds = [
        ("ecgtool --help", [*_ecgtool_cmd(), "--help"]),
        ("ecgtool prep --help", [*_ecgtool_cmd(), "prep", "--help"]),
        ("python -c pass (reference)", [sys.executable, "-c", "pass"]),
        ("python -c 'import torch' (reference)", [sys.executable, "-c", "import torch"]),
    ]
    rows = []
    for label, cmd in cmds:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)  # warm the file cache
        smp = Samples()
        for _ in range(runs):
            with Timed() as t:
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            smp.add(t)
        target = ("meets" if smp.s <= 0.3 else "MISSES") + " ≤0.3 s" if label.startswith("ecgtool") else ""
        rows.append([label, f"{smp.s:.3f}", f"{min(smp.seconds):.3f}", f"{max(smp.seconds):.3f}", target, smp.other])
    print(f"\n## 4. Start-up time (median of {runs} runs of a subprocess)\n")
    print(_table(["command", "median s", "min s", "max s", "target", "other load"], rows))


# -- main -----------------------------------------------------------------------------------------
def _machine() -> list[str]:
    import numcodecs
    import scipy
    import torch
    import wfdb
    import zarr

    import ecgtool

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        changed = subprocess.run(["git", "-C", str(ROOT), "diff", "--name-only", "HEAD", "--", "ecgtool"],
                                 capture_output=True, text=True).stdout.split()
        changed += subprocess.run(["git", "-C", str(ROOT), "ls-files", "--others", "--exclude-standard", "--", "ecgtool"],
                                  capture_output=True, text=True).stdout.split()
        rev = head + (f" + uncommitted changes to {', '.join(changed)}" if changed else "")
    except OSError:
        rev = "unknown"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return [
        f"machine: {model}, {cores} cores ({usable} usable), {mem:.0f} GiB RAM, {gpu}; {platform.system()} {platform.release()}",
        f"python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads by default), "
        f"numpy {np.__version__}, zarr {zarr.__version__}, numcodecs {numcodecs.__version__}, scipy {scipy.__version__}, "
        f"wfdb {wfdb.__version__}",
        f"ecgtool {ecgtool.__version__} at {rev}",
        "load average at start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()),
    ]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {', '.join(SECTIONS)}")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--records", type=int, default=2000, help="records of the 12 × 1000 loader set (the others scale from it)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="keep the generated datasets here (reused when present)")
    ap.add_argument("--quiet-wait", type=float, default=60.0,
                    help="before each repeat, wait up to this many seconds for other processes to stop using the CPU (0: don't)")
    ap.add_argument("--naive-prep", nargs=3, metavar=("RAW", "N", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.naive_prep:  # the child process of the peak-memory measurement
        naive_prep(Path(a.naive_prep[0]), int(a.naive_prep[1]), Path(a.naive_prep[2]))
        return 0
    only = [s.strip() for s in a.only.split(",") if s.strip()]
    unknown = [s for s in only if s not in SECTIONS]
    if unknown:
        ap.error(f"--only: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    if a.records < 4 * BATCH:
        ap.error(f"--records must be at least {4 * BATCH}")

    start = time.perf_counter()
    work, tmp = work_dir(None if a.work is None else a.work.resolve(), "ecgtool-speed-")
    cmd = "python benchmarks/speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"# ecgtool speed — `{cmd.strip()}`\n")
    for line in _machine():
        print(f"- {line}")
    sys.stdout.flush()
    failed = []
    try:
        for section in only:
            _say(f"{section} …")
            try:
                if section == "loader":
                    section_loader(work, a.records, a.repeats, a.seed, a.quiet_wait)
                elif section == "train":
                    section_train(work, a.records, a.repeats, a.seed, a.quiet_wait)
                elif section == "prep":
                    section_prep(work, a.records, a.repeats, a.seed, a.quiet_wait)
                else:
                    section_help(a.repeats, a.quiet_wait)
            except Exception as e:  # one broken section must not lose the others' figures
                failed.append(section)
                print(f"\n## {section}: FAILED — {type(e).__name__}: {e}")
                import traceback

                traceback.print_exc()
            sys.stdout.flush()
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(f"\ntotal run time {time.perf_counter() - start:.0f} s; load average at end: "
          + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
