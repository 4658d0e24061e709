"""The ECG store: the one on-disk format that passes recordings between subcommands.

A store is a Zarr v3 group (see docs/store.md):

    signals     float32|float16 [N, leads, samples]  chunked along N only
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

Writes are all-or-nothing: a ``StoreWriter`` fills a hidden temporary sibling,
writes ``complete: true`` last and renames it into place. ``open_store`` refuses
a missing, incomplete, foreign or newer-format store with one clear sentence.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgtool.data.choices import SIGNAL_DTYPES
from ecgtool.errors import EcgtoolError, output_error
from ecgtool.outputs import check_new_output, publish, remove, remove_stale_siblings, sibling_of, temporary_sibling

STORE_FORMAT = "ecgtool.ecg-store"
STORE_VERSION = 1
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
        """Rows ``[start, stop)`` of one signals chunk (``start`` on a chunk boundary).

        A store written by ecgtool keeps each chunk as one file of Blosc-compressed
        little-endian bytes; decoding that file directly with numcodecs (which
        releases the GIL) runs about three times faster than Zarr's read path on two
        threads, and is what the loader's epochs spend their time on. Any other
        layout (a remote store, other codecs, a chunk never written) goes through Zarr.
        """
        index = start // self.chunk_records
        where = f"{self.path}: signals chunk {index} (records {start}-{stop - 1})"
        direct = _direct_decoder(self.signals)
        try:
            if direct is not None:
                path = Path(self.path) / "signals" / "c" / str(index) / "0" / "0"
                try:
                    raw = path.read_bytes()
                except FileNotFoundError:
                    raise StoreError(f"{where} is missing (the file {path} was deleted?); the store is damaged") from None
                expected = int(np.prod(self.signals.chunks)) * self.signals.dtype.itemsize
                _check_blosc_frame(raw, expected, where)
                decoded = direct.decode(raw)
                if len(decoded) != expected:
                    raise StoreError(f"{where} is corrupt (it decodes to {len(decoded)} bytes, not {expected}); the store is damaged")
                chunk = np.frombuffer(decoded, dtype=self.signals.dtype.newbyteorder("<"))
                chunk = chunk.reshape(self.signals.chunks)[: stop - start]
            else:
                if not _chunk_exists(self.signals, (index, 0, 0)):
                    raise StoreError(f"{where} is missing; the store is damaged")
                chunk = np.asarray(self.signals[start:stop])
        except StoreError:
            raise
        except OSError as e:
            raise StoreError(f"{where} cannot be read ({e.strerror or e})") from e
        except Exception as e:  # a truncated or corrupt chunk: Blosc's RuntimeError, a wrong size's ValueError …
            raise StoreError(f"{where} is corrupt ({type(e).__name__}: {e}); the store is damaged") from e
        bad = ~np.isfinite(chunk).all(axis=(1, 2))
        if bad.any():
            row = start + int(np.flatnonzero(bad)[0])
            raise StoreError(f"{self.path}: record {self.record_id[row] if row < len(self.record_id) else row} "
                             f"(row {row}) has NaN or infinite signal values; a store holds finite signals only")
        return chunk

    def read_rows(self, indices: np.ndarray) -> np.ndarray:
        """Signals of arbitrary rows, read chunk-wise (each touched chunk is decoded once)."""
        indices = np.asarray(indices, dtype=np.int64)
        out = np.empty((len(indices), *self.signals.shape[1:]), dtype=self.signals.dtype)
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
        raise StoreError(f"{p}: signals must be float32/float16 [N, leads, samples], found {signals.dtype} {signals.shape}")
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
    extras = {k: np.asarray(group[k][:]) for k in sorted(present - set(REQUIRED_ARRAYS))}
    extras = {k: _as_str(a) if a.dtype.kind == "T" else a for k, a in extras.items()}
    return EcgStore(
        path=p,
        attrs=dict(attrs),
        signals=signals,
        labels=labels,
        record_id=_as_str(arrays["record_id"]),
        patient_id=_as_str(arrays["patient_id"]),
        fold=arrays["fold"].astype(np.int8),
        extras=extras,
    )


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
        dtype: str = "float32",
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
        self._hashes = {name: hashlib.blake2b(digest_size=16) for name in REQUIRED_ARRAYS}

    # -- context management -------------------------------------------------------------
    def __enter__(self) -> "StoreWriter":
        check_new_output(self.path, self.overwrite, self.inputs)
        remove_stale_siblings(self.path)
        self.tmp = temporary_sibling(self.path)
        remove(self.tmp)
        try:
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
        # Blosc/zstd with byte shuffle: ~2-3x on ECG at decode speeds of GB/s.
        compressor = BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")
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
        for name in REQUIRED_ARRAYS:
            combined.update(self._hashes[name].digest())
        return combined.hexdigest()

    # -- writing ------------------------------------------------------------------------
    @property
    def n_records(self) -> int:
        """Records appended so far (written or still buffered)."""
        return self.count + self._buffered

    def append(self, signals, labels, record_id, patient_id, fold=None, **optional) -> None:
        """Append a batch of records (signals ``[n, leads, samples]``)."""
        signals = np.asarray(signals)
        n = signals.shape[0]
        if signals.shape[1:] != (self.n_leads, self.n_samples):
            raise EcgtoolError(
                f"records of shape {signals.shape[1:]} do not fit a store of {self.n_leads} leads × {self.n_samples} samples"
            )
        labels = np.asarray(labels, dtype=np.uint8).reshape(n, self.n_classes)
        batch = {
            "signals": signals.astype(self.dtype, copy=False),
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
        for name in REQUIRED_ARRAYS:
            self._hashes[name].update(_hashable_bytes(merged[name][:n_write]))
        self.count = stop
        rest = {k: v[n_write:] for k, v in merged.items()}
        self._buffer = [rest] if n_write < n_total else []
        self._buffered = n_total - n_write
