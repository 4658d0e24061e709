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

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

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
    "EcgClassifier",
    "BeatWindows",
    "split_rpeak_marks",
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

    def auxiliary_losses(self) -> dict[str, torch.Tensor]:
        """Losses besides the classification loss that the last forward pass in training mode asks for.

        The contract: a ``dict`` name → scalar tensor (part of that pass's autograd graph),
        each term already multiplied by the model's own weight for it (a constructor
        argument, so the checkpoint's model kwargs record it; weight 0 leaves the term
        out). The call hands the terms over and forgets them, so a term is added to one
        step only and no graph outlives its step (nor blocks a ``deepcopy`` of the model).
        ``ecgtool train`` adds the sum of the terms to the classification loss of the same
        step — asking the unwrapped model, so under DDP and ``torch.compile`` alike — and
        logs each term's epoch mean as ``train_<name>`` in the history (``train_loss`` stays
        the classification loss alone, comparable with ``val_loss``). A forward pass in eval
        mode leaves no terms. The default is no terms; a model with terms stores them as
        ``self._auxiliary`` in its forward pass and overrides nothing.
        """
        return dict(self.__dict__.pop("_auxiliary", None) or {})

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(batch, num_features)`` -> logits ``(batch, num_classes)``."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def split_rpeak_marks(x: torch.Tensor, num_leads: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The leads and, under the ``rpeaks`` input view (``ecgtool.data.views``: one extra channel that is 1
    at each detected QRS complex), the marks ``(B, samples)``; None when ``x`` holds the leads alone."""
    if x.shape[1] == num_leads + 1:
        return x[:, :num_leads], x[:, -1]
    return x[:, :num_leads], None


@dataclass
class BeatWindows:
    """Heartbeat windows around the R peaks the ``rpeaks`` view marks, shared by the beat models.

    Each beat is the ``width`` samples starting ``pre`` samples before a marked peak (the
    signal is zero-padded at both ends); the first ``n_beats`` marks of a record are used,
    and a record with fewer leaves empty (all-zero, invalid) windows at the end. Without
    marks (a raw input, e.g. for profiling) the peaks are taken on a regular grid of
    ``grid`` samples, so the model still runs; training always supplies the marks.
    """

    n_beats: int
    pre: int
    width: int
    grid: int

    @classmethod
    def in_seconds(cls, fs: float, n_beats: int, pre: float = 0.25, post: float = 0.4, grid: float = 0.8) -> "BeatWindows":
        before = int(round(pre * fs))
        return cls(n_beats, before, before + int(round(post * fs)), max(1, int(round(grid * fs))))

    def peaks(self, marks: torch.Tensor | None, b: int, n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """The peak samples used for each of ``b`` records ``(B, k)``, k <= ``n_beats`` (the first marks, in
        order), and which of them are peaks ``(B, k)`` (a record with fewer marks has slots at sample 0).
        Fixed shapes, no per-record lists, so the model traces and exports (``ecgtool export``)."""
        if marks is None:
            grid = torch.arange(self.grid // 2, n, self.grid, device=device)[: self.n_beats]
            return grid.expand(b, -1), torch.ones(b, grid.shape[0], dtype=torch.bool, device=device)
        positions = torch.arange(n, device=device).expand(b, -1)
        key = torch.where(marks > 0.5, positions, n)  # unmarked samples sort after every marked one
        first = key.topk(min(self.n_beats, n), dim=1, largest=False, sorted=True).values
        found = first < n
        return torch.where(found, first, 0), found

    def cut(self, signal: torch.Tensor, marks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``signal (B, L, n)`` → windows ``(B, K, L, width)``, their validity ``(B, K)`` and peak samples ``(B, K)``
        (−1 for an empty window). A record without beats keeps one valid all-zero window, so no bag is empty."""
        b, leads, n = signal.shape
        padded = F.pad(signal, (self.pre, self.width - self.pre))
        p, found = self.peaks(marks, b, n, signal.device)
        k = p.shape[1]
        idx = (p.unsqueeze(-1) + torch.arange(self.width, device=signal.device)).reshape(b, 1, k * self.width)
        out = padded.gather(2, idx.expand(b, leads, k * self.width)).reshape(b, leads, k, self.width).transpose(1, 2)
        out = torch.where(found[:, :, None, None], out, torch.zeros((), dtype=out.dtype, device=out.device)).contiguous()
        peak = torch.where(found, p, -1)
        if k < self.n_beats:  # fewer grid points or samples than beats: empty windows at the end
            out = F.pad(out, (0, 0, 0, 0, 0, self.n_beats - k))
            found = torch.cat([found, found.new_zeros(b, self.n_beats - k)], dim=1)
            peak = F.pad(peak, (0, self.n_beats - k), value=-1)
        valid = torch.cat([torch.ones_like(found[:, :1]), found[:, 1:]], dim=1)  # the first window always counts
        return out, valid, peak

    def starts(self, x: torch.Tensor, num_leads: int) -> tuple[np.ndarray, np.ndarray]:
        """First sample ``(B, K)`` of each window the model cuts from ``x``, and whether it holds a beat ``(B, K)``."""
        _, marks = split_rpeak_marks(x, num_leads)
        _, valid, peak = self.cut(x[:, :1], marks)
        placed = (valid & (peak >= 0)).cpu().numpy()
        return (peak - self.pre).cpu().numpy(), placed
