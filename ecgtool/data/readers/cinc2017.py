"""PhysioNet/CinC Challenge 2017: single-lead AF classification.

Source: Clifford GD et al., "AF Classification from a Short Single Lead ECG
Recording: the PhysioNet/Computing in Cardiology Challenge 2017", CinC 44 (2017).
8,528 AliveCor recordings (``training2017/A00001.{hea,mat}``, 300 Hz, 9–61 s,
lead named ``ECG`` as in the headers) and ``REFERENCE-v3.csv`` (no header row:
``A00001,N``; the revised labels used for final scoring, falling back to
``REFERENCE.csv``). Four mutually exclusive classes, so the task is multi-class:
Normal (N), AF (A), Other rhythm (O), Noisy (~). No patient identifiers: every
recording is its own patient.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ecgtool.data.readers.base import DatasetReader, RawRecord, open_text, unique_rows
from ecgtool.data.readers.wfdb_dir import WfdbDirectoryReader
from ecgtool.errors import EcgtoolError

CODES = {"N": "Normal", "A": "AF", "O": "Other", "~": "Noisy"}
DESCRIPTIONS = {"Normal": "normal sinus rhythm", "AF": "atrial fibrillation", "Other": "other rhythm", "Noisy": "too noisy to classify"}
REFERENCES = ("REFERENCE-v3.csv", "REFERENCE.csv")


class Cinc2017Reader(DatasetReader):
    name = "cinc2017"
    patient_ids = "record"
    CLASSES = tuple(CODES.values())
    DESCRIPTIONS = DESCRIPTIONS
    MULTI_LABEL = False

    def __init__(self, root):
        self.root = Path(root)
        ref = self._reference(self.root)
        if ref is None:
            raise EcgtoolError(f"{self.root}: no REFERENCE-v3.csv or REFERENCE.csv")
        self.reference = ref
        with open_text(ref) as f:
            rows = [r for r in csv.reader(f) if r]
        unknown = sorted({r[1] for r in rows if r[1] not in CODES})
        if unknown:
            raise EcgtoolError(f"{ref}: unknown label(s) {', '.join(unknown)} (expected N, A, O, ~)")
        self._labels = {k: CODES[r[1].strip()] for k, r in unique_rows(ref, rows, lambda r: r[0].strip(), "column 1", first_row=1).items()}
        self._wfdb = WfdbDirectoryReader(self.root, discover_classes=False)
        # A record without a reference row is read and left out by prep as unlabelled, with the reason in the
        # store's skipped_records, never dropped unseen.
        self._ids = self._wfdb.names()
        if not set(self._ids) & set(self._labels):
            raise EcgtoolError(f"{self.root}: none of the records in {ref.name} were found (unpack training2017.zip here)")

    @staticmethod
    def _reference(root: Path) -> Path | None:
        for name in REFERENCES:
            for p in (root / name, root / "training2017" / name):
                if p.is_file():
                    return p
        return None

    @classmethod
    def recognises(cls, root) -> bool:
        ref = cls._reference(Path(root))
        if ref is None:
            return False
        first = ref.read_text(encoding="utf-8-sig", errors="replace").split("\n", 1)[0].strip().split(",")
        return len(first) == 2 and first[1] in CODES

    @property
    def leads(self) -> list[str]:
        return self._wfdb.leads

    def record_ids(self) -> list[str]:
        return list(self._ids)

    def duration(self, record_id: str) -> float:
        return self._wfdb.duration(record_id)

    def read(self, record_id: str) -> RawRecord:
        rec = self._wfdb.read(record_id)
        rec.labels = [self._labels[record_id]] if record_id in self._labels else []
        rec.unlabelled_reason = "" if record_id in self._labels else f"not in {self.reference.name}"
        rec.patient_id = record_id
        return rec
