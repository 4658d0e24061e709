"""Model outputs over a whole store, as probabilities in store-row order.

A model trained on crops shorter than the store's records (``train --crop``) is
applied to sliding windows of its input length and the window probabilities
are aggregated per record by their mean or maximum, as the PTB-XL benchmark
does (helme/ecg_ptbxl_benchmarking ``fastai_model.py``: windows of the training
input size, stride half of it, ``aggregate_fn`` max by default). A last window
is aligned to the record's end when the stride does not reach it, so every
sample is seen. Multi-class models default to the mean, so that a record's
probabilities still sum to 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

AGGREGATES = ("max", "mean")


@dataclass(frozen=True)
class Windows:
    length: int
    stride: int
    aggregate: str = "max"

    def starts(self, samples: int) -> list[int]:
        starts = list(range(0, samples - self.length + 1, self.stride))
        if starts[-1] + self.length < samples:
            starts.append(samples - self.length)
        return starts

    def to_dict(self) -> dict:
        return asdict(self)


def default_aggregate(multi_label: bool) -> str:
    return "max" if multi_label else "mean"


def windows_for(model_samples: int, store_samples: int, stride: int | None = None, aggregate: str = "max") -> Windows | None:
    """Sliding windows when the store's records are longer than the model's input, else None."""
    if store_samples <= model_samples:
        return None
    return Windows(model_samples, stride or max(model_samples // 2, 1), aggregate)


def probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Sigmoid per class for multi-label tasks, softmax across classes for multi-class ones."""
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=1)


def window_probabilities(model: torch.nn.Module, x: torch.Tensor, windows: Windows, multi_label: bool) -> torch.Tensor:
    """``[B, K]`` aggregated probabilities of the windows of ``x [B, C, T]``; the model sees at
    most ``B`` windows at a time, so memory stays that of a batch of records."""
    starts = windows.starts(x.shape[-1])
    crops = torch.stack([x[..., s:s + windows.length] for s in starts], dim=1).flatten(0, 1)  # [B * W, C, L]
    logits = torch.cat([model(part) for part in crops.split(len(x))])
    p = probabilities(logits.float(), multi_label).unflatten(0, (len(x), len(starts)))
    return p.amax(dim=1) if windows.aggregate == "max" else p.mean(dim=1)


@torch.inference_mode()
def predict(model: torch.nn.Module, loader, device: torch.device, multi_label: bool,
            windows: Windows | None = None, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities [N, K], store rows [N])`` for every record the loader yields, sorted by row;
    ``progress(records done, records in all)`` after each batch."""
    was_training = model.training
    model.eval()
    probs, rows = [], []
    done, total = 0, len(loader.indices) if hasattr(loader, "indices") else None
    for x, _, idx in loader:
        x = x.to(device, non_blocking=True)
        p = probabilities(model(x).float(), multi_label) if windows is None else window_probabilities(model, x, windows, multi_label)
        probs.append(p.cpu().numpy())
        rows.append(idx)
        done += len(idx)
        if progress is not None:
            progress(done, total)
    model.train(was_training)
    p, r = np.concatenate(probs), np.concatenate(rows)
    order = np.argsort(r, kind="stable")
    return p[order], r[order]
