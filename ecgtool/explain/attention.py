"""Attention maps of models that attend over time, from what each model declares (``models/explainable.py``).

A model's ``attention(x)`` returns the weights of one forward pass, captured and
checked by the model itself, in groups whose positions on the record it knows:

* self-attention over tokens (msse_transformer: every head of every layer, per
  scale) — mapped through the rollout of Abnar & Zuidema 2020 ("Quantifying
  Attention Flow in Transformers", ACL): per layer the head-averaged matrix with
  the residual connection added (0.5 A + 0.5 I, rows renormalised), multiplied
  through the layers. A model that mean-pools its tokens makes a token's relevance
  the mean of its rollout column; one that classifies from a CLS token (the group
  declares ``cls_index``) makes it the CLS row of the rollout; padding tokens
  (``valid``) are left out of both;
* attention pooling over positions (mina's knowledge-guided beat × rhythm ×
  frequency weights, mamil's instance softmax over heartbeats) — a position's
  weight.

Each group's relevance is spread over its positions' spans of the record; the
time map is the mean over groups, relative to uniform attention (1 everywhere
when every position gets the same weight), and does not depend on the class.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ecgtool.errors import ConfigError
from ecgtool.explain.explanation import Explanation
from ecgtool.explain.timeaxis import spread
from ecgtool.models.explainable import SelfAttention


def attention_rollout(layers: list[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Rollout (Abnar & Zuidema 2020) of per-layer attention ``(B, heads, n, n)``, first layer first → ``(B, n, n)``.

    Rows of the result sum to 1: entry (i, j) is how much of output token i flows from input token j.
    """
    b, _, n, _ = layers[0].shape
    eye = torch.eye(n, dtype=layers[0].dtype, device=layers[0].device)
    rollout = eye.expand(b, n, n)
    for a in layers:
        a_hat = residual * eye + (1.0 - residual) * a.mean(dim=1)
        a_hat = a_hat / a_hat.sum(dim=-1, keepdim=True)
        rollout = a_hat @ rollout
    return rollout


def token_relevance(rollout: torch.Tensor, cls_index: int | None = None, valid: np.ndarray | None = None) -> np.ndarray:
    """Each token's share of what the model pools, from the rollout ``(B, n, n)``, relative to uniform (1 each).

    Mean-pooled tokens: a token's relevance is the sum of its rollout column over the pooled rows
    (the real tokens under ``valid``), i.e. its mean share × the number pooled. A CLS-pooled model
    (``cls_index``): the CLS row over the other tokens (the CLS token itself is on no span),
    renormalised to sum to their number. Returns ``(B, n)``, or ``(B, n − 1)`` without the CLS column.
    """
    r = rollout.double()
    if cls_index is not None:
        r = torch.cat([r[:, cls_index, :cls_index], r[:, cls_index, cls_index + 1:]], dim=1)  # (B, n - 1)
    keep = torch.ones(r.shape[0], r.shape[-1], dtype=r.dtype, device=r.device) if valid is None else \
        torch.as_tensor(np.asarray(valid), dtype=r.dtype, device=r.device)
    if cls_index is not None:
        row = r * keep
        return (row / row.sum(dim=1, keepdim=True).clamp_min(1e-12) * keep.sum(dim=1, keepdim=True)).cpu().numpy()
    return (r * keep.unsqueeze(-1)).sum(dim=1).cpu().numpy()


def _group_map(group, samples: int, arrays: dict) -> np.ndarray:
    """One group's relevance on the record ``(B, samples)``, 1 = uniform attention."""
    if isinstance(group, SelfAttention):
        rollout = attention_rollout(group.layers)
        arrays[f"rollout_{group.name}"] = rollout.cpu().numpy()
        return spread(token_relevance(rollout, group.cls_index, group.valid), group.spans.starts, group.spans.width,
                      samples, group.valid)
    weights = group.weights.detach().cpu().numpy()
    valid = group.valid
    count = weights.shape[-1] if valid is None else np.maximum(valid.sum(axis=1, keepdims=True), 1)
    return spread(weights * count, group.spans.starts, group.spans.width, samples, valid)


def attention(model: nn.Module, x: torch.Tensor, n_leads: int) -> Explanation:
    """Attention maps ``(B, n_leads, samples)`` (one time profile broadcast over leads) plus the raw weights."""
    with torch.no_grad():
        found = model.attention(x)
    if found is None:
        name = getattr(model, "model_name", type(model).__name__)
        raise ConfigError(f"{name} has no attention over time positions; use gradcam, ig or saliency", "method")
    arrays = dict(found.arrays)
    maps = np.mean([_group_map(g, x.shape[-1], arrays) for g in found.groups], axis=0)
    info = dict(found.info)
    if any(isinstance(g, SelfAttention) for g in found.groups):
        info["rollout"] = "Abnar & Zuidema 2020: 0.5 A + 0.5 I per layer, head mean, product over layers"
    maps = np.ascontiguousarray(np.broadcast_to(maps[:, None], (x.shape[0], n_leads, x.shape[-1])), dtype=np.float32)
    arrays = {k: np.asarray(v, dtype=np.float32 if np.asarray(v).dtype.kind == "f" else np.int64) for k, v in arrays.items()}
    return Explanation(maps, arrays, info)


def has_attention(model: nn.Module) -> bool:
    """Whether the model's class declares attention over time (overrides ``EcgClassifier.attention``)."""
    from ecgtool.models.layers import EcgClassifier

    return type(model).attention is not EcgClassifier.attention
