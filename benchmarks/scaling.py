"""How ecgtool's commands scale with the number of records: wall time and peak memory of each step.

    python benchmarks/scaling.py [--records 500,2000,8000,32000] [--work DIR] [--steps ...] [--quick]

For each N it runs the real CLI (``python -m ecgtool``) as subprocesses, in order:

========== ======================================================================================
fetch      ``fetch synthetic --num-records N`` (12 leads × 10 s at 500 Hz, WFDB)
prep       ``prep`` to 100 Hz (default filters, z-score, ``--jobs`` default)
split      ``split`` patient-wise (8/1/1 stratified folds)
train      ``train resnet18`` with ``base_width=16``, one epoch, ``--val`` (loader ``auto``: memory
           mode when the store fits, so its memory follows the training store *by design*)
eval       ``eval`` on the whole prepped store (all N records, so that its memory is measured
           against the store's size, not a tenth of it) with its default bootstrap (1000 resamples)
eval-nb    the same with ``--bootstrap 0``: inference and point metrics only
explain    ``explain --limit 8`` on the whole store (Grad-CAM, charts): a fixed number of records,
           so its time and memory should not grow with N at all (only opening the store does)
predict    ``predict`` on the raw WFDB recordings of all N records (the checkpoint's own
           preprocessing) → CSV
========== ======================================================================================

For each step it prints the wall time, the CPU time and the peak resident memory (``ru_maxrss``
of the step's process from ``os.wait4``: the largest single process of its tree, so ``prep``'s
worker processes count one at a time, not summed), and the 1-minute load average when the step
started (the cores are often shared: a load above the core count slows the wall time, the CPU
time much less). Then a table of every step × N with:

* **s / 1k records** — the slope of the wall time (and of the CPU time, less disturbed by other
  processes on shared cores) between the two largest N, per 1,000 records of N (train sees the
  training split, about 80 % of N);
* **MB / 1k records** — the slope of the peak memory between the two largest N;
* **memory flat** — whether peak RSS at the largest N stays within 15 % of the smallest N's plus
  the N × K outputs that step must hold (float64 probabilities, labels and decisions of the rows
  it sees) — "yes", or the growth in MB.

With ``--work DIR`` everything is kept in ``DIR/nN/`` and ``--steps`` can rerun some steps on the
data left by an earlier run (e.g. ``--steps eval,eval-nb`` after changing eval); every measurement
is also appended to ``DIR/runs.jsonl``, and the table then shows, for the N asked for, the latest
measurement of every step recorded there (rerun steps beside the earlier ones). The script itself
imports only the standard library, so its own memory stays small.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from workdir import work_dir  # benchmarks/workdir.py: the scripts run from this directory

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("fetch", "prep", "split", "train", "eval", "eval-nb", "explain", "predict")
CLASSES = 9  # the synthetic dataset's classes (CPSC2018)
EXPLAINED = 8  # records explain runs on, whatever N


@dataclass
class Run:
    step: str
    records: int
    seconds: float
    cpu: float
    peak_mb: float
    load: float
    rows: int  # records the step's outputs cover (N × K of them is what it must hold)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _run(args: list[str], log: Path, stdout: Path | None = None) -> tuple[float, float, float]:
    """Run ``python -m ecgtool ARGS``: ``(wall s, CPU s, peak RSS MB)`` of that process (and the
    descendants it waited for: ``ru_maxrss`` is the largest of them)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with open(log, "w") as err, open(stdout or os.devnull, "w") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "ecgtool", *args], stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not every child's so far
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        tail = log.read_text().strip().splitlines()[-5:]
        raise SystemExit(f"ecgtool {' '.join(args)} failed ({proc.returncode}):\n  " + "\n  ".join(tail))
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # KiB on Linux


def _records_in(store: Path) -> int:
    """Rows of a store, read from its Zarr metadata (no zarr import: the script stays small)."""
    meta = json.loads((store / "record_id" / "zarr.json").read_text())
    return int(meta["shape"][0])


def step_args(step: str, d: Path, n: int, bootstrap: int) -> tuple[list[str], Path | None]:
    """The ecgtool arguments of ``step`` for the data in ``d`` (and a file for its stdout)."""
    ckpt, splits, store = d / "model.ckpt", d / "splits", d / "store.zarr"
    return {
        "fetch": (["fetch", "synthetic", "-o", str(d / "raw"), "--num-records", str(n), "--overwrite"], None),
        "prep": (["prep", str(d / "raw"), "-o", str(store), "--fs", "100", "--overwrite"], None),
        "split": (["split", str(store), "-o", str(splits), "--overwrite"], None),
        "train": (["train", "resnet18", str(splits / "train.zarr"), "--val", str(splits / "val.zarr"), "-o", str(ckpt),
                   "--epochs", "1", "--model-arg", "base_width=16", "--overwrite"], None),
        "eval": (["eval", str(ckpt), str(store), "--json", "--bootstrap", str(bootstrap)], d / "eval.json"),
        "eval-nb": (["eval", str(ckpt), str(store), "--json", "--bootstrap", "0"], d / "eval-nb.json"),
        "explain": (["explain", str(ckpt), str(store), "--limit", str(EXPLAINED), "-o", str(d / "explain"),
                     "--overwrite"], None),
        "predict": (["predict", str(ckpt), str(d / "raw"), "-o", str(d / "predictions.csv"), "--overwrite"], None),
    }[step]


def _rows(step: str, d: Path, n: int) -> int:
    """Records a step's outputs cover."""
    if step == "train":
        return _records_in(d / "splits" / "val.zarr")  # validation outputs; the training store is the loader's choice
    return EXPLAINED if step == "explain" else n


def run_all(work: Path, sizes: list[int], steps: list[str], bootstrap: int, record: Path | None) -> list[Run]:
    runs = []
    for n in sizes:
        d = work / f"n{n}"
        d.mkdir(parents=True, exist_ok=True)
        for step in steps:
            args, stdout = step_args(step, d, n, bootstrap)
            load = os.getloadavg()[0]
            _say(f"N={n:>6} {step:<8} (load {load:.2f}) ecgtool {' '.join(args)}")
            seconds, cpu, peak = _run(args, d / f"{step}.log", stdout)
            runs.append(Run(step, n, seconds, cpu, peak, load, _rows(step, d, n)))
            if record is not None:
                with open(record, "a") as f:
                    f.write(json.dumps(dataclasses.asdict(runs[-1])) + "\n")
            _say(f"         {seconds:8.1f} s wall  {cpu:8.1f} s CPU  {peak:7.0f} MB peak RSS")
    return runs


def _slope(a: Run, b: Run, what: str) -> float:
    return (getattr(b, what) - getattr(a, what)) / (b.records - a.records) * 1000


def _flat(small: Run, large: Run) -> str:
    outputs_mb = large.rows * CLASSES * 8 * 3 / 2**20  # probabilities, labels and decisions as float64
    allowed = small.peak_mb * 1.15 + outputs_mb
    return "yes" if large.peak_mb <= allowed else f"no (+{large.peak_mb - small.peak_mb:.0f} MB)"


def table(runs: list[Run]) -> str:
    sizes = sorted({r.records for r in runs})
    by = {(r.step, r.records): r for r in runs}
    head = ["step", *(f"N={n:,}: wall s (CPU s) / MB" for n in sizes), "s / 1k records: wall (CPU)", "MB / 1k records", "memory flat"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["--:"] * (len(head) - 1)) + "|"]
    for step in STEPS:
        got = [by.get((step, n)) for n in sizes]
        if not any(got):
            continue
        cells = [f"{r.seconds:.1f} ({r.cpu:.0f}) / {r.peak_mb:.0f}" if r else "–" for r in got]
        have = [r for r in got if r]
        slope = f"{_slope(have[-2], have[-1], 'seconds'):.2f} ({_slope(have[-2], have[-1], 'cpu'):.2f})" if len(have) > 1 else "–"
        memory = f"{_slope(have[-2], have[-1], 'peak_mb'):.1f}" if len(have) > 1 else "–"
        flat = _flat(have[0], have[-1]) if len(have) > 1 else "–"
        lines.append("| " + " | ".join([step, *cells, slope, memory, flat]) + " |")
    loads = "; ".join(f"N={n:,}: " + ", ".join(f"{by[s, n].load:.1f}" for s in STEPS if (s, n) in by) for n in sizes)
    lines.append("")
    lines.append(f"Load average (1 min) at each step's start, steps in table order: {loads} ({os.cpu_count()} cores).")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--records", default="500,2000,8000,32000", help="comma-separated N")
    p.add_argument("--work", type=Path, help="keep the data here (default: a temporary directory, removed)")
    p.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated, in order, of {', '.join(STEPS)}")
    p.add_argument("--bootstrap", type=int, default=1000, help="eval's resamples (its default)")
    p.add_argument("--quick", action="store_true", help="a tiny run (N = 150, 300; 100 resamples) to check the script")
    a = p.parse_args()
    sizes = [150, 300] if a.quick else sorted(int(x) for x in a.records.split(","))
    bootstrap = 100 if a.quick else a.bootstrap
    steps = [s.strip() for s in a.steps.split(",") if s.strip()]
    unknown = set(steps) - set(STEPS)
    if unknown:
        p.error(f"unknown step(s): {', '.join(sorted(unknown))}")
    steps = [s for s in STEPS if s in steps]
    work, tmp = work_dir(a.work, "ecgtool-scaling-")
    _say(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; load average at start "
         + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    t0 = time.perf_counter()
    try:
        record = None if tmp is not None else work / "runs.jsonl"
        runs = run_all(work, sizes, steps, bootstrap, record)
        if record is not None:  # the latest of every step recorded for these N
            latest = {}
            for line in record.read_text().splitlines():
                r = Run(**json.loads(line))
                if r.records in sizes:
                    latest[r.step, r.records] = r
            runs = list(latest.values())
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(table(runs))
    _say(f"{time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
