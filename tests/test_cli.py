"""One test per command through the real command group, plus the CLI conventions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from ecgtool.data.store import open_store

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_commands_without_importing_torch():
    code = (
        "import sys\n"
        "from ecgtool.cli import cli\n"
        "for args in (['--help'], ['train', '--help'], ['prep', '--help'], ['eval', '--help'], ['profile', '--help']):\n"
        "    try:\n"
        "        cli(args, prog_name='ecgtool')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("NO-TORCH")
    for name in ("fetch", "prep", "split", "train", "eval", "profile", "info"):
        assert name in out


@pytest.mark.parametrize("shell, name", [("bash", "ecgtool.bash"), ("zsh", "_ecgtool"), ("fish", "ecgtool.fish")])
def test_completion_scripts_are_current(shell, name):
    env = {**os.environ, "_ECGTOOL_COMPLETE": f"{shell}_source"}
    generated = subprocess.run([sys.executable, "-m", "ecgtool"], env=env, capture_output=True, text=True, check=True).stdout
    assert generated == (ROOT / "completions" / name).read_text(), "run completions/generate.sh"


def test_completion_answers_subcommands_and_options():
    env = {**os.environ, "_ECGTOOL_COMPLETE": "bash_complete", "COMP_WORDS": "ecgtool train --ep", "COMP_CWORD": "2"}
    out = subprocess.run([sys.executable, "-m", "ecgtool"], env=env, capture_output=True, text=True, check=True).stdout
    assert "plain,--epochs" in out


def test_fetch_synthetic(synthetic_raw, tmp_path):
    assert (synthetic_raw / "RECORDS").read_text().count("\n") == 120
    assert (synthetic_raw / "labels.csv").is_file() and (synthetic_raw / "SYN00001.hea").is_file()
    r = run_cli("fetch", "synthetic", "-o", synthetic_raw, "--records", 3, expect=1)
    assert r.stderr.strip() == f"error: {synthetic_raw} already exists; pass --overwrite to replace it"
    out = tmp_path / "small"
    r = run_cli("fetch", "synthetic", "-o", out, "--records", 3, "--fs", 100, "--seconds", 4, "--leads", "I,II")
    assert r.stdout.strip() == str(out) and sorted(p.name for p in tmp_path.iterdir()) == ["small"]
    assert "synthetic" in run_cli("fetch", "--list").stdout


def test_prep_and_info(synthetic_store):
    s = open_store(synthetic_store)
    assert s.signals.shape == (120, 12, 1000) and s.classes[:2] == ["NORM", "AF"]
    assert s.attrs["patient_ids"] == "dataset" and len(np.unique(s.patient_id)) < 120
    assert s.attrs["task"] == "synthetic-cpsc2018" and s.attrs["dataset"] == "synthetic"
    info = json.loads(run_cli("info", synthetic_store, "--json").stdout)
    assert info["records"] == 120 and info["fs"] == 100
    assert [p["step"] for p in info["provenance"]] == ["fetch", "prep"]
    assert info["provenance"][0]["config"]["n_records"] == 120
    assert sum(info["class_counts"].values()) >= 120
    text = run_cli("info", synthetic_store).stdout
    assert "NORM" in text and "provenance" in text


def test_prep_errors_are_one_line(tmp_path):
    r = run_cli("prep", tmp_path / "absent", "-o", tmp_path / "s.zarr", expect=1)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    r = run_cli("prep", tmp_path, "-o", tmp_path / "s.zarr", "--crop", "middle", expect=2)
    assert "--crop" in r.stderr


def test_split_json(synthetic_store, tmp_path):
    r = run_cli("split", synthetic_store, "-o", tmp_path / "sp", "--json", "--seed", 1)
    doc = json.loads(r.stdout)
    assert set(doc["splits"]) == {"train", "val", "test"}
    assert sum(v["records"] for v in doc["splits"].values()) == 120
    assert "patients" in r.stderr  # the class-count table
    run_cli("split", synthetic_store, "-o", tmp_path / "sp", expect=1)


def test_train_eval_profile(trained_checkpoint, synthetic_splits, tmp_path):
    ckpt = trained_checkpoint
    info = json.loads(run_cli("info", ckpt, "--json").stdout)
    assert info["checkpoint_kind"] == "classifier" and info["model"]["name"] == "resnet18"
    assert len(info["thresholds"]["values"]) == 9 and [p["step"] for p in info["provenance"]] == ["fetch", "prep", "split", "train"]

    r = run_cli("eval", ckpt, synthetic_splits / "test.zarr", "--json", "--predictions", tmp_path / "pred.zarr")
    report = json.loads(r.stdout)
    assert report["records"] == len(open_store(synthetic_splits / "test.zarr"))
    assert [c["class"] for c in report["per_class"]] == report["classes"]
    assert "tuned on validation store" in report["threshold_source"] and report["bootstrap"]["resamples"] == 1000
    import zarr

    pred = zarr.open_group(tmp_path / "pred.zarr", mode="r")
    assert pred["probabilities"].shape == (report["records"], 9)
    table = run_cli("eval", ckpt, synthetic_splits / "test.zarr").stdout
    assert "macro" in table and "AF" in table

    prof = json.loads(run_cli("profile", ckpt, "--json", "--repeats", 2, "--batch", 1).stdout)
    assert prof["parameters"]["total"] > 1e5 and prof["flops"] == 2 * prof["macs"]
    assert sum(s["macs"] for s in prof["stages"]) == prof["macs"]
    assert "layer4" in run_cli("profile", "resnet18", "--repeats", 1, "--batch", 1).stdout


def test_train_options_from_environment(synthetic_splits, tmp_path):
    out = tmp_path / "m.ckpt"
    env = {"ECGTOOL_TRAIN_EPOCHS": "1", "ECGTOOL_TRAIN_BATCH_SIZE": "32"}
    r = run_cli("train", "mobilenet_v2", synthetic_splits / "train.zarr", "--val", synthetic_splits / "val.zarr",
                "-o", out, "--json", "--model-arg", "width_mult=0.25", env=env)
    doc = json.loads(r.stdout)
    assert doc["metrics"]["epoch"] == 1
    info = json.loads(run_cli("info", out, "--json").stdout)
    assert info["train_args"]["epochs"] == 1 and info["train_args"]["batch_size"] == 32


def test_train_usage_errors(synthetic_splits, tmp_path):
    listing = run_cli("train", "--list-models").stdout
    assert "resnet18" in listing and "mobilenet_v2" in listing
    r = run_cli("train", "resnet19", synthetic_splits / "train.zarr", "-o", tmp_path / "m.ckpt", expect=2)
    assert "resnet18" in r.stderr  # did-you-mean
    r = run_cli("train", "resnet18", synthetic_splits / "train.zarr", "-o", tmp_path / "m.ckpt", "--resume", expect=1)
    assert "no" in r.stderr and ".resume" in r.stderr


def test_eval_refuses_a_foreign_file(synthetic_splits, tmp_path):
    (tmp_path / "x.ckpt").write_text("not a checkpoint")
    r = run_cli("eval", tmp_path / "x.ckpt", synthetic_splits / "test.zarr", expect=1)
    assert r.stderr.startswith(f"error: {tmp_path / 'x.ckpt'} is not a readable ecgtool checkpoint")
    from click.testing import CliRunner

    from ecgtool.cli import cli
    from ecgtool.train.checkpoint import CheckpointError

    r = CliRunner().invoke(cli, ["--debug", "eval", str(tmp_path / "x.ckpt"), str(synthetic_splits / "test.zarr")])
    assert isinstance(r.exception, CheckpointError)  # --debug lets the exception (and its traceback) through


def test_prep_option_ranges_are_usage_errors(synthetic_raw, tmp_path):
    for args in (["--limit", "-5"], ["--seconds", "-1"], ["--fs", "0"], ["--lowcut", "60", "--highcut", "0"]):
        r = run_cli("prep", synthetic_raw, "-o", tmp_path / "s.zarr", *args, expect=2)
        assert "Error" in r.stderr and not (tmp_path / "s.zarr").exists()


def test_eval_refuses_an_existing_predictions_path_before_evaluating(trained_checkpoint, synthetic_splits, tmp_path):
    (tmp_path / "pred.zarr").mkdir()
    r = run_cli("eval", trained_checkpoint, synthetic_splits / "test.zarr", "--predictions", tmp_path / "pred.zarr", expect=1)
    assert "already exists; pass --overwrite" in r.stderr and r.stdout == ""


def test_json_output_is_strict(tmp_path):
    from ecgtool.cli.options import _finite

    assert _finite({"a": float("nan"), "b": [1.0, float("inf")]}) == {"a": None, "b": [1.0, None]}


def test_profile_list_prints_the_registry():
    from ecgtool.models import list_models

    out = run_cli("profile", "--list", "--leads", 1, "--samples", 500, "--classes", 3).stdout
    assert "1 leads × 500 samples, 3 classes" in out
    assert all(name in out for name in list_models())
    run_cli("profile", expect=2)
