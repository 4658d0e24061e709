"""The interface every pretraining objective follows (agreed for issue 13).

An objective wraps an encoder (a registered model, an ``EcgClassifier`` built by
``create_model``) and owns whatever else its method trains (projection heads,
predictors, decoders, context networks). The pretrain loop calls
``loss = objective(x, patients)["loss"]; loss.backward(); opt.step(); objective.after_step()``.
Only the encoder's weights (minus ``head.*``) become the encoder checkpoint
(``ecgtool.checkpoint.encoder_checkpoint(objective.backbone, ...)``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ecgtool.models.layers import EcgClassifier


class PretrainObjective(nn.Module):
    """A self-supervised objective around an encoder (a registered model, an EcgClassifier)."""

    method: str = ""

    def __init__(self, encoder: EcgClassifier, *, fs: float, leads: list[str], samples: int):
        super().__init__()
        self.encoder = encoder
        self.fs = float(fs)
        self.leads = list(leads)
        self.samples = int(samples)

    def forward(self, x: torch.Tensor, patients: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``x (B, C, T)`` float; ``patients (B,)`` int64 codes of the store's patient_id (same code = same
        patient), or None. Returns ``{"loss": scalar, **other scalar terms to log}``. Random draws come from
        the global torch RNG (the loop saves and restores it for an exact --resume)."""
        raise NotImplementedError

    def after_step(self) -> None:
        """Called after every optimiser step (e.g. an EMA update); default no-op."""

    @property
    def backbone(self) -> EcgClassifier:
        """The encoder whose weights (minus ``head.*``) become the encoder checkpoint."""
        return self.encoder

    def hyperparameters(self) -> dict:
        """JSON-serialisable hyperparameters, recorded in the checkpoint."""
        return {"method": self.method, "fs": self.fs, "leads": list(self.leads), "samples": self.samples}
