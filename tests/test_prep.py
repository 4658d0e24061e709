"""prep on small WFDB fixtures: reading, preprocessing, labels, errors, parallel = serial."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import write_wfdb_dir

from ecgtool.data.prep import run_prep
from ecgtool.data.readers import open_reader
from ecgtool.data.store import open_store
from ecgtool.data.transforms import PrepConfig, bandpass, fix_length, resample, zscore
from ecgtool.errors import EcgtoolError


@pytest.fixture()
def raw(tmp_path):
    return write_wfdb_dir(tmp_path / "raw", n=12, fs=250, seconds=4.0)


def test_store_from_generic_wfdb(raw, tmp_path):
    cfg = PrepConfig(fs=100, seconds=3.0, normalisation="none", lowcut=None, highcut=None)
    report = run_prep(open_reader(raw), tmp_path / "s.zarr", cfg)
    s = open_store(tmp_path / "s.zarr")
    assert report.written == 12 and len(s) == 12
    assert s.signals.shape == (12, 3, 300) and s.fs == 100 and s.leads == ["I", "II", "V1"]
    assert s.classes == ["A", "B"] and s.labels[:4].tolist() == [[1, 0], [0, 1], [1, 0], [0, 1]]
    assert list(s.patient_id[:4]) == ["P0", "P0", "P1", "P1"] and s.attrs["patient_ids"] == "dataset"
    assert s.extras["age"][0] == 40 and s.extras["sex"][0] == "M"
    # resampled sine keeps its amplitude (lead I scale 0.5, class A = 1 Hz)
    assert 0.45 < np.abs(s.rows()[0, 0]).max() < 0.65
    assert s.attrs["provenance"][0]["step"] == "prep" and s.attrs["preprocessing"]["samples"] == 300


def test_microvolt_records_are_converted(tmp_path):
    raw = write_wfdb_dir(tmp_path / "raw", n=2, units="uV")
    run_prep(open_reader(raw), tmp_path / "s.zarr", PrepConfig(fs=250, seconds=4, normalisation="none", lowcut=None, highcut=None))
    assert 0.45 < np.abs(open_store(tmp_path / "s.zarr").rows()[0, 0]).max() < 0.65


def test_parallel_equals_serial(raw, tmp_path):
    cfg = PrepConfig(fs=100, seconds=3.0)
    run_prep(open_reader(raw), tmp_path / "a.zarr", cfg, workers=1)
    run_prep(open_reader(raw), tmp_path / "b.zarr", cfg, workers=2)
    a, b = open_store(tmp_path / "a.zarr"), open_store(tmp_path / "b.zarr")
    np.testing.assert_array_equal(a.rows(), b.rows())
    assert a.attrs["content_hash"] == b.attrs["content_hash"]


def test_lead_selection_and_dataset_normalisation(raw, tmp_path):
    cfg = PrepConfig(fs=250, seconds=4.0, leads=("V1", "I"), normalisation="dataset")
    run_prep(open_reader(raw), tmp_path / "s.zarr", cfg)
    s = open_store(tmp_path / "s.zarr")
    assert s.leads == ["V1", "I"]
    x = s.rows().astype(np.float64)
    norm = s.attrs["normalisation"]
    np.testing.assert_allclose(norm["mean"], x.mean(axis=(0, 2)), atol=1e-6)
    np.testing.assert_allclose(norm["std"], x.std(axis=(0, 2)), rtol=1e-4)
    assert np.abs(s.rows()[0, 0]).max() > np.abs(s.rows()[0, 1]).max()  # V1 has the larger scale


def test_unreadable_record_skip_or_fail(raw, tmp_path):
    (raw / "R003.dat").write_bytes(b"\x00\x01")  # truncated signal file
    with pytest.raises(EcgtoolError, match="record R003"):
        run_prep(open_reader(raw), tmp_path / "s.zarr", PrepConfig(fs=100, seconds=3))
    assert not (tmp_path / "s.zarr").exists()
    report = run_prep(open_reader(raw), tmp_path / "s.zarr", PrepConfig(fs=100, seconds=3), on_error="skip")
    assert [r for r, _ in report.skipped] == ["R003"] and report.written == 11
    assert open_store(tmp_path / "s.zarr").attrs["skipped_records"][0]["record"] == "R003"


def test_a_record_whose_error_has_no_message_is_reported_by_its_type(raw, tmp_path, monkeypatch):
    reader = open_reader(raw)
    read = reader.read
    monkeypatch.setattr(reader, "read", lambda rid: (_ for _ in ()).throw(ZeroDivisionError()) if rid == "R002" else read(rid))
    report = run_prep(reader, tmp_path / "s.zarr", PrepConfig(fs=100, seconds=3), on_error="skip")
    assert report.skipped == [("R002", "ZeroDivisionError")]


def test_unknown_lead_is_a_clear_error(raw, tmp_path):
    with pytest.raises(EcgtoolError, match="leads: aVR not among"):  # the parameter; the CLI names --leads
        run_prep(open_reader(raw), tmp_path / "s.zarr", PrepConfig(leads=("aVR",)))


def test_unlabelled_records_are_dropped_unless_kept(raw, tmp_path):
    reader = open_reader(raw, classes=["A"])  # class B records have no label of this task
    report = run_prep(reader, tmp_path / "a.zarr", PrepConfig(fs=100, seconds=3))
    assert report.written == 6 and report.unlabelled == 6
    report = run_prep(open_reader(raw, classes=["A"]), tmp_path / "b.zarr", PrepConfig(fs=100, seconds=3), keep_unlabelled=True)
    assert report.written == 12


def test_dx_header_labels_without_csv(tmp_path):
    import wfdb

    raw = tmp_path / "raw"
    raw.mkdir()
    for i, dx in enumerate(["164889003", "164889003,59118001", "426783006"]):
        wfdb.wrsamp(f"A{i}", fs=500, units=["mV"], sig_name=["II"], p_signal=np.zeros((1000, 1)), fmt=["16"],
                    adc_gain=[1000], baseline=[0], comments=["Age: 61", "Sex: Female", f"Dx: {dx}"], write_dir=str(raw))
    reader = open_reader(raw, "wfdb")  # auto-detection would pick the CinC reader (tests/test_cinc.py)
    assert reader.classes == ["164889003", "426783006", "59118001"] and reader.patient_ids == "record"
    rec = reader.read("A1")
    assert rec.labels == ["164889003", "59118001"] and rec.sex == "F" and rec.age == 61 and rec.patient_id == "A1"


def test_transforms():
    fs = 500
    t = np.arange(10 * fs) / fs
    x = np.stack([np.sin(2 * np.pi * 5 * t) + 2 + np.sin(2 * np.pi * 0.05 * t), np.sin(2 * np.pi * 120 * t)])
    y = bandpass(x, fs, 0.5, 40)
    assert abs(y[0].mean()) < 0.01  # offset and wander removed
    assert np.abs(bandpass(x[1:], fs, None, 40)[:, 50:-50]).max() < 0.01  # 120 Hz removed (edges keep their end value)
    assert 0.95 < np.abs(y[0, fs:-fs]).max() < 1.05  # 5 Hz kept
    assert resample(x, 500, 100).shape == (2, 1000)
    assert fix_length(x, 100).shape == (2, 100) and fix_length(x, 6000)[:, -1].tolist() == [0, 0]
    np.testing.assert_array_equal(fix_length(np.arange(10.0)[None], 4, "center"), [[3, 4, 5, 6]])
    z = zscore(x)
    np.testing.assert_allclose(z.mean(-1), 0, atol=1e-9)
    np.testing.assert_allclose(z.std(-1), 1, atol=1e-9)


def test_a_resampling_factor_beyond_1000_is_refused_before_it_allocates():
    x = np.zeros((12, 500), np.float32)
    assert resample(x, 10_000, 10).shape == (12, 1)  # 1000x down: the bound itself
    for fs_in, fs_out in ((0.001, 100), (1e308, 100), (100, 1e6)):  # 0.001 Hz upsampled 100,000x, killed at 18 GB
        with pytest.raises(EcgtoolError, match="a factor of more than 1000 either way"):
            resample(x, fs_in, fs_out)


def _rewrite_labels(raw, edit):
    import csv

    with open(raw / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    rows = edit(rows)
    with open(raw / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_a_record_listed_twice_in_labels_csv_is_refused(raw):
    # the last row used to win
    _rewrite_labels(raw, lambda rows: rows + [dict(rows[0], labels="B")])
    with pytest.raises(EcgtoolError, match=r"labels\.csv: record R000 is listed twice \(record_id in rows 2 and 14\); "
                                           "keep one row per record$"):
        open_reader(raw)


@pytest.mark.parametrize("fold, why", [("200", "'200' is not a whole number from 0 to 127"),  # was an int8 OverflowError
                                       ("x", "'x' is not a whole number from 0 to 127")])
def test_a_bad_fold_in_labels_csv_names_file_row_and_column(raw, fold, why):
    _rewrite_labels(raw, lambda rows: [dict(r, fold=fold if i == 2 else "1") for i, r in enumerate(rows)])
    with pytest.raises(EcgtoolError, match=rf"labels\.csv: row 4, column fold: {why}$"):
        open_reader(raw)


@pytest.mark.parametrize("leads, message", [("I,I", "leads names I more than once"), ("I,II,I", "leads names I more than once"),
                                            (",", "leads names no lead"), (" , ", "leads names no lead")])
def test_a_lead_list_with_a_repeat_or_no_lead_is_a_usage_error(synthetic_raw, tmp_path, leads, message):
    """--leads I,I made a store with one lead twice (train took it) and --leads , meant every lead (audit)."""
    from conftest import run_cli

    out = tmp_path / "s.zarr"
    r = run_cli("prep", synthetic_raw, "-o", out, "--leads", leads, "--jobs", 1, expect=2)
    assert f"Error: Invalid value for '--leads': {message}" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists() and not list(tmp_path.iterdir())
