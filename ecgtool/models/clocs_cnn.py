"""clocs_cnn: the encoder of Kiyasseh et al.'s CLOCS, as a classifier family.

Paper: Kiyasseh D, Zhu T, Clifton DA. CLOCS: Contrastive Learning of Cardiac Signals Across Space, Time,
and Patients. ICML 2021 (PMLR 139:5606-5615).
Reference code (read, not copied; CC BY-NC-SA 4.0): danikiyasseh/CLOCS @ e58fb4f, ``prepare_network.py``
``cnn_network_contrastive`` l.20-100 (the encoder) and ``second_cnn_network`` l.102-113 (the linear-eval /
fine-tune head), dropout from ``prepare_models.py`` l.22-23 (docs/pretrain-methods.md §2.2, §2.4).

What follows the reference exactly:
* three stages, channels ``num_leads`` -> 4 -> 16 -> 32, each Conv1d(kernel 7, stride 3, no padding, with
  bias) -> BatchNorm1d -> ReLU -> MaxPool1d(2) -> Dropout(0.1);
* flatten (32 x T') -> Linear(32 * T', ``embedding_dim``) with ``embedding_dim=256`` (the class default):
  the embedding, with no nonlinearity after it; ``forward_features`` returns it (``num_features`` =
  ``embedding_dim``), which is what CLOCS' loss acts on;
* the classifier ``head`` is a single Linear(``embedding_dim``, classes) (``second_cnn_network``);
* PyTorch's default initialisation everywhere (the reference sets none).

Differences:
* Input length: the reference hard-codes 2500 samples (T' = 10, flatten 320). Here T' is computed from
  ``num_samples`` (floor-mode convolutions and pools, as the reference's), so the encoder works at any length
  of at least :data:`MIN_SAMPLES` (388, the shortest that leaves one step after the third pool); a shorter
  ``num_samples`` is refused with a ValueError. At 2500 samples the model is the reference's, parameter for
  parameter.
* Leads: the reference is single-lead (every CLOCS view is one lead); ``num_leads`` only changes the first
  convolution's input channels. The class defaults to 1 lead and 2500 samples as the reference does; the
  registered variant takes the registry's usual defaults (12 leads, 1000 samples), and ``ecgtool pretrain
  clocs-*`` passes the view's lead count and length explicitly.
* The reference runs its view loop inside the encoder's ``forward``; here the encoder takes one input and
  the objective (``ecgtool.train.pretrain.clocs``) loops over the views.
* ReLUs are not in-place (hook safety, as in every ecgtool model). The stages are named modules
  (``stage1``..``stage3``, ``flatten``, ``embed``, ``head``); ``default_cam_layer = "stage3"``, whose output
  is ``(B, 32, T')`` along the time axis.
* The reference's linear evaluation leaves BatchNorm and dropout in training mode while the encoder is
  frozen (docs §2.4); that is a property of its training loop, not of the architecture, and is not copied.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ecgtool.models.layers import EcgClassifier
from ecgtool.models.registry import register_model

__all__ = ["CLOCSCNN", "clocs_cnn", "MIN_SAMPLES", "clocs_length"]

_PAPER = ("Kiyasseh D, Zhu T, Clifton DA. CLOCS: Contrastive Learning of Cardiac Signals Across Space, Time, "
          "and Patients. ICML 2021")
_SOURCE = ("danikiyasseh/CLOCS prepare_network.py cnn_network_contrastive, second_cnn_network "
           "(architecture re-implemented)")

CHANNELS = (4, 16, 32)
KERNEL, STRIDE, POOL = 7, 3, 2


def clocs_length(num_samples: int) -> int:
    """Time steps T' left after the three stages for an input of ``num_samples`` (0 or less: too short)."""
    n = num_samples
    for _ in CHANNELS:
        n = (n - KERNEL) // STRIDE + 1 if n >= KERNEL else 0
        n //= POOL
    return n


def _min_samples() -> int:
    n = 1
    for _ in CHANNELS:  # invert one stage: the shortest input whose pooled output is n steps
        n = KERNEL + STRIDE * (POOL * n - 1)
    return n


MIN_SAMPLES = _min_samples()  # 388


class ClocsStage(nn.Sequential):
    """Conv1d(k7, s3, no padding, bias) -> BatchNorm1d -> ReLU -> MaxPool1d(2) -> Dropout."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__(
            nn.Conv1d(in_channels, out_channels, KERNEL, stride=STRIDE),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(),
            nn.MaxPool1d(POOL),
            nn.Dropout(dropout),
        )


class CLOCSCNN(EcgClassifier):
    """Three conv stages -> flatten -> Linear embedding (the features) -> Linear head."""

    def __init__(self, num_classes: int, num_leads: int = 1, num_samples: int = 2500, embedding_dim: int = 256,
                 dropout: float = 0.1):
        super().__init__()
        steps = clocs_length(num_samples)
        if steps < 1:
            raise ValueError(f"clocs_cnn needs num_samples >= {MIN_SAMPLES} (its three unpadded stride-3 "
                             f"convolutions and pools leave nothing of {num_samples} samples)")
        self.num_classes, self.num_leads, self.num_samples = num_classes, num_leads, num_samples
        self.stage1 = ClocsStage(num_leads, CHANNELS[0], dropout)
        self.stage2 = ClocsStage(CHANNELS[0], CHANNELS[1], dropout)
        self.stage3 = ClocsStage(CHANNELS[1], CHANNELS[2], dropout)
        self.flatten = nn.Flatten(1)
        self.flat_features = CHANNELS[-1] * steps  # 320 at 2500 samples, as in the reference
        self.embed = nn.Linear(self.flat_features, embedding_dim)
        self.num_features = embedding_dim
        self.head = nn.Linear(embedding_dim, num_classes)
        self.stages = ["stage1", "stage2", "stage3", "flatten", "embed", "head"]
        self.default_cam_layer = "stage3"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.num_samples:
            raise ValueError(f"clocs_cnn was built for {self.num_samples} samples (its flatten size is fixed); "
                             f"got {x.shape[-1]}")
        return self.embed(self.flatten(self.stage3(self.stage2(self.stage1(x)))))


@register_model(default_cfg=dict(family="clocs_cnn", paper=_PAPER, source=_SOURCE, input_view={"name": "raw"}))
def clocs_cnn(num_classes: int, num_leads: int = 12, num_samples: int = 1000, **kwargs) -> CLOCSCNN:
    """CLOCS' encoder: 3 x (Conv1d k7 s3, BN, ReLU, MaxPool 2, Dropout 0.1), 4-16-32 ch, Linear to 256, linear head."""
    return CLOCSCNN(num_classes, num_leads, num_samples, **kwargs)
