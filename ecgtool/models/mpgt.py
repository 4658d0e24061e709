"""Multi-scale Progressive Gated Transformer (MPGT) for physiological signal classification.

Paper: "Multi-scale Progressive Gated Transformer for Physiological Signal Classification",
Asian Conference on Machine Learning (ACML) 2022, PMLR. No official code; this file follows
the paper's description (../shared/MODELS.md, its abstract, and the notebook's reading of its
figure) and designs the rest.

What follows the paper:

* Multi-scale Temporal Feature extraction (MTF): a fine-grained and a coarse-grained feature
  extractor project the signal into embedding spaces of different temporal granularity, each
  Conv → MaxPool → Conv → AvgPool;
* the Progressive Gated Transformer (PGT): stacked blocks of MHSA → FFN → TCN → FFN; in two steps
  (the notebook: "fine-grained captures local waveform changes, then coarse-grained captures the
  global trend"), the fine branch first, then the coarse branch, which receives the fine branch's
  output through the gate ``x1 ⊗ σ(tanh(FC(x1))) + x2`` (x1 the fine features, x2 the coarse ones);
* classification from the learned representation.

What was designed here (the paper's numbers are not available to us; all configurable, small
defaults that keep 12×1000 CPU-fast):

* extractors: fine Conv1d(k=7) → BN → ReLU → MaxPool(2) → Conv1d(k=5) → BN → ReLU → AvgPool(4)
  (a token per 8 samples, 80 ms at 100 Hz); coarse the same with kernels 15 and 9 and pools
  4 and 8 (a token per 32 samples, 320 ms); width ``dim=64``; pools with ``ceil_mode`` so the end
  of the record is not dropped. The paper's signals are univariate; the leads are the input
  channels of the first convolutions;
* fixed sinusoidal positions (Vaswani et al. 2017) added to each branch's tokens (the token count
  follows the record length);
* a block: pre-norm residual sub-layers ``x + MHSA(LN x)``, ``x + FFN(LN x)``, ``x + TCN(LN x)``,
  ``x + FFN(LN x)`` (the shared ``attention.MultiHeadSelfAttention`` and ``Mlp``, 4 heads, FFN ratio
  2, GELU); TCN as Bai et al. 2018 ("An Empirical Evaluation of Generic Convolutional and
  Recurrent Networks for Sequence Modeling"): two causal dilated convolutions (kernel 3, dilation
  2^i in block i) with ReLU and dropout, without weight normalisation (the LayerNorm before it
  takes that role); dropout 0.1; ``depths=(2, 2)`` blocks per branch;
* the gate's x1 is the fine output average-pooled to the coarse token count (adaptive average
  pooling: 4 fine tokens per coarse token by default); FC is Linear(dim → dim);
* the coarse branch's output → LayerNorm → mean over tokens → Dropout(0.1) + Linear.

Explain: ``attention`` reports every head of every MHSA layer per branch and the rollout
(Abnar & Zuidema 2020) per branch, each placed on its own tokens' spans; the coarse tokens are
mean-pooled, and the fine tokens reach them through average pooling and the gate, so the fine
branch's map is the rollout of the fine attention alone, as if its tokens were mean-pooled.
Grad-CAM's default layer is the last coarse block (one value per coarse token). thop counts
Linears and convolutions, not the attention matrix products.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ecgtool.models.attention import Mlp, MultiHeadSelfAttention, recording, sinusoid
from ecgtool.models.explainable import Attention, SelfAttention, Spans
from ecgtool.models.layers import EcgClassifier
from ecgtool.models.registry import register_model

__all__ = ["MPGT", "mpgt"]

_PAPER = "Multi-scale Progressive Gated Transformer for Physiological Signal Classification. ACML 2022 (PMLR)"
_SOURCE = "no official code; designed from the paper's description (see the module docstring)"


class ConvEmbedding(nn.Sequential):
    """Conv → BN → ReLU → MaxPool → Conv → BN → ReLU → AvgPool: ``(B, L, T)`` → ``(B, dim, ⌈⌈T / p1⌉ / p2⌉)``."""

    def __init__(self, in_channels: int, dim: int, kernels: Sequence[int], pools: Sequence[int]):
        (k1, k2), (p1, p2) = kernels, pools
        super().__init__(
            nn.Conv1d(in_channels, dim, k1, padding=k1 // 2, bias=False), nn.BatchNorm1d(dim), nn.ReLU(),
            nn.MaxPool1d(p1, ceil_mode=True),
            nn.Conv1d(dim, dim, k2, padding=k2 // 2, bias=False), nn.BatchNorm1d(dim), nn.ReLU(),
            nn.AvgPool1d(p2, ceil_mode=True),
        )
        self.pools = (p1, p2)

    @property
    def stride(self) -> int:
        return self.pools[0] * self.pools[1]

    def tokens(self, samples: int) -> int:
        return -(-(-(-samples // self.pools[0])) // self.pools[1])


class TemporalConv(nn.Module):
    """TCN residual branch (Bai et al. 2018) on ``(B, N, C)``: two causal dilated convolutions, each ReLU + dropout."""

    def __init__(self, dim: int, kernel_size: int = 3, dilation: int = 1, dropout: float = 0.1):
        super().__init__()
        self.left = (kernel_size - 1) * dilation  # causal: pad the past only
        self.conv1 = nn.Conv1d(dim, dim, kernel_size, dilation=dilation)
        self.conv2 = nn.Conv1d(dim, dim, kernel_size, dilation=dilation)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(self.act(self.conv1(F.pad(x.transpose(1, 2), (self.left, 0)))))
        y = self.drop(self.act(self.conv2(F.pad(y, (self.left, 0)))))
        return y.transpose(1, 2)


class MPGTBlock(nn.Module):
    """``x + MHSA(LN x)`` → ``x + FFN(LN x)`` → ``x + TCN(LN x)`` → ``x + FFN(LN x)``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, num_heads, proj_drop=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn1 = Mlp(dim, mlp_ratio, dropout)
        self.norm3 = nn.LayerNorm(dim)
        self.tcn = TemporalConv(dim, kernel_size, dilation, dropout)
        self.norm4 = nn.LayerNorm(dim)
        self.ffn2 = Mlp(dim, mlp_ratio, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.ffn1(self.norm2(x))
        x = x + self.tcn(self.norm3(x))
        return x + self.ffn2(self.norm4(x))


class GatedFusion(nn.Module):
    """``x1 ⊗ σ(tanh(FC(x1))) + x2``, x1 (fine tokens) first average-pooled to x2's (coarse) token count."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, dim)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        x1 = F.adaptive_avg_pool1d(x1.transpose(1, 2), x2.shape[1]).transpose(1, 2)
        return x1 * torch.sigmoid(torch.tanh(self.fc(x1))) + x2


class MPGT(EcgClassifier):
    """Children in forward order: ``embed_fine``, ``fine_blocks``, ``embed_coarse``, ``fusion``, ``coarse_blocks``,
    ``norm``, ``head``."""

    def __init__(self, num_classes: int, num_leads: int = 12, num_samples: int = 1000, dim: int = 64,
                 fine_kernels: Sequence[int] = (7, 5), fine_pools: Sequence[int] = (2, 4),
                 coarse_kernels: Sequence[int] = (15, 9), coarse_pools: Sequence[int] = (4, 8),
                 depths: Sequence[int] = (2, 2), num_heads: int = 4, mlp_ratio: float = 2.0, tcn_kernel: int = 3,
                 dropout: float = 0.1):
        super().__init__()
        self.num_classes, self.num_leads, self.num_samples = num_classes, num_leads, num_samples
        self.embed_fine = ConvEmbedding(num_leads, dim, fine_kernels, fine_pools)
        self.fine_blocks = nn.ModuleList(MPGTBlock(dim, num_heads, mlp_ratio, tcn_kernel, 2 ** i, dropout)
                                         for i in range(depths[0]))
        self.embed_coarse = ConvEmbedding(num_leads, dim, coarse_kernels, coarse_pools)
        self.fusion = GatedFusion(dim)
        self.coarse_blocks = nn.ModuleList(MPGTBlock(dim, num_heads, mlp_ratio, tcn_kernel, 2 ** i, dropout)
                                           for i in range(depths[1]))
        self.norm = nn.LayerNorm(dim)
        self.num_features = dim
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, num_classes))
        self.stages = [name for name, _ in self.named_children()]
        self.default_cam_layer = f"coarse_blocks.{depths[1] - 1}" if depths[1] else "fusion"

    @staticmethod
    def _tokens(embed: ConvEmbedding, x: torch.Tensor) -> torch.Tensor:
        t = embed(x).transpose(1, 2)  # (B, N, dim)
        return t + sinusoid(t.shape[1], t.shape[2], t.device, t.dtype)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        fine = self._tokens(self.embed_fine, x)
        for block in self.fine_blocks:
            fine = block(fine)
        coarse = self.fusion(fine, self._tokens(self.embed_coarse, x))
        for block in self.coarse_blocks:
            coarse = block(coarse)
        return self.norm(coarse).mean(dim=1)

    # -- what explain needs (models/explainable.py) --------------------------------------------
    def token_spans(self, branch: str, samples: int, channels_last: bool = True) -> Spans:
        embed = self.embed_fine if branch == "fine" else self.embed_coarse
        return Spans(np.arange(embed.tokens(samples)) * embed.stride, embed.stride, channels_last=channels_last)

    def positions(self, layer_name, layer, x, shape):
        """Token maps: ``(B, dim, N)`` out of an embedding, ``(B, N, dim)`` in the blocks and the fusion
        (``(B, dim, N)`` inside a TCN: its convolutions); the layers inside an embedding are even in time."""
        top = layer_name.split(".")[0]
        if top in ("embed_fine", "embed_coarse"):
            return self.token_spans(top[6:], x.shape[-1], channels_last=False) if layer_name == top else None
        if top in ("fine_blocks", "coarse_blocks", "fusion"):
            branch = "fine" if top == "fine_blocks" else "coarse"
            return self.token_spans(branch, x.shape[-1], channels_last=".tcn." not in layer_name)
        return None

    def attention(self, x):
        """Every head of every MHSA layer per branch, each branch's tokens on their own spans."""
        with torch.no_grad(), recording(self):
            self(x)
        groups, arrays, branches = [], {}, []
        for branch, blocks in (("fine", self.fine_blocks), ("coarse", self.coarse_blocks)):
            if not len(blocks):
                continue
            layers = [block.attn.attention_map for block in blocks]
            spans = self.token_spans(branch, x.shape[-1])
            if layers[0].shape[-1] != len(spans.starts):
                raise RuntimeError(f"mpgt {branch} tokens: {layers[0].shape[-1]} attended, {len(spans.starts)} placed")
            groups.append(SelfAttention(layers, spans, name=branch))
            arrays[f"attention_{branch}"] = torch.stack(layers, dim=1).cpu().numpy()  # (B, layers, heads, n, n)
            branches.append({"branch": branch, "token_samples": spans.width, "tokens": len(spans.starts),
                             "layers": len(layers), "heads": int(layers[0].shape[1])})
        info = {"attention": "multi-head self-attention of the fine and the coarse branch, rollout per branch "
                             "(tokens mean-pooled)", "branches": branches}
        return Attention(groups, arrays, info)


@register_model(default_cfg=dict(
    family="mpgt", paper=_PAPER, source=_SOURCE,
    input_view={"name": "raw", "in_model": "fine (8-sample) and coarse (32-sample) conv token embeddings"},
))
def mpgt(num_classes: int, num_leads: int = 12, num_samples: int = 1000, **kwargs):
    """Multi-scale progressive gated transformer (ACML 2022): fine then coarse MHSA-FFN-TCN-FFN branches, gated fusion."""
    return MPGT(num_classes, num_leads, num_samples, **kwargs)
