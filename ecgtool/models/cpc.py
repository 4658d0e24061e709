"""cpc / cpc_strided: the encoder of Mehari & Strodthoff's CPC for ECG, as a classifier family.

Paper: Mehari T, Strodthoff N. Self-supervised representation learning from 12-lead ECG data.
Comput. Biol. Med. 141 (2022) 105114 (arXiv 2103.12676).
Reference code (read, not copied; GPL-3.0): tmehari/ecg-selfsupervised @ 956c6c1,
``clinical_ts/cpc.py`` (``CPCEncoder``, ``CPCModel``, ``AdaptiveConcatPoolRNN``) configured as in
``main_cpc_lightning.py`` l.62-93 and the README's commands A1/A2 (docs/pretrain-methods.md §1).

What follows the reference exactly:
* ``cpc`` (the reported "4FC+2LSTM+2FC", ``--fc-encoder``): four Conv1d(kernel 1, stride 1, no bias)
  -> BatchNorm1d -> ReLU layers of width 512 (a per-sample MLP, downsampling 1; at 100 Hz a frame is
  one sample); ``cpc_strided`` (the code's non-fc alternative): kernels [10, 4, 4, 4], strides
  [2, 2, 2, 2], padding (k - 1) // 2, downsampling 16;
* context network: ``nn.LSTM(512, 512, num_layers=2, batch_first=True)``, unidirectional, no dropout;
* fine-tune head: concat pooling of the LSTM outputs over time in the order (average, max, last step)
  -> 3 x 512 = 1536 features, then BN(1536) -> Dropout(0.25) -> Linear(1536, 512) -> ReLU -> BN(512) ->
  Dropout(0.5) -> Linear(512, classes) (``lin_ftrs_head=[512]``, ``ps_head=0.5``, ``bn_head``);
  ``head_hidden=0`` gives the ``--linear-eval`` head, a single Linear(1536, classes);
* PyTorch's default initialisation everywhere (the reference sets none).

Differences: ReLUs are not in-place (hook safety, as in every ecgtool model); the LSTM sits in a small
wrapper module (``rnn``) that takes and returns channels-first maps ``(B, C, T')``, so that its output
is the Grad-CAM layer (``default_cam_layer = "rnn"``, the map the head pools). The pretraining
projection (``proj``, Linear(512, 512) without bias) is not part of this model: it belongs to the
objective (``ecgtool.train.pretrain.cpc``), as the reference drops it when it builds the classifier.
``encode`` and ``context`` expose the per-step encoder output z and the context c for that objective.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ecgtool.models.layers import ConvBnAct1d, EcgClassifier, mlp_head
from ecgtool.models.registry import register_model

_PAPER = ("Mehari T, Strodthoff N. Self-supervised representation learning from 12-lead ECG data. "
          "Comput. Biol. Med. 141:105114, 2022")
_SOURCE = "tmehari/ecg-selfsupervised clinical_ts/cpc.py, main_cpc_lightning.py (architecture re-implemented)"


class ContextLSTM(nn.Module):
    """A batch-first unidirectional LSTM over channels-first maps: ``(B, C, T') -> (B, hidden, T')``."""

    def __init__(self, in_channels: int, hidden: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(in_channels, hidden, num_layers=num_layers, batch_first=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(z.transpose(1, 2))
        return out.transpose(1, 2)


class ConcatPoolRNN(nn.Module):
    """``(B, C, T) -> (B, 3C)``: average over time, maximum over time, the last step (the reference's order)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=-1), x.amax(dim=-1), x[:, :, -1]], dim=1)


class CPCClassifier(EcgClassifier):
    """Frame encoder (conv-BN-ReLU layers) -> LSTM context network -> concat pooling -> head."""

    def __init__(self, kernels: list[int], strides: list[int], num_classes: int, num_leads: int = 12,
                 num_samples: int = 1000, width: int = 512, hidden: int = 512, rnn_layers: int = 2,
                 head_hidden: int = 512, dropout: float = 0.5):
        super().__init__()
        layers = []
        channels = num_leads
        for k, s in zip(kernels, strides):
            layers.append(ConvBnAct1d(channels, width, k, stride=s))
            channels = width
        self.encoder = nn.Sequential(*layers)
        self.rnn = ContextLSTM(width, hidden, rnn_layers)
        self.pool = ConcatPoolRNN()
        self.num_features = 3 * hidden
        self.head = (mlp_head(self.num_features, num_classes, (head_hidden,), dropout) if head_hidden
                     else nn.Linear(self.num_features, num_classes))
        self.stages = ["encoder", "rnn", "pool", "head"]
        self.default_cam_layer = "rnn"
        self.downsampling = 1
        for s in strides:
            self.downsampling *= s
        self.z_dim, self.c_dim = width, hidden

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's per-step output z ``(B, T', width)`` of an input ``(B, leads, samples)``."""
        return self.encoder(x).transpose(1, 2)

    def context(self, z: torch.Tensor) -> torch.Tensor:
        """The LSTM's context c ``(B, T', hidden)`` of z ``(B, T', width)`` (step t sees steps <= t only)."""
        return self.rnn(z.transpose(1, 2)).transpose(1, 2)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.rnn(self.encoder(x)))


@register_model(default_cfg=dict(family="cpc", paper=_PAPER, source=_SOURCE))
def cpc(num_classes: int, num_leads: int = 12, num_samples: int = 1000, **kwargs) -> CPCClassifier:
    """CPC's reported encoder: 4 x (Conv1d k1 512, BN, ReLU), 2-layer LSTM 512, concat-pool 2FC head."""
    return CPCClassifier([1] * 4, [1] * 4, num_classes, num_leads, num_samples, **kwargs)


@register_model(default_cfg=dict(family="cpc", paper=_PAPER, source=_SOURCE))
def cpc_strided(num_classes: int, num_leads: int = 12, num_samples: int = 1000, **kwargs) -> CPCClassifier:
    """CPC's strided encoder: Conv1d kernels [10, 4, 4, 4], strides 2 (x16 down), 2-layer LSTM 512, 2FC head."""
    return CPCClassifier([10, 4, 4, 4], [2, 2, 2, 2], num_classes, num_leads, num_samples, **kwargs)
