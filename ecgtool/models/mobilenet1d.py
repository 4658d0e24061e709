"""1D MobileNetV2 for multi-lead ECG.

Direct 1D port of torchvision's MobileNetV2 (https://github.com/pytorch/vision,
``torchvision/models/mobilenetv2.py``, BSD-3-Clause), which implements:

    M. Sandler, A. Howard, M. Zhu, A. Zhmoginov, L.-C. Chen. "MobileNetV2:
    Inverted Residuals and Linear Bottlenecks." CVPR 2018. arXiv:1801.04381.

Same widths, expansion ratios, strides, kernel lengths (3), ReLU6, 1280-channel
last conv, dropout 0.2 and initialisation as torchvision. Only the module
layout differs: torchvision's flat ``features`` Sequential is grouped here into
``stem``, one ``stageN`` per row of the inverted-residual setting and
``final_conv``, so the profiler can report per-stage parameters/MACs.

Global average pooling is a function call in ``forward_features`` (as
torchvision's ``nn.functional.adaptive_avg_pool2d``), not a module: thop has
a rule for an ``AdaptiveAvgPool1d`` module (42,240 ops at 12 x 1000) but does
not see the function, so ``ecgtool profile`` reports torchvision's
(and the research notebook's) 96.60M MACs at 12 x 1000, 9 classes.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import ConvBnAct1d, EcgClassifier, InvertedResidual1d, make_divisible
from .registry import register_model

__all__ = ["MobileNetV21d", "mobilenet_v2", "DEFAULT_INVERTED_RESIDUAL_SETTING"]

_PAPER = (
    "Sandler, Howard, Zhu, Zhmoginov, Chen. MobileNetV2: Inverted Residuals and Linear "
    "Bottlenecks. CVPR 2018. arXiv:1801.04381"
)
_SOURCE = "1D port of torchvision.models.mobilenetv2 (https://github.com/pytorch/vision, BSD-3-Clause)"

# t (expansion), c (output channels), n (repeats), s (stride of first repeat)
DEFAULT_INVERTED_RESIDUAL_SETTING: list[list[int]] = [
    [1, 16, 1, 1],
    [6, 24, 2, 2],
    [6, 32, 3, 2],
    [6, 64, 4, 2],
    [6, 96, 3, 1],
    [6, 160, 3, 2],
    [6, 320, 1, 1],
]


class MobileNetV21d(EcgClassifier):
    """MobileNetV2 over 1D signals ``(batch, num_leads, num_samples)``.

    Top-level submodules, in forward order (see ``stages``): ``stem`` (conv k3
    s2, 32 ch), ``stage1``..``stage7`` (inverted residual groups),
    ``final_conv`` (1x1 conv to 1280 ch) and ``head`` (dropout + linear); the
    global average pool between ``final_conv`` and ``head`` is functional.
    """

    def __init__(
        self,
        num_classes: int,
        num_leads: int = 12,
        num_samples: int = 1000,
        width_mult: float = 1.0,
        round_nearest: int = 8,
        dropout: float = 0.2,
        inverted_residual_setting: list[list[int]] | None = None,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.num_leads = num_leads
        self.num_samples = num_samples
        if inverted_residual_setting is None:
            inverted_residual_setting = DEFAULT_INVERTED_RESIDUAL_SETTING
        if len(inverted_residual_setting) == 0 or any(len(row) != 4 for row in inverted_residual_setting):
            raise ValueError(
                "inverted_residual_setting should be a non-empty list of [t, c, n, s] rows, "
                f"got {inverted_residual_setting}"
            )

        input_channel = make_divisible(32 * width_mult, round_nearest)
        last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)

        self.stem = ConvBnAct1d(num_leads, input_channel, kernel_size=3, stride=2, activation="relu6")
        self.stages = ["stem"]
        for idx, (t, c, n, s) in enumerate(inverted_residual_setting, start=1):
            output_channel = make_divisible(c * width_mult, round_nearest)
            blocks = []
            for i in range(n):
                stride = s if i == 0 else 1
                blocks.append(InvertedResidual1d(input_channel, output_channel, stride, expand_ratio=t))
                input_channel = output_channel
            self.add_module(f"stage{idx}", nn.Sequential(*blocks))
            self.stages.append(f"stage{idx}")
        self.final_conv = ConvBnAct1d(input_channel, last_channel, kernel_size=1, activation="relu6")
        self.num_features = last_channel
        self.head = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(last_channel, num_classes))
        self.stages += ["final_conv", "head"]
        self.default_cam_layer = "final_conv"

        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm1d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, num_leads, num_samples)`` -> pooled features ``(batch, num_features)``."""
        for name in self.stages[:-1]:  # everything before the head
            x = getattr(self, name)(x)
        # functional, as torchvision: thop then counts no MACs for the pool (see module docstring)
        return nn.functional.adaptive_avg_pool1d(x, 1).flatten(1)


@register_model(default_cfg=dict(family="mobilenet1d", paper=_PAPER, source=_SOURCE))
def mobilenet_v2(num_classes: int, num_leads: int = 12, num_samples: int = 1000,
                 width_mult: float = 1.0, round_nearest: int = 8, dropout: float = 0.2,
                 **kwargs) -> MobileNetV21d:
    """1D MobileNetV2 (inverted residuals, ReLU6, 1280-ch last conv), a port of torchvision's mobilenet_v2."""
    return MobileNetV21d(num_classes=num_classes, num_leads=num_leads, num_samples=num_samples,
                         width_mult=width_mult, round_nearest=round_nearest, dropout=dropout, **kwargs)
