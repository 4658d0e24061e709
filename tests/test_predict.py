"""predict: raw recordings get exactly the preprocessing of the training data — a recording's probabilities
equal eval's on its store row — from WFDB, .mat and CSV files, at other rates and lengths; refusals in one
line; outputs all-or-nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli, wfdb_store, write_wfdb_dir
from datasets_fixture import STANDARD, write_challenge_record

from ecgtool.checkpoint import Checkpoint
from ecgtool.eval.evaluate import run_eval
from ecgtool.eval.metrics import predict_labels
from ecgtool.eval.options import EvalOptions

TOL = 1e-5


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A training and a validation store (3 leads, 250 Hz raw, 4 s at 100 Hz), a whole-record and a crop model."""
    root = tmp_path_factory.mktemp("predict")
    train = wfdb_store(root / "train.zarr", n=16, seed=1)
    val = wfdb_store(root / "val.zarr", n=8, seed=2)
    models = {}
    for name, extra in (("whole", ()), ("crop", ("--crop", 200))):
        models[name] = root / f"{name}.ckpt"
        run_cli("train", "resnet18", train, "--val", val, "-o", models[name], "--epochs", 1, "--batch-size", 8,
                "--device", "cpu", "--model-arg", "base_width=8", *extra)
    return root, val, models


def eval_probs(ckpt, store) -> dict[str, np.ndarray]:
    """eval's probabilities per record id of ``store`` (thresholds irrelevant here: tuned on it, knowingly)."""
    result = run_eval(ckpt, store, "cpu", EvalOptions(bootstrap=0, tune_on_eval_store=True))
    ids = result.store.record_id[result.main.rows]
    return dict(zip(ids.tolist(), result.main.probs))


def predict_json(*args, expect: int = 0) -> dict:
    r = run_cli("predict", *args, "--device", "cpu", "--json", expect=expect)
    return json.loads(r.stdout)


def probs_of(doc: dict) -> dict[str, np.ndarray]:
    return {r["record"]: np.array([r["probabilities"][c] for c in doc["classes"]]) for r in doc["records"]}


@pytest.mark.parametrize("model", ["whole", "crop"])
def test_raw_records_score_as_their_store_rows(setup, model):
    """The proof that predict preprocesses as prep did: the raw records that built the validation store get
    eval's probabilities for their rows, and the checkpoint's thresholds decide."""
    root, val, models = setup
    doc = predict_json(models[model], root / "raw-val")
    got, expected = probs_of(doc), eval_probs(models[model], val)
    assert sorted(got) == sorted(expected) and len(got) == 8
    for rid, p in expected.items():
        np.testing.assert_allclose(got[rid], p, atol=TOL, err_msg=rid)
    ckpt = Checkpoint.load(models[model])
    assert doc["thresholds"] == pytest.approx(ckpt.thresholds["values"])
    assert doc["windows"] == ckpt.thresholds["windows"] and (doc["windows"] is None) == (model == "whole")
    decided = predict_labels(np.stack([got[r["record"]] for r in doc["records"]]), True, ckpt.thresholds["values"])
    assert [r["labels"] for r in doc["records"]] == [[c for c, d in zip(doc["classes"], row) if d] for row in decided]
    assert doc["preprocessing"]["fs"] == 100 and doc["preprocessing"]["samples"] == 400


@pytest.mark.parametrize("raw", [dict(fs=500, seconds=4.0), dict(fs=250, seconds=2.5), dict(fs=250, seconds=6.0)],
                         ids=["other-rate", "too-short", "longer"])
def test_other_rates_and_lengths_are_resampled_padded_or_cropped_as_prep_does(setup, tmp_path, raw):
    """Records at 500 Hz are resampled, 2.5 s records zero-padded, 6 s ones cropped to the model's 4 s at
    100 Hz: their probabilities are those of the rows prep makes of them for the same 4 s store."""
    root, _, models = setup
    store = tmp_path / "other.zarr"
    write_wfdb_dir(tmp_path / "raw", n=4, seed=3, fs=raw["fs"], seconds=raw["seconds"])
    from ecgtool.data.prep import run_prep
    from ecgtool.data.readers import open_reader
    from ecgtool.data.transforms import PrepConfig

    run_prep(open_reader(tmp_path / "raw"), store, PrepConfig(fs=100, seconds=4.0))
    r = run_cli("predict", models["whole"], tmp_path / "raw", "--device", "cpu", "--json")
    got, expected = probs_of(json.loads(r.stdout)), eval_probs(models["whole"], store)
    for rid, p in expected.items():
        np.testing.assert_allclose(got[rid], p, atol=TOL, err_msg=rid)
    if raw["seconds"] < 4:
        assert "4 recording(s) shorter than the 4 s (400 samples at 100 Hz)" in r.stderr and "zero-padded" in r.stderr
    elif raw["seconds"] > 4:
        assert "longer than the 4 s" in r.stderr and "only their first 4 s scored" in r.stderr
    else:
        assert "warning" not in r.stderr


def _record_signal(root, name):
    import wfdb

    rec = wfdb.rdrecord(str(root / name))
    return rec.p_signal.T, list(rec.sig_name)


def test_csv_and_mat_recordings_score_as_the_wfdb_record(setup, tmp_path):
    """R000's samples as a CSV (µV, lower-case lead names, an extra time column, --fs) and as a CinC-style
    .mat record with 12 leads (the model's three among them) get R000's probabilities."""
    root, _, models = setup
    signal, leads = _record_signal(root / "raw-val", "R000")
    csv_path = tmp_path / "R000uv.csv"
    t = np.arange(signal.shape[1]) / 250
    lines = ["time,i,ii,v1"] + [f"{t[k]:.4f}," + ",".join(f"{v * 1000:.3f}" for v in signal[:, k]) for k in range(signal.shape[1])]
    csv_path.write_text("\n".join(lines) + "\n")
    twelve = np.zeros((12, signal.shape[1]))
    for lead, row in zip(leads, signal):
        twelve[STANDARD.index(lead)] = row
    write_challenge_record(tmp_path / "mat", "M000", twelve, 250, ["Age: 40", "Sex: Male", "Dx: 426783006"])
    expected = probs_of(predict_json(models["whole"], root / "raw-val" / "R000.hea"))["R000"]
    doc = predict_json(models["whole"], csv_path, tmp_path / "mat" / "M000.mat", "--fs", 250, "--csv-units", "uV")
    got = probs_of(doc)
    assert list(got) == ["R000uv", "M000"]
    np.testing.assert_allclose(got["M000"], expected, atol=1e-6)
    np.testing.assert_allclose(got["R000uv"], expected, atol=TOL)
    # a CSV carries no rate: --fs is required, before anything is read
    r = run_cli("predict", models["whole"], csv_path, "--device", "cpu", expect=2)
    assert "--fs" in r.stderr and "carries no sampling rate" in r.stderr


def test_missing_lead_refused_or_skipped(setup, tmp_path):
    root, _, models = setup
    write_wfdb_dir(tmp_path / "two", n=1, leads=("I", "II"), seed=4)
    out = tmp_path / "out.csv"
    r = run_cli("predict", models["whole"], tmp_path / "two", root / "raw-val" / "R001", "-o", out, "--device", "cpu",
                expect=1)
    lines = r.stderr.strip().splitlines()
    assert lines == ["error: record R000: lacks lead(s) V1 (use --on-error skip to leave it out)"]
    assert not out.exists() and not list(tmp_path.glob(".out.csv*"))
    # skipped: the others are written, the left-out one said on stderr
    r = run_cli("predict", models["whole"], tmp_path / "two" / "R000.hea", root / "raw-val" / "R001", "-o", out,
                "--device", "cpu", "--on-error", "skip")
    assert r.stdout.strip() == str(out) and "skipped R000: lacks lead(s) V1" in r.stderr
    rows = out.read_text().splitlines()
    assert rows[0] == "record,A,B,labels" and len(rows) == 2 and rows[1].startswith("R001,")


def test_outputs_never_replace_an_input_nor_half_written(setup, tmp_path):
    root, _, models = setup
    signal, _ = _record_signal(root / "raw-val", "R002")
    rec = tmp_path / "rec.csv"
    rec.write_text("I,II,V1\n" + "\n".join(",".join(f"{v:.4f}" for v in col) for col in signal.T) + "\n")
    before = rec.read_bytes()
    r = run_cli("predict", models["whole"], rec, "--fs", 250, "-o", rec, "--overwrite", "--device", "cpu", expect=1)
    assert "is the input" in r.stderr and rec.read_bytes() == before
    r = run_cli("predict", models["whole"], rec, "--fs", 250, "-o", tmp_path / "out.txt", "--device", "cpu", expect=2)
    assert ".csv or a .json" in r.stderr
    # an existing output survives a failed --overwrite run untouched; a good run replaces it
    out = tmp_path / "out.json"
    out.write_text("previous")
    broken = tmp_path / "broken"
    write_wfdb_dir(broken, n=2, seed=5)
    (broken / "R001.dat").write_bytes((broken / "R001.dat").read_bytes()[:100])  # truncated signal file
    r = run_cli("predict", models["whole"], broken, "-o", out, "--overwrite", "--device", "cpu", expect=1)
    assert "R001" in r.stderr and "truncated" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert out.read_text() == "previous" and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    run_cli("predict", models["whole"], broken, "-o", out, "--overwrite", "--device", "cpu", "--on-error", "skip")
    doc = json.loads(out.read_text())
    assert [r["record"] for r in doc["records"]] == ["R000"] and doc["skipped"][0]["record"] == "R001"


def test_checkpoint_without_preprocessing_record_refused(setup, tmp_path):
    root, _, models = setup
    old = tmp_path / "old.ckpt"
    Checkpoint.load(models["whole"]).replace(preprocessing=None).save(old)
    r = run_cli("predict", old, root / "raw-val", "--device", "cpu", expect=1)
    assert r.stderr.strip().splitlines() == [
        f"error: {old} does not record the preprocessing of its training data (prep's settings; checkpoints written "
        "before ecgtool recorded it lack it): train it again to predict on raw recordings"]
    broken = tmp_path / "broken.ckpt"
    ckpt = Checkpoint.load(models["whole"])
    Checkpoint.load(models["whole"]).replace(preprocessing={k: v for k, v in ckpt.preprocessing.items() if k != "lowcut"}).save(broken)
    r = run_cli("predict", broken, root / "raw-val", "--device", "cpu", expect=1)
    assert "its training data's preprocessing lacks the prep setting(s) lowcut" in r.stderr
    for changed, needle in (({"beat_window": [0.25, 0.4]}, "trained on beat windows"),
                            ({"samples": 10**9}, "more than the 100000000 values"), ({"filter": "FIR"}, "filter 'FIR'")):
        Checkpoint.load(models["whole"]).replace(preprocessing={**ckpt.preprocessing, **changed}).save(broken, overwrite=True)
        r = run_cli("predict", broken, root / "raw-val", "--device", "cpu", expect=1)
        assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_multiclass_checkpoint_decides_by_argmax(setup, tmp_path):
    root, _, models = setup
    multiclass = tmp_path / "mc.ckpt"
    Checkpoint.load(models["whole"]).replace(multi_label=False, thresholds=None).save(multiclass)
    doc = predict_json(multiclass, root / "raw-val")
    assert doc["thresholds"] is None and doc["threshold_source"] == "argmax (multi-class)"
    for r in doc["records"]:
        p = r["probabilities"]
        assert sum(p.values()) == pytest.approx(1, abs=1e-5) and r["labels"] == [max(p, key=p.get)]


@pytest.mark.parametrize("normalisation, dtype, view", [("dataset", "float16", {"name": "raw"}), ("zscore", "float32", {"name": "rpeaks"})])
def test_recording_reader_makes_the_loaders_input_of_the_store_row(tmp_path, normalisation, dtype, view):
    """Without a model: RecordingReader turns each raw record into exactly what the loader makes of its store row,
    with dataset statistics, a float16 store and a data-side view (R-peak channel) too."""
    from ecgtool.data.inputs import InputSpec, RecordingReader
    from ecgtool.data.prep import run_prep
    from ecgtool.data.readers import open_reader
    from ecgtool.data.recordings import find_recordings, read_recording
    from ecgtool.data.store import open_store
    from ecgtool.data.transforms import PrepConfig

    raw = write_wfdb_dir(tmp_path / "raw", n=3, seed=6, fs=360, seconds=3.0)
    run_prep(open_reader(raw), tmp_path / "s.zarr", PrepConfig(fs=100, seconds=4.0, normalisation=normalisation, notch=50.0),
             dtype=dtype)
    store = open_store(tmp_path / "s.zarr")
    spec = InputSpec.of_store(store, view)
    record = store.attrs["preprocessing"]
    reader = RecordingReader(spec, PrepConfig.from_record(record), record["samples"], dtype)
    expected = spec.reader(store)(store.rows())
    for rec in find_recordings([raw]):
        i = store.record_id.tolist().index(rec.name)
        r = read_recording(rec)
        np.testing.assert_array_equal(reader(reader.row(r.signal, r.fs, r.leads)[None])[0], expected[i])


@pytest.mark.parametrize("records", [0, 1, 3])
def test_written_json_and_csv_are_the_whole_document_record_by_record(records):
    """write_json streams the records; its text is exactly json.dumps(to_dict(), indent=2)."""
    import io
    from pathlib import Path
    from types import SimpleNamespace

    from ecgtool.data.recordings import Recording
    from ecgtool.eval.recordings import Predictions

    ckpt = SimpleNamespace(path=None, model=SimpleNamespace(name="resnet18"), task="t", multi_label=True,
                           classes=["A", "B"], preprocessing={"fs": 100.0, "note": 'a "records": [] b'})
    recs = [Recording(f"r{i}", "wfdb", Path(f"/d/r{i}"), Path("/d")) for i in range(records)]
    probs = np.array([[0.25, np.nan], [1.0, 0.0], [0.5, 0.125]])[:records]
    result = Predictions(ckpt, recs, probs, (np.nan_to_num(probs) > 0.4).astype(np.uint8), np.array([0.4, 0.4]), "tuned",
                         None, skipped=[(Recording("bad", "csv", Path("/d/bad.csv"), Path("/d")), "unreadable")],
                         warnings=["w"], provenance={"step": "predict"})
    f = io.StringIO()
    result.write_json(f)
    assert f.getvalue() == json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n"
    assert len(json.loads(f.getvalue())["records"]) == records
    f = io.StringIO()
    result.write_csv(f)
    lines = f.getvalue().splitlines()
    assert lines[0] == "record,A,B,labels" and len(lines) == records + 1
    if records:
        assert lines[1] == "r0,0.25,nan,"


@pytest.mark.slow
def test_jobs_read_in_worker_processes_give_what_one_process_gives(setup, tmp_path):
    """40 recordings (three batches of 16 for the workers) and one that lacks a lead, last: --jobs 2 gives the
    same document as --jobs 1, in input order, the bad one refused by name or left out."""
    _, _, models = setup
    write_wfdb_dir(tmp_path / "many", n=40, seed=6)
    write_wfdb_dir(tmp_path / "two", n=41, leads=("I", "II"), seed=4)
    bad = tmp_path / "two" / "R040.hea"
    docs = [predict_json(models["whole"], tmp_path / "many", bad, "--on-error", "skip", "--jobs", jobs)
            for jobs in (1, 2)]
    assert [r["record"] for r in docs[1]["records"]] == [f"R{i:03d}" for i in range(40)]
    assert docs[0]["records"] == docs[1]["records"] and docs[1]["skipped"] == docs[0]["skipped"] != []
    r = run_cli("predict", models["whole"], tmp_path / "many", bad, "--device", "cpu", "--jobs", 2, expect=1)
    assert r.stderr.strip().splitlines() == ["error: record R040: lacks lead(s) V1 (use --on-error skip to leave it out)"]


def test_named_files_are_the_named_recordings_files_each_directory_listed_once(tmp_path):
    from ecgtool.data.recordings import find_recordings, named_files

    write_wfdb_dir(tmp_path / "d", n=3, seed=1)
    (tmp_path / "d" / "R001.v2.hea").write_text((tmp_path / "d" / "R001.hea").read_text())  # another record's name
    (tmp_path / "rec.csv").write_text("I,II\n0,1\n")
    recs = find_recordings([tmp_path / "d" / "R001.hea", tmp_path / "d" / "R002.dat", tmp_path / "rec.csv"])
    d = tmp_path / "d"
    assert named_files(recs) == [tmp_path / "rec.csv", d / "R001.dat", d / "R001.hea", d / "R001.v2.hea", d / "R002.dat", d / "R002.hea"]
    assert named_files(find_recordings([d])) == []  # found in a directory: the directory protects them


def test_the_workers_task_imports_no_torch():
    """predict's workers unpickle recording_row and the reader: torch (300 MB, seconds to import) stays out."""
    import pickle
    import subprocess
    import sys

    from ecgtool.data.inputs import InputSpec, RecordingReader
    from ecgtool.data.recordings import recording_row
    from ecgtool.data.transforms import PrepConfig
    from functools import partial

    spec = InputSpec(fs=100.0, leads=("I",), samples=400, normalisation={"method": "zscore"})
    task = pickle.dumps(partial(recording_row, RecordingReader(spec, PrepConfig(fs=100, seconds=4.0), 400), None, "mV"))
    code = "import pickle, sys; pickle.loads(sys.stdin.buffer.read()); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], input=task, capture_output=True, check=True)
    assert out.stdout.decode().strip() == "False"
