"""Two-stream time + STFT network (the research notebook's "two-stream" variant).

Reference: the project's research notebook ("two-stream: time and frequency
domain"): the raw signal goes through a 1D ResNet-34 (the notebook's
time-domain baseline, "时序信号 & 一维模型", whose F1 0.8185 is the 1D
resnet34 run) and a per-lead STFT spectrogram
(``[batch, num_leads, data_length] =STFT=> [batch, num_leads, W, H] =>
resnet34``, Hamming window 100) through a 2D ResNet-34; the two are fused before
the classifier. Both backbones follow He et al., "Deep Residual Learning for
Image Recognition", CVPR 2016 (arXiv:1512.03385), in torchvision's layout
(https://github.com/pytorch/vision ``torchvision/models/resnet.py``, read for
reference, re-implemented; torchvision is not a dependency). There is no
official code for the two-stream model itself.

Follows the references exactly
------------------------------
* Frequency stream: 2D ResNet-34 as torchvision's ``resnet34`` without its
  ``fc``: conv 7x7 s2 p3 (no bias) + BN + ReLU + max-pool 3x3 s2 p1; BasicBlocks
  [3, 4, 6, 3] with widths 64/128/256/512, 3x3 convs, 1x1 conv + BN projection
  shortcuts on strided/widening blocks; global average pool. The input
  channels are the leads (so only ``conv1`` differs from torchvision:
  64 x num_leads x 7 x 7 weights). Kaiming-normal (fan_out) init as torchvision.
* Time stream: :class:`ecgtool.models.resnet1d.ResNet1d` (the 1D port of
  torchvision's ResNet) with depths [3, 4, 6, 3] (``time_depths``), its own
  classifier removed (replaced by identity).
* STFT with a Hamming window of 100 samples per lead (``stft_window``).
* Fusion: the two pooled vectors (512 + 512) are concatenated and fed to one
  Linear classifier.

Designed here (the notebook does not fix it; all configurable)
--------------------------------------------------------------
* STFT parameters beyond the window: ``n_fft`` = window length, hop = window // 2
  (scipy.signal.stft's default overlap), ``center=True`` with reflect padding
  (torch's default), magnitude compressed with ``log1p``. The spectrogram is
  computed inside ``forward`` (``torch.stft``), so training, evaluation,
  explanation and profiling all see the same view; its cost is not in thop's
  MAC count (it has no parameters and is not a conv/linear layer).
* Short inputs: the window is clamped to the input length at run time
  (``min(stft_window, T)``), hop stays ``max(1, window // 2)``, so 3 x 400
  or 2 x 250 inputs work; for 100 Hz x 1000 samples nothing changes.
* Spectrogram layout ``(B, leads, freq, frames)`` (frequency = height,
  frames = width).
* Time-stream depth: ResNet-34 ([3, 4, 6, 3]) as the notebook's time-domain
  baseline; ``time_depths=[2, 2, 2, 2]`` gives ResNet-18.
* No dropout before the classifier (``dropout=0.0``; configurable).
* Grad-CAM layer: ``time_stream.layer4`` (the time-aligned 1D map); the
  frequency stream's map (``freq_stream.layer4``) is frequency x frames, not
  leads x time.

Top-level modules (``stages``), in forward order: ``spectrogram`` (STFT, no
parameters), ``freq_stream``, ``time_stream``, ``head``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .layers import BasicBlock2d, EcgClassifier
from .registry import register_model
from .resnet1d import ResNet1d

__all__ = ["ResNet2dFeatures", "Spectrogram", "TwoStreamNet", "two_stream"]

_PAPER = (
    "Research notebook two-stream variant (time + per-lead STFT); backbones: He, Zhang, Ren, Sun. "
    "Deep Residual Learning for Image Recognition. CVPR 2016. arXiv:1512.03385"
)
_SOURCE = (
    "2D/1D ResNet-34 in torchvision's layout (https://github.com/pytorch/vision, read for reference, "
    "re-implemented); fusion per /work/shared/research-notebook.txt"
)


class Spectrogram(nn.Module):
    """Per-lead log-magnitude STFT: ``(B, L, T) -> (B, L, n_fft // 2 + 1, frames)``, Hamming window."""

    def __init__(self, window: int = 100, hop: int | None = None):
        super().__init__()
        self.window = int(window)
        self.hop = None if hop is None else int(hop)
        # Made once, as multimodule_rcnn's window: ONNX has no Hamming-window op for the exporter to emit at run time
        # (the same float32 values as before; a float64 input now gets them widened)
        self.register_buffer("hamming", torch.hamming_window(max(2, self.window), periodic=True), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, leads, t = x.shape
        win = max(2, min(self.window, t))  # clamp the window to the signal length
        hop = self.hop if self.hop is not None else max(1, win // 2)
        window = self.hamming.to(x.dtype) if win == self.hamming.shape[0] else \
            torch.hamming_window(win, periodic=True, dtype=x.dtype, device=x.device)  # a window clamped to a short input
        spec = torch.stft(
            x.reshape(b * leads, t), n_fft=win, hop_length=hop, win_length=win, window=window,
            center=True, pad_mode="reflect", return_complex=True,
        )
        mag = torch.log1p(spec.abs())
        return mag.reshape(b, leads, mag.shape[-2], mag.shape[-1])


class ResNet2dFeatures(nn.Module):
    """torchvision ResNet (basic blocks) without ``fc``: ``(B, C, H, W) -> (B, 8 * base_width)``."""

    def __init__(self, layers: list[int], in_channels: int, base_width: int = 64):
        super().__init__()
        w = base_width
        self.inplanes = w
        self.conv1 = nn.Conv2d(in_channels, w, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(w, layers[0])
        self.layer2 = self._make_layer(2 * w, layers[1], 2)
        self.layer3 = self._make_layer(4 * w, layers[2], 2)
        self.layer4 = self._make_layer(8 * w, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.num_features = 8 * w
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        layers = [BasicBlock2d(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock2d(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


class TwoStreamNet(EcgClassifier):
    """1D ResNet on the raw signal beside a 2D ResNet on its per-lead STFT; features concatenated -> Linear."""

    def __init__(
        self,
        num_classes: int,
        num_leads: int = 12,
        num_samples: int = 1000,
        stft_window: int = 100,
        stft_hop: int | None = None,
        freq_depths: tuple[int, ...] | list[int] = (3, 4, 6, 3),
        time_depths: tuple[int, ...] | list[int] = (3, 4, 6, 3),
        base_width: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.num_leads = num_leads
        self.num_samples = num_samples
        self.spectrogram = Spectrogram(stft_window, stft_hop)
        self.freq_stream = ResNet2dFeatures(list(freq_depths), num_leads, base_width)
        self.time_stream = ResNet1d(list(time_depths), num_classes=1, num_leads=num_leads,
                                    num_samples=num_samples, base_width=base_width)
        self.time_stream.head = nn.Identity()  # features only; the fused head classifies
        self.num_features = self.freq_stream.num_features + self.time_stream.num_features
        layers: list[nn.Module] = [nn.Dropout(dropout)] if dropout > 0 else []
        self.head = nn.Sequential(*layers, nn.Linear(self.num_features, num_classes))

        self.stages = ["spectrogram", "freq_stream", "time_stream", "head"]
        self.default_cam_layer = "time_stream.layer4"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, num_leads, num_samples)`` -> ``[freq features, time features]`` ``(batch, num_features)``."""
        f = self.freq_stream(self.spectrogram(x))
        t = self.time_stream(x)  # ResNet1d with identity head returns its pooled features
        return torch.cat([f, t], dim=1)


@register_model(default_cfg=dict(
    family="two_stream", paper=_PAPER, source=_SOURCE,
    input_view={"name": "raw", "in_model": "per-lead STFT (Hamming window 100, hop 50, log1p magnitude) "
                                           "for the 2D stream; raw signal for the 1D stream"},
))
def two_stream(num_classes: int, num_leads: int = 12, num_samples: int = 1000, **kwargs) -> TwoStreamNet:
    """Two-stream: 2D ResNet-34 on the per-lead STFT (Hamming 100) + 1D ResNet-34 on the raw signal, fused -> Linear."""
    return TwoStreamNet(num_classes=num_classes, num_leads=num_leads, num_samples=num_samples, **kwargs)
