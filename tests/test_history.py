"""--log-dir: each epoch's record in history.csv (and TensorBoard), exact across an interrupted and resumed run."""

from __future__ import annotations

import csv
import os
import json
import math

import pytest
from conftest import run_cli, wfdb_store

from ecgtool.checkpoint import Checkpoint
from ecgtool.train.engine import SPEED_KEYS, Engine, without_speed
from ecgtool.train.history import history_csv


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return wfdb_store(tmp_path_factory.mktemp("history") / "s.zarr", n=24, seed=5)


def _train(store, out, log_dir, *extra, expect=0):
    return run_cli("train", "resnet18", store, "--val", store, "-o", out, "--epochs", 3, "--batch-size", 8,
                   "--model-arg", "base_width=8", "--seed", 1, "--log-dir", log_dir, *extra, expect=expect)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_history_csv_has_every_column_in_first_seen_order_and_blank_nan():
    text = history_csv([{"epoch": 1, "train_loss": 0.5, "val_macro_auc": float("nan")},
                        {"epoch": 2, "train_loss": 0.25, "train_aux": 0.1, "val_macro_auc": 0.75}])
    assert text.splitlines() == ["epoch,train_loss,val_macro_auc,train_aux", "1,0.5,,", "2,0.25,0.75,0.1"]


def test_train_writes_the_checkpoints_history_and_tensorboard(store, tmp_path):
    pytest.importorskip("tensorboard")
    _train(store, tmp_path / "m.ckpt", tmp_path / "logs" / "run")  # a missing parent is made
    rows = _rows(tmp_path / "logs" / "run" / "history.csv")
    history = Checkpoint.load(tmp_path / "m.ckpt").history
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for row, record in zip(rows, history):
        assert set(row) == set(record)
        assert all(float(row[k]) == record[k] for k in record)  # repr round-trips the floats exactly
    run = json.loads((tmp_path / "logs" / "run" / "run.json").read_text())
    assert run["output"] == str(tmp_path / "m.ckpt") and run["arguments"]["epochs"] == 3 and str(store) in run["inputs"]
    scalars = _scalars(tmp_path / "logs" / "run")
    assert {"train/loss", "val/loss", "val/macro_auc", "lr", "data/wait", "samples/per_s", "epoch/seconds"} <= set(scalars)
    for row in rows:  # each epoch's timings (Engine._timing)
        assert 0 <= float(row["data_wait"]) <= 1 and float(row["samples_per_s"]) > 0 and float(row["epoch_seconds"]) > 0
        assert float(row["samples_per_s"]) == pytest.approx(24 / float(row["epoch_seconds"]))  # 24 records: 3 steps of 8
    assert not set(SPEED_KEYS) & set(Checkpoint.load(tmp_path / "m.ckpt").metrics)  # how fast is not a metric
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3]
    assert all(math.isclose(v, r["train_loss"], rel_tol=1e-6) for (_, v), r in zip(scalars["train/loss"], history))


def test_a_crashed_and_resumed_run_logs_each_epoch_once_as_an_uninterrupted_one(store, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    _train(store, tmp_path / "whole.ckpt", tmp_path / "whole")

    save = Engine._save_resume
    crashed = []

    def crash_after_logging_epoch_2(self, epoch, position):  # epoch 2 logged, its resume state never written
        if epoch == 2 and not crashed:
            crashed.append(epoch)
            raise KeyboardInterrupt
        return save(self, epoch, position)

    monkeypatch.setattr(Engine, "_save_resume", crash_after_logging_epoch_2)
    _train(store, tmp_path / "cut.ckpt", tmp_path / "cut", expect=130)
    assert [r["epoch"] for r in _rows(tmp_path / "cut" / "history.csv")] == ["1", "2"]
    _train(store, tmp_path / "cut.ckpt", tmp_path / "cut", expect=1)  # another run's history is not overwritten
    _train(store, tmp_path / "cut.ckpt", tmp_path / "cut", "--resume")  # continues after epoch 1

    # the same records but for the timings (wall-clock); the same columns
    cut_rows, whole_rows = _rows(tmp_path / "cut" / "history.csv"), _rows(tmp_path / "whole" / "history.csv")
    assert [without_speed(r) for r in cut_rows] == [without_speed(r) for r in whole_rows]
    assert list(cut_rows[0]) == list(whole_rows[0])
    whole, cut = _scalars(tmp_path / "whole"), _scalars(tmp_path / "cut")
    assert [s for s, _ in cut["train/loss"]] == [1, 2, 3]  # the crashed run's epoch 2 purged
    assert [s for s, _ in cut["data/wait"]] == [1, 2, 3]
    timings = {"data/wait", "samples/per_s", "epoch/seconds"}
    assert {k: v for k, v in cut.items() if k not in timings} == {k: v for k, v in whole.items() if k not in timings}


def test_log_dir_refusals_leave_no_files(store, tmp_path):
    r = _train(store, tmp_path / "m.ckpt", store / "logs", expect=1)
    assert "lies inside the input" in r.stderr and not (store / "logs").exists()
    (tmp_path / "file").write_text("x")
    r = _train(store, tmp_path / "m.ckpt", tmp_path / "file", expect=2)
    assert "--log-dir" in r.stderr and "is a file" in r.stderr and not (tmp_path / "m.ckpt").exists()


def test_pretrain_and_distill_take_log_dir(store, tmp_path):
    run_cli("pretrain", "cpc", store, "-o", tmp_path / "enc.ckpt", "--backbone", "resnet18", "--model-arg", "base_width=8",
            "--epochs", 1, "--batch-size", 8, "--log-dir", tmp_path / "pre")
    assert [r["epoch"] for r in _rows(tmp_path / "pre" / "history.csv")] == ["1"]
    run_cli("train", "resnet18", store, "-o", tmp_path / "t.ckpt", "--epochs", 1, "--batch-size", 8, "--model-arg", "base_width=8")
    run_cli("distill", tmp_path / "t.ckpt", store, "--student", "resnet18", "-o", tmp_path / "s.ckpt", "--epochs", 1,
            "--batch-size", 8, "--model-arg", "base_width=8", "--log-dir", tmp_path / "dis")
    assert "train_loss" in _rows(tmp_path / "dis" / "history.csv")[0]


def test_each_validation_pass_reports_its_progress(store, tmp_path):
    from ecgtool.train.loop import TrainArgs, Trainer

    trainer = Trainer(TrainArgs(model="resnet18", epochs=2, batch_size=8, threads=1, model_kwargs={"base_width": 8}),
                      store, store, tmp_path / "m.ckpt")
    calls = []
    trainer.on_validate = lambda done, total: calls.append((done, total))
    trainer.run()
    assert calls == [(24, 24)] * 2  # the validation loader's one batch of 24 records, once per epoch


@pytest.mark.parametrize("command", ["train", "distill", "pretrain"])
def test_an_output_among_the_log_files_is_refused_before_any_work(store, tmp_path, monkeypatch, command):
    """-o LOG/run.json with --log-dir LOG: with --overwrite the checkpoint silently replaced the run's log (or the log
    the checkpoint); without, the whole run trained, then failed ("already exists"), losing the model and leaving a
    .resume that blocked the rerun. Every name the log directory holds, or would hold, is refused up front."""
    def started(*args, **kwargs):
        raise AssertionError("the engine was built before the log directory was checked")

    monkeypatch.setattr(Engine, "__init__", started)
    log = tmp_path / "logs"
    (tmp_path / "teacher.ckpt").write_bytes(b"never read")
    head = {"train": ("train", "resnet18", store), "distill": ("distill", tmp_path / "teacher.ckpt", store, "--student", "resnet18"),
            "pretrain": ("pretrain", "cpc", store, "--backbone", "resnet18")}[command]
    cases = [(log / "run.json", "is the log directory's run.json"), (log / "history.csv", "is the log directory's history.csv"),
             (log / "events.out.tfevents.1700000000.host.1.0", "is named as TensorBoard's event files"),
             (log, "is the log directory")]
    for out, words in cases:
        for extra in ((), ("--overwrite",)):
            r = run_cli(*head, "-o", out, "--epochs", 1, "--log-dir", log, *extra, expect=1)
            assert r.stderr == f"error: the output {out} {words}" + r.stderr.split(words, 1)[1] and r.stderr.count("\n") == 1, r.stderr
    log.mkdir()
    (log / "run.json").write_text("{}")  # an existing log (another run's): neither replaced nor read
    r = run_cli(*head, "-o", log / "run.json", "--epochs", 1, "--log-dir", log, "--overwrite", expect=1)
    assert "is the log directory's run.json" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "teacher.ckpt"] and os.listdir(log) == ["run.json"]
    assert (log / "run.json").read_text() == "{}"
