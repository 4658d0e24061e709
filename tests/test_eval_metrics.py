"""Metric values against scikit-learn, hand-computed cases and the challenges' definitions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from ecgtool.eval import challenge
from ecgtool.eval.metrics import classification_report, fbeta_gbeta, fmax, predict_labels
from ecgtool.eval.thresholds import tune_thresholds


def random_case(n=300, k=5, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.25).astype(np.uint8)
    p = np.round(np.clip(0.35 * y + 0.65 * rng.random((n, k)), 0, 1), 2)  # rounded: ties occur
    return y, p


def test_report_matches_scikit_learn():
    y, p = random_case()
    t = np.array([0.3, 0.4, 0.5, 0.6, 0.7])
    rep = classification_report(y, p, list("abcde"), True, t)
    yhat = (p >= t).astype(int)
    for k, c in enumerate(rep["per_class"]):
        assert c["auroc"] == pytest.approx(skm.roc_auc_score(y[:, k], p[:, k]))
        assert c["auprc"] == pytest.approx(skm.average_precision_score(y[:, k], p[:, k]))
        assert c["f1"] == pytest.approx(skm.f1_score(y[:, k], yhat[:, k]))
        assert c["sensitivity"] == pytest.approx(skm.recall_score(y[:, k], yhat[:, k]))
        assert c["specificity"] == pytest.approx(skm.recall_score(1 - y[:, k], 1 - yhat[:, k]))
        tn, fp, fn, tp = skm.confusion_matrix(y[:, k], yhat[:, k]).ravel()
        assert c["confusion"] == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    m = rep["macro"]
    assert m["auroc"] == pytest.approx(skm.roc_auc_score(y, p, average="macro"))
    assert m["auprc"] == pytest.approx(skm.average_precision_score(y, p, average="macro"))
    assert m["f1"] == pytest.approx(skm.f1_score(y, yhat, average="macro"))
    assert m["exact_match"] == pytest.approx(skm.accuracy_score(y, yhat))  # subset accuracy


def test_class_without_positives_is_left_out_of_ranking_metrics():
    y, p = random_case()
    y[:, 2] = 0
    m = classification_report(y, p, list("abcde"), True, None)
    assert m["per_class"][2]["auroc"] is None and m["per_class"][2]["auprc"] is None
    assert m["macro"]["auroc_classes"] == 4
    assert m["per_class"][2]["sensitivity"] is None  # undefined, not 0, and left out of the macro mean
    defined = [c["sensitivity"] for c in m["per_class"] if c["sensitivity"] is not None]
    assert len(defined) == 4 and m["macro"]["sensitivity"] == pytest.approx(np.mean(defined))
    assert m["macro"]["auroc"] == pytest.approx(np.mean([c["auroc"] for c in m["per_class"] if c["auroc"] is not None]))


def test_multiclass_report_has_a_confusion_matrix():
    y = np.eye(3, dtype=np.uint8)[[0, 0, 1, 2, 2, 2]]
    p = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .8, .1], [.1, .1, .8], [.6, .2, .2], [.2, .2, .6]])
    rep = classification_report(y, p, ["a", "b", "c"], False, None)
    assert rep["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert rep["macro"]["accuracy"] == pytest.approx(4 / 6)
    assert all(c["threshold"] is None for c in rep["per_class"])


def test_beta_measures_by_hand():
    # Label counts 1, 2, 1. Class 0: TP 1, FN 1/2, FP 1; class 1: TP 1/2 + 1, TN 1.
    y = np.array([[1, 0], [1, 1], [0, 1]])
    yhat = np.array([[1, 0], [0, 1], [1, 1]])
    f, g = fbeta_gbeta(y, yhat)
    assert f == pytest.approx((5 / 8 + 1) / 2)
    assert g == pytest.approx((1 / 3 + 1) / 2)


def test_beta_measures_equal_the_ptbxl_benchmark_loop():
    """helme/ecg_ptbxl_benchmarking utils.challenge_metrics, re-derived as a plain loop."""
    y, p = random_case(seed=3)
    y[y.sum(1) == 0, 0] = 1  # the benchmark's records all carry a label
    yhat = predict_labels(p, True, None)
    w = y.sum(1)
    fs, gs = [], []
    for k in range(y.shape[1]):
        tp = sum(1 / w[i] for i in range(len(y)) if y[i, k] == yhat[i, k] == 1)
        fp = sum(1 / w[i] for i in range(len(y)) if yhat[i, k] == 1 and y[i, k] == 0)
        fn = sum(1 / w[i] for i in range(len(y)) if yhat[i, k] == 0 and y[i, k] == 1)
        fs.append(5 * tp / (5 * tp + fp + 4 * fn))
        gs.append(tp / (tp + fp + 2 * fn))
    assert fbeta_gbeta(y, yhat) == pytest.approx((np.mean(fs), np.mean(gs)))


def test_fmax_by_hand():
    y = np.array([[1, 0], [0, 1]])
    p = np.array([[0.9, 0.6], [0.2, 0.7]])
    value, threshold = fmax(y, p)
    assert value == pytest.approx(1.0) and threshold == pytest.approx(0.61)
    # at t = 0.5 record 1 predicts both classes: precision 1/2; F = 2 * 0.75 * 1 / 1.75
    y2, p2 = y, np.array([[0.9, 0.6], [0.2, 0.6]])
    assert fmax(y2, p2)[0] == pytest.approx(2 * 0.75 / 1.75)


def test_youden_and_global_thresholds():
    y, p = random_case(seed=5)
    t = tune_thresholds(y, p, "youden", "class")
    for k in range(y.shape[1]):
        fpr, tpr, thr = skm.roc_curve(y[:, k], p[:, k])
        best = np.max(tpr - fpr)
        yhat = p[:, k] >= t[k]
        assert skm.recall_score(y[:, k], yhat) + skm.recall_score(1 - y[:, k], ~yhat) - 1 == pytest.approx(best)
    g = tune_thresholds(y, p, "f1", "global")
    assert len(set(g)) == 1
    macro = lambda th: skm.f1_score(y, (p >= th).astype(int), average="macro", zero_division=0)  # noqa: E731
    assert all(macro(g[0]) >= macro(c) - 1e-12 for c in np.linspace(0, 1, 41))


# -- the PhysioNet/CinC challenge metric ----------------------------------------------------

AF, AFL, NSR = "164889003", "164890007", "426783006"


def test_challenge_weights_match_the_published_tables():
    classes, w = challenge.challenge_weights(2021)
    assert len(classes) == 26 and np.allclose(w, w.T) and np.all(np.diag(w) == 1)
    assert frozenset({"733534002", "164909002"}) in classes
    classes20, w20 = challenge.challenge_weights(2020)
    assert len(classes20) == 24 and frozenset({"713427006", "59118001"}) in classes20
    assert frozenset({"733534002", "164909002"}) not in classes20


def test_challenge_metric_by_hand():
    """Three records, weights W[AF,AFL] = 0.5, W[AF,NSR] = 0.25 (2021 table):
    observed 1 + 0.5/2 + (1 + 0.25)/2 = 1.875, correct 3, sinus-only 0.125 + 0.125 + 1 = 1.25."""
    mapping = challenge.weights_for({"AF": [AF], "AFL": [AFL], "NSR": [NSR]}, "cinc-scored")
    classes, w = challenge.challenge_weights(2021)
    idx = {c: next(i for i, s in enumerate(classes) if c in s) for c in (AF, AFL, NSR)}
    assert w[idx[AF], idx[AFL]] == 0.5 and w[idx[AF], idx[NSR]] == 0.25
    y = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1]])
    yhat = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1]])
    assert challenge.challenge_metric(y, yhat, mapping) == pytest.approx((1.875 - 1.25) / (3 - 1.25))
    assert challenge.challenge_metric(y, y, mapping) == pytest.approx(1.0)
    sinus_only = np.zeros_like(y)
    sinus_only[:, 2] = 1
    assert challenge.challenge_metric(y, sinus_only, mapping) == pytest.approx(0.0)


def test_challenge_metric_equals_the_evaluation_code_loop():
    """evaluation-2021 compute_modified_confusion_matrix / compute_challenge_metric, re-derived as loops,
    on a store with all scored classes plus an unscored one (ignored by the metric)."""
    classes, w = challenge.challenge_weights(2021)
    codes = {f"c{i}": sorted(c) for i, c in enumerate(classes)} | {"unscored": ["10000000"]}
    mapping = challenge.weights_for(codes, "cinc-scored")
    rng = np.random.default_rng(0)
    y = (rng.random((60, 27)) < 0.15).astype(int)
    yhat = (rng.random((60, 27)) < 0.15).astype(int)

    def total(labels, outputs):
        a = np.zeros((26, 26))
        for i in range(len(labels)):
            n = max(np.logical_or(labels[i], outputs[i]).sum(), 1)
            for j in np.flatnonzero(labels[i]):
                for k in np.flatnonzero(outputs[i]):
                    a[j, k] += 1 / n
        return np.nansum(w * a)

    lab, out = y[:, :26], yhat[:, :26]
    inactive = np.zeros_like(lab)
    inactive[:, next(i for i, c in enumerate(classes) if NSR in c)] = 1
    expected = (total(lab, out) - total(lab, inactive)) / (total(lab, lab) - total(lab, inactive))
    assert challenge.challenge_metric(y, yhat, mapping) == pytest.approx(expected)


def test_challenge_metric_needs_sinus_rhythm_and_picks_the_year():
    assert challenge.weights_for({"AF": [AF], "AFL": [AFL]}, "cinc-scored") is None
    assert challenge.weights_for({"AF": [AF], "NSR": [NSR]}, "cinc-scored2020")[2] == 2020
    assert challenge.weights_for({"AF": [AF], "NSR": [NSR]}, "cinc-all")[2] == 2021


@pytest.mark.parametrize("objective", ["f1", "youden"])
def test_thresholds_separate_saturated_float32_scores(objective):
    """Adjacent float32 probabilities near 1: the midpoint must be taken in float64, or the chosen
    threshold rounds onto the lower score and admits the negatives."""
    hi, lo = np.float32(0.99999994), np.float32(0.9999999)
    p = np.array([[hi], [hi], [lo], [lo], [0.2]], dtype=np.float32)
    y = np.array([[1], [1], [0], [0], [0]])
    t = tune_thresholds(y, p, objective)
    assert (predict_labels(p, True, t)[:, 0] == y[:, 0]).all()
    g = tune_thresholds(y, p, objective, "global")
    assert (predict_labels(p, True, g)[:, 0] == y[:, 0]).all()


def test_fmax_terms_in_steps_of_records_equal_one_step(monkeypatch):
    """The Fmax terms and their sums, computed a few records at a time, are bit-identical to one step."""
    from ecgtool.eval import metrics

    rng = np.random.default_rng(4)
    y = (rng.random((3001, 5)) < 0.3).astype(np.uint8)
    p = np.round(rng.random((3001, 5)), 2)
    whole_terms, whole_sums = metrics.fmax_terms(y, p), metrics.fmax_sums(y, p)
    assert np.array_equal(whole_sums, whole_terms.sum(axis=1))
    monkeypatch.setattr(metrics, "FMAX_RECORDS", 97)
    assert np.array_equal(metrics.fmax_terms(y, p), whole_terms)
    assert np.array_equal(metrics.fmax_sums(y, p), whole_sums)
