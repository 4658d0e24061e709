"""Lightweight (Fussing) Transformer: heartbeat tokens with SE channel attention, LightConv attention between beats.

Paper: L. Meng, W. Tan, J. Ma, R. Wang, X. Yin, Y. Zhang, "Enhancing dynamic ECG heartbeat
classification with lightweight transformer model", Artificial Intelligence in Medicine 124
(2022) 102236, doi:10.1016/j.artmed.2022.102236 (the "Lightweight Fussing Transformer"). No
official code; this file follows the paper's description (../shared/MODELS.md and its
abstract) and designs the rest. Its attention is LightConv (Wu et al., "Pay Less Attention with
Lightweight and Dynamic Convolutions", ICLR 2019), ``models/attention.py`` ``LightConv``,
re-implemented from fairseq's ``lightweight_convolution.py`` / ``LightConvEncoderLayer``.

What follows the paper:

* the input is heartbeats cut around the R peaks;
* a CNN embeds each beat, with squeeze-and-excitation channel attention (the "local" attention);
* LightConv attention replaces self-attention in the transformer encoder (the "global"
  attention): Linear → GLU → depthwise convolution whose kernel is softmax-normalised and
  shared across the channels of a head → Linear;
* for a record-level task the sequence of beats is classified (MODELS.md).

What follows fairseq's LightConv encoder layer (the paper builds on it): GLU on, softmax-
normalised kernels, weight (DropConnect) dropout 0.1, kernel sizes growing with depth as
fairseq's ``[3, 7, 15, 31, ...]`` (here the first two, ``kernel_sizes=(3, 7)``: 20 beats is a
short sequence), heads 4 (fairseq's IWSLT setting), a ReLU feed-forward of ``ffn_ratio`` × the
width, dropout 0.1 on both residual branches, and the padding mask (empty beat slots are zeroed
before the convolution). Pre-norm (fairseq's ``--encoder-normalize-before``, off by default
there) with a final LayerNorm: chosen for stable training from scratch on small ECG sets.

What was designed here (the paper is silent or its details are not available to us; all
configurable, small defaults):

* the beats: input view ``rpeaks`` (``ecgtool.data.views``, wfdb's XQRS detector, the same
  pipeline as ``mamil``), windows of [−0.25 s, +0.4 s] around the first ``n_beats=20`` marked
  peaks (``models.layers.BeatWindows``; empty slots when a record has fewer beats are padding
  tokens, masked everywhere). Without the mark channel (a raw ``(B, leads, samples)`` input, e.g.
  for profiling) beats are taken on a regular 0.8-s grid, so the model still runs; ``train``,
  ``eval`` and ``explain`` always supply the marks;
* the beat CNN: Conv1d(k=7) → BN → ReLU → SE, max-pool 2, Conv1d(k=5) → BN → ReLU → SE
  (``widths=(32, 64)``, SE reduction 8, the shared ``SqueezeExcite``), global average pool,
  Linear to ``dim=64``: one token per beat;
* rhythm: beat tokens lose the time between beats, so each token also gets a Linear projection
  of its RR intervals — previous and next RR in seconds and relative to the record's mean RR
  (``rr_features=True``). The model this one lightens ("Fussing"/Fusing Transformer) fuses such
  temporal features with the beat embedding; the exact features here are our choice;
* no positional encoding: the convolution is position-aware and the RR features carry the timing;
* depth 2 (one layer per kernel size); classification from the mean of the real beat tokens
  after the final LayerNorm, Dropout(0.1) + Linear.

Explain: ``attention`` reports each LightConv layer's map over the beats (the band matrix of its
normalised kernels; padding beats' columns 0) and their rollout over the beats the model pools,
placed on the beats' windows. The kernels do not depend on the input (the GLU gates values, not
weights), so the map shows how the beats are mixed into the pooled representation, not which
beat the content made important; Grad-CAM on the beat CNN (``default_cam_layer``) or integrated
gradients show that. thop counts the Linears and convolutions, not the LightConv products
(N·C·K per layer, ~3k MACs here).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ecgtool.models.attention import LightConv, recording
from ecgtool.models.explainable import Attention, Instances, SelfAttention, Spans
from ecgtool.models.layers import BeatWindows, EcgClassifier, SqueezeExcite, split_rpeak_marks
from ecgtool.models.registry import register_model

__all__ = ["LightTransformer", "light_transformer"]

_PAPER = ("Meng et al., Enhancing dynamic ECG heartbeat classification with lightweight transformer model. "
          "Artificial Intelligence in Medicine 124 (2022) 102236; LightConv: Wu et al., ICLR 2019")
_SOURCE = ("no official code; designed from the paper's description (see the module docstring); LightConv from "
           "facebookresearch/fairseq fairseq/modules/lightweight_convolution.py and fairseq/models/lightconv.py")


class SEBeatEncoder(nn.Module):
    """Beats ``(B, K, L, W)`` → tokens ``(B, K, dim)``: conv-BN-ReLU-SE blocks (max-pool between), mean, Linear."""

    def __init__(self, leads: int, dim: int, widths: Sequence[int] = (32, 64), kernels: Sequence[int] = (7, 5),
                 se_ratio: int = 8):
        super().__init__()
        layers: list[nn.Module] = []
        c = leads
        for i, (w, k) in enumerate(zip(widths, kernels)):
            if i:
                layers.append(nn.MaxPool1d(2))
            layers += [nn.Conv1d(c, w, k, padding=k // 2, bias=False), nn.BatchNorm1d(w), nn.ReLU(), SqueezeExcite(w, se_ratio)]
            c = w
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(c, dim)

    def forward(self, beats: torch.Tensor) -> torch.Tensor:
        b, k = beats.shape[:2]
        return self.proj(self.features(beats.flatten(0, 1)).mean(dim=-1)).view(b, k, -1)


class RRFeatures(nn.Module):
    """Per beat: previous and next RR interval in seconds and relative to the record's mean RR → Linear(4 → dim)."""

    def __init__(self, dim: int, fs: float, default_rr: float = 0.8):
        super().__init__()
        self.fs, self.default_rr = fs, default_rr
        self.proj = nn.Linear(4, dim)

    def intervals(self, peaks: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` peak samples (−1: no beat) → ``(B, K, 4)`` features, 0 for empty slots."""
        real = peaks >= 0
        p = peaks.to(torch.float32) / self.fs
        gap = p[:, 1:] - p[:, :-1]
        pair = real[:, 1:] & real[:, :-1]
        count = pair.sum(dim=1, keepdim=True)
        mean = torch.where(count > 0, (gap * pair).sum(dim=1, keepdim=True) / count.clamp_min(1),
                           torch.full_like(count, self.default_rr, dtype=p.dtype))
        nothing = torch.zeros_like(p[:, :1], dtype=torch.bool)
        pre_ok, post_ok = torch.cat([nothing, pair], dim=1), torch.cat([pair, nothing], dim=1)
        zero = torch.zeros_like(p[:, :1])
        pre, post = torch.cat([zero, gap], dim=1), torch.cat([gap, zero], dim=1)
        pre = torch.where(pre_ok, pre, torch.where(post_ok, post, mean))  # the first beat: its next RR, a lone beat: the mean
        post = torch.where(post_ok, post, torch.where(pre_ok, pre, mean))
        feats = torch.stack([pre, post, pre / mean - 1.0, post / mean - 1.0], dim=-1)
        return feats * real.unsqueeze(-1)

    def forward(self, peaks: torch.Tensor) -> torch.Tensor:
        return self.proj(self.intervals(peaks))


class LightConvLayer(nn.Module):
    """fairseq's ``LightConvEncoderLayer`` (pre-norm): ``x + drop(LightConv(LN x))``, ``x + drop(fc2 ReLU fc1 (LN x))``."""

    def __init__(self, dim: int, num_heads: int, kernel_size: int, ffn_ratio: float = 2.0, dropout: float = 0.1,
                 weight_dropout: float = 0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mixer = LightConv(dim, num_heads, kernel_size, weight_dropout=weight_dropout)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * ffn_ratio)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        for fc in (self.fc1, self.fc2):  # fairseq's Linear: Xavier-uniform, bias 0
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.mixer(self.norm1(x), mask))
        return x + self.drop(self.fc2(F.relu(self.fc1(self.norm2(x)))))


class LightTransformer(EcgClassifier):
    def __init__(self, num_classes: int, num_leads: int = 12, num_samples: int = 1000, fs: float = 100.0,
                 n_beats: int = 20, pre: float = 0.25, post: float = 0.4, widths: Sequence[int] = (32, 64),
                 kernels: Sequence[int] = (7, 5), se_ratio: int = 8, dim: int = 64, num_heads: int = 4,
                 kernel_sizes: Sequence[int] = (3, 7), ffn_ratio: float = 2.0, dropout: float = 0.1,
                 weight_dropout: float = 0.1, rr_features: bool = True):
        super().__init__()
        self.num_classes, self.num_leads, self.num_samples = num_classes, num_leads, num_samples
        self.windows = BeatWindows.in_seconds(fs, n_beats, pre, post)
        self.beat_encoder = SEBeatEncoder(num_leads, dim, widths, kernels, se_ratio)
        self.rr = RRFeatures(dim, fs) if rr_features else None
        self.encoder = nn.ModuleList(LightConvLayer(dim, num_heads, k, ffn_ratio, dropout, weight_dropout)
                                     for k in kernel_sizes)
        self.norm = nn.LayerNorm(dim)
        self.num_features = dim
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, num_classes))
        self.stages = [name for name, _ in self.named_children()]
        self.default_cam_layer = "beat_encoder.features"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        signal, marks = split_rpeak_marks(x, self.num_leads)
        beats, valid, peaks = self.windows.cut(signal, marks)
        tokens = self.beat_encoder(beats)
        if self.rr is not None:
            tokens = tokens + self.rr(peaks)
        for layer in self.encoder:
            tokens = layer(tokens, valid)
        tokens = self.norm(tokens)
        weights = valid.to(tokens.dtype).unsqueeze(-1)
        return (tokens * weights).sum(dim=1) / weights.sum(dim=1)

    # -- what explain needs (models/explainable.py) --------------------------------------------
    def positions(self, layer_name, layer, x, shape):
        """Inside the beat encoder the batch axis holds every record's beats."""
        if layer_name.startswith("beat_encoder") and len(shape) == 3 and shape[0] != x.shape[0]:
            starts, placed = self.windows.starts(x, self.num_leads)
            return Instances(starts, self.windows.width, placed)
        return None

    def attention(self, x):
        """Each LightConv layer's kernel band over the beats, rolled out over the real beats the model pools."""
        with torch.no_grad(), recording(self) as blocks:
            self(x)
        layers = [block.attention_map for _, block in blocks]
        starts, placed = self.windows.starts(x, self.num_leads)
        group = SelfAttention(layers, Spans(starts, self.windows.width), name="beats", valid=placed)
        arrays = {"attention_beats": torch.stack(layers, dim=1).cpu().numpy(),  # (B, layers, heads, beats, beats)
                  "beat_peak": np.where(placed, starts + self.windows.pre, -1)}
        info = {"attention": "LightConv kernels (softmax-normalised, input-independent) over heartbeat tokens, "
                             "rolled out over the real beats (mean-pooled)",
                "beat_window": self.windows.width, "beat_pre": self.windows.pre,
                "kernel_sizes": [int(block.kernel_size) for _, block in blocks]}
        return Attention([group], arrays, info)


@register_model(default_cfg=dict(
    family="light_transformer", paper=_PAPER, source=_SOURCE,
    input_view={"name": "rpeaks", "lead": "auto",
                "in_model": "beats [-0.25, +0.4] s around the marked R peaks (up to 20), one token each, with RR intervals"},
))
def light_transformer(num_classes: int, num_leads: int = 12, num_samples: int = 1000, fs: float = 100.0, **kwargs):
    """Lightweight transformer (AIIM 2022): SE-CNN heartbeat tokens + RR intervals, LightConv attention between beats."""
    return LightTransformer(num_classes, num_leads, num_samples, fs=fs, **kwargs)
