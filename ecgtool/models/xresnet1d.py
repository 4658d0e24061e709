"""xresnet1d50 / xresnet1d101: the PTB-XL benchmark's strongest convolutional baselines.

Paper: Strodthoff N, Wagner P, Schaeffter T, Samek W. Deep Learning for ECG
Analysis: Benchmarks and Insights from PTB-XL. IEEE JBHI 25(5):1519-1528 (2021);
the "bag of tricks" ResNet of He T et al., CVPR 2019.
Reference code (read, not copied): helme/ecg_ptbxl_benchmarking
``code/models/xresnet1d.py`` and ``basic_conv1d.py``, configured as in its
``fastai_model.py`` (kernel size 5, head with one hidden layer of 128, dropout 0.5).

What follows the reference exactly:
* stem of three conv-BN-ReLU layers, kernel 5 (in -> 32 stride 2, 32 -> 32,
  32 -> 64), then max-pool k3 s2;
* four stages of bottleneck blocks (1x1 -> k5 -> 1x1, expansion 4), depths
  [3, 4, 6, 3] / [3, 4, 23, 3], stride 2 from the second stage on (on the k5
  conv), every stage 64 wide (256 channels after expansion: the benchmark's
  variant, narrower than the 2D xresnet's 64/128/256/512);
* the block's last BN initialised to zero; the shortcut average-pools (k2,
  ceil mode) when strided and projects with 1x1 conv + BN when the width
  changes; ReLU after the sum;
* head: concat of global max- and average-pool -> BN -> dropout 0.25 ->
  Linear(512, 128) -> ReLU -> BN -> dropout 0.5 -> Linear(128, classes);
* kaiming-normal init of conv and linear weights, all biases zero.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ecgtool.models.layers import ConcatPool1d, ConvBnAct1d, EcgClassifier, mlp_head
from ecgtool.models.registry import register_model

_PAPER = "Strodthoff et al. Deep Learning for ECG Analysis: Benchmarks and Insights from PTB-XL. IEEE JBHI 25(5), 2021"
_SOURCE = "helme/ecg_ptbxl_benchmarking code/models/xresnet1d.py (architecture re-implemented)"


class Bottleneck1d(nn.Module):
    """1x1 reduce -> kxk (strided) -> 1x1 expand, with a pooled/projected shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1, kernel_size: int = 5):
        super().__init__()
        out_channels = width * self.expansion
        self.convs = nn.Sequential(
            ConvBnAct1d(in_channels, width, 1),
            ConvBnAct1d(width, width, kernel_size, stride=stride),
            ConvBnAct1d(width, out_channels, 1, activation=None),
        )
        nn.init.zeros_(self.convs[-1][1].weight)  # each block starts as (almost) the identity
        shortcut: list[nn.Module] = []
        if stride != 1:
            shortcut.append(nn.AvgPool1d(2, ceil_mode=True))
        if in_channels != out_channels:
            shortcut.append(ConvBnAct1d(in_channels, out_channels, 1, activation=None))
        self.shortcut = nn.Sequential(*shortcut)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.convs(x) + self.shortcut(x))


class XResNet1d(EcgClassifier):
    def __init__(self, depths: list[int], num_classes: int, num_leads: int = 12, num_samples: int = 1000,
                 kernel_size: int = 5, width: int = 64, head_hidden: int = 128, dropout: float = 0.5):
        super().__init__()
        self.stem = nn.Sequential(
            ConvBnAct1d(num_leads, 32, kernel_size, stride=2),
            ConvBnAct1d(32, 32, kernel_size),
            ConvBnAct1d(32, 64, kernel_size),
            nn.MaxPool1d(3, stride=2, padding=1),
        )
        channels = 64
        stages = []
        for i, depth in enumerate(depths):
            blocks = []
            for j in range(depth):
                blocks.append(Bottleneck1d(channels, width, stride=2 if (i > 0 and j == 0) else 1, kernel_size=kernel_size))
                channels = width * Bottleneck1d.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.global_pool = ConcatPool1d()
        self.num_features = 2 * channels
        self.head = mlp_head(self.num_features, num_classes, (head_hidden,), dropout)
        self.stages = ["stem", "layer1", "layer2", "layer3", "layer4", "global_pool", "head"]
        self.default_cam_layer = "layer4"
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
            if getattr(m, "bias", None) is not None:  # linear and BatchNorm biases alike, as the reference
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.global_pool(x)


@register_model(default_cfg=dict(family="xresnet1d", paper=_PAPER, source=_SOURCE))
def xresnet1d50(num_classes: int, num_leads: int = 12, num_samples: int = 1000, **kwargs) -> XResNet1d:
    """xresnet1d50 of the PTB-XL benchmark (bottleneck depths [3, 4, 6, 3], kernel 5)."""
    return XResNet1d([3, 4, 6, 3], num_classes, num_leads, num_samples, **kwargs)


@register_model(default_cfg=dict(family="xresnet1d", paper=_PAPER, source=_SOURCE))
def xresnet1d101(num_classes: int, num_leads: int = 12, num_samples: int = 1000, **kwargs) -> XResNet1d:
    """xresnet1d101 of the PTB-XL benchmark (bottleneck depths [3, 4, 23, 3], kernel 5)."""
    return XResNet1d([3, 4, 23, 3], num_classes, num_leads, num_samples, **kwargs)
