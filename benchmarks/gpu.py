"""Training speed on one GPU node, in one short run: issue 16's GPU target (data wait < 5 % of step time).

    python benchmarks/gpu.py [--work DIR] [--records 2048] [--budget 420] [--out FILE]

Meant for a short loan of a GPU machine through ``benchmarks/gpu.sh`` (which installs the missing wheels
first); docs/performance.md, section "On a GPU", says how. Every figure comes from ecgtool's own commands,
each in its own process, on data the script makes (timed):

1. data: ``ecgtool fetch synthetic`` (``--records`` records at 500 Hz, 10 s), ``prep`` at 500 Hz and at
   100 Hz (12 × 5000 and 12 × 1000), ``split`` of each;
2. GPU: ``ecgtool train`` of resnet18 and xresnet1d101 on each training split, batch 64, the default loader
   (memory mode, pinned memory, prefetch to the device), fp32 and bf16, ``--epochs 4``; the figures are the
   median of epochs 2-4 from ``--log-dir``'s history.csv (``data_wait``: the share of the epoch the step
   waited for its batch; ``samples_per_s``), and epoch 1's seconds (store load, cuDNN and compile warm-up);
3. DDP: ``torchrun --nproc_per_node N -m ecgtool train`` for one epoch with validation, N the node's GPUs.
   With one GPU ecgtool runs its one-process path (world size 1 is not data-parallel, and NCCL refuses two
   ranks on one GPU), so the script then also checks NCCL and DDP themselves: a torchrun of one process
   that trains ecgtool's resnet18 wrapped in DistributedDataParallel over NCCL for a few steps;
4. eval on the GPU: ``ecgtool eval --device cuda`` of the bf16 resnet18 at 100 Hz on its test split;
5. CPU: the same fp32 training on the machine's CPUs (all cores) on the smaller test split, two epochs,
   epoch 2's figures: the CPU column beside the GPU's;
6. ``--compile``: bf16 with torch.compile for each model and rate while the budget allows (resnet18 at
   100 Hz right after step 2, the others last; compiling xresnet1d101 takes the longest); the runs that do
   not fit are listed as skipped.

Prints a markdown section for benchmarks/RESULTS.md (and writes it to ``--out``). ``--budget`` seconds bound
the whole script: a step that would not fit is skipped and said so, never cut half-way.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from workdir import work_dir  # benchmarks/workdir.py: the scripts run from this directory

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("resnet18", "xresnet1d101")
RATES = (100, 500)
TARGET_WAIT = 0.05


class Budget:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def ecgtool(*args) -> list[str]:
    return [sys.executable, "-m", "ecgtool", *map(str, args)]


def run(cmd: list[str], log: Path, timeout: float, env: dict | None = None) -> tuple[bool, float, str]:
    """``(succeeded, wall seconds, stdout)``; stderr goes to ``log``; a failure prints the log's tail."""
    t0 = time.perf_counter()
    with open(log, "w") as err:
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, timeout=max(1.0, timeout),
                               cwd=ROOT, env={**os.environ, **(env or {})})
            ok, out = p.returncode == 0, p.stdout
        except subprocess.TimeoutExpired:
            ok, out = False, ""
            err.write(f"\n[gpu.py] stopped after {timeout:.0f} s\n")
    seconds = time.perf_counter() - t0
    if not ok:
        tail = log.read_text().splitlines()[-15:]
        print(f"  FAILED ({seconds:.0f} s): {' '.join(cmd[2:])}\n    " + "\n    ".join(tail), file=sys.stderr)
    return ok, seconds, out


def history(log_dir: Path) -> list[dict]:
    with open(log_dir / "history.csv", newline="") as f:
        return [{k: float(v) if v else float("nan") for k, v in row.items()} for row in csv.DictReader(f)]


def steady(rows: list[dict], key: str, skip: int) -> float:
    """The median of ``key`` over the epochs after the first ``skip`` (all when there are no more)."""
    return statistics.median(r[key] for r in (rows[skip:] or rows))


def train_run(work: Path, name: str, model: str, store: Path, *, device: str, precision: str = "fp32",
              compile_: bool = False, epochs: int, batch: int, timeout: float, extra=()) -> dict:
    log_dir = work / "runs" / name
    cmd = ecgtool("train", model, store, "-o", work / "runs" / f"{name}.ckpt", "--epochs", epochs, "--batch-size", batch,
                  "--device", device, "--precision", precision, "--log-dir", log_dir, "--seed", 0, "--overwrite",
                  *(["--compile"] if compile_ else []), *extra)
    ok, seconds, _ = run(cmd, work / "logs" / f"{name}.log", timeout)
    result = {"name": name, "model": model, "device": device, "precision": precision, "compile": compile_, "ok": ok,
              "wall_s": seconds}
    if ok:
        rows = history(log_dir)
        result.update(first_epoch_s=rows[0]["epoch_seconds"], samples_per_s=steady(rows, "samples_per_s", 1),
                      data_wait=steady(rows, "data_wait", 1), epochs=len(rows))
    print(f"  {name}: " + (f"{result['samples_per_s']:.0f} samples/s, data wait {result['data_wait']:.1%}, "
                           f"epoch 1 {result['first_epoch_s']:.1f} s, {seconds:.0f} s in all" if ok else "failed"),
          file=sys.stderr)
    return result


def nccl_check() -> None:
    """Run under torchrun: DDP over NCCL on this rank's GPU, a few bf16 steps of ecgtool's resnet18."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    sys.path.insert(0, str(ROOT))
    from ecgtool.models import create_model

    rank, local = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local)
    dist.init_process_group("nccl")
    net = DistributedDataParallel(create_model("resnet18", num_classes=9, num_leads=12, num_samples=1000).cuda(),
                                  device_ids=[local])
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    x, y = torch.randn(64, 12, 1000, device="cuda"), (torch.rand(64, 9, device="cuda") > 0.5).float()
    for _ in range(10):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    t = torch.ones(1, device="cuda")
    dist.all_reduce(t)
    if rank == 0:
        print(json.dumps({"world_size": dist.get_world_size(), "all_reduce": t.item(), "loss": loss.item()}))
    dist.destroy_process_group()


def environment() -> dict:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"gpu": gpu, "gpus": torch.cuda.device_count(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "cpus": os.cpu_count()}


def main() -> None:
    if sys.argv[1:2] == ["nccl-check"]:
        nccl_check()
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, help="keep the data and runs here (default: a temporary directory)")
    ap.add_argument("--records", type=int, default=2048, help="synthetic records (train split ~80%%, test ~10%%)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=4, help="GPU epochs per run; figures: the median after the first")
    ap.add_argument("--budget", type=float, default=420, help="seconds for the whole script")
    ap.add_argument("--out", type=Path, help="also write the markdown section here")
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--device", default="cuda", help="cpu: a dry run of the script's plumbing on a machine without a GPU")
    a = ap.parse_args()
    budget = Budget(a.budget)
    work, tmp = work_dir(a.work, "ecgtool-gpu-")
    (work / "logs").mkdir(exist_ok=True)
    (work / "runs").mkdir(exist_ok=True)
    env = environment()
    print(f"# {env}", file=sys.stderr)
    if not env["gpus"] and a.device != "cpu":
        sys.exit("gpu.py: torch sees no CUDA device")
    try:
        report = measure(a, work, env, budget)
    finally:
        if tmp is not None:
            tmp.cleanup()
    text = markdown(a, env, report)
    print(text)
    if a.out:
        a.out.write_text(text)


def measure(a, work: Path, env: dict, budget: Budget) -> dict:
    r: dict = {"data": {}, "gpu": [], "cpu": [], "compile": [], "skipped": []}
    raw = work / "raw"
    # 1. data ----------------------------------------------------------------------------------------
    steps = [("fetch", ecgtool("fetch", "synthetic", "-o", raw, "--num-records", a.records, "--fs", 500, "--overwrite"))]
    for rate in RATES:
        steps += [(f"prep {rate} Hz", ecgtool("prep", raw, "-o", work / f"s{rate}.zarr", "--fs", rate, "--overwrite")),
                  (f"split {rate} Hz", ecgtool("split", work / f"s{rate}.zarr", "-o", work / f"split{rate}", "--overwrite"))]
    for name, cmd in steps:
        if (work / "data.ok").exists():
            break  # --work kept them from an earlier run
        ok, seconds, _ = run(cmd, work / "logs" / f"{name.replace(' ', '-')}.log", budget.left())
        if not ok:
            sys.exit(f"gpu.py: {name} failed; see {work / 'logs'}")
        r["data"][name] = seconds
        print(f"  {name}: {seconds:.1f} s", file=sys.stderr)
    (work / "data.ok").touch()
    split = {rate: work / f"split{rate}" for rate in RATES}

    def fits(seconds: float, what: str) -> bool:
        if budget.left() >= seconds:
            return True
        r["skipped"].append(what)
        print(f"  skipped (budget): {what}", file=sys.stderr)
        return False

    common = dict(epochs=a.epochs, batch=a.batch_size)
    # 2. GPU, eager ----------------------------------------------------------------------------------
    for rate in RATES:
        for model in MODELS:
            for precision in ("fp32", "bf16"):
                name = f"{model}-{rate}hz-{precision}"
                if fits(60, f"GPU {name}"):
                    r["gpu"].append({"rate": rate, **train_run(work, name, model, split[rate] / "train.zarr", device=a.device,
                                                               precision=precision, timeout=min(180, budget.left()), **common)})

    def compiled(model: str, rate: int) -> None:
        name = f"{model}-{rate}hz-bf16-compile"
        if a.skip_compile:
            r["skipped"].append(f"GPU {name} (--skip-compile)")
        elif fits(100, f"GPU {name}"):
            r["compile"].append({"rate": rate, **train_run(work, name, model, split[rate] / "train.zarr", device=a.device,
                                                           precision="bf16", compile_=True, timeout=min(240, budget.left()),
                                                           **common)})

    compiled(MODELS[0], RATES[0])  # one compiled run early: the path is exercised whatever the budget leaves
    # 3. DDP -----------------------------------------------------------------------------------------
    n = max(1, env["gpus"]) if a.device != "cpu" else 1
    if fits(60, f"DDP on {n} GPU(s)"):
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}"]
        cmd = torchrun + ["-m", "ecgtool", "train", "resnet18", str(split[100] / "train.zarr"), "--val", str(split[100] / "val.zarr"),
                          "-o", str(work / "runs" / "ddp.ckpt"), "--epochs", "1", "--batch-size", str(a.batch_size * n),
                          "--device", a.device, "--precision", "bf16", "--log-dir", str(work / "runs" / "ddp"), "--overwrite"]
        ok, seconds, _ = run(cmd, work / "logs" / "ddp.log", min(180, budget.left()))
        ddp = {"nproc": n, "ok": ok, "wall_s": seconds}
        if ok:
            row = history(work / "runs" / "ddp")[0]
            ddp.update(samples_per_s=row["samples_per_s"], data_wait=row["data_wait"], val_macro_auc=row.get("val_macro_auc"))
        if n == 1 and a.device != "cpu" and fits(45, "NCCL/DDP check"):
            ok2, s2, out = run(torchrun + [str(Path(__file__).resolve()), "nccl-check"], work / "logs" / "nccl.log",
                               min(120, budget.left()))
            ddp["nccl_check"] = {"ok": ok2, "wall_s": s2, **(json.loads(out.strip().splitlines()[-1]) if ok2 else {})}
        r["ddp"] = ddp
        print(f"  DDP: {ddp}", file=sys.stderr)
    # 4. eval on the GPU -----------------------------------------------------------------------------
    ckpt = work / "runs" / "resnet18-100hz-bf16.ckpt"
    if ckpt.exists() and fits(45, "eval on the GPU"):
        ok, seconds, out = run(ecgtool("eval", ckpt, split[100] / "test.zarr", "--device", a.device, "--json", "--bootstrap", 200),
                               work / "logs" / "eval.log", min(120, budget.left()))
        r["eval"] = {"ok": ok, "wall_s": seconds}
        if ok:
            macro = json.loads(out).get("macro", {})
            r["eval"]["auroc"] = macro.get("auroc")
        print(f"  eval: {r['eval']}", file=sys.stderr)
    # 5. CPU, fp32, on the test split ----------------------------------------------------------------
    for rate in RATES:
        for model in MODELS:
            name = f"{model}-{rate}hz-cpu"
            if fits(60, f"CPU {name}"):
                r["cpu"].append({"rate": rate, **train_run(work, name, model, split[rate] / "test.zarr", device="cpu",
                                                           epochs=2, batch=a.batch_size, timeout=min(120, budget.left()))})
    # 6. --compile, bf16: the others ----------------------------------------------------------------
    for rate in RATES:
        for model in MODELS:
            if (model, rate) != (MODELS[0], RATES[0]):
                compiled(model, rate)
    return r


def _f(x, fmt="{:.0f}") -> str:
    return "—" if x is None or x != x else fmt.format(x)


def markdown(a, env: dict, r: dict) -> str:
    cpu = {(c["model"], c["rate"]): c for c in r["cpu"] if c["ok"]}
    lines = [
        f"### On a GPU: {env['gpu']} ({env['gpus']} on the node), {date()}",
        "",
        f"`benchmarks/gpu.sh` (torch {env['torch']}, CUDA {env['cuda']}, Python {env['python']}, {env['cpus']} CPUs): "
        f"`ecgtool train` on synthetic training splits of {a.records} records (10 s; 12 × 1000 at 100 Hz, 12 × 5000 at "
        f"500 Hz), batch {a.batch_size}, the default loader (memory mode, pinned memory, prefetch to the device). "
        f"GPU figures: the median of epochs 2-{a.epochs} (history.csv); epoch 1 holds the store's load and the warm-up "
        f"(compile). data wait: the share of the epoch the step waited for its batch (target < {TARGET_WAIT:.0%}). "
        "CPU: fp32 on all the node's cores, epoch 2 of the test split.",
        "",
        "| model | input | precision | compile | GPU samples/s | data wait | epoch 1 (s) | CPU samples/s (fp32) | GPU / CPU |",
        "|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for g in r["gpu"] + r["compile"]:
        shape = f"12 × {g['rate'] * 10}"
        c = cpu.get((g["model"], g["rate"]))
        if not g["ok"]:
            lines.append(f"| {g['model']} | {shape} | {g['precision']} | {'yes' if g['compile'] else 'no'} | failed | | | | |")
            continue
        mark = "✓" if g["data_wait"] < TARGET_WAIT else "✗"
        lines.append(f"| {g['model']} | {shape} | {g['precision']} | {'yes' if g['compile'] else 'no'} | {_f(g['samples_per_s'])} "
                     f"| {g['data_wait']:.1%} {mark} | {g['first_epoch_s']:.1f} | {_f(c and c['samples_per_s'])} "
                     f"| {_f(c and g['samples_per_s'] / c['samples_per_s'], '{:.0f}×')} |")
    lines.append("")
    if r["cpu"]:
        lines.append("CPU data wait: " + ", ".join(f"{c['model']} {c['rate']} Hz {c['data_wait']:.1%}" for c in r["cpu"] if c["ok"]) + ".")
    if "ddp" in r:
        d = r["ddp"]
        text = (f"DDP: `torchrun --nproc_per_node {d['nproc']}`, one epoch of resnet18 at 100 Hz, bf16, with validation: "
                + (f"{_f(d.get('samples_per_s'))} samples/s, data wait {d['data_wait']:.1%}, val macro AUC "
                   f"{_f(d.get('val_macro_auc'), '{:.3f}')}, {d['wall_s']:.0f} s in all" if d["ok"] else "failed"))
        if d["nproc"] == 1:
            text += " (one GPU: ecgtool's one-process path; world size 1 is not data-parallel)"
        if "nccl_check" in d:
            n = d["nccl_check"]
            text += (f"; NCCL and DDP themselves: a one-process torchrun trained resnet18 in DistributedDataParallel over NCCL, "
                     f"all_reduce {_f(n.get('all_reduce'), '{:g}')}, {n['wall_s']:.0f} s" if n["ok"] else "; the NCCL/DDP check failed")
        lines.append(text + ".")
    if "eval" in r:
        e = r["eval"]
        lines.append("eval on the GPU (resnet18 bf16 at 100 Hz, its test split, 200 bootstrap resamples): "
                     + (f"{e['wall_s']:.1f} s in all, macro AUROC {_f(e.get('auroc'), '{:.3f}')}." if e["ok"] else "failed."))
    if r["data"]:
        lines.append("Data: " + ", ".join(f"{k} {v:.0f} s" for k, v in r["data"].items()) + ".")
    if r["skipped"]:
        lines.append("Skipped (the budget, or as asked): " + ", ".join(r["skipped"]) + ".")
    return "\n".join(lines) + "\n"


def date() -> str:
    return time.strftime("%Y-%m-%d")


if __name__ == "__main__":
    main()
