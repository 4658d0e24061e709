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


class LightConv(AttentionBlock):
    """LightConv token mixer on ``(B, N, C)``: Linear(C → 2C) → GLU → lightweight convolution → Linear(C → C).

    Wu et al., "Pay Less Attention with Lightweight and Dynamic Convolutions", ICLR 2019; the
    official code is fairseq's ``fairseq/modules/lightweight_convolution.py``
    (``LightweightConv1dTBC``) inside ``LightConvEncoderLayer`` (``fairseq/models/lightconv.py``),
    read and re-implemented here. As there:

    * the input projection doubles the width and a GLU halves it back (``glu=False``: a plain
      Linear(C → C), fairseq's ``--encoder-glu`` off); Linear weights Xavier-uniform, biases 0;
    * the convolution is depthwise over the tokens with ``num_heads`` kernels of width
      ``kernel_size`` (weights ``(heads, 1, K)``, Xavier-uniform), each shared by a contiguous
      group of C / heads channels (channel c uses kernel c // (C / heads), the TBC layout), and
      softmax-normalised over the kernel width (``weight_softmax``, fairseq's default);
    * "same" padding: K // 2 zeros on the left for odd K, (K − 1) // 2 left and K // 2 right for even K;
      no convolution bias (fairseq's default);
    * weight dropout is DropConnect on the normalised kernel, drawn per record, position and head
      (fairseq drops the kernel it expands per time step and batch element);
    * tokens that ``mask`` (``(B, N)``, True = a real token) marks as padding are zeroed after the
      GLU, so they contribute nothing (the encoder's padding mask).

    The attention map, recorded like the other mixers' (``record_attention``), is the band
    matrix ``(B, heads, N, N)`` of each head's normalised kernel — output token i of a head is
    ``Σ_j A[i, j] v_j`` — with the columns of padding tokens zeroed, checked against the
    convolution's output. The kernel does not depend on the input (the GLU gates the values,
    not the weights), and rows near the ends sum to less than 1 (the zero padding). thop counts
    the two Linears; the convolution's N·C·K products are not counted.
    """

    def __init__(self, dim: int, num_heads: int = 4, kernel_size: int = 3, weight_dropout: float = 0.0,
                 glu: bool = True, weight_softmax: bool = True):
        super().__init__(dim, num_heads)
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be at least 1, not {kernel_size}")
        self.kernel_size, self.weight_dropout, self.weight_softmax = kernel_size, weight_dropout, weight_softmax
        self.linear1 = nn.Linear(dim, 2 * dim if glu else dim)
        self.act = nn.GLU(dim=-1) if glu else nn.Identity()
        self.weight = nn.Parameter(torch.empty(num_heads, 1, kernel_size))
        self.linear2 = nn.Linear(dim, dim)
        for linear in (self.linear1, self.linear2):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)
        nn.init.xavier_uniform_(self.weight)

    def kernel(self) -> torch.Tensor:
        """The heads' kernels ``(heads, K)``, softmax-normalised over K when ``weight_softmax``."""
        w = self.weight.view(self.num_heads, self.kernel_size)
        return torch.softmax(w, dim=-1) if self.weight_softmax else w

    def band(self, kernel: torch.Tensor, n: int) -> torch.Tensor:
        """The convolution as a matrix per head ``(heads, n, n)``: ``band[h, i, j] = kernel[h, j − i + left]``."""
        left = (self.kernel_size - 1) // 2
        i = torch.arange(n, device=kernel.device)
        k = i.view(1, n) - i.view(n, 1) + left
        inside = (k >= 0) & (k < self.kernel_size)
        return kernel[:, k.clamp(0, self.kernel_size - 1)] * inside

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        h, r, k = self.num_heads, self.head_dim, self.kernel_size
        v = self.act(self.linear1(x))
        if mask is not None:
            v = v.masked_fill(~mask.unsqueeze(-1), 0.0)
        w = self.kernel()
        left = (k - 1) // 2
        padded = F.pad(v.transpose(1, 2), (left, k - 1 - left))  # (B, C, N + K - 1)
        if self.training and self.weight_dropout > 0:
            # DropConnect per record, position and head: unfold the windows, weigh each with its own kernel
            windows = padded.unfold(-1, k, 1).reshape(b, h, r, n, k)
            dropped = F.dropout(w.view(1, h, 1, k).expand(b, h, n, k), self.weight_dropout, training=True)
            out = torch.einsum("bhrnk,bhnk->bnhr", windows, dropped).reshape(b, n, c)
        else:
            out = F.conv1d(padded, w.repeat_interleave(r, dim=0).unsqueeze(1), groups=c).transpose(1, 2)
        if self.record_attention:
            band = self.band(w, n).expand(b, h, n, n)
            if mask is not None:
                band = band * mask.view(b, 1, 1, n)
            if not (self.training and self.weight_dropout > 0):
                heads = v.reshape(b, n, h, r).transpose(1, 2)  # (B, heads, N, C / heads)
                check_recomputed(type(self).__name__, (band @ heads).transpose(1, 2).reshape(b, n, c), out)
            self.attention_map = band
        return self.linear2(out)
