"""Data-parallel training and pre-emption: rank detection, loader sharding and mid-epoch starts,
2 gloo processes == 1 process with the same global batch, SIGTERM → exact resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import assert_same_run, run_cli, train_one_and_two_processes, wfdb_store

from ecgtool.data.loader import ChunkLoader
from ecgtool.data.store import open_store
from ecgtool.train import loop
from ecgtool.checkpoint import Checkpoint
from ecgtool.train.distributed import DistEnv, detect
from ecgtool.train.engine import Preempted, resume_path
from ecgtool.train.loop import TrainArgs, Trainer


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    return wfdb_store(root / "s.zarr", n=40, seed=3)


def test_rank_detection():
    assert detect({}) == DistEnv()
    assert detect({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}) == DistEnv(3, 1, 4, 2)
    slurm = {"SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_STEP_NUM_TASKS": "8", "SLURM_STEP_TASKS_PER_NODE": "4(x2)"}
    assert detect(slurm) == DistEnv(5, 1, 8, 4)
    # the batch script of a 4-task allocation is one process: no step has been launched yet
    assert detect({"SLURM_PROCID": "0", "SLURM_NTASKS": "4"}) == DistEnv()


def _batches(loader, epoch, start=0):
    loader.set_epoch(epoch, start)
    return [(x.numpy(), rows) for x, _, rows in loader]


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_ranks_split_the_global_batches_of_one_process(store, mode):
    s = open_store(store)
    kw = dict(shuffle=True, seed=4, drop_last=True, mode=mode, window_chunks=2)
    one = _batches(ChunkLoader(s, 8, **kw), epoch=1)
    ranks = [_batches(ChunkLoader(s, 4, rank=r, world_size=2, **kw), epoch=1) for r in range(2)]
    assert len(one) == len(ranks[0]) == len(ranks[1]) == len(s) // 8
    for b, (x, rows) in enumerate(one):
        both = np.concatenate([ranks[0][b][1], ranks[1][b][1]])
        assert sorted(both.tolist()) == sorted(rows.tolist()) and len(set(both.tolist())) == 8
        got = {int(r): xr for part in (ranks[0][b], ranks[1][b]) for xr, r in zip(part[0], part[1])}
        assert all(np.array_equal(got[int(r)], xr) for xr, r in zip(x, rows))


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_an_epoch_can_start_at_any_batch(store, mode):
    loader = ChunkLoader(open_store(store), 6, shuffle=True, seed=1, mode=mode, window_chunks=2)
    full = _batches(loader, epoch=2)
    for start in (1, 3, len(full) - 1):
        later = _batches(loader, epoch=2, start=start)
        assert [r.tolist() for _, r in later] == [r.tolist() for _, r in full[start:]]
        assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(later, full[start:]))


def _args(**kw):
    base = dict(model="resnet18", epochs=2, batch_size=8, lr=3e-3, seed=0, threads=1, crop=300, model_kwargs={"base_width": 8})
    return TrainArgs(**{**base, **kw})


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_sigterm_mid_epoch_then_resume_is_exact(store, tmp_path, mode):
    """The run stops after the step during which SIGTERM arrived, writes its position, and the
    resumed run reproduces the uninterrupted run's step losses and final weights exactly."""
    losses_a: list = []
    a = Trainer(_args(loader=mode), store, store, tmp_path / "a.ckpt", on_step=lambda e, s, n, loss: losses_a.append((e, s, loss)))
    ckpt_a = a.run()

    losses_b: list = []

    def on_step(epoch, step, steps, loss):
        losses_b.append((epoch, step, loss))
        if (epoch, step) == (1, 2):
            os.kill(os.getpid(), signal.SIGTERM)  # handled after this step: the run stops before step 3

    b = Trainer(_args(loader=mode), store, store, tmp_path / "b.ckpt", on_step=on_step)
    with pytest.raises(Preempted):
        b.run()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or signal.getsignal(signal.SIGTERM) == signal.default_int_handler
    r = Checkpoint.load(resume_path(tmp_path / "b.ckpt")).resume
    assert r["epoch"] == 1 and r["position"]["batch"] == 2 and not (tmp_path / "b.ckpt").exists()
    c = Trainer(_args(loader=mode), store, store, tmp_path / "b.ckpt", on_step=lambda e, s, n, loss: losses_b.append((e, s, loss)))
    assert c.resume() and c.start_epoch == 1 and c.position["batch"] == 2
    ckpt_b = c.run()
    assert losses_b == losses_a  # the running mean loss of every step, resumed mid-epoch included
    assert_same_run(ckpt_a, ckpt_b)
    assert not resume_path(tmp_path / "b.ckpt").exists()


def test_cli_exits_75_on_preemption_and_resumes(store, tmp_path, monkeypatch):
    out = tmp_path / "m.ckpt"
    calls = {"n": 0}

    def stop_once(self):  # as if SIGUSR1 arrived during the first step
        calls["n"] += 1
        return calls["n"] == 1

    monkeypatch.setattr(loop.Trainer, "_stop", stop_once)
    args = ("train", "resnet18", store, "-o", out, "--epochs", 1, "--batch-size", 8, "--model-arg", "base_width=8")
    r = run_cli(*args, expect=75)
    assert "--resume" in r.stderr and resume_path(out).exists() and not out.exists()
    run_cli(*args, expect=1)  # an interrupted run is not silently restarted
    run_cli(*args, "--resume")
    assert out.exists() and not resume_path(out).exists()


def test_bf16_autocast_trains_on_cpu(store, tmp_path):
    ckpt = Trainer(_args(epochs=1, precision="bf16"), store, None, tmp_path / "m.ckpt").run()
    assert np.isfinite(ckpt.history[0]["train_loss"])
    assert all(v.dtype == torch.float32 for v in ckpt.state_dict.values() if v.is_floating_point())


@pytest.mark.slow  # two torchrun launches, ~18 s
def test_two_gloo_processes_train_the_same_model_as_one(store, tmp_path):
    """torchrun with 2 CPU processes (gloo) and global batch 8 == one process with batch 8, on a
    model without batch statistics or dropout (dprnn, head dropout off)."""
    common = ["train", "dprnn", str(store), "--val", str(store), "--epochs", "2", "--batch-size", "8", "--seed", "0",
              "--device", "cpu", "--threads", "1", "--crop", "300", "--model-arg", "channels=8", "--model-arg", "hidden_size=8",
              "--model-arg", "num_blocks=1", "--model-arg", "head_dropout=0", "--model-arg", "chunk_size=20"]
    one, two, printed = train_one_and_two_processes(common, tmp_path)
    assert printed.strip() == str(two)  # rank 0 alone prints and writes
    a, b = Checkpoint.load(one), Checkpoint.load(two)
    for k, v in a.state_dict.items():
        torch.testing.assert_close(b.state_dict[k], v, rtol=1e-4, atol=1e-5, msg=k)
    for ha, hb in zip(a.history, b.history):
        assert hb["train_loss"] == pytest.approx(ha["train_loss"], rel=1e-5)
        assert hb["val_macro_auc"] == pytest.approx(ha["val_macro_auc"], abs=1e-6)


@pytest.mark.slow  # three torchrun launches, ~30 s
def test_sigterm_to_torchrun_leaves_a_resume_checkpoint_that_continues_exactly(store, tmp_path):
    """SIGTERM to torchrun reaches both ranks; they stop at the same step, rank 0 writes the resume
    checkpoint before anyone exits, and the resumed 2-process run ends where an uninterrupted run does."""
    import time

    common = ["train", "dprnn", str(store), "--epochs", "6", "--batch-size", "8", "--seed", "0", "--device", "cpu",
              "--threads", "1", "--model-arg", "channels=8", "--model-arg", "hidden_size=8", "--model-arg", "num_blocks=1",
              "--model-arg", "head_dropout=0", "--model-arg", "chunk_size=20"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "ecgtool"]
    out = tmp_path / "m.ckpt"
    run = subprocess.Popen([*torchrun, *common, "-o", str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not resume_path(out).exists() and run.poll() is None and time.time() < deadline:
        time.sleep(0.05)  # the first epoch has ended once the resume checkpoint exists
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode != 0 and not out.exists(), err
    assert "rerun with --resume" in err
    resumed = subprocess.run([*torchrun, *common, "-o", str(out), "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    one = subprocess.run([sys.executable, "-m", "ecgtool", *common, "-o", str(tmp_path / "one.ckpt")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    a, b = Checkpoint.load(tmp_path / "one.ckpt"), Checkpoint.load(out)
    for k, v in a.state_dict.items():
        torch.testing.assert_close(b.state_dict[k], v, rtol=1e-4, atol=1e-5, msg=k)
    assert [h["train_loss"] for h in b.history] == pytest.approx([h["train_loss"] for h in a.history], rel=1e-5)
