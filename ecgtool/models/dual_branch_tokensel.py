"""Token-selection multi-scale dual-branch CNN-transformer for 12-lead ECG classification.

Paper: S. Zhang, C. Lian, B. Xu, J. Zang, Z. Zeng, "A token selection-based multi-scale
dual-branch CNN-transformer network for 12-lead ECG signal classification", Knowledge-Based
Systems (2023) 111006, doi:10.1016/j.knosys.2023.111006. No official code; this file follows the
paper's description (../shared/MODELS.md, the abstract, and the notebook's reading of its
figures) and designs the rest. An unofficial, incomplete re-implementation (hhhey-lw/db_ecgnet
``models/share/msdb_net.py``, token selection commented out) was read for orientation only;
its numbers are not the paper's and are not copied.

What follows the paper:

* learnable CNN blocks first (the notebook's figure: parallel convolutions whose outputs meet an
  element-wise addition);
* a multi-scale embedding layer: Conv1d patch embeddings of two patch sizes, one per branch, so
  the two transformer branches see tokens of different sizes;
* each branch is a transformer encoder with its own CLS token;
* token selection: after part of a branch's layers, only the tokens the CLS token attends to most
  are kept ("discarding low-importance patches and focusing on high-importance patches");
* the "RR" loss on the correlation coefficient of the two branches' CLS outputs keeps the
  branches aligned; the classifier reads the two CLS tokens.

What was designed here (all configurable; small defaults that keep 12×1000 CPU-fast):

* CNN blocks: InceptionTime-style (as this repository's ``inception1d``): a 1×1 bottleneck to
  16 channels, parallel convolutions with kernels 39/19/9 and a max-pool(3) → 1×1 branch,
  concatenated and batch-normalised, plus a 1×1 conv + BN shortcut, summed, ReLU; two blocks of
  ``cnn_widths=(64, 64)`` channels at full time resolution;
* patches: ``patch_sizes=(10, 40)`` samples (0.1 s ≈ a QRS complex and 0.4 s ≈ a beat at
  100 Hz), non-overlapping (kernel = stride = patch), the record zero-padded on the right to a
  whole number of patches; width ``dim=64``; learned position embeddings (ViT; N(0, 0.02)
  truncated, interpolated linearly for another record length) and CLS tokens;
* each branch: ``depths=(4, 4)`` pre-norm transformer blocks (the shared
  ``attention.TransformerBlock`` with multi-head self-attention, 4 heads, MLP ratio 2, GELU, no
  layer scale, dropout 0.1), a final LayerNorm; the CLS output is the branch's feature;
* token selection: once, after ``select_after=2`` blocks, by the head-averaged attention of the
  CLS query in the last block before it; the top ``keep_ratio=0.5`` of the patch tokens are kept
  (at least one), in their original order, the rest dropped (EViT-style without fusing them);
* the RR loss: ``1 − r`` with r Pearson's correlation between the two CLS feature vectors of a
  record (over the features), averaged over the batch, weighted by ``rr_weight=0.1`` (the
  paper's weight is not available to us; 0.1 keeps it below the classification loss at the
  start; 0 switches it off). It reaches training through ``auxiliary_losses()`` (models/layers.py);
* the classifier: Linear on the concatenated CLS features (after Dropout 0.1).

Explain: ``attention`` reports, per branch, every head of every layer in the full token space
(layers after the selection map the kept tokens back to their places; a dropped token's row is
the identity, its column 0), the rollout (Abnar & Zuidema 2020) and the CLS row of it as each
patch's relevance — the model classifies from the CLS tokens, not from mean-pooled tokens
(``SelfAttention.cls_index``). The kept tokens' indices are stored. Grad-CAM's default layer is
the CNN blocks' output; inside the branches the token count changes, so Grad-CAM refuses those
layers (``--layer branches.0.embed`` works: one value per patch). thop counts Linears and
convolutions, not the attention matrix products.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ecgtool.errors import EcgtoolError

from ecgtool.models.attention import MultiHeadSelfAttention, TransformerBlock, attend, recording
from ecgtool.models.explainable import Attention, SelfAttention, Spans
from ecgtool.models.layers import EcgClassifier
from ecgtool.models.registry import register_model

__all__ = ["DualBranchTokenSelect", "dual_branch_tokensel", "rr_loss"]

_PAPER = ("Zhang et al., A token selection-based multi-scale dual-branch CNN-transformer network for 12-lead ECG "
          "signal classification. Knowledge-Based Systems (2023) 111006")
_SOURCE = "no official code; designed from the paper's description (see the module docstring)"


class InceptionCNNBlock(nn.Module):
    """Parallel convolutions (1×1 bottleneck → kernels) + max-pool → 1×1, concatenated, BN; + 1×1 shortcut; ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernels: Sequence[int] = (39, 19, 9), bottleneck: int = 16):
        super().__init__()
        branches = len(kernels) + 1
        if out_channels % branches:
            raise ValueError(f"out_channels {out_channels} must be a multiple of {branches} (the parallel branches)")
        width = out_channels // branches
        self.bottleneck = nn.Conv1d(in_channels, bottleneck, 1, bias=False)
        self.convs = nn.ModuleList(nn.Conv1d(bottleneck, width, k, padding=k // 2, bias=False) for k in kernels)
        self.pool = nn.MaxPool1d(3, stride=1, padding=1)
        self.pool_conv = nn.Conv1d(in_channels, width, 1, bias=False)
        self.bn = nn.BatchNorm1d(out_channels)
        self.shortcut = nn.Sequential(nn.Conv1d(in_channels, out_channels, 1, bias=False), nn.BatchNorm1d(out_channels))
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bottleneck(x)
        out = torch.cat([conv(z) for conv in self.convs] + [self.pool_conv(self.pool(x))], dim=1)
        return self.act(self.bn(out) + self.shortcut(x))


class ClsAttention(MultiHeadSelfAttention):
    """Multi-head self-attention that also keeps its CLS query's weights ``cls_weights (B, heads, N)`` (token 0),
    which token selection reads; only ``q_cls kᵀ`` is computed for them."""

    cls_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out, weights = attend(self, q, k, v, dropout=self.attn_drop)
        if weights is not None:
            self.attention_map = weights
        self.cls_weights = torch.softmax((q[:, :, :1] @ k.transpose(-2, -1)) / math.sqrt(self.head_dim), dim=-1).squeeze(2)
        return self.proj_drop(self.proj(self.merge(out)))


class TokenSelectBranch(nn.Module):
    """Patch embedding (kernel = stride = ``patch``) → CLS + positions → blocks, with token selection
    after ``select_after`` blocks → LayerNorm; returns the CLS output ``(B, dim)``."""

    def __init__(self, in_channels: int, dim: int, patch: int, num_samples: int, depth: int, num_heads: int,
                 mlp_ratio: float, keep_ratio: float, select_after: int, dropout: float):
        super().__init__()
        if not 0.0 < keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1], not {keep_ratio}")
        self.patch, self.keep_ratio = patch, keep_ratio
        self.select_after = select_after if 0 < select_after < depth and keep_ratio < 1.0 else 0
        self.embed = nn.Conv1d(in_channels, dim, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, 1 + self.tokens(num_samples), dim))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, (ClsAttention if i + 1 == self.select_after else MultiHeadSelfAttention)(
                dim, num_heads, proj_drop=dropout), mlp_ratio, layer_scale=None, drop=dropout)
            for i in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.kept_index: torch.Tensor | None = None  # the selected tokens of the last recorded pass (B, k)

    def tokens(self, samples: int) -> int:
        return -(-samples // self.patch)

    def positions(self, n: int) -> torch.Tensor:
        """The position embeddings for ``n`` patch tokens (CLS first), interpolated when ``n`` differs from the table."""
        if n + 1 == self.pos.shape[1]:
            return self.pos
        table = F.interpolate(self.pos[:, 1:].transpose(1, 2), size=n, mode="linear", align_corners=False)
        return torch.cat([self.pos[:, :1], table.transpose(1, 2)], dim=1)

    def select(self, x: torch.Tensor, cls_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the CLS token and the ``keep_ratio`` patch tokens with the largest head-mean CLS attention."""
        score = cls_weights.detach().mean(dim=1)[:, 1:]  # (B, N), the CLS's own weight left out
        k = max(1, round(self.keep_ratio * int(score.shape[1])))  # int(): a traced shape is a tensor, which round() refuses
        index = score.topk(k, dim=1).indices.sort(dim=1).values
        kept = x[:, 1:].gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return torch.cat([x[:, :1], kept], dim=1), index

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        pad = self.tokens(f.shape[-1]) * self.patch - f.shape[-1]
        tokens = self.embed(F.pad(f, (0, pad))).transpose(1, 2)  # (B, N, dim)
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.positions(tokens.shape[1])
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i + 1 == self.select_after:
                x, index = self.select(x, block.mixer.cls_weights)
                block.mixer.cls_weights = None
                if block.mixer.record_attention:
                    self.kept_index = index
        return self.norm(x[:, 0])


def rr_loss(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``mean(1 − r)`` over the batch, r Pearson's correlation of each record's two feature vectors ``(B, D)``."""
    a = a - a.mean(dim=-1, keepdim=True)
    b = b - b.mean(dim=-1, keepdim=True)
    r = (a * b).sum(dim=-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(eps)
    return (1.0 - r).mean()


class DualBranchTokenSelect(EcgClassifier):
    """Children in forward order: ``cnn``, ``branches`` (fine, coarse patches), ``head``."""

    def __init__(self, num_classes: int, num_leads: int = 12, num_samples: int = 1000,
                 cnn_widths: Sequence[int] = (64, 64), cnn_kernels: Sequence[int] = (39, 19, 9), bottleneck: int = 16,
                 patch_sizes: Sequence[int] = (10, 40), dim: int = 64, depths: Sequence[int] = (4, 4), num_heads: int = 4,
                 mlp_ratio: float = 2.0, keep_ratio: float = 0.5, select_after: int = 2, dropout: float = 0.1,
                 rr_weight: float = 0.1):
        super().__init__()
        if len(patch_sizes) != 2 or len(depths) != 2:
            raise ValueError("the network has two branches: give two patch_sizes and two depths")
        self.num_classes, self.num_leads, self.num_samples = num_classes, num_leads, num_samples
        self.rr_weight = rr_weight
        blocks, c = [], num_leads
        for w in cnn_widths:
            blocks.append(InceptionCNNBlock(c, w, cnn_kernels, bottleneck))
            c = w
        self.cnn = nn.Sequential(*blocks)
        self.branches = nn.ModuleList(
            TokenSelectBranch(c, dim, p, num_samples, d, num_heads, mlp_ratio, keep_ratio, select_after, dropout)
            for p, d in zip(patch_sizes, depths))
        self.num_features = 2 * dim
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))
        self.stages = ["cnn", "branches", "head"]
        self.default_cam_layer = "cnn"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.cnn(x)
        cls = [branch(f) for branch in self.branches]
        self._auxiliary = {"rr": self.rr_weight * rr_loss(*cls)} if self.training and self.rr_weight else {}
        return torch.cat(cls, dim=1)

    # -- what explain needs (models/explainable.py) --------------------------------------------
    def patch_spans(self, branch: int, samples: int) -> Spans:
        b = self.branches[branch]
        return Spans(np.arange(b.tokens(samples)) * b.patch, b.patch)

    def positions(self, layer_name, layer, x, shape):
        parts = layer_name.split(".")
        if parts[0] != "branches" or len(parts) < 3:
            return None
        if parts[2] == "embed":
            return self.patch_spans(int(parts[1]), x.shape[-1])
        raise EcgtoolError(f"layer {layer_name!r} holds a CLS token and a selected subset of the patches, which Grad-CAM "
                           f"cannot place on the record; use {self.default_cam_layer!r} or 'branches.{parts[1]}.embed'")

    def attention(self, x):
        """Per branch: every head of every layer in the full token space, rolled out from the CLS token."""
        with torch.no_grad(), recording(self):
            self(x)
        groups, arrays, branches = [], {}, []
        for i, branch in enumerate(self.branches):
            n = branch.tokens(x.shape[-1]) + 1
            layers = []
            for j, block in enumerate(branch.blocks):
                a = block.mixer.attention_map
                if j >= branch.select_after > 0:
                    a = _in_full_space(a, branch.kept_index, n)
                layers.append(a)
            groups.append(SelfAttention(layers, self.patch_spans(i, x.shape[-1]), name=f"branch{i}", cls_index=0))
            arrays[f"attention_branch{i}"] = torch.stack(layers, dim=1).cpu().numpy()  # (B, layers, heads, n, n)
            if branch.select_after:
                arrays[f"kept_branch{i}"] = branch.kept_index.cpu().numpy()  # patch indices kept, (B, k)
            branches.append({"patch": branch.patch, "tokens": n - 1, "layers": len(layers),
                             "heads": int(layers[0].shape[1]), "select_after": branch.select_after,
                             "kept": None if not branch.select_after else int(branch.kept_index.shape[1])})
        info = {"attention": "multi-head self-attention per branch (CLS token first), tokens after the selection "
                             "mapped back to their places; relevance = the CLS row of the rollout",
                "branches": branches}
        return Attention(groups, arrays, info)


def _in_full_space(a: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Weights over [CLS, kept tokens] ``(B, H, k+1, k+1)`` → over all ``n`` tokens: dropped tokens' rows are the
    identity (they no longer change) and their columns 0 (nobody attends to them)."""
    b, h, m, _ = a.shape
    where = torch.cat([index.new_zeros(b, 1), index + 1], dim=1)  # (B, k+1) token positions, CLS at 0
    full = torch.eye(n, dtype=a.dtype, device=a.device).repeat(b, h, 1, 1)
    rows = where.view(b, 1, m, 1).expand(b, h, m, n)
    placed = torch.zeros(b, h, m, n, dtype=a.dtype, device=a.device).scatter(3, where.view(b, 1, 1, m).expand(b, h, m, m), a)
    return full.scatter(2, rows, placed)


@register_model(default_cfg=dict(
    family="dual_branch_tokensel", paper=_PAPER, source=_SOURCE,
    input_view={"name": "raw", "in_model": "patches of 10 and 40 samples (one size per branch) of the CNN features"},
))
def dual_branch_tokensel(num_classes: int, num_leads: int = 12, num_samples: int = 1000, **kwargs):
    """Token-selection multi-scale dual-branch CNN-transformer (KBS 2023): two patch sizes, CLS token selection, RR loss."""
    return DualBranchTokenSelect(num_classes, num_leads, num_samples, **kwargs)
