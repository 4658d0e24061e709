"""ECGNet: parallel multi-kernel (inception-style) stem + pre-activation residual stack, optional raw-signal LSTM.

Paper: S. Murugesan, K. Ram, S. P. Preejith et al. "ECGNet: Deep Network for
Arrhythmia Classification." IEEE International Symposium on Medical
Measurements and Applications (MeMeA), 2018 — CNN with multiple kernel sizes,
an LSTM network, and their combination (CLSTM), end to end on the raw ECG.
The paper's authors published no code. The layer-level design used here (the
one summarised in MODELS.md) is that of the widely circulated PyTorch
"ECGNet" (e.g. the Tianchi/Hefei 12-lead ECG challenge code; read for
reference, re-implemented, nothing copied): ``ResBlock`` + ``ECGNet`` with
``struct=[15, 17, 19, 21]``, ``fixed_kernel_size=17``, 16 planes, 15 residual
blocks and an LSTM(hidden 40) over the raw leads. The copy used as the
reference here is ``models/ECGNet.py`` of https://github.com/Amadeuszhao/SE-ECGNet
(8 leads, 34 classes, its own test input 8 x 5000).

What follows that reference:

* four parallel Conv1d branches (kernels 15, 17, 19, 21; 16 filters each, no
  bias), BN, ReLU, then Conv1d(k=17, stride 2, no bias) back to 16 channels;
* 15 pre-activation residual blocks (BN -> ReLU -> Dropout(0.1) -> Conv(k17)
  -> BN -> ReLU -> Dropout(0.1) -> Conv(k17), no biases): every 2nd block
  max-pools its output and its shortcut by 2; every 4th block also widens by
  16 channels (shortcut 1x1 conv, no bias, then max-pool), so 16 -> 64 channels
  and 7 halvings; then BN, ReLU, average pooling to a 64 x 10 map, flattened
  (640 features);
* ``ecgnet_lstm``: a one-layer unidirectional LSTM (hidden 40) over the raw
  signal (every time step, the leads as input features); its last hidden state
  is concatenated with the 640 CNN features (680) before the Linear classifier.
  ``ecgnet`` is the same network without the LSTM path (the paper's CNN).

What was fixed here, because the reference leaves it open or is length-bound
(all configurable):

* branch concatenation: the reference concatenates the parallel branches along
  the *time* axis (unpadded outputs of different lengths glued end to end).
  Default here is the inception-style concatenation along *channels* with
  "same" padding (64 channels, time axis kept aligned, which also keeps
  Grad-CAM maps meaningful) followed by Conv1d(64 -> 16, k17, s2, padding 8);
  ``stem_concat="time"`` reproduces the reference (padding 0, concat on time,
  Conv1d(16 -> 16, k17, s2, padding 2));
* pooling (``pooling``): the reference max-pools by 2 in floor mode and ends
  with AvgPool1d(8, stride 8, padding 2, zero padding counted in the mean) +
  flatten, which gives its 64 x 10 = 640 features only for inputs near 5000
  samples (8 x 5000: time lengths 4980, 2490, 1245, 622, 311, 155, 77 after
  the seven pools, then 10 bins). The default ``pooling="adaptive"`` instead
  max-pools in ``ceil_mode`` (lengths 623, 312, 156, 78 at 8 x 5000) so that
  short inputs (e.g. 400 samples) never shrink to zero, and average-pools
  adaptively to ``pool_bins=10`` bins: 640 features for any length.
  ``pooling="reference"`` reproduces the reference's pooling exactly (with
  ``stem_concat="time"`` it computes the reference's function: the same
  logits from the same weights at 8 x 5000, tested); its feature count then
  follows from ``num_samples`` (``pool_bins`` is unused), and lengths too
  short for the seven floor-mode halvings are refused. The default stays
  adaptive because with the reference pooling the classifier's input size is
  tied to the record length (a model built for one length fails on another,
  and it is 640 only near 5000 samples), which the registry's 12 x 1000
  default, cropped training and short records cannot use;
* activations and residual sums are not in-place (hook-safe).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from ecgtool.models.layers import EcgClassifier
from ecgtool.models.registry import register_model

__all__ = ["ECGNet", "ecgnet", "ecgnet_lstm"]

_PAPER = ("Murugesan, Ram, Preejith et al. ECGNet: Deep Network for Arrhythmia Classification. "
          "IEEE MeMeA 2018")
_SOURCE = ("layer design of the community PyTorch ECGNet (struct [15,17,19,21], fixed kernel 17, 15 pre-activation "
           "ResBlocks, LSTM 40 on the raw signal), as in https://github.com/Amadeuszhao/SE-ECGNet models/ECGNet.py; "
           "read for reference, re-implemented")


class ParallelKernelStem(nn.Module):
    """Parallel convolutions of several kernel lengths, concatenated, BN, ReLU, strided conv."""

    def __init__(self, in_channels: int, planes: int = 16, kernel_sizes: Sequence[int] = (15, 17, 19, 21),
                 fixed_kernel_size: int = 17, concat: str = "channel"):
        super().__init__()
        if concat not in ("channel", "time"):
            raise ValueError(f"stem_concat must be 'channel' or 'time', got {concat!r}")
        self.concat = concat
        same = concat == "channel"
        self.branches = nn.ModuleList(
            nn.Conv1d(in_channels, planes, k, padding=(k // 2 if same else 0), bias=False) for k in kernel_sizes
        )
        cat_channels = planes * len(kernel_sizes) if same else planes
        self.bn = nn.BatchNorm1d(cat_channels)
        self.act = nn.ReLU()
        self.conv = nn.Conv1d(cat_channels, planes, fixed_kernel_size, stride=2,
                              padding=(fixed_kernel_size // 2 if same else 2), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        if self.concat == "channel":
            t = min(o.shape[-1] for o in outs)  # equal for odd kernels; crop guards even ones
            out = torch.cat([o[..., :t] for o in outs], dim=1)
        else:
            out = torch.cat(outs, dim=2)
        return self.conv(self.act(self.bn(out)))


class PreActResBlock1d(nn.Module):
    """BN-ReLU-Dropout-Conv x2; optional widening (1x1 shortcut) and max-pool by 2 of both paths."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 17, downsample: bool = False,
                 dropout: float = 0.1, ceil_mode: bool = True):
        super().__init__()
        pad = kernel_size // 2
        self.bn1 = nn.BatchNorm1d(in_channels)
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, padding=pad, bias=False)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.pool = nn.MaxPool1d(2, stride=2, ceil_mode=ceil_mode) if downsample else None
        self.proj = nn.Conv1d(in_channels, out_channels, 1, bias=False) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.dropout(self.act(self.bn1(x))))
        out = self.conv2(self.dropout(self.act(self.bn2(out))))
        identity = x if self.proj is None else self.proj(x)
        if self.pool is not None:
            out = self.pool(out)
            identity = self.pool(identity)
        return out + identity


class RawLSTM(nn.Module):
    """LSTM over the raw signal (time steps x leads); returns the last layer's final hidden state."""

    def __init__(self, num_leads: int, hidden: int = 40):
        super().__init__()
        self.lstm = nn.LSTM(input_size=num_leads, hidden_size=hidden, num_layers=1, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(x.transpose(1, 2))
        return h[-1]


def _reference_pool_bins(num_samples: int, kernel_sizes: Sequence[int], fixed_kernel_size: int, stem_concat: str,
                         num_pools: int) -> int:
    """Time bins after the reference pooling (floor-mode halvings, AvgPool1d(8, 8, padding 2)) for ``num_samples``."""
    if stem_concat == "time":  # unpadded branches glued end to end, then conv k, stride 2, padding 2
        length = sum(num_samples - k + 1 for k in kernel_sizes)
        length = (length + 4 - fixed_kernel_size) // 2 + 1
    else:  # "same" branches (cropped to the shortest), then conv k, stride 2, padding k // 2
        length = min(num_samples + 2 * (k // 2) - k + 1 for k in kernel_sizes)
        length = (length + 2 * (fixed_kernel_size // 2) - fixed_kernel_size) // 2 + 1
    length >>= num_pools
    bins = (length + 4 - 8) // 8 + 1
    if length < 1 or bins < 1:
        raise ValueError(f"pooling='reference' needs a longer input than {num_samples} samples "
                         "(its floor-mode max-pools and AvgPool1d(8) leave nothing); use pooling='adaptive'.")
    return bins


class ECGNet(EcgClassifier):
    """Top-level children, in forward order: ``stem``, ``blocks``, ``post``, ``global_pool``[, ``lstm``], ``head``."""

    def __init__(self, num_classes: int, num_leads: int = 12, num_samples: int = 1000, use_lstm: bool = False,
                 kernel_sizes: Sequence[int] = (15, 17, 19, 21), fixed_kernel_size: int = 17, planes: int = 16,
                 num_blocks: int = 15, stem_concat: str = "channel", pool_bins: int = 10, lstm_hidden: int = 40,
                 dropout: float = 0.1, pooling: str = "adaptive"):
        super().__init__()
        if pooling not in ("adaptive", "reference"):
            raise ValueError(f"pooling must be 'adaptive' or 'reference', got {pooling!r}")
        self.num_classes, self.num_leads, self.num_samples = num_classes, num_leads, num_samples
        self.stem = ParallelKernelStem(num_leads, planes, kernel_sizes, fixed_kernel_size, stem_concat)
        reference = pooling == "reference"
        blocks = []
        channels = planes
        for i in range(num_blocks):
            widen = (i + 1) % 4 == 0
            out_channels = channels + planes if widen else channels
            blocks.append(PreActResBlock1d(channels, out_channels, fixed_kernel_size,
                                           downsample=(i + 1) % 2 == 0, dropout=dropout, ceil_mode=not reference))
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.post = nn.Sequential(nn.BatchNorm1d(channels), nn.ReLU())
        if reference:
            bins = _reference_pool_bins(num_samples, kernel_sizes, fixed_kernel_size, stem_concat, num_blocks // 2)
            self.global_pool = nn.Sequential(nn.AvgPool1d(8, stride=8, padding=2), nn.Flatten(1))
        else:
            bins = pool_bins
            self.global_pool = nn.Sequential(nn.AdaptiveAvgPool1d(pool_bins), nn.Flatten(1))
        self.num_features = channels * bins
        if use_lstm:
            self.lstm = RawLSTM(num_leads, lstm_hidden)
            self.num_features += lstm_hidden
        self.head = nn.Linear(self.num_features, num_classes)
        self.stages = [n for n in ("stem", "blocks", "post", "global_pool", "lstm", "head") if hasattr(self, n)]
        self.default_cam_layer = "blocks"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.global_pool(self.post(self.blocks(self.stem(x))))
        if hasattr(self, "lstm"):
            feats = torch.cat([feats, self.lstm(x)], dim=1)
        return feats


@register_model(default_cfg=dict(family="ecgnet", paper=_PAPER, source=_SOURCE))
def ecgnet(num_classes: int, num_leads: int = 12, num_samples: int = 1000, **kwargs) -> ECGNet:
    """ECGNet CNN: parallel kernels 15/17/19/21 stem, 15 pre-activation residual blocks (k17), 640 pooled features."""
    return ECGNet(num_classes, num_leads, num_samples, use_lstm=False, **kwargs)


@register_model(default_cfg=dict(family="ecgnet", paper=_PAPER, source=_SOURCE))
def ecgnet_lstm(num_classes: int, num_leads: int = 12, num_samples: int = 1000, **kwargs) -> ECGNet:
    """ECGNet with an LSTM(40) path over the raw signal concatenated to the CNN features before the classifier."""
    return ECGNet(num_classes, num_leads, num_samples, use_lstm=True, **kwargs)
