"""Chapman-Shaoxing: rhythm classification, from the figshare release or PhysioNet's WFDB copy.

Source: Zheng J et al., "A 12-lead electrocardiogram database for arrhythmia
research covering more than 10,000 patients", Scientific Data 7:48 (2020).

* Original figshare release: ``Diagnostics.xlsx`` (``FileName``, ``Rhythm``,
  ``Beat``, ``PatientAge``, ``Gender``, …) and ``ECGData/<FileName>.csv`` (5000
  rows × 12 leads, 500 Hz, in µV; a header row of lead names where present is
  detected and skipped).
* PhysioNet's WFDB layout (``ecg-arrhythmia``, Chapman + Ningbo, and the CinC
  2021 ``chapman_shaoxing`` source): ``#Dx`` SNOMED CT codes; the rhythm is the
  first ``#Dx`` code that names one of the 11 rhythms below (codes from the
  PhysioNet/CinC mapping tables); a record with none is unlabelled for this task.

Tasks (multi-class, one rhythm per record): ``rhythm`` — the 11 rhythms SB, SR,
AFIB, ST, AF (atrial flutter), SA (sinus irregularity), SVT, AT, AVNRT, AVRT,
SAAWR; ``merged`` (default) — the paper's 4 classes SB, AFIB (AFIB + AF), GSVT
(SVT, AT, SAAWR, ST, AVNRT, AVRT) and SR (SR + SA). One record per patient, so
the record is the patient.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecgtool.data.readers.base import DatasetReader, RawRecord, unique_rows
from ecgtool.data.readers.wfdb_dir import STANDARD_LEADS, WfdbDirectoryReader, parse_age, parse_sex
from ecgtool.errors import ConfigError, EcgtoolError

RHYTHMS = ["SB", "SR", "AFIB", "ST", "AF", "SA", "SVT", "AT", "AVNRT", "AVRT", "SAAWR"]
RHYTHM_NAMES = {
    "SB": "sinus bradycardia", "SR": "sinus rhythm", "AFIB": "atrial fibrillation", "ST": "sinus tachycardia",
    "AF": "atrial flutter", "SA": "sinus irregularity", "SVT": "supraventricular tachycardia",
    "AT": "atrial tachycardia", "AVNRT": "atrioventricular node reentrant tachycardia",
    "AVRT": "atrioventricular reentrant tachycardia", "SAAWR": "sinus atrium to atrial wandering rhythm",
}
MERGED = {"SB": "SB", "AFIB": "AFIB", "AF": "AFIB", "SVT": "GSVT", "AT": "GSVT", "SAAWR": "GSVT", "ST": "GSVT",
          "AVNRT": "GSVT", "AVRT": "GSVT", "SR": "SR", "SA": "SR"}
MERGED_CLASSES = ["SB", "AFIB", "GSVT", "SR"]
MERGED_NAMES = {"SB": "sinus bradycardia", "AFIB": "atrial fibrillation or flutter",
                "GSVT": "supraventricular tachycardias", "SR": "sinus rhythm or sinus irregularity"}
# SNOMED CT codes of the rhythms, from the PhysioNet/CinC 2021 mapping tables (ecgtool/data/tables)
SNOMED_RHYTHM = {
    "426177001": "SB", "426783006": "SR", "164889003": "AFIB", "427084000": "ST", "164890007": "AF",
    "427393009": "SA", "426761007": "SVT", "713422000": "AT", "251166008": "AVNRT", "233897008": "AVRT",
    "17366009": "SAAWR",
}
TASKS = ("merged", "rhythm")


class ChapmanReader(DatasetReader):
    name = "chapman"
    patient_ids = "record"
    MULTI_LABEL = False

    def __init__(self, root, task: str = "merged"):
        if task not in TASKS:
            raise ConfigError(f"unknown Chapman task {task!r}; choose from {', '.join(TASKS)}", "task")
        self.root = Path(root)
        self._task = task
        diagnostics = self.root / "Diagnostics.xlsx"
        if diagnostics.is_file():
            self.layout = "figshare"
            self._rows = self._read_diagnostics(diagnostics)
            csv_dir = next((d for d in (self.root / "ECGData", self.root / "ECGDataDenoised", self.root) if d.is_dir() and any(d.glob("*.csv"))), None)
            if csv_dir is None:
                raise EcgtoolError(f"{self.root}: no ECGData/*.csv (unpack ECGData.zip here)")
            self._csv_dir = csv_dir
            # A CSV without a Diagnostics.xlsx row is read and left out by prep as unlabelled, with the reason
            # in the store's skipped_records, never dropped unseen.
            self._ids = sorted(p.stem for p in csv_dir.glob("*.csv"))
        else:
            self.layout = "wfdb"
            self._wfdb = WfdbDirectoryReader(self.root, discover_classes=False)
            self._ids = self._wfdb.names()

    @staticmethod
    def _read_diagnostics(path: Path) -> dict[str, dict]:
        import pandas as pd

        try:
            table = pd.read_excel(path, dtype=str)
        except ImportError as e:  # pandas needs openpyxl for .xlsx
            raise EcgtoolError("reading Diagnostics.xlsx needs openpyxl: pip install openpyxl") from e
        missing = {"FileName", "Rhythm"} - set(table.columns)
        if missing:
            raise EcgtoolError(f"{path}: lacks the column(s) {', '.join(sorted(missing))}")
        return unique_rows(path, table.fillna("").to_dict("records"), lambda r: str(r["FileName"]).strip(), "FileName")

    @classmethod
    def recognises(cls, root) -> bool:
        return (Path(root) / "Diagnostics.xlsx").is_file()

    def _label(self, rhythm: str | None) -> list[str]:
        if rhythm is None:
            return []
        return [MERGED[rhythm]] if self._task == "merged" else [rhythm]

    @property
    def classes(self) -> list[str]:
        return list(MERGED_CLASSES if self._task == "merged" else RHYTHMS)

    @property
    def class_descriptions(self) -> dict[str, str]:
        return dict(MERGED_NAMES if self._task == "merged" else RHYTHM_NAMES)

    @property
    def task(self) -> str:
        return f"chapman-{self._task}"

    @property
    def leads(self) -> list[str]:
        return list(STANDARD_LEADS) if self.layout == "figshare" else self._wfdb.leads

    def record_ids(self) -> list[str]:
        return list(self._ids)

    def duration(self, record_id: str) -> float:
        if self.layout == "wfdb":
            return self._wfdb.duration(record_id)
        # Counted, not the 10 s the release promises: --seconds 0 must not crop a longer record.
        return _csv_rows(self._csv_dir / f"{record_id}.csv") / 500.0

    def read(self, record_id: str) -> RawRecord:
        if self.layout == "wfdb":
            rec = self._wfdb.read(record_id)  # labels: the #Dx codes
            rhythm = next((SNOMED_RHYTHM[c] for c in rec.labels if c in SNOMED_RHYTHM), None)
            rec.labels, rec.patient_id = self._label(rhythm), rec.record_id
            return rec
        path = self._csv_dir / f"{record_id}.csv"
        data = _read_csv_signal(path)
        row = self._rows.get(record_id)
        if row is None:
            return RawRecord(record_id=record_id, patient_id=record_id, signal=data.T * 1e-3, fs=500.0,
                             leads=list(STANDARD_LEADS), labels=[], unlabelled_reason="not in Diagnostics.xlsx")
        rhythm = str(row["Rhythm"]).strip()
        if rhythm not in MERGED:
            raise EcgtoolError(f"{record_id}: unknown rhythm {rhythm!r} in Diagnostics.xlsx")
        return RawRecord(
            record_id=record_id, patient_id=record_id, signal=data.T * 1e-3, fs=500.0, leads=list(STANDARD_LEADS),
            labels=self._label(rhythm), age=parse_age(row.get("PatientAge")), sex=parse_sex(str(row.get("Gender", ""))),
        )


def _has_header(first_line: str) -> bool:
    try:
        [float(v) for v in first_line.strip().split(",") if v.strip()]
        return False
    except ValueError:
        return True


def _csv_rows(path: Path) -> int:
    """Samples in a record CSV without parsing them: its non-empty lines, less a header row of lead names."""
    try:
        with open(path, "rb") as f:
            first = f.readline().decode("utf-8", "replace")
            rows = (1 if first.strip() else 0) + sum(1 for line in f if line.strip())
    except OSError as e:
        raise EcgtoolError(f"{path.name}: cannot be read ({e.strerror or e})") from e
    return rows - _has_header(first)


def _read_csv_signal(path: Path) -> np.ndarray:
    """A record CSV as [samples, 12] floats, skipping a header row of lead names if there is one."""
    with open(path) as f:
        skip = int(_has_header(f.readline()))
    try:
        data = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
    except ValueError as e:
        raise EcgtoolError(f"{path.name}: unreadable CSV ({e})") from e
    if data.shape[1] != 12:
        raise EcgtoolError(f"{path.name}: expected 12 lead columns, found {data.shape[1]}")
    return data

