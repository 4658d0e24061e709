"""Shared building blocks for the ECG model families.

Most are 1D ports of blocks in torchvision (https://github.com/pytorch/vision,
``torchvision/models/resnet.py`` and ``torchvision/models/mobilenetv2.py``,
BSD-3-Clause): every ``Conv2d``/``BatchNorm2d`` becomes ``Conv1d``/``BatchNorm1d``
with the same channel counts, kernel length, stride, padding and groups.
``BasicBlock2d`` is torchvision's 2D ``BasicBlock`` itself (for the families
that run a 2D ResNet on spectrograms), and ``SqueezeExcite`` is the
squeeze-and-excitation gate (Hu et al., CVPR 2018) over 1D or 2D maps.

One deliberate difference: activations are not in-place and the residual sum
is ``out = out + identity`` rather than ``out += identity``. This changes no
parameter or MAC count, and keeps forward/backward hooks (Grad-CAM) safe on any
layer.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = [
    "make_divisible",
    "conv1d_k3",
    "conv1d_k1",
    "ConvBnAct1d",
    "BasicBlock1d",
    "BasicBlock2d",
    "SqueezeExcite",
    "InvertedResidual1d",
    "ConcatPool1d",
    "mlp_head",
]


def make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` without going below 90% of ``v``.

    Identical to torchvision's ``_make_divisible`` (from the TF MobileNet code).
    """
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # make sure rounding down does not go down by more than 10%
        new_v += divisor
    return new_v


def conv1d_k3(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1) -> nn.Conv1d:
    """Kernel-3 convolution with padding (torchvision ``conv3x3``)."""
    return nn.Conv1d(
        in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation,
        groups=groups, bias=False, dilation=dilation,
    )


def conv1d_k1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv1d:
    """Kernel-1 convolution (torchvision ``conv1x1``)."""
    return nn.Conv1d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class ConvBnAct1d(nn.Sequential):
    """Conv1d (no bias) + BatchNorm1d + optional activation.

    1D version of torchvision's ``Conv2dNormActivation``: padding defaults to
    ``(kernel_size - 1) // 2 * dilation``. ``activation`` is ``"relu"``,
    ``"relu6"`` or ``None``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        dilation: int = 1,
        activation: str | None = "relu",
    ):
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        layers: list[nn.Module] = [
            nn.Conv1d(
                in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                dilation=dilation, groups=groups, bias=False,
            ),
            nn.BatchNorm1d(out_channels),
        ]
        if activation == "relu":
            layers.append(nn.ReLU())
        elif activation == "relu6":
            layers.append(nn.ReLU6())
        elif activation is not None:
            raise ValueError(f"Unknown activation {activation!r} (expected 'relu', 'relu6' or None).")
        super().__init__(*layers)
        self.out_channels = out_channels


class BasicBlock1d(nn.Module):
    """ResNet basic block (two kernel-3 convs), 1D port of torchvision's ``BasicBlock``."""

    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv1d_k3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm1d(planes)
        self.relu = nn.ReLU()
        self.conv2 = conv1d_k3(planes, planes)
        self.bn2 = nn.BatchNorm1d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out = out + identity
        return self.relu(out)


class BasicBlock2d(nn.Module):
    """ResNet basic block (two 3x3 convs, no bias), torchvision's 2D ``BasicBlock`` layout and key names.

    The caller builds the projection shortcut (``downsample``), as in torchvision
    and :class:`BasicBlock1d`.
    """

    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation over ``(B, C, T)`` or ``(B, C, H, W)``: mean over all but B and C,
    Linear(C -> C // ratio) -> ReLU -> Linear(-> C) -> sigmoid, channels rescaled.

    ``bias`` exists because the families differ: SE-ECGNet's official code has
    biased linears, IM-ECG's design (no official code) unbiased ones; the hidden
    width is ``max(1, C // ratio)`` in both.
    """

    def __init__(self, channels: int, ratio: int = 16, bias: bool = True):
        super().__init__()
        hidden = max(1, channels // ratio)
        self.fc1 = nn.Linear(channels, hidden, bias=bias)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=tuple(range(2, x.dim())))
        s = torch.sigmoid(self.fc2(self.act(self.fc1(s))))
        return x * s.view(*s.shape, *([1] * (x.dim() - 2)))


class InvertedResidual1d(nn.Module):
    """MobileNetV2 inverted residual block, 1D port of torchvision's ``InvertedResidual``.

    1x1 expansion (skipped when ``expand_ratio == 1``) -> depthwise conv ->
    linear 1x1 projection; identity shortcut when ``stride == 1`` and
    ``inp == oup``.
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: float, kernel_size: int = 3):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2 instead of {stride}")
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup

        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBnAct1d(inp, hidden_dim, kernel_size=1, activation="relu6"))  # pointwise
        layers.extend(
            [
                # depthwise
                ConvBnAct1d(hidden_dim, hidden_dim, kernel_size=kernel_size, stride=stride,
                            groups=hidden_dim, activation="relu6"),
                # pointwise-linear
                nn.Conv1d(hidden_dim, oup, 1, 1, 0, bias=False),
                nn.BatchNorm1d(oup),
            ]
        )
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class ConcatPool1d(nn.Module):
    """Global max-pool and average-pool over time, concatenated: ``(B, C, T) -> (B, 2C)`` (max first)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.amax(dim=-1), x.mean(dim=-1)], dim=1)


def mlp_head(in_features: int, num_classes: int, hidden: tuple[int, ...] = (128,), dropout: float = 0.5) -> nn.Sequential:
    """The PTB-XL benchmark's classifier head (fastai's ``bn_drop_lin`` chain).

    For each hidden layer: BatchNorm -> Dropout(dropout / 2) -> Linear -> ReLU; then
    BatchNorm -> Dropout(dropout) -> Linear to the classes.
    """
    sizes = [in_features, *hidden, num_classes]
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        layers += [nn.BatchNorm1d(n_in), nn.Dropout(dropout if last else dropout / 2), nn.Linear(n_in, n_out)]
        if not last:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class EcgClassifier(nn.Module):
    """The interface every registered model shares: features, then a classifier ``head``.

    Subclasses implement ``forward_features(x) -> (batch, num_features)`` and own a
    ``head`` module; pretraining, distillation and explanation reach the features
    through ``forward_features`` and the logits through ``forward_head``.

    What explain needs to know of a model (``models/explainable.py``) is declared
    here with defaults a model overrides: ``default_cam_layer`` (set in each
    ``__init__``), ``cam_leads_axis``, ``positions`` and ``attention``.
    """

    cam_leads_axis = False  # 4D activations (B, C, H, W) keep the leads on H

    def positions(self, layer_name: str, layer: nn.Module, x: torch.Tensor, shape: tuple):
        """Where the activation (of ``shape``) of ``layer`` for input ``x`` lies on the record:
        ``explainable.Spans``/``Instances``, or None for evenly along the time axis."""
        return None

    def attention(self, x: torch.Tensor):
        """``explainable.Attention`` of one forward pass over ``x``, or None (no attention over time)."""
        return None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(batch, num_features)`` -> logits ``(batch, num_classes)``."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))
