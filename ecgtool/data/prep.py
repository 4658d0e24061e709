"""``prep``: a raw dataset directory → an ECG store.

Records are read and preprocessed in parallel worker processes, in batches,
with a bounded number of batches in flight (``ecgtool.processes``), and streamed
into the store in record order: memory holds a few batches and one store chunk,
never the dataset.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from ecgtool.data.choices import ON_ERROR
from ecgtool.data.readers import DatasetReader
from ecgtool.data.readers.base import read_fetch_provenance
from ecgtool.data.store import ZSCORE_SCALE, StoreWriter
from ecgtool.data.transforms import PrepConfig, beat_windows, preprocess, select_leads
from ecgtool.errors import ConfigError, EcgtoolError, record_failure
from ecgtool.outputs import check_new_output
from ecgtool.processes import check_parallel, ordered_map
from ecgtool.provenance import make_entry


@dataclass
class PrepReport:
    written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (record, reason): every record left out
    unlabelled: int = 0  # rows dropped for want of a label of the task (records, or beats in a beat store)
    unknown_labels: dict[str, int] = field(default_factory=dict)  # label/code outside the task's classes -> records
    records: int = 0  # source records this run read (its shard's, with --shard)
    records_total: int = 0  # source records of the whole dataset (after --limit)


def shard_range(n: int, index: int, count: int) -> tuple[int, int]:
    """``[start, stop)`` of shard ``index`` (0-based) of ``count`` near-equal contiguous ranges of ``n`` records."""
    return index * n // count, (index + 1) * n // count


def record_list_hash(ids: list[str]) -> str:
    """A fingerprint of the ordered record list a sharded prep split, so merge can tell parts of one run."""
    h = hashlib.blake2b(digest_size=16)
    for rid in ids:
        h.update(rid.encode() + b"\0")
    return h.hexdigest()


def dataset_normalisation(stats: np.ndarray) -> dict:
    """``--normalise dataset`` attrs from per-lead ``[count, sum, sum of squares]`` (float64 ``[3, leads]``).

    Shared by prep and merge, so a merged store gets exactly the formula a single prep uses.
    A lead without samples (an empty shard) gets mean 0, std 1.
    """
    count, total, squares = (np.asarray(a, dtype=np.float64) for a in stats)
    has = count > 0
    mean = np.divide(total, count, out=np.zeros_like(total), where=has)
    var = np.divide(squares, count, out=np.ones_like(squares), where=has) - np.where(has, mean**2, 0.0)
    std = np.sqrt(np.maximum(var, 0.0))
    return {"method": "dataset", "mean": mean.tolist(), "std": np.maximum(std, 1e-6).tolist()}


def lead_stats_attr(stats: np.ndarray) -> dict:
    """Per-lead raw statistics written to a shard's attrs (exact float64 sums; JSON keeps every bit)."""
    return {"count": [int(c) for c in stats[0]], "sum": stats[1].tolist(), "sum_sq": stats[2].tolist()}


@dataclass(frozen=True)
class _Job:
    cfg: PrepConfig
    leads: tuple[str, ...]
    classes: tuple[str, ...]
    n_samples: int


@dataclass
class _Rows:
    """What one source record becomes: one row (a record store) or one row per beat (a beat store)."""

    signals: np.ndarray  # [n, leads, samples]
    valid: np.ndarray  # [n] recorded samples per row (the rest is zero padding)
    labels: np.ndarray  # [n, classes]
    patient: str
    fold: int
    age: float
    sex: str
    source: str
    beat_sample: np.ndarray | None = None  # [n] beat positions at the store's fs
    scale: np.ndarray | None = None  # [n, leads, 2] the (mean, std) a z-score removed (zscore_scale)
    unknown: tuple[str, ...] = ()  # the record's labels (codes) outside the task's classes
    unlabelled_reason: str = ""  # the reader's reason for a record without labels


def _multi_hot(names, index: dict[str, int]) -> np.ndarray:
    out = np.zeros(len(index), np.uint8)
    for name in names:
        if name in index:
            out[index[name]] = 1
    return out


def _prep_one(reader: DatasetReader, job: _Job, record_id: str) -> tuple:
    """``(record_id, None, rows)`` or ``(record_id, error message, None)``; never raises."""
    try:
        rec = reader.read(record_id)
        x = select_leads(rec.signal, rec.leads, job.leads)
        index = {c: i for i, c in enumerate(job.classes)}
        unknown = tuple(dict.fromkeys([*rec.unknown_labels, *(name for name in rec.labels if name not in index)]))
        meta = dict(patient=rec.patient_id, fold=rec.fold, age=rec.age, sex=rec.sex, source=rec.source, unknown=unknown,
                    unlabelled_reason=rec.unlabelled_reason)
        if job.cfg.beat_window is None:
            signals, scale = preprocess(x, rec.fs, job.cfg, job.n_samples)
            n_valid = min(job.n_samples, int(round(rec.signal.shape[-1] * job.cfg.fs / rec.fs)))
            return record_id, None, _Rows(signals[None], np.array([n_valid]), _multi_hot(rec.labels, index)[None],
                                          scale=None if scale is None else scale[None], **meta)
        if rec.beats is None:
            raise EcgtoolError("has no beat annotations (a beat window needs a beat-annotated dataset)")
        signals, positions, keep, scales = beat_windows(x, rec.fs, rec.beats[0], job.cfg)
        symbols = [s for s, k in zip(rec.beats[1], keep) if k]
        labels = np.stack([_multi_hot([s], index) for s in symbols]) if symbols else np.zeros((0, len(index)), np.uint8)
        return record_id, None, _Rows(signals, np.full(len(signals), job.n_samples), labels, beat_sample=positions,
                                      scale=scales, **meta)
    except Exception as e:  # reported by name; --on-error decides
        return record_id, record_failure(e, record_id), None


def run_prep(
    reader: DatasetReader,
    out: str | Path,
    cfg: PrepConfig,
    *,
    workers: int = 1,
    on_error: str = "fail",
    keep_unlabelled: bool = False,
    dtype: str = "int16",
    overwrite: bool = False,
    limit: int | None = None,
    shard: tuple[int, int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PrepReport:
    """Preprocess every record of ``reader`` into the store ``out``.

    ``shard=(i, n)`` (0 <= i < n) processes only the i-th of n contiguous ranges of the
    record list (after ``limit``); the store then records the shard and the per-lead
    statistics that ``ecgtool merge`` needs to join the parts into the store an unsharded
    run writes. A shard may end up empty (every record skipped or unlabelled): its part is
    an empty store, and merge fails only if all parts are.
    """
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error must be one of {', '.join(ON_ERROR)}, not {on_error!r}", "on_error")
    check_parallel(workers, "workers", "jobs", "processes")
    check_new_output(out, overwrite, reader.inputs)  # before reading a single record
    all_ids = reader.record_ids()[:limit] if limit else reader.record_ids()
    ids = all_ids
    leads = tuple(cfg.leads) if cfg.leads else tuple(reader.leads)
    unknown = [lead for lead in leads if lead not in reader.leads]
    if unknown:
        raise ConfigError(f"leads: {', '.join(unknown)} not among the dataset's leads {', '.join(reader.leads)}", "leads")
    if not all_ids:
        raise EcgtoolError(f"{getattr(reader, 'root', 'the dataset')}: no records to read")
    beats = cfg.beat_window is not None
    if shard is not None:
        index, count = shard
        if count < 1:
            raise ConfigError(f"shard {index}/{count}: the number of shards must be at least 1", "shard")
        if not 0 <= index < count:
            raise ConfigError(f"shard {index}/{count}: shards are numbered from 0 to {count - 1} (a Slurm array 0-{count - 1})",
                              "shard")
        if cfg.samples is None and not beats:
            raise ConfigError("a shard needs a fixed record length in seconds: with seconds None each part would pad "
                              "to its own longest record", "shard")
        start, stop = shard_range(len(all_ids), index, count)
        ids = all_ids[start:stop]
    if keep_unlabelled and not reader.multi_label:
        raise ConfigError(f"{reader.task} is multi-class, so every record needs exactly one label: "
                          "unlabelled records cannot be kept", "keep_unlabelled")
    if beats:
        n_samples = cfg.beat_samples
    else:
        n_samples = cfg.samples or _longest(reader, ids, cfg.fs, on_error)
    job = _Job(cfg, leads, tuple(reader.classes), n_samples)
    report = PrepReport(records=len(ids), records_total=len(all_ids))
    stats = np.zeros((3, len(leads)))  # count, sum, sum of squares per lead, for --normalise dataset
    attrs = {
        "fs": cfg.fs,
        "leads": list(leads),
        "units": "mV" if cfg.normalisation != "zscore" else f"per-{'beat' if beats else 'record'} z-score of mV",
        "unit": "beat" if beats else "record",
        "classes": list(reader.classes),
        "class_descriptions": reader.class_descriptions,
        "task": reader.task,
        "multi_label": reader.multi_label,
        "normalisation": {"method": cfg.normalisation},
        "patient_ids": reader.patient_ids,
        "dataset": reader.dataset,
        "preprocessing": cfg.describe() | {"samples": n_samples},
        # How the source was read and which records kept: not in ``preprocessing`` (what is done to each record's
        # samples), yet it changes the rows and labels, so merge compares it like the rest (absent in older stores).
        "reading": {"reader": reader.name, "task": reader.task, **reader.options, "keep_unlabelled": bool(keep_unlabelled)},
        **reader.extra_attrs,
    }
    scaled = cfg.normalisation == "zscore"  # keep what the z-score removed, so the mV come back (charts)
    writer = StoreWriter(
        out, n_leads=len(leads), n_samples=n_samples, attrs=attrs, dtype=dtype,
        optional=("age", "sex", "source") + (("beat_sample",) if beats else ()) + ((ZSCORE_SCALE,) if scaled else ()),
        overwrite=overwrite,
        inputs=reader.inputs,
    )
    with writer:
        for i, (rid, error, result) in enumerate(ordered_map(partial(_prep_one, reader, job), ids, workers), 1):
            if error is not None:
                if on_error == "fail":
                    raise EcgtoolError(f"record {rid}: {error} (use --on-error skip to leave it out)")
                report.skipped.append((rid, error))
            else:
                for code in result.unknown:
                    report.unknown_labels[code] = report.unknown_labels.get(code, 0) + 1
                keep = result.labels.any(axis=1) | keep_unlabelled
                report.unlabelled += int((~keep).sum())
                if not beats and not keep.any():  # left out, and listed with the reason (a beat store counts beats)
                    why = (f"{', '.join(result.unknown)} not among its classes" if result.unknown
                           else result.unlabelled_reason or "the record has none")
                    report.skipped.append((rid, f"no label of the task {reader.task} ({why})"))
                if keep.any():
                    n = int(keep.sum())
                    extra = {"beat_sample": result.beat_sample[keep]} if beats else {}
                    if scaled:
                        extra[ZSCORE_SCALE] = result.scale[keep]
                    writer.append(
                        result.signals[keep], result.labels[keep], [Path(rid).name] * n, [result.patient] * n,
                        [result.fold] * n, age=[result.age] * n, sex=[result.sex] * n, source=[result.source] * n, **extra,
                    )
                    for x, n_valid in zip(result.signals[keep], result.valid[keep]):
                        kept = x[:, :n_valid]
                        stats += [np.full(len(leads), n_valid), kept.sum(-1, dtype=np.float64), np.square(kept, dtype=np.float64).sum(-1)]
            if progress:
                progress(i, len(ids))
        if writer.n_records == 0 and shard is None:
            hint = "; this dataset's labels are per beat: use --beat-window" if reader.beat_annotated and not beats else ""
            shown = "; ".join(f"{r}: {why}" for r, why in report.skipped[:3]) or "all skipped or unlabelled"
            more = f"; and {len(report.skipped) - 3} more" if len(report.skipped) > 3 else ""
            raise EcgtoolError(f"no records left to write from {len(ids)} read ({shown}{more}){hint}")
        if cfg.normalisation == "dataset":
            writer.attrs["normalisation"] = dataset_normalisation(stats)
        writer.attrs["skipped_records"] = [{"record": r, "reason": why} for r, why in report.skipped]
        writer.attrs["unlabelled_dropped"] = report.unlabelled
        writer.attrs["unknown_labels"] = dict(sorted(report.unknown_labels.items()))
        details = {}
        if shard is not None:
            writer.attrs["shard"] = {
                "index": shard[0], "count": shard[1], "records_total": len(all_ids),
                "start": start, "stop": stop, "record_list_hash": record_list_hash(all_ids),
            }
            writer.attrs["lead_stats"] = lead_stats_attr(stats)
            details["shard"] = f"{shard[0]}/{shard[1]}"
        root = Path(getattr(reader, "root", "."))
        writer.attrs["provenance"] = read_fetch_provenance(root) + [
            make_entry("prep", [root], reader=reader.name, workers=workers, **details)
        ]
        report.written = writer.n_records
    return report


def _longest(reader: DatasetReader, ids: list[str], fs: float, on_error: str) -> int:
    """Samples of the longest record at ``fs`` (for --seconds 0); unreadable headers follow --on-error."""
    longest = 0.0
    for rid in ids:
        try:
            longest = max(longest, reader.duration(rid))
        except Exception as e:
            if on_error == "fail":
                raise EcgtoolError(f"record {rid}: {e} (use --on-error skip to leave it out)") from e
    if longest == 0:
        raise EcgtoolError("no record could be read to find the longest length")
    return int(math.ceil(longest * fs))
