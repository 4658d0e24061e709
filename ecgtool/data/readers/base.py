"""The common base of every dataset reader.

A reader lists a dataset's records and reads one record at a time into a
``RawRecord`` in physical units (mV), with its labels as class names. It must be
picklable (``prep`` sends it to worker processes), so it holds paths and small
tables only, never open file handles.
"""

from __future__ import annotations

import codecs
import io
import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ecgtool.errors import EcgtoolError

#: written by ``fetch`` into the directory it creates; read by ``prep`` to continue the chain
FETCH_PROVENANCE = "PROVENANCE.json"


def write_fetch_provenance(root: Path, entry: dict) -> None:
    (Path(root) / FETCH_PROVENANCE).write_text(json.dumps([entry], indent=2, default=str) + "\n")


def read_fetch_provenance(root: Path) -> list[dict]:
    """The provenance ``fetch`` left in a raw directory or one above it (prep may read a sub-dataset), or []."""
    root = Path(root).resolve()
    for folder in [root, *list(root.parents)[:3]]:
        try:
            doc = json.loads((folder / FETCH_PROVENANCE).read_text())
        except (OSError, ValueError):
            continue
        return doc if isinstance(doc, list) else []
    return []


def open_text(path: str | Path) -> io.StringIO:
    """A text table (label CSV, reference list) for ``csv``: UTF-8 with or without a byte-order mark, or UTF-16 with
    one (as spreadsheet programs save); anything else is one ``EcgtoolError`` naming the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise EcgtoolError(f"{path}: cannot be read ({e.strerror or e})") from e
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise EcgtoolError(f"{path}: not {encoding.replace('-sig', '').upper()} text (byte {e.start}: {raw[e.start:e.start + 1]!r}); "
                           "save it as UTF-8") from None
    if "\x00" in text:  # UTF-16 without a byte-order mark decodes as UTF-8 with a NUL every other character
        raise EcgtoolError(f"{path}: holds NUL characters (UTF-16 without a byte-order mark?); save it as UTF-8")
    return io.StringIO(text)  # as open(newline=""): csv handles the line endings


#: the store keeps folds as int8; 0 means "no official fold"
MAX_FOLD = 127


def unique_rows(path: str | Path, rows, key, column: str, first_row: int = 2) -> dict:
    """``rows`` of the label table ``path`` keyed by ``key(row)`` (the record id in ``column``).

    A record listed twice is refused, naming both rows (counted as a spreadsheet counts them,
    the header being row 1): a dict would keep the last row without a word, and the record
    would carry another row's labels, fold or file.
    """
    out: dict = {}
    row_of: dict = {}
    for number, row in enumerate(rows, first_row):
        k = key(row)
        if k in out:
            raise EcgtoolError(f"{path}: record {k} is listed twice ({column} in rows {row_of[k]} and {number}); "
                               "keep one row per record")
        out[k], row_of[k] = row, number
    return out


def table_number(path: str | Path, row: int | str, column: str, value, *, lo: float | None = None, hi: float | None = None,
                 whole: bool = False) -> float:
    """A number from row ``row`` (header = row 1), column ``column`` of ``path``, or one ``EcgtoolError`` naming all three."""
    text = str(value if value is not None else "").strip()
    try:
        x = float(text)
    except ValueError:
        x = math.nan
    bounds = (f" from {lo:g} to {hi:g}" if lo is not None and hi is not None else f" of at least {lo:g}" if lo is not None else "")
    kind = "a whole number" if whole else "a number"
    if not math.isfinite(x) or (whole and x != int(x)) or (lo is not None and x < lo) or (hi is not None and x > hi):
        raise EcgtoolError(f"{path}: row {row}, column {column}: {text!r} is not {kind}{bounds}")
    return x


@dataclass
class RawRecord:
    record_id: str
    patient_id: str
    signal: np.ndarray  # [leads, samples], mV
    fs: float
    leads: list[str]
    labels: list[str]
    fold: int = 0
    age: float = math.nan
    sex: str = ""
    source: str = ""  # sub-dataset of a pooled collection (e.g. CinC 2021's "georgia")
    beats: tuple | None = None  # (sample positions at fs, class names) for beat-annotated datasets
    unknown_labels: list[str] = field(default_factory=list)  # source codes the reader could not map to a class
    unlabelled_reason: str = ""  # why the record has no labels, where the reader knows (e.g. "not in REFERENCE.csv")


class DatasetReader(ABC):
    """What ``prep`` needs from a dataset."""

    #: short name recorded in the store's attrs
    name: str = "dataset"
    #: "dataset" when the source has patient ids; "record" when every record is its own patient
    patient_ids: str = "dataset"
    #: labels are per beat (read.beats), so prep needs --beat-window
    beat_annotated: bool = False

    @classmethod
    @abstractmethod
    def recognises(cls, root) -> bool:
        """True if ``root`` looks like this reader's layout."""

    #: a dataset with a fixed label set declares it here; readers whose classes depend on the data override ``classes``
    CLASSES: tuple[str, ...] = ()
    DESCRIPTIONS: dict[str, str] = {}
    MULTI_LABEL: bool = True

    @property
    def classes(self) -> list[str]:
        """Class names in the store's label order."""
        return list(self.CLASSES)

    @property
    def class_descriptions(self) -> dict[str, str]:
        return {c: self.DESCRIPTIONS.get(c, "") for c in self.classes}

    @property
    def task(self) -> str:
        return self.name

    @property
    def dataset(self) -> str:
        """The dataset's name, recorded in the store's attrs."""
        return self.name

    @property
    def multi_label(self) -> bool:
        return self.MULTI_LABEL

    @property
    def inputs(self) -> tuple:
        """Every file or directory the reader reads (its root, and a label file given apart from it): prep's output must
        be none of them, nor inside one, nor contain one."""
        return (getattr(self, "root", None),)

    @property
    def options(self) -> dict:
        """The reader's settings that change what it reads (rate, label threshold, records kept), recorded in the store's
        ``reading`` attribute so that merge can refuse parts read differently: nothing else in the store shows them."""
        return {}

    @property
    def extra_attrs(self) -> dict:
        """Reader-specific store attributes (e.g. the SNOMED codes of each class)."""
        return {}

    @property
    @abstractmethod
    def leads(self) -> list[str]:
        """Lead names of the dataset, in its own order."""

    @property
    def fs(self) -> float | None:
        """Native sampling rate when all records share one, else None."""
        return None

    @abstractmethod
    def record_ids(self) -> list[str]:
        """Every record, in a stable order."""

    @abstractmethod
    def read(self, record_id: str) -> RawRecord:
        """One record, or an exception naming what is wrong with it."""

    def duration(self, record_id: str) -> float:
        """Length in seconds (cheap: from the header where possible)."""
        r = self.read(record_id)
        return r.signal.shape[-1] / r.fs
