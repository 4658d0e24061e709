"""CPSC2018 from both releases: label order, variable lengths, and the same store from either."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli
from datasets_fixture import CPSC_RECORDS, make_cpsc2018_original, make_cpsc2018_physionet

from ecgtool.data.download import extract_archive
from ecgtool.data.readers import open_reader
from ecgtool.data.store import open_store

EXPECTED = {
    "A0001": ["RBBB"], "A0002": ["NORM"], "A0003": ["AF", "PVC"], "A0004": ["I-AVB", "STD"], "A0005": ["LBBB", "PAC", "STE"],
}
CLASSES = ["NORM", "AF", "I-AVB", "LBBB", "RBBB", "PAC", "PVC", "STD", "STE"]


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    root = tmp_path_factory.mktemp("cpsc")
    original = make_cpsc2018_original(root / "original")
    extract_archive(original / "TrainingSet1.zip", original)
    physionet = make_cpsc2018_physionet(root / "physionet") / "training" / "cpsc_2018"
    return original, physionet


@pytest.mark.parametrize("which", [0, 1])
def test_labels_and_metadata(releases, which):
    reader = open_reader(releases[which])
    assert reader.name == "cpsc2018" and reader.classes == CLASSES and reader.patient_ids == "record"
    assert reader.record_ids() == list(CPSC_RECORDS)
    for rid, labels in EXPECTED.items():
        rec = reader.read(rid)
        assert rec.labels == labels and rec.patient_id == rid
        assert rec.signal.shape == (12, CPSC_RECORDS[rid][2] * 500) and rec.fs == 500
    assert reader.read("A0001").sex == "M" and reader.read("A0001").age == 74 and np.isnan(reader.read("A0004").age)


def test_both_releases_give_the_same_store(releases, tmp_path):
    for i, root in enumerate(releases):
        run_cli("prep", root, "-o", tmp_path / f"{i}.zarr", "--seconds", 10, "--workers", 1)
    a, b = open_store(tmp_path / "0.zarr"), open_store(tmp_path / "1.zarr")
    assert a.classes == b.classes == CLASSES and a.attrs["patient_ids"] == "record"
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.rows(), b.rows(), atol=0.02)  # the PhysioNet copy is quantised to 1 µV
    assert a.labels[2].tolist() == [0, 1, 0, 0, 0, 0, 1, 0, 0]


def test_full_length_keeps_the_longest_record(releases, tmp_path):
    run_cli("prep", releases[0], "-o", tmp_path / "full.zarr", "--seconds", 0, "--fs", 100, "--workers", 1)
    s = open_store(tmp_path / "full.zarr")
    assert s.signals.shape == (5, 12, 3000)  # A0003 is 30 s; the others are zero-padded at the end
    assert np.all(s.rows()[3, :, 600:] == 0) and np.any(s.rows()[3, :, :600] != 0)


def test_fetch_the_physionet_copy_from_a_mirror(tmp_path):
    from datasets_fixture import serve_tree
    from http_fixture import FileServer

    upstream = make_cpsc2018_physionet(tmp_path / "challenge-2020")
    with FileServer(serve_tree(upstream)) as srv:
        run_cli("fetch", "cinc2020", "--variant", "cpsc_2018", "-o", tmp_path / "cinc2020", "--mirror", srv.url)
    root = tmp_path / "cinc2020" / "training" / "cpsc_2018"
    run_cli("prep", root, "-o", tmp_path / "s.zarr", "--workers", 1)
    s = open_store(tmp_path / "s.zarr")
    assert s.attrs["dataset"] == "cpsc2018" and s.labels[4].tolist() == [0, 0, 0, 1, 0, 1, 0, 0, 1]
    fetched = s.attrs["provenance"][0]
    assert fetched["step"] == "fetch" and fetched["dataset"] == "cinc2020" and fetched["variant"] == "cpsc_2018"


def test_a_record_listed_twice_in_reference_is_refused(releases, tmp_path):
    # the last row used to win: A0001 became NORM instead of RBBB
    import shutil

    root = tmp_path / "cpsc"
    shutil.copytree(releases[0], root)
    with open(root / "REFERENCE.csv", "a") as f:
        f.write("A0001,1,,\n")
    r = run_cli("prep", root, "-o", tmp_path / "s.zarr", expect=1)
    assert r.stderr.strip() == (f"error: {root / 'REFERENCE.csv'}: record A0001 is listed twice (Recording in rows 2 and 7); "
                                "keep one row per record")


def test_a_record_without_a_reference_row_is_listed_as_skipped(releases, tmp_path):
    # it vanished: "wrote 4 records", skipped_records [] though A0002.mat is there
    import shutil

    root = tmp_path / "cpsc"
    shutil.copytree(releases[0], root)
    lines = (root / "REFERENCE.csv").read_text().splitlines(keepends=True)
    (root / "REFERENCE.csv").write_text("".join(ln for ln in lines if not ln.startswith("A0002")))
    r = run_cli("prep", root, "-o", tmp_path / "s.zarr", "--seconds", 6, "--workers", 1)
    assert "skipped A0002: no label of the task cpsc2018 (not in REFERENCE.csv)" in r.stderr
    assert "wrote 4 records" in r.stderr and "1 records left out" in r.stderr
    s = open_store(tmp_path / "s.zarr")
    assert s.attrs["skipped_records"] == [{"record": "A0002", "reason": "no label of the task cpsc2018 (not in REFERENCE.csv)"}]
    run_cli("prep", root, "-o", tmp_path / "k.zarr", "--seconds", 6, "--workers", 1, "--keep-unlabelled")
    k = open_store(tmp_path / "k.zarr")
    assert list(k.record_id) == list(EXPECTED) and k.labels[1].sum() == 0
