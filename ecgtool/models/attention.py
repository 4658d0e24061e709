"""Token mixers over sequences of tokens ``(B, N, C)``, shared by the transformer families.

Every attention block here computes its output with
:func:`torch.nn.functional.scaled_dot_product_attention` (the fused kernel on
GPU) and keeps an explicit ``softmax(q kᵀ / √d) v`` path only for when its
attention map is asked for: set ``block.record_attention = True`` (what
:func:`recording` does for a whole model) and after a forward pass
``block.attention_map`` holds the weights ``(B, heads, N, N)`` over the
block's own input tokens. The explicit output is checked against the fused
one on every recorded pass (``explainable.check_recomputed``), so a map can
never silently disagree with what the model computed.

Blocks whose keys are not the input tokens (pooled or strided keys, windows,
routed regions) report the map in token space all the same: a pooled key's
weight is shared equally by the tokens it pooled, and tokens a query may not
see get weight 0. Rows therefore still sum to 1, which is what the rollout of
``explain`` needs.

Sources, each re-implemented from the paper (reference code read, not copied):

* multi-head self-attention: Vaswani et al., "Attention Is All You Need",
  NeurIPS 2017; the pre-norm block with layer scale: Touvron et al., CaiT,
  ICCV 2021.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from ecgtool.models.explainable import check_recomputed

__all__ = [
    "AttentionBlock",
    "MultiHeadSelfAttention",
    "TransformerBlock",
    "Mlp",
    "attend",
    "recording",
    "spread_keys",
]


class AttentionBlock(nn.Module):
    """Base of the attention token mixers: the switch for recording the map, and where it lands."""

    record_attention: bool = False
    attention_map: torch.Tensor | None = None

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} must be divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads


def attend(block: AttentionBlock, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           mask: torch.Tensor | None = None, dropout: float = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``softmax(q kᵀ / √d + mask) v`` for ``q (..., N, d)``, ``k, v (..., M, d)``.

    ``mask`` is boolean (True = may attend) or additive float, broadcast to
    ``(..., N, M)``. Returns ``(output, weights)``: the fused kernel's output,
    and the explicit weights ``(..., N, M)`` when ``block.record_attention`` is
    set (checked to reproduce the output), else None.
    """
    drop = dropout if block.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
    if not block.record_attention:
        return out, None
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    weights = torch.softmax(scores, dim=-1)
    if drop == 0.0:
        check_recomputed(type(block).__name__, weights @ v, out)
    return out, weights


def spread_keys(weights: torch.Tensor, rate: int, n: int) -> torch.Tensor:
    """Weights over keys pooled ``rate`` tokens each ``(..., N, ceil(n/rate))`` → over the ``n`` tokens ``(..., N, n)``.

    Each pooled key's weight is shared equally by the tokens it pooled, so rows still sum to 1.
    """
    if rate == 1:
        return weights
    return (weights.repeat_interleave(rate, dim=-1) / rate)[..., :n]


@contextlib.contextmanager
def recording(model: nn.Module) -> Iterator[list[tuple[str, AttentionBlock]]]:
    """Within the block, every attention block of ``model`` records its map; yields them ``(name, block)`` in order."""
    blocks = [(name, m) for name, m in model.named_modules() if isinstance(m, AttentionBlock)]
    for _, m in blocks:
        m.record_attention, m.attention_map = True, None
    try:
        yield blocks
    finally:
        for _, m in blocks:
            m.record_attention = False


class MultiHeadSelfAttention(AttentionBlock):
    """Multi-head self-attention (Vaswani et al. 2017): one ``qkv`` Linear, heads, an output ``proj`` Linear.

    The projections are ``nn.Linear`` so thop counts their MACs (params × tokens); the two attention
    products are counted by profile's second count only.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__(dim, num_heads)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` → ``(B, heads, N, head_dim)``."""
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, self.head_dim).transpose(1, 2)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, heads, N, head_dim)`` → ``(B, N, C)``."""
        b, h, n, d = x.shape
        return x.transpose(1, 2).reshape(b, n, h * d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out, weights = attend(self, q, k, v, dropout=self.attn_drop)
        if weights is not None:
            self.attention_map = weights
        return self.proj_drop(self.proj(self.merge(out)))


class Mlp(nn.Module):
    """Channel mixer: Linear → GELU → Linear (``ratio`` × widening), on ``(B, N, C)``."""

    def __init__(self, dim: int, ratio: float = 2.0, drop: float = 0.0):
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block on ``(B, N, C)``: ``x + γ₁·mixer(LN x)``, then ``x + γ₂·mlp(LN x)``.

    ``mixer`` is any token mixer of this module; ``layer_scale`` (CaiT) is the
    initial value of the per-channel γ, or None for no γ. ``drop_path`` is the
    stochastic-depth rate of both residual branches.
    """

    def __init__(self, dim: int, mixer: nn.Module, mlp_ratio: float = 2.0, layer_scale: float | None = 1e-6,
                 drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio, drop)
        self.gamma1 = nn.Parameter(torch.full((dim,), layer_scale)) if layer_scale is not None else None
        self.gamma2 = nn.Parameter(torch.full((dim,), layer_scale)) if layer_scale is not None else None
        self.drop_path = drop_path

    def _branch(self, y: torch.Tensor, gamma: torch.Tensor | None) -> torch.Tensor:
        if gamma is not None:
            y = y * gamma
        return drop_path(y, self.drop_path, self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self._branch(self.mixer(self.norm1(x)), self.gamma1)
        return x + self._branch(self.mlp(self.norm2(x)), self.gamma2)


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth (Huang et al. 2016): drop a residual branch per sample, rescale the kept ones."""
    if rate == 0.0 or not training:
        return x
    keep = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype).bernoulli_(1.0 - rate)
    return x * keep / (1.0 - rate)
