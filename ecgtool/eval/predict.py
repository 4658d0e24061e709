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

from ecgtool.errors import ConfigError
from ecgtool.heap import release_free_memory
from ecgtool.train.prefetch import prefetch

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


def sliding_windows(model_samples: int, store_samples: int, stride: int | None, aggregate: str | None, multi_label: bool,
                    store_path) -> Windows | None:
    """The windows eval and explain run a model on for ``store_path``'s records (None: whole records), with
    the stride and aggregate asked for (default: half the input; max for multi-label, mean for multi-class);
    a stride or aggregate where there are no windows, or a stride that would skip samples, is a ``ConfigError``."""
    windows = windows_for(model_samples, store_samples, stride, aggregate or default_aggregate(multi_label))
    if windows is None and (stride or aggregate):
        what = "window_stride" if stride else "aggregate"
        raise ConfigError(f"{what}: {store_path}'s records are as long as the model's input ({model_samples} samples); "
                          "there are no windows", what)
    if windows is not None and windows.stride > windows.length:
        raise ConfigError(f"a window stride of {windows.stride} is longer than the {windows.length}-sample window: samples would go unseen",
                          "window_stride")
    return windows


def probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Sigmoid per class for multi-label tasks, softmax across classes for multi-class ones."""
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=1)


def window_crops(x: torch.Tensor, windows: Windows) -> torch.Tensor:
    """The windows of ``x [B, C, T]`` as one batch ``[B * W, C, L]``, record by record (``windows.starts(T)``)."""
    return torch.stack([x[..., s:s + windows.length] for s in windows.starts(x.shape[-1])], dim=1).flatten(0, 1)


def each_window_probabilities(model: torch.nn.Module, x: torch.Tensor, windows: Windows, multi_label: bool) -> torch.Tensor:
    """``[B, W, K]`` probabilities of every window of ``x [B, C, T]``; the model sees at most ``B``
    windows at a time, so memory stays that of a batch of records."""
    crops = window_crops(x, windows)
    logits = torch.cat([model(part) for part in crops.split(len(x))])
    return probabilities(logits.float(), multi_label).unflatten(0, (len(x), len(crops) // len(x)))


def aggregate_windows(p: torch.Tensor, windows: Windows) -> torch.Tensor:
    """``[B, W, K]`` window probabilities → ``[B, K]`` per record, by ``windows.aggregate``."""
    return p.amax(dim=1) if windows.aggregate == "max" else p.mean(dim=1)


def window_probabilities(model: torch.nn.Module, x: torch.Tensor, windows: Windows, multi_label: bool) -> torch.Tensor:
    """``[B, K]`` aggregated probabilities of the windows of ``x [B, C, T]``."""
    return aggregate_windows(each_window_probabilities(model, x, windows, multi_label), windows)


@torch.inference_mode()
def predict(model: torch.nn.Module, loader, device: torch.device, multi_label: bool,
            windows: Windows | None = None, progress=None) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities [N, K], store rows [N])`` for every record the loader yields, sorted by row;
    ``progress(records done, records in all)`` after each batch."""
    was_training = model.training
    model.eval()
    probs, rows = [], []
    done, total = 0, len(loader.indices) if hasattr(loader, "indices") else None
    for i, (x, _, idx) in enumerate(prefetch(loader, device)):  # on a GPU, the next batch is read and copied while this one runs
        p = probabilities(model(x).float(), multi_label) if windows is None else window_probabilities(model, x, windows, multi_label)
        probs.append(p.cpu().numpy())
        rows.append(idx)
        done += len(idx)
        if i % 16 == 15:
            # Each batch's small outputs are kept between its large, freed inputs and activations, which then stay
            # in the process: predict on 32,000 recordings grew 445 → 560 MB, 522 MB with this.
            release_free_memory()
        if progress is not None:
            progress(done, total)
    model.train(was_training)
    p, r = np.concatenate(probs), np.concatenate(rows)
    order = np.argsort(r, kind="stable")
    return p[order], r[order]
