"""``explain``: records of a store → attribution maps (a saliency store) and clinical charts.

The model input is rebuilt exactly as ``eval`` builds it — the checkpoint's
leads, load-time normalisation and data-side view through its ``InputSpec`` — while
the charts plot the store's own signal for those leads in mV (a z-scored store's
signal times the ``zscore_scale`` prep kept; z-scores, said so on the chart, where
the store kept none), never the normalised model input.

A model trained on crops shorter than the store's records is explained as eval
scores it: on each sliding window (``eval.predict``'s windows, stride and
aggregate), the windows' maps stitched back over the whole record with
overlapping windows averaged (``timeaxis.stitch``), and the window that decided
the prediction — the one most probable for the explained class, which gives the
record its probability under max aggregation — kept and marked on the chart.

Output directory (written all-or-nothing)::

    DIR/saliency.zarr     Zarr v3 group, format "ecgtool.saliency" version 1
        saliency          float32 [records, leads, samples]   the method's map (see attrs "meaning")
        record_id         str [records]
        row               int64 [records]                     the record's row in STORE
        probabilities     float32 [records, classes]
        labels            uint8 [records, classes]
        explained_class   int16 [records]                     index into attrs "classes"
        lead_importance   float32 [records, leads]            ig, saliency: sum over time of |saliency| per lead
        window_probability float32 [records, windows]         crop-trained model: each window's probability of
                                                              the explained class (attrs "windows": the starts)
        deciding_window   int16 [records]                     crop-trained model: the most probable window
        …                 method-specific arrays [records, …] (attention weights, IG convergence deltas;
                                                              [records, windows, …] for a crop-trained model)
    DIR/<record_id>.png   one chart per record (ids made safe for file names)
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ecgtool.errors import ConfigError, EcgtoolError
from ecgtool.explain.options import ExplainOptions

SALIENCY_FORMAT = "ecgtool.saliency"
SALIENCY_VERSION = 1
SMOOTH_S = {"ig": 0.04, "saliency": 0.04}  # display smoothing of per-sample gradient maps (charts only)
SIGNED_METHODS = ("ig",)  # maps whose sign means something (for or against the class): drawn on a diverging scale
Z_FOOTER = "amplitude: z-score (the store keeps no mV scale)"


@dataclass(frozen=True)
class ExplainedRecord:
    """One explained record: which class was explained, why that one, and its chart's file name."""

    record_id: str
    row: int
    target: str  # the explained class
    probability: float  # the model's probability of it
    selection: str  # "chosen", "predicted", or why another class was taken
    chart: str | None  # PNG file name in the output directory
    window: dict | None = None  # crop-trained model: the deciding window (index, start_s, stop_s, probability)
    lead_share: dict | None = None  # ig, saliency: each lead's share of the record's |attribution|, largest first

    def to_dict(self) -> dict:
        return {"record_id": self.record_id, "row": self.row, "class": self.target, "probability": self.probability,
                "selection": self.selection, "chart": self.chart, "window": self.window, "lead_share": self.lead_share}


@dataclass
class ExplainResult:
    """What ``run_explain`` did (``to_dict`` is the ``--json`` summary)."""

    method: str
    layer: str | None
    records: list[ExplainedRecord]
    method_info: dict
    classes: list[str]
    leads: list[str]
    sanity: list[dict] | None = None
    output: str | None = None
    windows: dict | None = None  # crop-trained model: eval's windows (length, stride, aggregate, starts)
    warnings: list[str] = field(default_factory=list)  # what eval would warn of the same checkpoint and store

    def to_dict(self) -> dict:
        return {"method": self.method, "layer": self.layer, "records": [r.to_dict() for r in self.records],
                "method_info": self.method_info, "classes": self.classes, "leads": self.leads,
                "windows": self.windows, "sanity": self.sanity, "output": self.output, "warnings": self.warnings}


def select_rows(store, records: list[str] | None, first: int | None) -> np.ndarray:
    """Store rows for ``--records`` (comma-separated ids, in the order given) or ``--limit N``."""
    if first is not None:
        return np.arange(min(first, len(store)), dtype=np.int64)
    wanted = [r.strip() for item in records or [] for r in item.split(",") if r.strip()]
    wanted = list(dict.fromkeys(wanted))  # repeated ids once, first mention first
    if not wanted:
        raise ConfigError("no records to explain: give record ids or a number of first records", "records")
    # the asked-for ids only (a dict of every id would hold the whole store's ids as Python strings)
    ids = np.asarray(store.record_id)
    hits = np.flatnonzero(np.isin(ids, wanted))
    rows_of: dict[str, list[int]] = {}
    for row in hits.tolist():
        rows_of.setdefault(str(ids[row]), []).append(row)
    missing = [r for r in wanted if r not in rows_of]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise EcgtoolError(f"record(s) {', '.join(missing[:5])}{more} not in {store.path} (its record_id array)")
    return np.array([row for r in wanted for row in rows_of[r]], dtype=np.int64)


def file_names(record_ids: list[str], rows: np.ndarray) -> list[str]:
    """One safe, distinct PNG name per record: characters outside ``[A-Za-z0-9._-]`` become ``_``."""
    safe = [re.sub(r"[^A-Za-z0-9._-]", "_", rid).lstrip(".") or "record" for rid in record_ids]
    counts: dict[str, int] = {}
    for s in safe:
        counts[s.lower()] = counts.get(s.lower(), 0) + 1  # case-insensitive file systems
    return [f"{s}.png" if counts[s.lower()] == 1 else f"{s}_row{row}.png" for s, row in zip(safe, rows.tolist())]


def _predicted_text(probs: np.ndarray, classes: list[str], multi_label: bool, thresholds: list[float] | None) -> str:
    if not multi_label:
        k = int(np.argmax(probs))
        return f"{classes[k]} {probs[k]:.2f}"
    cut = np.asarray(thresholds if thresholds is not None else [0.5] * len(classes))
    above = [k for k in np.argsort(-probs) if probs[k] >= cut[k]]
    if not above:
        k = int(np.argmax(probs))
        return f"none (highest {classes[k]} {probs[k]:.2f})"
    return ", ".join(f"{classes[k]} {probs[k]:.2f}" for k in above)


def prepare(ckpt_path, store_path, options: ExplainOptions, device):
    """Load and check everything a run needs, before any output is created: a one-line error for each misuse."""
    from ecgtool.checkpoint import Checkpoint
    from ecgtool.data.store import open_store
    from ecgtool.eval.predict import sliding_windows
    from ecgtool.explain.attention import has_attention
    from ecgtool.explain.methods import resolve_layer

    ckpt = Checkpoint.load(ckpt_path)
    store = open_store(store_path)
    if len(store) == 0:
        raise EcgtoolError(f"{store.path} has no records to explain")
    ckpt.check_store(store, windows=True)  # records longer than a crop-trained model's input: explained window by window
    windows = sliding_windows(ckpt.input.samples, store.n_samples, options.window_stride, options.aggregate,
                              ckpt.multi_label, store.path)
    classes = list(ckpt.classes)
    if options.class_name is not None and options.class_name not in classes:
        raise ConfigError(f"unknown class {options.class_name!r}; {ckpt_path} has classes {', '.join(classes)}", "class_name")
    model = ckpt.build_model().to(device).eval()
    if options.method == "attention" and not has_attention(model):
        raise ConfigError(f"{ckpt.model.name} has no attention over time positions; use gradcam, ig or saliency", "method")
    layer = resolve_layer(model, options.layer)[0] if options.method == "gradcam" else None
    return ckpt, store, model, ckpt.input.reader(store), layer, windows


def run_explain(ckpt_path, store_path, output, *, records: list[str] | None = None, first: int | None = None,
                options: ExplainOptions | None = None, device="cpu", overwrite: bool = False,
                progress: Callable[[int, int], None] | None = None) -> ExplainResult:
    """Explain the selected records; write ``output/saliency.zarr`` and the charts; return a summary."""
    import torch

    from ecgtool.outputs import atomic_output, check_new_output

    options = options or ExplainOptions()
    device = torch.device(device)
    check_new_output(output, overwrite, (ckpt_path, store_path))  # refuse before the work, not after
    ckpt, store, model, spec, layer, windows = prepare(ckpt_path, store_path, options, device)
    rows = select_rows(store, records, first)
    with atomic_output(output, overwrite, directory=True, inputs=(ckpt_path, store_path)) as tmp:
        result = _explain_rows(ckpt, store, model, spec, layer, windows, rows, options, device, Path(tmp), progress)
        if options.sanity:
            result.sanity = _sanity(model, store, spec, windows, rows, options, layer, device, ckpt.threshold_values)
        _finish_store(Path(tmp) / "saliency.zarr", ckpt, store, store_path, result, options)
    result.output = str(output)
    # a resume file's weights, or rows filtered otherwise than the training data: the maps explain another model's
    # view than the one trained, which eval names too
    result.warnings = ckpt.warnings_on(store)
    return result


def _targets(probs: np.ndarray, classes: list[str], options: ExplainOptions, multi_label: bool,
             thresholds: list[float] | None) -> tuple[np.ndarray, list[str]]:
    """The class to explain per record and why: ``--class``, else the predicted class.

    Multi-label: the most probable class among those at or above their decision
    threshold (the checkpoint's, else 0.5); a record with none gets its most probable class.
    """
    if options.class_name is not None:
        return np.full(len(probs), classes.index(options.class_name), dtype=np.int64), ["chosen"] * len(probs)
    if not multi_label:
        return probs.argmax(axis=1).astype(np.int64), ["predicted"] * len(probs)
    cut = np.asarray(thresholds if thresholds is not None else [0.5] * len(classes))
    above = probs >= cut
    targets = np.where(above.any(axis=1), np.where(above, probs, -1.0).argmax(axis=1), probs.argmax(axis=1))
    why = ["predicted" if a else "most probable; no class above its threshold" for a in above.any(axis=1)]
    return targets.astype(np.int64), why


def _scores(model, x, windows, multi_label: bool):
    """``(probabilities [B, K], window probabilities [B, W, K] or None)`` as eval computes them."""
    import torch

    from ecgtool.eval.predict import aggregate_windows, each_window_probabilities, probabilities

    with torch.no_grad():
        if windows is None:
            return probabilities(model(x).float(), multi_label).cpu().numpy(), None
        each = each_window_probabilities(model, x, windows, multi_label)
        return aggregate_windows(each, windows).cpu().numpy(), each.cpu().numpy()


def _model_inputs(x, targets, windows):
    """What a method explains: the records, or every window of every record (record by record) with its record's class."""
    import torch

    from ecgtool.eval.predict import window_crops

    t = torch.as_tensor(np.asarray(targets), device=x.device)
    if windows is None:
        return x, t
    crops = window_crops(x, windows)
    return crops, t.repeat_interleave(len(crops) // len(x))


def _explain_rows(ckpt, store, model, spec, layer, windows, rows, options, device, out: Path, progress) -> ExplainResult:
    import torch
    import zarr

    from ecgtool.explain.explanation import lead_importance, lead_shares
    from ecgtool.explain.methods import explain
    from ecgtool.explain.options import PER_LEAD_METHODS
    from ecgtool.explain.timeaxis import stitch

    classes, multi = list(ckpt.classes), ckpt.multi_label
    n, leads, samples = len(rows), list(spec.leads), store.n_samples
    starts = windows.starts(samples) if windows is not None else None
    group = zarr.open_group(out / "saliency.zarr", mode="w", zarr_format=3)
    group.attrs.update({"format": SALIENCY_FORMAT, "format_version": SALIENCY_VERSION, "complete": False})
    chunk = max(1, min(n, 64))
    saliency = group.create_array("saliency", shape=(n, len(leads), samples), chunks=(chunk, len(leads), samples), dtype="float32")
    prob_arr = group.create_array("probabilities", shape=(n, len(classes)), dtype="float32")
    target_arr = group.create_array("explained_class", shape=(n,), dtype="int16")
    group.create_array("labels", data=store.labels[rows].astype(np.uint8))
    group.create_array("row", data=rows.astype(np.int64))
    ids = group.create_array("record_id", shape=(n,), dtype=str)
    ids[:] = store.record_id[rows]
    per_lead = options.method in PER_LEAD_METHODS
    importance_arr = group.create_array("lead_importance", shape=(n, len(leads)), dtype="float32") if per_lead else None
    if windows is not None:
        window_arr = group.create_array("window_probability", shape=(n, len(starts)), dtype="float32")
        deciding_arr = group.create_array("deciding_window", shape=(n,), dtype="int16")
    names = file_names(store.record_id[rows].tolist(), rows)
    thresholds = ckpt.threshold_values
    extra_arrays: dict = {}
    info: dict = {}
    records = []
    for start in range(0, n, options.batch_size):
        batch = rows[start : start + options.batch_size]
        b = len(batch)
        raw = store.read_rows(batch)
        x = torch.from_numpy(np.ascontiguousarray(spec(raw))).to(device)
        probs, each = _scores(model, x, windows, multi)
        targets, why = _targets(probs, classes, options, multi, thresholds)
        inputs, input_targets = _model_inputs(x, targets, windows)
        e = explain(options.method, model, inputs, input_targets, len(leads), layer=layer,
                    steps=options.steps, internal_batch_size=max(options.batch_size, 64))
        maps, arrays = e.maps, e.arrays
        if windows is not None:  # each window's map back where the window lies, overlaps averaged
            maps = stitch(maps.reshape(b, len(starts), *maps.shape[1:]), starts, samples).astype(np.float32)
            arrays = {k: v.reshape(b, len(starts), *v.shape[1:]) for k, v in arrays.items()}
            in_class = each[np.arange(b), :, targets]  # [B, W]: each window's probability of the explained class
            deciding = in_class.argmax(axis=1)
            window_arr[start : start + b] = in_class.astype(np.float32)
            deciding_arr[start : start + b] = deciding.astype(np.int16)
        stop = start + b
        saliency[start:stop] = maps
        prob_arr[start:stop] = probs.astype(np.float32)
        target_arr[start:stop] = targets.astype(np.int16)
        if per_lead:
            importance = lead_importance(maps)
            importance_arr[start:stop] = importance.astype(np.float32)
            shares = lead_shares(importance)
        for key, value in arrays.items():
            if key not in extra_arrays:
                extra_arrays[key] = group.create_array(key, shape=(n, *value.shape[1:]), dtype=value.dtype)
            extra_arrays[key][start:stop] = value
        info = info or e.info
        signal, units = chart_signal(store, batch, raw, spec.lead_index)
        for i in range(b):
            j = start + i
            window = share = None
            if windows is not None:
                k = int(deciding[i])
                window = {"index": k, "start_s": starts[k] / store.fs, "stop_s": (starts[k] + windows.length) / store.fs,
                          "probability": float(in_class[i, k])}
            if per_lead:
                share = {leads[k]: float(shares[i, k]) for k in np.argsort(-shares[i], kind="stable")}
            record = ExplainedRecord(str(store.record_id[batch[i]]), int(batch[i]), classes[targets[i]],
                                     float(probs[i, targets[i]]), why[i], names[j] if options.charts else None, window, share)
            if options.charts:
                _chart(out / names[j], signal[i], units, maps[i], store, ckpt, leads, record, probs[i], thresholds, options,
                       layer, windows)
            records.append(record)
            if progress:
                progress(j + 1, n)  # per record: drawing a chart takes about as long as explaining it
    result = ExplainResult(options.method, layer, records, info, classes, leads)
    if windows is not None:
        result.windows = {**windows.to_dict(), "starts": [int(s) for s in starts],
                          "stitching": "mean of the maps of the windows covering each sample"}
    return result


def chart_signal(store, rows: np.ndarray, raw: np.ndarray, lead_index: list[int]) -> tuple[np.ndarray, str]:
    """What a chart draws of the store's rows ``raw`` (all its leads) for the model's leads, and in which units:
    ``"mV"`` where the store holds mV or can give them back (``EcgStore.to_physical``), else its z-scores (``"SD"``)."""
    mv = store.to_physical(rows, raw)
    chosen = (raw if mv is None else mv)[:, lead_index].astype(np.float32)
    return chosen, "SD" if mv is None else "mV"


def _chart(path: Path, signal, units: str, saliency, store, ckpt, leads, record: ExplainedRecord, probs, thresholds, options,
           layer, windows) -> None:
    from ecgtool.explain.chart import DISPLAY_PERCENTILE, save_chart
    from ecgtool.explain.methods import METHOD_NAMES

    classes = list(ckpt.classes)
    truth = ", ".join(c for c, y in zip(classes, store.labels[record.row]) if y) or "none"
    title = (f"{record.record_id}    true: {truth}    "
             f"predicted: {_predicted_text(probs, classes, ckpt.multi_label, thresholds)}")
    method = METHOD_NAMES[options.method] + (f" at {layer}" if layer else "")
    target = (f"(class-independent; the model's top class is {record.target}, p = {record.probability:.2f})"
              if options.method == "attention" else f"for {record.target} ({record.selection}, p = {record.probability:.2f})")
    subtitle = f"{method} {target} — {ckpt.model.name}"
    notes = [] if units == "mV" else [Z_FOOTER]
    window = None
    if windows is not None:
        w = record.window
        first = int(round(w["start_s"] * store.fs))
        window = (first, first + windows.length)
        notes.append(f"model trained on {windows.length / store.fs:g}-s crops: explained on "
                     f"{len(windows.starts(store.n_samples))} windows, stride {windows.stride / store.fs:g} s "
                     f"({windows.aggregate} of the window probabilities, as eval), maps of overlapping windows averaged; "
                     f"deciding window {w['start_s']:g}–{w['stop_s']:g} s, p = {w['probability']:.2f}")
    signed = options.method in SIGNED_METHODS
    scale = (f"relative, signed\n(±1 = record's {DISPLAY_PERCENTILE:g}th pct. of |map|;\nred raises, blue lowers the logit)"
             if signed else f"relative\n(1 = record's {DISPLAY_PERCENTILE:g}th pct.)")
    save_chart(path, signal, leads, store.fs, saliency, title, subtitle, dpi=options.dpi, units=units,
               smooth_s=SMOOTH_S.get(options.method, 0.0), footer="   ".join(notes), signed=signed, per_lead=options.per_lead,
               window=window, colorbar_label=f"{METHOD_NAMES[options.method]}, {scale}")


def _sanity(model, store, spec, windows, rows, options, layer, device, thresholds) -> list[dict]:
    """Adebayo et al. 2018 randomisation test on (up to a batch of) the selected records, for the same classes
    (a crop-trained model's: on each of their windows)."""
    import torch

    from ecgtool.explain.methods import explain
    from ecgtool.explain.sanity import sanity_check

    batch = rows[: options.batch_size]
    x = torch.from_numpy(np.ascontiguousarray(spec(store.read_rows(batch)))).to(device)
    probs = _scores(model, x, windows, store.multi_label)[0]
    inputs, targets = _model_inputs(x, _targets(probs, store.classes, options, store.multi_label, thresholds)[0], windows)
    n_leads = len(spec.leads)

    def maps(m, xx, tt):
        return explain(options.method, m, xx, tt, n_leads, layer=layer, steps=options.steps,
                       internal_batch_size=max(options.batch_size, 64)).maps

    return sanity_check(model, inputs, targets, maps, mode=options.sanity, seed=options.seed)


def _finish_store(path: Path, ckpt, store, store_path, result: ExplainResult, options: ExplainOptions) -> None:
    import zarr

    from ecgtool.explain.methods import CITATIONS, MEANING, METHOD_NAMES
    from ecgtool.provenance import fingerprint, make_entry

    group = zarr.open_group(path, mode="r+")
    group.attrs.update({
        "method": options.method,
        "method_name": METHOD_NAMES[options.method],
        "citation": CITATIONS[options.method],
        "meaning": MEANING[options.method],
        "method_details": result.method_info,
        "layer": result.layer,
        "class": [r.target for r in result.records],
        "class_selection": [r.selection for r in result.records],
        "classes": result.classes,
        "multi_label": ckpt.multi_label,
        "leads": result.leads,
        "fs": store.fs,
        "signal_units": store.attrs["units"],
        "chart_units": "mV" if store.to_physical(np.zeros(0, np.int64), np.zeros((0, len(store.leads), 1))) is not None
                       else "z-score",
        "windows": result.windows,
        "options": {k: v for k, v in asdict(options).items() if k not in ("charts", "dpi")},
        "sanity": _json_safe(result.sanity),
        "checkpoint": {"path": str(ckpt.path), "fingerprint": fingerprint(ckpt.path), "model": ckpt.model.to_dict(),
                       "provenance": ckpt.provenance},
        "store": {"path": str(store_path), "fingerprint": fingerprint(store_path)},
        "provenance": [make_entry("explain", [ckpt.path, store_path], method=options.method)],
    })
    group.attrs["complete"] = True  # last: a reader trusts nothing before it


def _json_safe(value):
    """NaN (an undefined correlation) is not JSON: store it as null."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def open_saliency(path: str | os.PathLike):
    """Open a complete saliency store (read-only), refusing foreign, newer or incomplete ones."""
    import zarr

    p = Path(path)
    try:
        group = zarr.open_group(p, mode="r")
    except Exception as e:  # zarr raises several types for a missing or foreign directory
        raise EcgtoolError(f"{p} is not a saliency store ({type(e).__name__})") from e
    attrs = dict(group.attrs)
    if attrs.get("format") != SALIENCY_FORMAT:
        raise EcgtoolError(f"{p} is not an ecgtool saliency store (format {attrs.get('format')!r})")
    if not isinstance(attrs.get("format_version"), int) or attrs["format_version"] > SALIENCY_VERSION:
        raise EcgtoolError(f"{p} has saliency format version {attrs.get('format_version')}, newer than this ecgtool understands")
    if attrs.get("complete") is not True:
        raise EcgtoolError(f"{p} is incomplete (its writer did not finish)")
    return group
