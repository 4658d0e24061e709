"""MIT-BIH as a beat store: AAMI classes, DS1/DS2 folds, paced records, one row per beat."""

from __future__ import annotations

import numpy as np
from conftest import run_cli
from datasets_fixture import make_mitdb, serve_tree
from http_fixture import FileServer

from ecgtool.data.readers import open_reader
from ecgtool.data.store import open_store


def test_reader_maps_symbols_to_aami(tmp_path):
    reader = open_reader(make_mitdb(tmp_path / "mitdb"))
    assert reader.name == "mitdb" and reader.record_ids() == ["100", "101"]  # 102 (paced) left out
    rec = reader.read("101")
    assert rec.beats[1] == ["N", "N", "N", "N", "F", "N", "N", "N", "N", "N", "Q"]  # '~' is not a beat; j is N
    assert rec.fold == 1 and reader.read("100").fold == 2 and rec.age == 75 and rec.sex == "F"
    assert open_reader(tmp_path / "mitdb", keep_paced=True).read("102").beats[1] == ["Q", "Q", "Q", "Q", "N", "Q", "Q"]


def test_fetch_and_prep_a_beat_store(tmp_path):
    upstream = make_mitdb(tmp_path / "upstream")
    with FileServer(serve_tree(upstream)) as srv:
        run_cli("fetch", "mitdb", "-o", tmp_path / "mitdb", "--mirror", srv.url)
    run_cli("prep", tmp_path / "mitdb", "-o", tmp_path / "beats.zarr", "--beat-window", "0.25,0.4", "--fs", 360,
            "--leads", "MLII", "--workers", 1)
    s = open_store(tmp_path / "beats.zarr")
    assert s.attrs["unit"] == "beat" and not s.multi_label and s.classes == ["N", "S", "V", "F", "Q"]
    assert s.signals.shape == (21, 1, 234)  # 10 beats in 100 ('+' is not one), 11 in 101; 90 + 144 samples each
    assert s.record_id.tolist() == ["100"] * 10 + ["101"] * 11
    assert s.labels.argmax(1).tolist()[:10] == [0, 0, 1, 0, 0, 2, 0, 0, 0, 0]
    assert s.extras["beat_sample"][:3].tolist() == [360, 720, 1080]
    assert (np.abs(np.abs(s.rows()[:, 0]).argmax(axis=1) - 90) <= 1).all()  # the R peak sits at 0.25 s into each window
    r = run_cli("split", tmp_path / "beats.zarr", "-o", tmp_path / "sp", expect=1)
    assert "only the official folds 1, 2" in r.stderr
