"""1D ResNet-18/34 for multi-lead ECG.

Direct 1D port of torchvision's ResNet (https://github.com/pytorch/vision,
``torchvision/models/resnet.py``, BSD-3-Clause), which implements:

    K. He, X. Zhang, S. Ren, J. Sun. "Deep Residual Learning for Image
    Recognition." CVPR 2016. arXiv:1512.03385.

Every Conv2d/BatchNorm2d/MaxPool2d/AdaptiveAvgPool2d becomes its 1D counterpart
with the same channels, kernel length, stride and padding; the ECG leads are the
input channels. Weight initialisation follows torchvision.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import BasicBlock1d, EcgClassifier, conv1d_k1
from .registry import register_model

__all__ = ["ResNet1d", "resnet18", "resnet34"]

_PAPER = (
    "He, Zhang, Ren, Sun. Deep Residual Learning for Image Recognition. CVPR 2016. arXiv:1512.03385"
)
_SOURCE = "1D port of torchvision.models.resnet (https://github.com/pytorch/vision, BSD-3-Clause)"


class ResNet1d(EcgClassifier):
    """ResNet with basic blocks over 1D signals ``(batch, num_leads, num_samples)``.

    Top-level submodules, in forward order (see ``stages``): ``stem`` (conv k7 s2
    + BN + ReLU + max-pool k3 s2), ``layer1``..``layer4``, ``global_pool``
    (adaptive average pooling + flatten) and ``head`` (linear classifier).
    """

    def __init__(
        self,
        layers: list[int],
        num_classes: int,
        num_leads: int = 12,
        num_samples: int = 1000,
        zero_init_residual: bool = False,
        base_width: int = 64,
    ):
        super().__init__()
        block = BasicBlock1d
        self.num_classes = num_classes
        self.num_leads = num_leads
        self.num_samples = num_samples
        # Stage widths are base_width × (1, 2, 4, 8): torchvision's 64/128/256/512 by
        # default; smaller values give the narrow variants used for quick tests.
        w = base_width
        self.inplanes = w

        self.stem = nn.Sequential(
            nn.Conv1d(num_leads, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm1d(self.inplanes),
            nn.ReLU(),
            nn.MaxPool1d(kernel_size=3, stride=2, padding=1),
        )
        self.layer1 = self._make_layer(block, w, layers[0])
        self.layer2 = self._make_layer(block, 2 * w, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * w, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * w, layers[3], stride=2)
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool1d(1), nn.Flatten(1))
        self.num_features = 8 * w * block.expansion
        self.head = nn.Linear(self.num_features, num_classes)

        self.stages = ["stem", "layer1", "layer2", "layer3", "layer4", "global_pool", "head"]
        self.default_cam_layer = "layer4"

        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm1d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        # Zero-initialise the last BN in each residual branch so that each block
        # starts as an identity (Goyal et al. 2017), as torchvision's option.
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock1d):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(self, block: type[BasicBlock1d], planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1d_k1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm1d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, num_leads, num_samples)`` -> pooled features ``(batch, num_features)``."""
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        return self.global_pool(x)


@register_model(default_cfg=dict(family="resnet1d", paper=_PAPER, source=_SOURCE))
def resnet18(num_classes: int, num_leads: int = 12, num_samples: int = 1000,
             zero_init_residual: bool = False, **kwargs) -> ResNet1d:
    """1D ResNet-18 (basic blocks, depths [2, 2, 2, 2]), a port of torchvision's resnet18."""
    return ResNet1d([2, 2, 2, 2], num_classes=num_classes, num_leads=num_leads,
                    num_samples=num_samples, zero_init_residual=zero_init_residual, **kwargs)


@register_model(default_cfg=dict(family="resnet1d", paper=_PAPER, source=_SOURCE))
def resnet34(num_classes: int, num_leads: int = 12, num_samples: int = 1000,
             zero_init_residual: bool = False, **kwargs) -> ResNet1d:
    """1D ResNet-34 (basic blocks, depths [3, 4, 6, 3]), a port of torchvision's resnet34."""
    return ResNet1d([3, 4, 6, 3], num_classes=num_classes, num_leads=num_leads,
                    num_samples=num_samples, zero_init_residual=zero_init_residual, **kwargs)
