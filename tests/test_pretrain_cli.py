"""``ecgtool pretrain``: every method end to end through the real command group, pooled stores, the encoder
checkpoint it writes, exact resume (at an epoch's end and mid-epoch), and the chain into ``train --init``."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch
from conftest import assert_same_run, interrupt_after_epoch, run_cli, wfdb_store

from ecgtool.checkpoint import Checkpoint
from ecgtool.data.store import open_store
from ecgtool.train.engine import Preempted, resume_path
from ecgtool.train.pretrain.loop import PretrainArgs, Pretrainer
from ecgtool.train.pretrain.methods import METHODS

# Tiny backbones and objectives: every method in a second or two on a CPU.
TINY = {
    "cpc": ["--backbone", "resnet18", "--model-arg", "base_width=8", "--method-arg", "negatives=4",
            "--method-arg", "hidden=16", "--method-arg", "rnn_layers=1"],
    "clocs-cmsc": [],  # the reference encoder (clocs_cnn, single-lead views) is tiny already
    "clocs-cmlc": ["--backbone", "resnet18", "--model-arg", "base_width=8", "--method-arg", "embedding_dim=16"],
    "clocs-cmsmlc": [],
    "st-mem": ["--backbone", "st_mem_vit_small", "--model-arg", "patch_size=50", "--model-arg", "dim=32",
               "--model-arg", "depth=1", "--model-arg", "num_heads=2", "--method-arg", "decoder_dim=16",
               "--method-arg", "decoder_depth=1", "--method-arg", "decoder_heads=2"],
    "jepa": ["--backbone", "ecg_jepa_vit_xs", "--model-arg", "dim=32", "--model-arg", "depth=2", "--model-arg", "num_heads=4"],
}


def _store(root, name, seed, n=16, leads=("I", "II", "V1")):
    return wfdb_store(root / f"{name}.zarr", n=n, fs=100, seconds=8.0, leads=leads, seed=seed)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    # 16 records of 3 leads x 800 samples each; b's leads in another order (pooling finds them by name)
    return _store(root, "a", 3), _store(root, "b", 4, n=8, leads=("V1", "I", "II"))


def _pretrain(method, stores, out, *extra, expect=0):
    return run_cli("pretrain", method, *stores, "-o", out, "--epochs", 2, "--batch-size", 8, "--device", "cpu",
                   *TINY[method], *extra, expect=expect)


@pytest.mark.parametrize("method", sorted(TINY))
def test_every_method_writes_an_encoder_checkpoint(stores, tmp_path, method):
    r = _pretrain(method, stores[:1], tmp_path / "enc.ckpt", "--json")
    ckpt = Checkpoint.load(tmp_path / "enc.ckpt")
    assert ckpt.is_encoder and ckpt.pretraining["method"] == method
    assert len(ckpt.history) == 2 and all(np.isfinite(h["train_loss"]) for h in ckpt.history)
    assert not any(k.startswith("head.") for k in ckpt.state_dict)  # the head takes no part and is not kept
    assert ckpt.pretraining["stores"][0]["records"] == 16
    window = min(800, round(METHODS[method].seconds * 100))  # the method's window, or the whole 8 s record
    assert ckpt.train_args["crop"] == ckpt.pretraining["hyperparameters"]["samples"] == window
    assert '"checkpoint"' in r.stdout and "warning:" in r.stderr  # the reference rate differs from 100 Hz
    assert not resume_path(tmp_path / "enc.ckpt").exists()


def test_defaults_come_from_the_method(stores, tmp_path):
    r = run_cli("pretrain", "clocs-cmsc", stores[0], "-o", tmp_path / "enc.ckpt", "--epochs", 1, "--batch-size", 8, "--json")
    ckpt = Checkpoint.load(tmp_path / "enc.ckpt")
    assert ckpt.model.name == "clocs_cnn" and ckpt.model.kwargs["num_leads"] == 1  # the reference: single-lead views
    assert ckpt.model.kwargs["num_samples"] == 400 and ckpt.input.samples == 400  # CMSC views: half the input
    assert ckpt.input.leads == ("II",)  # what train --init then takes
    assert ckpt.train_args["lr"] == 1e-4 and ckpt.train_args["weight_decay"] == 0.0  # CLOCS' Adam at 1e-4
    assert ckpt.pretraining["hyperparameters"]["embedding_dim"] == 0  # clocs_cnn ends in the embedding itself
    assert "500 Hz" in r.stderr and "warm-up" not in r.stderr  # CLOCS does not warm up


def test_a_warm_up_as_long_as_the_run_is_named(stores, tmp_path):
    r = run_cli("pretrain", "clocs-cmsc", stores[0], "-o", tmp_path / "enc.ckpt", "--epochs", 1, "--warmup-epochs", 2,
                "--batch-size", 8)
    assert "the warm-up of 2 epochs is not shorter than the run's 1" in " ".join(r.stderr.split())


def test_pooled_stores_are_all_seen_and_recorded(stores, tmp_path):
    _pretrain("st-mem", stores, tmp_path / "enc.ckpt")
    ckpt = Checkpoint.load(tmp_path / "enc.ckpt")
    assert [s["records"] for s in ckpt.pretraining["stores"]] == [16, 8]
    assert ckpt.input.leads == ("I", "II", "V1")  # the first store's order
    assert ckpt.provenance[-1]["command"] == "pretrain" or "pretrain" in str(ckpt.provenance[-1])
    # 24 records, batch 8, drop_last: 3 steps per epoch
    args = PretrainArgs("st-mem", epochs=1, batch_size=8, device="cpu", **_tiny_kwargs("st-mem"))
    steps = []
    Pretrainer(args, stores, tmp_path / "x.ckpt", on_step=lambda e, s, n, loss: steps.append(n)).run()
    assert steps == [3, 3, 3]


def test_pretrained_encoder_fine_tunes_and_probes_through_train(stores, tmp_path):
    _pretrain("jepa", stores[:1], tmp_path / "enc.ckpt")
    margs = TINY["jepa"][2:]  # the same --model-arg, without --backbone
    run_cli("train", "ecg_jepa_vit_xs", stores[0], "--init", tmp_path / "enc.ckpt", "--freeze-encoder", "--epochs", 1,
            "--batch-size", 8, "--device", "cpu", *margs, "-o", tmp_path / "probe.ckpt")
    probe, enc = Checkpoint.load(tmp_path / "probe.ckpt"), Checkpoint.load(tmp_path / "enc.ckpt")
    assert probe.pretraining["method"] == "jepa"
    for key, value in enc.state_dict.items():
        assert torch.equal(probe.state_dict[key], value), key
    r = run_cli("eval", tmp_path / "probe.ckpt", stores[0], "--bootstrap", 0)
    assert "pretrain" in r.stderr and "warning" in r.stderr  # evaluated on the records the encoder saw


def _tiny_kwargs(method):
    """TINY's flags as PretrainArgs fields."""
    flags, out = TINY[method], {"model_kwargs": {}, "method_kwargs": {}}
    for flag, value in zip(flags[::2], flags[1::2]):
        if flag == "--backbone":
            out["backbone"] = value
        else:
            key, raw = value.split("=")
            out["model_kwargs" if flag == "--model-arg" else "method_kwargs"][key] = int(raw) if raw.isdigit() else raw
    return out


@pytest.mark.parametrize("method", ["jepa", "cpc"])  # an EMA target and a predictor; negatives drawn per step
def test_resume_after_an_epoch_is_exact(stores, tmp_path, method):
    args = lambda: PretrainArgs(method, epochs=3, batch_size=8, device="cpu", **_tiny_kwargs(method))  # noqa: E731
    whole = Pretrainer(args(), stores[:1], tmp_path / "a.ckpt").run()
    interrupt_after_epoch(lambda **kw: Pretrainer(args(), stores[:1], tmp_path / "b.ckpt", **kw), epoch=2)
    resumed = Pretrainer(args(), stores[:1], tmp_path / "b.ckpt")
    assert resumed.resume() and resumed.start_epoch == 1
    assert_same_run(whole, resumed.run())


def test_sigterm_mid_epoch_then_resume_is_exact(stores, tmp_path):
    args = lambda: PretrainArgs("st-mem", epochs=2, batch_size=4, device="cpu", **_tiny_kwargs("st-mem"))  # noqa: E731
    whole = Pretrainer(args(), stores[:1], tmp_path / "a.ckpt").run()

    def on_step(epoch, step, steps, loss):
        if (epoch, step) == (0, 2):
            os.kill(os.getpid(), signal.SIGTERM)  # handled after this step

    with pytest.raises(Preempted):
        Pretrainer(args(), stores[:1], tmp_path / "b.ckpt", on_step=on_step).run()
    assert Checkpoint.load(resume_path(tmp_path / "b.ckpt")).resume["position"]["batch"] == 2
    resumed = Pretrainer(args(), stores[:1], tmp_path / "b.ckpt")
    assert resumed.resume()
    assert_same_run(whole, resumed.run())


def test_cli_exits_75_on_preemption_and_refuses_a_resume_with_other_options(stores, tmp_path, monkeypatch):
    from ecgtool.train.engine import Engine

    calls = {"n": 0}

    def stop_once(self):
        calls["n"] += 1
        return calls["n"] == 1

    monkeypatch.setattr(Engine, "_stop", stop_once)
    out = tmp_path / "enc.ckpt"
    r = _pretrain("cpc", stores[:1], out, expect=75)
    assert "--resume" in r.stderr and resume_path(out).exists() and not out.exists()
    _pretrain("cpc", stores[:1], out, expect=1)  # not silently restarted
    r = _pretrain("cpc", stores[:1], out, "--resume", "--lr", "0.01", expect=1)
    assert "different pretraining options" in r.stderr
    r = _pretrain("cpc", stores, out, "--resume", expect=1)
    assert "other stores" in r.stderr
    _pretrain("cpc", stores[:1], out, "--resume")
    assert out.exists() and not resume_path(out).exists()


def test_the_head_is_frozen_and_everything_else_learns(stores, tmp_path):
    for method in ("cpc", "clocs-cmlc", "st-mem", "jepa"):
        p = Pretrainer(PretrainArgs(method, epochs=1, batch_size=8, device="cpu", **_tiny_kwargs(method)), stores[:1],
                       tmp_path / f"{method}.ckpt")
        trained = {id(q) for group in p.optimizer.param_groups for q in group["params"]}
        for name, q in p.objective.named_parameters():
            assert (id(q) in trained) == (q.requires_grad and not name.startswith("encoder.head.")), (method, name)


def test_patients_reach_the_objective(stores, tmp_path):
    """CLOCS contrasts patients: the codes of a batch's records (two records per patient in the fixture)."""
    p = Pretrainer(PretrainArgs("clocs-cmsc", epochs=1, batch_size=8, device="cpu"), stores[:1], tmp_path / "c.ckpt")
    seen = []
    forward = p.objective.forward
    p.objective.forward = lambda x, patients: (seen.append(patients.clone()), forward(x, patients))[1]
    p.net = p.objective
    p.run()
    store = open_store(stores[0])
    assert seen and all(len(s) == 8 for s in seen)
    codes = torch.cat(seen)
    assert len(codes.unique()) == len(np.unique(store.patient_id[:16]))


@pytest.mark.slow  # two launches, one under torchrun
def test_two_gloo_processes_pretrain(stores, tmp_path):
    """Under torchrun the same command pretrains data-parallel: rank 0 alone prints and writes, each rank
    draws its own masks (a one-process run differs by those draws, not by the data it sees)."""
    from conftest import train_one_and_two_processes

    args = ["pretrain", "st-mem", str(stores[0]), "--epochs", "2", "--batch-size", "8", "--device", "cpu", "--threads", "1",
            *TINY["st-mem"]]
    one, two, printed = train_one_and_two_processes(args, tmp_path)
    assert printed.strip() == str(two)
    a, b = Checkpoint.load(one), Checkpoint.load(two)
    assert a.pretraining["stores"] == b.pretraining["stores"] and len(b.history) == 2
    assert all(np.isfinite(h["train_loss"]) for h in b.history)
    assert a.history[0]["train_loss"] != b.history[0]["train_loss"]  # the ranks' own draws


@pytest.mark.parametrize("method", ["st-mem", "jepa"])
def test_bf16_autocast_pretrains_on_cpu(stores, tmp_path, method):
    ckpt = Pretrainer(PretrainArgs(method, epochs=1, batch_size=8, device="cpu", precision="bf16", **_tiny_kwargs(method)),
                      stores[:1], tmp_path / "enc.ckpt").run()
    assert np.isfinite(ckpt.history[0]["train_loss"])
    assert all(v.dtype == torch.float32 for v in ckpt.state_dict.values() if v.is_floating_point())
