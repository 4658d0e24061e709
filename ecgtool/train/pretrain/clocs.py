"""CLOCS pretraining (``ecgtool pretrain clocs-cmsc | clocs-cmlc | clocs-cmsmlc``): patient-aware contrast
of views across space (leads) and time (adjacent segments).

Paper: Kiyasseh D, Zhu T, Clifton DA. CLOCS: Contrastive Learning of Cardiac Signals Across Space, Time,
and Patients. ICML 2021. Reference code (read, not copied; CC BY-NC-SA 4.0): danikiyasseh/CLOCS @ e58fb4f,
views ``prepare_dataset.py`` ``my_dataset_contrastive.__getitem__`` l.523-600, loss
``prepare_miscellaneous.py`` ``obtain_contrastive_loss`` l.47-144 (docs/pretrain-methods.md §2).

What follows the reference:
* views: CMSC = the two adjacent, non-overlapping halves of a record; CMLC = each lead of one window;
  CMSMLC = each lead x each half, ordered lead-major (lead 0 half 0, lead 0 half 1, lead 1 half 0, ...);
* one encoder shared by all views, run once per view (so BatchNorm sees one view per batch, as the
  reference's loop over views does);
* for every unordered pair of views (a, b): cosine similarities ``s_ij = cos(h_a[i], h_b[j]) / 0.1``;
  the same-patient matrix P (from ``patients``; the diagonal is always positive); the terms
  ``-mean_i log softmax_row(s)[i, i]``, ``-mean_i log softmax_col(s)[i, i]`` and, where the batch holds two
  records of one patient, the off-diagonal same-patient terms (row- and column-normalised); each term's
  denominator holds every record of the other view, positives included; the sum over pairs is divided
  by (number of terms: 2, or 4 with off-diagonal positives) x (number of pairs).

Deviations, on purpose:
* The reference assigns ``loss = loss_diag1 + loss_diag2`` inside the loop over view pairs
  (prepare_miscellaneous.py l.129) where the division by the number of pairs shows it meant ``+=``: only
  the last pair trains (for CMLC over 12 leads, leads 10 and 11, scaled by 1/66). Here every pair adds
  to the loss (the paper's intent). For CMSC (one pair) the two agree.
* The reference's off-diagonal terms take one direction per same-patient pair, the anchor at the lower
  batch index (upper triangle row-normalised, lower triangle column-normalised; its comments l.133/137
  say a term is missing "for symmetry"). That depends on the order of the batch. By default
  (``symmetric=True``) both directions count: the row term averages over every ordered off-diagonal
  same-patient pair, and so does the column term, which makes the loss invariant to a permutation of
  the batch. ``symmetric=False`` gives the reference's triangles (still summed over all pairs).
* Inputs: ecgtool stores are already normalised by ``prep``; the reference's per-view min-max scaling
  to [0, 1] is not applied, so that pretraining and fine-tuning see the same input distribution.
* Embedding: the reference's encoder ends in Linear(320, E) and the loss acts on that embedding (there is
  no separate projection head). A registered backbone ends in pooled features and its own classifier
  head, so here a Linear(num_features, ``embedding_dim``) = 256 (the reference class's default E) owned by
  the objective maps ``forward_features`` to the embedding; it is not in the encoder checkpoint.
  ``embedding_dim=0`` contrasts ``forward_features`` directly.

How the views feed a registered backbone (the reference's encoder is single-lead, 2500 samples; ours
is any registered model) is decided by the backbone's own ``num_leads``:
* a **single-lead** backbone (``num_leads=1``; faithful to the reference): every view is one lead.
  CMLC/CMSMLC: each lead in ``view_leads`` (default: all of ``leads``) is a view. CMSC: every lead in
  ``view_leads`` of every record is an instance of its own (B x leads instances) whose two halves are the
  views; the leads of one record share its patient, so they are positives of each other (with no
  ``patients`` every record is its own patient). ``train --init`` then needs a 1-lead model
  (``train ... --leads II`` or similar) with the same arguments.
* a **multi-lead** backbone (``num_leads == len(leads)``): CMSC views are the halves with every lead;
  CMLC/CMSMLC views keep one lead of ``view_leads`` and zero the others. The encoder then fine-tunes on
  12-lead inputs directly (``train --init``), but during pretraining it only ever saw one lead at a time
  in the lead modes, a shift from the all-lead inputs it is fine-tuned on.

Lengths: CMSC and CMSMLC cut the input of ``samples`` into two halves of ``samples // 2``, and the
backbone must be built for that view length (its ``num_samples``, which the encoder checkpoint's input
spec records); CMLC views keep the full ``samples``. :func:`view_samples` gives the view length.
"""

from __future__ import annotations

from itertools import combinations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ecgtool.models.layers import EcgClassifier
from ecgtool.train.pretrain.base import PretrainObjective

__all__ = ["CLOCSObjective", "clocs_loss", "view_samples", "MODES"]

MODES = ("cmsc", "cmlc", "cmsmlc")


def view_samples(mode: str, samples: int) -> int:
    """Samples per view for an input of ``samples``: half of it for the segment modes, all of it for CMLC."""
    if mode not in MODES:
        raise ValueError(f"unknown CLOCS mode {mode!r} (expected one of {', '.join(MODES)})")
    return samples // 2 if mode in ("cmsc", "cmsmlc") else samples


def clocs_loss(h: torch.Tensor, patients: torch.Tensor | None = None, temperature: float = 0.1,
               symmetric: bool = True) -> torch.Tensor:
    """CLOCS' contrastive loss of embeddings ``h (views, B, E)``; ``patients (B,)`` codes (None: every record
    its own patient). Sum over every unordered view pair, divided by terms x pairs (see the module doc)."""
    views, b = h.shape[0], h.shape[1]
    if views < 2:
        raise ValueError("CLOCS needs at least two views")
    if patients is None:
        patients = torch.arange(b, device=h.device)
    same = patients.view(-1, 1) == patients.view(1, -1)
    eye = torch.eye(b, dtype=torch.bool, device=h.device)
    off = same & ~eye
    if symmetric:
        off_row = off_col = off
    else:
        off_row, off_col = torch.triu(off, 1), torch.tril(off, -1)
    has_off = bool(off.any())
    hn = F.normalize(h, dim=-1, eps=1e-8)
    total = h.new_zeros(())
    pairs = list(combinations(range(views), 2))
    for a, c in pairs:
        logits = hn[a] @ hn[c].T / temperature  # (B, B): view a's records x view c's records
        row = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # log(S_ij / sum_k S_ik)
        col = logits - torch.logsumexp(logits, dim=0, keepdim=True)  # log(S_ij / sum_k S_kj)
        total = total - row.diagonal().mean() - col.diagonal().mean()
        if has_off:
            total = total - row[off_row].mean() - col[off_col].mean()
    return total / ((4 if has_off else 2) * len(pairs))


class CLOCSObjective(PretrainObjective):
    """CLOCS (CMSC, CMLC or CMSMLC) around a registered encoder; views fed at the encoder's own lead count."""

    def __init__(self, encoder: EcgClassifier, *, fs: float, leads: list[str], samples: int, mode: str = "cmsc",
                 embedding_dim: int = 256, temperature: float = 0.1, view_leads: list[str] | None = None,
                 symmetric: bool = True):
        super().__init__(encoder, fs=fs, leads=leads, samples=samples)
        self.view_length = view_samples(mode, self.samples)
        self.mode, self.method = mode, f"clocs-{mode}"
        if not isinstance(temperature, (int, float)) or not 0.0 < temperature < float("inf"):
            raise ValueError(f"temperature must be a positive number, not {temperature!r}")  # 0: every logit infinite
        self.temperature, self.symmetric = float(temperature), bool(symmetric)
        kwargs = getattr(encoder, "model_kwargs", {})
        num_leads = kwargs.get("num_leads", len(self.leads))
        if num_leads == 1:
            self.single_lead = True
        elif num_leads == len(self.leads):
            self.single_lead = False
        else:
            raise ValueError(f"CLOCS feeds the backbone one lead or all {len(self.leads)} leads; it was built for "
                             f"{num_leads}")
        if kwargs.get("num_samples", self.view_length) != self.view_length:
            raise ValueError(f"CLOCS {mode} views are {self.view_length} samples of the {self.samples}-sample input; "
                             f"build the backbone with num_samples={self.view_length}, not {kwargs['num_samples']}")
        names = list(self.leads) if view_leads is None else list(view_leads)
        missing = [n for n in names if n not in self.leads]
        if missing or not names:
            raise ValueError(f"view leads {', '.join(missing) or '(none)'} are not among the input leads "
                             f"{', '.join(self.leads)}")
        self.view_leads = names
        self.register_buffer("lead_index", torch.tensor([self.leads.index(n) for n in names]), persistent=False)
        self.embedding_dim = int(embedding_dim)
        self.embed = nn.Linear(encoder.num_features, self.embedding_dim) if self.embedding_dim else nn.Identity()
        if mode == "cmlc" and len(names) < 2:
            raise ValueError("CLOCS cmlc needs at least two view leads")

    def views(self, x: torch.Tensor, patients: torch.Tensor | None) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The views (each a backbone input) of ``x (B, C, T)`` and the patient code of each instance."""
        b = x.shape[0]
        if patients is None:
            patients = torch.arange(b, device=x.device)
        n = self.view_length
        segments = [x[..., :n], x[..., n:2 * n]] if self.mode != "cmlc" else [x]
        if self.mode == "cmsc" and not self.single_lead:
            return segments, patients
        if self.mode == "cmsc":  # every (record, lead) an instance, its halves the views
            k = len(self.view_leads)
            views = [s.index_select(1, self.lead_index).reshape(b * k, 1, n) for s in segments]
            return views, patients.repeat_interleave(k)
        views = []
        for lead in self.lead_index.tolist():  # lead-major, then segment, as the reference orders CMSMLC
            for s in segments:
                if self.single_lead:
                    views.append(s[:, lead:lead + 1])
                else:
                    keep = torch.zeros(1, s.shape[1], 1, dtype=s.dtype, device=s.device)
                    keep[0, lead] = 1
                    views.append(s * keep)
        return views, patients

    def forward(self, x: torch.Tensor, patients: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if x.shape[-1] < (2 * self.view_length if self.mode != "cmlc" else self.view_length):
            raise ValueError(f"CLOCS {self.mode} needs inputs of {self.samples} samples; got {x.shape[-1]}")
        views, pids = self.views(x, patients)
        h = torch.stack([self.embed(self.encoder.forward_features(v)) for v in views])
        loss = clocs_loss(h, pids, self.temperature, self.symmetric)
        with torch.no_grad():
            hn = F.normalize(h.detach(), dim=-1, eps=1e-8)
            cos = torch.stack([(hn[a] * hn[c]).sum(-1).mean() for a, c in combinations(range(len(views)), 2)]).mean()
        return {"loss": loss, "positive_cosine": cos}

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "mode": self.mode, "views": "single-lead" if self.single_lead else "all-leads",
                "view_leads": list(self.view_leads), "view_samples": self.view_length,
                "embedding_dim": self.embedding_dim, "temperature": self.temperature, "symmetric": self.symmetric,
                "loss_over": "all view pairs"}
