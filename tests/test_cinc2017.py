"""CinC 2017: fetch (zip + reference) from a local mirror, unpack, prep as a multi-class store."""

from __future__ import annotations

import numpy as np
from conftest import run_cli
from datasets_fixture import make_cinc2017, serve_tree
from http_fixture import FileServer

from ecgtool.data.store import open_store


def test_fetch_unpack_and_prep(tmp_path):
    upstream = make_cinc2017(tmp_path / "upstream")
    out = tmp_path / "cinc2017"
    with FileServer(serve_tree(upstream)) as srv:
        listed = run_cli("fetch", "cinc2017", "-o", out, "--mirror", srv.url, "--dry-run")
        assert not out.exists() and "training2017.zip\t" in listed.stdout
        r = run_cli("fetch", "cinc2017", "-o", out, "--mirror", srv.url)
    assert (out / "training2017" / "A00004.mat").exists()
    assert r.stdout == f"{out}\n" and "unpacking training2017.zip" in r.stderr  # the library's log, on stderr
    run_cli("prep", out, "-o", tmp_path / "s.zarr", "--fs", 300, "--seconds", 30, "--highcut", 40, "--workers", 1)
    s = open_store(tmp_path / "s.zarr")
    assert s.classes == ["Normal", "AF", "Other", "Noisy"] and not s.multi_label and s.leads == ["ECG"]
    assert s.labels.argmax(1).tolist() == [0, 1, 2, 3, 0] and (s.labels.sum(1) == 1).all()
    assert s.signals.shape == (5, 1, 9000) and np.all(s.rows()[0, 0, 2700:] == 0)  # A00001 is 9 s: padded
    assert s.attrs["patient_ids"] == "record"
