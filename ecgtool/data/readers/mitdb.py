"""MIT-BIH Arrhythmia Database (PhysioNet ``mitdb`` 1.0.0) as a beat store.

Source: Moody GB, Mark RG, IEEE Eng Med Biol 20(3):45-50 (2001). 48 half-hour
two-lead records at 360 Hz with reference beat annotations (``.atr``). Beats
are grouped into the AAMI EC57 classes used by heartbeat classifiers:

    N = {N, L, R, e, j}   S = {A, a, J, S}   V = {V, E}   F = {F}   Q = {/, f, Q}

Other annotation symbols (rhythm changes, noise, non-conducted P waves …) are
not beats and are left out. Following the AAMI recommendation, the paced
records 102, 104, 107 and 217 are left out unless ``keep_paced``. The official
fold is de Chazal et al.'s inter-patient split (IEEE TBME 51(7), 2004): 1 = DS1
(training), 2 = DS2 (testing); paced records get fold 0. Each record is one
patient. ``prep --beat-window PRE,POST`` cuts one row per annotated beat (the
annotation's sample is the R peak), so a store row is a beat; ``record_id`` is
the record and ``beat_sample`` the beat's position at the store's rate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ecgtool.data.readers.base import DatasetReader, RawRecord
from ecgtool.data.readers.wfdb_dir import physical_mv, read_wfdb
from ecgtool.errors import EcgtoolError

AAMI = {
    "N": "N", "L": "N", "R": "N", "e": "N", "j": "N",
    "A": "S", "a": "S", "J": "S", "S": "S",
    "V": "V", "E": "V",
    "F": "F",
    "/": "Q", "f": "Q", "Q": "Q",
}
CLASSES = ["N", "S", "V", "F", "Q"]
DESCRIPTIONS = {
    "N": "normal and bundle branch block beats", "S": "supraventricular ectopic beats",
    "V": "ventricular ectopic beats", "F": "fusion of ventricular and normal beats", "Q": "paced and unclassifiable beats",
}
PACED = ("102", "104", "107", "217")
DS1 = ("101", "106", "108", "109", "112", "114", "115", "116", "118", "119", "122", "124",
       "201", "203", "205", "207", "208", "209", "215", "220", "223", "230")
DS2 = ("100", "103", "105", "111", "113", "117", "121", "123", "200", "202", "210", "212",
       "213", "214", "219", "221", "222", "228", "231", "232", "233", "234")


class MitdbReader(DatasetReader):
    name = "mitdb"
    patient_ids = "dataset"
    beat_annotated = True
    CLASSES = tuple(CLASSES)
    DESCRIPTIONS = DESCRIPTIONS
    MULTI_LABEL = False

    def __init__(self, root, keep_paced: bool = False):
        self.root = Path(root)
        listing = self.root / "RECORDS"
        names = [ln.strip() for ln in listing.read_text().splitlines() if ln.strip()] if listing.is_file() else \
            sorted(p.stem for p in self.root.glob("*.atr"))
        self._ids = [r for r in names if keep_paced or r not in PACED]
        if not self._ids:
            raise EcgtoolError(f"{self.root}: no MIT-BIH records found")
        self.keep_paced = keep_paced

    @property
    def options(self) -> dict:
        return {"keep_paced": self.keep_paced}

    @classmethod
    def recognises(cls, root) -> bool:
        root = Path(root)
        return (root / "100.atr").is_file() or (root / "101.atr").is_file()

    @property
    def task(self) -> str:
        return "mitdb-aami"

    @property
    def leads(self) -> list[str]:
        return ["MLII"]  # the one lead every record has; the second channel varies (V1, V2, V4, V5)

    def record_ids(self) -> list[str]:
        return list(self._ids)

    def read(self, record_id: str) -> RawRecord:
        import wfdb

        path = str(self.root / record_id)
        rec = read_wfdb(path, record_id)
        try:
            ann = wfdb.rdann(path, "atr")
        except Exception as e:
            raise EcgtoolError(f"{record_id}: unreadable record or annotations ({type(e).__name__}: {e})") from e
        keep = [i for i, s in enumerate(ann.symbol) if s in AAMI]
        # The first header comment is "<age> <sex> ..." (e.g. "69 M 1085 1629 x1"); '?' when unknown.
        tokens = (rec.comments or [""])[0].split()
        age = float(tokens[0]) if tokens and tokens[0].isdigit() else np.nan
        sex = tokens[1] if len(tokens) > 1 and tokens[1] in ("M", "F") else ""
        return RawRecord(
            record_id=record_id, patient_id=record_id, signal=physical_mv(rec), fs=float(rec.fs),
            leads=[n.strip() for n in rec.sig_name], labels=[],
            fold=1 if record_id in DS1 else 2 if record_id in DS2 else 0,
            age=age, sex=sex,
            beats=(np.asarray(ann.sample)[keep], [AAMI[ann.symbol[i]] for i in keep]),
        )
