"""What a model tells ``explain`` about itself, so that ``explain/`` needs no model knowledge.

A model class declares, next to its ``default_cam_layer`` (defaults in
:class:`~ecgtool.models.layers.EcgClassifier`):

* ``cam_leads_axis`` — its 4D activations ``(B, C, H, W)`` keep the leads on
  ``H`` (ECG-as-image models), so Grad-CAM gives one profile per lead; other
  4D maps (spectrograms: frequency on ``H``) give one time profile.
* ``positions(layer_name, layer, x, shape)`` — where a layer's activation
  positions lie on the record when that is not "evenly along the whole time
  axis": :class:`Spans` (windows, segments, tokens) or :class:`Instances`
  (the batch axis holds several beats per record). ``None`` means evenly.
* ``attention(x)`` — for models that attend over time: the weights of one
  forward pass as :class:`SelfAttention` and/or :class:`PoolingAttention`
  groups with their positions, plus raw arrays and facts to store. ``None``
  means the model has no attention over time positions.

Models capture their weights with forward hooks (:func:`capture`) and recompute
them from the hooked module's own inputs and parameters, checked against the
module's output (:func:`check_recomputed`), so a later change to a model cannot
make its maps silently wrong and no state_dict key changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn


@dataclass
class Spans:
    """Activation position ``p`` (the last axis) covers samples ``[starts[p], starts[p] + width)``."""

    starts: np.ndarray  # (P,) or (B, P)
    width: int
    channels_last: bool = False  # the activation is (B, P, C) — transformer tokens — rather than (B, C, P)


@dataclass
class Instances:
    """The activation's batch axis holds ``K`` instances of each record (``B*K`` rows), each one a
    window of ``width`` samples starting at ``starts`` ``(B, K)``; ``valid`` ``(B, K)`` marks real ones."""

    starts: np.ndarray
    width: int
    valid: np.ndarray


@dataclass
class SelfAttention:
    """Self-attention over tokens: per layer ``(B, heads, n, n)``, first layer first; tokens lie on ``spans``.

    By default the model pools the tokens by their mean, so a token's relevance is its rollout
    column summed over the pooled rows. With ``cls_index`` the model classifies from that token
    (a CLS token, on no span of the record): the relevance of the others is the CLS row of the
    rollout, and ``spans`` lists the other tokens only, in order. ``valid`` ``(B, n_spans)`` marks
    padding tokens (empty beats) as False: the model pools over the real ones only, and the map
    leaves the padding out. A model whose layers see fewer tokens (token selection) reports each
    layer's map in the full token space, with dropped tokens' rows the identity.
    """

    layers: list[torch.Tensor]
    spans: Spans
    name: str = "tokens"  # names the rollout array explain stores ("rollout_<name>")
    cls_index: int | None = None
    valid: np.ndarray | None = None


@dataclass
class PoolingAttention:
    """Attention pooling: ``weights`` ``(B, n)`` sum to 1 over the ``valid`` positions, which lie on ``spans``."""

    weights: torch.Tensor
    spans: Spans
    valid: np.ndarray | None = None  # (B, n); None: all valid


@dataclass
class Attention:
    """One forward pass's attention: the time map is the mean of the groups' maps."""

    groups: list[SelfAttention | PoolingAttention]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # raw weights to store, (B, ...) each
    info: dict = field(default_factory=dict)  # JSON facts: what the weights are


def check_recomputed(name: str, recomputed: torch.Tensor, actual: torch.Tensor) -> None:
    """A hook's recomputation must reproduce the module's actual output."""
    if not torch.allclose(recomputed, actual, rtol=1e-4, atol=1e-5):
        raise RuntimeError(f"attention recomputed for {name} does not reproduce the model's output; "
                           "the model has changed and its attention() must follow")


def capture(model: nn.Module, x: torch.Tensor, hooks: list[tuple[nn.Module, object, bool]]) -> None:
    """One forward pass with ``(module, hook, pre)`` hooks registered; they are removed whatever happens."""
    handles = [m.register_forward_pre_hook(h) if pre else m.register_forward_hook(h) for m, h, pre in hooks]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
