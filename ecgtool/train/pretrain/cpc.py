"""CPC pretraining (``ecgtool pretrain cpc``): InfoNCE on a future step of the encoder's own output.

Paper: Mehari T, Strodthoff N. Self-supervised representation learning from 12-lead ECG data.
Comput. Biol. Med. 141 (2022) 105114 (arXiv 2103.12676); CPC: van den Oord et al., arXiv 1807.03748.
Reference code (read, not copied; GPL-3.0): tmehari/ecg-selfsupervised @ 956c6c1, ``clinical_ts/cpc.py``
``CPCModel.forward`` / ``cpc_loss`` l.76-140 with the README's pretraining command A1
(``--negatives-from-same-seq-only``; docs/pretrain-methods.md §1.2).

What follows the reference exactly:
* one offset only, ``steps`` = 12: for every step ``i < T' - steps`` the prediction is ``proj(c_i)`` and
  its positive the encoder output ``z_{i+steps}`` (steps 1..11 are not predicted);
* ``proj`` = one Linear(context width -> z width) without bias, owned here, not part of the encoder;
* score = the raw dot product (no normalisation, no temperature);
* 128 negatives for each (record, step), drawn uniformly with replacement from the *same* record's
  other steps (every step but the positive ``i + steps``), fresh for every step;
* cross-entropy with the positive at index 0, averaged over the batch, then **summed** over the steps
  (``reduction="sum"``, the reference's ``loss +=``): the loss grows with T' (about 988 terms at 1000
  samples with the ``cpc`` encoder). ``reduction="mean"`` averages over steps instead, so the loss and the
  effective learning rate do not depend on the crop length; it is a deviation, off by default;
* z is not detached: the gradient reaches the encoder through predictions, positives and negatives.

Computation: the reference loops over steps and gathers the negatives' vectors; here the prediction of
every step is scored against every step of its record in one matrix product and the scores of the
positive and of the drawn negatives are gathered from it. The values (and gradients) are the same dot
products; the memory is ``B x P x T'`` scores instead of ``B x P x 129 x D`` gathered vectors. The
random draws come from the global torch RNG on the input's device (one ``randint`` per forward), so they
differ from the reference's sequence of draws.

Encoders. With the ``cpc``/``cpc_strided`` backbone (``ecgtool.models.cpc``), z is its frame encoder's
output and c its own LSTM: the encoder checkpoint holds both (the reference fine-tunes encoder and LSTM).
With any other registered backbone (``--backbone xresnet1d50``), z is the map its ``default_cam_layer``
produces inside ``forward_features`` (captured by a forward hook; ``(B, C, T')``, a 4-D ``(B, C, H, T')``
map is averaged over H), and the context network is an LSTM owned by this objective (``hidden`` 512,
``rnn_layers`` 2, as the reference's): it is *not* in the encoder checkpoint, whose backbone pools its
own features downstream. Layers of the backbone after its CAM layer (and its head) get no gradient.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ecgtool.models.cpc import CPCClassifier, ContextLSTM
from ecgtool.models.layers import EcgClassifier
from ecgtool.train.pretrain.base import PretrainObjective

__all__ = ["CPCObjective", "sample_negatives", "info_nce"]


def sample_negatives(batch: int, length: int, steps: int, negatives: int, device=None) -> torch.Tensor:
    """Negative step indices ``(batch, length - steps, negatives)``: for prediction step ``i`` of a record,
    uniform draws with replacement over that record's steps ``0..length-1`` except the positive ``i + steps``."""
    positions = length - steps
    r = torch.randint(0, length - 1, (batch, positions, negatives), device=device)
    positive = torch.arange(steps, length, device=r.device).view(1, positions, 1)
    return r + (r >= positive).long()  # skip the positive: draws at or above it move up by one


def info_nce(z: torch.Tensor, pred: torch.Tensor, steps: int, negative_idx: torch.Tensor,
             reduction: str = "sum") -> tuple[torch.Tensor, torch.Tensor]:
    """CPC's InfoNCE of predictions ``pred (B, T', D)`` (``pred[:, i]`` predicts ``z[:, i + steps]``) against
    encoder outputs ``z (B, T', D)``, with negatives ``negative_idx (B, T' - steps, N)`` (steps of the same
    record). Returns the loss (cross-entropy averaged over the batch, summed or averaged over the steps)
    and the top-1 accuracy of the positive over batch x steps."""
    b, length, _ = z.shape
    positions = length - steps
    if positions < 1:
        raise ValueError(f"CPC needs more than {steps} encoder steps to predict {steps} ahead; got {length}")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', not {reduction!r}")
    scores = torch.matmul(pred[:, :positions], z.transpose(1, 2))  # (B, P, T'): every step of the record
    positive = torch.arange(steps, length, device=z.device).view(1, positions, 1).expand(b, positions, 1)
    logits = scores.gather(-1, torch.cat([positive, negative_idx], dim=-1))  # (B, P, 1 + N), positive first
    target = torch.zeros(b * positions, dtype=torch.long, device=z.device)
    ce = F.cross_entropy(logits.reshape(b * positions, -1), target, reduction="none").view(b, positions)
    per_step = ce.mean(dim=0)
    loss = per_step.sum() if reduction == "sum" else per_step.mean()
    accuracy = (logits.detach().argmax(dim=-1) == 0).float().mean()
    return loss, accuracy


class CPCObjective(PretrainObjective):
    """CPC around a registered encoder: frames z, LSTM context c, InfoNCE on ``proj(c_i)`` vs ``z_{i+steps}``."""

    method = "cpc"

    def __init__(self, encoder: EcgClassifier, *, fs: float, leads: list[str], samples: int, steps: int = 12,
                 negatives: int = 128, hidden: int = 512, rnn_layers: int = 2, reduction: str = "sum"):
        super().__init__(encoder, fs=fs, leads=leads, samples=samples)
        if steps < 1 or negatives < 1:
            raise ValueError("CPC needs steps >= 1 and negatives >= 1")
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', not {reduction!r}")
        self.steps, self.negatives, self.reduction = int(steps), int(negatives), reduction
        self.own_context = isinstance(encoder, CPCClassifier)
        if self.own_context:
            z_dim, c_dim = encoder.z_dim, encoder.c_dim
            self.hidden, self.rnn_layers = c_dim, encoder.rnn.lstm.num_layers
            self.rnn = None
        else:
            z_dim = self._probe_channels()
            self.hidden, self.rnn_layers = int(hidden), int(rnn_layers)
            self.rnn = ContextLSTM(z_dim, self.hidden, self.rnn_layers)
            c_dim = self.hidden
        self.proj = nn.Linear(c_dim, z_dim, bias=False)  # the reference's default: no bias ("original CPC")

    def _probe_channels(self) -> int:
        """Channels of the backbone's CAM-layer map, from one pass over zeros in eval mode (BN stats untouched)."""
        num_leads = getattr(self.encoder, "model_kwargs", {}).get("num_leads", len(self.leads))
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            with torch.no_grad():
                z = self._hooked(torch.zeros(1, num_leads, self.samples, device=_device_of(self.encoder)))
        finally:
            self.encoder.train(was_training)
        if z.shape[1] <= self.steps:  # refused while the options can still be named, not at the first batch
            raise ValueError(f"CPC predicts {self.steps} steps ahead but the encoder gives {z.shape[1]} steps for "
                             f"{self.samples} samples; use a longer crop or fewer steps")
        return z.shape[-1]

    def _hooked(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's ``default_cam_layer`` map during ``forward_features(x)``, as ``(B, T', C)``."""
        layer = self.encoder.get_submodule(self.encoder.default_cam_layer)
        store = {}
        handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("z", o))
        try:
            self.encoder.forward_features(x)
        finally:
            handle.remove()
        z = store["z"]
        if z.dim() == 4:
            z = z.mean(dim=2)
        if z.dim() != 3:
            raise ValueError(f"CPC needs a (batch, channels, time) map from {self.encoder.default_cam_layer!r}; "
                             f"it gives shape {tuple(z.shape)}")
        return z.transpose(1, 2)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z ``(B, T', D)`` and context c ``(B, T', hidden)`` of ``x (B, C, T)``."""
        if self.own_context:
            z = self.encoder.encode(x)
            return z, self.encoder.context(z)
        z = self._hooked(x)
        return z, self.rnn(z.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor, patients: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        z, c = self.encode(x)
        length = z.shape[1]
        if length <= self.steps:
            raise ValueError(f"CPC predicts {self.steps} steps ahead but the encoder gives {length} steps for "
                             f"{x.shape[-1]} samples; use a longer crop or fewer --steps")
        idx = sample_negatives(z.shape[0], length, self.steps, self.negatives, device=z.device)
        loss, accuracy = info_nce(z, self.proj(c), self.steps, idx, self.reduction)
        return {"loss": loss, "accuracy": accuracy}

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "steps": self.steps, "negatives": self.negatives,
                "negatives_from": "same record", "reduction": self.reduction, "hidden": self.hidden,
                "rnn_layers": self.rnn_layers, "projection_bias": False,
                "context": "backbone" if self.own_context else "objective",
                "z_layer": "encoder" if self.own_context else self.encoder.default_cam_layer}


def _device_of(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")
