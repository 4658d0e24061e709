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
    r = run_cli("fetch", "synthetic", "-o", synthetic_raw, "--num-records", 3, expect=1)
    assert r.stderr.strip() == f"error: {synthetic_raw} already exists; pass --overwrite to replace it"
    out = tmp_path / "small"
    r = run_cli("fetch", "synthetic", "-o", out, "--num-records", 3, "--fs", 100, "--seconds", 4, "--leads", "I,II")
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
    r = run_cli("prep", tmp_path, "-o", tmp_path / "s.zarr", "--crop-mode", "middle", expect=2)
    assert r.stderr.splitlines()[-1].startswith("Error: Invalid value for '--crop-mode': 'middle' is not one of 'start'")


def test_split_json(synthetic_store, tmp_path):
    r = run_cli("split", synthetic_store, "-o", tmp_path / "sp", "--json", "--seed", 1)
    doc = json.loads(r.stdout)
    assert set(doc["splits"]) == {"train", "val", "test"}
    assert sum(v["records"] for v in doc["splits"].values()) == 120
    assert "patients" in r.stderr  # the class-count table
    run_cli("split", synthetic_store, "-o", tmp_path / "sp", expect=1)


# -- train → info, eval, profile on the session's trained checkpoint (trained once, in conftest) ------


@pytest.fixture(scope="module")
def eval_run(trained_checkpoint, synthetic_splits, tmp_path_factory):
    """One `eval --json --predictions` of the trained checkpoint on the test split: (report, predictions path)."""
    pred = tmp_path_factory.mktemp("eval") / "pred.zarr"
    r = run_cli("eval", trained_checkpoint, synthetic_splits / "test.zarr", "--json", "--predictions", pred)
    return json.loads(r.stdout), pred


def test_info_describes_the_trained_checkpoint(trained_checkpoint):
    info = json.loads(run_cli("info", trained_checkpoint, "--json").stdout)
    assert info["checkpoint_kind"] == "classifier" and info["model"]["name"] == "resnet18"
    assert info["model"]["kwargs"]["base_width"] == 16  # --model-arg reached the constructor
    assert len(info["thresholds"]["values"]) == 9
    assert [p["step"] for p in info["provenance"]] == ["fetch", "prep", "split", "train"]
    assert info["train_args"]["epochs"] == 2 and info["train_args"]["batch_size"] == 16 and info["train_args"]["seed"] == 0


def test_info_text_names_the_input_leads_and_where_the_thresholds_came_from(trained_checkpoint):
    out = " ".join(run_cli("info", trained_checkpoint).stdout.split())
    assert "input 12 leads (I, II, III, aVR, aVL, aVF, V1, V2, V3, V4, V5, V6), 1000 samples" in out
    assert "thresholds, tuned on validation store" in out


def test_eval_json_reports_every_record_and_class(eval_run, synthetic_splits):
    report, _ = eval_run
    assert report["records"] == len(open_store(synthetic_splits / "test.zarr"))
    assert len(report["classes"]) == 9 and [c["class"] for c in report["per_class"]] == report["classes"]


def test_eval_uses_the_checkpoints_thresholds_and_bootstraps_by_default(eval_run, trained_checkpoint):
    report, _ = eval_run
    info = json.loads(run_cli("info", trained_checkpoint, "--json").stdout)
    assert "tuned on validation store" in report["threshold_source"]
    assert [c["threshold"] for c in report["per_class"]] == pytest.approx(info["thresholds"]["values"])
    assert report["bootstrap"]["resamples"] == 1000


def test_eval_predictions_store_matches_the_report(eval_run, synthetic_splits):
    import zarr

    report, path = eval_run
    pred, store = zarr.open_group(path, mode="r"), open_store(synthetic_splits / "test.zarr")
    probs = pred["probabilities"][:]
    assert probs.shape == (report["records"], 9) and ((probs >= 0) & (probs <= 1)).all()
    assert pred["record_id"][:].tolist() == store.record_id.tolist()
    np.testing.assert_array_equal(pred["labels"][:], store.labels[:])
    thresholds = np.asarray(pred.attrs["thresholds"])  # float64, as eval compares them
    np.testing.assert_array_equal(pred["decisions"][:], (probs >= thresholds).astype(np.uint8))
    assert pred.attrs["classes"] == report["classes"]


def test_eval_prints_a_table_without_json(trained_checkpoint, synthetic_splits):
    r = run_cli("eval", trained_checkpoint, synthetic_splits / "test.zarr", "--bootstrap", 0)
    assert "macro" in r.stdout and "AF" in r.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.stdout)


def test_profile_of_a_checkpoint_uses_its_input_shape(trained_checkpoint):
    prof = json.loads(run_cli("profile", trained_checkpoint, "--json", "--repeats", 1, "--batch-size", 1).stdout)
    assert prof["model"] == "resnet18" and prof["input_shape"] == [12, 1000]
    assert prof["parameters"]["total"] > 1e5 and prof["flops"] == 2 * prof["macs"]
    assert sum(s["macs"] for s in prof["stages"]) == prof["macs"]
    assert sum(s["macs_with_attention"] for s in prof["stages"]) == prof["macs_with_attention"] > 0
    assert prof["flops_with_attention"] == 2 * prof["macs_with_attention"]
    assert [x["batch"] for x in prof["latency"]] == [1]


def test_profile_of_a_model_name_prints_its_stages():
    out = run_cli("profile", "resnet18", "--repeats", 1, "--batch-size", 1).stdout
    assert "resnet18" in out and "12 leads × 1000 samples" in out and "layer4" in out
    assert "MACs incl. attention (M)" in out and "MACs incl. attention 175.2 M" in out


def test_train_options_from_environment(synthetic_splits, tmp_path, monkeypatch):
    """ECGTOOL_TRAIN_<OPTION> reaches the option, is validated like the command line, and loses to it; nothing trains."""
    from click.core import ParameterSource

    from ecgtool.cli import cli

    train, out = synthetic_splits / "train.zarr", tmp_path / "m.ckpt"
    # valid values are seen: the output path and the --resume flag come from the environment alone
    # (--resume with nothing to resume stops before training, whichever way this test fails)
    env = {"ECGTOOL_TRAIN_OUTPUT": str(out), "ECGTOOL_TRAIN_RESUME": "1"}
    r = run_cli("train", "resnet18", train, env=env, expect=1)
    assert r.stderr == f"error: --resume: there is no {out}.resume to continue from\n"
    # an invalid value from the environment is the usage error naming the option, as on the command line
    r = run_cli("train", "resnet18", train, env={**env, "ECGTOOL_TRAIN_EPOCHS": "0"}, expect=2)
    assert r.stderr.splitlines()[-1] == "Error: Invalid value for '--epochs': 0 is not in the range x>=1."
    # the command line wins: --epochs 1 overrides the environment's invalid 0, and -o the environment's path
    r = run_cli("train", "resnet18", train, "-o", tmp_path / "cli.ckpt", "--epochs", 1,
                env={**env, "ECGTOOL_TRAIN_EPOCHS": "0"}, expect=1)
    assert r.stderr == f"error: --resume: there is no {tmp_path / 'cli.ckpt'}.resume to continue from\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # and arrive typed, from the environment (parsed by the real group's train command, not run)
    monkeypatch.setenv("ECGTOOL_TRAIN_BATCH_SIZE", "32")
    monkeypatch.setenv("ECGTOOL_TRAIN_LR", "3e-4")
    monkeypatch.setenv("ECGTOOL_TRAIN_SCHEDULE", "step")
    with cli.make_context("ecgtool", ["train"]) as root:
        command = cli.get_command(root, "train")
        with command.make_context("train", ["resnet18", str(train), "-o", str(out), "--lr", "1e-2"], parent=root) as ctx:
            assert (ctx.params["batch_size"], ctx.params["schedule"], ctx.params["lr"]) == (32, "step", 1e-2)
            assert ctx.get_parameter_source("batch_size") is ParameterSource.ENVIRONMENT
            assert ctx.get_parameter_source("lr") is ParameterSource.COMMANDLINE
            assert ctx.get_parameter_source("epochs") is ParameterSource.DEFAULT


def test_train_lists_its_models():
    from ecgtool.models import list_models

    listing = run_cli("train", "--list").stdout
    assert [line.split("\t")[0] for line in listing.splitlines()] == list_models()
    # the eager flag needs no arguments, and can come from the environment too
    assert run_cli("train", env={"ECGTOOL_TRAIN_LIST": "1"}).stdout == listing
    assert run_cli("train", "--list-models").stdout == listing  # the old spelling


# (case, arguments, exit status, stderr's last line, or its start where it ends in "…"); {store}, {out}, {tmp} filled in
TRAIN_ERRORS = [
    ("unknown model", ["resnet19", "{store}", "-o", "{out}"], 2,
     "Error: Invalid value for MODEL: Unknown model 'resnet19'. Did you mean: resnet18…"),
    ("no output", ["resnet18", "{store}"], 2, "Error: Missing option '-o' / '--output'."),
    ("missing store", ["resnet18", "{tmp}/absent.zarr", "-o", "{out}"], 2,
     "Error: Invalid value for 'TRAIN_STORE': Directory '{tmp}/absent.zarr' does not exist."),
    ("missing val store", ["resnet18", "{store}", "--val", "{tmp}/absent.zarr", "-o", "{out}"], 2,
     "Error: Invalid value for '--val': Directory '{tmp}/absent.zarr' does not exist."),
    ("epochs out of range", ["resnet18", "{store}", "-o", "{out}", "--epochs", "0"], 2,
     "Error: Invalid value for '--epochs': 0 is not in the range x>=1."),
    ("model-arg without =", ["resnet18", "{store}", "-o", "{out}", "--model-arg", "width"], 2,
     "Error: Invalid value for '--model-arg': 'width': write KEY=VALUE"),
    ("unknown schedule", ["resnet18", "{store}", "-o", "{out}", "--schedule", "linear"], 2,
     "Error: Invalid value for '--schedule': 'linear' is not one of 'cosine', 'step', 'constant'."),
    ("resume without a resume file", ["resnet18", "{store}", "-o", "{out}", "--resume"], 1,
     "error: --resume: there is no {out}.resume to continue from"),
    ("existing output", ["resnet18", "{store}", "-o", "{tmp}/old.ckpt"], 1,
     "error: {tmp}/old.ckpt already exists; pass --overwrite to replace it"),
    ("interrupted run left behind", ["resnet18", "{store}", "-o", "{tmp}/cut.ckpt"], 1,
     "error: {tmp}/cut.ckpt.resume holds an unfinished run (interrupted, or stopped by an error after an epoch); pass --resume "
     "to continue it, or delete {tmp}/cut.ckpt.resume (or pass --overwrite) to start again"),
]


@pytest.mark.parametrize("args, status, message", [c[1:] for c in TRAIN_ERRORS], ids=[c[0] for c in TRAIN_ERRORS])
def test_train_usage_errors(synthetic_splits, tmp_path, args, status, message):
    """Exit 2 for usage errors, 1 for failures, with the one message naming the option or file at fault."""
    (tmp_path / "old.ckpt").write_bytes(b"a checkpoint")
    (tmp_path / "cut.ckpt.resume").write_bytes(b"an interrupted run")
    before = sorted(tmp_path.iterdir())
    fill = {"store": synthetic_splits / "train.zarr", "out": tmp_path / "m.ckpt", "tmp": tmp_path}
    r = run_cli("train", *[a.format(**fill) for a in args], expect=status)
    last, expected = r.stderr.splitlines()[-1], message.format(**fill)
    assert last.startswith(expected[:-1]) if expected.endswith("…") else last == expected
    assert r.stdout == "" and "Traceback" not in r.stderr
    assert sorted(tmp_path.iterdir()) == before  # nothing written, nothing removed
    if status == 1:
        assert r.stderr.count("\n") == 1  # one line, no usage text


def test_eval_refuses_a_foreign_file(synthetic_splits, tmp_path):
    (tmp_path / "x.ckpt").write_text("not a checkpoint")
    r = run_cli("eval", tmp_path / "x.ckpt", synthetic_splits / "test.zarr", expect=1)
    assert r.stderr.startswith(f"error: {tmp_path / 'x.ckpt'} is not a checkpoint file that torch can read")
    from click.testing import CliRunner

    from ecgtool.cli import cli
    from ecgtool.checkpoint import CheckpointError

    r = CliRunner().invoke(cli, ["--debug", "eval", str(tmp_path / "x.ckpt"), str(synthetic_splits / "test.zarr")])
    assert isinstance(r.exception, CheckpointError)  # --debug lets the exception (and its traceback) through


def test_prep_option_ranges_are_usage_errors(synthetic_raw, tmp_path):
    for args, message in (
        (["--limit", "-5"], "Invalid value for '--limit': -5 is not in the range x>=1."),
        (["--seconds", "-1"], "Invalid value for '--seconds': -1.0 is not in the range x>=0."),
        (["--fs", "0"], "Invalid value for '--fs': 0.0 is not in the range x>0."),
        (["--lowcut", "60", "--highcut", "0"],
         "Invalid value for '--lowcut': band-pass low cut-off 60 Hz must be below the Nyquist frequency 50 Hz of the "
         "sampling rate fs 100 Hz"),
    ):
        r = run_cli("prep", synthetic_raw, "-o", tmp_path / "s.zarr", *args, expect=2)
        assert r.stderr.splitlines()[-1] == f"Error: {message}" and not (tmp_path / "s.zarr").exists()


def test_eval_refuses_an_existing_predictions_path_before_evaluating(trained_checkpoint, synthetic_splits, tmp_path):
    (tmp_path / "pred.zarr").mkdir()
    r = run_cli("eval", trained_checkpoint, synthetic_splits / "test.zarr", "--predictions", tmp_path / "pred.zarr", expect=1)
    assert "already exists; pass --overwrite" in r.stderr and r.stdout == ""


def test_json_output_is_strict(tmp_path):
    from ecgtool.cli.options import _finite

    assert _finite({"a": float("nan"), "b": [1.0, float("inf")]}) == {"a": None, "b": [1.0, None]}


def _registry_rows(out: str) -> dict[str, list[str]]:
    """`profile --list`'s table rows: model name -> [params, MACs (M), MACs incl. attention (M)]."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == 4 and cells[0] and cells[0] != "model":
            rows[cells[0]] = cells[1:]
    return rows


def _thop_macs(name: str) -> float:
    """MACs of a fresh default model (12 leads × 1000 samples, 9 classes) by thop itself, not ecgtool's wrapper."""
    import warnings

    import torch

    from ecgtool.models import create_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import thop
    model = create_model(name, num_classes=9).eval()
    macs, _ = thop.profile(model, inputs=(torch.zeros(1, 12, 1000),), verbose=False)
    return macs


def test_profile_list_prints_the_registry_numbers(monkeypatch):
    """The defaults' figures for two models: published ones, and thop's own count (a subset, to stay cheap)."""
    monkeypatch.setattr("ecgtool.models.list_models", lambda: ["mobilenet_v2", "resnet18"])
    out = run_cli("profile", "--list").stdout
    assert "registered models at 12 leads × 1000 samples, 9 classes" in " ".join(out.split())  # the title may wrap
    rows = _registry_rows(out)
    assert list(rows) == ["mobilenet_v2", "resnet18"]
    # resnet18: 3.85 M parameters and 176.57 M MACs in the research notebook (NOTEBOOK-RESULTS.md), README's count
    # and 175.2 M with torch's FlopCounterMode (convolutions and linear layers alone, no BatchNorm)
    assert rows["resnet18"] == ["3,853,449", "176.6", "175.2"]
    # mobilenet_v2: the notebook's 2.19 M parameters; MACs as thop counts the model directly
    assert rows["mobilenet_v2"][0] == "2,192,873"
    assert rows["mobilenet_v2"][1] == f"{_thop_macs('mobilenet_v2') / 1e6:,.1f}"
    assert rows["mobilenet_v2"][2] == "92.3"


@pytest.mark.slow  # builds and counts every registered model (both MAC counts), ~6 s
def test_profile_list_covers_every_registered_model():
    from ecgtool.models import list_models

    out = run_cli("profile", "--list", "--num-leads", 1, "--num-samples", 500, "--num-classes", 3).stdout
    assert "registered models at 1 leads × 500 samples, 3 classes" in " ".join(out.split())
    rows = _registry_rows(out)
    assert list(rows) == list_models()
    tiny = {"clocs_cnn"}  # CLOCS' encoder: ~0.04 M MACs at 1 lead x 500 samples, printed (0.1 M precision) as 0.0
    for name, (params, macs, macs_with_attention) in rows.items():
        assert int(params.replace(",", "")) > 0, name
        if name in tiny:
            assert macs == macs_with_attention == "0.0", name
            continue
        assert float(macs.replace(",", "")) > 0 and float(macs_with_attention.replace(",", "")) > 0, name


def test_profile_needs_a_target():
    r = run_cli("profile", expect=2)
    assert r.stderr.splitlines()[-1] == "Error: give a MODEL name or a CHECKPOINT file (or --list)"


def test_profile_list_in_json_and_options_a_run_would_ignore(monkeypatch, trained_checkpoint):
    monkeypatch.setattr("ecgtool.models.list_models", lambda: ["resnet18"])
    doc = json.loads(run_cli("profile", "--list", "--json").stdout)
    assert doc["input_shape"] == [12, 1000] and doc["models"][0]["model"] == "resnet18"
    assert doc["models"][0]["parameters"] == 3_853_449 and round(doc["models"][0]["macs"] / 1e6, 1) == 176.6
    for args, flag in ((["--list", "--batch-size", 4], "--batch-size"), ([trained_checkpoint, "--num-leads", 3], "--num-leads")):
        assert f"Error: {flag} would be ignored" in run_cli("profile", *args, expect=2).stderr
    assert "give it no MODEL" in run_cli("profile", "resnet18", "--list", expect=2).stderr
    # set in the environment (a default for many runs), an option this run does not use is left alone
    run_cli("profile", "--list", "--json", env={"ECGTOOL_PROFILE_REPEATS": "3"})
