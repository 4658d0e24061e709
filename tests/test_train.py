"""Training: the loss falls, the checkpoint alone suffices for eval, and --resume is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_same_run, interrupt_after_epoch, wfdb_store

from ecgtool.data.loader import ChunkLoader
from ecgtool.data.store import open_store
from ecgtool.errors import EcgtoolError
from ecgtool.eval.evaluate import run_eval
from ecgtool.eval.options import EvalOptions
from ecgtool.eval.thresholds import tune_thresholds
from ecgtool.checkpoint import Checkpoint
from ecgtool.train.engine import lr_factor, resume_path
from ecgtool.train.loop import TrainArgs, Trainer

ON_VAL = EvalOptions(bootstrap=0, tune_on_eval_store=True)  # evaluating on the validation store, knowingly


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    return wfdb_store(root / "train.zarr", n=48, seed=1), wfdb_store(root / "val.zarr", n=16, seed=2)


def args(**kw):
    # A narrow ResNet-18 (base width 16): the same code paths at a fraction of the cost.
    base = dict(model="resnet18", epochs=3, batch_size=8, lr=1e-3, seed=0, device="cpu", model_kwargs={"base_width": 16})
    base.update(kw)
    return TrainArgs(**base)


def test_loss_falls_and_checkpoint_suffices_for_eval(stores, tmp_path):
    train, val = stores
    ckpt = Trainer(args(epochs=4), train, val, tmp_path / "m.ckpt").run()
    losses = [h["train_loss"] for h in ckpt.history]
    assert losses[-1] < losses[0]
    assert ckpt.metrics["val_macro_auc"] > 0.9
    assert not resume_path(tmp_path / "m.ckpt").exists()
    saved = Checkpoint.load(tmp_path / "m.ckpt")
    assert saved.thresholds["source"].startswith("tuned on validation store")
    # eval needs nothing but the checkpoint and a store (here the validation store itself, whose
    # AUROC train reported: its thresholds would be optimistic, which eval must be told explicitly)
    with pytest.raises(EcgtoolError, match="itself"):
        run_eval(tmp_path / "m.ckpt", val, "cpu", EvalOptions(bootstrap=0))
    result = run_eval(tmp_path / "m.ckpt", val, "cpu", ON_VAL)
    assert result.report["macro"]["auroc"] == pytest.approx(ckpt.metrics["val_macro_auc"], abs=1e-6)


def test_resume_continues_exactly(stores, tmp_path):
    train, val = stores
    full = Trainer(args(), train, val, tmp_path / "full.ckpt").run()

    interrupt_after_epoch(lambda **hook: Trainer(args(), train, val, tmp_path / "cut.ckpt", **hook))
    # the interrupted run wrote its resume state after epoch 1 only (epoch 2's save comes after on_epoch)
    assert resume_path(tmp_path / "cut.ckpt").exists() and not (tmp_path / "cut.ckpt").exists()
    trainer = Trainer(args(), train, val, tmp_path / "cut.ckpt")
    assert trainer.resume() and trainer.start_epoch == 1
    resumed = trainer.run()
    assert_same_run(full, resumed)


def test_resume_refuses_other_options(stores, tmp_path):
    train, val = stores
    with pytest.raises(KeyboardInterrupt):
        Trainer(args(), train, val, tmp_path / "m.ckpt", on_epoch=lambda r, b: (_ for _ in ()).throw(KeyboardInterrupt)).run()
    # on_epoch raised before the first resume save: nothing to resume
    assert not resume_path(tmp_path / "m.ckpt").exists()
    Trainer(args(epochs=1), train, val, tmp_path / "m.ckpt").run()
    with pytest.raises(EcgtoolError, match="already exists"):
        Trainer(args(), train, val, tmp_path / "m.ckpt")


def test_incompatible_validation_store(stores, tmp_path):
    train, _ = stores
    other = tmp_path / "other.zarr"
    wfdb_store(other, n=4, prep_fs=50)
    with pytest.raises(EcgtoolError, match="validation store .* is sampled at 50 Hz, the model at 100 Hz"):
        Trainer(args(), train, other, tmp_path / "m.ckpt")


def test_schedules():
    cos = lr_factor(args(epochs=2, schedule="cosine"), 10)
    assert cos(0) == 1.0 and cos(10) == pytest.approx(0.5) and cos(20) == pytest.approx(0.0)
    step = lr_factor(args(epochs=4, schedule="step", step_size=2, gamma=0.1), 10)
    assert step(19) == 1.0 and step(20) == pytest.approx(0.1)
    warm = lr_factor(args(epochs=2, schedule="constant", warmup_epochs=1), 10)
    assert warm(0) == pytest.approx(0.1) and warm(9) == 1.0 and warm(15) == 1.0


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_loader_covers_every_record_once(stores, mode):
    store = open_store(stores[0])
    loader = ChunkLoader(store, 5, shuffle=True, seed=3, mode=mode, window_chunks=1)
    seen = np.concatenate([rows for _, _, rows in loader])
    assert sorted(seen.tolist()) == list(range(len(store)))
    x, y, rows = next(iter(loader))
    np.testing.assert_array_equal(x.numpy(), store.read_rows(rows))
    np.testing.assert_array_equal(y.numpy(), store.labels[rows])
    # the same (seed, epoch) repeats the order; another epoch changes it
    again = np.concatenate([r for _, _, r in loader])
    loader.set_epoch(1)
    other = np.concatenate([r for _, _, r in loader])
    assert (seen == again).all() and not (seen == other).all()


def test_thresholds_maximise_f1():
    y = np.array([[0], [0], [1], [1], [0], [1]])
    p = np.array([[0.1], [0.35], [0.4], [0.8], [0.2], [0.9]])
    t = tune_thresholds(y, p)[0]
    assert 0.35 < t < 0.4  # between the last negative and the first positive


def test_multiclass_task_uses_cross_entropy_and_argmax(stores, tmp_path):
    from ecgtool.data.store import StoreWriter

    paths = []
    for name in ("train", "val"):
        src = open_store(stores[0] if name == "train" else stores[1])
        attrs = {k: v for k, v in src.attrs.items() if k not in ("format", "format_version", "complete", "content_hash")}
        attrs["multi_label"] = False
        with StoreWriter(tmp_path / f"{name}.zarr", n_leads=len(src.leads), n_samples=src.n_samples, attrs=attrs) as w:
            w.append(src.rows(), src.labels, src.record_id, src.patient_id)
        paths.append(tmp_path / f"{name}.zarr")
    trainer = Trainer(args(epochs=2), *paths, tmp_path / "m.ckpt")
    assert isinstance(trainer.criterion, torch.nn.CrossEntropyLoss)
    ckpt = trainer.run()
    assert ckpt.thresholds is None and not ckpt.multi_label
    report = run_eval(tmp_path / "m.ckpt", paths[1], "cpu", EvalOptions(bootstrap=0)).report
    assert report["threshold_source"].startswith("argmax") and "confusion_matrix" in report and 0 <= report["macro"]["accuracy"] <= 1 and "exact_match" not in report["macro"]


SLOW_MODELS = {"two_stream", "inceptionformer", "cpc", "cpc_strided", "ecg_jepa_vit_s", "ecg_jepa_vit_b"}  # 4-50 s here on 2 CPU cores (cpc: a 512-wide LSTM over 400 steps); the others take 0.5-2 s
SLOW_MODELS |= {"st_mem_vit_small", "st_mem_vit_base"}  # 21 M / 85 M parameters: 20 s / 39 s here


def _round_trip_models() -> list:
    """Every family's models; of the InceptionFormer pyramid (one class, variants differing only in constructor
    arguments, each ~12 M parameters) the base and the tiny variant: the others' arguments round-trip in test_models."""
    from ecgtool.models import list_models, model_info

    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_MODELS else n for n in list_models()
            if model_info(n)["family"] != "inceptionformer" or n in ("inceptionformer", "inceptionformer_tiny")]


@pytest.mark.parametrize("name", _round_trip_models())
def test_every_model_round_trips_through_train_and_eval(stores, tmp_path, name):
    train, val = stores
    ckpt = Trainer(args(model=name, epochs=1, batch_size=16, model_kwargs={}), train, val, tmp_path / "m.ckpt").run()
    report = run_eval(tmp_path / "m.ckpt", val, "cpu", ON_VAL).report
    assert report["macro"]["auroc"] == pytest.approx(ckpt.metrics["val_macro_auc"], abs=1e-6)
    assert Checkpoint.load(tmp_path / "m.ckpt").model.name == name


@pytest.mark.parametrize("command", ["train", "distill"])
def test_a_validation_store_without_any_defined_auc_is_refused_before_training(synthetic_raw, synthetic_splits, trained_checkpoint,
                                                                               tmp_path, monkeypatch, command):
    """Two records of one shard (the audit's `prep --limit 2 --shard 3/4`): no class has both positive and negative
    records, so no epoch can be chosen by its validation macro AUC. The run used to train, fail at its end and leave
    a .resume that blocked the rerun; it now stops before training, leaving nothing."""
    from conftest import run_cli

    from ecgtool.train.engine import Engine

    val = tmp_path / "p3.zarr"
    run_cli("prep", synthetic_raw, "-o", val, "--fs", 100, "--limit", 2, "--shard", "3/4", "--jobs", 1)

    def trained(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(Engine, "start", trained)
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "m.ckpt"
    head = ("train", "resnet18") if command == "train" else ("distill", trained_checkpoint, "--student", "resnet18")
    head = (*head[:2], synthetic_splits / "train.zarr", *head[2:])
    r = run_cli(*head, "--val", val, "-o", out, "--epochs", 1, "--model-arg", "base_width=8", expect=1)
    assert r.stderr == (f"error: validation macro AUC would be undefined in every epoch: {val} needs positive and negative "
                        "records of at least one class\n")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_validation_store_filtered_otherwise_is_named(stores, tmp_path):
    from conftest import write_wfdb_dir

    from ecgtool.data.prep import run_prep
    from ecgtool.data.readers import open_reader
    from ecgtool.data.transforms import PrepConfig

    train, _ = stores
    source = write_wfdb_dir(tmp_path / "raw", seconds=4.0, n=16, seed=2)
    run_prep(open_reader(source), tmp_path / "v.zarr", PrepConfig(fs=100, seconds=4.0, highcut=30.0))
    warnings = Trainer(args(), train, tmp_path / "v.zarr", tmp_path / "m.ckpt").warnings
    assert any("v.zarr was prepared otherwise than the training data of this resnet18: highcut 30.0 (training data" in w
               for w in warnings), warnings
