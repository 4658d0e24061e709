"""Bootstrap confidence intervals and paired comparisons of the headline metrics.

Resampling follows the PTB-XL benchmark (helme/ecg_ptbxl_benchmarking
``utils.get_appropriate_bootstrap_samples``): draw N record indices with
replacement and redraw any resample in which a class has no positive, so that
every macro average covers the same classes. Here only classes that have
positives (and negatives) in the full store are required to keep them: a class
absent from the store would otherwise never be satisfied. Intervals are
percentile intervals of the resampled values.

A resample is a vector of record multiplicities, so every metric is computed
for a block of resamples at once from per-record terms: rank statistics for
AUROC, cumulative sums over the score order for AUPRC, matrix products for the
count-based metrics. ``tests/test_bootstrap.py`` checks each against
scikit-learn on explicitly resampled arrays. The resample ids themselves can be
saved and reloaded, so two models are compared on identical resamples.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterator

import numpy as np

from ecgtool.errors import EcgtoolError
from ecgtool.eval import challenge
from ecgtool.eval.metrics import beta_measures, count_ratios, fmax_from_sums, fmax_terms, label_normalised_counts
from ecgtool.heap import release_free_memory

BLOCK = 64  # resamples per vectorised block
BLOCK_VALUES = BLOCK * 4096  # at most this many values per [resamples, records] array of a block (2 MB as float64)


def block_for(records: int) -> int:
    """Resamples per block of the metrics: ``BLOCK`` up to 4,096 records, fewer beyond, so that a block's
    ``[resamples, records]`` arrays (about ten of them live at once) stay within ``BLOCK_VALUES`` values whatever
    the store's size. Each resample's metrics are computed alone, but matrix products may round differently
    with another block size (by ~1e-16), so below that size results equal those of 64-resample blocks exactly."""
    return max(1, min(BLOCK, BLOCK_VALUES // max(records, 1)))


class Resamples:
    """Bootstrap resample ids ``[n, records]`` handed out block by block, so that no pass holds them whole
    (1000 resamples of 88k records are 352 MB as int32): drawn afresh from the seed on every pass, the same
    ids each time (a pass costs a few % of the metrics computed on it), read block by block from a saved
    ``.npy`` file, or held (``of``)."""

    def __init__(self, n: int, records: int, blocks: Callable[[int], Iterator[np.ndarray]]):
        self.n, self.records, self._blocks = n, records, blocks

    @classmethod
    def drawn(cls, y: np.ndarray, n: int, seed: int, max_draws_per_sample: int = 1000) -> "Resamples":
        """``n`` seeded resamples of the records of ``y``, each keeping every class's two label values that
        ``y`` has; a class too rare for that is refused now, before any pass."""
        _check_drawable(y, n, max_draws_per_sample)
        return cls(n, len(y), lambda size: _drawn_blocks(y, n, seed, max_draws_per_sample, size))

    @classmethod
    def saved(cls, path) -> "Resamples":
        """The ids in the ``.npy`` file ``path`` (any integer dtype, C order), read a block at a time; a file
        that is not a 2-D integer array raises ``ValueError``."""
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is None:
                raise ValueError(f".npy format version {version} is not read here")
            shape, fortran, dtype = read_header(f)  # numpy's own parser: a literal, never a pickle
            offset = f.tell()
        if len(shape) != 2 or fortran or not np.issubdtype(dtype, np.integer):
            raise ValueError(f"a C-order 2-D integer array is needed, not shape {shape}, dtype {dtype}"
                             + (", Fortran order" if fortran else ""))
        n, records = shape

        def blocks(size: int) -> Iterator[np.ndarray]:
            with open(path, "rb") as f:
                for i in range(0, n, size):
                    rows = min(size, n - i)
                    f.seek(offset + i * records * dtype.itemsize)
                    block = np.fromfile(f, dtype=dtype, count=rows * records)
                    if block.size < rows * records:
                        raise ValueError(f"the file ends before its {n} × {records} ids do")
                    # unsigned ids as signed: uint64 + int64 offsets would turn float in ``multiplicities``
                    yield block.reshape(rows, records).astype(np.int64 if dtype.kind == "u" else dtype, copy=False)
        return cls(n, records, blocks)

    @classmethod
    def of(cls, ids: np.ndarray) -> "Resamples":
        """Ids already in memory."""
        ids = np.asarray(ids)
        return cls(len(ids), ids.shape[1], lambda size: (ids[i:i + size] for i in range(0, len(ids), size)))

    def blocks(self, size: int = BLOCK) -> Iterator[np.ndarray]:
        """``[≤ size, records]`` integer blocks (int32 when drawn) of consecutive resamples, in order."""
        return self._blocks(size)

    def array(self) -> np.ndarray:
        """All ids at once (for small stores and tests)."""
        return np.concatenate(list(self.blocks())) if self.n else np.empty((0, self.records), np.int32)

    def sha256(self) -> str:
        """Of the ids as one C-order int32 array."""
        h = hashlib.sha256()
        for block in self.blocks():
            h.update(np.ascontiguousarray(block, dtype=np.int32))
        return h.hexdigest()

    def write_npy(self, f) -> None:
        """The ids as one int32 ``.npy`` array into the binary file ``f`` (what ``np.save`` writes)."""
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.int32)),
                                                 "fortran_order": False, "shape": (self.n, self.records)})
        for block in self.blocks():
            f.write(np.ascontiguousarray(block, dtype=np.int32).tobytes())


def resample_ids(y: np.ndarray, n: int, seed: int, max_draws_per_sample: int = 1000) -> np.ndarray:
    """``[n, N]`` int32 record indices of ``Resamples.drawn`` held at once."""
    return Resamples.drawn(y, n, seed, max_draws_per_sample).array()


def _needs(y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    positives = y.sum(axis=0)
    return positives, positives > 0, positives < len(y)


def _check_drawable(y: np.ndarray, n: int, max_draws_per_sample: int) -> None:
    # Probability that one draw keeps every class (classes treated as independent): fail at once
    # when the expected number of draws per kept resample exceeds the budget, instead of after it.
    count = len(y)
    positives, need_pos, need_neg = _needs(y)
    frac = positives / count
    keep = np.prod((1 - (1 - frac[need_pos]) ** count)) * np.prod((1 - frac[need_neg] ** count))
    if keep * max_draws_per_sample < 1:
        _give_up(n, positives, need_pos)


def _drawn_blocks(y: np.ndarray, n: int, seed: int, max_draws_per_sample: int, size: int) -> Iterator[np.ndarray]:
    """Draw N record indices with replacement until a draw keeps every needed class; ``size`` kept
    resamples at a time. The random stream does not depend on ``size``: every block size gives the same ids."""
    rng = np.random.default_rng(seed)
    count = len(y)
    positives, need_pos, need_neg = _needs(y)
    block, filled, kept = np.empty((min(size, n), count), dtype=np.int32), 0, 0
    for _ in range(n * max_draws_per_sample):
        if kept == n:
            return
        ids = rng.integers(0, count, count, dtype=np.int64)
        s = y[ids].sum(axis=0)
        if (s[need_pos] > 0).all() and (s[need_neg] < count).all():
            block[filled] = ids
            filled, kept = filled + 1, kept + 1
            if filled == len(block) or kept == n:
                yield block[:filled]
                block, filled = np.empty((min(size, n - kept), count), dtype=np.int32), 0
    if kept < n:
        _give_up(n, positives, need_pos)


def _give_up(n: int, positives: np.ndarray, need_pos: np.ndarray):
    rare = [str(k) for k in np.flatnonzero(need_pos & (positives <= 2))]
    raise EcgtoolError(f"could not draw {n} resamples that keep every class (class columns with ≤ 2 positives: "
                       f"{', '.join(rare) or 'none'}); evaluate on a larger store or drop --bootstrap")


def multiplicities(ids: np.ndarray, count: int) -> np.ndarray:
    """``[B, N]`` how often each record occurs in each resample."""
    flat = (ids + np.arange(len(ids))[:, None] * count).ravel()
    return np.bincount(flat, minlength=len(ids) * count).reshape(len(ids), count).astype(np.float64)


def _groups(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ascending order of ``scores`` and the start of each run of tied scores in that order."""
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    starts = np.concatenate([[0], np.flatnonzero(s[1:] != s[:-1]) + 1])
    return order, starts


def weighted_auroc_ap(y: np.ndarray, w: np.ndarray, groups) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and average precision per resample ``[B]`` of one class.

    ``groups`` is ``_groups(scores)``. AUROC is the Mann-Whitney statistic with
    ties counted half; AP sums Δrecall × precision over the distinct scores in
    descending order, as scikit-learn's ``average_precision_score`` does.
    """
    order, starts = groups
    ws = w[:, order]
    pos = ws * y[order]
    neg = ws - pos
    if len(starts) < len(order):  # tied scores form one threshold step
        pos, neg = np.add.reduceat(pos, starts, axis=1), np.add.reduceat(neg, starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(1), neg_below[:, -1] + neg[:, -1]
    # descending order: true/false positives above and at each distinct score
    tp = n_pos[:, None] - (np.cumsum(pos, axis=1) - pos)
    fp = n_neg[:, None] - neg_below
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = (pos * (neg_below + 0.5 * neg)).sum(1) / (n_pos * n_neg)
        ap = (pos / n_pos[:, None] * np.nan_to_num(tp / (tp + fp))).sum(1)
    return auroc, ap


class HeadlineMetrics:
    """Per-record terms of one model's predictions, from which each resample's metrics follow."""

    def __init__(self, y: np.ndarray, p: np.ndarray, yhat: np.ndarray, multi_label: bool, challenge_mapping=None):
        self.y, self.p, self.multi_label = y.astype(np.float64), p, multi_label
        self.scored = [k for k in range(y.shape[1]) if 0 < y[:, k].sum() < len(y)]
        self.groups = {k: _groups(p[:, k]) for k in self.scored}  # score orders are the same for every resample
        yb, hb = y.astype(bool), yhat.astype(bool)
        self.counts = np.stack([yb & hb, ~yb & hb, yb & ~hb, ~yb & ~hb]).astype(np.float64)  # [4, N, K]
        self.normalised = label_normalised_counts(y, yhat)
        self.correct = ((yhat == y).all(axis=1) if multi_label else y.argmax(1) == yhat.argmax(1)).astype(np.float64)
        self.fmax = fmax_terms(y, p) if multi_label else None
        self.challenge = None if challenge_mapping is None else challenge.record_terms(y, yhat, challenge_mapping)

    def __call__(self, w: np.ndarray) -> dict[str, np.ndarray]:
        """Metric name → values ``[B]`` (or ``[B, K]`` for per-class AUROC) for multiplicities ``w [B, N]``."""
        auroc = np.full((len(w), self.y.shape[1]), np.nan)
        auprc = np.full_like(auroc, np.nan)
        for k in self.scored:
            auroc[:, k], auprc[:, k] = weighted_auroc_ap(self.y[:, k], w, self.groups[k])
        ratios = count_ratios(*np.einsum("bn,cnk->cbk", w, self.counts))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: the metric is undefined there
            out = {name: np.nanmean(v, axis=1) for name, v in ratios.items()}
        out["auroc"] = np.nanmean(auroc[:, self.scored], axis=1) if self.scored else np.full(len(w), np.nan)
        out["auprc"] = np.nanmean(auprc[:, self.scored], axis=1) if self.scored else np.full(len(w), np.nan)
        out["per_class_auroc"] = auroc
        ntp, nfp, nfn, _ = np.einsum("bn,cnk->cbk", w, self.normalised)
        f_beta, g_beta = beta_measures(ntp, nfp, nfn)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["f_beta2"], out["g_beta2"] = np.nanmean(f_beta, axis=1), np.nanmean(g_beta, axis=1)
            out["exact_match" if self.multi_label else "accuracy"] = (w @ self.correct) / w.sum(1)
        if self.fmax is not None:
            out["fmax"] = fmax_from_sums(np.einsum("bn,cnt->cbt", w, self.fmax))[0]
        if self.challenge is not None:
            out["challenge"] = challenge.score_from_totals(self.challenge @ w.T)
        return out


def resampled_metrics(metrics: HeadlineMetrics, resamples: Resamples, progress=None) -> dict[str, np.ndarray]:
    """Every headline metric over every resample, computed in blocks of ``block_for(records)`` resamples (only
    the ``[resamples, K]`` results are kept); ``progress(resamples done, resamples in all)`` after each block."""
    parts, done = [], 0
    for i, ids in enumerate(resamples.blocks(block_for(len(metrics.y)))):
        parts.append(metrics(multiplicities(ids, len(metrics.y))))
        done += len(ids)
        if i % 4 == 3:
            release_free_memory()  # a block's arrays are freed and drawn again: keep the heap from holding them
        if progress is not None:
            progress(done, resamples.n)
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def interval(values: np.ndarray, level: float) -> tuple[float | None, float | None]:
    """Percentile interval of resampled values (NaN resamples left out)."""
    v = values[np.isfinite(values)]
    if not len(v):
        return None, None
    lo, hi = np.quantile(v, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def summarise(resampled: dict[str, np.ndarray], level: float, classes: list[str]) -> dict:
    """``{metric: {"low", "high"}}`` plus per-class AUROC intervals."""
    out = {name: dict(zip(("low", "high"), interval(v, level))) for name, v in resampled.items() if name != "per_class_auroc"}
    per_class = resampled["per_class_auroc"]
    out["per_class_auroc"] = {c: dict(zip(("low", "high"), interval(per_class[:, k], level))) for k, c in enumerate(classes)}
    return out


def paired_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray], point_a: dict, point_b: dict, level: float) -> dict:
    """A − B for each headline metric on the same resamples: point difference, interval and a two-sided
    bootstrap p-value (twice the smaller share of resamples on either side of zero)."""
    out = {}
    for name in a:
        if name == "per_class_auroc" or name not in b or point_a.get(name) is None or point_b.get(name) is None:
            continue
        d = a[name] - b[name]
        d = d[np.isfinite(d)]
        low, high = interval(d, level)
        p = float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean()))) if len(d) else None
        out[name] = {"difference": point_a[name] - point_b[name], "low": low, "high": high, "p_value": p}
    return out
