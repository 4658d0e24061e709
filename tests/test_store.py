"""The ECG store contract: round trips, atomic writes, and rejection of bad stores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecgtool.data.store import STORE_VERSION, StoreError, StoreWriter, open_store
from ecgtool.data.quantise import as_stored, dequantise, quantise
from ecgtool.errors import EcgtoolError

ATTRS = dict(fs=100.0, leads=["I", "II"], units="mV", classes=["A", "B", "C"], task="t", multi_label=True,
             normalisation={"method": "none"})


def write(path, n=23, chunk=5, **kw):
    rng = np.random.default_rng(0)
    sig = rng.standard_normal((n, 2, 50)).astype(np.float32)
    lab = rng.integers(0, 2, (n, 3))
    with StoreWriter(path, n_leads=2, n_samples=50, attrs=ATTRS, optional=("age", "sex"), chunk_records=chunk, **kw) as w:
        for start in range(0, n, 4):  # batches that straddle chunk boundaries
            s = slice(start, min(n, start + 4))
            w.append(sig[s], lab[s], [f"r{i}" for i in range(s.start, s.stop)], [f"p{i // 3}" for i in range(s.start, s.stop)],
                     fold=np.arange(s.start, s.stop) % 10, age=np.arange(s.start, s.stop), sex=["F"] * (s.stop - s.start))
    return sig, lab


def test_round_trip(tmp_path):
    sig, lab = write(tmp_path / "s.zarr")
    s = open_store(tmp_path / "s.zarr")
    assert len(s) == 23 and s.chunk_records == 5 and s.signals.chunks == (5, 2, 50)
    assert s.signals.dtype == np.int16 and s.scale.shape == (23, 2)  # the default: int16 rows with a scale
    np.testing.assert_array_equal(s.rows(), as_stored(sig, "int16"))
    assert np.abs(s.rows() - sig).max() <= np.abs(sig).max() / 65534 * 1.01
    np.testing.assert_array_equal(s.labels, lab)
    assert list(s.record_id[:2]) == ["r0", "r1"] and s.patient_id[5] == "p1"
    assert s.fold[12] == 2 and s.extras["age"][3] == 3 and s.extras["sex"][0] == "F"
    assert s.classes == ["A", "B", "C"] and s.fs == 100.0
    rows = np.array([22, 0, 7, 7])
    np.testing.assert_array_equal(s.read_rows(rows), as_stored(sig[rows], "int16"))
    summary = s.summary()
    assert summary["class_counts"]["A"] == int(lab[:, 0].sum())
    assert summary["patients"] == 8 and summary["format_version"] == STORE_VERSION


def test_content_hash_tracks_content(tmp_path):
    write(tmp_path / "a.zarr")
    write(tmp_path / "b.zarr", chunk=7)  # same records, different chunking: same content
    write(tmp_path / "c.zarr", n=22)
    h = [open_store(tmp_path / f"{x}.zarr").attrs["content_hash"] for x in "abc"]
    assert h[0] == h[1] != h[2]


def test_refuses_to_overwrite(tmp_path):
    write(tmp_path / "s.zarr")
    with pytest.raises(EcgtoolError, match="already exists; pass --overwrite"):
        write(tmp_path / "s.zarr")
    write(tmp_path / "s.zarr", n=3, overwrite=True)
    assert len(open_store(tmp_path / "s.zarr")) == 3


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with StoreWriter(tmp_path / "s.zarr", n_leads=2, n_samples=50, attrs=ATTRS) as w:
            w.append(np.zeros((6, 2, 50)), np.zeros((6, 3)), ["r"] * 6, ["p"] * 6)
            raise RuntimeError("disk on fire")
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_old_store(tmp_path):
    write(tmp_path / "s.zarr")
    with pytest.raises(RuntimeError):
        with StoreWriter(tmp_path / "s.zarr", n_leads=2, n_samples=50, attrs=ATTRS, overwrite=True):
            raise RuntimeError("interrupted")
    assert len(open_store(tmp_path / "s.zarr")) == 23


def test_shape_mismatch_is_rejected(tmp_path):
    with pytest.raises(EcgtoolError, match="do not fit"):
        with StoreWriter(tmp_path / "s.zarr", n_leads=2, n_samples=50, attrs=ATTRS) as w:
            w.append(np.zeros((1, 3, 50)), np.zeros((1, 3)), ["r"], ["p"])


def _edit_attrs(path, **changes):
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"].update(changes)
    meta.write_text(json.dumps(doc))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"complete": False}, "incomplete"),
        ({"format": "something.else"}, "not an ecgtool ECG store"),
        ({"format_version": STORE_VERSION + 1}, "newer than this ecgtool"),
        ({"leads": ["I"]}, "lead names"),
        ({"classes": ["A"]}, "labels shape"),
    ],
)
def test_bad_stores_are_refused(tmp_path, change, message):
    write(tmp_path / "s.zarr")
    _edit_attrs(tmp_path / "s.zarr", **change)
    with pytest.raises(StoreError, match=message):
        open_store(tmp_path / "s.zarr")


def test_missing_and_foreign(tmp_path):
    with pytest.raises(StoreError, match="no such store"):
        open_store(tmp_path / "nope.zarr")
    (tmp_path / "dir").mkdir()
    with pytest.raises(StoreError, match="not an ECG store"):
        open_store(tmp_path / "dir")
    import zarr

    zarr.open_group(tmp_path / "g.zarr", mode="w", zarr_format=3)
    with pytest.raises(StoreError, match="not an ecgtool ECG store"):
        open_store(tmp_path / "g.zarr")


def test_missing_array_is_refused(tmp_path):
    import shutil

    write(tmp_path / "s.zarr")
    shutil.rmtree(tmp_path / "s.zarr" / "fold")
    with pytest.raises(StoreError, match="lacks the array"):
        open_store(tmp_path / "s.zarr")


@pytest.mark.parametrize("dtype", ["int16", "float32", "float16"])
def test_direct_chunk_decoding_equals_zarr(tmp_path, dtype):
    """read_chunk decodes the chunk files itself (numcodecs Blosc); it must return exactly what
    Zarr returns, the partial last chunk included, and fall back to Zarr for other codecs."""
    import zarr

    from ecgtool.data.store import _direct_decoder

    sig, _ = write(tmp_path / "s.zarr", dtype=dtype)
    s = open_store(tmp_path / "s.zarr")
    assert _direct_decoder(s.signals) is not None
    for start, stop in s.chunk_bounds():
        got = s.read_stored(start, stop)
        assert got.dtype == np.dtype(dtype) and np.array_equal(got, np.asarray(s.signals[start:stop]))
        into = np.full(s.signals.chunks, 7, dtype)  # a reused buffer: decoded into, then cut to the chunk's rows
        assert np.array_equal(s.read_stored(start, stop, out=into), got)
        assert s.read_chunk(start, stop).dtype == np.float32
    np.testing.assert_array_equal(s.read_chunk(20, 23), as_stored(sig[20:23], dtype))
    g = zarr.open_group(tmp_path / "plain.zarr", mode="w", zarr_format=3)
    plain = g.create_array("signals", data=sig, chunks=(5, 2, 50), compressors=None)
    assert _direct_decoder(plain) is None


def test_quantisation_error_is_bounded_and_copies_keep_the_rows_bit_for_bit(tmp_path):
    """int16 rows: |x - read| ≤ peak/65534 per record and lead (float32 rounding aside); an all-zero lead stays
    zero; rows given as int16 with their scale (split's and merge's copies) are stored as they are."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((6, 2, 50)) * rng.uniform(0.01, 30, (6, 2, 1))).astype(np.float32)
    x[2, 1] = 0
    q, scale = quantise(x)
    assert q.dtype == np.int16 and np.abs(q).max() == 32767 and scale[2, 1] == 1 and not q[2, 1].any()
    bound = np.abs(x).max(axis=-1, keepdims=True) / 65534
    assert (np.abs(dequantise(q, scale) - x) <= bound * 1.001 + 1e-12).all()
    attrs = {**ATTRS}
    with StoreWriter(tmp_path / "a.zarr", n_leads=2, n_samples=50, attrs=attrs) as w:
        w.append(x, np.zeros((6, 3)), [str(i) for i in range(6)], ["p"] * 6)
    a = open_store(tmp_path / "a.zarr")
    with StoreWriter(tmp_path / "b.zarr", n_leads=2, n_samples=50, attrs=attrs) as w:
        w.append(*a.stored_rows(0, 6)[:1], a.labels, a.record_id, a.patient_id, signal_scale=a.scale)
    b = open_store(tmp_path / "b.zarr")
    assert np.array_equal(b.read_stored(0, 6), q) and np.array_equal(b.scale, scale)
    assert a.attrs["content_hash"] == b.attrs["content_hash"]
    with pytest.raises(EcgtoolError, match="signal scale goes with int16 rows"):
        with StoreWriter(tmp_path / "c.zarr", n_leads=2, n_samples=50, attrs=attrs, dtype="float32") as w:
            w.append(q, np.zeros((6, 3)), [str(i) for i in range(6)], ["p"] * 6, signal_scale=scale)


@pytest.mark.parametrize("damage, message", [
    ("delete", "without the array signal_scale"), ("nan", "record r4 .row 4. has the signal_scale NaN"),
    ("zero", "not a positive number"), ("shape", "signal_scale must be float32 \\[23, 2\\]"),
    ("float-store", "has signal_scale but float32 signals")])
def test_a_damaged_signal_scale_is_refused(tmp_path, damage, message):
    import shutil

    import zarr

    write(tmp_path / "s.zarr", dtype="float32" if damage == "float-store" else "int16")
    if damage == "delete":
        shutil.rmtree(tmp_path / "s.zarr" / "signal_scale")
    elif damage in ("shape", "float-store"):  # a scale of another shape, or one beside float signals
        g = zarr.open_group(tmp_path / "s.zarr", mode="r+")
        if damage == "shape":
            del g["signal_scale"]
        g.create_array("signal_scale", data=np.ones((23, 3), np.float32))
    else:
        array = zarr.open_array(tmp_path / "s.zarr" / "signal_scale", mode="r+")
        array[4, 1] = np.nan if damage == "nan" else 0.0
    with pytest.raises(StoreError, match=message):
        open_store(tmp_path / "s.zarr")


def test_nan_in_a_float_store_is_named_when_read(tmp_path):
    import zarr

    write(tmp_path / "s.zarr", dtype="float32")
    zarr.open_group(tmp_path / "s.zarr", mode="r+")["signals"][7, 1, 3] = np.inf
    s = open_store(tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="record r7 .row 7. has NaN or infinite signal values"):
        s.read_chunk(5, 10)
