"""MAMIL: multimodal multi-instance learning over heartbeats and Gramian Angular Field patches.

Paper: "Multimodal multi-instance learning for long ECG classification",
Knowledge-Based Systems (2023). No official code; this file follows the paper's
description in ../shared/MODELS.md and designs the rest (all configurable):

What follows the paper:
* two bags per ECG: its heartbeats as 1D instances and the patches of its
  Gramian Angular (summation) Field image as 2D instances, each modality with a
  CNN instance encoder;
* per modality, the top-activated instance (instance-level max over a learned
  activation score) is correlated with every instance, and the correlation
  vector is fused with the top instance into the bag feature;
* the two bag features are concatenated and classified by a linear layer.

What was designed here:
* input view ``rpeaks`` (ecgtool.data.views): the loader appends a channel
  marking the QRS complexes that wfdb's XQRS detector finds, and beats are the
  windows [-0.25 s, +0.4 s] around the first ``n_beats`` marked peaks (fewer
  beats leave masked empty instances). Without the mark channel (a raw
  ``(B, leads, samples)`` input) beats are taken on a regular 0.8-s grid, so
  the model still runs, e.g. for profiling; training always supplies the marks;
* beat encoder: conv(k7, 32)-BN-ReLU-maxpool-conv(k5, 64)-BN-ReLU-average pool;
* GASF of one lead (``gaf_lead``, default II) average-pooled to ``gaf_size``
  (64) points and min-max scaled to [-1, 1]; non-overlapping ``patch``×``patch``
  (16×16) patches; patch encoder conv3x3(32)-BN-ReLU-maxpool-conv3x3(64)-BN-ReLU-pool;
* fusion: the top instance scaled by the sigmoid of its score (so the scorer
  learns), cosine correlations of all instances with it, softmax over those
  correlations to pool the bag, and a linear projection of [top; pooled] to 64.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .explainable import Attention, Instances, PoolingAttention, Spans, capture, check_recomputed
from .layers import BeatWindows, EcgClassifier, split_rpeak_marks
from .registry import register_model

_PAPER = "Multimodal multi-instance learning for long ECG classification. Knowledge-Based Systems, 2023"
_SOURCE = "no official code; designed from the paper's description (see the module docstring)"


class BeatEncoder(nn.Module):
    def __init__(self, leads: int, dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(leads, 32, 7, padding=3, bias=False), nn.BatchNorm1d(32), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(32, dim, 5, padding=2, bias=False), nn.BatchNorm1d(dim), nn.ReLU(),
        )

    def forward(self, beats: torch.Tensor) -> torch.Tensor:
        """``(B, K, L, W)`` -> ``(B, K, dim)``."""
        b, k = beats.shape[:2]
        return self.net(beats.flatten(0, 1)).mean(dim=-1).view(b, k, -1)


class PatchEncoder(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, dim, 3, padding=1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(),
        )

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """``(B, P, p, p)`` -> ``(B, P, dim)``."""
        b, n = patches.shape[:2]
        return self.net(patches.flatten(0, 1).unsqueeze(1)).mean(dim=(-2, -1)).view(b, n, -1)


class TopInstanceFusion(nn.Module):
    """Top-activated instance, its correlation with every instance, fused into one bag feature."""

    def __init__(self, dim: int):
        super().__init__()
        self.score = nn.Linear(dim, 1)
        self.project = nn.Linear(2 * dim, dim)

    def weights(self, h: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The pooling weights over instances ``(B, K)``, the top instance's index ``(B,)`` and its feature."""
        scores = self.score(h).squeeze(-1).masked_fill(~valid, -1e9)  # (B, K)
        top_index = scores.argmax(dim=1)
        rows = torch.arange(h.shape[0], device=h.device)
        top = h[rows, top_index] * torch.sigmoid(scores[rows, top_index]).unsqueeze(-1)
        corr = F.cosine_similarity(h, top.unsqueeze(1), dim=-1).masked_fill(~valid, -1e9)  # (B, K)
        return torch.softmax(corr, dim=1), top_index, top

    def forward(self, h: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        weights, _, top = self.weights(h, valid)
        pooled = (weights.unsqueeze(-1) * h).sum(dim=1)
        return torch.relu(self.project(torch.cat([top, pooled], dim=-1)))


def gasf(series: torch.Tensor) -> torch.Tensor:
    """Gramian Angular Summation Field ``(B, N) -> (B, N, N)`` of series min-max scaled to [-1, 1]."""
    lo, hi = series.amin(dim=1, keepdim=True), series.amax(dim=1, keepdim=True)
    scaled = (2 * (series - lo) / (hi - lo).clamp_min(1e-8) - 1).clamp(-1, 1)
    phi = torch.arccos(scaled)
    return torch.cos(phi.unsqueeze(2) + phi.unsqueeze(1))


class MAMIL(EcgClassifier):
    def __init__(self, num_classes: int, num_leads: int = 12, num_samples: int = 1000, fs: float = 100.0,
                 n_beats: int = 16, pre: float = 0.25, post: float = 0.4, gaf_lead: int | None = None,
                 gaf_size: int = 64, patch: int = 16, dim: int = 64):
        super().__init__()
        if gaf_size % patch:
            raise ValueError(f"gaf_size {gaf_size} must be a multiple of patch {patch}")
        self.num_leads, self.n_beats = num_leads, n_beats
        self.windows = BeatWindows.in_seconds(fs, n_beats, pre, post)
        self.pre, self.width, self.grid = self.windows.pre, self.windows.width, self.windows.grid
        self.gaf_lead = gaf_lead if gaf_lead is not None else (1 if num_leads > 1 else 0)
        self.gaf_size, self.patch = gaf_size, patch
        self.beat_encoder = BeatEncoder(num_leads, dim)
        self.beat_fusion = TopInstanceFusion(dim)
        self.gaf_encoder = PatchEncoder(dim)
        self.gaf_fusion = TopInstanceFusion(dim)
        self.num_features = 2 * dim
        self.head = nn.Linear(self.num_features, num_classes)
        self.stages = ["beat_encoder", "beat_fusion", "gaf_encoder", "gaf_fusion", "head"]
        self.default_cam_layer = "beat_encoder.net"

    def beats(self, signal: torch.Tensor, marks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows around the marked R peaks (or a regular grid): ``(B, K, L, W)`` and their validity ``(B, K)``."""
        beats, valid, _ = self.windows.cut(signal, marks)
        return beats, valid

    def patches(self, signal: torch.Tensor) -> torch.Tensor:
        series = F.adaptive_avg_pool1d(signal[:, self.gaf_lead : self.gaf_lead + 1], self.gaf_size).squeeze(1)
        image = gasf(series)  # (B, G, G)
        p, g = self.patch, self.gaf_size // self.patch
        return image.view(-1, g, p, g, p).permute(0, 1, 3, 2, 4).reshape(-1, g * g, p, p)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        signal, marks = split_rpeak_marks(x, self.num_leads)
        beats, valid = self.beats(signal, marks)
        beat_bag = self.beat_fusion(self.beat_encoder(beats), valid)
        patches = self.patches(signal)
        all_valid = torch.ones(patches.shape[:2], dtype=torch.bool, device=x.device)
        gaf_bag = self.gaf_fusion(self.gaf_encoder(patches), all_valid)
        return torch.cat([beat_bag, gaf_bag], dim=1)

    # -- what explain needs (models/explainable.py) --------------------------------------------
    def beat_windows(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """First sample ``(B, K)`` of each beat window the model cuts, and whether it holds a beat ``(B, K)``."""
        return self.windows.starts(x, self.num_leads)

    def positions(self, layer_name, layer, x, shape):
        """Inside the beat encoder the batch axis holds every record's beat instances."""
        if layer_name.startswith("beat_encoder") and len(shape) == 3 and shape[0] != x.shape[0]:
            starts, placed = self.beat_windows(x)
            return Instances(starts, self.width, placed)
        return None

    def attention(self, x):
        """The instance softmax of the top-instance correlation pooling, over heartbeats (on their windows)
        and over GASF patches (kept as an array: a patch pairs two stretches of the record)."""
        captured: dict = {}

        def hook_for(name):
            def hook(module, inputs, out):
                h, valid = inputs
                weights, top_index, top = module.weights(h, valid)
                pooled = (weights.unsqueeze(-1) * h).sum(dim=1)
                check_recomputed(f"mamil {name}", torch.relu(module.project(torch.cat([top, pooled], dim=-1))), out)
                captured[name] = weights, top_index
            return hook

        capture(self, x, [(self.beat_fusion, hook_for("beat_fusion"), False), (self.gaf_fusion, hook_for("gaf_fusion"), False)])
        beats, top_beat = captured["beat_fusion"]
        patches, top_patch = captured["gaf_fusion"]
        starts, placed = self.beat_windows(x)
        arrays = {"attention_beats": beats.cpu().numpy(), "beat_peak": np.where(placed, starts + self.pre, -1),
                  "top_beat": top_beat.cpu().numpy(), "attention_patches": patches.cpu().numpy(),
                  "top_patch": top_patch.cpu().numpy()}
        info = {"attention": "instance softmax of top-instance correlation pooling (beats, GASF patches)",
                "beat_window": self.width, "beat_pre": self.pre,
                "gasf": {"lead": self.gaf_lead, "size": self.gaf_size, "patch": self.patch}}
        return Attention([PoolingAttention(beats, Spans(starts, self.width), placed)], arrays, info)


@register_model(default_cfg=dict(
    family="mamil", paper=_PAPER, source=_SOURCE,
    input_view={"name": "rpeaks", "lead": "auto",
                "in_model": "beats [-0.25, +0.4] s around the marked R peaks; GASF patches of lead II"},
))
def mamil(num_classes: int, num_leads: int = 12, num_samples: int = 1000, fs: float = 100.0, **kwargs) -> MAMIL:
    """MAMIL: heartbeat instances and Gramian Angular Field patch instances, top-instance correlation fusion."""
    return MAMIL(num_classes, num_leads, num_samples, fs=fs, **kwargs)

