"""A generic reader for any directory of WFDB records.

Labels come from, in order of precedence:

1. a label CSV (``--labels FILE``, or ``labels.csv`` in the directory as the
   built-in synthetic dataset writes it) with columns ``record_id`` and
   ``labels`` (class names joined by ``;``), optionally ``patient_id``, ``age``,
   ``sex``, ``fold``;
2. ``#Dx:`` header comments (PhysioNet/CinC 2020 style SNOMED CT codes), mapped
   to class names by ``classes.csv`` (columns ``class``, ``snomed``) when the
   directory has one, else kept as the codes themselves.

``#Age:``, ``#Sex:`` and ``#Patient:`` header comments fill the demographics
and patient id when the CSV does not. Without any patient id, every record is
its own patient, and the store says so.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np

from ecgtool.data.readers.base import MAX_FOLD, DatasetReader, RawRecord, open_text, table_number, unique_rows
from ecgtool.errors import EcgtoolError

# wfdb 4.3 uses pandas APIs that pandas 3 deprecates; the warning is noise to a user.
warnings.filterwarnings("ignore", message="The inplace keyword", module="wfdb")

STANDARD_LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
_CANONICAL = {name.upper(): name for name in STANDARD_LEADS}
# Physical units wfdb headers use for ECG, as a factor to millivolts.
UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "μv": 1e-3, "µv": 1e-3, "v": 1e3, "nu": 1.0, "": 1.0}


# What a header from a stranger may claim before wfdb allocates for it: samples of all
# signals together (wfdb holds each as int64 and float64: 16 bytes a value), signals.
MAX_RECORD_VALUES = 500_000_000  # 24 h of 12 leads at 500 Hz is 518 M: split such a Holter record first
MAX_SIGNALS = 1024
MAX_FS = 1e6
# Bytes per sample of the uncompressed WFDB storage formats (the signal file must hold what the header claims).
FORMAT_BYTES = {"8": 1, "16": 2, "24": 3, "32": 4, "61": 2, "80": 1, "160": 2, "212": 1.5, "310": 4 / 3, "311": 4 / 3}


_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+\.?[0-9]*|\.[0-9]+")
_NUMBER = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")  # a gain, as wfdb writes any float


def check_header(path: str | Path, name: str | None = None) -> None:
    """Refuse a WFDB header whose record line is not what it claims to be, before wfdb reads it.

    wfdb takes a non-numeric sampling rate as its default of 250 Hz and allocates whatever
    number of samples a header claims; this checks the record line (signals, sampling rate,
    samples per signal) and that each signal file holds the samples the header promises.
    ``path`` is the record's path without ``.hea``; errors name ``name`` (default: the path).
    """
    path = Path(path)
    hea = path.with_name(path.name + ".hea")
    name = name or str(path)
    try:
        text = hea.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise EcgtoolError(f"{name}: unreadable WFDB header {hea} ({e.strerror or e})") from e
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        raise EcgtoolError(f"{name}: the WFDB header {hea.name} has no record line")
    tokens = lines[0].split()
    if len(tokens) < 2:
        raise EcgtoolError(f"{name}: the WFDB header's record line {lines[0]!r} lacks the number of signals")
    record, n_sig = tokens[0], tokens[1]
    if not _WHOLE.fullmatch(n_sig) or int(n_sig) > MAX_SIGNALS:
        raise EcgtoolError(f"{name}: the WFDB header gives {n_sig!r} signals, not a whole number up to {MAX_SIGNALS}")
    n_sig = int(n_sig)
    if len(tokens) > 2:
        fs_text = tokens[2].split("/", 1)[0]
        fs = float(fs_text) if _DECIMAL.fullmatch(fs_text) else math.nan  # the form wfdb parses: no sign, no exponent
        if not (math.isfinite(fs) and 0 < fs <= MAX_FS):
            raise EcgtoolError(f"{name}: the WFDB header gives the sampling rate {tokens[2]!r}, not a positive number of Hz")
    sig_len = None
    if len(tokens) > 3:
        if not _WHOLE.fullmatch(tokens[3]):
            raise EcgtoolError(f"{name}: the WFDB header gives {tokens[3]!r} samples per signal, not a whole number")
        sig_len = int(tokens[3])
        if sig_len * max(n_sig, 1) > MAX_RECORD_VALUES:
            raise EcgtoolError(f"{name}: the WFDB header claims {sig_len} samples of {n_sig} signals, more than the "
                               f"{MAX_RECORD_VALUES} values ecgtool reads from one record")
    if "/" in record or sig_len is None:
        return  # a multi-segment record's segments are checked when read; no length: nothing to compare
    if len(lines) - 1 < n_sig:
        raise EcgtoolError(f"{name}: the WFDB header declares {n_sig} signals but describes {len(lines) - 1}")
    per_file: dict[str, float] = {}
    signals_in: dict[str, int] = {}
    offsets: dict[str, int] = {}
    for line in lines[1 : 1 + n_sig]:
        parts = line.split()
        file = Path(parts[0])
        if file.is_absolute() or ".." in file.parts:  # a header may not point wfdb at files outside its dataset
            raise EcgtoolError(f"{name}: the WFDB header names the signal file {parts[0]!r}, outside the record's directory")
        if len(parts) > 2:  # the ADC gain: wfdb takes anything unparsable as its default of 200 per physical unit
            gain = re.split(r"[(/]", parts[2], maxsplit=1)[0]
            if gain and not (_NUMBER.fullmatch(gain) and math.isfinite(float(gain))):
                raise EcgtoolError(f"{name}: the WFDB header gives the gain {parts[2]!r} for signal {parts[0]}, not a number")
        fmt_field = parts[1] if len(parts) > 1 else ""
        fmt = fmt_field.split("x")[0].split(":")[0].split("+")[0]
        if fmt not in FORMAT_BYTES:
            return  # compressed or unusual formats: wfdb decides
        offset = fmt_field.split("+", 1)[1] if "+" in fmt_field else "0"  # bytes before the samples (a .mat header)
        if not _WHOLE.fullmatch(offset):
            raise EcgtoolError(f"{name}: the WFDB header gives the format {fmt_field!r} for signal {parts[0]}, not FORMAT[+OFFSET]")
        offsets[parts[0]] = int(offset)
        per_file[parts[0]] = per_file.get(parts[0], 0.0) + FORMAT_BYTES[fmt]
        signals_in[parts[0]] = signals_in.get(parts[0], 0) + 1
    for file, width in per_file.items():
        dat = path.parent / file
        try:
            size = dat.stat().st_size
        except OSError:
            continue  # a missing signal file is wfdb's to report
        if file.lower().endswith(".mat"):
            _check_mat(dat, name, signals_in[file], sig_len)
        needed = math.floor(sig_len * width) + offsets[file]
        if size < needed:
            raise EcgtoolError(f"{name}: the WFDB header claims {sig_len} samples per signal but {file} holds "
                               f"{size} bytes, {needed} needed (a truncated file or a wrong header)")
        # A whole frame more than the header's samples (a partial one is format padding; a MATLAB file may be
        # padded to its block size, and _check_mat compared its matrix with the header already).
        if size >= needed + math.ceil(width) and not file.lower().endswith(".mat"):
            raise EcgtoolError(f"{name}: {file} holds {size} bytes, more than the {needed} of the {sig_len} samples per "
                               "signal its header claims (a wrong header, or two recordings in one file)")


def _check_mat(dat: Path, name: str, n_sig: int, sig_len: int) -> None:
    """A WFDB signal file in MATLAB v4 form (PhysioNet/CinC 2020-21) holds one matrix named ``val`` of
    signals × samples: wfdb reads it blindly at a byte offset, so any other content would become numbers."""
    import struct

    with open(dat, "rb") as f:
        head = f.read(4096)
    if head.startswith(b"MATLAB 5.0"):
        if b"val" not in head:
            raise EcgtoolError(f"{name}: {dat.name} holds no MATLAB variable val (the signals of a WFDB .mat record)")
        return
    if len(head) < 20:
        raise EcgtoolError(f"{name}: {dat.name} is not a MATLAB file with the record's signals ({len(head)} bytes)")
    kind, rows, cols, imag, namelen = struct.unpack("<5i", head[:20])
    if kind >= 1000 or not 0 < namelen <= 64:
        raise EcgtoolError(f"{name}: {dat.name} is not a little-endian MATLAB v4 file holding the record's signals")
    variable = head[20 : 20 + namelen].rstrip(b"\0").decode("latin-1")
    if variable != "val":
        raise EcgtoolError(f"{name}: {dat.name} holds the MATLAB variable {variable!r}, not val (the record's signals)")
    if rows * cols != n_sig * sig_len:
        raise EcgtoolError(f"{name}: {dat.name} holds a {rows}×{cols} matrix val, the header {n_sig} signals × {sig_len} samples")


def read_wfdb(path: str | Path, name: str | None = None):
    """``wfdb.rdrecord`` of a header that passed ``check_header``; any failure is one ``EcgtoolError`` naming ``name``.

    Samples WFDB marks invalid (−32768 in format 16) arrive as NaN; prep refuses such records.
    """
    import wfdb

    check_header(path, name)
    try:
        return wfdb.rdrecord(str(path))
    except Exception as e:  # wfdb raises many types for a bad record
        raise EcgtoolError(f"{name or path}: unreadable WFDB record ({type(e).__name__}: {e})") from e


def read_header(path: str | Path, name: str | None = None):
    """``wfdb.rdheader`` of a header that passed ``check_header`` (its length without reading the samples)."""
    import wfdb

    check_header(path, name)
    try:
        return wfdb.rdheader(str(path))
    except Exception as e:  # wfdb raises many types for a bad header
        raise EcgtoolError(f"{name or path}: unreadable WFDB header ({e})") from e


def header_seconds(path: str | Path, name: str | None = None) -> float:
    """A record's length in seconds from its header alone (``prep --seconds 0`` asks it of every record)."""
    h = read_header(path, name)
    if not h.sig_len or not h.fs:
        raise EcgtoolError(f"{name or path}: the WFDB header gives no length in samples")
    return h.sig_len / h.fs


def physical_mv(rec) -> np.ndarray:
    """A wfdb Record's physical signal as ``[leads, samples]`` in millivolts, whatever units its header gives."""
    scale = np.array([UNIT_TO_MV.get((u or "").strip().lower(), 1.0) for u in rec.units])
    return (rec.p_signal * scale).T


def canonical_lead(name: str) -> str:
    return _CANONICAL.get(name.strip().upper(), name.strip())


def parse_comments(comments: list[str]) -> dict[str, str]:
    """``# Key: value`` header comments as a dict (keys lower-case)."""
    out = {}
    for line in comments:
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def parse_sex(value: str) -> str:
    v = (value or "").strip().lower()
    return {"m": "M", "male": "M", "f": "F", "female": "F", "0": "M", "1": "F"}.get(v, "")


def parse_age(value) -> float:
    try:
        age = float(value)
    except (TypeError, ValueError):
        return math.nan
    return age if 0 <= age < 130 else math.nan


class WfdbDirectoryReader(DatasetReader):
    name = "wfdb"

    def __init__(self, root, labels: str | Path | None = None, classes: list[str] | None = None,
                 discover_classes: bool = True):
        self.root = Path(root)
        self._ids = self._list_records()
        if not self._ids:
            raise EcgtoolError(f"{self.root}: no WFDB records (.hea files) found")
        # Records are addressed by their path below the root (g1/A0001) or, as the
        # dataset-specific readers built on this one do, by their name (A0001).
        self._by_name = {Path(rel).name: rel for rel in self._ids}
        if len(self._by_name) != len(self._ids):
            seen: dict[str, str] = {}
            for rel in self._ids:
                if Path(rel).name in seen:
                    raise EcgtoolError(f"{self.root}: record name {Path(rel).name} appears twice ({seen[Path(rel).name]}, {rel})")
                seen[Path(rel).name] = rel
        label_csv = Path(labels) if labels else self.root / "labels.csv"
        if labels and not label_csv.is_file():
            raise EcgtoolError(f"{label_csv}: no such label file")
        self._label_file = label_csv if labels else None  # a --labels file, read from outside the directory perhaps
        self._table = self._read_label_csv(label_csv) if label_csv.is_file() else None
        # By content, not path: the parts of a sharded run may name one file by different paths.
        self._labels_sha256 = hashlib.sha256(label_csv.read_bytes()).hexdigest() if self._table is not None else None
        self._code_to_class = self._read_class_map(self.root / "classes.csv")
        # Readers built on this one map #Dx codes themselves and skip the scan of every header.
        self._classes = list(classes) if classes else self._discover_classes() if discover_classes else []
        first = self._first_header()
        self._leads = [canonical_lead(n) for n in first.sig_name]
        self._fs = float(first.fs)
        has_csv_patients = self._table is not None and any(r.get("patient_id") for r in self._table.values())
        has_header_patients = "patient" in parse_comments(first.comments or [])
        self.patient_ids = "dataset" if has_csv_patients or has_header_patients else "record"
        # A dataset.json (as `fetch synthetic` writes) may name the dataset and its task.
        try:
            meta = json.loads((self.root / "dataset.json").read_text())
        except (OSError, ValueError):
            meta = {}
        self._dataset = str(meta.get("dataset", self.name))
        self._task = str(meta.get("task", self._dataset))
        info = self.root / "classes.csv"
        self._descriptions = {}
        if info.is_file():
            with open_text(info) as f:
                self._descriptions = {r["class"]: r.get("description", "") for r in csv.DictReader(f)}

    # -- discovery -------------------------------------------------------------------
    @classmethod
    def recognises(cls, root) -> bool:
        root = Path(root)
        return (root / "RECORDS").is_file() or any(root.rglob("*.hea"))

    def _list_records(self) -> list[str]:
        listing = self.root / "RECORDS"
        if listing.is_file():
            names = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()]
            # A RECORDS file may list sub-directories (PhysioNet's nested layout).
            out = []
            for n in names:
                if n.endswith("/"):
                    out += [f"{n}{m}" for m in self._read_records_file(self.root / n / "RECORDS")]
                else:
                    out.append(n)
            return out
        return sorted(p.relative_to(self.root).with_suffix("").as_posix() for p in self.root.rglob("*.hea"))

    @staticmethod
    def _read_records_file(path: Path) -> list[str]:
        return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []

    @property
    def inputs(self) -> tuple:
        return (self.root,) + ((self._label_file,) if self._label_file is not None else ())

    @property
    def options(self) -> dict:
        return {"labels_sha256": self._labels_sha256}

    @staticmethod
    def _read_label_csv(path: Path) -> dict[str, dict]:
        with open_text(path) as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "record_id" not in reader.fieldnames or "labels" not in reader.fieldnames:
                raise EcgtoolError(f"{path}: a label CSV needs the columns record_id and labels")
            table = unique_rows(path, reader, lambda r: r["record_id"], "record_id")
        # A fold is checked here, naming its row: later it would be an int8 overflow in the store naming nothing.
        for number, row in enumerate(table.values(), 2):
            if (row.get("fold") or "").strip():
                row["fold"] = int(table_number(path, number, "fold", row["fold"], lo=0, hi=MAX_FOLD, whole=True))
        return table

    @staticmethod
    def _read_class_map(path: Path) -> dict[str, str]:
        if not path.is_file():
            return {}
        with open_text(path) as f:
            return {r["snomed"].strip(): r["class"] for r in csv.DictReader(f) if r.get("snomed")}

    def _discover_classes(self) -> list[str]:
        classes_csv = self.root / "classes.csv"
        if classes_csv.is_file():
            with open_text(classes_csv) as f:
                return [r["class"] for r in csv.DictReader(f)]
        seen: set[str] = set()
        for rid in self._ids:
            seen.update(self._labels_of(rid))
        return sorted(seen)

    # -- reading ---------------------------------------------------------------------
    def path_of(self, record: str) -> str:
        """A record's path below the root, from its name or its path."""
        return self._by_name.get(record, record)

    def names(self) -> list[str]:
        """Record names (without directories), sorted."""
        return sorted(self._by_name)

    def _header(self, record_id: str):
        return read_header(self.root / self.path_of(record_id), record_id)

    def _first_header(self):
        """The first readable header (a bad record is prep's to fail or skip, not the dataset's), else the first error."""
        first_error = None
        for rid in self._ids:
            try:
                return self._header(rid)
            except EcgtoolError as e:
                first_error = first_error or e
        raise first_error

    def _labels_of(self, record_id: str, comments: dict | None = None) -> list[str]:
        if self._table is not None:
            row = self._table.get(Path(record_id).name) or self._table.get(record_id)
            if row is None:
                raise EcgtoolError(f"{record_id}: not in the label table")
            return [s.strip() for s in row["labels"].split(";") if s.strip()]
        if comments is None:
            comments = parse_comments(self._header(record_id).comments or [])
        codes = [c.strip() for c in comments.get("dx", "").split(",") if c.strip()]
        return [self._code_to_class.get(c, c) for c in codes]

    @property
    def classes(self) -> list[str]:
        return self._classes

    @property
    def task(self) -> str:
        return self._task

    @property
    def dataset(self) -> str:
        return self._dataset

    @property
    def class_descriptions(self) -> dict[str, str]:
        return {c: self._descriptions.get(c, "") for c in self._classes}

    @property
    def leads(self) -> list[str]:
        return self._leads

    @property
    def fs(self) -> float:
        return self._fs

    def record_ids(self) -> list[str]:
        return list(self._ids)

    def duration(self, record_id: str) -> float:
        return header_seconds(self.root / self.path_of(record_id), record_id)

    def read(self, record_id: str) -> RawRecord:
        record_id = self.path_of(record_id)
        rec = read_wfdb(self.root / record_id, record_id)
        if rec.p_signal is None:
            raise EcgtoolError(f"{record_id}: no physical signal in the record")
        signal = physical_mv(rec)
        comments = parse_comments(rec.comments or [])
        row = self._table.get(Path(record_id).name, self._table.get(record_id, {})) if self._table else {}
        patient = row.get("patient_id") or comments.get("patient") or Path(record_id).name
        fold = row.get("fold")
        return RawRecord(
            record_id=Path(record_id).name,
            patient_id=patient,
            signal=signal,
            fs=float(rec.fs),
            leads=[canonical_lead(n) for n in rec.sig_name],
            labels=self._labels_of(record_id, comments),
            fold=fold if isinstance(fold, int) else 0,  # checked by _read_label_csv; empty: no fold
            age=parse_age(row.get("age") or comments.get("age")),
            sex=parse_sex(row.get("sex") or comments.get("sex", "")),
        )
