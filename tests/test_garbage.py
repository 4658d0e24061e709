"""Garbage in, one sentence out (issue 11, items 4-6): damaged stores, invalid records,
unusable options and a full disk end in one line naming the file, record or option at
fault, never in numbers computed from garbage or in "unexpected <Type>"."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import mounted_tmpfs, run_cli


def tree(path: Path) -> dict[str, bytes]:
    """Every file below ``path`` with its bytes: what "inputs unchanged" compares."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def one_line(r, *needles: str) -> str:
    """The result failed with exactly one line on stderr, holding every needle, and nothing on stdout."""
    assert r.stdout == "", r.stdout
    assert "Traceback" not in r.stderr and "error: unexpected" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def usage_error(r, flag: str, *needles: str) -> str:
    assert r.stdout == "" and "Traceback" not in r.stderr and "error: unexpected" not in r.stderr, r.stderr
    last = r.stderr.splitlines()[-1]
    assert last.startswith(f"Error: Invalid value for '{flag}'"), r.stderr
    for needle in needles:
        assert needle in last, (needle, last)
    return last


@pytest.fixture
def test_copy(synthetic_splits, tmp_path) -> Path:
    """A private copy of the test split, to damage."""
    out = tmp_path / "copy.zarr"
    shutil.copytree(synthetic_splits / "test.zarr", out)
    return out


# -- damaged stores -------------------------------------------------------------------------------
def test_a_store_with_a_deleted_signal_chunk_is_refused_not_read_as_zeros(trained_checkpoint, test_copy):
    (test_copy / "signals" / "c" / "0" / "0" / "0").unlink()
    before = tree(test_copy)
    for args in (("eval", trained_checkpoint, test_copy), ("info", test_copy),
                 ("explain", trained_checkpoint, test_copy, "--first", 1, "-o", test_copy.parent / "cams")):
        r = run_cli(*args, expect=1)
        one_line(r, str(test_copy), "signals chunk 0", "missing")
    assert tree(test_copy) == before and not (test_copy.parent / "cams").exists()


def test_a_missing_chunk_is_refused_through_zarr_too(test_copy):
    """A layout the direct decoder does not take goes through Zarr, which would fill a missing chunk with zeros."""
    from ecgtool.data import store as store_module
    from ecgtool.data.store import StoreError, open_store

    s = open_store(test_copy)
    (test_copy / "signals" / "c" / "0" / "0" / "0").unlink()
    saved = store_module._direct_decoder
    store_module._direct_decoder = lambda signals: None
    try:
        with pytest.raises(StoreError, match="signals chunk 0 .* is missing"):
            s.read_chunk(0, min(len(s), s.chunk_records))
    finally:
        store_module._direct_decoder = saved


def test_a_truncated_signal_chunk_is_one_line(trained_checkpoint, test_copy):
    chunk = test_copy / "signals" / "c" / "0" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:100])
    r = run_cli("eval", trained_checkpoint, test_copy, expect=1)
    one_line(r, str(test_copy), "signals chunk 0", "corrupt")


def test_nan_in_a_store_is_named_at_eval(trained_checkpoint, test_copy):
    import zarr

    g = zarr.open_group(test_copy, mode="r+")
    g["signal_scale"][2, 1] = np.nan  # an int16 store's rows are signals × signal_scale (float stores: test_store)
    rid = str(g["record_id"][2])
    r = run_cli("eval", trained_checkpoint, test_copy, expect=1)
    one_line(r, str(test_copy), f"record {rid}", "NaN")


def test_labels_other_than_0_1_are_refused_by_info_and_eval(trained_checkpoint, test_copy):
    import zarr

    g = zarr.open_group(test_copy, mode="r+")
    y = g["labels"][:]
    y[1, 0] = 2
    g["labels"][:] = y
    for args in (("info", test_copy), ("eval", trained_checkpoint, test_copy)):
        one_line(run_cli(*args, expect=1), str(test_copy), "labels must be 0 or 1", "found 2 at record 1")


def _empty_like(src: Path, out: Path) -> Path:
    from ecgtool.data.store import StoreWriter, open_store

    s = open_store(src)
    attrs = {k: v for k, v in s.attrs.items() if k not in ("format", "format_version", "complete", "content_hash")}
    with StoreWriter(out, n_leads=len(s.leads), n_samples=s.n_samples, attrs=attrs, optional=tuple(s.extras)):
        pass
    return out


def test_an_empty_store_is_one_line(trained_checkpoint, synthetic_splits, tmp_path):
    empty = _empty_like(synthetic_splits / "test.zarr", tmp_path / "empty.zarr")
    one_line(run_cli("eval", trained_checkpoint, empty, expect=1), f"{empty} has no records to evaluate")
    one_line(run_cli("explain", trained_checkpoint, empty, "--first", 2, "-o", tmp_path / "cams", expect=1),
             f"{empty} has no records")
    r = run_cli("eval", trained_checkpoint, synthetic_splits / "test.zarr", "--val", empty, expect=2)
    usage_error(r, "--val", "has no records")
    r = run_cli("train", "resnet18", synthetic_splits / "train.zarr", "--val", empty, "-o", tmp_path / "m.ckpt", expect=2)
    usage_error(r, "--val", "has no records")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.zarr"]


def test_rows_out_of_step_with_signals_name_the_store(test_copy):
    import json

    meta = test_copy / "signals" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["shape"][0] = 0
    meta.write_text(json.dumps(doc))
    one_line(run_cli("info", test_copy, expect=1), str(test_copy), "rows but signals has 0 records", "inconsistent")


def test_a_store_claiming_absurd_sizes_is_refused_before_allocating(test_copy):
    import json

    for field, value, what in ((0, 10**12, "records"), (2, 10**10, "values per record")):
        meta = test_copy / "signals" / "zarr.json"
        saved = meta.read_text()
        doc = json.loads(saved)
        doc["shape"][field] = value
        if field == 2:
            doc["chunk_grid"]["configuration"]["chunk_shape"][2] = value
        meta.write_text(json.dumps(doc))
        one_line(run_cli("info", test_copy, expect=1), str(test_copy), what, "more than")
        meta.write_text(saved)


def test_the_library_refuses_a_nan_learning_rate_by_name(synthetic_splits, tmp_path):
    from ecgtool.errors import ConfigError
    from ecgtool.train.loop import TrainArgs, Trainer

    with pytest.raises(ConfigError) as e:
        Trainer(TrainArgs(model="resnet18", lr=float("nan")), synthetic_splits / "train.zarr", None, tmp_path / "m.ckpt")
    assert e.value.parameter == "lr"


# -- training options ------------------------------------------------------------------------------
@pytest.mark.parametrize("value, message", [("nan", "finite"), ("inf", "finite"), ("-inf", "range"), ("-1", "range")])
def test_train_lr_must_be_finite_and_positive(synthetic_splits, tmp_path, value, message):
    r = run_cli("train", "resnet18", synthetic_splits / "train.zarr", "-o", tmp_path / "m.ckpt", "--lr", value, expect=2)
    usage_error(r, "--lr", message)
    assert list(tmp_path.iterdir()) == []


def test_train_weight_decay_must_be_finite(synthetic_splits, tmp_path):
    r = run_cli("train", "resnet18", synthetic_splits / "train.zarr", "-o", tmp_path / "m.ckpt", "--weight-decay", "nan",
                expect=2)
    usage_error(r, "--weight-decay", "finite")


def test_train_refuses_a_model_argument_the_constructor_does_not_take(synthetic_splits, tmp_path):
    r = run_cli("train", "resnet18", synthetic_splits / "train.zarr", "-o", tmp_path / "m.ckpt", "--model-arg", "bogus=1",
                expect=2)
    usage_error(r, "--model-arg", "bogus=1", "resnet18", "unexpected keyword argument 'bogus'")
    r = run_cli("train", "resnet18", synthetic_splits / "train.zarr", "-o", tmp_path / "m.ckpt", "--model-arg",
                "base_width=-3", expect=2)
    usage_error(r, "--model-arg", "base_width=-3")
    assert list(tmp_path.iterdir()) == []


# -- a checkpoint naming a model this ecgtool does not have ---------------------------------------
def test_an_unknown_model_inside_a_checkpoint_names_the_file(trained_checkpoint, synthetic_splits, tmp_path):
    from ecgtool.checkpoint import Checkpoint, ModelSpec

    ckpt = Checkpoint.load(trained_checkpoint)
    odd = tmp_path / "odd.ckpt"
    ckpt.replace(model=ModelSpec(name="resnet1000", kwargs=ckpt.model.kwargs)).save(odd)
    for args in (("eval", odd, synthetic_splits / "test.zarr"),
                 ("explain", odd, synthetic_splits / "test.zarr", "--first", 1, "-o", tmp_path / "cams"),
                 ("profile", odd)):
        one_line(run_cli(*args, expect=1), str(odd), "resnet1000")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.ckpt"]


# -- raw records ------------------------------------------------------------------------------------
@pytest.fixture
def raw(tmp_path) -> Path:
    from conftest import write_wfdb_dir

    return write_wfdb_dir(tmp_path / "raw", n=6)


def prep(raw: Path, out: Path, *extra, expect: int = 0):
    return run_cli("prep", raw, "-o", out, "--fs", 100, "--seconds", 3, "--workers", 1, *extra, expect=expect)


def refused_then_listed(raw: Path, tmp_path: Path, record: str, *needles: str) -> list[dict]:
    """prep fails on ``record`` with one line naming it; with --on-error skip the record is listed with the reason."""
    from ecgtool.data.store import open_store

    before = tree(raw)
    out = tmp_path / "s.zarr"
    one_line(prep(raw, out, expect=1), f"record {record}", *needles)
    assert not out.exists()
    r = prep(raw, out, "--on-error", "skip")
    assert f"skipped {record}" in r.stderr
    skipped = open_store(out).attrs["skipped_records"]
    assert [s["record"] for s in skipped] == [record] and all(n in skipped[0]["reason"] for n in needles)
    assert tree(raw) == before  # inputs untouched
    return skipped


def test_a_header_with_a_non_numeric_sampling_rate_is_refused(raw, tmp_path):
    hea = raw / "R002.hea"
    hea.write_text(hea.read_text().replace(" 250 ", " abc ", 1))
    refused_then_listed(raw, tmp_path, "R002", "sampling rate 'abc'")


def test_a_first_header_that_is_bad_does_not_sink_the_dataset(raw, tmp_path):
    hea = raw / "R000.hea"
    hea.write_text(hea.read_text().replace(" 250 ", " 25x0 ", 1))
    refused_then_listed(raw, tmp_path, "R000", "sampling rate '25x0'")


def test_invalid_wfdb_samples_become_nan_and_the_record_is_refused(raw, tmp_path):
    import wfdb

    rec = wfdb.rdrecord(str(raw / "R003"), physical=False)
    d = rec.d_signal.copy()
    d[100:110, 1] = -32768  # WFDB's invalid-sample marker in format 16
    wfdb.wrsamp("R003", fs=rec.fs, units=rec.units, sig_name=rec.sig_name, d_signal=d, fmt=rec.fmt, adc_gain=rec.adc_gain,
                baseline=rec.baseline, comments=rec.comments, write_dir=str(raw))
    from ecgtool.data.readers import open_reader

    assert np.isnan(open_reader(raw).read("R003").signal[1, 100:110]).all()  # NaN, not -32.768 mV
    refused_then_listed(raw, tmp_path, "R003", "10 non-finite (NaN or infinite) sample(s)", "lead(s) II")


def test_a_header_claiming_1e12_samples_is_refused_not_allocated(raw, tmp_path):
    hea = raw / "R001.hea"
    first, rest = hea.read_text().split("\n", 1)
    tokens = first.split()
    tokens[3] = str(10**12)
    hea.write_text(" ".join(tokens) + "\n" + rest)
    refused_then_listed(raw, tmp_path, "R001", "claims 1000000000000 samples", "more than")


def test_a_header_claiming_more_samples_than_its_file_holds_is_refused(raw, tmp_path):
    dat = raw / "R004.dat"
    dat.write_bytes(dat.read_bytes()[:600])
    refused_then_listed(raw, tmp_path, "R004", "R004.dat holds 600 bytes", "truncated")


def test_a_label_csv_with_a_bom_is_accepted(raw, tmp_path):
    from ecgtool.data.store import open_store

    labels = raw / "labels.csv"
    labels.write_bytes(b"\xef\xbb\xbf" + labels.read_bytes())
    prep(raw, tmp_path / "s.zarr")
    assert len(open_store(tmp_path / "s.zarr")) == 6


def test_a_utf16_label_csv_with_a_bom_is_accepted(raw, tmp_path):
    from ecgtool.data.store import open_store

    labels = raw / "labels.csv"
    labels.write_bytes(labels.read_text().encode("utf-16"))
    prep(raw, tmp_path / "s.zarr")
    assert sorted(open_store(tmp_path / "s.zarr").classes) == ["A", "B"]


def test_a_utf16_label_csv_without_a_bom_is_one_line_naming_it(raw, tmp_path):
    labels = raw / "labels.csv"
    labels.write_bytes(labels.read_text().encode("utf-16-le"))
    one_line(prep(raw, tmp_path / "s.zarr", expect=1), str(labels), "NUL characters", "save it as UTF-8")


def test_a_latin1_label_csv_is_one_line_naming_it(raw, tmp_path):
    labels = raw / "labels.csv"
    labels.write_bytes(labels.read_bytes().replace(b"P0,", "Pé,".encode("latin-1")))
    for file in (labels, tmp_path / "elsewhere.csv"):
        if file != labels:
            file.write_bytes(labels.read_bytes())
        extra = () if file == labels else ("--labels", file)
        one_line(prep(raw, tmp_path / "s.zarr", *extra, expect=1), str(file), "not UTF-8", "save it as UTF-8")
    assert not (tmp_path / "s.zarr").exists()


def test_a_mat_signal_file_without_the_val_variable_is_refused(tmp_path):
    from datasets_fixture import make_cpsc2018_physionet
    from scipy.io import savemat

    root = make_cpsc2018_physionet(tmp_path / "cpsc") / "training" / "cpsc_2018"
    mat = root / "g1" / "A0002.mat"
    savemat(mat, {"x": np.zeros((12, 4000), np.int16)}, format="4")  # the right size, the wrong variable
    refused_then_listed(root, tmp_path, "A0002", "A0002.mat holds the MATLAB variable 'x', not val")


def test_records_whose_labels_are_all_unknown_are_listed_and_the_codes_named(tmp_path):
    from datasets_fixture import make_cpsc2018_physionet

    from ecgtool.data.store import open_store

    root = make_cpsc2018_physionet(tmp_path / "cpsc") / "training" / "cpsc_2018"
    hea = root / "g1" / "A0003.hea"
    hea.write_text(hea.read_text().replace("Dx: 164889003,164884008", "Dx: 999999,888888"))
    hea = root / "g1" / "A0004.hea"
    hea.write_text(hea.read_text().replace("Dx: 429622005,270492004", "Dx: 429622005,999999"))
    out = tmp_path / "s.zarr"
    r = run_cli("prep", root, "-o", out, "--fs", 100, "--seconds", 6, "--workers", 1)
    store = open_store(out)
    assert len(store) == 4 and "A0003" not in store.record_id
    skipped = store.attrs["skipped_records"]
    assert [s["record"] for s in skipped] == ["A0003"]
    assert "999999" in skipped[0]["reason"] and "888888" in skipped[0]["reason"]
    assert store.attrs["unknown_labels"] == {"888888": 1, "999999": 2}
    text = " ".join(r.stderr.split())  # rich wraps long lines
    warning = text[text.index("warning:"):]
    assert warning.startswith("warning: labels outside the classes of cpsc2018, ignored: 999999 (2 records), 888888 (1 record)")
    assert "skipped A0003: no label of the task" in text and "1 records left out" in text


# -- a full disk -------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs, where the sandbox lets a test mount one."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    with mounted_tmpfs(mnt, "size=1m"):
        yield mnt


def test_fetch_synthetic_on_a_full_disk_is_one_line_and_leaves_nothing(small_disk):
    out = small_disk / "raw"
    r = run_cli("fetch", "synthetic", "-o", out, "--records", 40, "--fs", 500, expect=1)
    one_line(r, f"{out}: cannot write the output: no space left on device")
    assert list(small_disk.iterdir()) == []


def test_prep_on_a_full_disk_is_one_line_and_leaves_nothing(synthetic_raw, small_disk):
    before = tree(synthetic_raw)
    out = small_disk / "s.zarr"
    r = run_cli("prep", synthetic_raw, "-o", out, "--fs", 100, "--workers", 1, expect=1)
    one_line(r, f"{out}: cannot write the output: no space left on device")
    assert list(small_disk.iterdir()) == [] and tree(synthetic_raw) == before


def _disk_full(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_a_store_is_written_names_the_store(synthetic_raw, tmp_path, monkeypatch):
    """The same without a mount: the store writer's chunk writes fail as on a full disk."""
    from ecgtool.data.store import StoreWriter

    monkeypatch.setattr(StoreWriter, "_flush", _disk_full)
    out = tmp_path / "s.zarr"
    r = run_cli("prep", synthetic_raw, "-o", out, "--fs", 100, "--workers", 1, expect=1)
    one_line(r, f"{out}: cannot write the output: no space left on device")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_fetch_synthetic_writes_names_the_output(tmp_path, monkeypatch):
    from ecgtool.data.synthetic import writer

    monkeypatch.setattr(writer, "_write_record", _disk_full)
    out = tmp_path / "raw"
    one_line(run_cli("fetch", "synthetic", "-o", out, "--records", 3, expect=1),
             f"{out}: cannot write the output: no space left on device")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_a_checkpoint_is_saved_names_it(trained_checkpoint, tmp_path, monkeypatch):
    import torch

    from ecgtool.checkpoint import Checkpoint
    from ecgtool.errors import EcgtoolError

    ckpt = Checkpoint.load(trained_checkpoint)
    monkeypatch.setattr(torch, "save", _disk_full)
    with pytest.raises(EcgtoolError, match="no space left on device"):
        ckpt.save(tmp_path / "m.ckpt")
    assert list(tmp_path.iterdir()) == []


@contextmanager
def _file_size_limit(limit: int):
    """Files written meanwhile may not grow past ``limit`` bytes: write() then fails with EFBIG, as it fails with
    ENOSPC on a full disk, through the same code (SIGXFSZ ignored: by default it kills the process). Portable where
    mounting a small tmpfs is not (it needs root)."""
    import resource
    import signal

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def _run_file_size_limited(limit: int | None, *args) -> subprocess.CompletedProcess:
    """``ecgtool ARGS`` in a fresh process whose files may not grow past ``limit`` bytes (see _file_size_limit; None:
    no limit): a process, because torch's C++ writer used to abort the one it ran in."""
    def apply():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # ignored, it stays ignored across exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    return subprocess.run([sys.executable, "-m", "ecgtool", *map(str, args)], capture_output=True, text=True, env=env,
                          preexec_fn=None if limit is None else apply, timeout=300)


def test_a_checkpoint_too_big_for_the_disk_is_one_sentence_naming_it(trained_checkpoint, tmp_path):
    """torch.save's own writer, failed by the file system, said "unexpected pos" in a RuntimeError."""
    from ecgtool.checkpoint import Checkpoint
    from ecgtool.errors import EcgtoolError

    ckpt = Checkpoint.load(trained_checkpoint)
    out = tmp_path / "m.ckpt"
    with _file_size_limit(64 << 10), pytest.raises(EcgtoolError) as caught:
        ckpt.save(out)
    assert str(caught.value) == f"{out}: cannot write the output: file too large for the file system (nothing was left behind)"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_training_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, command):
    """The resume checkpoint after the first epoch meets the full disk: one line naming it (distill saves the same way)."""
    from conftest import wfdb_store

    store = wfdb_store(tmp_path / "data" / "s.zarr", n=8)
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "m.ckpt"
    args = ("train", "resnet18", store) if command == "train" else ("pretrain", "cpc", store, "--backbone", "resnet18")
    with _file_size_limit(64 << 10):
        r = run_cli(*args, "-o", out, "--epochs", 1, "--batch-size", 4, expect=1)
    assert r.stderr.splitlines()[-1] == f"error: {out}.resume: cannot write the output: file too large for the file system (nothing was left behind)"
    assert "unexpected" not in r.stderr and list((tmp_path / "out").iterdir()) == []


@pytest.mark.slow
def test_export_on_a_full_disk_is_one_line_and_leaves_nothing(trained_checkpoint, tmp_path):
    """torch.jit.save's C++ writer aborted the whole process (SIGABRT from a destructor, exit 134) and left its
    temporary file; ONNX goes through onnx's Python writer."""
    out = tmp_path / "m.pt"
    r = _run_file_size_limited(64 << 10, "export", trained_checkpoint, "-o", out)
    assert (r.returncode, r.stdout) == (1, ""), (r.returncode, r.stderr[-2000:])
    assert r.stderr.splitlines() == [f"error: {out}: cannot write the output: file too large for the file system (nothing was left behind)"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_export_on_a_full_tmpfs_is_one_line_and_leaves_nothing(trained_checkpoint, small_disk):
    out = small_disk / "m.pt"
    r = _run_file_size_limited(None, "export", trained_checkpoint, "-o", out)
    assert (r.returncode, r.stdout) == (1, ""), (r.returncode, r.stderr[-2000:])
    assert r.stderr.splitlines() == [f"error: {out}: cannot write the output: no space left on device (nothing was left behind)"]
    assert list(small_disk.iterdir()) == []


# -- a stranger's checkpoint claiming absurd sizes ---------------------------------------------------
def test_a_checkpoint_whose_model_arguments_claim_a_huge_model_is_refused_before_allocating(trained_checkpoint, synthetic_splits,
                                                                                            tmp_path):
    from ecgtool.checkpoint import Checkpoint, ModelSpec

    ckpt = Checkpoint.load(trained_checkpoint)
    big = tmp_path / "big.ckpt"
    ckpt.replace(model=ModelSpec(name=ckpt.model.name, kwargs={**ckpt.model.kwargs, "base_width": 100_000})).save(big)
    for args in (("eval", big, synthetic_splits / "test.zarr"), ("profile", big)):
        one_line(run_cli(*args, expect=1), str(big), "parameters but the file holds", "refused before allocating")


def test_a_checkpoint_whose_input_claims_1e12_samples_is_refused(trained_checkpoint, tmp_path):
    import torch

    doc = torch.load(trained_checkpoint, weights_only=True)
    doc["input"]["samples"] = 10**12
    odd = tmp_path / "odd.ckpt"
    torch.save(doc, odd)
    for args in (("info", odd), ("profile", odd)):
        one_line(run_cli(*args, expect=1), str(odd), "1000000000000 samples", "refused before allocating")


def test_a_cpsc2018_mat_without_the_ecg_struct_is_refused(tmp_path):
    from datasets_fixture import make_cpsc2018_original
    from scipy.io import savemat

    from ecgtool.data.download import extract_archive

    root = make_cpsc2018_original(tmp_path / "cpsc")
    extract_archive(root / "TrainingSet1.zip", root)
    savemat(root / "TrainingSet1" / "A0002.mat", {"data": np.zeros((12, 4000))})  # the data, but not in the ECG struct
    (root / "TrainingSet1.zip").unlink()
    refused_then_listed(root, tmp_path, "A0002", "A0002.mat: not a CPSC2018 .mat record")


def test_split_and_merge_refuse_a_store_with_a_deleted_chunk(synthetic_splits, test_copy, tmp_path):
    (test_copy / "signals" / "c" / "0" / "0" / "0").unlink()
    one_line(run_cli("split", test_copy, "-o", tmp_path / "parts", "--ratios", "0.5,0.25,0.25", expect=1),
             str(test_copy), "signals chunk 0", "missing")
    assert not (tmp_path / "parts").exists()


def test_a_store_claiming_a_huge_label_matrix_is_refused_before_allocating(test_copy):
    import json

    meta = test_copy / "signals" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["shape"][0] = 10**7
    meta.write_text(json.dumps(doc))
    group = test_copy / "zarr.json"
    doc = json.loads(group.read_text())
    doc["attributes"]["classes"] = [f"C{i}" for i in range(200)]
    group.write_text(json.dumps(doc))
    one_line(run_cli("info", test_copy, expect=1), str(test_copy), "2000000000 label values", "more than")
