"""``merge``: the parts written by ``prep --shard I/N`` → the store one unsharded ``prep`` writes.

Only parts of one sharded prep run are accepted (not arbitrary stores): every
shard ``0 … N-1`` of the same ``N`` exactly once, split from the same record list,
with the same attributes apart from what is per part (the shard itself, its
per-lead statistics, skipped records, provenance, content hash). The parts are
copied in shard order, chunk by chunk (memory: one signals chunk plus one part's
per-record arrays), into a new store written all-or-nothing. ``--normalise
dataset`` mean and std are recomputed from the parts' summed per-lead
statistics with prep's own formula.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecgtool.data.prep import dataset_normalisation
from ecgtool.data.store import StoreWriter, open_store
from ecgtool.errors import EcgtoolError
from ecgtool.outputs import check_new_output
from ecgtool.provenance import make_entry

# Attributes that legitimately differ between the parts of one run (everything else must agree).
PER_PART_ATTRS = ("format", "format_version", "complete", "content_hash", "provenance", "shard", "lead_stats",
                  "skipped_records", "unlabelled_dropped", "unknown_labels", "normalisation")


@dataclass
class MergeReport:
    parts: int
    written: int
    skipped: int  # source records left out (unreadable, or without a label of the task)
    unlabelled: int  # rows dropped for want of a label: records, or beats in a beat store
    beats: bool = False


_ABSENT = object()


def _describe(value) -> str:
    if value is _ABSENT:
        return "absent"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def differences(want: dict, got: dict, prefix: str = "") -> list[tuple[str, object, object]]:
    """``(key, want's value, got's value)`` for every value that differs, looking into nested mappings so that the
    key named is the one that differs (``preprocessing.fs``), not the whole mapping around it."""
    out = []
    for k in list(want) + [k for k in got if k not in want]:
        a, b = want.get(k, _ABSENT), got.get(k, _ABSENT)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{k}.")
        elif a is _ABSENT and isinstance(b, dict):  # a mapping on one side only (an older store): its keys, one by one
            out += [(key, _ABSENT, x) for key, x, _ in differences(b, {}, f"{prefix}{k}.")]
        elif b is _ABSENT and isinstance(a, dict):
            out += differences(a, {}, f"{prefix}{k}.")
        elif a != b:
            out.append((f"{prefix}{k}", a, b))
    return out


@dataclass
class _Part:
    """What merge keeps of a part between checking and copying: not its per-record arrays."""

    path: Path
    attrs: dict
    records: int
    signature: dict


def _part(path: str | os.PathLike) -> _Part:
    store = open_store(path)  # validates; its per-record arrays are dropped again on return
    sig = {k: v for k, v in store.attrs.items() if k not in PER_PART_ATTRS}
    if isinstance(sig.get("preprocessing"), dict):  # --leads as typed (None: all) is compared by the leads it gave
        sig["preprocessing"] = {**sig["preprocessing"], "leads": list(store.leads)}
    sig["normalisation method"] = store.attrs["normalisation"].get("method")
    sig["signal dtype"] = str(store.signals.dtype)
    sig["signal shape"] = list(store.signals.shape[1:])
    sig["chunk records"] = store.chunk_records
    sig["optional arrays"] = {k: str(v.dtype) if v.dtype.kind not in "UT" else "str" for k, v in store.extras.items()}
    return _Part(store.path, store.attrs, len(store), sig)


def _check_parts(stores: list[_Part]) -> list[_Part]:
    """The parts in shard order, or an ``EcgtoolError`` naming what is wrong."""
    for s in stores:
        shard = s.attrs.get("shard")
        if not isinstance(shard, dict) or "lead_stats" not in s.attrs:
            raise EcgtoolError(f"{s.path} is not a part of a sharded prep (no shard attribute); merge joins the parts "
                               "written by `ecgtool prep --shard I/N`")
    first = stores[0]
    ref = first.attrs["shard"]
    for s in stores[1:]:
        shard = s.attrs["shard"]
        if shard["count"] != ref["count"]:
            raise EcgtoolError(f"the parts disagree on the number of shards: {first.path} is shard {ref['index']}/{ref['count']}, "
                               f"{s.path} is {shard['index']}/{shard['count']}")
        if (shard["records_total"], shard.get("record_list_hash")) != (ref["records_total"], ref.get("record_list_hash")):
            raise EcgtoolError(f"{s.path} was sharded from a different record list than {first.path} "
                               f"({shard['records_total']} vs {ref['records_total']} records); the parts must come from one prep run")
    count = ref["count"]
    by_index: dict[int, _Part] = {}
    for s in stores:
        i = s.attrs["shard"]["index"]
        if i in by_index:
            raise EcgtoolError(f"shard {i}/{count} given twice: {by_index[i].path} and {s.path}")
        by_index[i] = s
    missing = [i for i in range(count) if i not in by_index]
    if missing:
        shown = ", ".join(f"{i}/{count}" for i in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise EcgtoolError(f"missing shard(s) {shown}: pass all {count} parts of the prep --shard run")
    ordered = [by_index[i] for i in range(count)]
    want = ordered[0].signature
    for s in ordered[1:]:
        got = s.signature
        diff = differences(want, got)  # attrs in the store's order, then the layout
        if diff:
            shown = "; ".join(f"{k} is {_describe(b)} there, {_describe(a)} here" for k, a, b in diff[:5])
            more = f"; and {len(diff) - 5} more" if len(diff) > 5 else ""
            raise EcgtoolError(f"{s.path} does not match {ordered[0].path}: {shown}{more}; "
                               "merge only parts of one prep run with the same options")
    return ordered


def _provenance(parts: list[_Part], inputs: list[Path]) -> list[dict]:
    """The entries every part shares (fetch), then each part's own entries (its prep), then the merge."""
    lists = [list(p.attrs["provenance"]) for p in parts]
    common = 0
    while all(len(lst) > common and lst[common] == lists[0][common] for lst in lists):
        common += 1
    out = lists[0][:common]
    for lst in lists:
        out.extend(lst[common:])
    return out + [make_entry("merge", inputs, parts=len(parts))]


def merge_parts(
    paths: list[str | os.PathLike],
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> MergeReport:
    """Join the parts of one ``prep --shard`` run into the store ``out`` (see the module docstring)."""
    if not paths:
        raise EcgtoolError("no parts to merge")
    out = Path(out)
    check_new_output(out, overwrite, paths)
    parts = _check_parts([_part(p) for p in paths])
    total = sum(p.records for p in parts)
    if total == 0:
        raise EcgtoolError(f"no records left to write: all {len(parts)} parts are empty (all records skipped or unlabelled)")

    first = parts[0]
    attrs = {k: v for k, v in first.attrs.items() if k not in PER_PART_ATTRS}
    method = first.attrs["normalisation"]["method"]
    if method == "dataset":
        stats = np.zeros((3, len(first.attrs["leads"])))
        for p in parts:
            ls = p.attrs["lead_stats"]
            stats += np.array([ls["count"], ls["sum"], ls["sum_sq"]], dtype=np.float64)
        attrs["normalisation"] = dataset_normalisation(stats)
    else:
        attrs["normalisation"] = dict(first.attrs["normalisation"])
    attrs["skipped_records"] = [r for p in parts for r in p.attrs.get("skipped_records", [])]
    attrs["unlabelled_dropped"] = sum(int(p.attrs.get("unlabelled_dropped", 0)) for p in parts)
    unknown: dict[str, int] = {}
    for p in parts:
        for code, n in p.attrs.get("unknown_labels", {}).items():
            unknown[code] = unknown.get(code, 0) + int(n)
    attrs["unknown_labels"] = dict(sorted(unknown.items()))
    attrs["provenance"] = _provenance(parts, [p.path for p in parts])

    done = 0
    n_leads, n_samples = first.signature["signal shape"]
    with StoreWriter(
        out, n_leads=n_leads, n_samples=n_samples, attrs=attrs, dtype=first.signature["signal dtype"],
        optional=tuple(first.signature["optional arrays"]), overwrite=overwrite, chunk_records=first.signature["chunk records"],
        inputs=tuple(paths),
    ) as writer:
        for info in parts:
            part = open_store(info.path)
            for start, stop in part.chunk_bounds():
                block, scale = part.stored_rows(start, stop)
                writer.append(
                    block, part.labels[start:stop], part.record_id[start:stop],
                    part.patient_id[start:stop], part.fold[start:stop], signal_scale=scale,
                    **{k: v[start:stop] for k, v in part.extras.items()},
                )
                done += stop - start
                if progress:
                    progress(done, total)
    return MergeReport(parts=len(parts), written=total, skipped=len(attrs["skipped_records"]),
                       unlabelled=attrs["unlabelled_dropped"], beats=attrs.get("unit") == "beat")
