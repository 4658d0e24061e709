"""Bootstrap: the vectorised resample metrics equal scikit-learn on resampled arrays, intervals
match a known sampling distribution, resamples keep every class, paired differences behave."""

from __future__ import annotations

import numpy as np
import pytest

from ecgtool.errors import EcgtoolError
from ecgtool.eval import bootstrap, challenge
from ecgtool.eval.metrics import classification_report, predict_labels


def case(n=400, k=6, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.2).astype(np.uint8)
    p = np.round(np.clip(0.3 * y + 0.7 * rng.random((n, k)), 0, 1), 2)
    return y, p


@pytest.mark.parametrize("multi_label", [True, False])
def test_resampled_metrics_equal_the_report_on_resampled_arrays(multi_label):
    y, p = case()
    if not multi_label:
        y = np.eye(6, dtype=np.uint8)[np.argmax(p + np.random.default_rng(1).random(p.shape), 1)]
        p = p / p.sum(1, keepdims=True)
    if multi_label:
        y[:, 5] = 0  # a class without positives: its sensitivity is undefined, not 0
    t = np.linspace(0.3, 0.6, 6)
    yhat = predict_labels(p, multi_label, t)
    ids = bootstrap.resample_ids(y, 8, seed=0)
    got = bootstrap.resampled_metrics(bootstrap.HeadlineMetrics(y, p, yhat, multi_label), bootstrap.Resamples.of(ids))
    names = ["auroc", "auprc", "f1", "sensitivity", "specificity", "f_beta2", "g_beta2"]
    names += ["fmax", "exact_match"] if multi_label else ["accuracy"]
    for b in range(len(ids)):
        rep = classification_report(y[ids[b]], p[ids[b]], list("abcdef"), multi_label, t)
        for name in names:
            assert got[name][b] == pytest.approx(rep["macro"][name], abs=1e-10), name
        per_class = [c["auroc"] for c in rep["per_class"]]
        assert got["per_class_auroc"][b] == pytest.approx(np.array(per_class, dtype=float), nan_ok=True)


def test_resampled_challenge_metric_equals_direct_computation():
    classes, _ = challenge.challenge_weights(2021)
    codes = {f"c{i}": sorted(c) for i, c in enumerate(classes)}
    mapping = challenge.weights_for(codes, "cinc-scored")
    rng = np.random.default_rng(2)
    y = (rng.random((200, 26)) < 0.15).astype(np.uint8)
    p = rng.random((200, 26))
    yhat = predict_labels(p, True, np.full(26, 0.8))
    ids = bootstrap.resample_ids(y, 5, seed=3)
    got = bootstrap.resampled_metrics(bootstrap.HeadlineMetrics(y, p, yhat, True, mapping), bootstrap.Resamples.of(ids))["challenge"]
    for b in range(5):
        assert got[b] == pytest.approx(challenge.challenge_metric(y[ids[b]], yhat[ids[b]], mapping))


def test_resamples_are_seeded_and_keep_every_present_class():
    y, _ = case(n=60)
    y[:, 5] = 0  # a class absent from the store must not block resampling
    y[:, 4] = 0
    y[7, 4] = 1  # a class with a single positive
    a = bootstrap.resample_ids(y, 50, seed=1)
    assert a.shape == (50, 60) and np.array_equal(a, bootstrap.resample_ids(y, 50, seed=1))
    assert not np.array_equal(a, bootstrap.resample_ids(y, 50, seed=2))
    assert all(y[ids, :5].sum(0).min() > 0 for ids in a)


def test_resampling_gives_up_with_a_clear_error():
    y = np.zeros((40, 30), dtype=np.uint8)
    y[np.arange(30), np.arange(30)] = 1  # thirty classes with one positive each: almost never all drawn
    with pytest.raises(EcgtoolError, match="could not draw"):
        bootstrap.resample_ids(y, 5, seed=0, max_draws_per_sample=20)


def test_interval_matches_the_binomial_sampling_distribution():
    """Accuracy of N records with success rate q: the bootstrap interval's width is about
    2 * 1.96 * sqrt(q (1 - q) / N)."""
    rng = np.random.default_rng(0)
    n, q = 2000, 0.8
    truth = rng.integers(0, 3, n)
    right = rng.random(n) < q
    chosen = np.where(right, truth, (truth + 1) % 3)
    y = np.eye(3, dtype=np.uint8)[truth]
    p = np.eye(3)[chosen] * 0.8 + 0.2 / 3
    metrics = bootstrap.HeadlineMetrics(y, p, predict_labels(p, False, None), False)
    values = bootstrap.resampled_metrics(metrics, bootstrap.Resamples.drawn(y, 1000, seed=0))["accuracy"]
    low, high = bootstrap.interval(values, 0.95)
    expected = 2 * 1.959964 * np.sqrt(right.mean() * (1 - right.mean()) / n)
    assert high - low == pytest.approx(expected, rel=0.12)
    assert low < right.mean() < high
    assert values.std() == pytest.approx(np.sqrt(q * (1 - q) / n), rel=0.12)


def test_paired_difference():
    y, p = case(n=500)
    ids = bootstrap.Resamples.drawn(y, 200, seed=0)
    yhat = predict_labels(p, True, None)
    good = bootstrap.resampled_metrics(bootstrap.HeadlineMetrics(y, p, yhat, True), ids)
    point = classification_report(y, p, list("abcdef"), True, None)["macro"]
    same = bootstrap.paired_difference(good, good, point, point, 0.95)
    assert same["auroc"] == {"difference": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}
    noisy = np.clip(p + np.random.default_rng(9).normal(0, 0.3, p.shape), 0, 1)
    worse = bootstrap.resampled_metrics(bootstrap.HeadlineMetrics(y, noisy, predict_labels(noisy, True, None), True), ids)
    point_worse = classification_report(y, noisy, list("abcdef"), True, None)["macro"]
    d = bootstrap.paired_difference(good, worse, point, point_worse, 0.95)["auroc"]
    assert d["difference"] > 0 and 0 < d["low"] < d["difference"] < d["high"] and d["p_value"] < 0.01


def _held_resample_ids(y, n, seed, max_draws_per_sample=1000):
    """The implementation before resamples were drawn block by block (every id held in one
    ``[n, N]`` matrix): the reference the blocks must reproduce exactly."""
    rng = np.random.default_rng(seed)
    count = len(y)
    positives = y.sum(axis=0)
    need_pos, need_neg = positives > 0, positives < count
    out = np.empty((n, count), dtype=np.int32)
    kept = 0
    for _ in range(n * max_draws_per_sample):
        ids = rng.integers(0, count, count, dtype=np.int64)
        s = y[ids].sum(axis=0)
        if (s[need_pos] > 0).all() and (s[need_neg] < count).all():
            out[kept] = ids
            kept += 1
            if kept == n:
                return out
    raise AssertionError("unreachable in these cases")


@pytest.mark.parametrize("n, seed", [(1, 0), (64, 1), (130, 5)])
def test_blocks_reproduce_the_held_matrix_and_its_metrics(n, seed, tmp_path):
    import hashlib

    y, p = case(n=90)
    y[:, 4] = 0
    y[[3, 50], 4] = 1  # a rare class: many draws are rejected, so the random stream matters
    held = _held_resample_ids(y, n, seed)
    resamples = bootstrap.Resamples.drawn(y, n, seed)
    for size in (1, 7, 64, 1000):  # the block size changes how the ids are handed out, not which
        blocks = list(resamples.blocks(size))
        assert all(len(b) <= size for b in blocks) and np.array_equal(np.concatenate(blocks), held)
    assert resamples.sha256() == hashlib.sha256(held.tobytes()).hexdigest()
    metrics = bootstrap.HeadlineMetrics(y, p, predict_labels(p, True, None), True)
    got = bootstrap.resampled_metrics(metrics, resamples)
    before = bootstrap.resampled_metrics(metrics, bootstrap.Resamples.of(held))
    assert got.keys() == before.keys()
    assert all(np.array_equal(got[k], before[k], equal_nan=True) for k in got)
    np.save(tmp_path / "held.npy", held)
    with open(tmp_path / "blocks.npy", "wb") as f:
        resamples.write_npy(f)
    assert (tmp_path / "blocks.npy").read_bytes() == (tmp_path / "held.npy").read_bytes()
    for dtype in (np.int64, np.uint64):
        np.save(tmp_path / "wide.npy", held.astype(dtype))
        saved = bootstrap.Resamples.saved(tmp_path / "wide.npy")
        assert (saved.n, saved.records) == held.shape and np.array_equal(saved.array(), held)
        assert saved.sha256() == resamples.sha256()
        np.testing.assert_array_equal(bootstrap.resampled_metrics(metrics, saved)["auroc"], got["auroc"])


def test_saved_resamples_refuse_what_is_not_a_matrix_of_ids(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((2, 3)))
    np.save(tmp_path / "v.npy", np.zeros(3, dtype=np.int32))
    np.save(tmp_path / "t.npy", np.zeros((3, 2), dtype=np.int32).T)  # Fortran order
    (tmp_path / "x.npy").write_bytes(b"not numpy")
    for name in ("f", "v", "t", "x"):
        with pytest.raises(ValueError):
            bootstrap.Resamples.saved(tmp_path / f"{name}.npy")
    np.save(tmp_path / "short.npy", np.zeros((4, 3), dtype=np.int32))
    (tmp_path / "short.npy").write_bytes((tmp_path / "short.npy").read_bytes()[:-8])
    with pytest.raises(ValueError, match="ends"):
        bootstrap.Resamples.saved(tmp_path / "short.npy").array()


def test_blocks_shrink_beyond_4096_records_and_metrics_stay_within_rounding(monkeypatch):
    assert bootstrap.block_for(100) == bootstrap.block_for(4096) == 64
    assert bootstrap.block_for(32768) == 8 and bootstrap.block_for(88253) == 2 and bootstrap.block_for(10**9) == 1
    y, p = case(n=300)
    metrics = bootstrap.HeadlineMetrics(y, p, predict_labels(p, True, None), True)
    resamples = bootstrap.Resamples.drawn(y, 100, seed=0)
    wide = bootstrap.resampled_metrics(metrics, resamples)
    monkeypatch.setattr(bootstrap, "BLOCK_VALUES", 300 * 7)  # 7 resamples per block at 300 records
    seen = []
    narrow = bootstrap.resampled_metrics(metrics, resamples, lambda done, total: seen.append(done))
    assert seen[:2] == [7, 14] and seen[-1] == 100
    for k in wide:
        np.testing.assert_allclose(narrow[k], wide[k], rtol=0, atol=1e-14)
