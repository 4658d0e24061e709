"""Dual-path RNN (DPRNN) for single-lead atrial-fibrillation detection.

Paper: M. Wang, S. Rahardja, P. Fränti, S. Rahardja. "Single-lead ECG recordings
modeling for end-to-end recognition of atrial fibrillation with dual-path RNN."
Biomedical Signal Processing and Control 79 (2023) 104067 (online 2022).

Official code: https://github.com/wangmou21/ECG_RNN (``model.py``, class
``dprnn_model``, which builds on ``asteroid.masknn.recurrent.DPRNNBlock``). Read
for reference and re-implemented here; no code was copied.

What follows the official code exactly (CinC 2017 setting: 1 lead, 4 classes):

* front end ``Conv1d(1, 64, kernel_size=8, stride=4, padding=4)`` with bias and
  no activation;
* segmentation of the ``(B, 64, T)`` feature map into chunks of 45 frames with
  hop 22 (``chunk_size // 2``), the sequence being zero-padded by one chunk on
  each side (``unfold`` with ``padding=chunk_size``), giving ``(B, 64, 45, S)``;
* 4 dual-path blocks exactly as asteroid's ``DPRNNBlock`` defaults: intra-chunk
  BiLSTM(64 -> 64 per direction) -> Linear(128, 64) -> global layer norm (gLN,
  one mean/variance over channels x chunk x chunks, per-channel affine,
  eps 1e-8, here ``GroupNorm(1, 64, eps=1e-8)`` which is the same operation) ->
  residual add; then the same along the chunks axis (inter-chunk BiLSTM ->
  Linear -> gLN -> residual add);
* overlap-add back to ``(B, 64, T)`` (``fold``) *without* normalisation by the
  number of overlapping chunks (official behaviour; ``ola_normalize=True``
  divides by the per-frame overlap count, making segmentation + overlap-add an
  exact identity);
* adaptive average pooling of the time axis to 4 bins -> 64 x 4 = 256 features
  (the official ``F.adaptive_avg_pool2d(out, (64, 4))`` on a ``(B, 64, T)``
  tensor), then ``Linear(256, 256)`` -> ReLU -> dropout 0.5 -> ``Linear(256,
  classes)``.

The official code passes ``dropout=0.5`` to each block's single-layer
``nn.LSTM``, where PyTorch ignores it (dropout only acts between stacked
layers). This is reproduced (no dropout inside the blocks by default);
``block_dropout`` adds a real dropout on the RNN outputs if wanted.

Deliberate differences / design choices (configurable):

* the official head calls ``F.dropout(x, 0.5)`` which stays active in eval
  mode; here an ``nn.Dropout`` is used, active only in training;
* multi-lead input: the leads are the input channels of the front-end conv
  (with ``num_leads=1`` the parameter count equals the official model);
* the official training recipe is not implemented (neither here nor in
  ``ecgtool train``): each training record is tiled to at least 20 s and a
  random 20 s crop at 300 Hz (6000 samples) is drawn per epoch (validation on
  whole records, batch 1); mixup of each batch with a shuffled copy of itself
  (lambda ~ Beta(1, 1)); a large-margin softmax loss (``LargeMarginSoftmaxV1``,
  lambda 0.3: cross-entropy plus a term pushing the non-target softmax towards
  uniform); AdamW at 1e-3 decayed by 0.92 per epoch (``ExponentialLR``), early
  stopping after 15 epochs without a lower validation loss, 5-fold stratified
  cross-validation (``train.py``, ``model.py``, ``config.py``, ``loss_set.py``). Models trained here see
  whatever crops, augmentation and loss ``ecgtool train`` uses.

Input view: raw signal; the segmentation into chunks and the overlap-add are
computed inside ``forward``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import EcgClassifier
from .registry import register_model

__all__ = ["DualPathBlock", "DualPathRNN", "OverlapAdd", "Segmentation", "dprnn"]

_PAPER = (
    "Wang, Rahardja, Fränti, Rahardja. Single-lead ECG recordings modeling for end-to-end "
    "recognition of atrial fibrillation with dual-path RNN. Biomedical Signal Processing and "
    "Control 79:104067, 2023 (BSPC 2022)"
)
_SOURCE = (
    "Re-implemented after the official code https://github.com/wangmou21/ECG_RNN (model.py, "
    "asteroid DPRNNBlock), read for reference"
)


def segment_chunks(x: torch.Tensor, chunk_size: int, hop_size: int) -> torch.Tensor:
    """``(B, C, T)`` -> overlapping chunks ``(B, C, chunk_size, n_chunks)``.

    The sequence is zero-padded by ``chunk_size`` frames on both sides (as the
    official ``unfold(..., padding=(chunk_size, 0))``).
    """
    b, c, _ = x.shape
    out = F.unfold(
        x.unsqueeze(-1), kernel_size=(chunk_size, 1), padding=(chunk_size, 0), stride=(hop_size, 1)
    )
    return out.reshape(b, c, chunk_size, out.shape[-1])


def overlap_add(chunks: torch.Tensor, n_frames: int, hop_size: int, normalize: bool = False) -> torch.Tensor:
    """Inverse of :func:`segment_chunks`: ``(B, C, K, S)`` -> ``(B, C, n_frames)``.

    Overlapping chunks are summed (``fold``). With ``normalize`` the sum is
    divided by the number of chunks covering each frame, so that
    ``overlap_add(segment_chunks(x)) == x`` exactly.
    """
    b, c, k, s = chunks.shape
    out = F.fold(
        chunks.reshape(b, c * k, s), (n_frames, 1), kernel_size=(k, 1), padding=(k, 0), stride=(hop_size, 1)
    ).reshape(b, c, n_frames)
    if normalize:
        ones = torch.ones(1, k, s, dtype=chunks.dtype, device=chunks.device)
        count = F.fold(ones, (n_frames, 1), kernel_size=(k, 1), padding=(k, 0), stride=(hop_size, 1))
        out = out / count.reshape(1, 1, n_frames).clamp_min(1.0)
    return out


class Segmentation(nn.Module):
    """Parameter-free module wrapping :func:`segment_chunks`."""

    def __init__(self, chunk_size: int, hop_size: int):
        super().__init__()
        self.chunk_size = chunk_size
        self.hop_size = hop_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return segment_chunks(x, self.chunk_size, self.hop_size)

    def extra_repr(self) -> str:
        return f"chunk_size={self.chunk_size}, hop_size={self.hop_size}"


class OverlapAdd(nn.Module):
    """Parameter-free module wrapping :func:`overlap_add` (``n_frames`` given at call)."""

    def __init__(self, hop_size: int, normalize: bool = False):
        super().__init__()
        self.hop_size = hop_size
        self.normalize = normalize

    def forward(self, chunks: torch.Tensor, n_frames: int) -> torch.Tensor:
        return overlap_add(chunks, n_frames, self.hop_size, self.normalize)

    def extra_repr(self) -> str:
        return f"hop_size={self.hop_size}, normalize={self.normalize}"


class _PathRNN(nn.Module):
    """BiLSTM -> Linear projection -> global layer norm, applied along one axis."""

    def __init__(self, channels: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.rnn = nn.LSTM(channels, hidden, num_layers=1, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.proj = nn.Linear(2 * hidden, channels)
        self.norm = nn.GroupNorm(1, channels, eps=1e-8)  # == asteroid GlobLN

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        """``seq``: ``(N, L, C)`` -> projected RNN output ``(N, L, C)`` (norm applied by caller)."""
        out, _ = self.rnn(seq)
        return self.proj(self.dropout(out))


class DualPathBlock(nn.Module):
    """One dual-path block on ``(B, C, K, S)``: intra-chunk then inter-chunk RNN, each residual."""

    def __init__(self, channels: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.intra = _PathRNN(channels, hidden, dropout)
        self.inter = _PathRNN(channels, hidden, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, k, s = x.shape
        # intra-chunk: sequences of length K, one per (batch, chunk)
        y = x.permute(0, 3, 2, 1).reshape(b * s, k, c)
        y = self.intra(y).reshape(b, s, k, c).permute(0, 3, 2, 1)
        x = x + self.intra.norm(y)
        # inter-chunk: sequences of length S, one per (batch, position in chunk)
        y = x.permute(0, 2, 3, 1).reshape(b * k, s, c)
        y = self.inter(y).reshape(b, k, s, c).permute(0, 3, 1, 2)
        return x + self.inter.norm(y)


class DualPathRNN(EcgClassifier):
    """DPRNN classifier over ``(batch, num_leads, num_samples)``.

    Top-level submodules in forward order (see ``stages``): ``frontend`` (conv),
    ``segment`` (chunking), ``blocks`` (dual-path blocks), ``overlap_add``,
    ``global_pool`` (adaptive average pool to ``pool_bins`` + flatten) and
    ``head`` (FC -> ReLU -> dropout -> FC).
    """

    def __init__(
        self,
        num_classes: int,
        num_leads: int = 1,
        num_samples: int = 3000,
        channels: int = 64,
        hidden_size: int = 64,
        chunk_size: int = 45,
        hop_size: int | None = None,
        num_blocks: int = 4,
        block_dropout: float = 0.0,
        pool_bins: int = 4,
        fc_dim: int | None = None,
        head_dropout: float = 0.5,
        ola_normalize: bool = False,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.num_leads = num_leads
        self.num_samples = num_samples
        hop_size = hop_size if hop_size is not None else chunk_size // 2
        self.chunk_size, self.hop_size = chunk_size, hop_size
        self.num_features = channels * pool_bins
        fc_dim = fc_dim if fc_dim is not None else self.num_features

        self.frontend = nn.Conv1d(num_leads, channels, kernel_size=8, stride=4, padding=4)
        self.segment = Segmentation(chunk_size, hop_size)
        self.blocks = nn.Sequential(*[DualPathBlock(channels, hidden_size, block_dropout) for _ in range(num_blocks)])
        self.overlap_add = OverlapAdd(hop_size, normalize=ola_normalize)
        self.global_pool = nn.Sequential(nn.AdaptiveAvgPool1d(pool_bins), nn.Flatten(1))
        self.head = nn.Sequential(
            nn.Linear(self.num_features, fc_dim), nn.ReLU(), nn.Dropout(head_dropout), nn.Linear(fc_dim, num_classes)
        )
        self.stages = ["frontend", "segment", "blocks", "overlap_add", "global_pool", "head"]
        self.default_cam_layer = "frontend"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, num_leads, num_samples)`` -> pooled features ``(batch, num_features)``."""
        x = self.frontend(x)
        n_frames = x.shape[-1]
        x = self.segment(x)
        x = self.blocks(x)
        x = self.overlap_add(x, n_frames)
        return self.global_pool(x)


@register_model(
    default_cfg=dict(
        family="dprnn",
        paper=_PAPER,
        source=_SOURCE,
        input_view={"name": "raw"},
    )
)
def dprnn(num_classes: int, num_leads: int = 12, num_samples: int = 1000, **kwargs) -> DualPathRNN:
    """Dual-path RNN (conv 64 k8 s4, chunks of 45 at 50% overlap, 4 intra/inter BiLSTM blocks, overlap-add, FC 256)."""
    return DualPathRNN(num_classes=num_classes, num_leads=num_leads, num_samples=num_samples, **kwargs)
