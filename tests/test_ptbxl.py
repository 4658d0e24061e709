"""PTB-XL: the six benchmark tasks against the real statement table; fetch from a local mirror; prep."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli
from datasets_fixture import DATA, make_ptbxl, serve_tree
from http_fixture import FileServer

from ecgtool.data.readers import open_reader
from ecgtool.data.readers.ptbxl import TASKS, read_statements, task_classes
from ecgtool.data.store import open_store


def test_task_class_counts_from_the_real_statement_table():
    statements = read_statements(DATA / "ptbxl_scp_statements.csv")
    counts = {t: len(task_classes(statements, t)) for t in TASKS}
    assert counts == {"all": 71, "diagnostic": 44, "subdiagnostic": 23, "superdiagnostic": 5, "form": 19, "rhythm": 12}
    assert task_classes(statements, "superdiagnostic") == ["CD", "HYP", "MI", "NORM", "STTC"]
    assert task_classes(statements, "rhythm") == [
        "AFIB", "AFLT", "BIGU", "PACE", "PSVT", "SARRH", "SBRAD", "SR", "STACH", "SVARR", "SVTAC", "TRIGU"]


@pytest.fixture(scope="module")
def ptbxl_raw(tmp_path_factory):
    return make_ptbxl(tmp_path_factory.mktemp("upstream") / "ptb-xl")


# Hand-written from the fixture's scp_codes and the statement table (likelihoods ignored, as the benchmark)
EXPECTED = {
    "superdiagnostic": {"1": ["NORM"], "2": ["NORM"], "3": ["MI", "STTC"], "4": ["CD", "HYP"], "5": ["MI", "STTC"], "6": ["CD", "STTC"]},
    "subdiagnostic": {"1": ["NORM"], "2": ["NORM"], "3": ["IMI", "STTC"], "4": ["CLBBB", "LVH"], "5": ["AMI", "ISCA"], "6": ["STTC", "_AVB"]},
    "rhythm": {"1": ["SR"], "2": ["SBRAD"], "3": ["SR"], "4": ["AFIB"], "5": ["STACH"], "6": []},
    "form": {"1": ["LVOLT"], "2": [], "3": ["ABQRS", "LNGQT"], "4": [], "5": ["PVC"], "6": ["NDT"]},
}


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_reader_labels(ptbxl_raw, task):
    reader = open_reader(ptbxl_raw, task=task)
    assert reader.name == "ptbxl"
    for rid, labels in EXPECTED[task].items():
        assert reader._labels[rid] == labels, (task, rid)
    assert reader.classes == sorted({c for v in EXPECTED[task].values() for c in v})


def test_likelihood_threshold(ptbxl_raw):
    reader = open_reader(ptbxl_raw, task="superdiagnostic", min_likelihood=50)
    assert reader._labels["3"] == ["STTC"] and reader._labels["5"] == ["STTC"]  # IMI 35, ASMI 15 fall below 50


def test_fetch_from_mirror_then_prep(ptbxl_raw, tmp_path):
    with FileServer(serve_tree(ptbxl_raw)) as srv:
        srv.drop_after["/records100/00000/00003_lr.dat"] = 100  # a dropped connection mid-file
        out = tmp_path / "ptbxl"
        r = run_cli("fetch", "ptbxl", "-o", out, "--mirror", srv.url, "--connections", 3)
        assert r.stdout.strip() == str(out)
        got = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and not p.name.startswith((".", "PROVENANCE")))
        assert "records500/00000/00001_hr.dat" not in got and "records100/00000/00006_lr.hea" in got
        assert (out / "records100/00000/00003_lr.dat").read_bytes() == (ptbxl_raw / "records100/00000/00003_lr.dat").read_bytes()
        n_requests = len(srv.requests)
        run_cli("fetch", "ptbxl", "-o", out, "--mirror", srv.url)  # a rerun only reads the checksum list
        assert len(srv.requests) == n_requests + 1
    store = tmp_path / "super.zarr"
    run_cli("prep", out, "-o", store, "--task", "superdiagnostic", "--workers", 1)
    s = open_store(store)
    assert s.classes == ["CD", "HYP", "MI", "NORM", "STTC"] and s.fs == 100 and s.signals.shape == (6, 12, 1000)
    assert s.leads[3:6] == ["aVR", "aVL", "aVF"]
    assert s.labels[s.record_id.tolist().index("4")].tolist() == [1, 1, 0, 0, 0]
    assert s.fold.tolist() == [3, 2, 2, 9, 10, 10] and s.patient_id.tolist()[1:3] == ["13243", "13243"]
    assert np.isnan(s.extras["age"][3]) and s.extras["sex"].tolist()[:2] == ["F", "M"]  # age 300 = anonymised
    steps = [p["step"] for p in s.attrs["provenance"]]
    assert steps == ["fetch", "prep"] and s.attrs["provenance"][0]["verified"] == "sha256"
    # rhythm drops record 6 (no rhythm statement); split uses the official folds
    run_cli("prep", out, "-o", tmp_path / "rhythm.zarr", "--task", "rhythm", "--workers", 1)
    assert len(open_store(tmp_path / "rhythm.zarr")) == 5
    doc = json.loads(run_cli("split", store, "-o", tmp_path / "splits", "--json").stdout)
    assert doc["fold_source"] == "official" and doc["splits"]["test"]["records"] == 2


def test_checksum_mismatch_from_mirror(ptbxl_raw, tmp_path):
    files = serve_tree(ptbxl_raw)
    files["/records100/00000/00002_lr.dat"] = b"corrupt"
    with FileServer(files) as srv:
        r = run_cli("fetch", "ptbxl", "-o", tmp_path / "p", "--mirror", srv.url, "--retries", 0, expect=1)
    assert "00002_lr.dat: SHA-256 mismatch" in r.stderr


def test_options_that_do_not_apply(tmp_path):
    from conftest import write_wfdb_dir

    raw = write_wfdb_dir(tmp_path / "raw", n=2)
    r = run_cli("prep", raw, "-o", tmp_path / "s.zarr", "--task", "rhythm", expect=1)
    assert "--task does not apply to the wfdb reader" in r.stderr


def _edited_ptbxl(source, dest, row: int, **values):
    """A copy of the fixture with data row ``row`` (0-based) of ptbxl_database.csv changed."""
    import csv
    import shutil

    shutil.copytree(source, dest)
    path = dest / "ptbxl_database.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    rows[row].update(values)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dest


def test_a_record_listed_twice_is_refused(ptbxl_raw, tmp_path):
    # the last row used to win: record 1 held record 2's file and labels, "wrote 5 records"
    root = _edited_ptbxl(ptbxl_raw, tmp_path / "ptbxl", 1, ecg_id="1")
    r = run_cli("prep", root, "-o", tmp_path / "s.zarr", expect=1)
    assert r.stderr.strip() == (f"error: {root / 'ptbxl_database.csv'}: record 1 is listed twice (ecg_id in rows 2 and 3); "
                                "keep one row per record")


@pytest.mark.parametrize("column, value, args, why", [
    ("strat_fold", "200", (), "'200' is not a whole number from 0 to 127"),  # was an int8 OverflowError
    ("strat_fold", "", (), "'' is not a whole number from 0 to 127"),
    ("ecg_id", "", (), "'' is not a whole number of at least 0"),
    ("patient_id", "nan", (), "'nan' is not a whole number of at least 0"),
    ("scp_codes", "{'NORM': 'abc'}", ("--min-likelihood", 50), "the likelihood 'abc' of NORM is not a number from 0 to 100"),
    ("scp_codes", "['NORM']", (), "\"['NORM']\" is not a dictionary of SCP codes and likelihoods, e.g. {'NORM': 100.0}"),
])
def test_a_bad_table_value_names_file_row_and_column(ptbxl_raw, tmp_path, column, value, args, why):
    root = _edited_ptbxl(ptbxl_raw, tmp_path / "ptbxl", 1, **{column: value})
    r = run_cli("prep", root, "-o", tmp_path / "s.zarr", *args, expect=1)
    row = "row 3" if column == "ecg_id" else "row 3 (ecg_id 2)"  # the record, once its id is read
    assert r.stderr.strip() == f"error: {root / 'ptbxl_database.csv'}: {row}, column {column}: {why}"
    assert not (tmp_path / "s.zarr").exists()


def test_codes_outside_the_statement_table_are_counted_and_named(ptbxl_raw, tmp_path):
    root = _edited_ptbxl(ptbxl_raw, tmp_path / "ptbxl", 0, scp_codes="{'NORM': 100.0, 'FOO': 50.0}")
    r = run_cli("prep", root, "-o", tmp_path / "s.zarr", "--task", "all", "--workers", 1)
    assert "labels outside the classes of ptbxl-all, ignored: FOO (1 record)" in r.stderr
    s = open_store(tmp_path / "s.zarr")
    assert s.attrs["unknown_labels"] == {"FOO": 1} and "NORM" in s.classes and "FOO" not in s.classes


def test_full_length_is_read_from_the_headers(ptbxl_raw, tmp_path):
    # duration() said 10 s whatever the file: --seconds 0 cropped a longer record
    import shutil

    import wfdb
    from datasets_fixture import LEADS

    root = tmp_path / "ptbxl"
    shutil.copytree(ptbxl_raw, root)
    folder = root / "records100" / "00000"
    wfdb.wrsamp("00002_lr", fs=100, units=["mV"] * 12, sig_name=LEADS,
                p_signal=np.full((1500, 12), 0.5), fmt=["16"] * 12, adc_gain=[1000.0] * 12, baseline=[0] * 12,
                write_dir=str(folder))
    reader = open_reader(root)
    assert reader.duration("2") == 15.0 and reader.duration("1") == 10.0
    run_cli("prep", root, "-o", tmp_path / "s.zarr", "--seconds", 0, "--workers", 1)
    assert open_store(tmp_path / "s.zarr").n_samples == 1500


@pytest.mark.parametrize("task", ["foo", "Rhythm"])
def test_an_unknown_task_is_a_usage_error_of_task(ptbxl_raw, tmp_path, task):
    r = run_cli("prep", ptbxl_raw, "-o", tmp_path / "s.zarr", "--task", task, expect=2)
    assert f"Invalid value for '--task': unknown PTB-XL task '{task}'" in r.stderr
