"""The PhysioNet/CinC Challenge 2020/2021 scoring metric for SNOMED-coded classes.

Definition (read in the challenges' own evaluation code, physionetchallenges/
evaluation-2021 ``evaluate_model.py`` @ e2a75fc and evaluation-2020
``evaluate_12ECG_score.py`` @ 8ad0242; Perez Alday et al. 2020, Reyna et al.
2021): a record with true classes L and predicted classes O adds
``W[j, k] / max(1, |L ∪ O|)`` for every j in L and k in O. The observed total is
normalised between the total of a model that always outputs only sinus rhythm
(426783006), scored 0, and the total of a model that always outputs the truth,
scored 1.

Because every record's contribution is a scalar, the totals are sums over
records of per-record terms; ``record_terms`` returns them so the bootstrap can
resample records without recomputing anything.

The weight matrices are the challenges' published ``weights.csv`` files,
shipped in ``ecgtool/data/tables`` (BSD 2-clause, PhysioNet/CinC Challenges).
2021 lists merged equivalent codes as ``a|b``; 2020 lists them separately and
the evaluation code merges three pairs, keeping the first code's row.
"""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np

TABLES = Path(__file__).resolve().parents[1] / "data" / "tables"
SINUS_RHYTHM = "426783006"
# evaluation-2020: equivalent_classes, hard-coded in evaluate_12ECG_score.py
EQUIVALENT_2020 = (("713427006", "59118001"), ("284470004", "63593006"), ("427172004", "17338001"))


@lru_cache(maxsize=None)
def challenge_weights(year: int) -> tuple[list[frozenset[str]], np.ndarray]:
    """(classes as sets of SNOMED codes, weight matrix) of the 2020 or 2021 challenge."""
    with open(TABLES / f"cinc{year}_weights.csv", newline="") as f:
        rows = list(csv.reader(f))
    names = [c.strip() for c in rows[0][1:]]
    assert names == [r[0].strip() for r in rows[1:]], "weights table rows and columns differ"
    values = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    if year == 2020:
        # Merge equivalent codes into the first code's class, keeping its row, as the 2020 evaluation code does.
        representative = {b: a for a, b in EQUIVALENT_2020}
        groups: dict[str, list[int]] = {}
        for i, name in enumerate(names):
            groups.setdefault(representative.get(name, name), []).append(i)
        keep = [rows_[0] for rows_ in groups.values()]
        classes = [frozenset(names[i] for i in rows_) for rows_ in groups.values()]
        values = values[np.ix_(keep, keep)]
    else:
        classes = [frozenset(n.split("|")) for n in names]
    return classes, values


def weights_for(class_codes: dict[str, list[str]], task: str) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Map a store's classes onto the challenge's: ``(store column per challenge class
    [-1 = absent], weights, challenge year)``, or None when the store is not SNOMED-coded
    or lacks the sinus-rhythm class the metric is normalised by."""
    year = 2020 if task.endswith("scored2020") else 2021
    classes, weights = challenge_weights(year)
    column = np.full(len(classes), -1)
    for col, codes in enumerate(class_codes.values()):
        for i, target in enumerate(classes):
            if set(codes) & target:
                column[i] = col
    sinus = next(i for i, c in enumerate(classes) if SINUS_RHYTHM in c)
    if column[sinus] < 0 or (column >= 0).sum() < 2:
        return None
    return column, weights, year


def _select(matrix: np.ndarray, column: np.ndarray) -> np.ndarray:
    """Challenge-class columns of a store-class matrix (absent classes are all zero)."""
    out = np.zeros((len(matrix), len(column)), dtype=np.float64)
    present = column >= 0
    out[:, present] = matrix[:, column[present]]
    return out


def _terms(labels: np.ndarray, outputs: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per record: ``sum_jk W[j,k] L[j] O[k] / max(1, |L ∪ O|)``."""
    union = np.maximum(np.logical_or(labels, outputs).sum(axis=1), 1)
    return np.einsum("ij,jk,ik->i", labels, weights, outputs) / union


def record_terms(y: np.ndarray, yhat: np.ndarray, mapping) -> np.ndarray:
    """``[3, N]``: each record's observed, correct-model and sinus-rhythm-model terms."""
    column, weights, _ = mapping
    labels, outputs = _select(y, column), _select(yhat, column)
    inactive = np.zeros_like(labels)
    inactive[:, next(i for i, c in enumerate(challenge_weights(mapping[2])[0]) if SINUS_RHYTHM in c)] = 1
    return np.stack([_terms(labels, outputs, weights), _terms(labels, labels, weights), _terms(labels, inactive, weights)])


def score_from_totals(totals: np.ndarray) -> np.ndarray:
    """Normalised score from summed terms ``[3, ...]``; 0 where correct == inactive, as upstream."""
    observed, correct, inactive = totals
    span = correct - inactive
    return np.where(span != 0, (observed - inactive) / np.where(span != 0, span, 1), 0.0)


def challenge_metric(y: np.ndarray, yhat: np.ndarray, mapping) -> float:
    return float(score_from_totals(record_terms(y, yhat, mapping).sum(axis=1)))
