"""The checkpoint: one file holding a model and everything needed to use it.

A checkpoint is a ``torch.save`` of a dict made only of tensors, strings,
numbers, booleans, None, lists and dicts, so it loads with
``torch.load(path, weights_only=True)``: opening a stranger's checkpoint never
executes code. Keys (see README "The checkpoint"):

    format, format_version    "ecgtool.checkpoint", 1
    kind                      "classifier" | "encoder" (pretrain) | "student" (distill)
    model                     {"name": registry name, "kwargs": constructor arguments}
    state_dict                the weights
    classes, class_descriptions, task, multi_label
    input                     {"fs", "leads", "samples", "normalisation", "view"}
    thresholds                {"values": [per class], "source": where they came from} | None
    train_args, metrics, history, provenance
    resume                    optional: optimiser/scheduler/RNG state for --resume

A train, pretrain or distill output is a checkpoint of the same format.
"""

from __future__ import annotations

import os
from pathlib import Path

from ecgtool.errors import EcgtoolError
from ecgtool.outputs import atomic_output

CKPT_FORMAT = "ecgtool.checkpoint"
CKPT_VERSION = 1
CKPT_KINDS = ("classifier", "encoder", "student")
REQUIRED_KEYS = (
    "kind", "model", "state_dict", "classes", "task", "multi_label", "input",
    "thresholds", "train_args", "metrics", "provenance",
)
INPUT_KEYS = ("fs", "leads", "samples", "normalisation", "view")


class CheckpointError(EcgtoolError):
    """A checkpoint that is missing, foreign, newer than this tool, or malformed."""


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


def save_checkpoint(path: str | os.PathLike, ckpt: dict, *, overwrite: bool = False) -> None:
    """Validate and write atomically (temporary sibling, fsync, rename)."""
    import torch

    doc = _plain({"format": CKPT_FORMAT, "format_version": CKPT_VERSION, **ckpt})
    validate(doc, Path(path))
    with atomic_output(path, overwrite) as tmp:
        with open(tmp, "wb") as f:
            torch.save(doc, f)
            f.flush()
            os.fsync(f.fileno())


def validate(doc, path: Path) -> dict:
    if not isinstance(doc, dict) or doc.get("format") != CKPT_FORMAT:
        raise CheckpointError(f"{path} is not an ecgtool checkpoint")
    version = doc.get("format_version")
    if not isinstance(version, int) or version > CKPT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version}, newer than this ecgtool understands ({CKPT_VERSION}); upgrade ecgtool"
        )
    missing = [k for k in REQUIRED_KEYS if k not in doc]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}")
    if doc["kind"] not in CKPT_KINDS:
        raise CheckpointError(f"{path}: unknown checkpoint kind {doc['kind']!r}")
    model = doc["model"]
    if not isinstance(model, dict) or not isinstance(model.get("name"), str) or not isinstance(model.get("kwargs"), dict):
        raise CheckpointError(f"{path}: 'model' must hold a name and constructor kwargs")
    missing = [k for k in INPUT_KEYS if k not in doc["input"]]
    if missing:
        raise CheckpointError(f"{path}: the input spec lacks {', '.join(missing)}")
    thresholds = doc["thresholds"]
    if thresholds is not None and len(thresholds.get("values", [])) != len(doc["classes"]):
        raise CheckpointError(f"{path}: {len(thresholds.get('values', []))} thresholds for {len(doc['classes'])} classes")
    return doc


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load with ``weights_only=True`` and validate; tensors land on the CPU."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such checkpoint file")
    try:
        doc = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # the unpickler raises many types on foreign or corrupt bytes
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{p} is not a readable ecgtool checkpoint ({first})") from e
    return validate(doc, p)


def build_model(ckpt: dict, *, load_weights: bool = True):
    """Recreate the model from its registry name and kwargs, and load the weights."""
    from ecgtool.models import create_model

    model = create_model(ckpt["model"]["name"], **ckpt["model"]["kwargs"])
    if load_weights:
        missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
        if missing or unexpected:
            raise CheckpointError(
                f"checkpoint weights do not fit {ckpt['model']['name']}: "
                f"{len(missing)} missing and {len(unexpected)} unexpected tensors"
            )
    return model


def summary(ckpt: dict, path: str | os.PathLike) -> dict:
    n_params = sum(int(t.numel()) for t in ckpt["state_dict"].values() if hasattr(t, "numel"))
    return {
        "path": str(path),
        "kind": "checkpoint",
        "format": CKPT_FORMAT,
        "format_version": ckpt["format_version"],
        "checkpoint_kind": ckpt["kind"],
        "model": ckpt["model"],
        "state_tensors": len(ckpt["state_dict"]),
        "state_values": n_params,
        "task": ckpt["task"],
        "multi_label": ckpt["multi_label"],
        "classes": ckpt["classes"],
        "input": ckpt["input"],
        "thresholds": ckpt["thresholds"],
        "metrics": ckpt["metrics"],
        "train_args": ckpt["train_args"],
        "resumable": "resume" in ckpt,
        "provenance": ckpt["provenance"],
    }
