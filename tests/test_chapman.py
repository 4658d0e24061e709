"""Chapman-Shaoxing: the 11 rhythms and the 4 merged classes, from the figshare CSVs and from WFDB."""

from __future__ import annotations

import numpy as np
from conftest import run_cli
from datasets_fixture import CHAPMAN_RECORDS, make_chapman_figshare, serve_tree, write_challenge_record
from http_fixture import FileServer

from ecgtool.data.download import extract_archive
from ecgtool.data.readers import open_reader
from ecgtool.data.store import open_store


def test_figshare_layout(tmp_path):
    root = make_chapman_figshare(tmp_path / "chapman")
    extract_archive(root / "ECGData.zip", root)
    reader = open_reader(root)
    assert reader.name == "chapman" and reader.classes == ["SB", "AFIB", "GSVT", "SR"] and not reader.multi_label
    names = list(CHAPMAN_RECORDS)
    assert [reader.read(n).labels for n in names] == [["SB"], ["AFIB"], ["SR"], ["GSVT"]]  # AF (flutter) → AFIB, SA → SR
    rec = reader.read(names[2])  # the CSV without a header row
    assert rec.signal.shape == (12, 5000) and 0.15 < np.abs(rec.signal[0]).max() < 0.25  # µV → mV
    assert rec.age == 20 and rec.sex == "F"
    rhythm = open_reader(root, task="rhythm")
    assert len(rhythm.classes) == 11 and [rhythm.read(n).labels for n in names] == [["SB"], ["AF"], ["SA"], ["AVNRT"]]
    run_cli("prep", root, "-o", tmp_path / "s.zarr", "--workers", 1)
    s = open_store(tmp_path / "s.zarr")
    assert s.labels.argmax(1).tolist() == [0, 1, 3, 2] and s.attrs["task"] == "chapman-merged"


def test_wfdb_layout_takes_the_first_rhythm_code(tmp_path):
    root = tmp_path / "WFDBRecords" / "01" / "010"
    codes = {"JS00001": "164889003,59118001,164934002", "JS00002": "164917005,426177001", "JS00003": "164934002"}
    for i, (name, dx) in enumerate(codes.items()):
        write_challenge_record(root, name, 0.1 * np.ones((12, 5000)), 500, [f"Age: {40 + i}", "Sex: Male", f"Dx: {dx}"])
    reader = open_reader(tmp_path / "WFDBRecords", "chapman")
    assert [reader.read(n).labels for n in codes] == [["AFIB"], ["SB"], []]  # JS00003 has no rhythm: unlabelled


def test_fetch_from_a_mirror_unpacks_the_csvs(tmp_path):
    upstream = make_chapman_figshare(tmp_path / "upstream")
    with FileServer(serve_tree(upstream)) as srv:
        run_cli("fetch", "chapman", "-o", tmp_path / "chapman", "--mirror", srv.url)
    assert len(list((tmp_path / "chapman" / "ECGData").glob("*.csv"))) == 4
    provenance = (tmp_path / "chapman" / "PROVENANCE.json").read_text()
    assert '"verified": "size only"' in provenance
