"""What an exported model carries beside its graph: how to feed it and how to read its outputs.

The same keys in both formats, each value JSON text: an ONNX model's
``metadata_props`` and a TorchScript archive's ``_extra_files``
(docs/export.md lists them). They come from the checkpoint: its input spec,
classes, task, thresholds and provenance, its fingerprint, and this ecgtool's
version.
"""

from __future__ import annotations

import json
from pathlib import Path

from ecgtool.checkpoint import Checkpoint
from ecgtool.data.views import extra_channels

EXPORT_FORMAT = "ecgtool.export"
EXPORT_VERSION = 1
INPUT_NAME = "ecg"
OUTPUT_NAME = "logits"


def activation(multi_label: bool) -> str:
    """What turns the logits into probabilities: one sigmoid per class (multi-label), else a softmax over classes."""
    return "sigmoid" if multi_label else "softmax"


def channel_names(ckpt: Checkpoint) -> list[str]:
    """The input channels in order: the leads, then what the input view adds (``rpeaks``: the R-peak mark channel)."""
    view = ckpt.input.view
    return list(ckpt.input.leads) + [view.get("name", "raw")] * extra_channels(view)


def export_metadata(ckpt: Checkpoint, fingerprint: str) -> dict[str, str]:
    """The metadata of ``ckpt``'s exported model, key → JSON text; ``fingerprint`` is the checkpoint file's."""
    from ecgtool import __version__

    spec = ckpt.input
    values = {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "ecgtool_version": __version__,
        "model": ckpt.model.to_dict(),
        "checkpoint": {"file": Path(ckpt.path).name if ckpt.path else None, "fingerprint": fingerprint, "kind": ckpt.kind},
        "input": spec.to_dict(),
        "input_name": INPUT_NAME,
        "input_shape": ["batch", spec.channels, spec.samples],
        "input_channels": channel_names(ckpt),
        "output_name": OUTPUT_NAME,
        "output": "logits",
        "activation": activation(ckpt.multi_label),
        "classes": list(ckpt.classes),
        "class_descriptions": dict(ckpt.class_descriptions),
        "task": ckpt.task,
        "multi_label": ckpt.multi_label,
        "thresholds": ckpt.thresholds,
        "provenance": ckpt.provenance,
    }
    return {k: json.dumps(v) for k, v in values.items()}


def read_metadata(props: dict[str, str]) -> dict:
    """The values of exported metadata (as read back from either format)."""
    return {k: json.loads(v) for k, v in props.items()}
