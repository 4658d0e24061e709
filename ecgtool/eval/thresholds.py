"""Decision thresholds for multi-label models, tuned on validation data.

Objectives: ``f1`` (maximise F1) or ``youden`` (maximise sensitivity +
specificity − 1, the PTB-XL benchmark's ``find_optimal_cutoff_threshold``).
Scopes: ``class`` (one threshold per class) or ``global`` (one threshold for
every class, maximising the macro mean of the objective).

Per-class thresholds sit at the midpoint between the chosen score and the next
lower distinct score, so that the decision does not hinge on a tie at the
boundary; a class with no positives (or no negatives, for Youden) keeps 0.5 and
is left out of the global objective. Scores are compared in float64: the
midpoint of two adjacent float32 probabilities (saturated sigmoids near 1) is
not representable in float32 and would round onto one of them.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

OBJECTIVES = ("f1", "youden")
SCOPES = ("class", "global")


def _midpoint_below(scores: np.ndarray, threshold: float) -> float:
    distinct = np.unique(scores)
    pos = np.searchsorted(distinct, threshold)
    lower = distinct[pos - 1] if pos > 0 else threshold - 1e-6
    return float((lower + threshold) / 2)


def _best_threshold(y: np.ndarray, p: np.ndarray, objective: str) -> float | None:
    if objective == "f1":
        if y.sum() == 0:
            return None
        precision, recall, thr = skm.precision_recall_curve(y, p)
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        return float(thr[int(np.argmax(f1[:-1]))])
    if not 0 < y.sum() < len(y):
        return None
    fpr, tpr, thr = skm.roc_curve(y, p, drop_intermediate=False)
    best = int(np.argmax((tpr - fpr)[1:])) + 1  # thr[0] is +inf: "predict nothing"
    return float(thr[best])


def _global_objective(y: np.ndarray, p: np.ndarray, t: float, objective: str) -> float:
    """Macro mean of the objective over the classes it is defined for (positives, and negatives for Youden)."""
    pos = y.sum(0)
    keep = (pos > 0) & ((pos < len(y)) | (objective == "f1"))
    y, p = y[:, keep], p[:, keep]
    yhat = p >= t
    tp = (yhat & (y == 1)).sum(0)
    fp = (yhat & (y == 0)).sum(0)
    fn = (~yhat & (y == 1)).sum(0)
    tn = (~yhat & (y == 0)).sum(0)
    if objective == "f1":
        return float(np.mean(2 * tp / np.maximum(2 * tp + fp + fn, 1)))
    return float(np.mean(tp / np.maximum(tp + fn, 1) + tn / np.maximum(tn + fp, 1) - 1))


def tune_thresholds(y: np.ndarray, p: np.ndarray, objective: str = "f1", scope: str = "class") -> np.ndarray:
    """Thresholds ``[K]`` maximising ``objective`` on ``(y, p)``."""
    if objective not in OBJECTIVES or scope not in SCOPES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, scope one of {SCOPES}")
    p = np.asarray(p, dtype=np.float64)
    if scope == "global":
        # Candidates: the midpoints between consecutive distinct scores (quantiles when there are many).
        distinct = np.unique(p)
        if len(distinct) > 1001:
            distinct = np.unique(np.quantile(p, np.linspace(0, 1, 1001)))
        candidates = np.concatenate([[distinct[0]], (distinct[1:] + distinct[:-1]) / 2])
        scores = [_global_objective(y, p, t, objective) for t in candidates]
        return np.full(p.shape[1], float(candidates[int(np.argmax(scores))]))
    out = np.full(p.shape[1], 0.5)
    for k in range(p.shape[1]):
        best = _best_threshold(y[:, k], p[:, k], objective)
        if best is not None:
            out[k] = _midpoint_below(p[:, k], best)
    return out


def checkpoint_thresholds(ckpt) -> tuple[np.ndarray | None, str]:
    """A checkpoint's own decision rule and where it comes from: its tuned thresholds (multi-label), 0.5 where it
    has none, or None for the argmax of a multi-class model (``eval`` without ``--val``, ``predict``)."""
    if not ckpt.multi_label:
        return None, "argmax (multi-class)"
    if ckpt.thresholds is None:
        return np.full(len(ckpt.classes), 0.5), "default 0.5 (the checkpoint has no tuned thresholds)"
    return np.asarray(ckpt.thresholds["values"], dtype=np.float64), f"checkpoint: {ckpt.thresholds['source']}"
