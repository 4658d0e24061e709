"""Patient-wise splits of a store.

Folds are assigned to patients, never to records, so no patient can appear in
two splits. A store with official folds (any non-zero ``fold``) keeps them;
otherwise patients are assigned to K folds by iterative stratification on the
union of their records' labels (Sechidis et al. 2011, via the
``iterative-stratification`` package) — or plain stratified K-fold on the class
for multi-class tasks — so every split sees every class in proportion.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgtool.data.store import EcgStore, StoreWriter
from ecgtool.errors import ConfigError, EcgtoolError
from ecgtool.outputs import check_apart, publish, remove, remove_stale_siblings, temporary_sibling
from ecgtool.provenance import make_entry

SPLITS = ("train", "val", "test")


def parse_folds(text: str) -> list[int]:
    """``"1-8"``, ``"9"``, ``"1,3,5-6"`` → a sorted list of fold numbers."""
    folds: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi if sep else lo)
        except ValueError:
            raise EcgtoolError(f"cannot read fold list {text!r}; write e.g. 1-8 or 9,10") from None
        if last < first:  # range() of it is empty: the split would silently get no records
            raise EcgtoolError(f"fold range {part} runs backwards; write {last}-{first}")
        folds.update(range(first, last + 1))
    if not folds:
        raise EcgtoolError(f"fold list {text!r} names no fold; write e.g. 1-8 or 9,10")
    return sorted(folds)


def folds_for_ratios(ratios: list[float], max_folds: int = 100) -> tuple[int, dict[str, list[int]]]:
    """The smallest K such that each ratio is a whole number of K folds, and the fold lists."""
    if len(ratios) != 3 or any(r < 0 for r in ratios) or not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
        raise ConfigError(f"ratios must be three non-negative numbers (train, val, test) that sum to 1, e.g. 0.8,0.1,0.1, "
                          f"not {ratios}", "ratios")
    for k in range(2, max_folds + 1):
        counts = [r * k for r in ratios]
        if all(abs(c - round(c)) < 1e-6 for c in counts):
            bounds = np.cumsum([0] + [round(c) for c in counts])
            return k, {s: list(range(bounds[i] + 1, bounds[i + 1] + 1)) for i, s in enumerate(SPLITS)}
    raise ConfigError(f"ratios {ratios} cannot be expressed in at most {max_folds} folds", "ratios")


def patient_table(store: EcgStore) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique patients, the record→patient index, and each patient's label union."""
    patients, inverse = np.unique(store.patient_id, return_inverse=True)
    labels = np.zeros((len(patients), store.labels.shape[1]), dtype=np.uint8)
    np.maximum.at(labels, inverse, store.labels)
    return patients, inverse, labels


def assign_folds(store: EcgStore, k: int, seed: int) -> np.ndarray:
    """Per-record fold numbers 1..k, stratified by patient."""
    patients, inverse, labels = patient_table(store)
    if len(patients) < k:
        raise EcgtoolError(f"{store.path}: {len(patients)} patients cannot fill {k} folds")
    patient_fold = np.zeros(len(patients), dtype=np.int8)
    if store.multi_label:
        from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

        splitter = MultilabelStratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        target = labels
    else:
        from sklearn.model_selection import StratifiedKFold

        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        # A patient's class: the most frequent among their records (first on ties).
        counts_per_patient = np.zeros((len(patients), store.labels.shape[1]), dtype=np.int64)
        np.add.at(counts_per_patient, inverse, store.labels)
        target = counts_per_patient.argmax(axis=1)
        counts = np.bincount(target, minlength=labels.shape[1])
        if counts[counts > 0].min() < k:  # too rare to stratify: fall back to a random assignment
            target = np.zeros(len(patients), dtype=int)
    for fold, (_, test_idx) in enumerate(splitter.split(np.zeros((len(patients), 1)), target), start=1):
        patient_fold[test_idx] = fold
    return patient_fold[inverse]


@dataclass
class SplitPlan:
    folds: np.ndarray  # per record
    fold_source: str  # "official" or "stratified K=…"
    members: dict[str, np.ndarray]  # split -> record indices (sorted)
    fold_lists: dict[str, list[int]]
    unassigned: dict[int, int] | None = None  # fold -> records of it in no split (0: no official fold)


def plan_split(store: EcgStore, fold_lists: dict[str, list[int]] | None, k: int, seed: int, use_official: bool = True) -> SplitPlan:
    """Decide which records go to which split."""
    if use_official and (store.fold != 0).any():
        folds = store.fold.astype(np.int8)
        source = "official"
        k = int(folds.max())
        if fold_lists is None and len(np.unique(folds[folds > 0])) < 3:
            raise EcgtoolError(
                f"{store.path} has only the official folds {', '.join(map(str, np.unique(folds)))}; "
                "give --train-folds, --val-folds and --test-folds fold lists, or --ignore-official to stratify anew"
            )
    else:
        folds = assign_folds(store, k, seed)
        source = f"stratified by patient, K={k}, seed={seed}"
    if fold_lists is None:
        fold_lists = {"train": list(range(1, k - 1)), "val": [k - 1], "test": [k]}
    else:  # a fold the store does not have would be a split without records (or none at all)
        present = sorted(int(f) for f in np.unique(folds[folds > 0]))
        for split in SPLITS:
            unknown = [f for f in fold_lists[split] if f not in present]
            if unknown:
                raise ConfigError(f"{split} folds: {', '.join(map(str, unknown))} not among the folds of {store.path} "
                                  f"({_ranges(present)})", f"{split}_folds")
    used = [f for s in SPLITS for f in fold_lists[s]]
    if len(used) != len(set(used)):
        raise EcgtoolError("a fold is listed in more than one split")
    members = {s: np.flatnonzero(np.isin(folds, fold_lists[s])) for s in SPLITS}
    _assert_patient_disjoint(store, members)
    # Records of fold 0 (no official fold) or of a fold no list names: in no split. Reported, not refused,
    # since leaving folds out (a learning curve on fewer folds) is a choice the user may make.
    left = np.ones(len(folds), dtype=bool)
    for idx in members.values():
        left[idx] = False
    values, counts = np.unique(folds[left], return_counts=True)
    unassigned = {int(f): int(n) for f, n in zip(values, counts)}
    return SplitPlan(folds, source, members, fold_lists, unassigned)


def _ranges(folds: list[int]) -> str:
    """``[1, 2, 3, 5]`` → ``"1-3, 5"``."""
    out, start = [], None
    for i, f in enumerate(folds):
        start = f if start is None else start
        if i + 1 == len(folds) or folds[i + 1] != f + 1:
            out.append(f"{start}-{f}" if f > start else str(f))
            start = None
    return ", ".join(out) or "none"


def _assert_patient_disjoint(store: EcgStore, members: dict[str, np.ndarray]) -> None:
    seen: dict[str, str] = {}
    for split, idx in members.items():
        for pid in np.unique(store.patient_id[idx]):
            if pid in seen:
                # Official folds of a dataset that splits a patient across folds.
                raise EcgtoolError(f"patient {pid} would be in both {seen[pid]} and {split}; the store's folds split patients")
            seen[pid] = split


def write_subset(store: EcgStore, indices: np.ndarray, out: Path, folds: np.ndarray, extra_attrs: dict, overwrite: bool) -> int:
    """Copy the records ``indices`` (sorted) chunk by chunk into a new store."""
    attrs = {k: v for k, v in store.attrs.items() if k not in ("format", "format_version", "complete", "content_hash")}
    attrs.update(extra_attrs)
    with StoreWriter(
        out, n_leads=len(store.leads), n_samples=store.n_samples, attrs=attrs, dtype=str(store.signals.dtype),
        optional=tuple(k for k in store.extras), overwrite=overwrite, chunk_records=store.chunk_records,
        inputs=(store.path,),
    ) as w:
        for start, stop in store.chunk_bounds():
            sel = indices[(indices >= start) & (indices < stop)]
            if len(sel) == 0:
                continue
            block, scale = store.stored_rows(start, stop)  # a missing or corrupt chunk is an error, not zeros
            w.append(
                block[sel - start], store.labels[sel], store.record_id[sel], store.patient_id[sel], folds[sel],
                signal_scale=None if scale is None else scale[sel - start], **{k: v[sel] for k, v in store.extras.items()},
            )
    return len(indices)


def check_split_dir(out_dir: str | os.PathLike, overwrite: bool, inputs=()) -> Path:
    """Refuse, before any work, a split directory that cannot be (re)written as a unit: one among
    the inputs, holding anything but a split's stores, or holding them without ``overwrite``."""
    out_dir = Path(out_dir)
    check_apart(out_dir, inputs)
    if not os.path.lexists(out_dir):
        return out_dir
    if not out_dir.is_dir():
        raise EcgtoolError(f"{out_dir} exists and is not a directory")
    names = {f"{s}.zarr" for s in SPLITS}
    others = sorted(p.name for p in out_dir.iterdir() if p.name not in names)
    if others:
        raise EcgtoolError(f"{out_dir} holds other files than a split's stores (e.g. {others[0]}); a split directory is "
                           "replaced as a whole: give a new directory, or one holding only train/val/test.zarr")
    existing = [str(out_dir / n) for n in sorted(names) if (out_dir / n).exists()]
    if existing and not overwrite:
        raise EcgtoolError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace")
    return out_dir


def run_split(store: EcgStore, out_dir: str | os.PathLike, plan: SplitPlan, overwrite: bool) -> dict[str, Path]:
    """Write the non-empty splits into ``out_dir`` as one unit.

    The whole directory is written beside it and published in one rename (swapped in,
    with ``overwrite``), so at every instant ``out_dir`` holds all the stores of one run
    — this one's or the previous one's — never a mix that could leak patients across sets.
    """
    out_dir = check_split_dir(out_dir, overwrite, (store.path,))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(out_dir)
    tmp = temporary_sibling(out_dir)
    remove(tmp)
    tmp.mkdir()
    written = []
    try:
        for split in SPLITS:
            idx = plan.members[split]
            if len(idx) == 0:
                continue
            provenance = list(store.attrs["provenance"]) + [
                make_entry("split", [store.path], split=split, folds=plan.fold_lists[split], fold_source=plan.fold_source)
            ]
            write_subset(
                store, idx, tmp / f"{split}.zarr", plan.folds,
                {"split": {"name": split, "folds": plan.fold_lists[split], "fold_source": plan.fold_source}, "provenance": provenance},
                overwrite=False,
            )
            written.append(split)
        if out_dir.is_dir() and not overwrite and not any(out_dir.iterdir()):
            out_dir.rmdir()  # an empty directory the user made for the splits: publish in its place
        publish(tmp, out_dir, overwrite)
    finally:
        if os.path.lexists(tmp):
            remove(tmp)
    return {s: out_dir / f"{s}.zarr" for s in written}
