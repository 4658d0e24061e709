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
weight is shared equally by the real tokens it pooled, and tokens a query may
not see get weight 0. Rows therefore still sum to 1, which is what the rollout
of ``explain`` needs. Convolutional side paths (Shunted's and BiFormer's local
enhancement on V) are not attention and are not in the map.

Every mixer takes any number of tokens N: where windows, regions or strided
reductions need a multiple, the tokens are zero-padded at the end inside the
block, padded keys are masked (a padded query sees at least itself, so no row
is empty), and the output is cropped back to N.

Sources, each re-implemented from the paper (reference code read, not copied):

* multi-head self-attention: Vaswani et al., "Attention Is All You Need",
  NeurIPS 2017; the pre-norm block with layer scale: Touvron et al., CaiT,
  ICCV 2021; the optional clipped relative position bias of
  :class:`MultiHeadSelfAttention`: Shaw et al., "Self-Attention with Relative
  Position Representations", NAACL 2018 (clipping), as a per-head scalar table
  like Swin's.
* :class:`SpatialReductionAttention`: Wang et al., "Pyramid Vision
  Transformer", ICCV 2021; official code whai362/PVT
  ``classification/pvt.py`` (``Attention``).
* :class:`ShuntedSelfAttention`: Ren et al., "Shunted Self-Attention via
  Multi-Scale Token Aggregation", CVPR 2022; official code
  OliverRensu/Shunted-Transformer ``SSA.py`` (``Attention``).
* :class:`HiLoAttention`: Pan et al., "Fast Vision Transformers with HiLo
  Attention" (LITv2), NeurIPS 2022; official code ziplab/LITv2 ``hilo.py``,
  ``classification/models/attentions.py``, and the padding of
  ``detection/mmdet/models/backbones/litv2.py``.
* :class:`BiLevelRoutingAttention`: Zhu et al., "BiFormer: Vision Transformer
  with Bi-Level Routing Attention", CVPR 2023; official code rayleizhu/BiFormer
  ``ops/torch/bra.py``, ``ops/bra_legacy.py`` (auto_pad), ``models/biformer.py``.
* :class:`WindowAttention`: Liu et al., "Swin Transformer: Hierarchical Vision
  Transformer using Shifted Windows", ICCV 2021; official code
  microsoft/Swin-Transformer ``models/swin_transformer.py``
  (``WindowAttention``, ``SwinTransformerBlock``).
* :class:`ConvModulation`: Hou et al., "Conv2Former: A Simple Transformer-Style
  ConvNet for Visual Recognition", arXiv 2022 / TPAMI 2024; official code
  HVision-NKU/Conv2Former ``convmod.py`` (``ConvMod``), ``models/conv2former.py``.
* :class:`CoordAttention1d`: Hou, Zhou, Feng, "Coordinate Attention for
  Efficient Mobile Network Design", CVPR 2021, as used by MVMS-ECG (Yang et
  al. 2023, official code ysxGitHub/MVMS-net ``models/attention.py``
  ``CoordAtt`` on (N, C, 1, T)).
* :class:`DwConvPosition`: Chu et al., "Conditional Positional Encodings for
  Vision Transformers" (CPVT), ICLR 2023 (the PEG, ``x + dwconv(x)``), as BiFormer
  uses it before every block (``before_attn_dwconv=3``).
* :class:`LearnedPosition`: Dosovitskiy et al., "An Image is Worth 16x16 Words"
  (ViT), ICLR 2021 (absolute learned embedding, added once; resized by
  interpolation when the length changes, as PVT's ``_get_pos_embed``).
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ecgtool.models.explainable import check_recomputed

__all__ = [
    "AttentionBlock",
    "MultiHeadSelfAttention",
    "SpatialReductionAttention",
    "ShuntedSelfAttention",
    "HiLoAttention",
    "BiLevelRoutingAttention",
    "WindowAttention",
    "ConvModulation",
    "CoordAttention1d",
    "DwConvPosition",
    "LearnedPosition",
    "TransformerBlock",
    "Mlp",
    "TOKEN_MIXERS",
    "token_mixer",
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

    Each pooled key's weight is shared equally by the real tokens it pooled (the
    last key of a length that is not a multiple of ``rate`` pools fewer), so rows
    still sum to 1.
    """
    if rate == 1:
        return weights
    m = weights.shape[-1]
    if m != -(-n // rate):
        raise ValueError(f"{m} keys do not pool {n} tokens {rate} at a time")
    counts = torch.full((m,), float(rate), dtype=weights.dtype, device=weights.device)
    counts[-1] = n - (m - 1) * rate
    return (weights / counts).repeat_interleave(rate, dim=-1)[..., :n]


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


# ---------------------------------------------------------------------------
# Token-layout helpers shared by the mixers


def _split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """``(..., N, heads·d)`` → ``(..., heads, N, d)``."""
    *lead, n, c = x.shape
    return x.reshape(*lead, n, heads, c // heads).transpose(-3, -2)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(..., heads, N, d)`` → ``(..., N, heads·d)``."""
    *lead, h, n, d = x.shape
    return x.transpose(-3, -2).reshape(*lead, n, h * d)


def _pad_tokens(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad ``(B, N, C)`` at the end of N up to a multiple of ``multiple``."""
    pad = -x.shape[1] % multiple
    return F.pad(x, (0, 0, 0, pad)) if pad else x


def _channels_first(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Apply a ``(B, C, N)`` module (a Conv1d) to tokens ``(B, N, C)``."""
    return fn(x.transpose(1, 2)).transpose(1, 2)


def _strided_reduce(x: torch.Tensor, conv: nn.Conv1d, rate: int) -> torch.Tensor:
    """Tokens ``(B, N, C)`` → ``(B, ceil(N/rate), C')`` by a Conv1d of kernel = stride = ``rate`` (zero-padded end)."""
    return _channels_first(conv, _pad_tokens(x, rate))


def _mean_pool(x: torch.Tensor, rate: int) -> torch.Tensor:
    """Tokens ``(B, N, C)`` → ``(B, ceil(N/rate), C)``: the mean of each ``rate`` tokens (the last over the real ones)."""
    b, n, c = x.shape
    if rate == 1:
        return x
    m = -(-n // rate)
    counts = torch.full((m, 1), float(rate), dtype=x.dtype, device=x.device)
    counts[-1] = n - (m - 1) * rate
    return _pad_tokens(x, rate).reshape(b, m, rate, c).sum(2) / counts


def _window_key_mask(n: int, window: int, device: torch.device) -> torch.Tensor | None:
    """Boolean mask ``(nW, 1, w, w)`` hiding padded keys of the windows over N padded to a multiple of ``window``.

    A padded query keeps itself so that no row is empty (its output is cropped). None when nothing is padded.
    """
    if n % window == 0:
        return None
    valid = (torch.arange(-(-n // window) * window, device=device) < n).reshape(-1, window)
    eye = torch.eye(window, dtype=torch.bool, device=device)
    return (valid[:, None, :] | eye)[:, None]


def _fold_windows(t: torch.Tensor) -> torch.Tensor:
    """``(B, G, heads, L, d)`` → ``(B, G·heads, L, d)``: the fused SDPA kernels take 4D inputs only (5D falls back to
    the unfused math kernel)."""
    b, g, h, n, d = t.shape
    return t.reshape(b, g * h, n, d)


def _fold_mask(mask: torch.Tensor | None, groups: int, heads: int) -> torch.Tensor | None:
    """A window mask ``(G or 1, heads or 1, L, M)`` → ``(1, G·heads, L, M)``, to go with :func:`_fold_windows`."""
    if mask is None:
        return None
    return mask.expand(groups, heads, *mask.shape[-2:]).reshape(1, groups * heads, *mask.shape[-2:])


def _block_diagonal(weights: torch.Tensor) -> torch.Tensor:
    """Per-window weights ``(B, nW, heads, w, w)`` → the block-diagonal token map ``(B, heads, nW·w, nW·w)``."""
    b, nw, h, w, _ = weights.shape
    eye = torch.eye(nw, dtype=weights.dtype, device=weights.device)
    return torch.einsum("bnhij,nm->bhnimj", weights, eye).reshape(b, h, nw * w, nw * w)


def _relative_index(n: int, max_len: int, device: torch.device) -> torch.Tensor:
    """``(n, n)`` indices ``clip(i - j, ±(max_len-1)) + max_len - 1`` into a ``2·max_len - 1`` bias table."""
    pos = torch.arange(n, device=device)
    return (pos[:, None] - pos[None, :]).clamp(-(max_len - 1), max_len - 1) + (max_len - 1)


def _relative_bias(table: torch.Tensor, n: int, max_len: int) -> torch.Tensor:
    """The additive bias ``(heads, n, n)`` of a relative position table ``(2·max_len - 1, heads)``."""
    return table[_relative_index(n, max_len, table.device)].permute(2, 0, 1)


# ---------------------------------------------------------------------------
# Full self-attention


class MultiHeadSelfAttention(AttentionBlock):
    """Multi-head self-attention (Vaswani et al. 2017): one ``qkv`` Linear, heads, an output ``proj`` Linear.

    The projections are ``nn.Linear`` so thop counts their MACs (params × tokens); the two attention
    products are counted by profile's second count only.

    ``relative_bias=True`` adds a learned per-head bias ``b[i - j]`` to the scores (a
    ``(2·max_len - 1, heads)`` table, trunc-normal std .02 as Swin's). The papers
    (Shaw et al. 2018; Swin's window table) fix a table per window; for a full
    sequence of any length this block clips distances beyond ``max_len - 1`` to the
    last entry (Shaw et al.'s clipping), so it works for any N. Off by default: the
    plain block and its state_dict are unchanged.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, relative_bias: bool = False, max_len: int = 256):
        super().__init__(dim, num_heads)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.max_len = max_len
        if relative_bias:
            self.relative_position_bias_table = nn.Parameter(torch.zeros(2 * max_len - 1, num_heads))
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        else:
            self.relative_position_bias_table = None

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` → ``(B, heads, N, head_dim)``."""
        return _split_heads(x, self.num_heads)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, heads, N, head_dim)`` → ``(B, N, C)``."""
        return _merge_heads(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        mask = None
        if self.relative_position_bias_table is not None:
            mask = _relative_bias(self.relative_position_bias_table, n, self.max_len).to(q.dtype)
        out, weights = attend(self, q, k, v, mask, dropout=self.attn_drop)
        if weights is not None:
            self.attention_map = weights
        return self.proj_drop(self.proj(self.merge(out)))


# ---------------------------------------------------------------------------
# Attention over reduced keys


class SpatialReductionAttention(AttentionBlock):
    """PVT's spatial-reduction attention (Wang et al. 2021): queries from every token, keys and values from
    the tokens reduced ``sr_ratio`` times.

    As the official ``Attention`` of ``pvt.py``: ``q`` Linear(dim, dim); for
    ``sr_ratio > 1`` the tokens go through ``sr`` = Conv(dim, dim, kernel =
    stride = sr_ratio) and ``norm`` = LayerNorm(dim) before ``kv`` Linear(dim,
    2·dim) (first half keys, second half values); ``sr_ratio = 1`` is plain
    multi-head self-attention; ``proj`` Linear(dim, dim); scale 1/√head_dim.
    The 2D strided convolution becomes a Conv1d.

    Chosen here (the paper's feature maps are always divisible): a length that is
    not a multiple of ``sr_ratio`` is zero-padded at the end before the reduction,
    so the last key reduces the remaining real tokens and zeros; its weight in the
    map is shared by those real tokens. ``qkv_bias`` defaults to True as in every
    official PVT variant.
    """

    def __init__(self, dim: int, num_heads: int = 8, sr_ratio: int = 2, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__(dim, num_heads)
        if sr_ratio < 1:
            raise ValueError(f"sr_ratio must be at least 1, not {sr_ratio}")
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if sr_ratio > 1:
            self.sr = nn.Conv1d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q = _split_heads(self.q(x), self.num_heads)
        xr = self.norm(_strided_reduce(x, self.sr, self.sr_ratio)) if self.sr_ratio > 1 else x
        k, v = self.kv(xr).reshape(b, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out, weights = attend(self, q, k, v, dropout=self.attn_drop)
        if weights is not None:
            self.attention_map = spread_keys(weights, self.sr_ratio, n)
        return self.proj_drop(self.proj(_merge_heads(out)))


def _default_head_rates(num_heads: int) -> tuple[int, ...]:
    """Half the heads at rate 1, a quarter at 2, the rest at 4 (8 heads: 1,1,1,1,2,2,4,4)."""
    n1, n2 = num_heads // 2, num_heads // 4
    return (1,) * n1 + (2,) * n2 + (4,) * (num_heads - n1 - n2)


class ShuntedSelfAttention(AttentionBlock):
    """Shunted self-attention (Ren et al. 2022): groups of heads attend to keys/values aggregated at different rates.

    Official ``SSA.py`` ``Attention``, followed here: one ``q`` Linear(dim, dim)
    for all heads; for each group of heads with rate r, the tokens go through
    Conv(dim, dim, kernel = stride = r) → LayerNorm(dim) → GELU (the official
    ``sr``/``norm``/``act``) and the group's own ``kv`` Linear(dim, 2·group_dim)
    gives that group's keys and values; a depthwise conv (kernel 3) of the
    group's values is added to those values before the attention (the official
    local enhancement ``v = v + local_conv(v)``); the groups' outputs are
    concatenated in head order and go through ``proj`` Linear(dim, dim). When
    every rate is 1 the block is the official ``sr_ratio == 1`` branch: keys and
    values from the tokens themselves (no conv, norm or GELU), and the local
    conv of the values is added to the attention *output*.

    Where the official code is narrower and what was chosen:

    * it has exactly two groups (half the heads each, rates sr and sr/2);
      ``head_rates`` generalises this to any contiguous groups, e.g. the
      research notebook's 8 heads "half at full resolution, a quarter ↓2, a
      quarter ↓4" = ``(1, 1, 1, 1, 2, 2, 4, 4)`` (the default for 8 heads;
      for other head counts half/quarter/rest at 1/2/4). A rate-1 group in a
      mixed block is reduced by a kernel-1 conv + LN + GELU, exactly as the
      official sr_ratio=2 block treats its full-resolution half;
    * ``local=False`` drops the local enhancement (for the equivalence test and
      ablations);
    * lengths that are not a multiple of a rate are zero-padded before that
      group's reduction (see :class:`SpatialReductionAttention`).
    """

    def __init__(self, dim: int, num_heads: int = 8, head_rates: Sequence[int] | None = None,
                 qkv_bias: bool = True, local: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__(dim, num_heads)
        rates = tuple(head_rates) if head_rates is not None else _default_head_rates(num_heads)
        if len(rates) != num_heads or min(rates) < 1:
            raise ValueError(f"head_rates {rates} must give a rate >= 1 to each of the {num_heads} heads")
        self.groups: list[tuple[int, int, int]] = []  # (rate, first head, heads)
        for i, r in enumerate(rates):
            if self.groups and self.groups[-1][0] == r:
                self.groups[-1] = (r, self.groups[-1][1], self.groups[-1][2] + 1)
            elif any(g[0] == r for g in self.groups):
                raise ValueError(f"head_rates {rates}: heads sharing a rate must be adjacent")
            else:
                self.groups.append((r, i, 1))
        self.head_rates = rates
        self.multi_scale = max(rates) > 1
        self.attn_drop = attn_drop
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        group_dims = [h * self.head_dim for _, _, h in self.groups]
        self.kv = nn.ModuleList(nn.Linear(dim, 2 * gd, bias=qkv_bias) for gd in group_dims)
        if self.multi_scale:
            self.sr = nn.ModuleList(nn.Conv1d(dim, dim, kernel_size=r, stride=r) for r, _, _ in self.groups)
            self.norm = nn.ModuleList(nn.LayerNorm(dim) for _ in self.groups)
            self.act = nn.GELU()
        self.local = nn.ModuleList(nn.Conv1d(gd, gd, 3, padding=1, groups=gd) for gd in group_dims) if local else None
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q = _split_heads(self.q(x), self.num_heads)
        outs, maps, side = [], [], None
        for g, (rate, first, heads) in enumerate(self.groups):
            xr = self.act(self.norm[g](_strided_reduce(x, self.sr[g], rate))) if self.multi_scale else x
            k, v = self.kv[g](xr).reshape(b, -1, 2, heads, self.head_dim).permute(2, 0, 3, 1, 4)
            if self.local is not None:
                lv = _split_heads(_channels_first(self.local[g], _merge_heads(v)), heads)
                if self.multi_scale:
                    v = v + lv  # official: the reduced values are enhanced before the attention
                else:
                    side = _merge_heads(lv)  # official sr_ratio == 1: added to the output
            out, weights = attend(self, q[:, first:first + heads], k, v, dropout=self.attn_drop)
            outs.append(out)
            if weights is not None:
                maps.append(spread_keys(weights, rate, n))
        out = _merge_heads(torch.cat(outs, dim=1))
        if side is not None:
            out = out + side
        if maps:
            self.attention_map = torch.cat(maps, dim=1)
        return self.proj_drop(self.proj(out))


class HiLoAttention(AttentionBlock):
    """HiLo attention (LITv2, Pan et al. 2022): Hi-Fi heads attend inside local windows, Lo-Fi heads attend
    from every token to window-averaged keys.

    As the official ``HiLo``: ``int(num_heads·alpha)`` Lo-Fi heads with ``l_q``
    Linear(dim, l_dim), ``l_kv`` Linear(dim, 2·l_dim) over the tokens averaged
    ``window`` at a time, and ``l_proj`` Linear(l_dim, l_dim); the other heads
    are Hi-Fi with ``h_qkv`` Linear(dim, 3·h_dim) and ``h_proj`` Linear(h_dim,
    h_dim), attending within non-overlapping windows of ``window`` tokens; the
    output is ``[Hi-Fi, Lo-Fi]`` concatenated on channels (no further
    projection); scale 1/√head_dim; ``window = 1`` makes every head Lo-Fi over
    unpooled tokens, i.e. plain multi-head self-attention (as official).

    Chosen here:

    * default ``window = 5``: the official s = 2 is a 2×2 = 4-token window on
      images; in 1D a window of 5 tokens keeps that size and divides both ECG
      token lengths of the notebook exactly (250 = 50·5, 125 = 25·5), so
      neither branch pads; at 250 tokens over 10 s a window is 200 ms (about a
      QRS complex and its edges) and the Lo-Fi branch sees 50 or 25 keys;
    * other lengths are zero-padded at the end as the official detection code
      pads, but padded keys are masked in the Hi-Fi windows and the last Lo-Fi
      key is the mean of the real tokens only (the official code averages in the
      zeros);
    * ``alpha`` defaults to 0.5 (the module default of the official code; its
      ImageNet models use 0.9); ``qkv_bias`` defaults to True as in LITv2's config.

    The map's heads are in output order: Hi-Fi heads (block-diagonal), then Lo-Fi heads.
    """

    def __init__(self, dim: int, num_heads: int = 8, window: int = 5, alpha: float = 0.5, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__(dim, num_heads)
        if window < 1 or not 0.0 <= alpha <= 1.0:
            raise ValueError(f"HiLo needs window >= 1 and 0 <= alpha <= 1, not window={window}, alpha={alpha}")
        self.window = window
        self.l_heads = num_heads if window == 1 else int(num_heads * alpha)
        self.h_heads = num_heads - self.l_heads
        self.l_dim, self.h_dim = self.l_heads * self.head_dim, self.h_heads * self.head_dim
        self.attn_drop = attn_drop
        if self.l_heads:
            self.l_q = nn.Linear(dim, self.l_dim, bias=qkv_bias)
            self.l_kv = nn.Linear(dim, 2 * self.l_dim, bias=qkv_bias)
            self.l_proj = nn.Linear(self.l_dim, self.l_dim)
        if self.h_heads:
            self.h_qkv = nn.Linear(dim, 3 * self.h_dim, bias=qkv_bias)
            self.h_proj = nn.Linear(self.h_dim, self.h_dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def hifi(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, n, c = x.shape
        w = self.window
        xw = _pad_tokens(x, w)
        nw = xw.shape[1] // w
        hh, d = self.h_heads, self.head_dim
        q, k, v = self.h_qkv(xw).reshape(b, nw, w, 3, hh, d).permute(3, 0, 1, 4, 2, 5)  # (B, nW, heads, w, d)
        mask = _fold_mask(_window_key_mask(n, w, x.device), nw, hh)
        out, weights = attend(self, _fold_windows(q), _fold_windows(k), _fold_windows(v), mask, dropout=self.attn_drop)
        out = self.h_proj(out.reshape(b, nw, hh, w, d).permute(0, 1, 3, 2, 4).reshape(b, nw * w, self.h_dim)[:, :n])
        if weights is None:
            return out, None
        return out, _block_diagonal(weights.reshape(b, nw, hh, w, w))[..., :n, :n]

    def lofi(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, n, _ = x.shape
        q = _split_heads(self.l_q(x), self.l_heads)
        k, v = self.l_kv(_mean_pool(x, self.window)).reshape(b, -1, 2, self.l_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out, weights = attend(self, q, k, v, dropout=self.attn_drop)
        return self.l_proj(_merge_heads(out)), None if weights is None else spread_keys(weights, self.window, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = ([self.hifi(x)] if self.h_heads else []) + ([self.lofi(x)] if self.l_heads else [])
        if self.record_attention:
            self.attention_map = torch.cat([m for _, m in parts], dim=1)
        return self.proj_drop(torch.cat([o for o, _ in parts], dim=-1))


class BiLevelRoutingAttention(AttentionBlock):
    """Bi-level routing attention (BiFormer, Zhu et al. 2023): each region of tokens attends, token to token,
    only to the ``topk`` regions whose mean key best matches its mean query.

    As the official ``ops/torch/bra.py`` (``kv_downsample_mode='identity'``,
    ``param_attention='qkvo'``, no parametric, differentiable or soft routing —
    the configuration of every official BiFormer model): one ``qkv``
    Linear(dim, 3·dim) shared by routing and attention; region queries and keys
    are the means of q and k over each region; the region affinity
    ``q_r k_rᵀ · scale`` picks each region's ``topk`` regions (on detached
    tensors: no gradient flows through the routing index); each region's
    queries attend over the gathered tokens of those regions (gathered, then one
    fused attention per region, not a dense mask); the local context
    enhancement ``lepe`` (a depthwise conv of kernel ``side_kernel`` over the
    values) is added to the attention output; ``wo`` Linear(dim, dim).

    The official scale is ``qk_dim ** -0.5`` with qk_dim = dim, the *whole*
    width rather than the head width, for both the routing and the token
    attention; ``qk_scale=None`` keeps that, a number overrides it (e.g.
    ``head_dim ** -0.5`` for the usual scaling).

    Chosen here:

    * 1D regions: ``regions`` contiguous regions of equal length; ``regions=25``
      gives 10 tokens a region at 250 tokens and 5 at 125, ``topk=10`` lets a
      region see 40% of the sequence (BiFormer's stage 3 routes 16 of 49
      regions, about a third). When N is not a multiple of ``regions`` the
      region length is ceil(N / regions) and the sequence is zero-padded to a
      whole number of such regions (fewer than ``regions`` of them when N is
      small, so no region is empty; ``topk`` is capped at their number);
    * padded tokens are left out of the region means and masked as keys (the
      official ``auto_pad`` averages and attends to the zeros' projections);
    * ``side_kernel=5`` as every official BiFormer model (``side_dwconv=5``);
      0 removes the enhancement. It convolves the values of the real tokens with
      zero padding at the ends.

    With ``record_attention`` the block also keeps ``routed_regions`` (B, R, topk), the regions each region routed to.
    """

    routed_regions: torch.Tensor | None = None

    def __init__(self, dim: int, num_heads: int = 8, regions: int = 25, topk: int = 10, side_kernel: int = 5,
                 qkv_bias: bool = True, qk_scale: float | None = None, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__(dim, num_heads)
        if regions < 1 or topk < 1:
            raise ValueError(f"BiFormer needs regions >= 1 and topk >= 1, not regions={regions}, topk={topk}")
        if side_kernel and side_kernel % 2 == 0:
            raise ValueError(f"side_kernel must be odd (or 0 for none), not {side_kernel}")
        self.regions, self.topk, self.side_kernel = regions, topk, side_kernel
        self.scale = qk_scale if qk_scale is not None else dim ** -0.5
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.lepe = nn.Conv1d(dim, dim, side_kernel, padding=side_kernel // 2, groups=dim) if side_kernel else None
        self.wo = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        h, d = self.num_heads, self.head_dim
        s = -(-n // self.regions)  # tokens per region
        r = -(-n // s)  # regions (no empty one)
        topk = min(self.topk, r)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        side = _channels_first(self.lepe, v) if self.lepe is not None else None
        q, k, v = (_pad_tokens(t, s).reshape(b, r, s, c) for t in (q, k, v))
        valid = torch.arange(r * s, device=x.device).reshape(r, s) < n
        counts = valid.sum(1, keepdim=True).to(x.dtype)
        q_region, k_region = q.sum(2) / counts, k.sum(2) / counts  # padded tokens are zeros
        affinity = (q_region.detach() * self.scale) @ k_region.detach().transpose(-2, -1)  # (B, R, R)
        index = affinity.topk(topk, dim=-1).indices  # (B, R, topk)
        batch = torch.arange(b, device=x.device)[:, None, None]
        k_sel = k[batch, index].reshape(b, r, topk * s, h, d).transpose(2, 3)  # (B, R, h, topk·s, d)
        v_sel = v[batch, index].reshape(b, r, topk * s, h, d).transpose(2, 3)
        q = q.reshape(b, r, s, h, d).transpose(2, 3) * (self.scale * math.sqrt(d))  # SDPA divides by √d
        mask = None
        if n % s:  # every region holds a real token, so masking the padded keys never empties a row
            mask = valid[index].reshape(b, r, 1, 1, topk * s).expand(b, r, h, 1, topk * s).reshape(b, r * h, 1, -1)
        out, weights = attend(self, _fold_windows(q), _fold_windows(k_sel), _fold_windows(v_sel), mask,
                              dropout=self.attn_drop)
        out = out.reshape(b, r, h, s, d).transpose(2, 3).reshape(b, r * s, c)[:, :n]
        if side is not None:
            out = out + side
        if weights is not None:
            self.routed_regions = index
            cols = (index[..., None] * s + torch.arange(s, device=x.device)).reshape(b, r, 1, 1, topk * s)
            weights = weights.reshape(b, r, h, s, topk * s)
            full = weights.new_zeros(b, r, h, s, r * s).scatter_(-1, cols.expand(-1, -1, h, s, -1), weights)
            self.attention_map = full.permute(0, 2, 1, 3, 4).reshape(b, h, r * s, r * s)[..., :n, :n]
        return self.proj_drop(self.wo(out))


class WindowAttention(AttentionBlock):
    """(Shifted-)window attention with a relative position bias (Swin, Liu et al. 2021), in 1D.

    As the official ``WindowAttention`` / ``SwinTransformerBlock``: ``qkv``
    Linear(dim, 3·dim), attention within non-overlapping windows of ``window``
    tokens, a learned ``relative_position_bias_table`` of ``2·window - 1``
    entries per head (trunc-normal std .02) indexed by ``i - j`` and added to
    the scores, ``proj`` Linear(dim, dim), scale 1/√head_dim. ``shift > 0``
    rolls the tokens by ``-shift`` before partitioning and back after, and
    masks each window so that tokens that wrapped around from the start (the
    last ``shift`` positions of the rolled sequence) and those from the end
    never attend to one another — Swin's three-slice labelling ``[0, -w)``,
    ``[-w, -shift)``, ``[-shift, end)``.

    Chosen here:

    * the official mask adds -100 to forbidden scores; this block uses a
      boolean mask (exactly -inf), so forbidden weights are exactly 0 rather
      than e^-100;
    * a length that is not a multiple of ``window`` is zero-padded at the end
      before the roll (Swin's detection code pads the same way) and padded keys
      are masked (Swin's are not); a padded query keeps itself as a key;
    * as Swin's block does when the feature map is no larger than a window, a
      sequence of at most ``window`` tokens is one window of N tokens with no shift;
    * ``window`` has no default here; :data:`TOKEN_MIXERS` uses 25 (250 and 125
      tokens are 10 and 5 whole windows; 1 s of a 10 s record at 250 tokens,
      about a beat) and ``shift = window // 2`` for ``shifted_window`` (Swin's
      ``window_size // 2``).

    The map is the block-diagonal of the window weights, rolled back so that its
    indices are the original token positions.
    """

    def __init__(self, dim: int, num_heads: int, window: int, shift: int = 0, relative_bias: bool = True,
                 qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__(dim, num_heads)
        if window < 1 or not 0 <= shift < window:
            raise ValueError(f"window attention needs window >= 1 and 0 <= shift < window, not {window}, {shift}")
        self.window, self.shift = window, shift
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        if relative_bias:
            self.relative_position_bias_table = nn.Parameter(torch.zeros(2 * window - 1, num_heads))
            nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        else:
            self.relative_position_bias_table = None

    def _mask(self, n: int, w: int, shift: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """Boolean ``(nW, 1, w, w)`` or float ``(nW, heads, w, w)`` mask of the windows over the rolled sequence."""
        total = -(-n // w) * w
        pos = torch.arange(total, device=device)
        allowed = None
        if shift or total != n:
            label = torch.zeros(total, dtype=torch.long, device=device)
            if shift:  # Swin's slices of the rolled sequence: [0, -w), [-w, -shift), [-shift, end)
                label[total - w:total - shift] = 1
                label[total - shift:] = 2
            valid = (pos + shift) % total < n  # rolled position p holds original token (p + shift) mod total
            label, valid = label.reshape(-1, w), valid.reshape(-1, w)
            eye = torch.eye(w, dtype=torch.bool, device=device)
            allowed = ((label[:, :, None] == label[:, None, :]) & valid[:, None, :]) | eye
            allowed = allowed[:, None]
        if self.relative_position_bias_table is None:
            return allowed
        bias = _relative_bias(self.relative_position_bias_table, w, self.window).to(dtype)[None]
        if allowed is None:
            return bias
        return bias.masked_fill(~allowed, float("-inf"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        w, shift = (self.window, self.shift) if n > self.window else (n, 0)
        xw = _pad_tokens(x, w)
        total = xw.shape[1]
        if shift:
            xw = torch.roll(xw, -shift, dims=1)
        nw = total // w
        h, d = self.num_heads, self.head_dim
        q, k, v = self.qkv(xw).reshape(b, nw, w, 3, h, d).permute(3, 0, 1, 4, 2, 5)  # (B, nW, heads, w, d)
        mask = _fold_mask(self._mask(n, w, shift, x.device, q.dtype), nw, h)
        out, weights = attend(self, _fold_windows(q), _fold_windows(k), _fold_windows(v), mask, dropout=self.attn_drop)
        out = out.reshape(b, nw, h, w, d).permute(0, 1, 3, 2, 4).reshape(b, total, c)
        if shift:
            out = torch.roll(out, shift, dims=1)
        if weights is not None:
            full = _block_diagonal(weights.reshape(b, nw, h, w, w))
            if shift:
                full = torch.roll(full, (shift, shift), dims=(-2, -1))
            self.attention_map = full[..., :n, :n]
        return self.proj_drop(self.proj(out[:, :n]))


# ---------------------------------------------------------------------------
# Convolutional token mixers and gates (no attention map)


class ConvModulation(nn.Module):
    """Convolutional modulation (Conv2Former's ``ConvMod``, Hou et al.): ``proj(dwconv_k(GELU(a(x))) ⊙ v(x))``.

    As the official ``ConvMod`` / ``SpatialAttention``: ``a`` = 1×1 conv → GELU
    → depthwise conv of kernel ``kernel`` (11 in every official model, padding
    k//2), ``v`` = 1×1 conv, their product through ``proj`` = 1×1 conv. Here on
    tokens: the 1×1 convs are ``nn.Linear`` on ``(B, N, C)`` (the same map,
    counted the same by thop) and the depthwise conv a Conv1d on ``(B, C, N)``.
    The official module begins with its own LayerNorm (eps 1e-6); here that is
    the pre-norm of :class:`TransformerBlock`, as for every mixer. Not an
    attention block: it has no attention map.
    """

    def __init__(self, dim: int, kernel: int = 11):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"ConvModulation needs an odd kernel, not {kernel}")
        self.a = nn.Linear(dim, dim)
        self.act = nn.GELU()
        self.a_conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = _channels_first(self.a_conv, self.act(self.a(x)))
        return self.proj(a * self.v(x))


class CoordAttention1d(nn.Module):
    """1D coordinate attention on ``(B, C, T)`` maps: a per-time gate and a channel gate.

    The official ``CoordAtt`` (Hou et al. 2021, as MVMS-ECG applies it to a
    (N, C, 1, T) map): mid = max(min_mid, C // reduction); the sequence
    [mean over time, x_1 … x_T] goes through one 1×1 conv (bias) + BN +
    h-swish; the first position gives the channel gate sigmoid(conv_h(·)), the
    other T positions the per-time gate sigmoid(conv_w(·)); out = x · gate_t ·
    gate_c. Conv2d 1×1 over (N, C, T+1, 1) is Conv1d 1×1 over (N, C, T+1), so this
    is the same function with the same parameters and the official names
    (conv1/bn1/conv_h/conv_w). Its 1×1 convs get kaiming-normal (fan_out, relu)
    weights, the MVMS init. Not a token mixer: it gates convolutional feature maps.
    """

    def __init__(self, channels: int, reduction: int = 16, min_mid: int = 8):
        super().__init__()
        mid = max(min_mid, channels // reduction)
        self.conv1 = nn.Conv1d(channels, mid, kernel_size=1)
        self.bn1 = nn.BatchNorm1d(mid)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv1d(mid, channels, kernel_size=1)  # channel gate (from the time-average)
        self.conv_w = nn.Conv1d(mid, channels, kernel_size=1)  # per-time gate
        for conv in (self.conv1, self.conv_h, self.conv_w):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[-1]
        y = torch.cat([x.mean(dim=-1, keepdim=True), x], dim=-1)
        y = self.act(self.bn1(self.conv1(y)))
        y_c, y_t = torch.split(y, [1, t], dim=-1)
        gate_c = torch.sigmoid(self.conv_h(y_c))
        gate_t = torch.sigmoid(self.conv_w(y_t))
        return x * gate_t * gate_c


# ---------------------------------------------------------------------------
# Position encodings


class DwConvPosition(nn.Module):
    """Conditional position encoding on tokens: ``x + dwconv_k(x)`` (CPVT's PEG; BiFormer's ``before_attn_dwconv``).

    A depthwise Conv1d (bias, padding k//2) over the token axis; works for any N.
    """

    def __init__(self, dim: int, kernel: int = 3):
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"DwConvPosition needs an odd kernel, not {kernel}")
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + _channels_first(self.conv, x)


def sinusoid(n: int, d: int, device, dtype) -> torch.Tensor:
    """Fixed sinusoidal positions ``(n, d)`` (Vaswani et al. 2017)."""
    pos = torch.arange(n, device=device, dtype=torch.float32).unsqueeze(1)
    div = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d, device=device)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: d // 2])
    return pe.to(dtype)


class LearnedPosition(nn.Module):
    """Learned absolute position embedding (ViT), added once: ``x + pos``, ``pos (1, num_tokens, dim)``.

    Trunc-normal std .02 init (ViT/PVT). When N differs from ``num_tokens`` the
    table is resized by linear interpolation along the tokens (PVT resizes its
    table bilinearly in 2D) — chosen so a model trained at 250 tokens runs at 125.
    """

    def __init__(self, num_tokens: int, dim: int):
        super().__init__()
        self.num_tokens = num_tokens
        self.pos = nn.Parameter(torch.zeros(1, num_tokens, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        pos = self.pos
        if n != self.num_tokens:
            pos = F.interpolate(pos.transpose(1, 2), size=n, mode="linear", align_corners=False).transpose(1, 2)
        return x + pos.to(x.dtype)


# ---------------------------------------------------------------------------
# Mixers by name (JSON-serialisable model configs)


def _mhsa(dim: int, num_heads: int, **kw) -> nn.Module:
    return MultiHeadSelfAttention(dim, num_heads, **kw)


def _sra(dim: int, num_heads: int, **kw) -> nn.Module:
    return SpatialReductionAttention(dim, num_heads, **kw)


def _shunted(dim: int, num_heads: int, **kw) -> nn.Module:
    return ShuntedSelfAttention(dim, num_heads, **kw)


def _hilo(dim: int, num_heads: int, **kw) -> nn.Module:
    return HiLoAttention(dim, num_heads, **kw)


def _bra(dim: int, num_heads: int, **kw) -> nn.Module:
    return BiLevelRoutingAttention(dim, num_heads, **kw)


def _window(dim: int, num_heads: int, window: int = 25, **kw) -> nn.Module:
    return WindowAttention(dim, num_heads, window, **kw)


def _shifted_window(dim: int, num_heads: int, window: int = 25, shift: int | None = None, **kw) -> nn.Module:
    return WindowAttention(dim, num_heads, window, shift=window // 2 if shift is None else shift, **kw)


def _convmod(dim: int, num_heads: int | None = None, **kw) -> nn.Module:
    return ConvModulation(dim, **kw)  # no heads: a convolution


#: Token mixers by short name: ``TOKEN_MIXERS[name](dim, num_heads, **kwargs)`` → a ``(B, N, C) → (B, N, C)`` module.
TOKEN_MIXERS: dict[str, Callable[..., nn.Module]] = {
    "mhsa": _mhsa,
    "sra": _sra,
    "shunted": _shunted,
    "hilo": _hilo,
    "bra": _bra,
    "window": _window,
    "shifted_window": _shifted_window,
    "convmod": _convmod,
}


def token_mixer(name: str, dim: int, num_heads: int, **kwargs) -> nn.Module:
    """The mixer called ``name`` in :data:`TOKEN_MIXERS`; an unknown name is refused with the list of known ones."""
    if name not in TOKEN_MIXERS:
        raise ValueError(f"unknown token mixer {name!r}; known: {', '.join(TOKEN_MIXERS)}")
    return TOKEN_MIXERS[name](dim, num_heads, **kwargs)


# ---------------------------------------------------------------------------
# The transformer block


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
