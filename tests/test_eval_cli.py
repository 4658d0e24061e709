"""`ecgtool eval`: threshold policy, bootstrap intervals, saved resamples, paired comparison,
sliding windows for crop-trained models, plots, and outputs never left half-written."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from conftest import run_cli

from ecgtool.eval.predict import Windows, window_probabilities, windows_for


def eval_json(*args) -> dict:
    return json.loads(run_cli("eval", *args, "--json").stdout)


def test_default_report_has_intervals_and_provenance(trained_checkpoint, synthetic_splits):
    rep = eval_json(trained_checkpoint, synthetic_splits / "test.zarr", "--bootstrap", 200)
    assert "checkpoint: tuned on validation store" in rep["threshold_source"]
    boot = rep["bootstrap"]
    assert boot["resamples"] == 200 and boot["seed"] == 0 and boot["level"] == 0.95
    for name in ("auroc", "auprc", "f1", "fmax", "f_beta2", "g_beta2", "exact_match", "sensitivity", "specificity"):
        low, high = boot["intervals"][name]["low"], boot["intervals"][name]["high"]
        assert low <= high and low - 0.05 <= rep["macro"][name] <= high + 0.05, name
    assert set(boot["intervals"]["per_class_auroc"]) == set(rep["classes"])
    assert rep["store_fingerprint"] and rep["checkpoint_fingerprint"] and rep["windows"] is None
    assert rep["challenge"] is None and "challenge" not in rep["macro"]  # synthetic classes are not SNOMED-coded
    assert all(set(c["confusion"]) == {"tp", "fp", "fn", "tn"} for c in rep["per_class"])
    again = eval_json(trained_checkpoint, synthetic_splits / "test.zarr", "--bootstrap", 200)
    assert again["bootstrap"] == boot  # seeded


def test_the_table_in_a_file_keeps_its_natural_width(trained_checkpoint, synthetic_splits, monkeypatch):
    """Redirected output (CliRunner's is not a terminal) is not squeezed to 80 columns: at that width rich cut the
    headers to "precis…" and wrapped each interval over three lines."""
    monkeypatch.delenv("COLUMNS", raising=False)
    out = run_cli("eval", trained_checkpoint, synthetic_splits / "test.zarr", "--bootstrap", 20).stdout
    assert "precision" in out and "thresh." in out and "…" not in out
    rows = [line for line in out.splitlines() if line.startswith("│")]
    assert rows and not [line for line in rows if re.match(r"│\s+│", line)]  # no row wrapped onto a continuation line
    assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", out)


def test_a_resume_file_is_evaluated_with_a_warning(trained_checkpoint, synthetic_splits, tmp_path):
    import dataclasses

    from ecgtool.checkpoint import Checkpoint

    ckpt = Checkpoint.load(trained_checkpoint)
    dataclasses.replace(ckpt, resume={"epoch": 1, "position": {}}).save(tmp_path / "m.ckpt.resume")
    err = " ".join(run_cli("eval", tmp_path / "m.ckpt.resume", synthetic_splits / "test.zarr", "--bootstrap", 0).stderr.split())
    assert "m.ckpt.resume is the resume file of an unfinished run (it would resume at epoch 2)" in err
    assert "resume file" not in run_cli("eval", trained_checkpoint, synthetic_splits / "test.zarr", "--bootstrap", 0).stderr


def test_a_store_filtered_otherwise_than_the_training_data_is_named(trained_checkpoint, synthetic_raw, synthetic_splits,
                                                                   tmp_path):
    """The input spec (rate, length, leads, normalisation) fits; only the band-pass differs, which no check saw."""
    run_cli("prep", synthetic_raw, "-o", tmp_path / "raw.zarr", "--fs", 100, "--lowcut", 0, "--highcut", 0, "--limit", 30, "--jobs", 1)
    err = " ".join(run_cli("eval", trained_checkpoint, tmp_path / "raw.zarr", "--bootstrap", 0).stderr.split())
    assert "raw.zarr was prepared otherwise than the training data of" in err
    assert "lowcut None (training data 0.5), highcut None (training data 50.0)" in err
    err = run_cli("eval", trained_checkpoint, synthetic_splits / "test.zarr", "--bootstrap", 0).stderr
    assert "prepared otherwise" not in err


def test_thresholds_are_never_tuned_on_the_reported_store_by_accident(trained_checkpoint, synthetic_splits):
    test = synthetic_splits / "test.zarr"
    r = run_cli("eval", trained_checkpoint, test, "--val", test, expect=2)
    assert "Invalid value for '--val': the validation store" in r.stderr and "is the store being evaluated" in r.stderr
    assert r.stderr.rstrip().endswith("(--tune-on-eval-store does it anyway)")  # the flag, in the CLI's words
    r = run_cli("eval", trained_checkpoint, test, "--threshold-scope", "global", expect=2)
    assert "Invalid value for '--threshold-objective'" in r.stderr and "give a validation store" in r.stderr
    rep = eval_json(trained_checkpoint, test, "--tune-on-eval-store", "--bootstrap", 0)
    assert "evaluated store itself" in rep["threshold_source"] and "bootstrap" not in rep
    rep = eval_json(trained_checkpoint, test, "--val", synthetic_splits / "val.zarr", "--threshold-objective", "youden",
                    "--threshold-scope", "global", "--bootstrap", 0)
    assert "tuned now on validation store" in rep["threshold_source"] and "Youden" in rep["threshold_source"]
    assert len({c["threshold"] for c in rep["per_class"]}) == 1


def test_saved_resamples_reproduce_the_intervals_and_compare_is_paired(trained_checkpoint, synthetic_splits, tmp_path):
    test = synthetic_splits / "test.zarr"
    a = eval_json(trained_checkpoint, test, "--bootstrap", 100, "--seed", 3, "--save-resamples", tmp_path / "ids.npy")
    ids = np.load(tmp_path / "ids.npy")
    assert ids.shape == (100, a["records"])
    b = eval_json(trained_checkpoint, test, "--resamples", tmp_path / "ids.npy", "--compare", trained_checkpoint)
    assert b["bootstrap"]["intervals"] == a["bootstrap"]["intervals"]
    assert b["bootstrap"]["resample_ids_sha256"] == a["bootstrap"]["resample_ids_sha256"]
    diff = b["comparison"]["difference"]["auroc"]
    assert diff["difference"] == 0 and diff["low"] == diff["high"] == 0
    np.save(tmp_path / "bad.npy", ids[:, :-1])
    r = run_cli("eval", trained_checkpoint, test, "--resamples", tmp_path / "bad.npy", expect=2)
    assert "expected integer ids" in r.stderr
    # a count that differs from the file's is refused, not silently replaced by it (50 asked for, 20 used)
    np.save(tmp_path / "twenty.npy", ids[:20])
    for count in ("50", "0"):
        r = run_cli("eval", trained_checkpoint, test, "--bootstrap", count, "--resamples", tmp_path / "twenty.npy", expect=2)
        assert r.stderr.splitlines()[-1] == (f"Error: Invalid value for '--bootstrap': bootstrap {count} asks for {count} "
                                             f"resamples, and {tmp_path / 'twenty.npy'} holds 20, which are reused as they "
                                             "are: give 20 or leave the count out")
    assert eval_json(trained_checkpoint, test, "--bootstrap", 20, "--resamples", tmp_path / "twenty.npy")["bootstrap"]["resamples"] == 20


def test_window_starts_cover_the_record_and_aggregate():
    assert Windows(250, 125).starts(1000) == [0, 125, 250, 375, 500, 625, 750]
    assert Windows(300, 300).starts(1000) == [0, 300, 600, 700]  # the last window is aligned to the end
    assert windows_for(1000, 1000) is None and windows_for(250, 1000) == Windows(250, 125, "max")

    class Peak(torch.nn.Module):  # logit = the window's maximum of channel 0
        def forward(self, x):
            return x[:, :1].amax(dim=-1)

    x = torch.zeros(2, 1, 1000)
    x[0, 0, 900] = 3.0
    p_max = window_probabilities(Peak(), x, Windows(250, 125, "max"), True)
    p_mean = window_probabilities(Peak(), x, Windows(250, 125, "mean"), True)
    assert p_max[0, 0] == pytest.approx(torch.sigmoid(torch.tensor(3.0)))
    # windows starting at 750 (covers 900) and the others (do not): mean of 1 x sigmoid(3) and 6 x 0.5
    assert p_mean[0, 0] == pytest.approx((torch.sigmoid(torch.tensor(3.0)) + 6 * 0.5) / 7)
    assert p_max[1, 0] == pytest.approx(0.5)


def test_crop_training_and_windowed_eval(synthetic_splits, tmp_path):
    ckpt = tmp_path / "crop.ckpt"
    test, val = synthetic_splits / "test.zarr", synthetic_splits / "val.zarr"
    run_cli("train", "resnet18", synthetic_splits / "train.zarr", "--val", val, "-o", ckpt,
            "--epochs", 1, "--batch-size", 16, "--crop", 400, "--model-arg", "base_width=8")
    info = json.loads(run_cli("info", ckpt, "--json").stdout)
    assert info["input"]["samples"] == 400 and info["train_args"]["crop"] == 400
    assert info["thresholds"]["windows"] == {"length": 400, "stride": 200, "aggregate": "max"}
    rep = eval_json(ckpt, test, "--bootstrap", 0, "--predictions", tmp_path / "p.zarr")
    assert rep["windows"] == {"length": 400, "stride": 200, "aggregate": "max"} and rep["threshold_source"].startswith("checkpoint")
    # the probabilities are the maximum over the windows of the model's outputs
    import zarr

    from ecgtool.checkpoint import Checkpoint
    from ecgtool.data.store import open_store

    loaded = Checkpoint.load(ckpt)
    model = loaded.build_model().eval()
    store = open_store(test)
    x = torch.from_numpy(loaded.input.reader(store)(store.rows(0, 2)))
    with torch.no_grad():
        expected = torch.stack([torch.sigmoid(model(x[..., s:s + 400])) for s in (0, 200, 400, 600)]).amax(0)
    got = zarr.open_group(tmp_path / "p.zarr", mode="r")["probabilities"][:2]
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)
    # thresholds tuned under max aggregation are not applied to another aggregation without --val
    r = run_cli("eval", ckpt, test, "--aggregate", "mean", "--window-stride", 300, expect=1)
    assert "thresholds were tuned on 400-sample windows, stride 200, max" in r.stderr
    rep = eval_json(ckpt, test, "--bootstrap", 0, "--aggregate", "mean", "--window-stride", 300, "--val", val)
    assert rep["windows"] == {"length": 400, "stride": 300, "aggregate": "mean"}
    r = run_cli("eval", ckpt, test, "--window-stride", 500, "--val", val, expect=2)
    assert "Invalid value for '--window-stride'" in r.stderr and "samples would go unseen" in r.stderr
    r = run_cli("train", "resnet18", synthetic_splits / "train.zarr", "-o", tmp_path / "x.ckpt", "--crop", 5000, expect=2)
    assert "Invalid value for '--crop'" in r.stderr and "longer than" in r.stderr


def test_thresholds_tuned_on_the_evaluated_store_are_refused(synthetic_splits, tmp_path):
    """train --val TEST followed by eval on TEST would report optimistic thresholds unnoticed."""
    test, val, train = (synthetic_splits / f"{n}.zarr" for n in ("test", "val", "train"))
    ckpt = tmp_path / "leak.ckpt"
    run_cli("train", "resnet18", train, "--val", test, "-o", ckpt, "--epochs", 1, "--batch-size", 16, "--model-arg", "base_width=8")
    r = run_cli("eval", ckpt, test, expect=1)
    assert "tuned on" in r.stderr and "itself" in r.stderr
    rep = eval_json(ckpt, test, "--bootstrap", 0, "--val", val)  # fresh thresholds from a disjoint store are fine
    assert "tuned now on validation store" in rep["threshold_source"]
    r = run_cli("eval", ckpt, test, "--val", val, "--tune-on-eval-store", expect=2)
    assert "Invalid value for '--tune-on-eval-store'" in r.stderr and "give one" in r.stderr
    rep = eval_json(ckpt, train, "--bootstrap", 0)
    assert any("trained on" in w for w in rep["warnings"])


def test_val_sharing_records_with_the_store_is_refused(trained_checkpoint, synthetic_store, synthetic_splits):
    r = run_cli("eval", trained_checkpoint, synthetic_splits / "test.zarr", "--val", synthetic_store, expect=2)
    assert "shares" in r.stderr and "record(s)" in r.stderr


def test_bad_inputs_are_refused_before_inference(trained_checkpoint, synthetic_splits, tmp_path):
    test = synthetic_splits / "test.zarr"
    np.save(tmp_path / "empty.npy", np.zeros((0, 3), dtype=np.int32))
    np.savez(tmp_path / "ids.npz", a=np.zeros((2, 3)))
    for bad in ("empty.npy", "ids.npz"):
        r = run_cli("eval", trained_checkpoint, test, "--resamples", tmp_path / bad, expect=2)
        assert r.stderr.splitlines()[-1].startswith(f"Error: Invalid value for '--resamples': resamples {tmp_path / bad}")
    r = run_cli("eval", trained_checkpoint, test, "--window-stride", 10, expect=2)
    assert "there are no windows" in r.stderr
    r = run_cli("eval", trained_checkpoint, test, "--predictions", test, "--overwrite", expect=2)
    assert "'--predictions'" in r.stderr and "is an input of this evaluation" in r.stderr  # the option and the path named
    r = run_cli("eval", trained_checkpoint, test, "--predictions", tmp_path / "a", "--plots", tmp_path / "a", expect=2)
    assert "'--plots'" in r.stderr and "is also the --predictions path" in " ".join(r.stderr.split())


def test_outputs_plots_and_refusals(trained_checkpoint, synthetic_splits, tmp_path):
    test = synthetic_splits / "test.zarr"
    plots = tmp_path / "plots"
    run_cli("eval", trained_checkpoint, test, "--bootstrap", 20, "--plots", plots, "--predictions", tmp_path / "p.zarr")
    pngs = sorted(f.name for f in plots.iterdir())
    assert {"roc.png", "pr.png", "reliability.png", "confusion.png"} <= set(pngs)
    assert all((plots / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in pngs)
    import zarr

    pred = zarr.open_group(tmp_path / "p.zarr", mode="r")
    assert pred["resample_ids"].shape[0] == 20 and pred["decisions"].shape == pred["probabilities"].shape
    r = run_cli("eval", trained_checkpoint, test, "--plots", plots, expect=1)
    assert "exists" in r.stderr
    assert not list(tmp_path.glob("*.tmp*"))


def test_explain_runs_a_crop_model_on_evals_windows(synthetic_splits, tmp_path):
    """A model trained on 5-s crops is explained on the 10-s records window by window, as eval scores it
    (tests/test_explain_views.py checks the stitching and the deciding window)."""
    ckpt = tmp_path / "crop.ckpt"
    run_cli("train", "resnet18", synthetic_splits / "train.zarr", "-o", ckpt, "--epochs", 1, "--batch-size", 16,
            "--crop", 500, "--model-arg", "base_width=8")
    r = run_cli("explain", ckpt, synthetic_splits / "test.zarr", "--first", 1, "-o", tmp_path / "x", "--no-charts", "--json")
    doc = json.loads(r.stdout)
    assert doc["windows"]["starts"] == [0, 250, 500] and doc["windows"]["aggregate"] == "max"
    assert doc["records"][0]["window"]["index"] in (0, 1, 2)


def test_progress_follows_each_inference_and_bootstrap(trained_checkpoint, synthetic_splits):
    from ecgtool.eval.evaluate import run_eval
    from ecgtool.eval.options import EvalOptions

    calls = []
    test = synthetic_splits / "test.zarr"
    result = run_eval(trained_checkpoint, test, "cpu", EvalOptions(bootstrap=130, val=str(synthetic_splits / "val.zarr")),
                      compare=trained_checkpoint, progress=lambda done, total, **kw: calls.append((done, total, kw)))
    phases = {}
    for done, total, kw in calls:
        phases.setdefault((kw["label"], kw["unit"]), []).append((done, total))
    records = result.report["records"]
    name = trained_checkpoint.name
    # the evaluated and the compared checkpoint (the same file here) each run on the validation and the test store
    assert list(phases) == [(f"{name} on test.zarr", "records"), (f"{name} on val.zarr", "records"),
                            (f"bootstrap {name}", "resamples")]
    assert phases[(f"{name} on test.zarr", "records")][-1] == (records, records)
    assert phases[(f"bootstrap {name}", "resamples")][-1] == (130, 130)
    assert [d for d, _ in phases[(f"bootstrap {name}", "resamples")]][:3] == [64, 128, 130]
