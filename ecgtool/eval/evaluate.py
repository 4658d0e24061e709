"""``eval``: a checkpoint applied to a store, and the report of how well it does.

The honest protocol is the default: decision thresholds come from validation
data (the checkpoint's, or tuned now on ``--val``) and never from the store
being reported unless the user asks for that explicitly; the report says where
they came from. Every headline metric gets a seeded bootstrap interval, and a
second checkpoint is compared on the very same resamples.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ecgtool.checkpoint import Checkpoint, pretraining_overlap
from ecgtool.data.inputs import classes_without_both
from ecgtool.data.loader import ChunkLoader
from ecgtool.data.store import EcgStore, open_store
from ecgtool.errors import ConfigError, EcgtoolError
from ecgtool.eval import bootstrap, challenge
from ecgtool.eval.metrics import classification_report, predict_labels
from ecgtool.eval.leads import ZeroedLeads, reduced_input
from ecgtool.eval.options import DEFAULT_BOOTSTRAP, EvalOptions
from ecgtool.eval.predict import predict, sliding_windows
from ecgtool.eval.thresholds import checkpoint_thresholds, tune_thresholds
from ecgtool.outputs import atomic_output
from ecgtool.provenance import fingerprint, make_entry

PREDICTIONS_FORMAT = "ecgtool.predictions"


@dataclass
class CheckpointResult:
    """One checkpoint applied to a store: record-level outputs and the point report (the JSON document)."""

    checkpoint: Checkpoint
    probs: np.ndarray  # (records, classes) probabilities
    rows: np.ndarray  # store rows, in the order of ``probs``
    y: np.ndarray  # labels of those rows
    yhat: np.ndarray  # decisions (multi-hot, or one-hot by argmax)
    thresholds: np.ndarray | None  # None: argmax (multi-class)
    mapping: tuple | None  # the CinC challenge weights, where the store's classes carry SNOMED codes
    report: dict

    def headline(self) -> bootstrap.HeadlineMetrics:
        return bootstrap.HeadlineMetrics(self.y, self.probs, self.yhat, self.checkpoint.multi_label, self.mapping)


@dataclass
class EvalResult:
    """``eval``'s outcome: the evaluated checkpoint's result (``report`` completed with the store,
    bootstrap intervals and the comparison), the compared one's, and the resamples used."""

    store: EcgStore
    main: CheckpointResult
    other: CheckpointResult | None = None
    resamples: bootstrap.Resamples | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def report(self) -> dict:
        return self.main.report


def _windows(ckpt: Checkpoint, store, opts: EvalOptions):
    return sliding_windows(ckpt.input.samples, store.n_samples, opts.window_stride, opts.aggregate, ckpt.multi_label, store.path)


def _probabilities(ckpt: Checkpoint, store, device, opts: EvalOptions, progress=None) -> tuple[np.ndarray, np.ndarray, dict | None]:
    import torch

    windows = _windows(ckpt, store, opts)
    model = ckpt.build_model().to(device)
    spec = ckpt.input
    if opts.leads is not None:
        spec, positions = reduced_input(ckpt.input, opts.leads)
        if len(positions) < len(ckpt.input.leads):
            model = ZeroedLeads(model, positions, len(ckpt.input.leads)).to(device)
    # one pass over the store: streaming chunk by chunk keeps memory flat in its size (holding it in memory, the
    # loader's choice for training epochs, would only pay off on a second pass)
    loader = ChunkLoader(store, opts.batch_size, spec=spec, mode="stream", pin_memory=torch.device(device).type == "cuda")
    probs, rows = predict(model, loader, torch.device(device), ckpt.multi_label, windows, progress)
    return probs, rows, None if windows is None else windows.to_dict()


def _same_store(a, b) -> bool:
    return os.path.realpath(a) == os.path.realpath(b) or fingerprint(a) == fingerprint(b)


def _describe(windows: dict | None) -> str:
    return "whole records" if windows is None else \
        f"{windows['length']}-sample windows, stride {windows['stride']}, {windows['aggregate']} of the window probabilities"


def _thresholds(ckpt: Checkpoint, store, y, probs, windows, device, opts: EvalOptions,
                progress=None) -> tuple[np.ndarray | None, str]:
    """The decision thresholds and a sentence saying where they came from."""
    if not ckpt.multi_label:
        if opts.val is not None or opts.tune_on_eval_store:
            raise ConfigError("thresholds apply to multi-label tasks; this model decides by argmax",
                              "val" if opts.val is not None else "tune_on_eval_store")
        return checkpoint_thresholds(ckpt)
    how = opts.tuning
    if opts.tune_on_eval_store:
        values = tune_thresholds(y, probs, opts.threshold_objective, opts.threshold_scope)
        return values, f"tuned on the evaluated store itself ({how}; optimistic)"
    if opts.val is not None:
        val = open_store(opts.val)
        val_probs, val_rows, _ = _probabilities(ckpt, val, device, opts, _labelled(progress, f"{_name(ckpt.path)} on {_name(val.path)}"))
        values = tune_thresholds(val.labels[val_rows], val_probs, opts.threshold_objective, opts.threshold_scope)
        return values, f"tuned now on validation store {opts.val} ({how})"
    thresholds = ckpt.thresholds
    if thresholds is None:
        return checkpoint_thresholds(ckpt)
    tuned_on = ckpt.trained_on()[1:2]
    if tuned_on and tuned_on[0] == fingerprint(store.path):
        raise EcgtoolError(f"the checkpoint's thresholds were tuned on {store.path} itself (train --val); give --val with "
                           "another store, or --tune-on-eval-store to accept optimistic thresholds")
    if thresholds.get("windows") != windows:
        raise EcgtoolError(f"the checkpoint's thresholds were tuned on {_describe(thresholds.get('windows'))}; here the model "
                           f"runs on {_describe(windows)}: give --val to tune them for this")
    return checkpoint_thresholds(ckpt)


def check_eval_inputs(checkpoints: list[Checkpoint], store, opts: EvalOptions) -> list[str]:
    """Everything about the inputs (the evaluated checkpoint first, then the compared one) that can be
    refused before any inference; returns warnings."""
    ckpt, *others = checkpoints

    def run_on(c: Checkpoint):  # the input each checkpoint is run on
        return None if opts.leads is None else reduced_input(c.input, opts.leads)[0]

    ckpt.check_store(store, windows=True, input=run_on(ckpt))
    _windows(ckpt, store, opts)
    if opts.val is not None:
        if _same_store(opts.val, store.path):
            raise ConfigError(f"the validation store {opts.val} is the store being evaluated; tuning thresholds on it would "
                              "inflate every thresholded metric ({alternative} does it anyway)", "val",
                              alternative="tune_on_eval_store")
        val = open_store(opts.val)
        if len(val) == 0:
            raise ConfigError(f"the validation store {opts.val} has no records to tune thresholds on", "val")
        ckpt.check_store(val, "validation store", windows=True, input=run_on(ckpt))
        shared = np.intersect1d(val.record_id[:], store.record_id[:])
        if len(shared):
            raise ConfigError(f"the validation store {opts.val} shares {len(shared)} record(s) with {store.path} (e.g. {shared[0]}); "
                              "thresholds must come from records that are not evaluated", "val")
    for other in others:
        other.check_store(store, windows=True, input=run_on(other))
        if other.classes != ckpt.classes:
            raise ConfigError(f"the compared checkpoint {other.path} predicts other classes than {ckpt.path}", "compare")
    if opts.resamples:
        saved = _load_resamples(opts.resamples, len(store))
        # the file's resamples are reused as they are: a count that differs from theirs (the default apart, which
        # no one asked for) would otherwise be dropped without a word (50 asked for, 20 used)
        if opts.bootstrap != DEFAULT_BOOTSTRAP and opts.bootstrap != saved.n:
            raise ConfigError(f"bootstrap {opts.bootstrap} asks for {opts.bootstrap} resamples, and {opts.resamples} holds "
                              f"{saved.n}, which are reused as they are: give {saved.n} or leave the count out", "bootstrap")
    warnings = [w + ": its AUROC, AUPRC and sensitivity or specificity are undefined and left out of the macro means"
                for w in classes_without_both(store, "evaluated store")]
    store_fingerprint = fingerprint(store.path)
    for c in checkpoints:
        warnings += c.warnings_on(store)
        if c.trained_on()[:1] == [store_fingerprint]:
            warnings.append(f"{store.path} is the store {c.path} was trained on: these are training-set metrics")
        if c.init is not None and store_fingerprint in c.init.get("trained_on", ())[:1]:
            warnings.append(f"{store.path} is the store {c.init['path']} was trained on, which {c.path} was initialised from "
                            "(train --init): these metrics are optimistic")
        warnings += [w + ": these metrics may be optimistic" for w in pretraining_overlap(c, store)]
    return warnings


def _challenge_mapping(store):
    codes = store.attrs.get("class_codes")
    return None if not codes else challenge.weights_for(codes, store.attrs.get("task", ""))


def _name(path) -> str:
    return os.path.basename(os.path.normpath(str(path))) if path else "model"


def _labelled(progress, label: str, unit: str = "records"):
    """``progress`` with every call labelled (a new phase for the display), or None."""
    return None if progress is None else lambda done, total: progress(done, total, label=label, unit=unit)


def evaluate_checkpoint(ckpt: Checkpoint, store, device, opts: EvalOptions, progress=None) -> CheckpointResult:
    """Predictions, decisions and the point report of one (loaded) checkpoint on an open store;
    ``progress(done, total, label=...)`` follows the inference, record by record."""
    probs, rows, windows = _probabilities(ckpt, store, device, opts, _labelled(progress, f"{_name(ckpt.path)} on {_name(store.path)}"))
    y = store.labels[rows]
    thresholds, source = _thresholds(ckpt, store, y, probs, windows, device, opts, progress)
    classes = list(ckpt.classes)
    report = classification_report(y, probs, classes, ckpt.multi_label, thresholds)
    mapping = _challenge_mapping(store)
    yhat = predict_labels(probs, ckpt.multi_label, thresholds)
    if mapping is not None:
        report["macro"]["challenge"] = challenge.challenge_metric(y, yhat, mapping)
    report.update({
        "checkpoint": str(ckpt.path),
        "checkpoint_fingerprint": fingerprint(ckpt.path),
        "model": ckpt.model.name,
        "task": ckpt.task,
        "multi_label": ckpt.multi_label,
        "classes": classes,
        "threshold_source": source,
        "windows": windows,
        "leads": None if opts.leads is None else {
            "read": [lead for lead in ckpt.input.leads if lead in opts.leads],
            "zeroed": [lead for lead in ckpt.input.leads if lead not in opts.leads]},
        "challenge": None if mapping is None else {
            "year": mapping[2], "classes_scored": int((mapping[0] >= 0).sum()),
            "definition": f"PhysioNet/CinC Challenge {mapping[2]} metric, published weights",
        },
        "checkpoint_provenance": ckpt.provenance,
    })
    return CheckpointResult(ckpt, probs, rows, y, yhat, thresholds, mapping, report)


def _load_resamples(path, records: int) -> bootstrap.Resamples:
    """The saved resample ids of ``--resamples``, checked block by block (never held whole)."""
    expected = f"expected integer ids [resamples, {records}] below {records} in a .npy file"
    try:
        resamples = bootstrap.Resamples.saved(path)
        if resamples.n == 0 or resamples.records != records:
            raise ValueError(f"got shape {(resamples.n, resamples.records)}")
        for block in resamples.blocks():
            if block.min() < 0 or block.max() >= records:
                raise ValueError(f"ids from {block.min()} to {block.max()}")
    except (OSError, ValueError) as e:
        raise ConfigError(f"resamples {path}: {expected} ({e})", "resamples") from None
    return resamples


def run_eval(ckpt_path, store_path, device, opts: EvalOptions | None = None, compare: str | None = None,
             progress=None) -> EvalResult:
    """``progress(done, total, label=...)``, if given, follows each inference (records) and the bootstrap
    (resamples)."""
    opts = opts or EvalOptions()
    store = open_store(store_path)
    if len(store) == 0:
        raise EcgtoolError(f"{store.path} has no records to evaluate")
    checkpoints = [Checkpoint.load(ckpt_path)] + ([Checkpoint.load(compare)] if compare else [])
    warnings = check_eval_inputs(checkpoints, store, opts)
    main = evaluate_checkpoint(checkpoints[0], store, device, opts, progress)
    report = main.report
    report.update({"store": str(store_path), "store_fingerprint": fingerprint(store_path), "warnings": warnings})
    other = evaluate_checkpoint(checkpoints[1], store, device, opts, progress) if compare else None
    resamples = None
    if opts.bootstrap or opts.resamples:
        resamples = _load_resamples(opts.resamples, len(store)) if opts.resamples else \
            bootstrap.Resamples.drawn(main.y, opts.bootstrap, opts.seed)
        resampled = bootstrap.resampled_metrics(main.headline(), resamples, _labelled(progress, f"bootstrap {_name(main.checkpoint.path)}", "resamples"))
        report["bootstrap"] = {
            "resamples": resamples.n, "seed": None if opts.resamples else opts.seed, "level": opts.level,
            "method": "percentile; resamples missing a class's positives or negatives redrawn (PTB-XL benchmark)",
            "resample_ids_sha256": resamples.sha256(),
            "intervals": bootstrap.summarise(resampled, opts.level, report["classes"]),
        }
    if other is not None:
        o = other.report
        report["comparison"] = {
            "checkpoint": str(compare), "checkpoint_fingerprint": o["checkpoint_fingerprint"], "model": o["model"],
            "threshold_source": o["threshold_source"], "windows": o["windows"], "macro": o["macro"],
        }
        if resamples is not None:
            report["comparison"]["difference"] = bootstrap.paired_difference(
                resampled, bootstrap.resampled_metrics(other.headline(), resamples, _labelled(progress, f"bootstrap {_name(other.checkpoint.path)}", "resamples")),
                report["macro"], o["macro"], opts.level)
    return EvalResult(store, main, other, resamples, warnings)


def write_predictions(path: str | os.PathLike, result: EvalResult, overwrite: bool, inputs=()) -> None:
    """Probabilities, decisions, labels, record ids (and resample ids) as a small Zarr group, written atomically."""
    import zarr

    store, main, report = result.store, result.main, result.report
    rows = main.rows
    with atomic_output(path, overwrite, directory=False, inputs=inputs) as tmp:
        g = zarr.open_group(tmp, mode="w", zarr_format=3)
        g.create_array("probabilities", data=main.probs.astype(np.float32))
        g.create_array("decisions", data=main.yhat.astype(np.uint8))
        g.create_array("labels", data=store.labels[rows])
        ids = g.create_array("record_id", shape=(len(rows),), dtype=str)  # variable-length strings, as in the ECG store
        ids[:] = store.record_id[rows]
        resamples = result.resamples
        if resamples is not None:  # written block by block, as the bootstrap reads them
            out = g.create_array("resample_ids", shape=(resamples.n, resamples.records), dtype=np.int32,
                                 chunks=(min(bootstrap.BLOCK, resamples.n), resamples.records))
            done = 0
            for block in resamples.blocks():
                out[done:done + len(block)] = block
                done += len(block)
        g.attrs.update({
            "format": PREDICTIONS_FORMAT, "format_version": 1, "classes": report["classes"],
            "multi_label": report["multi_label"], "threshold_source": report["threshold_source"],
            "thresholds": None if main.thresholds is None else [float(t) for t in main.thresholds],
            "windows": report["windows"],
            "provenance": [make_entry("eval", [report["checkpoint"], report["store"]])], "complete": True,
        })
