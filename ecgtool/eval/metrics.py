"""Classification metrics of the field, computed with scikit-learn where it has them.

``y`` is the store's label matrix ``[N, K]`` (multi-hot, or one-hot for
multi-class tasks), ``p`` the predicted probabilities ``[N, K]`` (sigmoid for
multi-label, softmax for multi-class) and ``yhat`` the binary decisions. A
class with only one label value in ``y`` has no AUROC/AUPRC; it is reported as
NaN and left out of the macro average, and the report says how many classes
the average covers.

Beyond scikit-learn:
* F_beta and G_beta (beta = 2) as in the PhysioNet/CinC Challenge 2020
  evaluation code (``compute_beta_measures``), which the PTB-XL benchmark
  (helme/ecg_ptbxl_benchmarking ``utils.challenge_metrics``) also reports: each
  record's TP/FP/FN/TN contributions are divided by its number of labels (at
  least 1); ``F = (1+b²)TP / ((1+b²)TP + FP + b²FN)``, ``G = TP / (TP + FP + b·FN)``;
  classes with a zero denominator are left out of the macro mean.
* Fmax (multi-label tasks), sample-centric as in CAFA (Radivojac et al. 2013) and the PTB-XL
  benchmarks paper (Strodthoff et al. 2021): the best over one threshold shared
  by all classes of ``2PR/(P+R)``, where P averages precision over records with
  at least one predicted class and R averages recall over records with labels.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

FMAX_GRID = np.linspace(0.0, 1.0, 101)
BETA = 2.0


def _per_class(score, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    out = np.full(y.shape[1], np.nan)
    for k in range(y.shape[1]):
        if 0 < y[:, k].sum() < len(y):
            out[k] = score(y[:, k], p[:, k])
    return out


def per_class_auc(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    return _per_class(skm.roc_auc_score, y, p)


def per_class_ap(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Area under the precision-recall curve as average precision (step-wise, no interpolation)."""
    return _per_class(skm.average_precision_score, y, p)


def nanmean_or_none(values: np.ndarray) -> float | None:
    return float(np.nanmean(values)) if np.isfinite(values).any() else None


def macro_auc(y: np.ndarray, p: np.ndarray) -> float:
    value = nanmean_or_none(per_class_auc(y, p))
    return float("nan") if value is None else value


def predict_labels(p: np.ndarray, multi_label: bool, thresholds) -> np.ndarray:
    """Binary decisions: per-class thresholds for multi-label, argmax for multi-class."""
    if not multi_label:
        return np.eye(p.shape[1], dtype=np.uint8)[p.argmax(axis=1)]
    t = np.full(p.shape[1], 0.5) if thresholds is None else np.asarray(thresholds)
    return (p >= t).astype(np.uint8)


def label_normalised_counts(y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
    """Per record and class, ``[4, N, K]`` TP, FP, FN, TN indicators divided by the record's label count."""
    norm = np.maximum(y.sum(axis=1, keepdims=True), 1).astype(np.float64)
    y, yhat = y.astype(bool), yhat.astype(bool)
    return np.stack([y & yhat, ~y & yhat, y & ~yhat, ~y & ~yhat]) / norm


def beta_measures(tp, fp, fn, beta: float = BETA) -> tuple[np.ndarray, np.ndarray]:
    """Per class F_beta and G_beta from (label-normalised) counts; NaN where undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        f = (1 + beta**2) * tp / ((1 + beta**2) * tp + fp + beta**2 * fn)
        g = tp / (tp + fp + beta * fn)
    return f, g


def fbeta_gbeta(y: np.ndarray, yhat: np.ndarray, beta: float = BETA) -> tuple[float | None, float | None]:
    tp, fp, fn, _ = label_normalised_counts(y, yhat).sum(axis=1)
    f, g = beta_measures(tp, fp, fn, beta)
    return nanmean_or_none(f), nanmean_or_none(g)


FMAX_RECORDS = 2048  # records per step of the Fmax terms: bounds the [records, T, K] comparison (2048 × 101 × K bytes)


def _fmax_terms(y: np.ndarray, p: np.ndarray, grid: np.ndarray) -> np.ndarray:
    decided = p[:, None, :] >= grid[None, :, None]  # [N, T, K]
    hits = (decided & y.astype(bool)[:, None, :]).sum(axis=2)
    npred = decided.sum(axis=2)
    nlab = y.sum(axis=1)[:, None].astype(np.float64)
    has_pred = npred > 0
    precision = np.where(has_pred, hits / np.maximum(npred, 1), 0.0)
    has_label = np.broadcast_to(nlab > 0, hits.shape)
    recall = np.where(has_label, hits / np.maximum(nlab, 1), 0.0)
    return np.stack([precision, has_pred, recall, has_label]).astype(np.float64, copy=False)


def _record_steps(n: int):
    return (slice(s, s + FMAX_RECORDS) for s in range(0, n, FMAX_RECORDS))


def fmax_terms(y: np.ndarray, p: np.ndarray, grid: np.ndarray = FMAX_GRID) -> np.ndarray:
    """Per record and threshold ``[4, N, T]``: precision, has-prediction, recall, has-label.

    Sums of these over (resampled) records give P(t) and R(t), so the bootstrap
    reuses them. Computed ``FMAX_RECORDS`` records at a time: the ``[N, T, K]``
    comparison behind them would be 101 × the store's labels.
    """
    out = np.empty((4, len(y), len(grid)))
    for rows in _record_steps(len(y)):
        out[:, rows] = _fmax_terms(y[rows], p[rows], grid)
    return out


def fmax_sums(y: np.ndarray, p: np.ndarray, grid: np.ndarray = FMAX_GRID) -> np.ndarray:
    """``fmax_terms(y, p).sum(axis=1)`` without holding the terms: each step's records are added to the running
    sums in record order, as numpy adds the rows of one ``[4, N, T]`` array (so the sums are bit-identical)."""
    sums = np.zeros((4, len(grid)))
    for rows in _record_steps(len(y)):
        sums = np.concatenate([sums[:, None], _fmax_terms(y[rows], p[rows], grid)], axis=1).sum(axis=1)
    return sums


def fmax_from_sums(sums: np.ndarray, grid: np.ndarray = FMAX_GRID) -> tuple[np.ndarray, np.ndarray]:
    """(Fmax, its threshold) from ``[4, ..., T]`` sums of ``fmax_terms`` over records."""
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = sums[0] / sums[1]
        recall = sums[2] / sums[3]
        f = np.nan_to_num(2 * precision * recall / (precision + recall))
    best = f.argmax(axis=-1)
    return np.take_along_axis(f, best[..., None], -1)[..., 0], grid[best]


def fmax(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    value, threshold = fmax_from_sums(fmax_sums(y, p))
    return float(value), float(threshold)


def count_ratios(tp, fp, fn, tn) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, precision and F1 from 2x2 counts (arrays); NaN where a ratio is
    undefined (no positives, no negatives, nothing predicted, or none of these for F1), as the
    CinC evaluation code does, so that macro means skip those classes instead of counting 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "sensitivity": np.where(tp + fn > 0, tp / (tp + fn), np.nan),
            "specificity": np.where(tn + fp > 0, tn / (tn + fp), np.nan),
            "precision": np.where(tp + fp > 0, tp / (tp + fp), np.nan),
            "f1": np.where(tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan),
        }


def _value(v) -> float | None:
    return None if np.isnan(v) else float(v)


def classification_report(y: np.ndarray, p: np.ndarray, classes: list[str], multi_label: bool, thresholds) -> dict:
    """Every number ``eval`` prints: per class, and macro (unweighted mean over the classes where a
    value is defined)."""
    yhat = predict_labels(p, multi_label, thresholds)
    auc, ap = per_class_auc(y, p), per_class_ap(y, p)
    (tn, fp), (fn, tp) = np.moveaxis(skm.multilabel_confusion_matrix(y, yhat), 0, -1)
    ratios = count_ratios(tp, fp, fn, tn)
    per_class = []
    for k, c in enumerate(classes):
        per_class.append({
            "class": c,
            "support": int(tp[k] + fn[k]),
            "auroc": _value(auc[k]),
            "auprc": _value(ap[k]),
            **{name: _value(v[k]) for name, v in ratios.items()},
            "accuracy": float((tp[k] + tn[k]) / len(y)),
            "threshold": None if not multi_label else 0.5 if thresholds is None else float(thresholds[k]),
            "confusion": {"tp": int(tp[k]), "fp": int(fp[k]), "fn": int(fn[k]), "tn": int(tn[k])},
        })
    f_beta, g_beta = fbeta_gbeta(y, yhat)
    macro = {
        "auroc": nanmean_or_none(auc),
        "auroc_classes": int(np.isfinite(auc).sum()),
        "auprc": nanmean_or_none(ap),
        **{name: nanmean_or_none(v) for name, v in ratios.items()},
        "f_beta2": f_beta,
        "g_beta2": g_beta,
    }
    report = {"records": int(len(y)), "macro": macro, "per_class": per_class}
    if multi_label:
        macro["fmax"], macro["fmax_threshold"] = fmax(y, p)
        macro["accuracy"] = float(np.mean([c["accuracy"] for c in per_class]))  # label-wise
        macro["exact_match"] = float(np.mean((yhat == y).all(axis=1)))
    else:
        truth, chosen = y.argmax(1), yhat.argmax(1)
        macro["accuracy"] = float(np.mean(truth == chosen))
        report["confusion_matrix"] = skm.confusion_matrix(truth, chosen, labels=range(len(classes))).tolist()
    return report
