"""``predict``: a checkpoint applied to raw recordings, with the preprocessing its training data had.

A checkpoint records how its training store's rows were made (``Checkpoint.preprocessing``: prep's
settings, the row length and dtype); :class:`~ecgtool.data.inputs.RecordingReader` replays exactly that
on each recording (``transforms.preprocess``, the code prep runs) and then reads the row as the loader
reads store rows, so a recording gets the probabilities its store row gets from ``eval``. A model trained
on crops shorter than those rows is applied to sliding windows and aggregated as ``eval`` does
(``eval/predict.py``), with the windows the checkpoint's thresholds were tuned on. Decisions use the
checkpoint's thresholds (multi-label) or the argmax (multi-class).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from ecgtool.checkpoint import Checkpoint, CheckpointError
from ecgtool.data.choices import CSV_UNITS, ON_ERROR, SIGNAL_DTYPES
from ecgtool.data.inputs import RecordingReader
from ecgtool.data.recordings import Recording, recording_row
from ecgtool.data.transforms import check_fs
from ecgtool.errors import ConfigError, EcgtoolError
from ecgtool.eval.metrics import predict_labels
from ecgtool.eval.predict import Windows, default_aggregate, predict, windows_for
from ecgtool.eval.thresholds import checkpoint_thresholds
from ecgtool.outputs import atomic_output
from ecgtool.processes import check_parallel, ordered_map
from ecgtool.provenance import fingerprint, make_entry

OUTPUT_SUFFIXES = (".csv", ".json")
SHOWN = 3  # record names a summary warning lists


@dataclass(frozen=True)
class PredictOptions:
    batch_size: int = 64
    on_error: str = "fail"  # a recording that cannot be read or scored: stop (nothing written) or leave it out
    fs: float | None = None  # the sampling rate of CSV recordings (a CSV carries none)
    csv_units: str = "mV"
    workers: int = 1  # processes reading and preprocessing recordings (ecgtool.processes)

    def __post_init__(self):
        if self.on_error not in ON_ERROR:
            raise ConfigError(f"on_error must be one of {', '.join(ON_ERROR)}, not {self.on_error!r}", "on_error")
        if self.csv_units not in CSV_UNITS:
            raise ConfigError(f"CSV units must be one of {', '.join(CSV_UNITS)}, not {self.csv_units!r}", "csv_units")
        if self.fs is not None:
            check_fs(self.fs, "fs", "the CSV recordings' fs")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, not {self.batch_size}", "batch_size")
        if self.workers < 1:
            raise ConfigError(f"jobs must be at least 1, not {self.workers}", "workers")
        check_parallel(self.workers, "workers", "jobs", "processes")


@dataclass
class Predictions:
    """Probabilities and decisions for the recordings read, in input order; the ones left out with why."""

    checkpoint: Checkpoint
    recordings: list[Recording]
    probs: np.ndarray  # [records, classes]
    decisions: np.ndarray  # [records, classes] multi-hot (one-hot by argmax for multi-class)
    thresholds: np.ndarray | None  # None: argmax
    threshold_source: str
    windows: dict | None
    skipped: list[tuple[Recording, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return list(self.checkpoint.classes)

    def labels(self, i: int) -> list[str]:
        return [c for c, d in zip(self.classes, self.decisions[i]) if d]

    def to_dict(self, records: bool = True) -> dict:
        """The JSON document (``records=False``: with a placeholder for the records that ``write_json`` fills)."""
        ckpt = self.checkpoint
        return {
            "checkpoint": str(ckpt.path), "checkpoint_fingerprint": fingerprint(ckpt.path) if ckpt.path else None,
            "model": ckpt.model.name, "task": ckpt.task, "multi_label": ckpt.multi_label, "classes": self.classes,
            "thresholds": None if self.thresholds is None else [_number(t) for t in self.thresholds],
            "threshold_source": self.threshold_source, "windows": self.windows, "preprocessing": ckpt.preprocessing,
            "records": [self._record(i) for i in range(len(self.recordings))] if records else _RECORDS,
            "skipped": [{"record": r.name, "path": str(r.path), "reason": why} for r, why in self.skipped],
            "warnings": self.warnings, "provenance": [self.provenance],
        }

    def _record(self, i: int) -> dict:
        r = self.recordings[i]
        return {"record": r.name, "path": str(r.path), "probabilities": {c: _number(p) for c, p in zip(self.classes, self.probs[i])},
                "labels": self.labels(i)}

    def write_json(self, f) -> None:
        """``to_dict()`` as ``json.dumps(..., indent=2)`` writes it, into the text file ``f`` one record at a time:
        a large run's records are never all held as dicts or text (several hundred bytes each, against 4 per
        probability in ``probs``)."""
        head, tail = json.dumps(self.to_dict(records=False), indent=2, allow_nan=False).split(json.dumps(_RECORDS))
        f.write(head + "[")
        for i in range(len(self.recordings)):
            text = json.dumps(self._record(i), indent=2, allow_nan=False).replace("\n", "\n    ")
            f.write(("," if i else "") + "\n    " + text)
        f.write(("\n  ]" if self.recordings else "]") + tail + "\n")

    def write_csv(self, f) -> None:
        """``record``, one probability column per class (named by it), ``labels`` (decided classes joined by ``;``),
        into the text file ``f`` row by row."""
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["record", *self.classes, "labels"])
        for i, r in enumerate(self.recordings):
            w.writerow([r.name, *(f"{p:.6g}" for p in self.probs[i]), ";".join(self.labels(i))])


_RECORDS = "\0records\0"  # placeholder of the records in the document's text: no path or name holds a NUL


def _number(p) -> float | None:
    """A probability for JSON, which has no NaN (a broken model's output): null."""
    return float(p) if p == p else None


def recording_reader(ckpt: Checkpoint) -> RecordingReader:
    """How ``ckpt``'s training rows were made, replayable on a raw recording; refuses a checkpoint that cannot
    be applied to recordings (an encoder; no or an unusable record of the preprocessing) in one sentence."""
    from ecgtool.data.store import MAX_RECORD_VALUES
    from ecgtool.data.transforms import PrepConfig

    if ckpt.is_encoder:
        raise CheckpointError(f"{ckpt.name} is an encoder from pretraining, with no classifier to predict with: train one "
                              f"with `ecgtool train MODEL STORE --init {ckpt.name}` and use that")
    record = ckpt.preprocessing
    if record is None:
        raise CheckpointError(f"{ckpt.name} does not record the preprocessing of its training data (prep's settings; "
                              "checkpoints written before ecgtool recorded it lack it): train it again to predict on raw recordings")
    try:
        cfg = PrepConfig.from_record(record)
        samples, dtype = record.get("samples"), record.get("dtype", "float32")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise EcgtoolError(f"gives {samples!r} samples per row, not a positive whole number")
        if samples * len(ckpt.input.leads) > MAX_RECORD_VALUES:  # a stranger's file: refused before allocating
            raise EcgtoolError(f"gives {samples} samples per row of {len(ckpt.input.leads)} leads, more than the "
                               f"{MAX_RECORD_VALUES} values ecgtool accepts per record")
        if dtype not in SIGNAL_DTYPES:
            raise EcgtoolError(f"gives the row dtype {dtype!r}, not {' or '.join(SIGNAL_DTYPES)}")
    except EcgtoolError as e:
        raise CheckpointError(f"{ckpt.name}: the record of its training data's preprocessing {e}") from None
    try:
        return RecordingReader(ckpt.input, cfg, samples, dtype)
    except EcgtoolError as e:
        raise CheckpointError(f"{ckpt.name}: {e}") from None


def _windows(ckpt: Checkpoint, reader: RecordingReader) -> Windows | None:
    """Sliding windows for a model trained on crops of its rows: those its thresholds were tuned on, else eval's default."""
    tuned = (ckpt.thresholds or {}).get("windows") or {}
    return windows_for(ckpt.input.samples, reader.samples, tuned.get("stride"),
                       tuned.get("aggregate") or default_aggregate(ckpt.multi_label))


def _listed(names: list[str]) -> str:
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def check_recordings(recordings: list[Recording], opts: PredictOptions) -> None:
    """What can be refused before any recording is read."""
    csvs = [r for r in recordings if r.kind == "csv"]
    if csvs and opts.fs is None:
        raise ConfigError(f"{csvs[0].path} is a CSV file, which carries no sampling rate: give it", "fs")


def run_predict(ckpt: Checkpoint | str | os.PathLike, recordings: list[Recording], device, opts: PredictOptions | None = None,
                progress: Callable[[int, int], None] | None = None) -> Predictions:
    """Probabilities and decisions of ``ckpt`` for each recording (``data.recordings.find_recordings``).

    A recording that cannot be read or lacks a lead the model reads stops the run (``on_error`` "fail": one
    error naming it) or is left out and listed (``"skip"``)."""
    import torch

    opts = opts or PredictOptions()
    if not isinstance(ckpt, Checkpoint):
        ckpt = Checkpoint.load(ckpt)
    reader = recording_reader(ckpt)
    check_recordings(recordings, opts)
    windows = _windows(ckpt, reader)
    thresholds, source = checkpoint_thresholds(ckpt)
    device = torch.device(device)
    model = ckpt.build_model().to(device)
    kept: list[Recording] = []
    skipped: list[tuple[Recording, str]] = []
    short, long = [], []
    fs, samples = reader.prep.fs, reader.samples

    def batches():
        rows, start = [], 0
        read = partial(recording_row, reader, opts.fs, opts.csv_units)  # torch-free: the workers start light
        for i, (rec, (row, length, why)) in enumerate(zip(recordings, ordered_map(read, recordings, opts.workers)), 1):
            if why is None:
                rows.append(row)
                (short if length < samples - 0.5 else long if length > samples + 0.5 else []).append(rec.name)
                kept.append(rec)
            elif opts.on_error == "fail":
                raise EcgtoolError(f"record {rec.name}: {why} (use --on-error skip to leave it out)")
            else:
                skipped.append((rec, why))
            if progress:
                progress(i, len(recordings))
            if len(rows) == opts.batch_size or (i == len(recordings) and rows):
                x = torch.from_numpy(np.ascontiguousarray(reader(np.stack(rows))))
                yield x, None, np.arange(start, start + len(rows))
                start += len(rows)
                rows = []
        if not kept:
            shown = "; ".join(f"{r.name}: {why}" for r, why in skipped[:SHOWN])
            raise EcgtoolError(f"no recording could be scored ({shown}{'; …' if len(skipped) > SHOWN else ''})")

    probs, _ = predict(model, batches(), device, ckpt.multi_label, windows)
    decisions = predict_labels(probs, ckpt.multi_label, thresholds)
    warnings = ckpt.unfinished()
    seconds = f"{samples / fs:g} s ({samples} samples at {fs:g} Hz)"
    if short:
        warnings.append(f"{len(short)} recording(s) shorter than the {seconds} of the model's training records, zero-padded "
                        f"at the end as prep pads them: {_listed(short)}")
    if long:
        part = "first" if reader.prep.crop == "start" else "central"
        warnings.append(f"{len(long)} recording(s) longer than the {seconds} of the model's training records: only their "
                        f"{part} {samples / fs:g} s scored, as prep crops them: {_listed(long)}")
    inputs = ([ckpt.path] if ckpt.path else []) + list(dict.fromkeys(r.source for r in recordings))
    return Predictions(ckpt, kept, probs, decisions, thresholds, source, None if windows is None else windows.to_dict(),
                       skipped, warnings, make_entry("predict", inputs, on_error=opts.on_error))


def output_format(path: str | os.PathLike) -> str:
    """``csv`` or ``json`` from the output's suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(f"{path}: write predictions to a .csv or a .json file", "output")
    return suffix[1:]


def write_predictions(path: str | os.PathLike, result: Predictions, overwrite: bool, inputs=()) -> None:
    """The predictions as CSV or JSON (by the suffix), written atomically."""
    write = result.write_csv if output_format(path) == "csv" else result.write_json
    with atomic_output(path, overwrite, inputs=inputs) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())

