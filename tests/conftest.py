"""Shared fixtures: a small synthetic dataset in its WFDB layout, its store, its splits.

Everything is generated from fixed seeds, once per test session, in a temporary
directory; nothing touches the network.
"""

from __future__ import annotations

import csv
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ecgtool.cli import cli


@contextmanager
def mounted_tmpfs(path: Path, options: str):
    """A tmpfs mounted at the existing directory ``path`` with mount ``options`` (``size=1m``, ``ro``) for the block,
    or the test skipped where the sandbox lets none be mounted (not root)."""
    import subprocess

    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({options}) here ({(r.stderr or r.stdout).strip() or r.returncode})")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)


def run_cli(*args, expect: int = 0, env: dict | None = None):
    """Invoke the real command group; assert the exit code; return the result."""
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)
    assert result.exit_code == expect, f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def help_imports(command: str, modules) -> tuple[str, list[str]]:
    """``ecgtool --help`` then ``ecgtool COMMAND --help`` in a fresh interpreter: what they printed, and which of
    ``modules`` they imported (help must stay fast: no torch, no plotting, no exporter)."""
    import subprocess
    import sys

    code = ("import sys\nfrom ecgtool.cli import cli\n"
            f"for args in (['--help'], [{command!r}, '--help']):\n"
            "    try:\n        cli(args, prog_name='ecgtool')\n    except SystemExit:\n        pass\n"
            f"print(sorted(m for m in {tuple(modules)!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    text, _, imported = out.rstrip().rpartition("\n")
    return text, eval(imported)  # a list of names printed by the child


def interrupt_after_epoch(make_trainer, epoch: int = 2) -> None:
    """Run the Trainer that ``make_trainer(on_epoch=hook)`` builds and stop it as a crash would at the end of
    ``epoch`` (the hook raises before that epoch's resume state is written), leaving the earlier one's."""

    class Interrupted(Exception):
        pass

    def hook(record, best):
        if record["epoch"] == epoch:
            raise Interrupted

    with pytest.raises(Interrupted):
        make_trainer(on_epoch=hook).run()


def assert_same_run(expected, got) -> None:
    """Two checkpoints of one run, e.g. uninterrupted and resumed: the same epoch losses and bit-identical weights."""
    import torch

    assert [h["train_loss"] for h in got.history] == [h["train_loss"] for h in expected.history]
    for k, v in expected.state_dict.items():
        assert torch.equal(got.state_dict[k], v), k


def train_one_and_two_processes(args: list[str], out_dir: Path) -> tuple[Path, Path, str]:
    """``ecgtool ARGS`` once in one process and once under torchrun with 2 CPU (gloo) processes, one thread
    each, outside any launcher environment; returns the two checkpoints and the 2-process run's stdout."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    one, two = out_dir / "one.ckpt", out_dir / "two.ckpt"
    r = subprocess.run([sys.executable, "-m", "ecgtool", *args, "-o", str(one)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                        "-m", "ecgtool", *args, "-o", str(two)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    return one, two, r.stdout


def write_wfdb_dir(root: Path, n: int = 12, fs: int = 250, seconds: float = 4.0, leads=("I", "II", "V1"), seed: int = 0,
                   classes=("A", "B"), units: str = "mV") -> Path:
    """A minimal generic WFDB directory with a labels.csv (class A: 1 Hz sine, B: 2 Hz sine)."""
    import wfdb

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    t = np.arange(int(fs * seconds)) / fs
    for i in range(n):
        label = classes[i % len(classes)]
        freq = 1.0 + classes.index(label)
        sig = np.sin(2 * np.pi * freq * t)[:, None] * np.linspace(0.5, 1.5, len(leads)) + 0.05 * rng.standard_normal((len(t), len(leads)))
        gain = 1000 if units == "mV" else 1
        scale = 1 if units == "mV" else 1000
        wfdb.wrsamp(f"R{i:03d}", fs=fs, units=[units] * len(leads), sig_name=list(leads), p_signal=sig * scale,
                    fmt=["16"] * len(leads), adc_gain=[gain] * len(leads), baseline=[0] * len(leads),
                    comments=["Age: 40", "Sex: Male"], write_dir=str(root))
        rows.append({"record_id": f"R{i:03d}", "patient_id": f"P{i // 2}", "labels": label})
    (root / "RECORDS").write_text("".join(r["record_id"] + "\n" for r in rows))
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["record_id", "patient_id", "labels"])
        w.writeheader()
        w.writerows(rows)
    return root


def wfdb_store(out: Path, *, seconds: float = 4.0, prep_fs: int = 100, prep_leads=None, **raw) -> Path:
    """A store at ``out`` prepared (``prep_fs``, ``seconds``, ``prep_leads``) from a :func:`write_wfdb_dir` directory
    beside it (``raw-<name>``; ``raw`` goes to write_wfdb_dir)."""
    from ecgtool.data.prep import run_prep
    from ecgtool.data.readers import open_reader
    from ecgtool.data.transforms import PrepConfig

    source = write_wfdb_dir(out.parent / f"raw-{out.stem}", seconds=seconds, **raw)
    leads = {} if prep_leads is None else {"leads": tuple(prep_leads)}
    run_prep(open_reader(source), out, PrepConfig(fs=prep_fs, seconds=seconds, **leads))
    return out


@pytest.fixture(scope="session")
def synthetic_raw(tmp_path_factory) -> Path:
    """120 synthetic 12-lead records, 10 s at 100 Hz, written by `fetch synthetic`."""
    out = tmp_path_factory.mktemp("raw") / "synthetic"
    run_cli("fetch", "synthetic", "-o", out, "--num-records", 120, "--fs", 100, "--seed", 7)
    return out


@pytest.fixture(scope="session")
def synthetic_store(synthetic_raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store") / "syn.zarr"
    run_cli("prep", synthetic_raw, "-o", out, "--fs", 100, "--jobs", 1)
    return out


@pytest.fixture(scope="session")
def synthetic_splits(synthetic_store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("splits")
    run_cli("split", synthetic_store, "-o", out, "--ratios", "0.6,0.2,0.2")
    return out


@pytest.fixture(scope="session")
def trained_checkpoint(synthetic_splits, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    run_cli("train", "resnet18", synthetic_splits / "train.zarr", "--val", synthetic_splits / "val.zarr",
            "-o", out, "--epochs", 2, "--batch-size", 16, "--seed", 0, "--device", "cpu", "--model-arg", "base_width=16")
    return out
