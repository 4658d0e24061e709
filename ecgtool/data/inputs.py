"""The model input: what a model was trained on, and how a store's rows become it.

:class:`InputSpec` is the one description of a model's input — sampling rate,
leads (by name, in order), samples per input, load-time normalisation and
data-side view (``views.py``). ``train`` takes it from the training store, a
checkpoint records it under ``input``, and ``eval``, ``explain``, ``profile``
(and pretrain/distill) read it back. :meth:`InputSpec.reader` binds it to a
store: the callable the loader applies to raw store rows (lead selection by
name, dataset normalisation with the training store's statistics, the view).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ecgtool.data.quantise import as_stored
from ecgtool.data.views import VIEWS, apply_view, extra_channels
from ecgtool.errors import EcgtoolError

if TYPE_CHECKING:
    from ecgtool.data.store import EcgStore

INPUT_KEYS = ("fs", "leads", "samples", "normalisation", "view")


@dataclass(frozen=True)
class InputSpec:
    """A model's input. ``normalisation`` and ``view`` are the store's/checkpoint's JSON dicts."""

    fs: float
    leads: tuple[str, ...]
    samples: int
    normalisation: dict = field(hash=False)
    view: dict = field(default_factory=lambda: {"name": "raw"}, hash=False)

    @classmethod
    def of_store(cls, store: EcgStore, view: dict | None = None, samples: int | None = None) -> InputSpec:
        """The input a store provides: all its leads, its normalisation, ``samples`` (default: whole records)."""
        return cls(fs=float(store.fs), leads=tuple(store.leads), samples=int(samples or store.n_samples),
                   normalisation=dict(store.attrs["normalisation"]), view=dict(view or {"name": "raw"}))

    @classmethod
    def from_dict(cls, d, where: str = "input spec") -> InputSpec:
        """Read and validate the JSON form (a checkpoint's ``input``); ``where`` names it in errors."""
        if not isinstance(d, dict):
            raise EcgtoolError(f"{where} is not a mapping")
        missing = [k for k in INPUT_KEYS if k not in d]
        if missing:
            raise EcgtoolError(f"{where} lacks {', '.join(missing)}")
        fs, leads, samples, norm, view = (d[k] for k in INPUT_KEYS)
        from ecgtool.data.store import MAX_LEADS, MAX_RECORD_VALUES

        if isinstance(fs, bool) or not isinstance(fs, (int, float)) or not 0 < fs < 1e6:
            raise EcgtoolError(f"{where}: fs must be a positive number of Hz, not {fs!r}")
        if not isinstance(leads, (list, tuple)) or not leads or not all(isinstance(lead, str) for lead in leads):
            raise EcgtoolError(f"{where}: leads must be a non-empty list of lead names")
        if len(leads) > MAX_LEADS:
            raise EcgtoolError(f"{where}: {len(leads)} leads, more than the {MAX_LEADS} ecgtool accepts")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise EcgtoolError(f"{where}: samples must be a positive whole number, not {samples!r}")
        if samples * len(leads) > MAX_RECORD_VALUES:
            raise EcgtoolError(f"{where}: {samples} samples × {len(leads)} leads, more than the {MAX_RECORD_VALUES} values "
                               "ecgtool accepts per input (refused before allocating)")
        if not isinstance(norm, dict) or not isinstance(norm.get("method"), str):
            raise EcgtoolError(f"{where}: normalisation must name its method")
        if norm["method"] == "dataset":
            for key in ("mean", "std"):
                stats = norm.get(key)
                if not isinstance(stats, (list, tuple)) or len(stats) < len(leads):
                    raise EcgtoolError(f"{where}: dataset normalisation needs a {key} per lead")
        if not isinstance(view, dict) or view.get("name", "raw") not in VIEWS:
            raise EcgtoolError(f"{where}: unknown input view {view!r}; this ecgtool knows {', '.join(VIEWS)}")
        return cls(fs=float(fs), leads=tuple(leads), samples=samples, normalisation=dict(norm), view=dict(view))

    def to_dict(self) -> dict:
        """The JSON form, as a checkpoint stores it."""
        return {"fs": self.fs, "leads": list(self.leads), "samples": self.samples,
                "normalisation": self.normalisation, "view": self.view}

    def with_samples(self, samples: int) -> InputSpec:
        """The same input cut to ``samples`` per record (a model trained on random crops)."""
        from dataclasses import replace

        return replace(self, samples=int(samples))

    @property
    def channels(self) -> int:
        """Channels of the model input: the leads plus what the view adds."""
        return len(self.leads) + extra_channels(self.view)

    @property
    def seconds(self) -> float:
        return self.samples / self.fs

    def check(self, store: EcgStore, what: str = "store", windows: bool = False, model: str = "the model") -> None:
        """``store`` can feed this input: same fs and normalisation, the leads (by name), the length.
        With ``windows`` longer records are accepted: the caller applies the model to sliding windows.
        ``what`` and ``model`` name the two sides in messages."""
        if store.fs != self.fs:
            raise EcgtoolError(f"{what} {store.path} is sampled at {store.fs:g} Hz, {model} at {self.fs:g} Hz; "
                               f"rerun prep with --fs {self.fs:g}")
        if store.n_samples < self.samples or (store.n_samples > self.samples and not windows):
            raise EcgtoolError(f"{what} {store.path} has {store.n_samples} samples per record, {model} expects {self.samples}")
        method, wanted = store.attrs["normalisation"]["method"], self.normalisation["method"]
        if method != wanted:
            raise EcgtoolError(f"{what} {store.path} is normalised by {method}, the training data of {model} by {wanted}; "
                               f"rerun prep with --normalise {wanted}")
        missing = [lead for lead in self.leads if lead not in store.leads]
        if missing:
            raise EcgtoolError(f"{what} {store.path} lacks lead(s) {', '.join(missing)} that {model} needs")

    def reader(self, store: EcgStore) -> StoreReader:
        """The callable turning raw rows of ``store`` into this input (leads found by name in ``store``).
        A :class:`~ecgtool.data.pooled.PooledStore` reads rows already in these leads and normalised by
        their own store's statistics (``pooled.py``): its reader applies the view only."""
        from ecgtool.data.pooled import PooledStore

        if isinstance(store, PooledStore):
            from dataclasses import replace

            return StoreReader(replace(self, normalisation={"method": "per store"}), store)
        return StoreReader(self, store)


class StoreReader:
    """Raw store rows ``(B, store leads, S)`` → model input ``(B, channels, S)`` for one spec and store
    (``store`` None: rows already in the spec's leads at its rate, as :class:`RecordingReader` makes them)."""

    def __init__(self, spec: InputSpec, store: EcgStore | None = None):
        leads, fs = (list(spec.leads), spec.fs) if store is None else (list(store.leads), store.fs)
        missing = [lead for lead in spec.leads if lead not in leads]
        if missing:
            raise EcgtoolError(f"{store.path} lacks lead(s) {', '.join(missing)} that the model needs")
        self.spec, self.fs, self.leads, self.view = spec, fs, list(spec.leads), spec.view
        self.lead_index = [leads.index(lead) for lead in spec.leads]
        self.all_leads = self.lead_index == list(range(len(leads)))
        norm = spec.normalisation
        self.mean = self.std = None
        if norm.get("method") == "dataset":
            # Statistics come per lead of the store they were computed on (the training store's,
            # via the checkpoint): in the order of ``leads``, or of all that store's leads.
            self.mean = np.asarray(norm["mean"], np.float32)[:, None]
            self.std = np.asarray(norm["std"], np.float32)[:, None]
            if len(self.mean) != len(self.leads):
                self.mean, self.std = self.mean[self.lead_index], self.std[self.lead_index]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.finish(x if self.all_leads else x[:, self.lead_index])

    def finish(self, x: np.ndarray, in_place: bool = False) -> np.ndarray:
        """Rows already in the spec's leads → the input: dataset normalisation, then the view. ``in_place``:
        ``x`` is float32 and the caller's to overwrite (the loader's batch), normalised where it lies."""
        x = x.astype(np.float32, copy=False)
        if self.mean is not None:
            if in_place:
                x -= self.mean
                x /= self.std
            else:
                x = (x - self.mean) / self.std
        return apply_view(self.view, x, self.fs, self.leads)


class RecordingReader:
    """A raw recording (physical units, its own leads and rate) → this spec's model input, made exactly as
    the training data was: ``prep``'s preprocessing (``transforms.preprocess``: resampling, filters, crop or
    zero-pad to the training store's row length, per-record normalisation) of the spec's leads, picked by
    name, then the training store's dtype, then what :class:`StoreReader` does to store rows (dataset
    normalisation, the view). Each step is the per-lead code prep and the loader run, so a recording's input
    equals its store row's read through the loader.

    ``prep`` is the training store's :class:`~ecgtool.data.transforms.PrepConfig`, ``samples`` its row
    length (at least the spec's: longer rows are scored in sliding windows), ``dtype`` its signals' dtype.
    """

    def __init__(self, spec: InputSpec, prep, samples: int, dtype: str = "int16"):
        method = spec.normalisation.get("method")
        if prep.beat_window is not None:
            raise EcgtoolError("the model was trained on beat windows (prep --beat-window) around annotated beats, "
                               "not on whole recordings")
        if prep.fs != spec.fs or samples < spec.samples or prep.normalisation != method:
            raise EcgtoolError(f"its training data's preprocessing ({prep.fs:g} Hz, {samples} samples, normalisation {prep.normalisation}) "
                               f"does not make the model's input ({spec.fs:g} Hz, {spec.samples} samples, "
                               f"normalisation {method})")
        self.spec, self.prep, self.samples, self.dtype = spec, prep, int(samples), np.dtype(dtype)
        self.rows = StoreReader(spec)

    def row(self, signal: np.ndarray, fs: float, leads) -> np.ndarray:
        """One recording ``[its leads, samples]`` in mV → its store row ``[spec leads, samples]`` (float32)."""
        from ecgtool.data.transforms import preprocess, select_leads

        x = select_leads(signal, leads, self.spec.leads)
        row, _ = preprocess(x, fs, self.prep, self.samples)  # the z-score's scale is for charts, not for the model
        return as_stored(row[None], self.dtype)[0]

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """Store rows ``(B, spec leads, samples)`` → model input ``(B, channels, samples)``."""
        return self.rows(rows)


def classes_without_both(store: EcgStore, what: str = "store") -> list[str]:
    """Warnings for classes that have no positive (or no negative) record in ``store``: their
    ranking and sensitivity metrics are undefined there, and a model learns nothing of them."""
    positives = store.labels.sum(axis=0)
    out = []
    for c, n in zip(store.classes, positives.tolist()):
        if n == 0 or n == len(store):
            side = "positive" if n == 0 else "negative"
            out.append(f"class {c} has no {side} record in the {what} {store.path}")
    return out


def check_labels(store: EcgStore, classes, multi_label: bool, what: str = "store", model: str = "the model") -> None:
    """``store`` is labelled with ``classes`` (same order) for the same kind of task."""
    if store.classes != list(classes):
        raise EcgtoolError(f"{what} {store.path} has classes {store.classes}, {model} {list(classes)}")
    if store.multi_label != multi_label:
        kind = "multi-label" if store.multi_label else "multi-class"
        raise EcgtoolError(f"{what} {store.path} is {kind}, the task of {model} is not")


# What prep did to a signal beyond what the input spec checks (rate, length, leads, normalisation): settings under
# which the same recording gives other rows.
SIGNAL_SETTINGS = ("lowcut", "highcut", "notch", "crop", "beat_window", "filter", "resampler", "pad")


def preprocessing_differences(trained: dict | None, store: EcgStore, model: str) -> list[str]:
    """Warnings for the ``store`` whose prep settings differ from those of the data ``model`` was trained on
    (``trained``: the training store's ``preprocessing`` attribute, as a checkpoint records it): e.g. a model
    trained on 0.5-50 Hz band-passed rows run on unfiltered ones sees other signals than it learnt from, and its
    metrics say so only by being worse. Nothing when either side does not record its settings (older files)."""
    given = store.attrs.get("preprocessing")
    if not isinstance(trained, dict) or not isinstance(given, dict):
        return []
    differ = [f"{k} {given.get(k)!r} (training data {trained.get(k)!r})" for k in SIGNAL_SETTINGS if given.get(k) != trained.get(k)]
    if not differ:
        return []
    return [f"{store.path} was prepared otherwise than the training data of {model}: {', '.join(differ)}"]
