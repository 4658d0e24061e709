"""Multi-module recurrent CNN + transformer for ECG classification.

Paper: "Multi-module Recurrent Convolutional Neural Network with Transformer
Encoder for ECG Arrhythmia Classification", IEEE EMBS International Conference
on Biomedical and Health Informatics (BHI) 2021.

Official code: https://github.com/Vidhiwar/multimodule-ecg-classification
(``models/resnet_lstm.py``, ``models/resnet_lstm_phy2017.py``, ``ecg_phy2017.py``).
Read for reference and re-implemented here; no code was copied.

What follows the official code:

* the record is cut into ``num_segments`` (10, the reference's ``time_steps``)
  consecutive segments;
* spectrogram module: per segment a 2D CIFAR-style ResNet (``conv3x3 -> 16``,
  BN, ReLU, three stages of basic blocks with 16/32/64 channels, strides
  1/2/2, depth ``6n+2``), global average pool -> 64-d per segment; a 6-layer
  bidirectional LSTM (hidden 64) over the segments;
* raw-segment module: per segment a 1D ResNet (``Conv1d(k3) -> 16``, BN, ReLU,
  3 basic blocks at 16, 3 at 32 (stride 2), 3 at 64 (stride 2)), global
  average pool -> 64-d per segment; a 2-layer LSTM (hidden 64) over the
  segments, last layer's final hidden state as token;
* optional age/sex module: ``Linear(100, 128) -> Linear(128, 64)`` for the age
  encoding and ``Linear(50, 128) -> Linear(128, 64)`` for the sex encoding
  (input sizes as in the reference; no activation in between, as there);
* the module tokens (64-d each) fused by ``nn.TransformerEncoder`` (d_model 64,
  8 heads, 3 layers, PyTorch defaults: feed-forward 2048, dropout 0.1, ReLU,
  post-norm), averaged over tokens, then ``Linear(64, 32) -> Linear(32,
  classes)`` (no activation in between, as in the reference).

Deliberate differences / design choices (configurable):

* **Spectrograms are computed inside the model** with ``torch.stft`` (Hann
  window, ``n_fft`` 64 or the largest power of two that fits a segment, hop
  ``n_fft // 4``, zero-padded centred frames), as ``log(1 + |STFT|)``; each lead
  is one input channel of the 2D ResNet. The reference instead loads
  pre-rendered 3-channel (RGB) STFT images resized to 90x90.
* ``spec_depth`` defaults to 20 (n = 3 blocks per stage, as the 1D ResNet of
  the raw module); the reference script's default ``--depth`` is 110, which
  is available but slow on CPU.
* The spectrogram BiLSTM token: the reference takes ``h_n[-1]`` (the backward
  direction of the last layer only), which leaves the last layer's forward
  direction without any gradient; here the token is the mean of the last
  layer's forward and backward final states (same 64-d size, same parameters).
* The age/sex module is **off by default** (``use_demographics=False``): the
  ecgtool CLI cannot feed demographics yet. When enabled, call
  ``model(x, age=..., sex=...)`` with encodings of size ``age_dim`` /
  ``sex_dim``; it then adds two tokens to the transformer input.
* Unused layers of the reference (``maxpool1``, ``fc_concat``) are omitted.
* Multi-lead input: leads are the input channels of both ResNets' first conv.
  A trailing remainder of ``num_samples`` not divisible by ``num_segments`` is
  dropped.

Input view: raw signal; segmentation and spectrograms are computed in the model.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .layers import BasicBlock1d, BasicBlock2d, EcgClassifier
from .registry import register_model

__all__ = ["MultiModuleRCNN", "multimodule_rcnn"]

_PAPER = (
    "Multi-module Recurrent Convolutional Neural Network with Transformer Encoder for ECG "
    "Arrhythmia Classification. IEEE EMBS BHI 2021"
)
_SOURCE = (
    "Re-implemented after the official code https://github.com/Vidhiwar/multimodule-ecg-classification "
    "(models/resnet_lstm.py), read for reference"
)


def _cifar_stages(width: int, blocks_per_stage: int, conv, norm, block) -> tuple[list[nn.Sequential], int]:
    """Three CIFAR-ResNet stages of basic blocks at ``width``, 2x and 4x (1D or 2D by ``conv``/``norm``/``block``):
    the first block of stages 2 and 3 strides 2, with a 1x1 projection wherever the shape changes."""
    stages, inplanes = [], width
    for i, planes in enumerate([width, 2 * width, 4 * width]):
        blocks = []
        for j in range(blocks_per_stage):
            stride = 2 if (i > 0 and j == 0) else 1
            down = None
            if stride != 1 or inplanes != planes:
                down = nn.Sequential(conv(inplanes, planes, 1, stride=stride, bias=False), norm(planes))
            blocks.append(block(inplanes, planes, stride, down))
            inplanes = planes
        stages.append(nn.Sequential(*blocks))
    return stages, inplanes


def _split_segments(x: torch.Tensor, num_segments: int) -> torch.Tensor:
    """``(B, L, N)`` -> ``(B * S, L, N // S)`` (trailing remainder dropped)."""
    b, l, n = x.shape
    seg = n // num_segments
    x = x[..., : seg * num_segments].reshape(b, l, num_segments, seg)
    return x.permute(0, 2, 1, 3).reshape(b * num_segments, l, seg)


class SegmentSpectrogram(nn.Module):
    """``(B, L, N)`` -> log-magnitude STFT per segment ``(B * S, L, F, T)`` (no parameters)."""

    def __init__(self, num_segments: int, segment_len: int, n_fft: int = 64, hop_length: int | None = None):
        super().__init__()
        if segment_len < 4:
            raise ValueError(f"Segments of {segment_len} samples are too short for a spectrogram.")
        n_fft = min(n_fft, 2 ** math.floor(math.log2(segment_len)))
        self.num_segments, self.n_fft = num_segments, n_fft
        self.hop_length = hop_length if hop_length is not None else max(1, n_fft // 4)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seg = _split_segments(x, self.num_segments)  # (B*S, L, n)
        bs, l, n = seg.shape
        spec = torch.stft(
            seg.reshape(bs * l, n), n_fft=self.n_fft, hop_length=self.hop_length,
            window=self.window.to(x.dtype), center=True, pad_mode="constant", return_complex=True,
        )
        spec = torch.log1p(spec.abs())
        return spec.reshape(bs, l, spec.shape[-2], spec.shape[-1])

    def extra_repr(self) -> str:
        return f"num_segments={self.num_segments}, n_fft={self.n_fft}, hop_length={self.hop_length}"


class SpectrogramResNet(nn.Module):
    """2D CIFAR ResNet (depth 6n+2) on each segment's spectrogram -> ``(B, S, 64)``."""

    def __init__(self, in_channels: int, num_segments: int, depth: int = 20, width: int = 16):
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError("spec_depth must be 6n+2 (e.g. 20, 32, 44, 56, 110).")
        n = (depth - 2) // 6
        self.num_segments = num_segments
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        (self.layer1, self.layer2, self.layer3), self.out_dim = _cifar_stages(width, n, nn.Conv2d, nn.BatchNorm2d, BasicBlock2d)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(spec))))
        x = self.pool(x).flatten(1)
        return x.reshape(-1, self.num_segments, self.out_dim)


class RawSegmentResNet(nn.Module):
    """1D ResNet on each raw segment; output laid out along time as ``(B, 64, S * P)``."""

    def __init__(self, in_channels: int, num_segments: int, width: int = 16, blocks_per_stage: int = 3):
        super().__init__()
        self.num_segments = num_segments
        self.stem = nn.Sequential(
            nn.Conv1d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm1d(width), nn.ReLU()
        )
        (self.layer1, self.layer2, self.layer3), self.out_dim = _cifar_stages(
            width, blocks_per_stage, nn.Conv1d, nn.BatchNorm1d, BasicBlock1d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        seg = _split_segments(x, self.num_segments)
        y = self.layer3(self.layer2(self.layer1(self.stem(seg))))  # (B*S, 64, P)
        p = y.shape[-1]
        return y.reshape(b, self.num_segments, self.out_dim, p).permute(0, 2, 1, 3).reshape(b, self.out_dim, -1)


class SpectrogramRNN(nn.Module):
    """Bidirectional multi-layer LSTM over segment features -> one token ``(B, hidden)``."""

    def __init__(self, input_size: int = 64, hidden: int = 64, num_layers: int = 6):
        super().__init__()
        self.lstm = nn.LSTM(input_size, hidden, num_layers=num_layers, batch_first=True, bidirectional=True)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        _, (h, _) = self.lstm(seq)
        return 0.5 * (h[-2] + h[-1])  # last layer: forward and backward final states


class RawSegmentRNN(nn.Module):
    """Average-pool each segment's feature map, then an LSTM over segments -> token ``(B, hidden)``."""

    def __init__(self, num_segments: int, input_size: int = 64, hidden: int = 64, num_layers: int = 2):
        super().__init__()
        self.num_segments = num_segments
        self.lstm = nn.LSTM(input_size, hidden, num_layers=num_layers, batch_first=True)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        b, c, t = fmap.shape
        seq = fmap.reshape(b, c, self.num_segments, t // self.num_segments).mean(-1).transpose(1, 2)
        _, (h, _) = self.lstm(seq)
        return h[-1]


class DemographicsMLP(nn.Module):
    """Optional age/sex module: two tokens ``(B, 2, d)`` from age and sex encodings."""

    def __init__(self, age_dim: int = 100, sex_dim: int = 50, hidden: int = 128, d_model: int = 64):
        super().__init__()
        self.age = nn.Sequential(nn.Linear(age_dim, hidden), nn.Linear(hidden, d_model))
        self.sex = nn.Sequential(nn.Linear(sex_dim, hidden), nn.Linear(hidden, d_model))

    def forward(self, age: torch.Tensor, sex: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.age(age), self.sex(sex)], dim=1)


class TokenFusion(nn.Module):
    """Transformer encoder over module tokens ``(B, n_tokens, d)``, averaged -> ``(B, d)``."""

    def __init__(self, d_model: int = 64, nhead: int = 8, num_layers: int = 3, dim_feedforward: int = 2048,
                 dropout: float = 0.1):
        super().__init__()
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward=dim_feedforward, dropout=dropout,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.encoder(tokens).mean(dim=1)


class MultiModuleRCNN(EcgClassifier):
    """Spectrogram ResNet+BiLSTM and raw-segment ResNet1D+LSTM tokens fused by a transformer.

    Top-level submodules in forward order (see ``stages``): ``spectrogram``,
    ``spec_cnn``, ``spec_rnn``, ``raw_cnn``, ``raw_rnn``, [``demographics``],
    ``fusion`` and ``head``.
    """

    def __init__(
        self,
        num_classes: int,
        num_leads: int = 1,
        num_samples: int = 3000,
        num_segments: int = 10,
        n_fft: int = 64,
        hop_length: int | None = None,
        spec_depth: int = 20,
        spec_lstm_layers: int = 6,
        raw_blocks_per_stage: int = 3,
        raw_lstm_layers: int = 2,
        d_model: int = 64,
        nhead: int = 8,
        num_transformer_layers: int = 3,
        dim_feedforward: int = 2048,
        transformer_dropout: float = 0.1,
        use_demographics: bool = False,
        age_dim: int = 100,
        sex_dim: int = 50,
    ):
        super().__init__()
        if d_model != 64:
            raise ValueError("d_model is fixed at 64 (4 x the ResNets' base width 16).")
        if num_samples < 4 * num_segments:
            raise ValueError(f"num_samples ({num_samples}) too short for {num_segments} segments.")
        self.num_classes, self.num_leads, self.num_samples = num_classes, num_leads, num_samples
        self.use_demographics = use_demographics
        seg_len = num_samples // num_segments

        self.spectrogram = SegmentSpectrogram(num_segments, seg_len, n_fft=n_fft, hop_length=hop_length)
        self.spec_cnn = SpectrogramResNet(num_leads, num_segments, depth=spec_depth)
        self.spec_rnn = SpectrogramRNN(self.spec_cnn.out_dim, d_model, spec_lstm_layers)
        self.raw_cnn = RawSegmentResNet(num_leads, num_segments, blocks_per_stage=raw_blocks_per_stage)
        self.raw_rnn = RawSegmentRNN(num_segments, self.raw_cnn.out_dim, d_model, raw_lstm_layers)
        if use_demographics:
            self.demographics = DemographicsMLP(age_dim, sex_dim, 128, d_model)
        self.fusion = TokenFusion(d_model, nhead, num_transformer_layers, dim_feedforward, transformer_dropout)
        self.num_features = d_model
        self.head = nn.Sequential(nn.Linear(d_model, d_model // 2), nn.Linear(d_model // 2, num_classes))

        self.stages = ["spectrogram", "spec_cnn", "spec_rnn", "raw_cnn", "raw_rnn"]
        if use_demographics:
            self.stages.append("demographics")
        self.stages += ["fusion", "head"]
        self.default_cam_layer = "raw_cnn"

        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # reference initialisation of the 2D ResNet
                fan = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor, age: torch.Tensor | None = None,
                         sex: torch.Tensor | None = None) -> torch.Tensor:
        """``(batch, num_leads, num_samples)`` -> fused features ``(batch, num_features)``."""
        spec_tok = self.spec_rnn(self.spec_cnn(self.spectrogram(x)))
        raw_tok = self.raw_rnn(self.raw_cnn(x))
        tokens = [raw_tok.unsqueeze(1), spec_tok.unsqueeze(1)]
        if self.use_demographics:
            if age is None or sex is None:
                raise ValueError("use_demographics=True: pass age and sex encodings to the model.")
            tokens.append(self.demographics(age, sex))
        return self.fusion(torch.cat(tokens, dim=1))

    def forward(self, x: torch.Tensor, age: torch.Tensor | None = None,
                sex: torch.Tensor | None = None) -> torch.Tensor:
        # EcgClassifier's forward plus the optional demographics inputs
        return self.forward_head(self.forward_features(x, age, sex))


@register_model(
    default_cfg=dict(
        family="multimodule_rcnn",
        paper=_PAPER,
        source=_SOURCE,
        input_view={
            "name": "raw",
            "in_model": "10 segments; per-segment log-magnitude STFT (torch.stft) and raw segments",
        },
    )
)
def multimodule_rcnn(num_classes: int, num_leads: int = 12, num_samples: int = 1000,
                     **kwargs) -> MultiModuleRCNN:
    """Multi-module recurrent CNN: spectrogram ResNet+BiLSTM and raw ResNet1D+LSTM tokens fused by a transformer."""
    return MultiModuleRCNN(num_classes=num_classes, num_leads=num_leads, num_samples=num_samples, **kwargs)
