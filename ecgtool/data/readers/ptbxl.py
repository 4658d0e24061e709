"""PTB-XL (PhysioNet ``ptb-xl`` 1.0.x) with the benchmark's six label tasks.

Source: Wagner et al., Scientific Data 7:154 (2020); the label tasks follow
Strodthoff et al., "Deep Learning for ECG Analysis: Benchmarks and Insights
from PTB-XL", IEEE JBHI 25(5) (2021), as implemented in
helme/ecg_ptbxl_benchmarking ``code/utils/utils.py`` (read for reference):

* ``all``: every statement of the record's ``scp_codes`` (71 possible);
* ``diagnostic``: its diagnostic statements (44);
* ``subdiagnostic``/``superdiagnostic``: those mapped to their
  ``diagnostic_subclass`` (23) / ``diagnostic_class`` (5: NORM, MI, STTC, CD, HYP);
* ``form`` (19) and ``rhythm`` (12): its form / rhythm statements.

As in the benchmark, a statement counts whatever its likelihood (the values in
``scp_codes`` are ignored; 0 there means "unknown", not "absent") unless
``min_likelihood`` is given; classes are those of the task that occur in the
data, sorted; records with no label in the task are dropped by ``prep``; the
official ``strat_fold`` (1–10) is kept, so ``split`` gives the benchmark's
train 1–8 / validation 9 / test 10.
"""

from __future__ import annotations

import ast
import csv
from pathlib import Path

from ecgtool.data.choices import PTBXL_RATES
from ecgtool.data.readers.base import MAX_FOLD, DatasetReader, RawRecord, open_text, table_number, unique_rows
from ecgtool.data.readers.wfdb_dir import (STANDARD_LEADS, canonical_lead, header_seconds, parse_age, parse_sex, physical_mv,
                                           read_wfdb)
from ecgtool.errors import ConfigError, EcgtoolError

TASKS = ("all", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm")
SUPERCLASS_DESCRIPTIONS = {
    "NORM": "normal ECG",
    "MI": "myocardial infarction",
    "STTC": "ST/T change",
    "CD": "conduction disturbance",
    "HYP": "hypertrophy",
}


def read_statements(path: Path) -> dict[str, dict]:
    """``scp_statements.csv``: statement code (the unnamed first column) → its row."""
    with open_text(path) as f:
        rows = list(csv.reader(f))
    header = rows[0]
    return {row[0]: dict(zip(header[1:], row[1:])) for row in rows[1:] if row and row[0]}


def _flag(row: dict, name: str) -> bool:
    return row.get(name, "").strip() in ("1", "1.0", "True")


def task_map(statements: dict[str, dict], task: str) -> dict[str, str]:
    """Statement code → the class it contributes to in ``task``."""
    if task not in TASKS:
        raise ConfigError(f"unknown PTB-XL task {task!r}; choose from {', '.join(TASKS)}", "task")
    if task == "all":
        return {code: code for code in statements}
    if task in ("form", "rhythm"):
        return {code: code for code, row in statements.items() if _flag(row, task)}
    diagnostic = {code: row for code, row in statements.items() if _flag(row, "diagnostic")}
    if task == "diagnostic":
        return {code: code for code in diagnostic}
    column = "diagnostic_subclass" if task == "subdiagnostic" else "diagnostic_class"
    return {code: row[column] for code, row in diagnostic.items() if row.get(column, "").strip()}


def task_classes(statements: dict[str, dict], task: str) -> list[str]:
    """Every class the statement table defines for ``task`` (71/44/23/5/19/12)."""
    return sorted(set(task_map(statements, task).values()))


class PtbxlReader(DatasetReader):
    name = "ptbxl"
    patient_ids = "dataset"

    def __init__(self, root, task: str = "superdiagnostic", rate: int = 100, min_likelihood: float | None = None):
        self.root = Path(root)
        if rate not in PTBXL_RATES:
            raise EcgtoolError(f"PTB-XL has records at 100 or 500 Hz, not {rate}")
        self._task, self.rate, self.min_likelihood = task, rate, min_likelihood
        self.statements = read_statements(self.root / "scp_statements.csv")
        self._map = task_map(self.statements, task)
        self.database = self.root / "ptbxl_database.csv"
        with open_text(self.database) as f:
            rows = list(csv.DictReader(f))
        need = {"ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_lr", "filename_hr"}
        if rows and not need <= set(rows[0]):
            raise EcgtoolError(f"{self.database} lacks the column(s) {', '.join(sorted(need - set(rows[0])))}")
        # Every number of the table is checked here, naming the row and column: a bad value
        # found later would be a bare ValueError (or an int8 overflow in the store) naming nothing.
        for number, r in enumerate(rows, 2):  # the header is row 1, as a spreadsheet counts
            r["_row"] = number
            r["_ecg_id"] = str(int(table_number(self.database, number, "ecg_id", r["ecg_id"], lo=0, whole=True)))
        self._rows = unique_rows(self.database, rows, lambda r: r["_ecg_id"], "ecg_id")
        self._codes = {rid: self._parse_row(r) for rid, r in self._rows.items()}
        self._labels = {rid: self._task_labels(codes) for rid, codes in self._codes.items()}
        self._classes = sorted({c for labels in self._labels.values() for c in labels})

    @classmethod
    def recognises(cls, root) -> bool:
        root = Path(root)
        return (root / "ptbxl_database.csv").is_file() and (root / "scp_statements.csv").is_file()

    def _parse_row(self, row: dict) -> dict[str, float]:
        """A row's ``scp_codes`` (code → likelihood); its patient id and fold, checked (``_patient``, ``_fold``)."""
        number = f"{row['_row']} (ecg_id {row['_ecg_id']})"  # row and record, for the messages below
        fold = row["strat_fold"]
        row["_fold"] = int(table_number(self.database, number, "strat_fold", fold, lo=0, hi=MAX_FOLD, whole=True))
        patient = (row["patient_id"] or "").strip()
        row["_patient"] = (str(int(table_number(self.database, number, "patient_id", patient, lo=0, whole=True)))
                           if patient else row["_ecg_id"])  # none given: the record is its own patient
        try:
            codes = ast.literal_eval(row["scp_codes"] or "{}")
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            codes = None
        if not isinstance(codes, dict):
            raise EcgtoolError(f"{self.database}: row {number}, column scp_codes: {row['scp_codes']!r} is not a "
                               "dictionary of SCP codes and likelihoods, e.g. {'NORM': 100.0}")
        out = {}
        for code, likelihood in codes.items():
            if not isinstance(likelihood, (int, float)) or isinstance(likelihood, bool) or not 0 <= likelihood <= 100:
                raise EcgtoolError(f"{self.database}: row {number}, column scp_codes: the likelihood {likelihood!r} of "
                                   f"{code} is not a number from 0 to 100")
            out[str(code)] = float(likelihood)
        return out

    def _task_labels(self, codes: dict[str, float]) -> list[str]:
        keep = [c for c, likelihood in codes.items() if self.min_likelihood is None or likelihood >= self.min_likelihood]
        return sorted({self._map[c] for c in keep if c in self._map})

    @property
    def task(self) -> str:
        return f"ptbxl-{self._task}"

    @property
    def classes(self) -> list[str]:
        return self._classes

    @property
    def class_descriptions(self) -> dict[str, str]:
        if self._task == "superdiagnostic":
            return {c: SUPERCLASS_DESCRIPTIONS.get(c, "") for c in self._classes}
        return {c: self.statements.get(c, {}).get("description", "") for c in self._classes}

    @property
    def leads(self) -> list[str]:
        return list(STANDARD_LEADS)

    @property
    def options(self) -> dict:
        return {"rate": self.rate, "min_likelihood": self.min_likelihood}

    @property
    def fs(self) -> float:
        return float(self.rate)

    def record_ids(self) -> list[str]:
        return sorted(self._rows, key=int)

    def _path(self, record_id: str) -> Path:
        row = self._rows[record_id]
        return self.root / (row["filename_lr"] if self.rate == 100 else row["filename_hr"])

    def duration(self, record_id: str) -> float:
        # From the header, not the 10 s PTB-XL promises: --seconds 0 must not crop a longer record.
        return header_seconds(self._path(record_id), record_id)

    def read(self, record_id: str) -> RawRecord:
        row = self._rows[record_id]
        rec = read_wfdb(self._path(record_id), record_id)
        sex = parse_sex(str(row.get("sex", "")).split(".")[0])  # 0 = male, 1 = female
        return RawRecord(
            record_id=record_id,
            patient_id=row["_patient"],
            signal=physical_mv(rec),
            fs=float(rec.fs),
            leads=[canonical_lead(n) for n in rec.sig_name],
            labels=self._labels[record_id],
            fold=row["_fold"],
            age=parse_age(row.get("age")),
            sex=sex,
            # codes the statement table does not define: counted and named by prep, as other readers' unknown codes
            unknown_labels=[c for c in self._codes[record_id] if c not in self.statements],
        )
