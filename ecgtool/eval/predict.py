"""Model outputs over a whole store, as probabilities in store-row order."""

from __future__ import annotations

import numpy as np
import torch


def probabilities(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Sigmoid per class for multi-label tasks, softmax across classes for multi-class ones."""
    return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=1)


@torch.inference_mode()
def predict(model: torch.nn.Module, loader, device: torch.device, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities [N, K], store rows [N])`` for every record the loader yields, sorted by row."""
    was_training = model.training
    model.eval()
    probs, rows = [], []
    for x, _, idx in loader:
        logits = model(x.to(device, non_blocking=True))
        probs.append(probabilities(logits.float(), multi_label).cpu().numpy())
        rows.append(idx)
    model.train(was_training)
    p, r = np.concatenate(probs), np.concatenate(rows)
    order = np.argsort(r, kind="stable")
    return p[order], r[order]
