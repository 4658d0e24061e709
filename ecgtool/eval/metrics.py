"""Classification metrics, computed with scikit-learn, and threshold tuning.

``y`` is the store's label matrix ``[N, K]`` (multi-hot, or one-hot for
multi-class tasks) and ``p`` the predicted probabilities ``[N, K]`` (sigmoid for
multi-label, softmax for multi-class). A class with only one label value in
``y`` has no AUC; it is reported as NaN and left out of the macro average, and
the report says how many classes the average covers.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn import metrics as skm


def per_class_auc(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    out = np.full(y.shape[1], np.nan)
    for k in range(y.shape[1]):
        if 0 < y[:, k].sum() < len(y):
            out[k] = skm.roc_auc_score(y[:, k], p[:, k])
    return out


def macro_auc(y: np.ndarray, p: np.ndarray) -> float:
    auc = per_class_auc(y, p)
    return float(np.nanmean(auc)) if np.isfinite(auc).any() else float("nan")


def predict_labels(p: np.ndarray, multi_label: bool, thresholds: np.ndarray | None) -> np.ndarray:
    """Binary decisions: per-class thresholds for multi-label, argmax for multi-class."""
    if not multi_label:
        return np.eye(p.shape[1], dtype=np.uint8)[p.argmax(axis=1)]
    t = np.full(p.shape[1], 0.5) if thresholds is None else np.asarray(thresholds)
    return (p >= t).astype(np.uint8)


def tune_thresholds(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per-class threshold maximising F1 on (validation) data; 0.5 for a class with no positives.

    Candidates are the midpoints between consecutive distinct scores, so the
    chosen threshold sits between a positive and a negative, not on either.
    """
    out = np.full(y.shape[1], 0.5)
    for k in range(y.shape[1]):
        if y[:, k].sum() == 0:
            continue
        precision, recall, thr = skm.precision_recall_curve(y[:, k], p[:, k])
        f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
        best = int(np.argmax(f1[:-1])) if len(thr) else 0
        if len(thr):
            scores = np.unique(p[:, k])
            pos = np.searchsorted(scores, thr[best])
            lower = scores[pos - 1] if pos > 0 else thr[best] - 1e-6
            out[k] = float((lower + thr[best]) / 2)
    return out


def classification_report(y: np.ndarray, p: np.ndarray, classes: list[str], multi_label: bool, thresholds) -> dict:
    """Every number ``eval`` prints: per class and macro (unweighted mean over classes)."""
    yhat = predict_labels(p, multi_label, thresholds)
    auc = per_class_auc(y, p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zero-division cases are set to 0 explicitly below
        precision, recall, f1, support = skm.precision_recall_fscore_support(y, yhat, average=None, zero_division=0)
    per_class = []
    for k, c in enumerate(classes):
        tn, fp, fn, tp = skm.confusion_matrix(y[:, k], yhat[:, k], labels=[0, 1]).ravel()
        per_class.append({
            "class": c,
            "support": int(support[k]),
            "auc": None if np.isnan(auc[k]) else float(auc[k]),
            "f1": float(f1[k]),
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "specificity": float(tn / (tn + fp)) if tn + fp else 0.0,
            "accuracy": float((tp + tn) / len(y)),
            "threshold": None if not multi_label else 0.5 if thresholds is None else float(thresholds[k]),
        })
    macro = {
        "auc": float(np.nanmean(auc)) if np.isfinite(auc).any() else None,
        "auc_classes": int(np.isfinite(auc).sum()),
        "f1": float(np.mean(f1)),
        "precision": float(np.mean(precision)),
        "recall": float(np.mean(recall)),
        "specificity": float(np.mean([c["specificity"] for c in per_class])),
    }
    if multi_label:
        macro["accuracy"] = float(np.mean([c["accuracy"] for c in per_class]))  # label-wise
        macro["exact_match"] = float(np.mean((yhat == y).all(axis=1)))
    else:
        macro["accuracy"] = float(np.mean(yhat.argmax(1) == y.argmax(1)))
    return {"records": int(len(y)), "macro": macro, "per_class": per_class}
