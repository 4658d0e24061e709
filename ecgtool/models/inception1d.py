"""inception1d: the PTB-XL benchmark's InceptionTime-style network.

Paper: Strodthoff et al., IEEE JBHI 25(5) (2021), after InceptionTime (Ismail
Fawaz H et al., Data Min Knowl Disc 34, 2020). Reference code (read, not
copied): helme/ecg_ptbxl_benchmarking ``code/models/inception1d.py``, configured
as in its ``fastai_model.py`` (kernel size 40, head with one hidden layer of 128).

What follows the reference exactly:
* six inception blocks; each: a 1x1 bottleneck to 32 channels, three parallel
  convolutions of it with kernels 39, 19 and 9 (32 filters each; the base
  kernel 40 halved twice, even sizes made odd), and a parallel max-pool k3 ->
  1x1 conv (32) of the block input; concatenated (128), BN, ReLU;
* a residual shortcut every three blocks: 1x1 conv + BN of the input of the
  three blocks, added, ReLU;
* the benchmark head (concat pooling -> BN -> dropout 0.25 -> Linear(256, 128)
  -> ReLU -> BN -> dropout 0.5 -> Linear(128, classes)).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ecgtool.models.layers import ConcatPool1d, EcgClassifier, mlp_head
from ecgtool.models.registry import register_model

_PAPER = "Strodthoff et al. Deep Learning for ECG Analysis: Benchmarks and Insights from PTB-XL. IEEE JBHI 25(5), 2021"
_SOURCE = "helme/ecg_ptbxl_benchmarking code/models/inception1d.py (architecture re-implemented)"


def _conv(n_in: int, n_out: int, kernel_size: int) -> nn.Conv1d:
    return nn.Conv1d(n_in, n_out, kernel_size, padding=(kernel_size - 1) // 2, bias=False)


class InceptionBlock1d(nn.Module):
    def __init__(self, in_channels: int, kernels: tuple[int, ...], filters: int = 32, bottleneck: int = 32):
        super().__init__()
        self.bottleneck = _conv(in_channels, bottleneck, 1)
        self.branches = nn.ModuleList(_conv(bottleneck, filters, k) for k in kernels)
        self.pool_branch = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), _conv(in_channels, filters, 1))
        self.out_channels = filters * (len(kernels) + 1)
        self.bn_act = nn.Sequential(nn.BatchNorm1d(self.out_channels), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bottleneck(x)
        return self.bn_act(torch.cat([branch(b) for branch in self.branches] + [self.pool_branch(x)], dim=1))


class InceptionStage1d(nn.Module):
    """Three inception blocks with a projected residual shortcut around them."""

    def __init__(self, in_channels: int, kernels: tuple[int, ...], filters: int, bottleneck: int, residual: bool = True):
        super().__init__()
        blocks = []
        channels = in_channels
        for _ in range(3):
            blocks.append(InceptionBlock1d(channels, kernels, filters, bottleneck))
            channels = blocks[-1].out_channels
        self.blocks = nn.Sequential(*blocks)
        self.shortcut = nn.Sequential(_conv(in_channels, channels, 1), nn.BatchNorm1d(channels)) if residual else None
        self.act = nn.ReLU()
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(x)
        return out if self.shortcut is None else self.act(out + self.shortcut(x))


class Inception1d(EcgClassifier):
    def __init__(self, num_classes: int, num_leads: int = 12, num_samples: int = 1000, kernel_size: int = 40,
                 depth: int = 6, filters: int = 32, bottleneck: int = 32, residual: bool = True,
                 head_hidden: int = 128, dropout: float = 0.5):
        super().__init__()
        if depth % 3:
            raise ValueError(f"inception1d depth must be a multiple of 3, not {depth}")
        kernels = tuple(k - 1 if k % 2 == 0 else k for k in (kernel_size, kernel_size // 2, kernel_size // 4))
        stages, channels = [], num_leads
        for _ in range(depth // 3):
            stages.append(InceptionStage1d(channels, kernels, filters, bottleneck, residual))
            channels = stages[-1].out_channels
        self.backbone = nn.Sequential(*stages)
        self.global_pool = ConcatPool1d()
        self.num_features = 2 * channels
        self.head = mlp_head(self.num_features, num_classes, (head_hidden,), dropout)
        self.stages = ["backbone", "global_pool", "head"]
        self.default_cam_layer = "backbone"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.global_pool(self.backbone(x))


@register_model(default_cfg=dict(family="inception1d", paper=_PAPER, source=_SOURCE))
def inception1d(num_classes: int, num_leads: int = 12, num_samples: int = 1000, **kwargs) -> Inception1d:
    """inception1d of the PTB-XL benchmark (6 inception blocks, kernels 39/19/9, residual every 3)."""
    return Inception1d(num_classes, num_leads, num_samples, **kwargs)
