"""PhysioNet/CinC Challenge 2020/2021 training data (and other ``#Dx:``-labelled WFDB sets).

Sources: Perez Alday et al., Physiol Meas 41 (2020) and Reyna et al., CinC 48
(2021); the label logic follows the challenges' evaluation code
(physionetchallenges/evaluation-2021 ``helper_code.py``/``evaluate_model.py``,
read for reference): a record is positive for a class when any of its ``#Dx``
SNOMED CT codes belongs to it; codes the challenge scores as the same diagnosis
(its mapping table's Notes) form one class; unscored codes are ignored.

Tasks: ``scored`` (2021: 30 codes in 26 classes), ``scored2020`` (27 codes in 24
classes: 2021's set without 6374002, 733534002 and 365413008, and without the
CLBBB/LBBB merge), ``all`` (every code of both mapping tables that occurs in the
data). Class names are the table's abbreviations (merged classes joined by
``|`` as in the challenge's ``weights_abbreviations.csv``); the store records each
class's codes in ``class_codes`` for the challenge metric. The data carry no
patient identifiers; each record's source (``cpsc_2018``, ``georgia``, …, the
directory below ``training/``) is kept in the store's ``source`` array.
"""

from __future__ import annotations

import csv
import re
from functools import lru_cache
from pathlib import Path

from ecgtool.data.readers.base import DatasetReader, RawRecord
from ecgtool.data.readers.wfdb_dir import WfdbDirectoryReader, parse_comments
from ecgtool.errors import ConfigError, EcgtoolError

TABLES = Path(__file__).resolve().parents[1] / "tables"
TASKS = ("scored", "scored2020", "all")
NEW_IN_2021 = {"6374002", "733534002", "365413008"}
_SAME = re.compile(r"score (\d+) and (\d+) as the same")


@lru_cache(maxsize=None)
def mapping(kind: str) -> tuple[dict[str, tuple[str, str]], list[tuple[str, str]]]:
    """{code: (abbreviation, name)} of a mapping table, and its equivalent-code pairs."""
    rows, pairs = {}, []
    with open(TABLES / f"cinc_dx_mapping_{kind}.csv", newline="") as f:
        for r in csv.DictReader(f):
            rows[r["SNOMEDCTCode"].strip()] = (r["Abbreviation"].strip(), r["Dx"].strip())
            m = _SAME.search(r.get("Notes", "") or "")
            if m and m.groups() not in pairs:
                pairs.append(m.groups())
    return rows, pairs


def task_classes(task: str, present: set[str] | None = None) -> dict[str, list[str]]:
    """Class name → its SNOMED codes, in the order of the mapping tables."""
    if task not in TASKS:
        raise ConfigError(f"unknown CinC task {task!r}; choose from {', '.join(TASKS)}", "task")
    scored, pairs = mapping("scored")
    codes = list(scored)
    if task == "scored2020":
        codes = [c for c in codes if c not in NEW_IN_2021]
        pairs = [p for p in pairs if not set(p) & NEW_IN_2021]
    elif task == "all":
        codes += [c for c in mapping("unscored")[0] if c not in scored]
    table = {**mapping("unscored")[0], **scored}
    partner = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    classes: dict[str, list[str]] = {}
    seen: set[str] = set()
    for code in codes:
        if code in seen:
            continue
        group = [code] + ([partner[code]] if code in partner and partner[code] in codes else [])
        seen.update(group)
        # "all" keeps the classes that occur, named as everywhere else (a merged pair keeps its full name)
        if present is None or set(group) & present:
            classes["|".join(table[c][0] for c in group)] = group
    return classes


class CincReader(DatasetReader):
    name = "cinc"
    patient_ids = "record"

    def __init__(self, root, task: str = "scored"):
        self.root = Path(root)
        self._task = task
        self._wfdb = WfdbDirectoryReader(self.root, discover_classes=False)
        present = None
        if task == "all":
            present = set()
            for name in self._wfdb.names():
                try:
                    present.update(self._codes(name))
                except EcgtoolError:
                    pass  # an unreadable header is prep's to fail or skip (--on-error), by record
        self._class_codes = task_classes(task, present)
        self._code_to_class = {c: name for name, codes in self._class_codes.items() for c in codes}

    @classmethod
    def recognises(cls, root) -> bool:
        first = next(Path(root).rglob("*.hea"), None)
        if first is None or (Path(root) / "labels.csv").exists() or (Path(root) / "classes.csv").exists():
            return False
        return any(line.lstrip("# ").lower().startswith("dx:") for line in first.read_text(errors="replace").splitlines())

    def _codes(self, record_id: str) -> list[str]:
        comments = parse_comments(self._wfdb._header(record_id).comments or [])
        return [c.strip() for c in comments.get("dx", "").split(",") if c.strip()]

    @property
    def task(self) -> str:
        return f"cinc-{self._task}"

    @property
    def classes(self) -> list[str]:
        return list(self._class_codes)

    @property
    def class_descriptions(self) -> dict[str, str]:
        table = {**mapping("unscored")[0], **mapping("scored")[0]}
        return {name: " | ".join(table[c][1] for c in codes) for name, codes in self._class_codes.items()}

    @property
    def extra_attrs(self) -> dict:
        return {"class_codes": self._class_codes, "label_coding": "SNOMED CT"}

    @property
    def leads(self) -> list[str]:
        return self._wfdb.leads

    def record_ids(self) -> list[str]:
        return self._wfdb.names()

    def duration(self, record_id: str) -> float:
        return self._wfdb.duration(record_id)

    def read(self, record_id: str) -> RawRecord:
        rel = self._wfdb.path_of(record_id)
        rec = self._wfdb.read(rel)  # without classes.csv its labels are the #Dx codes themselves
        rec.unknown_labels = [c for c in rec.labels if c not in self._code_to_class]
        rec.labels = sorted({self._code_to_class[c] for c in rec.labels if c in self._code_to_class}, key=self.classes.index)
        rec.patient_id = rec.record_id
        parts = (self.root / rel).resolve().parts
        rec.source = parts[parts.index("training") + 1] if "training" in parts[:-1] else self.root.resolve().name
        return rec
