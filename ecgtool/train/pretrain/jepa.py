"""ECG-JEPA: a context encoder and an EMA target encoder; a predictor regresses the target's representations
of masked patch blocks from the visible ones. No augmentations, no decoder.

Paper: Weimann & Conrad, arXiv 2410.13867 (2024). Official code: kweimann/ECG-JEPA @ 504b4e5 (MIT), read
and re-implemented here; facts with line references in docs/pretrain-methods.md §4. The encoder is the
registered ``ecg_jepa_vit_*`` (``ecgtool/models/ecg_jepa_vit.py``).

As the official code fixes it:

* masks (``data/masks.py`` ``MaskCollator``): one keep ratio per batch, U(0.15, 0.25), ``num_keep =
  ⌈keep·N⌉`` context patches; per record, the masked (target) patches are built as blocks of at least
  ``min_block_size`` = 10 consecutive patches: repeatedly an unmasked interval is picked with
  probability proportional to its length and a block of U[10, remaining] patches is placed in it at a
  uniform position (the whole interval is masked when it is not longer than the block), and a last
  remainder under 10 patches is attached to the edge of an existing block. The context is the
  complement; the predictor's targets are **all** masked patches. Indices are sorted, per record;
* the context encoder runs on the context patches only (positions added before the gather, registers
  prepended after — ``EcgJepaViT.tokens(x, keep)``); the target encoder, a deep copy that receives no
  gradient, runs on the whole record and its final-LayerNorm outputs at the target patches are the
  targets (``models/JEPA.py`` l.31-41) — no other normalisation;
* the predictor (``models/predictor.py``): ``Linear(dim, pred_dim)`` on the context tokens plus the
  predictor's own sin-cos positions of their indices, one shared learnable mask token (trunc-normal .02)
  plus the positions of each target, concatenated, ``pred_depth`` blocks, LayerNorm, the last K tokens,
  ``Linear(pred_dim, dim)``; no biases and LN eps 1e-6 as the encoder; initialised as the encoder, the
  residual projections with the **encoder's** depth (l.41-54). Defaults ``pred_dim = dim/2``,
  ``pred_depth = depth``, ``pred_heads = heads`` (every official config: 96/8/4, 192/8/6, 384/12/12);
* loss: L1, ``mean |prediction − target|`` over the targets and dims (``JEPA.py`` l.41);
* EMA: ``θ_t ← m·θ_t + (1 − m)·θ_c`` over the parameters, m linear from 0.998 to 0.9995 over ``total_steps``
  then constant (``pretrain.py`` l.205-209, ``utils/schedules.py`` ``linear_schedule``);
* the encoder evaluated downstream is the **target** encoder (``finetune.py`` l.105-108 keeps
  ``target_encoder.*``), so :attr:`backbone` — what becomes the encoder checkpoint — is the target
  (``checkpoint_encoder="context"`` exports the context encoder instead).

Where the interface differs from the official code:

* the official update runs at the start of every forward with the momentum of that forward's index k
  (its first update, on an exact copy, changes nothing). Here :meth:`after_step` runs after the n-th
  optimiser step with ``m(n) = 0.998 + (0.9995 − 0.998)·min(n, total)/total``: the targets of forward n
  are then computed from the same target weights as the official forward n. With gradient accumulation
  the official schedule advances once per micro-batch; here once per optimiser step (the loop's
  ``total_steps`` is in optimiser steps);
* the mask draw uses the global torch RNG (the interface's rule for exact resume): one 63-bit seed drawn
  from it per forward seeds a NumPy generator for the per-record sampling loop (the official code draws
  from NumPy's global RNG in the data loader's collate); the step counter of the schedule is a buffer
  (``ema_steps``), so it is saved and restored with the objective's state;
* a record length that is not a multiple of 25 is cropped by the encoder (``ecg_jepa_vit``'s docstring);
  the official code requires 5000 samples and the mask sampler a multiple of the patch.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn as nn

from ecgtool.models.attention import sinusoid
from ecgtool.models.ecg_jepa_vit import EcgJepaViT, gather_tokens, init_vit_, strip_biases_, vit_blocks
from ecgtool.train.pretrain.base import PretrainObjective

__all__ = ["JEPAObjective", "JepaPredictor", "sample_block_mask", "sample_masks", "momentum_at"]


def sample_block_mask(num_keep: int, num_patches: int, min_block_size: int, rng: np.random.Generator) -> np.ndarray:
    """One record's mask ``(num_patches,)`` bool, True = context (kept): the official ``sample_mask``.

    The ``num_patches − num_keep`` masked patches form blocks of at least ``min_block_size`` consecutive
    patches (when there are that many to mask)."""
    if not 0 < num_keep <= num_patches:
        raise ValueError(f"cannot keep {num_keep} of {num_patches} patches")
    intervals = [(0, num_patches)]  # unmasked intervals [start, end)
    num_mask, masked = num_patches - num_keep, 0
    while masked < num_mask:
        sizes = np.array([e - s for s, e in intervals], dtype=np.float64)
        start, end = intervals.pop(int(rng.choice(len(sizes), p=sizes / sizes.sum())))
        size = end - start
        remaining = num_mask - masked
        block = int(rng.integers(min_block_size, remaining + 1)) if remaining >= min_block_size else remaining
        if size <= block:  # too small: mask all of it (it joins the blocks on its sides)
            masked += size
            continue
        if remaining >= min_block_size:
            split = int(rng.integers(start, end - block + 1))
        else:  # a remainder too small to stand alone: attach it to a block's edge
            choices = ([start] if start > 0 else []) + ([end - block] if end < num_patches else [])
            split = int(rng.choice(choices)) if choices else int(rng.integers(start, end - block + 1))
        intervals += [(start, split), (split + block, end)]
        masked += block
    keep = np.zeros(num_patches, dtype=bool)
    for s, e in intervals:
        keep[s:e] = True
    return keep


def sample_masks(batch: int, num_patches: int, *, min_keep: float = 0.15, max_keep: float = 0.25,
                 min_block_size: int = 10, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Context and target patch indices ``(B, K)``, ``(B, N − K)`` (int64, sorted), disjoint, covering every patch.

    One keep ratio U(min_keep, max_keep) for the batch (``K = ⌈ratio·N⌉``), one block mask per record; every
    draw comes from ``generator`` (default: the global torch RNG)."""
    seed = int(torch.randint(0, 2 ** 63 - 1, (), generator=generator))
    rng = np.random.default_rng(seed)
    ratio = rng.uniform(min_keep, max_keep)
    num_keep = min(num_patches, max(1, math.ceil(ratio * num_patches)))
    keep = np.stack([sample_block_mask(num_keep, num_patches, min_block_size, rng) for _ in range(batch)])
    order = np.argsort(~keep, axis=1, kind="stable")  # kept indices first, each part ascending
    index = torch.as_tensor(order, dtype=torch.int64, device=device)
    return index[:, :num_keep], index[:, num_keep:]


def momentum_at(step: int, total_steps: int, start: float, final: float) -> float:
    """The official linear schedule's value at ``step`` (``final`` from ``total_steps`` on)."""
    if step >= total_steps:
        return final
    return start + (final - start) * step / total_steps


class JepaPredictor(nn.Module):
    """The narrow transformer that predicts the target tokens from the context tokens and mask tokens."""

    def __init__(self, dim: int, pred_dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0,
                 qkv_bias: bool = False, bias: bool = False, eps: float = 1e-6, init_depth: int | None = None):
        super().__init__()
        if pred_dim % 2:
            raise ValueError(f"pred_dim must be even (sin-cos positions), not {pred_dim}")
        self.pred_dim = pred_dim
        self.embed = nn.Linear(dim, pred_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, pred_dim))
        self.blocks = vit_blocks(pred_dim, depth, num_heads, mlp_ratio)
        self.norm = nn.LayerNorm(pred_dim)
        self.proj = nn.Linear(pred_dim, dim)
        strip_biases_(self, bias, qkv_bias, eps)
        init_vit_(self, init_depth or depth)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, context: torch.Tensor, keep: torch.Tensor, target: torch.Tensor, num_patches: int) -> torch.Tensor:
        """Context tokens ``(B, K, dim)`` at ``keep`` ``(B, K)`` → predictions ``(B, M, dim)`` at ``target`` ``(B, M)``."""
        b, m = target.shape
        pos = sinusoid(num_patches, self.pred_dim, context.device, context.dtype)
        x = self.embed(context) + pos[keep]
        queries = self.mask_token.to(x.dtype).expand(b, m, -1) + pos[target]
        x = self.norm(self.blocks(torch.cat([x, queries], dim=1)))
        return self.proj(x[:, -m:])


class JEPAObjective(PretrainObjective):
    """ECG-JEPA around an ``ecg_jepa_vit_*`` encoder (the context encoder, trained); see the module docstring."""

    method = "jepa"

    def __init__(self, encoder: EcgJepaViT, *, fs: float, leads: list[str], samples: int,
                 pred_dim: int | None = None, pred_depth: int | None = None, pred_heads: int | None = None,
                 min_keep: float = 0.15, max_keep: float = 0.25, min_block_size: int = 10,
                 momentum: float = 0.998, final_momentum: float = 0.9995, total_steps: int = 100_000,
                 checkpoint_encoder: str = "target"):
        super().__init__(encoder, fs=fs, leads=leads, samples=samples)
        if not isinstance(encoder, EcgJepaViT):
            raise TypeError(f"jepa needs an ecg_jepa_vit_* encoder (patch tokens with tokens(x, keep)), "
                            f"not {getattr(encoder, 'model_name', type(encoder).__name__)}")
        if not 0.0 < min_keep <= max_keep < 1.0:
            raise ValueError(f"need 0 < min_keep <= max_keep < 1, not {min_keep}, {max_keep}")
        if checkpoint_encoder not in ("target", "context"):
            raise ValueError(f"checkpoint_encoder must be 'target' or 'context', not {checkpoint_encoder!r}")
        if total_steps < 1:
            raise ValueError(f"total_steps must be at least 1, not {total_steps}")
        self.pred_dim = int(pred_dim or encoder.dim // 2)
        self.pred_depth = int(pred_depth or encoder.depth)
        self.pred_heads = int(pred_heads or encoder.num_heads)
        self.min_keep, self.max_keep, self.min_block_size = float(min_keep), float(max_keep), int(min_block_size)
        self.momentum, self.final_momentum, self.total_steps = float(momentum), float(final_momentum), int(total_steps)
        self.checkpoint_encoder = checkpoint_encoder
        self.predictor = JepaPredictor(encoder.dim, self.pred_dim, self.pred_depth, self.pred_heads, encoder.mlp_ratio,
                                       encoder.qkv_bias, encoder.bias, encoder.norm_eps, init_depth=encoder.depth)
        self.target = copy.deepcopy(encoder)
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.register_buffer("ema_steps", torch.zeros((), dtype=torch.int64))

    @property
    def backbone(self) -> EcgJepaViT:
        """The target (EMA) encoder, as the official evaluation uses; the context encoder with
        ``checkpoint_encoder="context"``."""
        return self.target if self.checkpoint_encoder == "target" else self.encoder

    def masks(self, batch: int, num_patches: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Context and target indices for a batch (global torch RNG)."""
        return sample_masks(batch, num_patches, min_keep=self.min_keep, max_keep=self.max_keep,
                            min_block_size=self.min_block_size, device=device)

    def forward(self, x: torch.Tensor, patients: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        n = self.encoder.num_patches(x.shape[-1])
        keep, target = self.masks(x.shape[0], n, x.device)
        with torch.no_grad():
            h = gather_tokens(self.target.tokens(x), target)
        z = self.encoder.tokens(x, keep)
        prediction = self.predictor(z, keep, target, n)
        loss = torch.mean(torch.abs(prediction - h.to(prediction.dtype)))
        return {"loss": loss,
                "context_fraction": torch.tensor(keep.shape[1] / n, device=x.device),
                "momentum": torch.tensor(self.momentum_now(), device=x.device),
                "target_std": h.detach().float().std(dim=0).mean()}  # collapse watch: spread across records

    def momentum_now(self) -> float:
        """The momentum the next :meth:`after_step` applies."""
        return momentum_at(int(self.ema_steps) + 1, self.total_steps, self.momentum, self.final_momentum)

    @torch.no_grad()
    def after_step(self) -> None:
        """θ_t ← m·θ_t + (1 − m)·θ_c for every parameter, m of the n-th optimiser step (see the module docstring)."""
        m = self.momentum_now()
        for t, c in zip(self.target.parameters(), self.encoder.parameters()):
            t.copy_(m * t + (1.0 - m) * c.detach())
        self.ema_steps += 1

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "pred_dim": self.pred_dim, "pred_depth": self.pred_depth,
                "pred_heads": self.pred_heads, "min_keep": self.min_keep, "max_keep": self.max_keep,
                "min_block_size": self.min_block_size, "momentum": self.momentum,
                "final_momentum": self.final_momentum, "total_steps": self.total_steps,
                "checkpoint_encoder": self.checkpoint_encoder}
