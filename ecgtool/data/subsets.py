"""Label-fraction subsets of a training store: nested, patient-wise, stratified by label.

Transfer and semi-supervised protocols train on 1 %, 10 %, … of the labelled
records. The subsets here are

* patient-wise: a patient's records are all in or all out;
* nested: for one seed, the patients are put in one order and a fraction takes
  a prefix of it, so the 1 % subset lies inside the 10 % one, inside 100 %;
* stratified: the order is built so that every prefix holds each class in about
  its share of the store's patients, and it opens with a few patients that
  cover every class (rarest first), so even a small fraction has at least one
  record of every class the store has.

The order is iterative stratification (Sechidis et al. 2011, the algorithm
``split`` uses through the ``iterative-stratification`` package) run one
patient at a time against a growing prefix instead of into K folds — K-fold
assignments are not nested, which is why this module has its own loop. Patients
are drawn in a seeded shuffle; at each step the label furthest below its share
of the prefix takes, of its next few patients in the shuffle, the one whose
other labels overshoot their shares least. Patients whose records carry no label
count as one more label, so they keep their share too. Multi-class stores use
the same loop: a patient's label set is the union of their records' labels
(``split.patient_table``).

A fraction ``F`` selects the shortest prefix holding at least ``ceil(F × N)``
of the store's ``N`` records and at least the class-covering opening; its
actual size is part of :meth:`LabelSubset.to_dict`, which train records in the
checkpoint with a SHA-256 of the selected record ids.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from ecgtool.data.split import patient_table
from ecgtool.data.store import EcgStore
from ecgtool.errors import ConfigError


LOOKAHEAD = 16  # candidates weighed per step: a label's next patients in the shuffle


@dataclass(frozen=True)
class LabelSubset:
    """The records (sorted store rows) a label fraction selects, and what selected them."""

    fraction: float
    seed: int
    indices: np.ndarray
    patients: int
    record_ids_sha256: str
    missing_classes: tuple[str, ...]  # classes of the store with no record in the subset

    def to_dict(self) -> dict:
        return {"fraction": self.fraction, "seed": self.seed, "records": int(len(self.indices)), "patients": self.patients,
                "record_ids_sha256": self.record_ids_sha256}


def check_fraction(fraction: float) -> None:
    if not isinstance(fraction, (int, float)) or not math.isfinite(fraction) or not 0 < fraction <= 1:
        raise ConfigError(f"label_fraction must be a number in (0, 1], not {fraction}", "label_fraction")


def stratified_patient_order(labels: np.ndarray, seed: int) -> tuple[np.ndarray, int]:
    """An order of patients (rows of ``labels``, their multi-hot label sets ``[P, K]``) whose every
    prefix is stratified by label, and the length of its opening that covers every present label.

    Deterministic for a seed; the same seed gives the same order for any fraction."""
    labels = np.asarray(labels) > 0
    n = len(labels)
    labels = np.concatenate([labels, ~labels.any(axis=1, keepdims=True)], axis=1)  # "no label" as one more label
    perm = np.random.default_rng(seed).permutation(n)
    queues = [perm[labels[perm, k]] for k in range(labels.shape[1])]  # each label's patients, in the shuffled order
    heads = np.zeros(len(queues), dtype=np.int64)
    share = labels.sum(axis=0) / max(n, 1)  # each label's share of the patients
    used = np.zeros(n, dtype=bool)
    counts = np.zeros(labels.shape[1])
    order: list[int] = []

    def next_of(k: int) -> int | None:
        q = queues[k]
        while heads[k] < len(q) and used[q[heads[k]]]:
            heads[k] += 1
        return int(q[heads[k]]) if heads[k] < len(q) else None

    def best_of(k: int, target: np.ndarray) -> int | None:
        """Of label k's next ``LOOKAHEAD`` unused patients, the one whose other labels overshoot the
        prefix's shares least (the first in the shuffle on ties)."""
        if next_of(k) is None:
            return None
        q, i, found = queues[k], heads[k], []
        while i < len(q) and len(found) < LOOKAHEAD:
            if not used[q[i]]:
                found.append(q[i])
            i += 1
        over = np.maximum(counts + labels[found] - target, 0).sum(axis=1)
        return int(found[int(np.argmin(over))])

    def take(p: int) -> None:
        used[p] = True
        order.append(p)
        counts[:] += labels[p]

    # the opening: one patient of every label not yet covered, rarest label first
    for k in np.argsort(labels.sum(axis=0), kind="stable"):
        if counts[k] == 0 and (p := next_of(int(k))) is not None:
            take(p)
    opening = len(order)
    alive = np.array([next_of(k) is not None for k in range(len(queues))])
    rest = iter(perm)
    while len(order) < n:
        target = share * (len(order) + 1)
        deficit = np.where(alive, target - counts, -np.inf)
        k = int(np.argmax(deficit))  # the label furthest below its share (the first on ties)
        p = best_of(k, target) if deficit[k] > 0 else None
        if p is None:
            if deficit[k] > 0:  # that label has no patient left
                alive[k] = False
                continue
            p = next(q for q in rest if not used[q])  # every label at its share: the next patient of the shuffle
        take(p)
    return np.asarray(order, dtype=np.int64), opening


def select_prefix(order: np.ndarray, opening: int, records_per_patient: np.ndarray, fraction: float) -> int:
    """How many patients of ``order`` a fraction takes: the shortest prefix holding at least
    ``ceil(fraction × records)`` records, and never less than the class-covering ``opening``."""
    check_fraction(fraction)
    total = int(records_per_patient.sum())
    target = min(total, math.ceil(fraction * total - 1e-9))
    cumulative = np.cumsum(records_per_patient[order])
    return max(opening, int(np.searchsorted(cumulative, target)) + 1) if target else opening


def label_subset(store: EcgStore, fraction: float, seed: int) -> LabelSubset:
    """The records of ``store`` that ``fraction`` of its labelled data selects for ``seed`` (all of them at 1)."""
    check_fraction(fraction)
    if fraction == 1:
        indices = np.arange(len(store))
        patients = len(np.unique(store.patient_id))
    else:
        _, inverse, labels = patient_table(store)
        order, opening = stratified_patient_order(labels, seed)
        keep = order[: select_prefix(order, opening, np.bincount(inverse, minlength=len(labels)), fraction)]
        indices = np.flatnonzero(np.isin(inverse, keep))
        patients = len(keep)
    present = store.labels.any(axis=0)
    chosen = store.labels[indices].any(axis=0) if len(indices) else np.zeros_like(present)
    missing = tuple(c for c, p, q in zip(store.classes, present, chosen) if p and not q)
    digest = hashlib.sha256("\n".join(map(str, store.record_id[indices])).encode()).hexdigest()
    return LabelSubset(float(fraction), int(seed), indices, int(patients), digest, missing)
