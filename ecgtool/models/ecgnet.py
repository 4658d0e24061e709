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
blocks and an LSTM(hidden 40) over the raw leads.

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
* the reference's AvgPool1d(8, stride 8, padding 2) + flatten only works for
  its 5000-sample input; here an adaptive average pool to ``pool_bins=10`` bins
  gives the same 64 x 10 = 640 features for any length;
* the max-pools use ``ceil_mode=True`` (same as the reference for even
  lengths) so that short inputs (e.g. 400 samples) never shrink to zero;
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
           "ResBlocks, LSTM 40 on the raw signal); read for reference, re-implemented")


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
                 dropout: float = 0.1):
        super().__init__()
        pad = kernel_size // 2
        self.bn1 = nn.BatchNorm1d(in_channels)
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, padding=pad, bias=False)
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)
        self.pool = nn.MaxPool1d(2, stride=2, ceil_mode=True) if downsample else None
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


class ECGNet(EcgClassifier):
    """Top-level children, in forward order: ``stem``, ``blocks``, ``post``, ``global_pool``[, ``lstm``], ``head``."""

    def __init__(self, num_classes: int, num_leads: int = 12, num_samples: int = 1000, use_lstm: bool = False,
                 kernel_sizes: Sequence[int] = (15, 17, 19, 21), fixed_kernel_size: int = 17, planes: int = 16,
                 num_blocks: int = 15, stem_concat: str = "channel", pool_bins: int = 10, lstm_hidden: int = 40,
                 dropout: float = 0.1):
        super().__init__()
        self.num_classes, self.num_leads, self.num_samples = num_classes, num_leads, num_samples
        self.stem = ParallelKernelStem(num_leads, planes, kernel_sizes, fixed_kernel_size, stem_concat)
        blocks = []
        channels = planes
        for i in range(num_blocks):
            widen = (i + 1) % 4 == 0
            out_channels = channels + planes if widen else channels
            blocks.append(PreActResBlock1d(channels, out_channels, fixed_kernel_size,
                                           downsample=(i + 1) % 2 == 0, dropout=dropout))
            channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.post = nn.Sequential(nn.BatchNorm1d(channels), nn.ReLU())
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool1d(pool_bins), nn.Flatten(1))
        self.num_features = channels * pool_bins
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
