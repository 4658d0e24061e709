"""What each ``pretrain`` method is by default: its objective, backbone, reference input and optimisation.

The defaults are the official code's (docs/pretrain-methods.md has the line references); where the code is
silent or its values are placeholders, the choice is ours and says so. This module imports nothing heavy:
the CLI reads it for ``--help`` and ``pretrain --list``.

* ``fs`` and ``seconds``: the sampling rate and window the reference pretrains on. ``pretrain`` does not
  resample (stores are prepared by ``prep``); it warns when a store's rate differs, and its input is a
  random window of ``seconds`` of each record per step (the whole record when shorter).
* CPC (Mehari & Strodthoff 2022, tmehari/ecg-selfsupervised README A1): AdamW lr 1e-4, weight decay 1e-3,
  batch 32, 1000 epochs, no schedule; 100 Hz, 10 s.
* CLOCS (Kiyasseh et al. 2021, danikiyasseh/CLOCS run_experiments.py): Adam (AdamW with no weight decay is
  the same) lr 1e-4, batch 256, at most 400 epochs (the reference stops early on a validation loss;
  ``pretrain`` keeps the last epoch), no schedule; 500 Hz, views of 2500 samples (5 s): two halves of
  10 s for CMSC and CMSMLC, one 5 s window for CMLC. Its encoder (``clocs_cnn``) ends in the embedding
  the loss acts on, so no projection is added (``embedding_dim=0``); another backbone gets the objective's
  256-wide projection.
* ST-MEM (Na et al. 2024, bakqui/ST-MEM): AdamW betas (0.9, 0.95), weight decay 0.01, base lr 1.5e-4 at
  batch 256 (the code's ``blr × batch/256``), warm-up then half-cosine; 250 Hz, 9 s; ViT-B/75. The
  repository's epochs/warm-up (10/3) are placeholders for its toy data: 100 epochs with 5 of warm-up are
  our choice.
* ECG-JEPA (Weimann & Conrad 2024, kweimann/ECG-JEPA): AdamW betas (0.9, 0.99), lr 1e-3 with 10 % warm-up
  then cosine, batch 2048; 500 Hz, 10 s; ViT-S (depth 8). The reference runs 100 000 steps with weight
  decay rising 0.01 → 0.1 on Linear/Conv weights only; here epochs are the unit (100, our choice), the
  EMA schedule spans the run's steps, and weight decay is a constant 0.05 on every weight (the middle of
  that range).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Method:
    name: str
    objective: str  # "module:Class" under ecgtool.train.pretrain
    backbone: str  # the registered model pretrained by default
    fs: float  # the reference's sampling rate
    seconds: float  # the reference's input window
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    schedule: str
    warmup_epochs: float
    betas: tuple = (0.9, 0.999)
    objective_kwargs: dict = field(default_factory=dict)
    any_backbone: bool = False  # accepts any registered backbone with forward_features (CPC, CLOCS)
    summary: str = ""


_CLOCS = dict(objective="clocs:CLOCSObjective", backbone="clocs_cnn", fs=500.0, epochs=400, batch_size=256, lr=1e-4,
              weight_decay=0.0, schedule="constant", warmup_epochs=0.0, any_backbone=True)

METHODS = {m.name: m for m in (
    Method("cpc", "cpc:CPCObjective", "cpc", fs=100.0, seconds=10.0, epochs=1000, batch_size=32, lr=1e-4,
           weight_decay=1e-3, schedule="constant", warmup_epochs=0.0, any_backbone=True,
           summary="Contrastive predictive coding: InfoNCE over 12 future steps, 128 negatives (Mehari & Strodthoff 2022)"),
    Method("clocs-cmsc", seconds=10.0, objective_kwargs={"mode": "cmsc"}, **_CLOCS,
           summary="CLOCS, adjacent segments of a record as views; same-patient positives (Kiyasseh et al. 2021)"),
    Method("clocs-cmlc", seconds=5.0, objective_kwargs={"mode": "cmlc"}, **_CLOCS,
           summary="CLOCS, the leads of a record as views; same-patient positives"),
    Method("clocs-cmsmlc", seconds=10.0, objective_kwargs={"mode": "cmsmlc"}, **_CLOCS,
           summary="CLOCS, leads x segments as views; same-patient positives"),
    Method("st-mem", "st_mem:STMEMObjective", "st_mem_vit_base", fs=250.0, seconds=9.0, epochs=100, batch_size=256,
           lr=1.5e-4, weight_decay=0.01, schedule="cosine", warmup_epochs=5.0, betas=(0.9, 0.95),
           summary="Spatio-temporal masked ECG modelling: masked patch reconstruction per lead (Na et al. 2024)"),
    Method("jepa", "jepa:JEPAObjective", "ecg_jepa_vit_s", fs=500.0, seconds=10.0, epochs=100, batch_size=2048,
           lr=1e-3, weight_decay=0.05, schedule="cosine", warmup_epochs=10.0, betas=(0.9, 0.99),
           summary="ECG-JEPA: predict an EMA target encoder's features of masked blocks (Weimann & Conrad 2024)"),
)}
