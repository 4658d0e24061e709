"""CPSC2018 (China Physiological Signal Challenge 2018), from either release.

Source: Liu F et al., J Med Imaging Health Inform 8(7):1368-1373 (2018).

* Original release: ``TrainingSet1..3/A0001.mat …`` (a MATLAB struct ``ECG``
  with fields sex, age, data; data is leads × samples in mV at 500 Hz, lead
  order I, II, III, aVR, aVL, aVF, V1–V6) and ``REFERENCE.csv``
  (``Recording,First_label,Second_label,Third_label``; labels 1–9).
* PhysioNet/CinC 2020/2021 copy (``training/cpsc_2018/g1…``): the same records
  as WFDB with ``#Age``, ``#Sex`` and ``#Dx`` (SNOMED CT) header comments,
  mapped to the 9 classes below, with the challenge's equivalent codes merged
  (its ``dx_mapping_scored.csv`` Notes; CPSC2018's PVC is coded 164884008).

Classes in the field's usual order: NORM, AF, I-AVB, LBBB, RBBB, PAC, PVC, STD,
STE; a record has 1–3 labels. There are no patient identifiers: every record
is its own patient (the store says ``patient_ids: "record"``). Records are
6–60 s long; ``prep --seconds`` crops/pads them, ``--seconds 0`` keeps the
longest length (zero-padded) for window-based models.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from ecgtool.data.readers.base import DatasetReader, RawRecord, open_text, unique_rows
from ecgtool.data.readers.wfdb_dir import STANDARD_LEADS, WfdbDirectoryReader, parse_age, parse_sex
from ecgtool.errors import EcgtoolError

CLASSES = ["NORM", "AF", "I-AVB", "LBBB", "RBBB", "PAC", "PVC", "STD", "STE"]
DESCRIPTIONS = {
    "NORM": "normal (sinus rhythm)", "AF": "atrial fibrillation", "I-AVB": "first-degree atrioventricular block",
    "LBBB": "left bundle branch block", "RBBB": "right bundle branch block", "PAC": "premature atrial contraction",
    "PVC": "premature ventricular contraction", "STD": "ST-segment depression", "STE": "ST-segment elevation",
}
# SNOMED CT codes of the PhysioNet/CinC copy, equivalent codes merged as the challenge scores them.
SNOMED_TO_CLASS = {
    "426783006": "NORM", "164889003": "AF", "270492004": "I-AVB",
    "164909002": "LBBB", "733534002": "LBBB", "59118001": "RBBB", "713427006": "RBBB",
    "284470004": "PAC", "63593006": "PAC", "164884008": "PVC", "427172004": "PVC", "17338001": "PVC",
    "429622005": "STD", "164931005": "STE",
}
REFERENCE_COLUMNS = ["Recording", "First_label", "Second_label", "Third_label"]
_RECORD = re.compile(r"A\d{4}")


class Cpsc2018Reader(DatasetReader):
    name = "cpsc2018"
    patient_ids = "record"
    CLASSES = tuple(CLASSES)
    DESCRIPTIONS = DESCRIPTIONS

    def __init__(self, root):
        self.root = Path(root)
        reference = self.root / "REFERENCE.csv"
        if reference.is_file():
            self.release = "original"
            self._labels = self._read_reference(reference)
            self._paths = {p.stem: p for p in sorted(self.root.rglob("A*.mat")) if _RECORD.fullmatch(p.stem)}
            missing = sorted(set(self._labels) - set(self._paths))
            if len(missing) == len(self._labels):
                raise EcgtoolError(f"{self.root}: REFERENCE.csv lists records but no A*.mat files were found (unpack TrainingSet1-3.zip here)")
            # A record file without a REFERENCE.csv row is read and left out by prep as unlabelled, with the
            # reason in the store's skipped_records (kept with --keep-unlabelled), never dropped unseen.
            self._ids = sorted(self._paths)
        else:
            self.release = "physionet"
            self._wfdb = WfdbDirectoryReader(self.root, discover_classes=False)
            self._ids = self._wfdb.names()

    @classmethod
    def recognises(cls, root) -> bool:
        root = Path(root)
        ref = root / "REFERENCE.csv"
        if ref.is_file():
            return ref.read_text(encoding="utf-8-sig", errors="replace").split("\n", 1)[0].strip().split(",")[:2] == REFERENCE_COLUMNS[:2]
        first = next(root.rglob("*.hea"), None)
        return first is not None and _RECORD.fullmatch(first.stem) is not None

    @staticmethod
    def _read_reference(path: Path) -> dict[str, list[str]]:
        with open_text(path) as f:
            rows = list(csv.DictReader(f))
        if not rows or rows[0].keys() < {"Recording", "First_label"}:
            raise EcgtoolError(f"{path}: expected the columns {', '.join(REFERENCE_COLUMNS)}")
        out = {}
        for row in unique_rows(path, rows, lambda r: (r["Recording"] or "").strip(), "Recording").values():
            labels = []
            for col in REFERENCE_COLUMNS[1:]:
                value = (row.get(col) or "").strip()
                if value:
                    try:
                        k = int(float(value))
                    except ValueError:
                        k = 0  # not a number: refused below with the record and the value
                    if not 1 <= k <= 9:
                        raise EcgtoolError(f"{path}: record {row['Recording']} has label {value}, outside 1-9")
                    labels.append(CLASSES[k - 1])
            out[row["Recording"].strip()] = sorted(set(labels), key=CLASSES.index)
        return out

    @property
    def leads(self) -> list[str]:
        return list(STANDARD_LEADS)

    @property
    def fs(self) -> float:
        return 500.0

    def record_ids(self) -> list[str]:
        return list(self._ids)

    def duration(self, record_id: str) -> float:
        if self.release == "physionet":
            return self._wfdb.duration(record_id)
        return self.read(record_id).signal.shape[-1] / 500.0

    def read(self, record_id: str) -> RawRecord:
        if self.release == "physionet":
            rec = self._wfdb.read(record_id)  # labels: the #Dx codes
            rec.unknown_labels = [c for c in rec.labels if c not in SNOMED_TO_CLASS]
            rec.labels = sorted({SNOMED_TO_CLASS[c] for c in rec.labels if c in SNOMED_TO_CLASS}, key=CLASSES.index)
            rec.patient_id = rec.record_id
            return rec
        from scipy.io import loadmat

        path = self._paths[record_id]
        try:
            ecg = loadmat(path)["ECG"][0][0]
            sex, age, data = ecg["sex"], ecg["age"], ecg["data"]
        except Exception as e:
            raise EcgtoolError(f"{path.name}: not a CPSC2018 .mat record ({type(e).__name__}: {e})") from e
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2 or data.shape[0] != 12:
            raise EcgtoolError(f"{path.name}: expected 12 leads × samples, found {data.shape}")
        return RawRecord(
            record_id=record_id, patient_id=record_id, signal=data, fs=500.0, leads=list(STANDARD_LEADS),
            labels=self._labels.get(record_id, []),
            unlabelled_reason="" if record_id in self._labels else "not in REFERENCE.csv",
            age=parse_age(np.ravel(age)[0] if np.size(age) else None),
            sex=parse_sex(str(np.ravel(sex)[0]) if np.size(sex) else ""),
        )
