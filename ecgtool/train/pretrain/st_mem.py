"""ST-MEM: spatio-temporal masked ECG modeling (Na, Park, Tae, Joo, ICLR 2024, arXiv 2402.09450).

Official code bakqui/ST-MEM @ 69ec702 (CC BY-NC 4.0) ``models/st_mem.py`` (``ST_MEM``:
``random_masking`` l.167-192, ``forward_encoder`` l.194-229, ``forward_decoder`` l.231-261,
``forward_loss`` l.263-279, factories l.302-325) and ``configs/pretrain/st_mem.yaml``; read and
re-implemented here, no code copied. Facts with line references: docs/pretrain-methods.md §3.2-3.3.
The encoder is ``ecgtool.models.st_mem_vit`` (``st_mem_vit_small`` / ``st_mem_vit_base``).

As the official model:

* **masking** per lead, independently: uniform noise ``(B, L, n)``, argsort; each lead keeps its
  ``int(n·(1 − mask_ratio))`` lowest-noise patches (7 of 30 at 0.75) and drops the rest. Masking
  comes after the patch embedding + positions and before SEP and lead embeddings, so the encoder's
  blocks see only the kept patches and the 2 SEP tokens of each lead. ``mask`` is 1 on dropped patches;
* the encoder's final LayerNorm is applied per token (pretraining), its position table is frozen;
* **decoder**: Linear(D, 256); per lead, the kept tokens plus a shared learned mask token for
  each dropped patch, put back in patch order, + a fixed sin-cos decoder table (zero SEP slots); the
  SEP tokens keep their encoder output (+ 0); no lead embedding. Each lead is decoded on its own with
  shared weights: 4 plain pre-norm blocks (256-d, 4 heads of 64, MLP ratio 4) → LayerNorm(eps 1e-6)
  → Linear(256, patch); SEP outputs dropped;
* **loss**: the raw patches as target — with ``norm_pix_loss`` each patch normalised by its own
  mean and unbiased variance, ``(t − μ) / sqrt(var + 1e-6)`` — squared error averaged over the
  patch's samples, then averaged over the dropped patches only (``Σ loss·mask / Σ mask``);
* **init** (MAE-style): mask token N(0, 0.02), decoder Linear xavier-uniform with zero bias,
  LayerNorm 1/0 (the encoder initialises itself the same way, ``st_mem_vit``).

Choices (ecgtool's, stated):

* ``norm_pix_loss=True``: the official pretraining config sets it (the class default is False).
* The leads are decoded together as a batch of B·L independent sequences: the same function as
  the official Python loop over leads (no token of one lead sees another's), in one call.
* Records whose length is not a multiple of the patch are zero-padded by the encoder (see
  ``st_mem_vit``); the padded samples of the last patch are left out of the loss and of its
  normalisation (mean, variance, squared error over the real samples only). With whole patches
  this is exactly the official loss.
* At least 1 patch is kept and at least 1 dropped per lead (the official ``int(n·0.25)`` would
  keep none below 4 patches); records need 2 patches or more.
* The official draws its noise with ``torch.rand`` on the data's device; so does this (the global
  RNG, which the pretrain loop saves and restores).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ecgtool.models.attention import MultiHeadSelfAttention, TransformerBlock
from ecgtool.models.st_mem_vit import STMEMViT, sincos_positions
from ecgtool.train.pretrain.base import PretrainObjective

__all__ = ["STMEMObjective", "kept_count"]


def kept_count(n: int, mask_ratio: float) -> int:
    """Patches each lead keeps: the official ``int(n·(1 − mask_ratio))``, held within [1, n − 1]."""
    return max(1, min(n - 1, int(n * (1 - mask_ratio))))


class STMEMObjective(PretrainObjective):
    """ST-MEM's masked reconstruction around an ``st_mem_vit_*`` encoder; owns the light per-lead decoder."""

    method = "st-mem"

    def __init__(self, encoder: STMEMViT, *, fs: float, leads: list[str], samples: int, mask_ratio: float = 0.75,
                 decoder_dim: int = 256, decoder_depth: int = 4, decoder_heads: int = 4, decoder_mlp_ratio: float = 4.0,
                 norm_pix_loss: bool = True):
        if not isinstance(encoder, STMEMViT):
            raise TypeError(f"st-mem pretrains an ST-MEM ViT encoder (st_mem_vit_small, st_mem_vit_base), "
                            f"not {getattr(encoder, 'model_name', type(encoder).__name__)}")
        super().__init__(encoder, fs=fs, leads=leads, samples=samples)
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), not {mask_ratio}")
        self.patch_size = encoder.patch_size
        self.num_patches = encoder.patch_embed.num_patches(self.samples)
        if self.num_patches < 2:
            raise ValueError(f"st-mem needs at least 2 patches of {self.patch_size} samples per lead; "
                             f"{self.samples} samples make {self.num_patches}")
        if self.num_patches > encoder.num_patches:
            raise ValueError(f"{self.samples} samples make {self.num_patches} patches; the encoder was built for "
                             f"{encoder.num_samples} samples ({encoder.num_patches} patches)")
        self.mask_ratio, self.norm_pix_loss = float(mask_ratio), bool(norm_pix_loss)
        self.decoder_dim, self.decoder_depth, self.decoder_heads = decoder_dim, decoder_depth, decoder_heads
        self.decoder_mlp_ratio = float(decoder_mlp_ratio)
        encoder.pos_embedding.requires_grad_(False)  # fixed sin-cos during pretraining (official)

        self.to_decoder = nn.Linear(encoder.dim, decoder_dim)
        self.mask_embedding = nn.Parameter(torch.empty(1, 1, 1, decoder_dim))
        self.register_buffer("decoder_pos", sincos_positions(self.num_patches, decoder_dim), persistent=False)
        self.decoder_blocks = nn.Sequential(*[
            TransformerBlock(decoder_dim, MultiHeadSelfAttention(decoder_dim, decoder_heads),
                             mlp_ratio=decoder_mlp_ratio, layer_scale=None)
            for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_head = nn.Linear(decoder_dim, self.patch_size)
        nn.init.normal_(self.mask_embedding, std=0.02)
        for name, m in self.named_modules():
            if name.startswith("encoder"):
                continue
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # -- the three steps ----------------------------------------------------------------------------
    def random_masking(self, batch: int, leads: int, n: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(keep (B, L, k), mask (B, L, n), restore (B, L, n))``: every lead shuffled by its own noise and
        its first k kept; ``mask`` 1 on dropped patches; ``restore`` puts [kept, dropped] back in patch order."""
        k = kept_count(n, self.mask_ratio)
        shuffle = torch.rand(batch, leads, n, device=device).argsort(dim=2)
        restore = shuffle.argsort(dim=2)
        mask = torch.ones(batch, leads, n, device=device)
        mask[:, :, :k] = 0
        return shuffle[:, :, :k], mask.gather(2, restore), restore

    def decode(self, latent: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """Normed encoder tokens ``(B, L, k+2, D)`` → predicted patches ``(B, L, n, patch)``."""
        y = self.to_decoder(latent)
        b, leads, k2, d = y.shape
        n = restore.shape[2]
        dropped = self.mask_embedding.expand(b, leads, n - (k2 - 2), d)
        body = torch.cat([y[:, :, 1:-1], dropped], dim=2)
        body = body.gather(2, restore.unsqueeze(-1).expand(-1, -1, -1, d)) + self.decoder_pos[1:n + 1]
        seq = torch.cat([y[:, :, :1] + self.decoder_pos[:1], body, y[:, :, -1:] + self.decoder_pos[-1:]], dim=2)
        out = self.decoder_head(self.decoder_norm(self.decoder_blocks(seq.reshape(b * leads, n + 2, d))))
        return out.reshape(b, leads, n + 2, -1)[:, :, 1:-1]

    def reconstruction_loss(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over dropped patches (``mask`` 1) of the per-patch MSE between ``pred`` and the record's patches
        (normalised per patch with ``norm_pix_loss``); padded samples of a last partial patch count nowhere."""
        patchify = self.encoder.patch_embed.patchify
        target = patchify(x)
        real = patchify(torch.ones_like(x[:1, :1]))  # (1, 1, n, patch): 1 on real samples, 0 on padding
        count = real.sum(dim=-1, keepdim=True)
        if self.norm_pix_loss:
            mean = (target * real).sum(dim=-1, keepdim=True) / count
            var = ((target - mean) ** 2 * real).sum(dim=-1, keepdim=True) / (count - 1).clamp_min(1)  # unbiased
            target = (target - mean) / (var + 1e-6) ** 0.5
        per_patch = (((pred - target) ** 2) * real).sum(dim=-1) / count.squeeze(-1)
        return (per_patch * mask).sum() / mask.sum()

    def forward(self, x: torch.Tensor, patients: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        b, leads, t = x.shape
        n = self.encoder.patch_embed.num_patches(t)
        keep, mask, restore = self.random_masking(b, leads, n, x.device)
        latent = self.encoder.norm(self.encoder.tokens(x, keep))
        pred = self.decode(latent, restore)
        return {"loss": self.reconstruction_loss(x, pred, mask)}

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "mask_ratio": self.mask_ratio, "norm_pix_loss": self.norm_pix_loss,
                "patch_size": self.patch_size, "decoder_dim": self.decoder_dim, "decoder_depth": self.decoder_depth,
                "decoder_heads": self.decoder_heads, "decoder_mlp_ratio": self.decoder_mlp_ratio}
