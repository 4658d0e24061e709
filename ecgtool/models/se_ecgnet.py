"""SE-ECGNet: multi-scale 2D/1D residual network with squeeze-and-excitation.

Paper:
    "SE-ECGNet: A Multi-scale Deep Residual Network with Squeeze-and-Excitation
    Module for ECG Signal Classification." IEEE International Conference on
    Bioinformatics and Biomedicine (BIBM) 2020.

Official code: https://github.com/Amadeuszhao/SE-ECGNet, ``models/SE_ECGNet.py``
(read for reference, re-implemented here; no code copied).

Follows the official code exactly
---------------------------------
* Input viewed as a one-channel image ``(B, 1, leads, T)`` (``x.unsqueeze(1)``
  inside ``forward``; nothing else is computed from the signal).
* Stem: Conv2d 1->32, kernel (1, 50), stride (1, 2), no padding, no bias;
  BatchNorm2d; ReLU.
* ``block1``: 3 pre-activation 2D residual blocks (BN, ReLU, Conv2d 32->32
  k=(1, 15) s=(1, 2) p=(0, 7), SE) whose shortcut is BN -> ReLU -> Conv2d 1x1
  stride (1, 2) *with* bias. As in the official ``_make_layer``, this shortcut
  module is ONE instance shared by the blocks of the stage (so its parameters
  are counted once); ``share_downsample=False`` gives each block its own copy.
* Three scale branches with kernels (1, 3), (1, 5), (1, 7) (``struct``):
  - 4 2D residual blocks, 32 channels, stride 1, padding k//2, three convs each
    (BN, ReLU, conv; then 2x [BN, ReLU, Dropout(0.2), conv]), SE, identity
    shortcut;
  - reshape ``(B, 32, leads, T) -> (B, 32 * leads, T)``;
  - 4 1D residual blocks, kernel k, stride 2, padding k//2: BN, ReLU, conv
    (stride 2), SE, + shortcut (BN -> ReLU -> Conv1d 1x1 stride 2 with bias,
    shared by the 4 blocks of the branch); then 3x [BN, ReLU, Dropout(0.2),
    conv], SE, + identity, ReLU;
  - global average pooling over time.
* SE: global average pool -> Linear(C, C // 16) -> ReLU -> Linear(C // 16, C)
  -> sigmoid (both linears with bias), ratio 16.
* The three pooled vectors are concatenated -> Linear (with bias), no dropout.
* Default PyTorch initialisation (the official code does not re-initialise).

Generalised / designed here (the official code leaves it open)
-------------------------------------------------------------
* The official 1D width is hard-coded to 256 = 32 channels x 8 leads (its data,
  the Hefei/Tianchi competition ECGs, have 8 leads I, II, V1-V6 at 500 Hz x
  5000 samples, 34 classes). The official loader (``dataset.py`` ``transform``
  with ``config.target_point_num = 2048``) resamples every record to 2048
  samples (``scipy.signal.resample``) before the network sees it, so the
  official network is trained and evaluated at 8 x 2048, not 8 x 5000; the
  parameter count does not depend on the length (global pooling). Here the 1D
  width is ``32 * num_leads`` (identical to the official network for
  ``num_leads=8``).
* The official ``padding=(0, i+1)`` for the i-th scale equals ``k // 2`` for the
  default kernels 3/5/7; ``k // 2`` is used for any ``struct``.
* Inputs shorter than the stem kernel (50 samples) are zero-padded on the right
  to 50 samples (the official code would fail on them).
* The official optional ``info`` vector concatenated before ``fc`` is not
  supported (inputs are signals only).
* No in-place operations (the official code uses ``+=`` and inplace ReLU),
  which changes no parameter or MAC count and keeps hooks safe.

Top-level modules (``stages``): ``stem``, ``block1``, ``scales`` (the three
branches, returning the concatenated pooled vector) and ``head``. The Grad-CAM
layer is ``block1``: its output ``(B, 32, leads, T')`` is the last 2D
(leads x time) feature map shared by all branches.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import EcgClassifier, SqueezeExcite
from .registry import register_model

__all__ = ["SEECGNet", "se_ecgnet"]

_PAPER = (
    "SE-ECGNet: A Multi-scale Deep Residual Network with Squeeze-and-Excitation Module "
    "for ECG Signal Classification. IEEE BIBM 2020"
)
_SOURCE = (
    "https://github.com/Amadeuszhao/SE-ECGNet models/SE_ECGNet.py "
    "(read for reference, re-implemented)"
)


class _PreActConv(nn.Sequential):
    """BN -> ReLU -> [Dropout] -> conv (no bias), the official blocks' unit."""

    def __init__(self, dim: int, cin: int, cout: int, kernel, stride, padding, dropout: float | None):
        bn = nn.BatchNorm2d if dim == 2 else nn.BatchNorm1d
        conv = nn.Conv2d if dim == 2 else nn.Conv1d
        layers: list[nn.Module] = [bn(cin), nn.ReLU()]
        if dropout is not None:
            layers.append(nn.Dropout(dropout))
        layers.append(conv(cin, cout, kernel, stride=stride, padding=padding, bias=False))
        super().__init__(*layers)


def _shortcut(dim: int, channels: int, stride) -> nn.Sequential:
    """Official strided shortcut: BN -> ReLU -> 1x1 conv (with bias)."""
    bn = nn.BatchNorm2d if dim == 2 else nn.BatchNorm1d
    conv = nn.Conv2d if dim == 2 else nn.Conv1d
    return nn.Sequential(bn(channels), nn.ReLU(), conv(channels, channels, 1, stride=stride))


class ResBlock2d(nn.Module):
    """Official ``ResBlock2d``: 1 or 3 pre-activation convs, SE, shortcut, ReLU."""

    def __init__(self, channels: int, kernel, stride, padding, num_conv: int,
                 downsample: nn.Module | None, se_ratio: int, dropout: float):
        super().__init__()
        convs = [_PreActConv(2, channels, channels, kernel, stride, padding, None)]
        for _ in range(num_conv - 1):
            convs.append(_PreActConv(2, channels, channels, kernel, stride, padding, dropout))
        self.convs = nn.Sequential(*convs)
        self.se = SqueezeExcite(channels, se_ratio)
        self.downsample = downsample
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se(self.convs(x))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResBlock1d(nn.Module):
    """Official ``ResBlock1d``: strided conv + SE + shortcut, then 3 convs + SE + identity, ReLU."""

    def __init__(self, channels: int, kernel: int, stride: int, padding: int,
                 downsample: nn.Module, se_ratio: int, dropout: float):
        super().__init__()
        self.conv1 = _PreActConv(1, channels, channels, kernel, stride, padding, None)
        self.se1 = SqueezeExcite(channels, se_ratio)
        self.downsample = downsample
        self.convs = nn.Sequential(
            *[_PreActConv(1, channels, channels, kernel, 1, padding, dropout) for _ in range(3)]
        )
        self.se2 = SqueezeExcite(channels, se_ratio)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.se1(self.conv1(x)) + self.downsample(x)
        out = self.se2(self.convs(out)) + out
        return self.relu(out)


class ScaleBranch(nn.Module):
    """One scale: 4 2D blocks (kernel (1, k)) -> reshape to 1D (C x leads) -> 4 1D blocks (kernel k) -> avg pool."""

    def __init__(self, k: int, width: int, num_leads: int, blocks2d: int, blocks1d: int,
                 se_ratio: int, dropout: float, share_downsample: bool):
        super().__init__()
        p = k // 2
        self.block2d = nn.Sequential(*[
            ResBlock2d(width, (1, k), (1, 1), (0, p), 3, None, se_ratio, dropout) for _ in range(blocks2d)
        ])
        c1 = width * num_leads
        shared = _shortcut(1, c1, 2)
        self.block1d = nn.Sequential(*[
            ResBlock1d(c1, k, 2, p, shared if share_downsample else _shortcut(1, c1, 2), se_ratio, dropout)
            for _ in range(blocks1d)
        ])
        self.out_channels = c1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2d(x)
        x = x.reshape(x.shape[0], -1, x.shape[-1])  # (B, C, leads, T) -> (B, C*leads, T)
        x = self.block1d(x)
        return x.mean(dim=-1)


class MultiScale(nn.Module):
    """The parallel scale branches; returns their pooled vectors concatenated."""

    def __init__(self, branches: list[ScaleBranch]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class SEECGNet(EcgClassifier):
    """SE-ECGNet over ``(batch, num_leads, num_samples)``; the 2D view ``(B, 1, leads, T)`` is made in ``forward``."""

    cam_leads_axis = True  # the image never pools across leads: Grad-CAM gives a profile per lead

    def __init__(
        self,
        num_classes: int,
        num_leads: int = 12,
        num_samples: int = 1000,
        struct: tuple[int, ...] | list[int] = (3, 5, 7),
        width: int = 32,
        stem_kernel: int = 50,
        block1_kernel: int = 15,
        block1_depth: int = 3,
        branch_depth_2d: int = 4,
        branch_depth_1d: int = 4,
        se_ratio: int = 16,
        dropout: float = 0.2,
        share_downsample: bool = True,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.num_leads = num_leads
        self.num_samples = num_samples
        self.stem_kernel = stem_kernel

        self.stem = nn.Sequential(
            nn.Conv2d(1, width, (1, stem_kernel), stride=(1, 2), bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        shared = _shortcut(2, width, (1, 2))
        self.block1 = nn.Sequential(*[
            ResBlock2d(width, (1, block1_kernel), (1, 2), (0, block1_kernel // 2), 1,
                       shared if share_downsample else _shortcut(2, width, (1, 2)), se_ratio, dropout)
            for _ in range(block1_depth)
        ])
        branches = [
            ScaleBranch(int(k), width, num_leads, branch_depth_2d, branch_depth_1d, se_ratio, dropout,
                        share_downsample)
            for k in struct
        ]
        self.scales = MultiScale(branches)
        self.num_features = sum(b.out_channels for b in branches)
        self.head = nn.Linear(self.num_features, num_classes)

        self.stages = ["stem", "block1", "scales", "head"]
        self.default_cam_layer = "block1"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, num_leads, num_samples)`` -> concatenated pooled branch vectors ``(batch, num_features)``."""
        if x.shape[-1] < self.stem_kernel:
            x = F.pad(x, (0, self.stem_kernel - x.shape[-1]))
        x = x.unsqueeze(1)  # (B, 1, leads, T): the ECG as a one-channel image
        x = self.stem(x)
        x = self.block1(x)
        return self.scales(x)


@register_model(default_cfg=dict(
    family="se_ecgnet", paper=_PAPER, source=_SOURCE,
    input_view={"name": "raw", "in_model": "one-channel image (B, 1, leads, T) via unsqueeze"},
))
def se_ecgnet(num_classes: int, num_leads: int = 12, num_samples: int = 1000, **kwargs) -> SEECGNet:
    """SE-ECGNet (BIBM 2020): 2D (1x50 stem, 1x15 SE res-blocks) then 3 scale branches (1x3/1x5/1x7, 2D->1D SE res-blocks)."""
    return SEECGNet(num_classes=num_classes, num_leads=num_leads, num_samples=num_samples, **kwargs)
