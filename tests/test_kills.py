"""SIGKILL at seeded random moments of prep, merge, split, train, pretrain, distill, fetch, predict and export, replacing an
existing output.

After every kill the real name holds the previous output byte for byte or a complete new one (for
split: all three stores of one run), no partial sibling is accepted by ``info``, and a clean rerun
succeeds and removes the killed runs' leftovers. A pretrain or distill (mvkt) run killed mid-run either left a complete
resume file, from which ``--resume`` finishes with exactly the uninterrupted run's weights, or none, and a
plain rerun starts cleanly."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ecgtool.cli import cli

pytestmark = pytest.mark.slow

KILLS = 5  # per command
ROOT = Path(__file__).parent.parent


def _digest(path: Path) -> str:
    """A hash of every file's name and bytes under ``path`` (or of the file); '' when absent."""
    if not path.exists():
        return ""
    h = hashlib.sha256()
    for p in [path] if path.is_file() else sorted(path.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(path.parent)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def _info_ok(path: Path) -> bool:
    return CliRunner().invoke(cli, ["info", str(path)]).exit_code == 0


def _siblings(out: Path) -> list[Path]:
    return [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def _run(argv: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "ecgtool", *map(str, argv)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, cwd=ROOT)


def _complete(out: Path, kind: str) -> bool:
    if kind == "split":
        stores = [out / f"{s}.zarr" for s in ("train", "val", "test")]
        if not all(_info_ok(s) for s in stores):
            return False
        from ecgtool.data.store import open_store

        commands = {open_store(s).attrs["provenance"][-1]["command"] for s in stores}
        return len(commands) == 1  # one run's stores, never a mix
    if kind == "fetch":
        return all((out / name).exists() for name in ("RECORDS", "labels.csv", "PROVENANCE.json"))
    if kind == "export":  # a TorchScript file that loads
        import torch

        try:
            torch.jit.load(str(out))
            return True
        except Exception:
            return False
    if kind == "predict":  # a CSV: its header and one line per recording of synthetic_raw (120), ended
        text = out.read_text() if out.exists() else ""
        return text.endswith("\n") and text.startswith("record,") and len(text.splitlines()) == 121
    return _info_ok(out)


@pytest.fixture(scope="module")
def parts(synthetic_raw, tmp_path_factory):
    d = tmp_path_factory.mktemp("parts")
    for i in (0, 1):
        p = _run(["prep", synthetic_raw, "-o", d / f"p{i}.zarr", "--fs", 100, "--seconds", 10, "--shard", f"{i}/2", "--workers", 1])
        assert p.wait(timeout=300) == 0, p.stderr.read()
    return [d / "p0.zarr", d / "p1.zarr"]


@pytest.fixture(scope="module")
def teacher(synthetic_splits, tmp_path_factory):
    """A tiny resnet18 (base_width 8, one epoch) on the training split: distill's teacher."""
    out = tmp_path_factory.mktemp("teacher") / "teacher.ckpt"
    p = _run(["train", "resnet18", synthetic_splits / "train.zarr", "-o", out, "--epochs", 1, "--batch-size", 16,
              "--model-arg", "base_width=8", "--device", "cpu", "--threads", 1, "--workers", 1])
    assert p.wait(timeout=300) == 0, p.stderr.read()
    return out


def _argv(kind, out, seed, synthetic_raw, synthetic_store, synthetic_splits, parts, teacher=None):
    return {
        "prep": ["prep", synthetic_raw, "-o", out, "--fs", 100, "--workers", 1, "--seconds", 10 - seed % 3],
        "merge": ["merge", *parts, "-o", out],
        "split": ["split", synthetic_store, "-o", out, "--seed", seed, "--ratios", "0.6,0.2,0.2"],
        "train": ["train", "resnet18", synthetic_splits / "train.zarr", "-o", out, "--epochs", 1, "--batch-size", 16,
                  "--seed", seed, "--model-arg", "base_width=8", "--device", "cpu"],
        "pretrain": ["pretrain", "cpc", synthetic_splits / "train.zarr", "-o", out, *PRETRAIN, "--epochs", 1, "--seed", seed],
        "distill": ["distill", teacher, synthetic_splits / "train.zarr", "-o", out, *DISTILL, "--epochs", 1, "--seed", seed],
        "fetch": ["fetch", "synthetic", "-o", out, "--records", 60, "--fs", 100, "--seed", seed],
        "predict": ["predict", teacher, synthetic_raw, "-o", out, "--device", "cpu", "--jobs", 1 + seed % 2],
        "export": ["export", teacher, "-o", out, "--format", "torchscript", "--batch-size", 2 + seed % 3],
    }[kind]


# a tiny CPC (about 4 s a run on 2 cores, most of it start-up): short crops, few negatives and steps
PRETRAIN = ["--backbone", "resnet18", "--model-arg", "base_width=8", "--batch-size", 16, "--device", "cpu", "--crop", 200,
            "--method-arg", "negatives=8", "--method-arg", "steps=2", "--threads", 1, "--workers", 1]
# a tiny mvkt student of the tiny teacher: CLT's heads and memory bank are in the resume file
DISTILL = ["--student", "resnet18", "--model-arg", "base_width=8", "--method", "mvkt", "--clt-arg", "negatives=4",
           "--clt-arg", "embed_dim=8", "--batch-size", 16, "--device", "cpu", "--threads", 1, "--workers", 1]


@pytest.mark.parametrize("kind", ["prep", "merge", "split", "train", "pretrain", "distill", "fetch", "predict", "export"])
def test_sigkill_leaves_the_old_or_the_new_output(kind, synthetic_raw, synthetic_store, synthetic_splits, parts, tmp_path, request):
    rng = random.Random(f"kill-{kind}")
    out = tmp_path / {"prep": "s.zarr", "merge": "m.zarr", "split": "splits", "train": "m.ckpt", "pretrain": "e.ckpt",
                      "distill": "s.ckpt", "fetch": "raw", "predict": "p.csv", "export": "m.pt"}[kind]
    t = request.getfixturevalue("teacher") if kind in ("distill", "predict", "export") else None
    args = lambda seed: _argv(kind, out, seed, synthetic_raw, synthetic_store, synthetic_splits, parts, t)  # noqa: E731
    start = time.monotonic()
    first = _run(args(0))
    assert first.wait(timeout=600) == 0, first.stderr.read()
    duration = time.monotonic() - start
    previous = _digest(out)
    kills = attempts = 0
    while kills < KILLS and attempts < 4 * KILLS:
        attempts += 1
        p = _run([*args(attempts), "--overwrite"])
        time.sleep(rng.uniform(0.05, 0.95) * duration)
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
        else:
            duration /= 2  # it finished first (a lighter load than the first run's): aim earlier
        p.wait(timeout=60)
        now = _digest(out)
        assert now == previous or _complete(out, kind), f"attempt {attempts}: {out} is neither the old output nor a complete new one"
        previous = now
        for sibling in _siblings(out):
            if sibling.name.endswith(".resume") or kind == "fetch":
                continue
            assert not _info_ok(sibling), f"attempt {attempts}: info accepts the partial output {sibling}"
    assert kills == KILLS, f"only {kills} of {attempts} runs were still running when killed"
    rerun = _run([*args(attempts + 1), "--overwrite"])
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read()
    assert _complete(out, kind)
    assert [s.name for s in _siblings(out) if not s.name.endswith(".resume")] == []  # leftovers of killed runs removed


def _weights(path: Path) -> dict:
    from ecgtool.checkpoint import Checkpoint

    return Checkpoint.load(path).state_dict


@pytest.mark.parametrize("kind", ["pretrain", "distill"])
def test_sigkill_mid_run_then_resume(kind, synthetic_splits, tmp_path, request):
    """pretrain, or distill with mvkt (CLT's memory bank), for 3 epochs, killed at seeded moments within 0.3 s of the
    first resume file (the epochs take a fraction of a second after seconds of start-up): the resume
    file it leaves is either absent or complete (written atomically after each epoch). With one, ``--resume``
    finishes with the weights of the uninterrupted run, tensor for tensor, and removes it; without one,
    ``--resume`` refuses in one line and a plain rerun starts cleanly. The loop stops once the resume path was taken."""
    import torch

    rng = random.Random(f"kill-{kind}-resume")
    store = synthetic_splits / "train.zarr"
    if kind == "pretrain":
        argv = lambda out: ["pretrain", "cpc", store, "-o", out, *PRETRAIN, "--epochs", 3, "--seed", 3]  # noqa: E731
    else:
        t = request.getfixturevalue("teacher")
        argv = lambda out: ["distill", t, store, "-o", out, *DISTILL, "--epochs", 3, "--seed", 3]  # noqa: E731
    reference = tmp_path / "reference.ckpt"
    start = time.monotonic()
    p = _run(argv(reference))
    assert p.wait(timeout=600) == 0, p.stderr.read()
    duration = time.monotonic() - start
    expected = _weights(reference)
    resumed = False
    for attempt in range(1, 5):
        out = tmp_path / f"killed{attempt}" / ("e.ckpt" if kind == "pretrain" else "s.ckpt")
        out.parent.mkdir()
        resume = out.with_name(out.name + ".resume")
        p = _run(argv(out))
        # Epochs are a small part of a run (start-up dominates, and the loader got faster): a kill at a share
        # of the run's time could land before the first epoch every time; kill within 0.3 s of its first resume file.
        deadline = time.monotonic() + 2 * duration
        while not resume.exists() and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.3))
        if p.poll() is not None:  # it finished first
            duration /= 2
            continue
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        assert not out.exists() or _info_ok(out), f"attempt {attempt}: a partial {out}"
        for sibling in _siblings(out) + _siblings(resume):
            assert not _info_ok(sibling), f"attempt {attempt}: info accepts the partial output {sibling}"
        if out.exists():  # killed between writing the output and removing the resume file: nothing to resume
            continue
        r = _run([*argv(out), "--resume"])
        assert r.wait(timeout=600) in (0, 1)
        err = r.stderr.read().decode()
        if resume.exists() or r.returncode == 0:
            assert r.returncode == 0, f"attempt {attempt}: --resume failed on a resume file left by a kill: {err}"
            assert "resuming at epoch" in err
            got = _weights(out)
            assert got.keys() == expected.keys()
            assert all(torch.equal(got[k], expected[k]) for k in got), f"attempt {attempt}: resumed weights differ"
            assert not resume.exists() and [s.name for s in _siblings(out)] == []
            resumed = True
            break
        assert err.strip().splitlines()[-1] == f"error: --resume: there is no {resume} to continue from", err
        r = _run(argv(out))
        assert r.wait(timeout=600) == 0, r.stderr.read()
        assert _info_ok(out) and not resume.exists() and [s.name for s in _siblings(out)] == []
    assert resumed, "no kill left a resume file to continue from"


def test_sigkill_during_downloads_leaves_only_verified_files(tmp_path):
    """`fetch NAME` from a slow local mirror, killed at seeded moments: every file under its real name
    is the published one byte for byte (a .part never looks complete), and a rerun resumes and finishes."""
    from datasets_fixture import make_ptbxl, serve_tree
    from http_fixture import FileServer

    files = serve_tree(make_ptbxl(tmp_path / "upstream" / "ptb-xl"))
    rng = random.Random("kill-download")
    out = tmp_path / "ptbxl"
    with FileServer(files) as srv:
        srv.pace = 0.2  # about 20 kB/s: the fixture takes several seconds, more than the kills leave it
        kills = attempts = 0
        while kills < KILLS and attempts < 4 * KILLS:
            attempts += 1
            p = _run(["fetch", "ptbxl", "-o", out, "--mirror", srv.url, "--connections", 2])
            time.sleep(rng.uniform(0.3, 0.8))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                kills += 1
            p.wait(timeout=60)
            for f in out.rglob("*") if out.exists() else []:
                rel = "/" + f.relative_to(out).as_posix()
                if f.is_file() and rel in files:
                    assert f.read_bytes() == files[rel], f"attempt {attempts}: {rel} is under its real name but incomplete"
        assert kills >= 3, f"only {kills} of {attempts} runs were still running when killed"
        rerun = _run(["fetch", "ptbxl", "-o", out, "--mirror", srv.url])
        assert rerun.wait(timeout=600) == 0, rerun.stderr.read()
    fetched = {"/" + f.relative_to(out).as_posix() for f in out.rglob("*") if f.is_file()}
    expected = {rel for rel in files if not rel.startswith("/records500/") and rel != "/SHA256SUMS.txt"}  # 100 Hz variant
    assert expected <= fetched and not [f for f in fetched if f.endswith(".part")]
