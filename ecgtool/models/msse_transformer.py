"""Multi-scale SE-ResNet + transformer encoder for myocardial-infarction classification.

Paper: multi-scale SE-ResNet with a transformer encoder for MI detection/
classification from the 12-lead ECG, Applied Soft Computing, 2023 (as
summarised in MODELS.md). No official code exists; everything below is
written from the paper's description.

What follows the paper's description:

* a multi-scale sampling layer: the record is cut into overlapping sliding
  windows at several window lengths (scales);
* an SE-ResNet feature extractor applied to every window, ending in a pooling
  component that combines global average pooling and global max pooling;
* one transformer encoder per scale over that scale's sequence of window
  embeddings;
* the scales' representations are fused and fed to the classifier.

What had to be designed here (the paper leaves it open or does not fix the
numbers; all configurable, small defaults):

* scales: ``window_fracs=(0.25, 0.5)`` of ``num_samples`` (2.5 s and 5 s for
  10 s records), ``overlap=0.5`` (stride = half a window); a last window
  aligned to the end of the record is added when the stride does not reach
  it, so every sample is covered; windows are clamped to the actual input
  length. The windows are cut inside ``forward`` with ``Tensor.unfold``;
* one SE-ResNet shared by all scales and windows (it is fully convolutional,
  so it takes any window length): stem Conv1d(k7, s2) -> 32 + BN + ReLU +
  MaxPool(3, 2); basic residual blocks (two k7 convs) with squeeze-excitation
  (reduction 8) of widths ``widths=(32, 64, 128)``, strides (1, 2, 2), one
  block each (``depths``); pooling component = concat(GAP, GMP) -> Linear to
  ``d_model=64`` (the window's token);
* per scale: fixed sinusoidal positions added to the tokens (the number of
  windows depends on the record length, so no learned table), then
  ``encoder_layers=1`` pre-norm transformer encoder layer(s) (``num_heads=4``,
  feed-forward 2 x d_model, GELU, dropout 0.1), then mean over the tokens;
* fusion: concatenation of the scale vectors (``num_features`` =
  n_scales x d_model), classifier Dropout(0.1) + Linear;
* Grad-CAM: ``default_cam_layer`` is ``encoders.0``, whose output is the finest
  scale's token map (B, d_model, n_windows): one value per window, placed at
  the window centres (window i starts at i * stride);
* attention is written with ``nn.Linear`` projections (counted by thop); the
  two attention matrix products are not modules, so MAC counts omit them
  (2 * n_windows^2 * d_model per layer per scale: ~6k MACs at the defaults).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from ecgtool.models.attention import sinusoid
from ecgtool.models.explainable import Attention, SelfAttention, Spans, capture, check_recomputed
from ecgtool.models.layers import EcgClassifier
from ecgtool.models.registry import register_model

__all__ = ["MultiScaleSETransformer", "msse_transformer"]

_PAPER = ("Multi-scale SE-ResNet with transformer encoder for myocardial infarction classification "
          "from 12-lead ECG. Applied Soft Computing, 2023")
_SOURCE = "no official code; designed from the paper's description (see module docstring)"


class MultiScaleSampler(nn.Module):
    """Cuts (B, C, T) into overlapping windows per scale: a list of (B, n_windows, C, w)."""

    def __init__(self, num_samples: int, window_fracs: Sequence[float] = (0.25, 0.5), overlap: float = 0.5,
                 min_window: int = 16):
        super().__init__()
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap}")
        self.windows = [max(min_window, int(round(f * num_samples))) for f in window_fracs]
        self.overlap = overlap

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        t = x.shape[-1]
        out = []
        for w in self.windows:
            w = min(w, t)
            stride = max(1, int(round(w * (1.0 - self.overlap))))
            win = x.unfold(-1, w, stride)  # (B, C, n, w)
            if (t - w) % stride:
                win = torch.cat([win, x[..., t - w:].unsqueeze(2)], dim=2)
            out.append(win.permute(0, 2, 1, 3))
        return out


class SEBasicBlock1d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, kernel_size: int = 7,
                 reduction: int = 8):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        mid = max(4, out_channels // reduction)
        self.se = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Conv1d(out_channels, mid, 1), nn.ReLU(),
                                nn.Conv1d(mid, out_channels, 1), nn.Sigmoid())
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv1d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm1d(out_channels))
        else:
            self.shortcut = nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out * self.se(out)
        return self.act(out + self.shortcut(x))


class SEResNetExtractor(nn.Module):
    """Window (N, C, w) -> token (N, d_model): SE-ResNet, concat(global avg, global max) pooling, projection."""

    def __init__(self, in_channels: int, widths: Sequence[int] = (32, 64, 128), depths: Sequence[int] = (1, 1, 1),
                 d_model: int = 64, kernel_size: int = 7, reduction: int = 8):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, widths[0], kernel_size, stride=2, padding=kernel_size // 2, bias=False),
            nn.BatchNorm1d(widths[0]), nn.ReLU(), nn.MaxPool1d(3, stride=2, padding=1),
        )
        blocks = []
        c = widths[0]
        for i, (w, d) in enumerate(zip(widths, depths)):
            for j in range(d):
                blocks.append(SEBasicBlock1d(c, w, stride=2 if (i > 0 and j == 0) else 1,
                                             kernel_size=kernel_size, reduction=reduction))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.proj = nn.Linear(2 * c, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.blocks(self.stem(x))
        pooled = torch.cat([f.mean(dim=-1), f.amax(dim=-1)], dim=1)
        return self.proj(pooled)


class EncoderLayer(nn.Module):
    """Pre-norm transformer encoder layer with Linear projections."""

    def __init__(self, d_model: int, num_heads: int, ffn_mult: int = 2, dropout: float = 0.1):
        super().__init__()
        if d_model % num_heads:
            raise ValueError("d_model must be divisible by num_heads")
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, ffn_mult * d_model), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(ffn_mult * d_model, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, n, d)
        b, n, d = x.shape
        h = self.num_heads
        q, k, v = self.qkv(self.norm1(x)).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        attn = torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(d // h), dim=-1)
        a = (attn @ v).transpose(1, 2).reshape(b, n, d)
        x = x + self.dropout(self.proj(a))
        return x + self.dropout(self.ffn(self.norm2(x)))


class ScaleEncoder(nn.Module):
    """Tokens (B, n, d) -> + sinusoidal positions -> encoder layers -> token map (B, d, n)."""

    def __init__(self, d_model: int, num_heads: int, num_layers: int, dropout: float):
        super().__init__()
        self.layers = nn.Sequential(*[EncoderLayer(d_model, num_heads, dropout=dropout) for _ in range(num_layers)])
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens + sinusoid(tokens.shape[1], tokens.shape[2], tokens.device, tokens.dtype)
        return self.norm(self.layers(x)).transpose(1, 2)


class ScaleFusion(nn.Module):
    """Mean over each scale's tokens, concatenated over scales: -> (B, n_scales * d)."""

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([m.mean(dim=-1) for m in maps], dim=1)


class MultiScaleSETransformer(EcgClassifier):
    """Children in forward order: ``sampler``, ``extractor``, ``encoders``, ``fusion``, ``head``."""

    def __init__(self, num_classes: int, num_leads: int = 12, num_samples: int = 1000,
                 window_fracs: Sequence[float] = (0.25, 0.5), overlap: float = 0.5,
                 widths: Sequence[int] = (32, 64, 128), depths: Sequence[int] = (1, 1, 1), kernel_size: int = 7,
                 se_reduction: int = 8, d_model: int = 64, num_heads: int = 4, encoder_layers: int = 1,
                 dropout: float = 0.1):
        super().__init__()
        self.num_classes, self.num_leads, self.num_samples = num_classes, num_leads, num_samples
        self.sampler = MultiScaleSampler(num_samples, window_fracs, overlap)
        self.extractor = SEResNetExtractor(num_leads, widths, depths, d_model, kernel_size, se_reduction)
        self.encoders = nn.ModuleList(ScaleEncoder(d_model, num_heads, encoder_layers, dropout)
                                      for _ in window_fracs)
        self.fusion = ScaleFusion()
        self.num_features = d_model * len(window_fracs)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))
        self.stages = ["sampler", "extractor", "encoders", "fusion", "head"]
        self.default_cam_layer = "encoders.0"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        windows = self.sampler(x)
        tokens = []
        for win in windows:
            b, n, c, w = win.shape
            tokens.append(self.extractor(win.reshape(b * n, c, w)).reshape(b, n, -1))
        maps = [enc(tok) for enc, tok in zip(self.encoders, tokens)]
        return self.fusion(maps)

    # -- what explain needs (models/explainable.py) --------------------------------------------
    def window_spans(self, samples: int) -> list[Spans]:
        """Where each scale's windows lie (tokens, in order), read off the model's own sampler."""
        index = torch.arange(samples, dtype=torch.float64).view(1, 1, samples)
        return [Spans(w[0, :, 0, 0].long().numpy(), int(w.shape[-1]), channels_last=True) for w in self.sampler(index)]

    def positions(self, layer_name, layer, x, shape):
        """A scale's encoder gives one value per window: ``(B, d, n)`` after it, ``(B, n, d)`` inside it."""
        if isinstance(layer, (ScaleEncoder, EncoderLayer)):
            spans = self.window_spans(x.shape[-1])[int(layer_name.split(".")[1])]
            spans.channels_last = isinstance(layer, EncoderLayer)
            return spans
        return None

    def attention(self, x):
        """Multi-head self-attention over each scale's windows: every head of every layer."""
        captured: dict = {}

        def on_qkv(key, heads):
            def hook(module, inputs, out):
                b, n, three_d = out.shape
                d = three_d // 3
                q, k, v = out.reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
                captured[key] = (torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(d // heads), dim=-1), v)
            return hook

        def on_proj(key):
            def hook(module, args):  # the projection's input is attention @ values: check the recomputation on it
                attn, v = captured[key]
                b, h, n, dh = v.shape
                check_recomputed(f"msse_transformer encoders.{key[0]}.layers.{key[1]}",
                                 (attn @ v).transpose(1, 2).reshape(b, n, h * dh), args[0])
            return hook

        hooks = []
        for s, encoder in enumerate(self.encoders):
            for i, layer in enumerate(encoder.layers):
                hooks += [(layer.qkv, on_qkv((s, i), layer.num_heads), False), (layer.proj, on_proj((s, i)), True)]
        capture(self, x, hooks)
        groups, arrays, scales = [], {}, []
        for s, spans in enumerate(self.window_spans(x.shape[-1])):
            layers = [captured[(s, i)][0] for i in range(len(self.encoders[s].layers))]
            groups.append(SelfAttention(layers, spans, name=f"scale{s}"))
            arrays[f"attention_scale{s}"] = torch.stack(layers, dim=1).cpu().numpy()  # (B, layers, heads, n, n)
            scales.append({"window": spans.width, "starts": spans.starts.tolist(), "layers": len(layers),
                           "heads": int(layers[0].shape[1])})
        return Attention(groups, arrays, {"attention": "multi-head self-attention over windows, per scale", "scales": scales})


@register_model(default_cfg=dict(family="msse_transformer", paper=_PAPER, source=_SOURCE,
                                 input_view={"name": "raw", "in_model": "overlapping sliding windows at 2 scales "
                                             "(25% and 50% of the record, 50% overlap) cut in forward"}))
def msse_transformer(num_classes: int, num_leads: int = 12, num_samples: int = 1000, **kwargs):
    """Multi-scale SE-ResNet + per-scale transformer encoder: sliding windows at 2 scales, fused for the classifier."""
    return MultiScaleSETransformer(num_classes, num_leads, num_samples, **kwargs)
