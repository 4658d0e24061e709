"""The checkpoint contract: one file holding a model and everything needed to use it.

On disk a checkpoint is a ``torch.save`` of a dict made only of tensors,
strings, numbers, booleans, None, lists and dicts, so it loads with
``torch.load(path, weights_only=True)``: opening a stranger's checkpoint never
executes code. Keys (docs/checkpoint.md):

    format, format_version    "ecgtool.checkpoint", 1
    kind                      "classifier" | "encoder" (pretrain) | "student" (distill)
    model                     {"name": registry name, "kwargs": constructor arguments}
    state_dict                the weights
    classes, class_descriptions, task, multi_label
    input                     {"fs", "leads", "samples", "normalisation", "view"}  (data.inputs.InputSpec)
    thresholds                {"values": [per class], "source": where they came from, "windows": ...} | None
    train_args, metrics, history, provenance
    pretraining               optional: the self-supervised pretraining the weights come from (below) | None
    init                      optional: the checkpoint ``train --init`` started from (path, fingerprint, kind) | None
    distillation              for a student: the method, its hyperparameters and the teacher (below) | None
    preprocessing             optional: how the training store's rows were made from raw recordings — its
                              ``preprocessing`` attribute (prep's PrepConfig.describe(), with the row length
                              "samples") plus its signals' "dtype" — which ``predict`` replays on new
                              recordings | None (checkpoints from before it was recorded)
    resume                    optional: optimiser/scheduler/RNG state for --resume

An *encoder* (kind "encoder", written by ``pretrain`` through
:func:`encoder_checkpoint`) is a registered backbone without its classifier:
``model`` names a registry model whose ``forward_features`` is the
representation, with its constructor kwargs less ``num_classes``; ``state_dict``
holds every weight except the ``head.*`` ones; ``classes`` is empty, ``task``
is ``"pretraining"``, ``multi_label`` False and ``thresholds`` None; ``input``
is the input spec of the pretraining stores; ``train_args`` the pretraining
method's arguments, ``metrics`` its final losses. Its ``pretraining`` record is

    {"method": "st-mem", "hyperparameters": {...},
     "stores": [{"path", "fingerprint", "dataset", "records", "record_ids": [qualified ids]}]}

where a qualified record id is ``DATASET/RECORD`` (``DATASET/SOURCE/RECORD``
for a pooled collection's per-record ``source``; :func:`qualified_record_ids`),
so that ids of different datasets never collide. A classifier trained with
``train --init`` carries its init's ``pretraining`` record (with ``"encoder"``:
the path and fingerprint of the encoder file) and an ``init`` record, so that
``eval`` can warn when an evaluated store shares records with the data the
weights were pretrained on.

A *student* (kind "student", written by ``distill``) is a classifier like any
other (its own input spec names the leads it reads, so it selects them by name
from any store holding them) plus a ``distillation`` record

    {"method": "mvkt", "hyperparameters": {...},
     "teacher": {"path", "fingerprint", "model", "leads": [...], "samples"}}

In memory it is a :class:`Checkpoint`, a frozen dataclass validated once when
it is made (:meth:`Checkpoint.load`, or by the code that trains it), so its
consumers — train's resume, eval, explain, profile, info, and the pretrain and
distill commands — read typed fields instead of digging in a dict. Every
train, pretrain or distill output is a checkpoint of this format.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecgtool.data.inputs import InputSpec, check_labels, preprocessing_differences
from ecgtool.data.store import MAX_CLASSES, qualified_ids
from ecgtool.errors import EcgtoolError
from ecgtool.outputs import atomic_output, output_file, sibling_of

if TYPE_CHECKING:
    import numpy as np
    import torch.nn as nn

    from ecgtool.data.store import EcgStore

CKPT_FORMAT = "ecgtool.checkpoint"
CKPT_VERSION = 1
CKPT_KINDS = ("classifier", "encoder", "student")
ENCODER_TASK = "pretraining"  # the task of every encoder checkpoint
HEAD_PREFIX = "head."  # the classifier head's weights (EcgClassifier.head): not part of an encoder
REQUIRED_KEYS = (
    "kind", "model", "state_dict", "classes", "task", "multi_label", "input",
    "thresholds", "train_args", "metrics", "provenance",
)


class CheckpointError(EcgtoolError):
    """A checkpoint that is missing, foreign, newer than this tool, or malformed."""


@dataclass(frozen=True)
class ModelSpec:
    """A registry name and the constructor arguments that rebuild the model."""

    name: str
    kwargs: dict = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict:
        return {"name": self.name, "kwargs": dict(self.kwargs)}


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A checkpoint's contents; ``path`` is where it was loaded from (None for one made in memory)."""

    kind: str
    model: ModelSpec
    state_dict: dict
    classes: tuple[str, ...]
    task: str
    multi_label: bool
    input: InputSpec
    thresholds: dict | None
    train_args: dict
    metrics: dict
    provenance: list
    history: list = field(default_factory=list)
    class_descriptions: dict = field(default_factory=dict)
    resume: dict | None = None
    pretraining: dict | None = None
    init: dict | None = None
    distillation: dict | None = None
    preprocessing: dict | None = None
    format_version: int = CKPT_VERSION
    path: Path | None = None

    def __post_init__(self):
        where = str(self.path) if self.path else "checkpoint"
        if self.kind not in CKPT_KINDS:
            raise CheckpointError(f"{where}: unknown checkpoint kind {self.kind!r}")
        if not isinstance(self.model, ModelSpec) or not isinstance(self.model.name, str) or not isinstance(self.model.kwargs, dict):
            raise CheckpointError(f"{where}: 'model' must hold a name and constructor kwargs")
        if not isinstance(self.input, InputSpec):
            raise CheckpointError(f"{where}: 'input' must be an input spec")
        if not all(isinstance(c, str) for c in self.classes):
            raise CheckpointError(f"{where}: class names must be strings")
        values = (self.thresholds or {}).get("values", []) if isinstance(self.thresholds, dict) else None
        if self.thresholds is not None and (values is None or len(values) != len(self.classes)):
            raise CheckpointError(f"{where}: {len(values or [])} thresholds for {len(self.classes)} classes")
        if self.pretraining is not None:
            _check_pretraining(self.pretraining, where)
        if self.init is not None and not (isinstance(self.init, dict) and all(
                isinstance(self.init.get(k), str) for k in ("path", "fingerprint", "kind"))
                and _str_list(self.init.get("trained_on", []))):
            raise CheckpointError(f"{where}: 'init' must record the path, fingerprint and kind of the checkpoint it started from")
        if self.kind == "encoder":
            self._check_encoder(where)
        if (self.kind == "student") != (self.distillation is not None):
            raise CheckpointError(f"{where}: a student checkpoint, and only a student, records its distillation (method and teacher)")
        if self.distillation is not None:
            _check_distillation(self.distillation, where)
        if self.preprocessing is not None and not isinstance(self.preprocessing, dict):
            raise CheckpointError(f"{where}: 'preprocessing' must be a mapping of the training data's prep settings")

    def _check_encoder(self, where: str) -> None:
        """What makes an encoder: a backbone without a head, no classes or thresholds, a pretraining record."""
        if self.classes or self.thresholds is not None:
            raise CheckpointError(f"{where}: an encoder checkpoint has no classes or thresholds (it has no classifier head)")
        if "num_classes" in self.model.kwargs:
            raise CheckpointError(f"{where}: an encoder's model arguments do not include num_classes (it has no classifier head)")
        head = [k for k in self.state_dict if k.startswith(HEAD_PREFIX)]
        if head:
            raise CheckpointError(f"{where}: an encoder checkpoint holds no classifier head, but it has {len(head)} "
                                  f"'{HEAD_PREFIX}*' tensor(s)")
        if self.pretraining is None:
            raise CheckpointError(f"{where}: an encoder checkpoint must record its pretraining (method and stores)")

    # -- the file ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, doc, path: str | os.PathLike | None = None) -> Checkpoint:
        """Validate the on-disk dict (format, version, keys, types) and type it."""
        where = Path(path) if path is not None else None
        name = str(where) if where else "checkpoint"
        if not isinstance(doc, dict) or doc.get("format") != CKPT_FORMAT:
            raise CheckpointError(f"{name} is not an ecgtool checkpoint")
        version = doc.get("format_version")
        if not isinstance(version, int) or version > CKPT_VERSION:
            raise CheckpointError(
                f"{name} has checkpoint format version {version}, newer than this ecgtool understands ({CKPT_VERSION}); upgrade ecgtool"
            )
        missing = [k for k in REQUIRED_KEYS if k not in doc]
        if missing:
            raise CheckpointError(f"{name} lacks {', '.join(missing)}")
        model = doc["model"]
        if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not isinstance(model.get("kwargs"), dict):
            raise CheckpointError(f"{name}: 'model' must hold a name and constructor kwargs")
        if not isinstance(doc["state_dict"], dict):
            raise CheckpointError(f"{name}: 'state_dict' must map tensor names to tensors")
        if not isinstance(doc["classes"], (list, tuple)):
            raise CheckpointError(f"{name}: 'classes' must be a list of class names")
        if len(doc["classes"]) > MAX_CLASSES:
            raise CheckpointError(f"{name}: {len(doc['classes'])} classes, more than the {MAX_CLASSES} ecgtool accepts")
        try:
            spec = InputSpec.from_dict(doc["input"], f"{name}: the input spec")
        except EcgtoolError as e:  # a checkpoint's fault, whatever the spec's own check calls it
            raise CheckpointError(str(e)) from None
        return cls(
            kind=doc["kind"], model=ModelSpec(model["name"], dict(model["kwargs"])), state_dict=doc["state_dict"],
            classes=tuple(doc["classes"]), task=doc["task"], multi_label=bool(doc["multi_label"]), input=spec,
            thresholds=doc["thresholds"], train_args=doc["train_args"], metrics=doc["metrics"],
            provenance=list(doc["provenance"]), history=list(doc.get("history") or []),
            class_descriptions=dict(doc.get("class_descriptions") or {}), resume=doc.get("resume"),
            pretraining=doc.get("pretraining"), init=doc.get("init"), distillation=doc.get("distillation"),
            preprocessing=doc.get("preprocessing"), format_version=version, path=where,
        )

    def to_dict(self) -> dict:
        """The on-disk dict (plain values and CPU tensors only)."""
        doc = {
            "format": CKPT_FORMAT, "format_version": CKPT_VERSION, "kind": self.kind, "model": self.model.to_dict(),
            "state_dict": self.state_dict, "classes": list(self.classes), "class_descriptions": self.class_descriptions,
            "task": self.task, "multi_label": self.multi_label, "input": self.input.to_dict(),
            "thresholds": self.thresholds, "train_args": self.train_args, "metrics": self.metrics,
            "history": self.history, "provenance": self.provenance,
        }
        for key in ("pretraining", "init", "distillation", "preprocessing", "resume"):  # optional keys: absent when None, as in files that predate them
            if getattr(self, key) is not None:
                doc[key] = getattr(self, key)
        return _plain(doc)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Checkpoint:
        """Load with ``weights_only=True`` and validate; tensors land on the CPU."""
        import pickle

        import torch

        p = Path(path)
        if not p.is_file():
            raise CheckpointError(f"{p}: no such checkpoint file")
        real = sibling_of(p)
        if real is not None:
            raise CheckpointError(f"{p} is the temporary copy of a write to {p.with_name(real)} that was interrupted or is "
                                  "still running, not a checkpoint; use the output itself")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch's advice on refusal is to load unsafely: never relay it
                doc = torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            # torch's message advises loading with weights_only=False — the one thing not to do with a stranger's file
            if "GLOBAL" in str(e):  # "Unsupported global: GLOBAL …", "unsupported GLOBAL … whose module … is blocked"
                raise CheckpointError(f"{p} is not an ecgtool checkpoint: it holds objects other than tensors and plain "
                                      "values (such files can carry code; nothing of it was run)") from None
            raise CheckpointError(_UNREADABLE.format(p)) from e
        except Exception as e:  # the unpickler raises many types on foreign or corrupt bytes
            # their messages speak of opcodes and zip records ("Unsupported operand 83"): what the file is not says
            # more; --debug shows the exception
            raise CheckpointError(_UNREADABLE.format(p)) from e
        return cls.from_dict(doc, p)

    def save(self, path: str | os.PathLike, *, overwrite: bool = False, inputs=()) -> None:
        """Write atomically (temporary sibling, fsync, rename); ``path`` may not be one of ``inputs``."""
        import torch

        doc = self.to_dict()
        with atomic_output(path, overwrite, inputs=inputs) as tmp:
            with output_file(tmp) as f:  # a full disk is then an OSError that names the file, not torch's "unexpected pos"
                torch.save(doc, f)

    def replace(self, **changes: Any) -> Checkpoint:
        return replace(self, **changes)

    # -- using it ------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """How messages name this checkpoint: its file, else its model."""
        return str(self.path) if self.path else self.model.name

    @property
    def is_encoder(self) -> bool:
        return self.kind == "encoder"

    def backbone_state(self) -> dict:
        """The weights less the classifier head (``head.*``): what ``train --init`` loads."""
        return {k: v for k, v in self.state_dict.items() if not k.startswith(HEAD_PREFIX)}

    def _model_kwargs(self, num_classes: int | None = None) -> dict:
        kwargs = dict(self.model.kwargs)
        if self.is_encoder:
            kwargs["num_classes"] = num_classes or 1  # a placeholder head, freshly initialised
        return kwargs

    def build_model(self, *, load_weights: bool = True, num_classes: int | None = None) -> nn.Module:
        """Recreate the model from its registry name and kwargs, and load the weights.

        An encoder has no head: its backbone is built with a freshly initialised head of
        ``num_classes`` outputs (default 1, a placeholder) and every other weight loaded."""
        from ecgtool.models import create_model
        from ecgtool.models.registry import UnknownModelError

        try:
            self._check_model_size()
            model = create_model(self.model.name, **self._model_kwargs(num_classes))
        except UnknownModelError as e:
            raise CheckpointError(f"{self.name}: {e}") from None
        except TypeError as e:  # constructor arguments this ecgtool's model does not take
            raise CheckpointError(f"{self.name}: its model arguments do not fit {self.model.name} ({e})") from None
        if load_weights:
            try:
                missing, unexpected = model.load_state_dict(self.state_dict, strict=False)
            except RuntimeError as e:  # tensors of the wrong shape: torch lists them on many lines
                wrong = sum("size mismatch" in line for line in str(e).splitlines())
                raise CheckpointError(f"{self.name}: its weights do not fit {self.model.name}: "
                                      f"{wrong or 'some'} tensor(s) of the wrong shape") from None
            if self.is_encoder:
                missing = [k for k in missing if not k.startswith(HEAD_PREFIX)]
            if missing or unexpected:
                raise CheckpointError(
                    f"{self.name}: its weights do not fit {self.model.name}: "
                    f"{len(missing)} missing and {len(unexpected)} unexpected tensors"
                )
        return model

    def _check_model_size(self) -> None:
        """Refuse constructor arguments that would build a model far larger than the weights the file holds
        (a stranger's checkpoint may ask for any size): the model is first built on PyTorch's meta device,
        which allocates nothing. A model that cannot be built there is left to the real build."""
        import torch

        from ecgtool.models import create_model
        from ecgtool.models.registry import UnknownModelError

        held = sum(int(t.numel()) for t in self.state_dict.values() if isinstance(t, torch.Tensor))
        try:
            with torch.device("meta"):
                probe = create_model(self.model.name, **self._model_kwargs())
            claimed = sum(int(p.numel()) for name, p in probe.named_parameters()
                          if not (self.is_encoder and name.startswith(HEAD_PREFIX)))
        except (UnknownModelError, TypeError):
            raise
        except Exception:
            return
        if claimed > held + held // 100 + 1000:
            raise CheckpointError(f"{self.name}: its model arguments build {claimed} parameters but the file holds "
                                  f"{held} weight values; refused before allocating")

    def check_store(self, store: EcgStore, what: str = "store", windows: bool = False, input: InputSpec | None = None) -> None:
        """``store`` fits this model: its classes and task, and the input spec (``InputSpec.check``; ``input``:
        the one the model is run on instead of its own, e.g. fewer leads)."""
        model = f"the model {self.path}" if self.path else "the model"
        if self.is_encoder:
            raise CheckpointError(f"{self.name} is an encoder from pretraining, with no classifier to apply to the {what} "
                                  f"{store.path}: train one on it with `ecgtool train MODEL STORE --init {self.name}` "
                                  "(add --freeze-encoder for a linear probe) and use that")
        check_labels(store, self.classes, self.multi_label, what, model)
        (input or self.input).check(store, what, windows, model)

    @property
    def threshold_values(self) -> list[float] | None:
        return None if self.thresholds is None else list(self.thresholds["values"])

    def trained_on(self) -> list[str]:
        """Fingerprints of the stores the model was trained on: ``[train, val]`` (val when given)."""
        entry = self.provenance[-1] if self.provenance else {}
        return [i.get("fingerprint") for i in entry.get("inputs", [])] if entry.get("step") in ("train", "distill") else []

    def unfinished(self) -> list[str]:
        """A warning when this is a run's ``.resume`` file rather than its output: the latest weights, not the best
        epoch's (eval, predict, export and explain take it, to look at a run still going, but never silently)."""
        if self.resume is None:
            return []
        return [f"{self.path or 'the checkpoint'} is the resume file of an unfinished run (it would resume at epoch "
                f"{self.resume['epoch'] + 1}): its weights are the latest, not the best epoch's"]

    def warnings_on(self, store: EcgStore) -> list[str]:
        """What applying this model to ``store`` warns of (eval, explain): a resume file's weights, and rows prepared
        with other signal settings than its training data's."""
        return self.unfinished() + preprocessing_differences(self.preprocessing, store, self.name)

    def summary(self) -> dict:
        n_params = sum(int(t.numel()) for t in self.state_dict.values() if hasattr(t, "numel"))
        return {
            "path": str(self.path),
            "kind": "checkpoint",
            "format": CKPT_FORMAT,
            "format_version": self.format_version,
            "checkpoint_kind": self.kind,
            "model": self.model.to_dict(),
            "state_tensors": len(self.state_dict),
            "state_values": n_params,
            "task": self.task,
            "multi_label": self.multi_label,
            "classes": list(self.classes),
            "input": self.input.to_dict(),
            "thresholds": self.thresholds,
            "metrics": self.metrics,
            "train_args": self.train_args,
            "resumable": self.resume is not None,
            "pretraining": pretraining_summary(self.pretraining),
            "init": self.init,
            "distillation": self.distillation,
            "preprocessing": self.preprocessing,
            "provenance": self.provenance,
        }


# -- the pretraining record and encoder checkpoints ----------------------------------------------------------------

def qualified_record_ids(store: EcgStore) -> np.ndarray:
    """The store's distinct record ids qualified by dataset (``DATASET/RECORD``, or ``DATASET/SOURCE/RECORD``
    where the store has a per-record ``source``), sorted: ids that can be compared across datasets and stores."""
    import numpy as np

    return np.unique(qualified_ids(store, store.record_id))


def pretraining_store_record(store: EcgStore) -> dict:
    """One entry of a pretraining record's ``stores``: what a store is and every (qualified) record it holds."""
    from ecgtool.provenance import fingerprint

    ids = qualified_record_ids(store)
    return {"path": str(Path(store.path).resolve()), "fingerprint": fingerprint(store.path),
            "dataset": str(store.attrs.get("dataset") or "unknown"), "records": int(len(ids)), "record_ids": ids.tolist()}


def encoder_checkpoint(model: nn.Module, stores, *, method: str, hyperparameters: dict | None = None,
                       train_args: dict | None = None, metrics: dict | None = None, history: list | None = None,
                       input: InputSpec | None = None, provenance: list | None = None) -> Checkpoint:
    """An encoder checkpoint of ``model`` (a registry model, built by ``create_model``) pretrained on ``stores``
    (open stores or paths) by ``method``: the backbone's weights without the head, the input spec (default:
    the first store's, at the model's ``num_samples`` and its registered input view), and a pretraining record
    of every store with its records. ``train_args`` default to ``hyperparameters``; ``provenance`` to the
    first store's chain (when it is the only one) plus a ``pretrain`` entry listing every store."""
    from ecgtool.data.store import open_store
    from ecgtool.data.views import data_view
    from ecgtool.models import model_info
    from ecgtool.provenance import make_entry

    name, kwargs = getattr(model, "model_name", None), getattr(model, "model_kwargs", None)
    if not isinstance(name, str) or not isinstance(kwargs, dict):
        raise CheckpointError("an encoder checkpoint needs a model built by ecgtool.models.create_model (its name and kwargs)")
    stores = [open_store(s) if isinstance(s, (str, os.PathLike)) else s for s in stores]
    if not stores:
        raise CheckpointError("an encoder checkpoint needs the stores it was pretrained on")
    kwargs = {k: v for k, v in kwargs.items() if k != "num_classes"}
    if input is None:
        input = InputSpec.of_store(stores[0], data_view(model_info(name)["input_view"]),
                                   samples=kwargs.get("num_samples") or stores[0].n_samples)
    for store in stores:
        input.check(store, "pretraining store", windows=True, model="the encoder")
    hyperparameters = dict(hyperparameters or {})
    if provenance is None:
        chain = list(stores[0].attrs.get("provenance", [])) if len(stores) == 1 else []
        provenance = chain + [make_entry("pretrain", [s.path for s in stores], method=method, model=name)]
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.startswith(HEAD_PREFIX)}
    return Checkpoint(
        kind="encoder", model=ModelSpec(name, kwargs), state_dict=state, classes=(), task=ENCODER_TASK,
        multi_label=False, input=input, thresholds=None,
        train_args=dict(train_args if train_args is not None else hyperparameters), metrics=dict(metrics or {}),
        history=list(history or []), provenance=provenance,
        pretraining={"method": method, "hyperparameters": hyperparameters,
                     "stores": [pretraining_store_record(s) for s in stores]},
    )


def _check_pretraining(record, where: str) -> None:
    bad = f"{where}: 'pretraining' must record the method and its stores (path, fingerprint, dataset, record ids)"
    if not isinstance(record, dict) or not isinstance(record.get("method"), str) or not isinstance(record.get("stores"), list) \
            or not isinstance(record.get("hyperparameters", {}), dict):
        raise CheckpointError(bad)
    encoder = record.get("encoder")
    if encoder is not None and not (isinstance(encoder, dict) and isinstance(encoder.get("path"), str)):
        raise CheckpointError(f"{where}: the pretraining record's 'encoder' must name the encoder file")
    for entry in record["stores"]:
        if not (isinstance(entry, dict) and all(isinstance(entry.get(k), str) for k in ("path", "fingerprint", "dataset"))
                and _str_list(entry.get("record_ids"))):
            raise CheckpointError(bad)


def _check_distillation(record, where: str) -> None:
    teacher = record.get("teacher") if isinstance(record, dict) else None
    if not (isinstance(record, dict) and isinstance(record.get("method"), str)
            and isinstance(record.get("hyperparameters", {}), dict) and isinstance(teacher, dict)
            and all(isinstance(teacher.get(k), str) for k in ("path", "fingerprint", "model"))
            and _str_list(teacher.get("leads"))):
        raise CheckpointError(f"{where}: 'distillation' must record the method and the teacher (path, fingerprint, "
                              "model, leads)")


def _str_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(i, str) for i in value)


def pretraining_summary(record: dict | None) -> dict | None:
    """A pretraining record without its record id lists (what info shows)."""
    if record is None:
        return None
    out = {k: v for k, v in record.items() if k != "stores"}
    out["stores"] = [{**{k: v for k, v in s.items() if k != "record_ids"}, "records": len(s["record_ids"])}
                     for s in record["stores"]]
    return out


def pretraining_overlap(ckpt: Checkpoint, store: EcgStore, what: str = "records") -> list[str]:
    """Warnings for records of ``store`` that the weights of ``ckpt`` saw in self-supervised pretraining
    (its own, for an encoder; its init's, for a model trained with ``--init``), compared by qualified id."""
    import numpy as np

    record = ckpt.pretraining
    if not record:
        return []
    encoder = (record.get("encoder") or {}).get("path") or ckpt.name
    ids = qualified_record_ids(store)
    out = []
    for entry in record["stores"]:
        shared = np.intersect1d(ids, np.asarray(entry["record_ids"], dtype=str))
        if len(shared):
            example = ", ".join(shared[:3].tolist()) + (", …" if len(shared) > 3 else "")
            out.append(f"{len(shared)} of {len(ids)} {what} of {store.path} were in {encoder}'s pretraining data "
                       f"(dataset {entry['dataset']}, store {entry['path']}): {example}")
    return out


_UNREADABLE = "{} is not a checkpoint file that torch can read (another kind of file, or a truncated or damaged checkpoint)"


def _plain(value, where: str = "checkpoint"):
    """Convert numpy scalars/arrays to plain Python so that weights_only loading accepts them."""
    import numpy as np
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        # int keys stay int: an optimiser's state is keyed by parameter index
        return {k if isinstance(k, (str, int)) else str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value  # NaN and inf floats included: torch.save keeps them
    raise CheckpointError(f"{where}: {type(value).__name__} cannot be stored in a weights-only checkpoint")
