"""IM-ECG: the ECG as a one-channel image, dual-kernel SE residual blocks, multi-branch final stage.

Paper: IM-ECG, an interpretable framework for arrhythmia detection using
multi-lead ECG, Expert Systems with Applications (2023). There is no official
code; the project notes (``/work/shared/MODELS.md``) summarise what the paper
fixes, and the abstract could not be retrieved in full here, so everything not
listed under "from the paper" below was designed for this implementation.

From the paper
--------------
* The ECG ``(B, leads, T)`` is viewed as a one-channel 2D image
  ``(B, 1, leads, T)`` (``x.unsqueeze(1)`` inside ``forward``).
* Dual-kernel residual blocks: a k x n "region" kernel spanning neighbouring
  leads and time, then a 1 x n kernel along time only.
* Squeeze-and-excitation channel attention in the blocks.
* A multi-branch final stage with several temporal kernel sizes.
* Grad-CAM on the last 2D feature map gives lead-and-time saliency.

Designed here (configurable by keyword arguments)
-------------------------------------------------
* Stem: Conv2d 1 -> 32 with kernel (1, 15), stride (1, 2), + BN + ReLU, then
  max-pool (1, 3) stride (1, 2): temporal only, leads untouched
  (``stem_width``, ``stem_kernel``).
* Dual-kernel block: region conv (``region_leads`` x n, default 3 x 7, stride
  (1, s), "same" padding) -> BN -> ReLU -> temporal conv (1 x n) -> BN -> SE
  (ratio 16, no-bias linear layers) -> + shortcut -> ReLU; the shortcut is a
  1x1 conv (stride (1, s)) + BN when the shape changes, identity otherwise.
* Three stages of ``depths`` = (1, 1, 1) blocks with ``widths`` = (32, 64, 128)
  and temporal strides (1, 2, 2) (``kernel`` n = 7).
* Final multi-branch stage: ``branch_kernels`` = (3, 5, 7) parallel
  dual-kernel blocks (region 3 x k then 1 x k), each 128 -> ``branch_width``
  = 64 channels with temporal stride 2; outputs concatenated along channels
  -> ``(B, 3 * 64, leads, T')``. This concatenation is ``multi_branch``'s output
  and the default Grad-CAM layer.
* No layer ever strides or pools across the leads axis, so the Grad-CAM map
  has exactly ``num_leads`` rows.
* Head: global average pooling over leads and time -> Dropout(0.2) -> Linear.
* Kaiming-normal (fan_out) init for convs, BN weight 1 / bias 0.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import EcgClassifier, SqueezeExcite
from .registry import register_model

__all__ = ["IMECG", "DualKernelBlock", "MultiBranch", "im_ecg"]

_PAPER = (
    "IM-ECG: an interpretable framework for arrhythmia detection using multi-lead ECG. "
    "Expert Systems with Applications, 2023"
)
_SOURCE = "No official code; re-implemented from the paper's description (design choices documented in im_ecg.py)"


class DualKernelBlock(nn.Module):
    """Region conv (k x n, across leads and time) -> 1 x n temporal conv, BN/ReLU, SE, residual."""

    def __init__(self, cin: int, cout: int, kernel: int = 7, region_leads: int = 3, stride: int = 1,
                 se_ratio: int = 16):
        super().__init__()
        self.region = nn.Conv2d(cin, cout, (region_leads, kernel), stride=(1, stride),
                                padding=(region_leads // 2, kernel // 2), bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.temporal = nn.Conv2d(cout, cout, (1, kernel), padding=(0, kernel // 2), bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.se = SqueezeExcite(cout, se_ratio, bias=False)
        self.shortcut: nn.Module
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=(1, stride), bias=False), nn.BatchNorm2d(cout)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.region(x)))
        out = self.se(self.bn2(self.temporal(out)))
        return self.relu(out + self.shortcut(x))


class MultiBranch(nn.Module):
    """Parallel dual-kernel blocks with different temporal kernels; outputs concatenated on channels."""

    def __init__(self, cin: int, branch_width: int, kernels: list[int], region_leads: int, stride: int,
                 se_ratio: int):
        super().__init__()
        self.branches = nn.ModuleList(
            [DualKernelBlock(cin, branch_width, k, region_leads, stride, se_ratio) for k in kernels]
        )
        self.out_channels = branch_width * len(kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], dim=1)


class IMECG(EcgClassifier):
    """IM-ECG over ``(batch, num_leads, num_samples)``; the image view ``(B, 1, leads, T)`` is made in ``forward``."""

    cam_leads_axis = True  # the image never pools across leads: Grad-CAM gives a profile per lead

    def __init__(
        self,
        num_classes: int,
        num_leads: int = 12,
        num_samples: int = 1000,
        stem_width: int = 32,
        stem_kernel: int = 15,
        widths: tuple[int, ...] | list[int] = (32, 64, 128),
        depths: tuple[int, ...] | list[int] = (1, 1, 1),
        strides: tuple[int, ...] | list[int] = (1, 2, 2),
        kernel: int = 7,
        region_leads: int = 3,
        branch_kernels: tuple[int, ...] | list[int] = (3, 5, 7),
        branch_width: int = 64,
        branch_stride: int = 2,
        se_ratio: int = 16,
        dropout: float = 0.2,
    ):
        super().__init__()
        if not (len(widths) == len(depths) == len(strides)):
            raise ValueError("widths, depths and strides must have the same length")
        self.num_classes = num_classes
        self.num_leads = num_leads
        self.num_samples = num_samples

        self.stem = nn.Sequential(
            nn.Conv2d(1, stem_width, (1, stem_kernel), stride=(1, 2), padding=(0, stem_kernel // 2), bias=False),
            nn.BatchNorm2d(stem_width),
            nn.ReLU(),
            nn.MaxPool2d((1, 3), stride=(1, 2), padding=(0, 1)),
        )
        cin = stem_width
        self.stages = ["stem"]
        for i, (w, d, s) in enumerate(zip(widths, depths, strides)):
            blocks = []
            for j in range(d):
                blocks.append(DualKernelBlock(cin, w, kernel, region_leads, s if j == 0 else 1, se_ratio))
                cin = w
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.stages.append(f"layer{i + 1}")
        self.multi_branch = MultiBranch(cin, branch_width, [int(k) for k in branch_kernels], region_leads,
                                        branch_stride, se_ratio)
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.num_features = self.multi_branch.out_channels
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))
        self.stages += ["multi_branch", "global_pool", "head"]
        self.default_cam_layer = "multi_branch"

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, num_leads, num_samples)`` -> pooled features ``(batch, num_features)``."""
        x = x.unsqueeze(1)  # (B, 1, leads, T): the ECG as a one-channel image
        for name in self.stages[:-1]:
            x = getattr(self, name)(x)
        return x


@register_model(default_cfg=dict(
    family="im_ecg", paper=_PAPER, source=_SOURCE,
    input_view={"name": "raw", "in_model": "one-channel image (B, 1, leads, T) via unsqueeze"},
))
def im_ecg(num_classes: int, num_leads: int = 12, num_samples: int = 1000, **kwargs) -> IMECG:
    """IM-ECG (ESWA 2023): ECG as a 1-channel leads x time image, dual-kernel SE residual blocks, 3-branch final stage."""
    return IMECG(num_classes=num_classes, num_leads=num_leads, num_samples=num_samples, **kwargs)
