"""Property-based tests (hypothesis) of the two doors a stranger's bytes come in by: the WFDB header
path of the readers and the store validator. Whatever the generated input, the outcome is either
data that is what the input says it is, or one ``EcgtoolError`` — never another exception type,
never numbers made up from garbage (wfdb's default 250 Hz, Zarr's zero fill value)."""

from __future__ import annotations

import json
import os
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ecgtool.errors import EcgtoolError  # noqa: E402

# derandomize: the same examples every run, as every other test is seeded (HYPOTHESIS_EXAMPLES widens the search)
SETTINGS = settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", 60)), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


# -- the WFDB header path ---------------------------------------------------------------------------
def _number_text(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


fs_tokens = st.one_of(
    st.floats(min_value=0.5, max_value=5000, allow_nan=False).map(lambda v: f"{v:g}"),
    st.integers(-10, 10**7).map(str),
    st.sampled_from(["abc", "nan", "inf", "-inf", "1e400", "0", "-250", "100/1", "360/0.5(0)", "1,000", "٣٠٠"]),
    st.text(alphabet=st.characters(blacklist_categories=("Zs", "Cc", "Zl", "Zp"), blacklist_characters="#"), min_size=1,
            max_size=8),
)
length_tokens = st.one_of(
    st.integers(0, 80).map(str),
    st.integers(-3, 10**13).map(str),
    st.sampled_from(["", "abc", "1.5", "-1", "1e3", "10000000000000000000000"]),
)


def _write_record(root: Path, n_sig: int, n: int, fs_token: str, len_token: str, seed: int) -> np.ndarray:
    """A format-16 record of ``n`` samples whose header's record line carries the given tokens."""
    rng = np.random.default_rng(seed)
    digital = rng.integers(-2000, 2000, size=(n, n_sig)).astype("<i2")
    lines = [" ".join(t for t in ("R1", str(n_sig), fs_token, len_token) if t)]
    lines += [f"R1.dat 16 1000/mV 16 0 {int(digital[0, k]) if n else 0} 0 0 L{k}" for k in range(n_sig)]
    (root / "R1.hea").write_text("\n".join(lines) + "\n")
    (root / "R1.dat").write_bytes(digital.tobytes())
    return digital


@SETTINGS
@given(n_sig=st.integers(1, 3), n=st.integers(1, 60), fs_token=fs_tokens, len_token=length_tokens, seed=st.integers(0, 9))
def test_a_wfdb_record_reads_as_its_header_says_or_is_one_error(n_sig, n, fs_token, len_token, seed):
    from ecgtool.data.readers.wfdb_dir import WfdbDirectoryReader

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        digital = _write_record(root, n_sig, n, fs_token, len_token, seed)
        try:
            reader = WfdbDirectoryReader(root)
            rec = reader.read("R1")
        except EcgtoolError:
            return
        fs = float(fs_token.split("/")[0])  # the record was read: its rate is the header's, never wfdb's default
        assert math.isfinite(fs) and fs > 0 and rec.fs == fs and reader.fs == fs
        length = int(len_token) if len_token else n
        assert 0 < length <= n and rec.signal.shape == (n_sig, length)
        np.testing.assert_allclose(rec.signal, digital[:length].T / 1000.0)


header_lines = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=40)


@SETTINGS
@given(record_line=header_lines, signal_line=header_lines)
def test_any_header_text_reads_or_is_one_error(record_line, signal_line):
    """Arbitrary record and signal lines: the reader never lets another exception type out."""
    from ecgtool.data.readers.wfdb_dir import WfdbDirectoryReader

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "R1.hea").write_text(f"{record_line}\n{signal_line}\n", encoding="utf-8")
        (root / "R1.dat").write_bytes(np.arange(40, dtype="<i2").tobytes())
        try:
            reader = WfdbDirectoryReader(root)
            rec = reader.read("R1")
        except EcgtoolError:
            return
        assert np.isfinite(rec.fs) and rec.fs > 0 and rec.signal.ndim == 2


# -- the store validator ----------------------------------------------------------------------------
N_RECORDS, N_LEADS, N_SAMPLES = 10, 2, 16


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    from ecgtool.data.store import StoreWriter

    out = tmp_path_factory.mktemp("prop") / "s.zarr"
    rng = np.random.default_rng(0)
    attrs = dict(fs=100.0, leads=["I", "II"], units="mV", classes=["A", "B", "C"], task="t", multi_label=True,
                 normalisation={"method": "none"})
    with StoreWriter(out, n_leads=N_LEADS, n_samples=N_SAMPLES, attrs=attrs, optional=("age", "sex"), chunk_records=4) as w:
        w.append(rng.standard_normal((N_RECORDS, N_LEADS, N_SAMPLES)).astype(np.float32),
                 rng.integers(0, 2, (N_RECORDS, 3)), [f"r{i}" for i in range(N_RECORDS)], [f"p{i // 2}" for i in range(N_RECORDS)])
    return out


def _json_values():
    return st.recursive(st.none() | st.booleans() | st.integers(-10**15, 10**15) | st.floats() | st.text(max_size=5),
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
                        max_leaves=6)


def _edit_json(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


# each damage: (name, strategy of its parameter, function(store path, parameter)). _set_label and _set_signal
# write one element: rewriting the whole array after _set_shape had grown it to 10**6 rows took minutes.
def _delete_chunk(p, k):
    (p / "signals" / "c" / str(k % 3) / "0" / "0").unlink()


def _truncate_chunk(p, arg):
    k, size = arg
    f = p / "signals" / "c" / str(k % 3) / "0" / "0"
    f.write_bytes(f.read_bytes()[: size % max(1, f.stat().st_size)])


def _flip_bytes(p, arg):
    k, pos, value = arg
    f = p / "signals" / "c" / str(k % 3) / "0" / "0"
    data = bytearray(f.read_bytes())
    if not data:
        return
    data[pos % len(data)] = value
    f.write_bytes(bytes(data))


def _set_label(p, arg):
    import zarr

    row, col, value = arg
    zarr.open_group(p, mode="r+")["labels"][row % N_RECORDS, col % 3] = value


def _set_signal(p, arg):
    import zarr

    row, value = arg
    zarr.open_group(p, mode="r+")["signals"][row % N_RECORDS, 0, 3] = value


def _set_attr(p, arg):
    key, value = arg
    _edit_json(p / "zarr.json", lambda d: d["attributes"].__setitem__(key, value))


def _set_shape(p, arg):
    array, axis, value = arg

    def change(d):
        if axis < len(d["shape"]):
            d["shape"][axis] = value

    _edit_json(p / array / "zarr.json", change)


DAMAGE = st.one_of(
    st.tuples(st.just(_delete_chunk), st.integers(0, 2)),
    st.tuples(st.just(_truncate_chunk), st.tuples(st.integers(0, 2), st.integers(0, 10**6))),
    st.tuples(st.just(_flip_bytes), st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.integers(0, 255))),
    st.tuples(st.just(_set_label), st.tuples(st.integers(0, 99), st.integers(0, 9), st.integers(0, 255))),
    st.tuples(st.just(_set_signal), st.tuples(st.integers(0, 99), st.sampled_from([np.nan, np.inf, -np.inf, 1e30, 0.0]))),
    st.tuples(st.just(_set_attr), st.tuples(st.sampled_from(["fs", "leads", "classes", "format_version", "complete",
                                                              "format", "multi_label"]), _json_values())),
    st.tuples(st.just(_set_shape), st.tuples(st.sampled_from(["signals", "labels", "record_id", "fold", "age", "sex"]),
                                             st.integers(0, 2), st.integers(0, 10**13))),
)


@SETTINGS
@given(damage=st.lists(DAMAGE, min_size=1, max_size=3))
def test_a_damaged_store_reads_true_or_is_one_error(pristine, damage):
    from ecgtool.data.store import open_store

    original = open_store(pristine)
    signals, labels = original.read_rows(np.arange(N_RECORDS)), original.labels.copy()
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "s.zarr"
        shutil.copytree(pristine, p)
        for apply, arg in damage:
            try:
                apply(p, arg)
            except Exception:  # an earlier damage made this one impossible (a chunk already gone, metadata Zarr refuses)
                pass
        try:
            store = open_store(p)
            x = store.read_rows(np.arange(len(store)))
        except EcgtoolError:
            return
        # it opened and read: then what it gives is finite, 0/1, and where the signal bytes were untouched, the data
        assert np.isfinite(x).all() and set(np.unique(store.labels)) <= {0, 1}
        assert x.shape[1:] == (len(store.leads), store.n_samples) and store.labels.shape == (len(store), len(store.classes))
        if len(store) == N_RECORDS and not any(a in (_flip_bytes, _set_signal) for a, _ in damage):
            np.testing.assert_array_equal(x, signals)
        if not any(a is _set_label for a, _ in damage) and store.labels.shape == labels.shape:
            np.testing.assert_array_equal(store.labels, labels)
