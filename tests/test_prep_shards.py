"""prep --shard I/N + merge: the merged parts are the store one unsharded prep writes; bad parts are refused."""

from __future__ import annotations

import csv
import itertools
import shutil

import numpy as np
import pytest
from conftest import run_cli, write_wfdb_dir
from datasets_fixture import make_mitdb

from ecgtool.data.prep import run_prep, shard_range
from ecgtool.data.readers import open_reader
from ecgtool.data.store import open_store
from ecgtool.data.transforms import PrepConfig

# Attributes that may differ between a merged store and a single prep (provenance is checked on its own).
PER_RUN = ("provenance", "normalisation")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    """14 records; R005 unreadable (--on-error skip), R002 and R009 without a label (dropped)."""
    root = write_wfdb_dir(tmp_path_factory.mktemp("shards") / "raw", n=14, fs=250, seconds=4.0, seed=3)
    (root / "R005.dat").write_bytes(b"\x00\x01")
    with open(root / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if row["record_id"] in ("R002", "R009"):
            row["labels"] = ""
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


COMMON = ("--fs", 100, "--seconds", 5, "--workers", 1, "--on-error", "skip")  # 5 s of 4 s records: padded rows


def prep_parts(raw, out_dir, n, *args, indices=None):
    out_dir.mkdir(exist_ok=True)
    paths = []
    for i in range(n) if indices is None else indices:
        path = out_dir / f"part-{i}.zarr"
        r = run_cli("prep", raw, "-o", path, "--shard", f"{i}/{n}", *COMMON, *args)
        assert r.stdout.strip() == str(path)
        paths.append(path)
    return paths


def assert_same_store(merged, single):
    a, b = open_store(merged), open_store(single)
    np.testing.assert_array_equal(a.rows(), b.rows())
    assert a.signals.dtype == b.signals.dtype and a.chunk_records == b.chunk_records
    np.testing.assert_array_equal(a.labels, b.labels)
    for name in ("record_id", "patient_id", "fold"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert sorted(a.extras) == sorted(b.extras)
    for name in a.extras:
        np.testing.assert_array_equal(a.extras[name], b.extras[name])  # NaN ages compare equal
    def strip(attrs):
        return {k: v for k, v in attrs.items() if k not in PER_RUN}

    assert strip(a.attrs) == strip(b.attrs)  # content_hash included: the same arrays hash the same
    na, nb = a.attrs["normalisation"], b.attrs["normalisation"]
    assert na["method"] == nb["method"] and set(na) == set(nb)
    for key in set(na) - {"method"}:
        np.testing.assert_allclose(na[key], nb[key], rtol=1e-12, atol=1e-15)
    return a, b


@pytest.mark.parametrize("normalise", ["zscore", "dataset"])
def test_sharded_prep_and_merge_equal_a_single_prep(raw, tmp_path, normalise):
    single = tmp_path / "single.zarr"
    run_cli("prep", raw, "-o", single, *COMMON, "--normalise", normalise)
    parts = prep_parts(raw, tmp_path / "parts", 3, "--normalise", normalise)
    for i, p in enumerate(parts):
        s = open_store(p)
        assert s.attrs["shard"]["index"] == i and s.attrs["shard"]["count"] == 3 and s.attrs["shard"]["records_total"] == 14
        assert set(s.attrs["lead_stats"]) == {"count", "sum", "sum_sq"}
        assert s.attrs["provenance"][-1]["shard"] == f"{i}/3"
    merged = tmp_path / "merged.zarr"
    r = run_cli("merge", parts[2], parts[0], parts[1], "-o", merged)  # any order: joined in shard order
    assert r.stdout.strip() == str(merged) and "merged 3 parts" in r.stderr
    a, _ = assert_same_store(merged, single)
    # every record left out is listed with its reason: the unreadable one and the two without a label (issue 11)
    assert len(a) == 11 and [x["record"] for x in a.attrs["skipped_records"]] == ["R002", "R005", "R009"]
    assert [x["reason"].startswith("no label of the task") for x in a.attrs["skipped_records"]] == [True, False, True]
    assert a.attrs["unlabelled_dropped"] == 2 and "shard" not in a.attrs and "lead_stats" not in a.attrs
    assert [p["step"] for p in a.attrs["provenance"]] == ["prep", "prep", "prep", "merge"]
    assert len(a.attrs["provenance"][-1]["inputs"]) == 3
    if normalise == "dataset":  # the merged statistics are the whole dataset's, not any part's
        assert open_store(parts[0]).attrs["normalisation"]["mean"] != a.attrs["normalisation"]["mean"]
    # the merged store is a store like any other: split reads it
    run_cli("split", merged, "-o", tmp_path / "splits", "--ratios", "0.6,0.2,0.2")


def test_parts_keep_fetch_provenance_once(tmp_path):
    raw = tmp_path / "syn"
    run_cli("fetch", "synthetic", "-o", raw, "--records", 5, "--fs", 100, "--seconds", 4, "--leads", "I,II", "--seed", 1)
    parts = prep_parts(raw, tmp_path / "parts", 2)
    run_cli("merge", *parts, "-o", tmp_path / "m.zarr")
    run_cli("prep", raw, "-o", tmp_path / "s.zarr", *COMMON)
    a, _ = assert_same_store(tmp_path / "m.zarr", tmp_path / "s.zarr")
    assert [p["step"] for p in a.attrs["provenance"]] == ["fetch", "prep", "prep", "merge"]


def test_more_shards_than_records_gives_empty_parts(tmp_path):
    raw = write_wfdb_dir(tmp_path / "raw", n=3, seconds=2.0)
    cfg = PrepConfig(fs=100, seconds=2.0, normalisation="dataset")
    run_prep(open_reader(raw), tmp_path / "single.zarr", cfg)
    paths = []
    for i in range(5):  # more shards than records: some parts are empty stores
        paths.append(tmp_path / f"p{i}.zarr")
        run_prep(open_reader(raw), paths[-1], cfg, shard=(i, 5))
    assert [len(open_store(p)) for p in paths] == [0, 1, 0, 1, 1]
    run_cli("merge", *paths, "-o", tmp_path / "m.zarr")
    assert_same_store(tmp_path / "m.zarr", tmp_path / "single.zarr")
    r = run_cli("merge", paths[0], paths[2], "-o", tmp_path / "e.zarr", expect=1)
    assert "missing shard(s) 1/5, 3/5, 4/5" in r.stderr


def test_beat_stores_shard_without_a_fixed_length(tmp_path):
    """A beat store's row length comes from --beat-window, so --seconds 0 is fine there."""
    raw = make_mitdb(tmp_path / "mitdb")
    args = ("--beat-window", "0.25,0.4", "--fs", 360, "--leads", "MLII", "--workers", 1, "--seconds", 0, "--normalise", "dataset")
    run_cli("prep", raw, "-o", tmp_path / "single.zarr", *args)
    for i in range(2):
        run_cli("prep", raw, "-o", tmp_path / f"p{i}.zarr", "--shard", f"{i}/2", *args)
    run_cli("merge", tmp_path / "p1.zarr", tmp_path / "p0.zarr", "-o", tmp_path / "m.zarr")
    a, _ = assert_same_store(tmp_path / "m.zarr", tmp_path / "single.zarr")
    assert a.extras["beat_sample"][:3].tolist() == [360, 720, 1080] and len(a) == 21


def test_shard_ranges_cover_the_records_once():
    for n in range(40):
        for count in range(1, 9):
            ranges = [shard_range(n, i, count) for i in range(count)]
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
            assert max(b - a for a, b in ranges) - min(b - a for a, b in ranges) <= 1


@pytest.fixture(scope="module")
def parts(raw, tmp_path_factory):
    return prep_parts(raw, tmp_path_factory.mktemp("parts"), 3)


def assert_refused(args, tmp_path, message):
    out = tmp_path / "out.zarr"
    r = run_cli("merge", *args, "-o", out, expect=1)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and message in r.stderr, r.stderr
    assert r.stdout == "" and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.zarr")]  # no temporary left behind
    return r.stderr


def test_missing_duplicate_and_foreign_parts_are_refused(raw, parts, tmp_path):
    err = assert_refused([parts[0], parts[2]], tmp_path, "missing shard(s) 1/3")
    assert "pass all 3 parts" in err
    dup = tmp_path / "again.zarr"
    shutil.copytree(parts[1], dup)
    err = assert_refused([*parts, dup], tmp_path, "shard 1/3 given twice")
    assert str(parts[1]) in err and str(dup) in err
    single = tmp_path / "single.zarr"
    run_cli("prep", raw, "-o", single, *COMMON)
    assert_refused([*parts, single], tmp_path, f"{single} is not a part of a sharded prep")
    other_n = prep_parts(raw, tmp_path / "n2", 2, indices=[1])
    assert_refused([parts[0], other_n[0], parts[2]], tmp_path, "disagree on the number of shards")


def test_incompatible_parts_are_refused(raw, parts, tmp_path):
    (tmp_path / "fs").mkdir()
    odd = tmp_path / "fs" / "part-1.zarr"
    run_cli("prep", raw, "-o", odd, "--shard", "1/3", *COMMON, "--fs", 125)
    assert_refused([parts[0], odd, parts[2]], tmp_path, f"{odd} does not match {parts[0]}: fs is 125.0 there, 100.0 here")
    for extra, what in ((("--normalise", "dataset"), "normalisation method"), (("--dtype", "float16"), "signal dtype"),
                        (("--leads", "II,I"), "leads")):
        shutil.rmtree(odd)
        run_cli("prep", raw, "-o", odd, "--shard", "1/3", *COMMON, *extra)
        err = assert_refused([parts[0], odd, parts[2]], tmp_path, f"{odd} does not match {parts[0]}: ")
        assert what in err
    shutil.rmtree(odd)
    run_cli("prep", raw, "-o", odd, "--shard", "1/3", *COMMON, "--limit", 12)  # another record list
    assert_refused([parts[0], odd, parts[2]], tmp_path, "sharded from a different record list")


def test_merge_refuses_to_overwrite(parts, tmp_path):
    out = tmp_path / "m.zarr"
    run_cli("merge", *parts, "-o", out)
    before = open_store(out).attrs["provenance"][-1]["time"]
    r = run_cli("merge", *parts, "-o", out, expect=1)
    assert r.stderr.strip() == f"error: {out} already exists; pass --overwrite to replace it"
    assert open_store(out).attrs["provenance"][-1]["time"] == before
    run_cli("merge", *parts, "-o", out, "--overwrite")
    r = run_cli("merge", *parts, "-o", parts[0], "--overwrite", expect=1)
    assert "is the input" in r.stderr


@pytest.mark.parametrize("shard", ["1-3", "3/3", "a/b", "1/0", "1/", "/3", "1/3/4", "-1/3"])
def test_bad_shard_syntax_is_a_usage_error(raw, tmp_path, shard):
    r = run_cli("prep", raw, "-o", tmp_path / "s.zarr", "--shard", shard, *COMMON, expect=2)
    assert "--shard" in r.stderr and not (tmp_path / "s.zarr").exists()


def test_shard_needs_a_fixed_length(raw, tmp_path):
    r = run_cli("prep", raw, "-o", tmp_path / "s.zarr", "--shard", "0/2", "--seconds", 0, "--workers", 1, expect=2)
    assert "--seconds > 0" in r.stderr and not (tmp_path / "s.zarr").exists()


def test_shard_from_the_environment(raw, tmp_path):
    out = tmp_path / "p.zarr"
    run_cli("prep", raw, "-o", out, *COMMON, env={"ECGTOOL_PREP_SHARD": "2/3"})
    assert open_store(out).attrs["shard"]["index"] == 2


def test_parts_read_differently_are_refused_naming_the_option(raw, parts, tmp_path):
    """Reader options change rows and labels yet were recorded nowhere: parts that differ in them merged without a word
    (audit). They are the store's ``reading`` attribute now, and merge names the key that differs with both values."""
    (tmp_path / "odd").mkdir()
    odd = tmp_path / "odd" / "part-1.zarr"
    run_cli("prep", raw, "-o", odd, "--shard", "1/3", *COMMON, "--keep-unlabelled")
    assert open_store(odd).attrs["reading"]["keep_unlabelled"] is True
    assert_refused([parts[0], odd, parts[2]], tmp_path,
                   f"{odd} does not match {parts[0]}: reading.keep_unlabelled is True there, False here;")
    labels = tmp_path / "labels.csv"
    with open(raw / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    rows[6]["labels"] = "B" if rows[6]["labels"] == "A" else "A"  # R006, in shard 1/3: another label
    with open(labels, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    shutil.rmtree(odd)
    run_cli("prep", raw, "-o", odd, "--shard", "1/3", *COMMON, "--labels", labels)
    assert_refused([parts[0], odd, parts[2]], tmp_path, f"{odd} does not match {parts[0]}: reading.labels_sha256 is '")


@pytest.fixture(scope="module")
def ptbxl(tmp_path_factory):
    from datasets_fixture import make_ptbxl

    return make_ptbxl(tmp_path_factory.mktemp("ptbxl") / "ptbxl")


@pytest.mark.parametrize("extra, message", [(("--min-likelihood", 20), "reading.min_likelihood is 20.0 there, None here;"),
                                            (("--rate", 500), "reading.rate is 500 there, 100 here;")])
def test_ptbxl_parts_read_differently_are_refused(ptbxl, tmp_path, extra, message):
    part0, part1 = tmp_path / "p0.zarr", tmp_path / "p1.zarr"
    run_cli("prep", ptbxl, "-o", part0, "--shard", "0/2", "--jobs", 1)
    run_cli("prep", ptbxl, "-o", part1, "--shard", "1/2", "--jobs", 1, *extra)
    assert_refused([part0, part1], tmp_path, f"{part1} does not match {part0}: {message}")
    r = run_cli("info", part1)
    assert "read with reader ptbxl" in r.stdout and f"{extra[0][2:].replace('-', '_')} {float(extra[1]) if extra[0] == '--min-likelihood' else extra[1]}" in r.stdout


def test_a_lead_list_equal_to_all_leads_merges_with_the_default(raw, parts, tmp_path):
    """--leads naming every lead in the dataset's order gives the store the default gives: decided by the leads stored."""
    leads = ",".join(open_store(parts[0]).leads)
    (tmp_path / "explicit").mkdir()
    explicit = tmp_path / "explicit" / "part-1.zarr"
    run_cli("prep", raw, "-o", explicit, "--shard", "1/3", *COMMON, "--leads", leads)
    merged, single = tmp_path / "merged.zarr", tmp_path / "single.zarr"
    run_cli("merge", parts[0], explicit, parts[2], "-o", merged)
    run_cli("prep", raw, "-o", single, *COMMON)
    assert_same_store(merged, single)


def test_parts_written_before_reading_was_recorded_still_merge(parts, tmp_path):
    """Stores from before the ``reading`` attribute (an optional key, format version 2 as before) merge as they did."""
    import json

    old = []
    for p in parts:
        copy = tmp_path / "old" / p.name
        shutil.copytree(p, copy)
        meta = copy / "zarr.json"
        doc = json.loads(meta.read_text())
        del doc["attributes"]["reading"]
        meta.write_text(json.dumps(doc))
        old.append(copy)
    merged = tmp_path / "merged.zarr"
    run_cli("merge", *old, "-o", merged)
    assert "reading" not in open_store(merged).attrs
    assert "read with" not in run_cli("info", merged).stdout
    assert_refused([old[0], parts[1], old[2]], tmp_path, "reading.reader is 'wfdb' there, absent here")
