"""Recordings a user brings, outside any dataset layout: found by path and read into ``RawRecord``s.

What ``predict`` reads (docs/predict.md):

* a WFDB record, named by its header (``A0001.hea``), its path without suffix (``A0001``) or one of its
  signal files (``A0001.dat``, or ``A0001.mat`` as the PhysioNet/CinC 2020/2021 and CPSC2018 copies ship
  it: a MATLAB v4 matrix that the ``.hea`` beside it describes) — read by the dataset readers' own WFDB
  code (``readers/wfdb_dir.py``: the header checks, ``wfdb.rdrecord``, the units to mV, the standard lead
  names);
* a CSV file of samples: a header row of lead names, then one row per sample and one column per lead
  (a column that is not a lead the model reads, such as a time column, is ignored); the sampling rate
  and the units come from the caller (``predict --fs``, ``--csv-units``), as a CSV carries neither;
* a directory: its WFDB records (every ``.hea`` below it), or when it holds none its ``.csv`` files,
  sorted by their path below the directory, which names them.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ecgtool.data.choices import CSV_UNITS
from ecgtool.data.readers.base import RawRecord, open_text
from ecgtool.data.readers.wfdb_dir import UNIT_TO_MV, canonical_lead, physical_mv, read_wfdb
from ecgtool.errors import ConfigError, EcgtoolError, record_failure

if TYPE_CHECKING:
    from ecgtool.data.inputs import RecordingReader

SIGNAL_SUFFIXES = (".dat", ".mat")  # a WFDB signal file named instead of its header


@dataclass(frozen=True)
class Recording:
    """One recording found: its name (the output's ``record``), what it is, and where."""

    name: str
    kind: str  # "wfdb" | "csv"
    path: Path  # a WFDB record's path without suffix; a CSV file's path
    source: Path  # the file or directory it was found from, as given (a record path: its header)


def find_recordings(paths) -> list[Recording]:
    """Every recording ``paths`` name (files, record paths, directories), in the order given (a directory's
    sorted); refuses a path that is none and two recordings of one name."""
    found: list[Recording] = []
    for given in paths:
        found += _recordings_at(Path(given))
    if not found:
        raise EcgtoolError("no recordings to read")
    seen: dict[str, Recording] = {}
    for rec in found:
        if rec.name in seen:
            first = seen[rec.name]
            what = "is given twice" if first.path.resolve() == rec.path.resolve() else f"names two recordings ({first.path}, {rec.path})"
            raise EcgtoolError(f"the record name {rec.name} {what}; each recording must appear once under its own name")
        seen[rec.name] = rec
    return found


def named_files(recordings: list[Recording]) -> list[Path]:
    """The files of the recordings named one by one (a WFDB record's header and signal files, a CSV), which an
    output must not be; a directory's recordings lie inside it, and the directory protects them. Each directory
    is listed once: a glob per record was quadratic in the directory's size (over 15 minutes before the first
    read of 32,000 records in one directory)."""
    out: list[Path] = []
    by_directory: dict[Path, list[Recording]] = {}
    for rec in recordings:
        if rec.kind == "csv":
            out.append(rec.path)
        elif not rec.source.is_dir():
            by_directory.setdefault(rec.path.parent, []).append(rec)
    for directory, recs in by_directory.items():
        prefixed: dict[str, list[str]] = {}  # "A0001" → ["A0001.hea", "A0001.dat"]: every name before each dot
        for name in os.listdir(directory):
            for i, char in enumerate(name):
                if char == ".":
                    prefixed.setdefault(name[:i], []).append(name)
        out += [directory / name for rec in recs for name in sorted(prefixed.get(rec.path.name, []))]
    return out


def _recordings_at(path: Path) -> list[Recording]:
    if path.is_dir():
        headers = sorted(path.rglob("*.hea"))
        if headers:
            return [Recording(h.relative_to(path).with_suffix("").as_posix(), "wfdb", h.with_suffix(""), path) for h in headers]
        tables = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".csv" and p.is_file())
        if tables:
            return [Recording(t.relative_to(path).with_suffix("").as_posix(), "csv", t, path) for t in tables]
        raise EcgtoolError(f"{path}: the directory holds no recordings (WFDB .hea headers or .csv files)")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        if not path.is_file():
            raise EcgtoolError(f"{path}: no such CSV file")
        return [Recording(path.stem, "csv", path, path)]
    record = path.with_suffix("") if suffix == ".hea" or suffix in SIGNAL_SUFFIXES else path
    header = record.with_name(record.name + ".hea")
    if header.is_file():
        return [Recording(record.name, "wfdb", record, path if path.is_file() else header)]
    if suffix in SIGNAL_SUFFIXES and path.is_file():
        raise EcgtoolError(f"{path}: no WFDB header {record.name}.hea beside it (a {suffix} signal file is read through "
                           "the header that describes it)")
    if not path.exists() and not path.with_name(path.name + ".hea").exists():
        raise EcgtoolError(f"{path}: no such recording (a WFDB record, .hea, .dat or .mat with its .hea, .csv, or a directory)")
    raise EcgtoolError(f"{path}: not a recording ecgtool reads (a WFDB record, .hea, .dat or .mat with its .hea, .csv, or a directory)")


def read_recording(rec: Recording, *, fs: float | None = None, units: str = "mV") -> RawRecord:
    """The recording's signal ``[leads, samples]`` in mV with its rate and standard lead names; ``fs`` and
    ``units`` apply to CSV files only (a WFDB header gives its own). Errors are one ``EcgtoolError``."""
    if rec.kind == "wfdb":
        record = read_wfdb(rec.path, rec.name)
        if record.p_signal is None:
            raise EcgtoolError(f"{rec.name}: no physical signal in the record")
        signal, rate, leads = physical_mv(record), float(record.fs), [canonical_lead(n) for n in record.sig_name]
    else:
        if fs is None:
            raise ConfigError(f"{rec.path} is a CSV file, which carries no sampling rate: give it (--fs)", "fs")
        signal, leads = read_csv_signal(rec.path, rec.name)
        signal, rate = signal * csv_unit_factor(units), float(fs)
    duplicated = sorted({lead for lead in leads if leads.count(lead) > 1})
    if duplicated:
        raise EcgtoolError(f"{rec.name}: lead(s) {', '.join(duplicated)} appear more than once")
    return RawRecord(record_id=rec.name, patient_id=rec.name, signal=signal, fs=rate, leads=leads, labels=[])


def recording_row(reader: RecordingReader, fs: float | None, units: str, rec: Recording) -> tuple[np.ndarray | None, float, str | None]:
    """``(its store row, its length in samples at the model's rate, None)`` for one recording (``reader``: how the
    model's training rows were made), or ``(None, 0, why)`` when it cannot be read or lacks a lead the model reads.
    Never raises: it runs in ``predict``'s worker processes, which this module keeps free of torch."""
    try:
        raw = read_recording(rec, fs=fs, units=units)
        return reader.row(raw.signal, raw.fs, raw.leads), raw.signal.shape[-1] * reader.prep.fs / raw.fs, None
    except Exception as e:  # reported by name; predict --on-error decides
        return None, 0.0, record_failure(e, rec.name)


def csv_unit_factor(units: str) -> float:
    """Millivolts per unit of a CSV's values."""
    if units not in CSV_UNITS:
        raise ConfigError(f"CSV units must be one of {', '.join(CSV_UNITS)}, not {units!r}", "csv_units")
    return UNIT_TO_MV[units.lower()]


def read_csv_signal(path: Path, name: str) -> tuple[np.ndarray, list[str]]:
    """A CSV of samples (a header row of lead names, one column per lead) as ``([leads, samples], lead names)``."""
    with open_text(path) as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if not header or not any(cell.strip() for cell in header):
            raise EcgtoolError(f"{name}: {path.name} is empty; a CSV recording starts with a header row of lead names")
        if all(_is_number(cell) for cell in header):
            raise EcgtoolError(f"{name}: {path.name} has no header row of lead names (its first row is numbers)")
        leads = [canonical_lead(cell) for cell in header]
        values = []
        for line, row in enumerate(rows, 2):
            if not row or not any(cell.strip() for cell in row):
                continue
            if len(row) != len(leads):
                raise EcgtoolError(f"{name}: {path.name} line {line} has {len(row)} values for {len(leads)} columns")
            try:
                values.append([float(cell) if cell.strip() else math.nan for cell in row])
            except ValueError:
                bad = next(cell for cell in row if cell.strip() and not _is_number(cell))
                raise EcgtoolError(f"{name}: {path.name} line {line} holds {bad.strip()!r}, not a number") from None
    if not values:
        raise EcgtoolError(f"{name}: {path.name} has a header row but no samples")
    return np.asarray(values, dtype=np.float64).T, leads


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True
