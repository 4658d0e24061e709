"""The ECG store: the one on-disk format that passes recordings between subcommands.

A store is a Zarr v3 group (see docs/store.md):

    signals     int16|float32|float16 [N, leads, samples]  chunked along N only
    signal_scale float32 [N, leads]                   with int16 signals only: the rows are ``signals * signal_scale``
                                                      (data/quantise.py; error ≤ 1/65534 of each lead's peak)
    labels      uint8 [N, K]                          multi-hot (one-hot when multi-class)
    record_id   str [N]                               the source dataset's record name
    patient_id  str [N]                               drives patient-wise splits
    fold        int8 [N]                              official fold, else 0
    age, sex, … optional per-record arrays (age float32, NaN = unknown; sex str)
    zscore_scale float32 [N, leads, 2]                optional: the (mean, std) in the source's units (mV) that
                                                      a per-record z-score removed from each lead, so that
                                                      ``signals * std + mean`` is the filtered record in mV
                                                      (``to_physical``); NaN = unknown. Written by prep
                                                      --normalise zscore (per beat window in a beat store),
                                                      carried by split and merge like every optional array

and group attributes (``STORE_FORMAT``, ``format_version``, ``fs``, ``leads``,
``units``, ``classes``, ``class_descriptions``, ``task``, ``multi_label``,
``normalisation``, ``patient_ids``, ``provenance``, ``content_hash``,
``complete``).

Format version 2 added int16 signals with ``signal_scale`` (the default of prep since; the size of the raw
int16 data); version 1 stores (float32/float16) read as before.

Writes are all-or-nothing: a ``StoreWriter`` fills a hidden temporary sibling,
writes ``complete: true`` last and renames it into place. ``open_store`` refuses
a missing, incomplete, foreign or newer-format store with one clear sentence.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgtool.data.choices import SIGNAL_DTYPES
from ecgtool.data.quantise import dequantise, quantise
from ecgtool.errors import EcgtoolError, output_error
from ecgtool.outputs import check_new_output, publish, remove, remove_stale_siblings, sibling_of, temporary_sibling

STORE_FORMAT = "ecgtool.ecg-store"
STORE_VERSION = 2
SIGNAL_SCALE = "signal_scale"  # float32 [N, leads] beside int16 signals: the rows are signals * signal_scale
REQUIRED_ARRAYS = ("signals", "labels", "record_id", "patient_id", "fold")
OPTIONAL_ARRAYS = {"age": "float32", "sex": str, "source": str, "beat_sample": "int64", "zscore_scale": "float32"}
ZSCORE_SCALE = "zscore_scale"  # per record and lead: the (mean, std) the per-record z-score removed
# Optional arrays with more than one value per record: their row shape, "leads" standing for the store's lead count.
OPTIONAL_ROW_SHAPES = {ZSCORE_SCALE: ("leads", 2)}
MISSING_VALUE = {"float32": np.nan, "int64": -1}  # what a row without the optional value holds (str: "")
REQUIRED_ATTRS = ("fs", "leads", "units", "classes", "task", "multi_label", "normalisation", "provenance")
# Target size of one signals chunk: whole records, a few MB, so that a loader
# reading a chunk at a time amortises decompression and I/O.
CHUNK_BYTES = 4 << 20
# What a store from a stranger may claim before anything is allocated for it: far
# above any ECG collection, far below what would exhaust a machine's memory.
MAX_RECORDS = 100_000_000
MAX_LEADS = 1024
MAX_CLASSES = 100_000
MAX_RECORD_VALUES = 100_000_000  # leads × samples of one record (over 2 h of 12 leads at 1 kHz)
MAX_CHUNK_BYTES = 1 << 30
MAX_LABEL_VALUES = 1_000_000_000  # records × classes: the labels array is read into memory at open


class StoreError(EcgtoolError):
    """A store that is missing, incomplete, foreign, newer than this tool, or inconsistent."""


def optional_row_shape(name: str, n_leads: int) -> tuple[int, ...]:
    """The shape of one record's value of the optional array ``name`` (``()`` for one value per record)."""
    return tuple(n_leads if d == "leads" else d for d in OPTIONAL_ROW_SHAPES.get(name, ()))


def chunk_records_for(n_leads: int, n_samples: int, itemsize: int) -> int:
    per_record = max(1, n_leads * n_samples * itemsize)
    return int(min(1024, max(1, CHUNK_BYTES // per_record)))


def read_store_attrs(path: str | os.PathLike) -> dict | None:
    """The group attributes of a Zarr v3 group at ``path``, or None if it is not one."""
    meta = Path(path) / "zarr.json"
    try:
        doc = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("node_type") != "group":
        return None
    attrs = doc.get("attributes", {})
    return attrs if isinstance(attrs, dict) else None


@dataclass
class EcgStore:
    """A validated, read-only view of a complete store.

    Small per-record arrays (labels, ids, folds, demographics) are loaded into
    memory at open; ``signals`` stays a lazy Zarr array read chunk by chunk.
    """

    path: Path
    attrs: dict
    signals: "zarr.Array"  # noqa: F821
    labels: np.ndarray
    record_id: np.ndarray
    patient_id: np.ndarray
    fold: np.ndarray
    extras: dict
    scale: np.ndarray | None = None  # ``signal_scale`` of an int16 store (in memory: N × leads float32), else None

    def __len__(self) -> int:
        return int(self.signals.shape[0])

    @property
    def fs(self) -> float:
        return self.attrs["fs"]

    @property
    def leads(self) -> list[str]:
        return list(self.attrs["leads"])

    @property
    def classes(self) -> list[str]:
        return list(self.attrs["classes"])

    @property
    def multi_label(self) -> bool:
        return bool(self.attrs["multi_label"])

    @property
    def n_samples(self) -> int:
        return int(self.signals.shape[2])

    @property
    def chunk_records(self) -> int:
        return int(self.signals.chunks[0])

    def chunk_bounds(self) -> list[tuple[int, int]]:
        c, n = self.chunk_records, len(self)
        return [(s, min(s + c, n)) for s in range(0, n, c)]

    def read_chunk(self, start: int, stop: int) -> np.ndarray:
        """float32 rows ``[start, stop)`` of one signals chunk (``start`` on a chunk boundary): an int16
        store's rows dequantised, a float store's checked finite."""
        chunk = self.read_stored(start, stop)
        if self.scale is not None:
            return dequantise(chunk, self.scale[start:stop])
        chunk = chunk.astype(np.float32, copy=False)
        bad = ~np.isfinite(chunk).all(axis=(1, 2))
        if bad.any():
            row = start + int(np.flatnonzero(bad)[0])
            raise StoreError(f"{self.path}: record {self.record_id[row] if row < len(self.record_id) else row} "
                             f"(row {row}) has NaN or infinite signal values; a store holds finite signals only")
        return chunk

    def stored_rows(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows ``[start, stop)`` of one chunk as a copy into another store takes them: ``(int16 rows, their
        signal_scale)``, kept bit for bit, or ``(float32 rows checked finite, None)``."""
        if self.scale is None:
            return self.read_chunk(start, stop), None
        return self.read_stored(start, stop), self.scale[start:stop]

    def read_stored(self, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
        """Rows ``[start, stop)`` of one signals chunk as stored (int16 or float; with ``self.scale`` they are
        the physical rows), decoded into ``out`` (``[chunk_records, leads, samples]`` of the stored dtype) when
        given: the loader reuses its buffers. A float store's values are not checked here (``read_chunk`` does).

        A store written by ecgtool keeps each chunk as one file of Blosc-framed little-endian bytes; decoding
        that file directly with numcodecs (which releases the GIL) runs about three times faster than Zarr's
        read path on two threads, and is what the loader's epochs spend their time on. Any other layout (a
        remote store, other codecs, a chunk never written) goes through Zarr.
        """
        index = start // self.chunk_records
        where = f"{self.path}: signals chunk {index} (records {start}-{stop - 1})"
        direct = _direct_decoder(self.signals)
        dtype = np.dtype(self.signals.dtype).newbyteorder("<")
        try:
            if direct is not None:
                path = Path(self.path) / "signals" / "c" / str(index) / "0" / "0"
                try:
                    raw = _read_file(path)
                except FileNotFoundError:
                    raise StoreError(f"{where} is missing (the file {path} was deleted?); the store is damaged") from None
                expected = int(np.prod(self.signals.chunks)) * dtype.itemsize
                _check_blosc_frame(raw, expected, where)
                if out is None:
                    out = np.empty(self.signals.chunks, dtype)
                direct.decode(raw, out=out)
                return out[: stop - start]
            if not _chunk_exists(self.signals, (index, 0, 0)):
                raise StoreError(f"{where} is missing; the store is damaged")
            chunk = np.asarray(self.signals[start:stop])
            if out is None:
                return chunk
            out[: stop - start] = chunk
            return out[: stop - start]
        except StoreError:
            raise
        except OSError as e:
            raise StoreError(f"{where} cannot be read ({e.strerror or e})") from e
        except Exception as e:  # a truncated or corrupt chunk: Blosc's RuntimeError, a wrong size's ValueError …
            raise StoreError(f"{where} is corrupt ({type(e).__name__}: {e}); the store is damaged") from e

    def read_rows(self, indices: np.ndarray) -> np.ndarray:
        """Signals of arbitrary rows, read chunk-wise (each touched chunk is decoded once)."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), *self.signals.shape[1:]), dtype=np.float32)
        if len(indices) == 0:
            return out
        c = self.chunk_records
        order = np.argsort(indices, kind="stable")
        sorted_idx = indices[order]
        chunk_of = sorted_idx // c
        for chunk in np.unique(chunk_of):
            sel = chunk_of == chunk
            start = int(chunk) * c
            block = self.read_chunk(start, min(start + c, len(self)))
            out[order[sel]] = block[sorted_idx[sel] - start]
        return out

    def rows(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """float32 rows ``[start, stop)`` (default: all), as every reader sees them."""
        return self.read_rows(np.arange(start, len(self) if stop is None else stop))

    def to_physical(self, rows: np.ndarray, signals: np.ndarray) -> np.ndarray | None:
        """``signals`` (rows ``rows`` of this store, all its leads) in the source's physical units (mV), or None
        where the store cannot give them back: a z-scored store without ``zscore_scale`` (written before it
        existed) or with a row whose scale is unknown (NaN). A store that holds mV (``--normalise dataset`` or
        ``none``; its dataset statistics are applied at load time only) returns the signals as they are."""
        signals = np.asarray(signals, dtype=np.float32)
        if self.attrs.get("units") == "mV":
            return signals
        scale = self.extras.get(ZSCORE_SCALE)
        if scale is None:
            return None
        scale = scale[np.asarray(rows, dtype=np.int64)]
        if not np.isfinite(scale).all():
            return None
        return signals * scale[..., 1:2] + scale[..., 0:1]

    def class_counts(self) -> dict[str, int]:
        return {c: int(n) for c, n in zip(self.classes, self.labels.sum(axis=0))}

    def summary(self) -> dict:
        folds, fold_counts = np.unique(self.fold, return_counts=True)
        return {
            "path": str(self.path),
            "kind": "store",
            "format": STORE_FORMAT,
            "format_version": self.attrs["format_version"],
            "records": len(self),
            "patients": int(len(np.unique(self.patient_id))),
            "shape": list(self.signals.shape),
            "dtype": str(self.signals.dtype),
            "signal_scale": self.scale is not None,
            "chunk_records": self.chunk_records,
            "fs": self.fs,
            "leads": self.leads,
            "units": self.attrs["units"],
            "task": self.attrs["task"],
            "multi_label": self.multi_label,
            "classes": self.classes,
            "class_descriptions": self.attrs.get("class_descriptions", {}),
            "class_counts": self.class_counts(),
            "folds": {int(f): int(n) for f, n in zip(folds, fold_counts)},
            "patient_ids": self.attrs.get("patient_ids", "dataset"),
            "normalisation": self.attrs["normalisation"],
            "preprocessing": self.attrs.get("preprocessing"),
            "reading": self.attrs.get("reading"),  # absent (None) in stores written before it was recorded
            "optional_arrays": sorted(self.extras),
            "content_hash": self.attrs.get("content_hash"),
            "provenance": self.attrs["provenance"],
        }


def qualified_ids(store: EcgStore, ids) -> np.ndarray:
    """Per-record ``ids`` (record or patient ids, one per row of ``store``) qualified by dataset: ``DATASET/ID``, or
    ``DATASET/SOURCE/ID`` where the store has a per-record ``source`` (a collection pooled from several sources), so
    that the same id in two datasets (patient 17 of PTB-XL, of CPSC2018) stays two ids across datasets and stores."""
    dataset = str(store.attrs.get("dataset") or "unknown")
    ids = np.asarray(ids, dtype=str)
    source = store.extras.get("source")
    if source is not None:
        source = np.asarray(source, dtype=str)
        ids = np.where(source != "", np.char.add(np.char.add(source, "/"), ids), ids)
    return np.char.add(dataset + "/", ids)


_READ_BUFFERS = threading.local()  # per thread: one buffer the chunk files are read into, grown as needed


def _read_file(path: Path) -> memoryview:
    """The bytes of ``path``, read into this thread's reusable buffer (valid until its next call): a fresh
    bytes object per chunk would cost the kernel's zeroing of new pages on every read."""
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        buffer = getattr(_READ_BUFFERS, "buffer", None)
        if buffer is None or len(buffer) < size:
            buffer = _READ_BUFFERS.buffer = bytearray(size)
        view = memoryview(buffer)[:size]
        got = f.readinto(view)
        return view[:got]


def _check_blosc_frame(raw: bytes, expected: int, where: str) -> None:
    """A Blosc frame's 16-byte header states its decoded size and its own length: a truncated or foreign
    file is refused before decoding (numcodecs decodes a bare header into uninitialised memory)."""
    if len(raw) < 16:
        raise StoreError(f"{where} is corrupt (a {len(raw)}-byte file, shorter than a Blosc header); the store is damaged")
    nbytes, cbytes = int.from_bytes(raw[4:8], "little"), int.from_bytes(raw[12:16], "little")
    if cbytes != len(raw) or nbytes != expected:
        raise StoreError(f"{where} is corrupt (truncated or not a Blosc frame of the chunk: {len(raw)} bytes on disk, "
                         f"header says {cbytes} bytes decoding to {nbytes}, the chunk needs {expected}); the store is damaged")


def _direct_decoder(signals):
    """A numcodecs Blosc decoder when ``signals`` is exactly ``bytes(little) → blosc`` on a local
    directory with default "/" chunk keys (what StoreWriter writes), else None."""
    meta = signals.metadata
    codecs = [c.to_dict() for c in getattr(meta, "codecs", ())]
    key = getattr(meta, "chunk_key_encoding", None)
    local = type(signals.store).__name__ == "LocalStore"
    if not (local and len(codecs) == 2 and codecs[0].get("name") == "bytes" and codecs[1].get("name") == "blosc"
            and codecs[0].get("configuration", {}).get("endian", "little") == "little"
            and getattr(key, "separator", None) == "/" and type(key).__name__ == "DefaultChunkKeyEncoding"):
        return None
    from numcodecs import Blosc

    return Blosc()  # Blosc frames carry their own codec, level, shuffle and type size


def _chunk_exists(signals, coords: tuple[int, ...]) -> bool:
    """Whether the chunk at ``coords`` of a Zarr array was ever written (Zarr reads a missing one as its fill value)."""
    from zarr.core.sync import sync

    key = signals.metadata.encode_chunk_key(coords)
    return bool(sync(signals.store_path.store.exists(f"{signals.store_path.path}/{key}".lstrip("/"))))


def _check_sizes(p: Path, signals, n_classes: int) -> None:
    """Refuse shapes no ECG store has before anything is allocated for them (a stranger's store may claim anything)."""
    n, n_leads, n_samples = signals.shape
    c = signals.chunks[0]
    limits = [
        (n, MAX_RECORDS, "records"), (n_leads, MAX_LEADS, "leads"), (n_classes, MAX_CLASSES, "classes"),
        (n * n_classes, MAX_LABEL_VALUES, "label values (records × classes)"),
        (n_leads * n_samples, MAX_RECORD_VALUES, "values per record (leads × samples)"),
        (c * n_leads * n_samples * signals.dtype.itemsize, MAX_CHUNK_BYTES, "bytes per signals chunk"),
    ]
    for value, limit, what in limits:
        if value > limit:
            raise StoreError(f"{p}: claims {value} {what}, more than the {limit} ecgtool accepts; the store is damaged or not an ECG store")


def _check_chunks(p: Path, signals) -> None:
    """Every signals chunk of a store in ecgtool's own layout is present (a deleted one would read as zeros)."""
    if _direct_decoder(signals) is None or signals.shape[0] == 0:
        return
    n_chunks = -(-signals.shape[0] // signals.chunks[0])
    for index in range(n_chunks):
        if not (p / "signals" / "c" / str(index) / "0" / "0").is_file():
            c = signals.chunks[0]
            raise StoreError(f"{p}: signals chunk {index} (records {index * c}-{min((index + 1) * c, signals.shape[0]) - 1}) "
                             "is missing; the store is damaged")


def open_store(path: str | os.PathLike) -> EcgStore:
    """Open and validate a complete ECG store; raise ``StoreError`` naming the problem."""
    p = Path(path)
    if not p.exists():
        raise StoreError(f"{p}: no such store")
    real = sibling_of(p)
    if real is not None:
        raise StoreError(f"{p} is the temporary copy of a write to {p.with_name(real)} that was interrupted or is still "
                         "running, not a store; use the output itself (the next run that writes it removes this copy)")
    attrs = read_store_attrs(p)
    if attrs is None:
        raise StoreError(f"{p} is not an ECG store (no Zarr v3 group metadata)")
    if attrs.get("format") != STORE_FORMAT:
        raise StoreError(f"{p} is a Zarr group but not an ecgtool ECG store (format {attrs.get('format')!r})")
    version = attrs.get("format_version")
    if not isinstance(version, int) or version > STORE_VERSION:
        raise StoreError(
            f"{p} has store format version {version}, newer than this ecgtool understands "
            f"({STORE_VERSION}); upgrade ecgtool"
        )
    if attrs.get("complete") is not True:
        raise StoreError(f"{p} is incomplete (its writer did not finish); delete it and rerun the command")
    missing = [a for a in REQUIRED_ATTRS if a not in attrs]
    if missing:
        raise StoreError(f"{p} lacks the attribute(s) {', '.join(missing)}")
    try:
        return _open_arrays(p, dict(attrs))
    except StoreError:
        raise
    except Exception as e:  # Zarr's own refusal of damaged array metadata, in whatever type it raises
        raise StoreError(f"{p}: unreadable Zarr array metadata or data ({type(e).__name__}: {e})") from e


def _open_arrays(p: Path, attrs: dict) -> EcgStore:
    import zarr

    group = zarr.open_group(p, mode="r")
    present = set(group.array_keys())
    missing = [a for a in REQUIRED_ARRAYS if a not in present]
    if missing:
        raise StoreError(f"{p} lacks the array(s) {', '.join(missing)}")
    signals = group["signals"]
    if signals.ndim != 3 or str(signals.dtype) not in SIGNAL_DTYPES:
        raise StoreError(f"{p}: signals must be {'/'.join(SIGNAL_DTYPES)} [N, leads, samples], found {signals.dtype} {signals.shape}")
    n, n_leads, _ = signals.shape
    if signals.chunks[1:] != signals.shape[1:]:
        raise StoreError(f"{p}: signals must be chunked along records only, found chunks {signals.chunks}")
    if not isinstance(attrs["leads"], list) or not isinstance(attrs["classes"], list):
        raise StoreError(f"{p}: the attributes leads and classes must be lists of names")
    if len(attrs["leads"]) != n_leads:
        raise StoreError(f"{p}: {n_leads} leads in signals but {len(attrs['leads'])} lead names in attrs")
    fs = attrs["fs"]
    if isinstance(fs, bool) or not isinstance(fs, (int, float)) or not 0 < fs < 1e6:
        raise StoreError(f"{p}: the sampling rate fs must be a positive number of Hz, found {fs!r}")
    n_classes = len(attrs["classes"])
    _check_sizes(p, signals, n_classes)
    # Every per-record array must have one row per record before any is read into memory.
    for k in sorted(present - {"signals"}):
        rows = group[k].shape[:1]
        if rows != (n,):
            what = "array" if k in REQUIRED_ARRAYS else "optional array"
            raise StoreError(f"{p}: {what} {k} has {rows[0] if rows else 0} rows but signals has {n} records; "
                             "the store is inconsistent (damaged or edited by hand)")
    _check_chunks(p, signals)
    labels_array = group["labels"]
    if labels_array.shape != (n, n_classes):
        raise StoreError(f"{p}: labels shape {labels_array.shape} does not match {n} records × {n_classes} classes")
    if labels_array.dtype.kind not in "biu":
        raise StoreError(f"{p}: labels must be integers 0 or 1 (multi-hot), found dtype {labels_array.dtype}")
    labels = np.asarray(labels_array[:])
    bad = (labels != 0) & (labels != 1)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise StoreError(f"{p}: labels must be 0 or 1 (multi-hot), found {labels[row, col]} at record {row}, "
                         f"class {attrs['classes'][col]}")
    arrays = {k: np.asarray(group[k][:]) for k in ("record_id", "patient_id", "fold")}
    for k, a in arrays.items():
        if a.shape != (n,):
            raise StoreError(f"{p}: {k} has shape {a.shape}, expected ({n},)")
    for k in sorted(present & set(OPTIONAL_ROW_SHAPES)):
        want = (n, *optional_row_shape(k, n_leads))
        if group[k].shape != want or group[k].dtype.kind != "f":
            raise StoreError(f"{p}: optional array {k} must be float {list(want)}, found {group[k].dtype} {list(group[k].shape)}; "
                             "the store is inconsistent (damaged or edited by hand)")
    record_id = _as_str(arrays["record_id"])
    scale = _read_scale(p, group, signals, present, record_id)
    extras = {k: np.asarray(group[k][:]) for k in sorted(present - set(REQUIRED_ARRAYS) - {SIGNAL_SCALE})}
    extras = {k: _as_str(a) if a.dtype.kind == "T" else a for k, a in extras.items()}
    return EcgStore(
        path=p,
        attrs=dict(attrs),
        signals=signals,
        labels=labels,
        record_id=record_id,
        patient_id=_as_str(arrays["patient_id"]),
        fold=arrays["fold"].astype(np.int8),
        extras=extras,
        scale=scale,
    )


def _read_scale(p: Path, group, signals, present: set, record_id: np.ndarray) -> np.ndarray | None:
    """The ``signal_scale`` of int16 signals (positive and finite, one per record and lead), or None for float."""
    if signals.dtype != np.int16:
        if SIGNAL_SCALE in present:
            raise StoreError(f"{p}: has {SIGNAL_SCALE} but {signals.dtype} signals (a scale goes with int16 signals only); "
                             "the store is inconsistent")
        return None
    if SIGNAL_SCALE not in present:
        raise StoreError(f"{p}: int16 signals without the array {SIGNAL_SCALE} that scales them; the store is damaged")
    want = signals.shape[:2]
    array = group[SIGNAL_SCALE]
    if array.shape != want or array.dtype != np.float32:
        raise StoreError(f"{p}: {SIGNAL_SCALE} must be float32 {list(want)}, found {array.dtype} {list(array.shape)}; "
                         "the store is damaged")
    scale = np.asarray(array[:])
    bad = ~(np.isfinite(scale) & (scale > 0))
    if bad.any():
        row, lead = np.argwhere(bad)[0]
        value = "NaN" if np.isnan(scale[row, lead]) else f"{scale[row, lead]:g}"
        raise StoreError(f"{p}: record {record_id[row]} (row {row}) has the {SIGNAL_SCALE} {value} for lead {lead}, not a "
                         "positive number; the store is damaged")
    return scale


def _as_str(a: np.ndarray) -> np.ndarray:
    """Zarr returns numpy's variable-width StringDType; the rest of ecgtool uses plain str arrays."""
    return np.array(a.tolist(), dtype=str) if len(a) else np.zeros(0, dtype=str)


def _hashable_bytes(data: np.ndarray) -> bytes:
    if data.dtype.kind in "UT":  # strings: hash their text, not numpy's padded layout
        return ("\0".join(data.tolist()) + "\0").encode()
    return np.ascontiguousarray(data).tobytes()


class StoreWriter:
    """Streams records into a new store, all-or-nothing.

    Usage::

        with StoreWriter(path, n_leads=12, n_samples=1000, attrs=meta, overwrite=False) as w:
            w.append(signals, labels, record_id, patient_id, fold, age=..., sex=...)

    float rows given to an int16 store are quantised (``data/quantise.py``); rows already quantised (another
    store's, copied by split or merge) come as int16 with their ``signal_scale`` and are kept as they are.
    Records are buffered to whole chunks before they reach Zarr, so memory stays at
    one chunk whatever the dataset size. On an exception the temporary store is
    removed and nothing appears at ``path``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        n_leads: int,
        n_samples: int,
        attrs: dict,
        dtype: str = "int16",
        optional: tuple[str, ...] = (),
        overwrite: bool = False,
        chunk_records: int | None = None,
        inputs: tuple = (),
    ):
        """``inputs``: what the store is made from; the store may be none of them, nor inside or contain one."""
        if dtype not in SIGNAL_DTYPES:
            raise EcgtoolError(f"signal dtype must be one of {', '.join(SIGNAL_DTYPES)}, not {dtype}")
        unknown = [o for o in optional if o not in OPTIONAL_ARRAYS]
        if unknown:
            raise EcgtoolError(f"unknown optional store array(s): {', '.join(unknown)}")
        missing = [a for a in REQUIRED_ATTRS if a not in attrs and a != "provenance"]
        if missing:
            raise EcgtoolError(f"store attributes lack {', '.join(missing)}")
        if len(attrs["leads"]) != n_leads:
            raise EcgtoolError(f"{n_leads} leads but {len(attrs['leads'])} lead names")
        self.path = Path(path)
        self.n_leads, self.n_samples, self.dtype = n_leads, n_samples, np.dtype(dtype)
        self.n_classes = len(attrs["classes"])
        self.attrs = {"provenance": [], **attrs}
        self.optional = tuple(optional)
        self.overwrite = overwrite
        self.inputs = tuple(inputs)
        self.chunk = chunk_records or chunk_records_for(n_leads, n_samples, self.dtype.itemsize)
        self.count = 0
        self._buffer: list[dict] = []
        self._buffered = 0
        # One running hash per array, combined at the end, so the content hash does
        # not depend on how records were batched or chunked.
        self.hashed = REQUIRED_ARRAYS + ((SIGNAL_SCALE,) if self.dtype == np.int16 else ())
        self._hashes = {name: hashlib.blake2b(digest_size=16) for name in self.hashed}

    # -- context management -------------------------------------------------------------
    def __enter__(self) -> "StoreWriter":
        check_new_output(self.path, self.overwrite, self.inputs)
        self.tmp = temporary_sibling(self.path)
        try:
            remove_stale_siblings(self.path)  # in the try: on a read-only file system these fail too (EROFS)
            remove(self.tmp)
            return self._create()
        except OSError as e:  # a full disk, a quota, permissions: one sentence naming the output
            remove(self.tmp)
            raise output_error(self.path, e) from e

    def _create(self) -> "StoreWriter":
        import zarr
        from zarr.codecs import BloscCodec

        self.group = zarr.open_group(self.tmp, mode="w", zarr_format=3)
        # Attributes go in first with complete=False, so a crash leaves a store
        # that every reader recognises as incomplete.
        self.group.attrs.update({**self._base_attrs(), "complete": False})
        # Blosc/LZ4 with byte shuffle, chosen by benchmarks/store_codecs.py on a real PTB record (RESULTS.md):
        # int16 rows + LZ4 are 0.86-0.96x the raw WFDB data in every prep case (padded records included), and
        # zstd, 4-15% smaller, decodes at a third to a half of LZ4's speed, which the first epoch is bound by.
        compressor = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
        c = self.chunk
        self.arrays = {
            "signals": self.group.create_array(
                "signals", shape=(0, self.n_leads, self.n_samples), chunks=(c, self.n_leads, self.n_samples),
                dtype=self.dtype, compressors=compressor,
            ),
            "labels": self.group.create_array("labels", shape=(0, self.n_classes), chunks=(4096, max(1, self.n_classes)), dtype="uint8"),
            "record_id": self.group.create_array("record_id", shape=(0,), chunks=(4096,), dtype=str),
            "patient_id": self.group.create_array("patient_id", shape=(0,), chunks=(4096,), dtype=str),
            "fold": self.group.create_array("fold", shape=(0,), chunks=(4096,), dtype="int8"),
        }
        if self.dtype == np.int16:
            self.arrays[SIGNAL_SCALE] = self.group.create_array(
                SIGNAL_SCALE, shape=(0, self.n_leads), chunks=(4096, self.n_leads), dtype="float32")
        for name in self.optional:
            dt, row = OPTIONAL_ARRAYS[name], optional_row_shape(name, self.n_leads)
            self.arrays[name] = self.group.create_array(name, shape=(0, *row), chunks=(4096, *row), dtype=dt)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            remove(self.tmp)
            return
        try:
            self._flush(final=True)
            self.group.attrs.update({**self._base_attrs(), "content_hash": self.content_hash(), "complete": True})
            publish(self.tmp, self.path, self.overwrite)
        except OSError as e:
            remove(self.tmp)
            raise output_error(self.path, e) from e
        except BaseException:
            remove(self.tmp)
            raise

    def _base_attrs(self) -> dict:
        return {"format": STORE_FORMAT, "format_version": STORE_VERSION, **self.attrs}

    def content_hash(self) -> str:
        combined = hashlib.blake2b(digest_size=16)
        for name in self.hashed:
            combined.update(self._hashes[name].digest())
        return combined.hexdigest()

    # -- writing ------------------------------------------------------------------------
    @property
    def n_records(self) -> int:
        """Records appended so far (written or still buffered)."""
        return self.count + self._buffered

    def append(self, signals, labels, record_id, patient_id, fold=None, signal_scale=None, **optional) -> None:
        """Append a batch of records (signals ``[n, leads, samples]``; int16 with their ``signal_scale``
        ``[n, leads]`` when they are another int16 store's rows, as stored)."""
        signals = np.asarray(signals)
        n = signals.shape[0]
        if signals.shape[1:] != (self.n_leads, self.n_samples):
            raise EcgtoolError(
                f"records of shape {signals.shape[1:]} do not fit a store of {self.n_leads} leads × {self.n_samples} samples"
            )
        labels = np.asarray(labels, dtype=np.uint8).reshape(n, self.n_classes)
        if signal_scale is not None:
            if self.dtype != np.int16 or signals.dtype != np.int16:
                raise EcgtoolError(f"a signal scale goes with int16 rows for an int16 store, not {signals.dtype} rows "
                                   f"for a {self.dtype} store")
            scaled = {"signals": signals, SIGNAL_SCALE: np.asarray(signal_scale, np.float32).reshape(n, self.n_leads)}
        elif self.dtype == np.int16:
            q, scale = quantise(signals)
            scaled = {"signals": q, SIGNAL_SCALE: scale}
        else:
            scaled = {"signals": signals.astype(self.dtype, copy=False)}
        batch = {
            **scaled,
            "labels": labels,
            "record_id": np.asarray(record_id, dtype=str).reshape(n),
            "patient_id": np.asarray(patient_id, dtype=str).reshape(n),
            "fold": np.zeros(n, np.int8) if fold is None else np.asarray(fold, dtype=np.int8).reshape(n),
        }
        for name in self.optional:
            value, row = optional.get(name), optional_row_shape(name, self.n_leads)
            if value is None:
                value = np.full((n, *row), MISSING_VALUE.get(OPTIONAL_ARRAYS[name], ""))
            batch[name] = np.asarray(value, dtype=OPTIONAL_ARRAYS[name]).reshape(n, *row)
        extra = set(optional) - set(self.optional)
        if extra:
            raise EcgtoolError(f"optional array(s) {', '.join(sorted(extra))} were not declared for this store")
        self._buffer.append(batch)
        self._buffered += n
        if self._buffered >= self.chunk:
            try:
                self._flush()
            except OSError as e:  # the caller's with-block ends in __exit__, which removes the temporary store
                raise output_error(self.path, e) from e

    def _flush(self, final: bool = False) -> None:
        if not self._buffer:
            return
        merged = {k: np.concatenate([b[k] for b in self._buffer]) for k in self._buffer[0]}
        n_total = len(merged["signals"])
        # Write whole chunks only (the rest waits in the buffer) so each chunk is encoded once.
        n_write = n_total if final else (n_total // self.chunk) * self.chunk
        if n_write == 0:
            return
        start, stop = self.count, self.count + n_write
        for name, arr in self.arrays.items():
            arr.resize((stop, *arr.shape[1:]))
            arr[start:stop] = merged[name][:n_write]
        for name in self.hashed:
            self._hashes[name].update(_hashable_bytes(merged[name][:n_write]))
        self.count = stop
        rest = {k: v[n_write:] for k, v in merged.items()}
        self._buffer = [rest] if n_write < n_total else []
        self._buffered = n_total - n_write
