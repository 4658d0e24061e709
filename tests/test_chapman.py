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


def _figshare(tmp_path):
    root = make_chapman_figshare(tmp_path / "chapman")
    extract_archive(root / "ECGData.zip", root)
    return root


def _rewrite_diagnostics(root, edit):
    import pandas as pd

    table = pd.read_excel(root / "Diagnostics.xlsx", dtype=str)
    edit(table).to_excel(root / "Diagnostics.xlsx", index=False)


def test_a_record_listed_twice_in_diagnostics_is_refused(tmp_path):
    import pandas as pd

    root = _figshare(tmp_path)
    first = list(CHAPMAN_RECORDS)[0]
    _rewrite_diagnostics(root, lambda t: pd.concat([t, t.iloc[[0]].assign(Rhythm="SR")], ignore_index=True))
    r = run_cli("prep", root, "-o", tmp_path / "s.zarr", expect=1)
    assert r.stderr.strip() == (f"error: {root / 'Diagnostics.xlsx'}: record {first} is listed twice (FileName in rows 2 and 6); "
                                "keep one row per record")


def test_a_csv_without_a_diagnostics_row_is_listed_as_skipped(tmp_path):
    root = _figshare(tmp_path)
    second = list(CHAPMAN_RECORDS)[1]
    _rewrite_diagnostics(root, lambda t: t[t.FileName != second])
    r = run_cli("prep", root, "-o", tmp_path / "s.zarr", "--workers", 1)
    assert f"skipped {second}: no label of the task chapman-merged (not in Diagnostics.xlsx)" in r.stderr
    s = open_store(tmp_path / "s.zarr")
    assert len(s) == 3 and [d["record"] for d in s.attrs["skipped_records"]] == [second]


def test_full_length_is_counted_from_the_csv(tmp_path):
    # duration() said 10 s whatever the file: --seconds 0 cropped a longer record
    root = _figshare(tmp_path)
    name = list(CHAPMAN_RECORDS)[0]
    path = root / "ECGData" / f"{name}.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines) + "".join(lines[1:1001]))  # a header row, then 6000 rows: 12 s
    reader = open_reader(root)
    assert reader.duration(name) == 12.0 and reader.duration(list(CHAPMAN_RECORDS)[2]) == 10.0  # the second has no header
    run_cli("prep", root, "-o", tmp_path / "s.zarr", "--seconds", 0, "--workers", 1)
    assert open_store(tmp_path / "s.zarr").n_samples == 1200


def test_an_unknown_task_is_a_usage_error_of_task(tmp_path):
    r = run_cli("prep", _figshare(tmp_path), "-o", tmp_path / "s.zarr", "--task", "nope", expect=2)
    assert "Invalid value for '--task': unknown Chapman task 'nope'" in r.stderr
