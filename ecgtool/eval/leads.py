"""Reduced-lead evaluation: a model run on a subset of its leads, the others zeroed (``eval --leads``).

A 12-lead model asked about lead I reads lead I from the store (by name) and sees zeros on its other
eleven leads; a lead-I student asked about lead I runs as it always does. The store then needs only the
kept leads, so a 12-lead model can be scored on a single-lead recording. Zeros are what a missing lead
is after the store's normalisation (a z-scored lead has mean 0), the convention of reduced-lead
benchmarks (PhysioNet/CinC 2021 scored models on recordings with the missing leads zero-filled).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn as nn

from ecgtool.data.inputs import InputSpec
from ecgtool.errors import ConfigError


def reduced_input(spec: InputSpec, leads) -> tuple[InputSpec, list[int]]:
    """``spec`` reading only ``leads`` (names, kept in the model's order), and their positions among its leads."""
    unknown = [lead for lead in leads if lead not in spec.leads]
    if unknown:
        raise ConfigError(f"the model reads leads {', '.join(spec.leads)}; {', '.join(unknown)} "
                          f"{'is' if len(unknown) == 1 else 'are'} not among them", "leads")
    positions = [i for i, lead in enumerate(spec.leads) if lead in leads]
    norm = dict(spec.normalisation)
    if norm.get("method") == "dataset" and len(norm["mean"]) == len(spec.leads):  # statistics in the model's lead order
        norm = {**norm, "mean": [norm["mean"][i] for i in positions], "std": [norm["std"][i] for i in positions]}
    return replace(spec, leads=tuple(spec.leads[i] for i in positions), normalisation=norm), positions


class ZeroedLeads(nn.Module):
    """``model`` fed its kept leads at their ``positions`` among ``n_leads``, zeros elsewhere; channels after
    the leads (an input view's extra channels) pass through."""

    def __init__(self, model: nn.Module, positions: list[int], n_leads: int):
        super().__init__()
        self.model, self.n_leads = model, n_leads
        self.register_buffer("positions", torch.tensor(positions), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = len(self.positions)
        full = x.new_zeros(x.shape[0], self.n_leads + x.shape[1] - k, x.shape[-1])
        full[:, self.positions] = x[:, :k]
        full[:, self.n_leads:] = x[:, k:]
        return self.model(full)
