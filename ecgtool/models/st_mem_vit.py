"""ST-MEM's ViT encoder (spatio-temporal masked electrocardiogram modeling) as a classifier family.

Paper: Na, Park, Tae, Joo, "Guiding Masked Representation Learning to Capture
Spatio-Temporal Relationship of Electrocardiogram", ICLR 2024 (arXiv 2402.09450).
Official code: bakqui/ST-MEM @ 69ec702 (CC BY-NC 4.0), ``models/encoder/st_mem_vit.py``
(``ST_MEM_ViT``), ``models/encoder/vit.py`` (blocks), ``models/st_mem.py`` (initialisation,
sin-cos table), read and re-implemented here — no code copied. The facts, with line
references, are in docs/pretrain-methods.md §3.1 and §3.4.

As the official encoder:

* every lead is cut into non-overlapping patches of ``patch_size`` samples (75 at 250 Hz:
  30 patches per lead of the 9 s / 2250-sample windows of the recipe); a patch is embedded by
  LayerNorm(patch) → Linear(patch, D) → LayerNorm(D), the same weights for every lead;
* a position table ``pos_embedding (1, n + 2, D)`` shared by all leads: fixed 1-D sin-cos over
  the patch index (``[sin(p·ω), cos(p·ω)]`` concatenated, ω_k = 10000^(−k/(D/2))) with zero rows
  at 0 and n + 1, the slots of the SEP tokens. It is an ordinary Parameter: the pretraining
  objective freezes it (official), fine-tuning trains it (official);
* one learned SEP vector put left and right of every lead's patches (+ the zero SEP slots of the
  table), and one learned lead vector per lead added to all n + 2 tokens of that lead; the leads'
  sequences are concatenated into one of L·(n + 2) tokens;
* plain pre-norm ViT blocks (no layer scale): multi-head self-attention with head dim 64
  (qkv bias) and an MLP of ratio 4 (GELU); ViT-S D=384, 6 heads; ViT-B D=768, 12 heads; depth 12;
  dropout / attention dropout / drop path 0 by default (drop path linear over depth);
* the fine-tune head: the mean of all non-SEP tokens over leads and time → LayerNorm(D) → Linear.
  (In pretraining the same LayerNorm is applied per token: ``tokens`` leaves it to the objective.)

Choices where the official encoder is silent or rigid (ecgtool's, stated):

* **Lengths.** The official code asserts ``seq_len % patch_size == 0``. Here a record whose
  length is not a multiple is zero-padded at the end to the next multiple (500 samples at patch 75
  → 7 patches, the last with 50 real samples), so no sample is dropped (cropping would hide up to
  74 samples from the classifier and from explanations). ``num_samples`` fixes the position table
  (⌈num_samples / patch⌉ patches); a shorter record uses its first rows, a longer one is refused.
  The ST-MEM recipe is 2250 samples at 250 Hz; the registry default stays 1000 (ecgtool's contract).
* **Leads.** ``num_leads`` sizes the lead table (the official model uses 12). Like the official
  ``forward_encoding`` a record with fewer leads uses the first lead vectors.
* **Initialisation.** The official standalone encoder draws positions, SEP and lead vectors from
  N(0, 1) and is only ever used after pretraining (or as "scratch" with those draws); its
  pretraining model re-initialises everything MAE-style. Here the encoder always starts as the
  pretraining model initialises it: sin-cos positions, SEP and lead vectors N(0, 0.02), Linear
  xavier-uniform with zero bias, LayerNorm 1/0; the head keeps PyTorch's default Linear init (the
  official fine-tuning builds a fresh ``nn.Linear`` head).
* The blocks are ecgtool's shared ``TransformerBlock`` + ``MultiHeadSelfAttention`` (fused SDPA;
  the same function as the official blocks, other state_dict names).

Explain: ``default_cam_layer`` is ``blocks`` (the token map ``(B, L·(n+2), D)``); a patch token of
any lead lies on samples ``[p·patch, (p+1)·patch)``; SEP tokens lie on no sample (their span starts
at −patch, off the record). ``attention`` gives every head of every block over all tokens, SEP
tokens marked not ``valid`` (the model pools the patch tokens only).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ecgtool.models.attention import MultiHeadSelfAttention, TransformerBlock, recording
from ecgtool.models.explainable import Attention, SelfAttention, Spans
from ecgtool.models.layers import EcgClassifier
from ecgtool.models.registry import register_variant

__all__ = ["STMEMViT", "PatchEmbedding", "sincos_positions", "st_mem_vit_small", "st_mem_vit_base"]

_PAPER = ("Na, Park, Tae, Joo. Guiding Masked Representation Learning to Capture Spatio-Temporal Relationship "
          "of Electrocardiogram (ST-MEM). ICLR 2024, arXiv 2402.09450")
_SOURCE = "https://github.com/bakqui/ST-MEM @ 69ec702 models/encoder/st_mem_vit.py (re-implemented, not copied)"
HEAD_DIM = 64  # the official blocks fix dim_head = 64 for every size


def sincos_positions(n: int, dim: int, sep: bool = True) -> torch.Tensor:
    """The official 1-D sin-cos table ``(n [+ 2], dim)``: ``[sin(p·ω), cos(p·ω)]``, ω_k = 10000^(−k/(dim/2)),
    p = 0 … n−1; with ``sep`` a zero row before and after (the SEP slots)."""
    if dim % 2:
        raise ValueError(f"sin-cos positions need an even dimension, not {dim}")
    omega = 1.0 / 10000.0 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))
    angles = torch.arange(n, dtype=torch.float64)[:, None] * omega[None, :]
    table = torch.cat([angles.sin(), angles.cos()], dim=1)
    if sep:
        zero = torch.zeros(1, dim, dtype=torch.float64)
        table = torch.cat([zero, table, zero], dim=0)
    return table.float()


class PatchEmbedding(nn.Module):
    """``(B, L, T)`` → ``(B, L, n, D)``: each lead's non-overlapping patches (zero-padded end), LN → Linear → LN."""

    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.norm_in = nn.LayerNorm(patch_size)
        self.proj = nn.Linear(patch_size, dim)
        self.norm_out = nn.LayerNorm(dim)

    def num_patches(self, samples: int) -> int:
        return -(-samples // self.patch_size)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, T)`` → ``(B, L, n, patch)``, T zero-padded at the end to a multiple of the patch."""
        pad = -x.shape[-1] % self.patch_size
        if pad:
            x = F.pad(x, (0, pad))
        return x.reshape(*x.shape[:-1], -1, self.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm_out(self.proj(self.norm_in(self.patchify(x))))


class PatchTokenMean(nn.Module):
    """Tokens ``(B, L·(k+2), D)`` of ``leads`` leads → ``(B, D)``: the mean of the non-SEP tokens (official pooling)."""

    def forward(self, x: torch.Tensor, leads: int) -> torch.Tensor:
        b, n, d = x.shape
        return x.reshape(b, leads, n // leads, d)[:, :, 1:-1].mean(dim=(1, 2))


class STMEMViT(EcgClassifier):
    """Children in forward order: ``patch_embed``, ``blocks``, ``pool``, ``norm``, ``head``.

    Parameters outside the children: ``pos_embedding (1, n+2, D)``, ``sep_embedding (D,)``,
    ``lead_embedding (num_leads, D)``.
    """

    def __init__(self, num_classes: int, num_leads: int = 12, num_samples: int = 1000, patch_size: int = 75,
                 dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0):
        super().__init__()
        if patch_size < 1:
            raise ValueError(f"patch_size must be at least 1, not {patch_size}")
        self.num_classes, self.num_leads, self.num_samples = num_classes, num_leads, num_samples
        self.patch_size, self.dim, self.drop_rate = patch_size, dim, drop_rate
        self.patch_embed = PatchEmbedding(patch_size, dim)
        self.num_patches = self.patch_embed.num_patches(num_samples)
        self.pos_embedding = nn.Parameter(sincos_positions(self.num_patches, dim).unsqueeze(0))
        self.sep_embedding = nn.Parameter(torch.empty(dim))
        self.lead_embedding = nn.Parameter(torch.empty(num_leads, dim))
        rates = torch.linspace(0, drop_path_rate, depth).tolist() if depth else []
        self.blocks = nn.Sequential(*[
            TransformerBlock(dim, MultiHeadSelfAttention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop_rate,
                                                         proj_drop=drop_rate),
                             mlp_ratio=mlp_ratio, layer_scale=None, drop=drop_rate, drop_path=rate)
            for rate in rates])
        self.pool = PatchTokenMean()
        self.norm = nn.LayerNorm(dim)
        self.num_features = dim
        self._init_weights()
        self.head = nn.Linear(dim, num_classes)  # PyTorch's default init, as the official fresh head
        self.stages = ["patch_embed", "blocks", "pool", "norm", "head"]
        self.default_cam_layer = "blocks"

    def _init_weights(self) -> None:
        """MAE-style, as the official pretraining model initialises its encoder (docs §3.2)."""
        nn.init.normal_(self.sep_embedding, std=0.02)
        nn.init.normal_(self.lead_embedding, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # -- the encoder in pieces (the pretraining objective masks between them) ---------------------
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, T)`` → patch embeddings plus positions ``(B, L, n, D)`` (before masking, as the official)."""
        if x.dim() != 3:
            raise ValueError(f"ST-MEM ViT takes (batch, leads, samples), not {tuple(x.shape)}")
        if x.shape[1] > self.num_leads:
            raise ValueError(f"{x.shape[1]} leads exceed the model's {self.num_leads} lead embeddings")
        patches = self.patch_embed(x)
        n = patches.shape[2]
        if n > self.num_patches:
            raise ValueError(f"{x.shape[-1]} samples make {n} patches of {self.patch_size}; the model was built for "
                             f"{self.num_samples} samples ({self.num_patches} patches)")
        return patches + self.pos_embedding[:, 1:n + 1].unsqueeze(1)

    def encode(self, patches: torch.Tensor) -> torch.Tensor:
        """Embedded patches ``(B, L, k, D)`` (all n, or the k kept) → block outputs ``(B, L·(k+2), D)``.

        SEP tokens (+ the table's SEP slots) go around each lead, every token of lead i gets lead
        vector i, the leads are concatenated, then dropout and the blocks. No final norm."""
        b, leads, _, d = patches.shape
        sep = self.sep_embedding.view(1, 1, 1, d).expand(b, leads, 1, d)
        x = torch.cat([sep + self.pos_embedding[:, :1].unsqueeze(1), patches,
                       sep + self.pos_embedding[:, -1:].unsqueeze(1)], dim=2)
        x = x + self.lead_embedding[:leads].view(1, leads, 1, d)
        x = F.dropout(x.reshape(b, -1, d), self.drop_rate, self.training)
        return self.blocks(x)

    def tokens(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Block outputs ``(B, L, k+2, D)`` per lead, SEP first and last (before the final norm).

        ``keep`` ``(B, L, k)`` int64: the patch indices each lead keeps (the official shuffle-and-keep
        masking: the blocks see only these patches and the SEP tokens); None keeps all n."""
        patches = self.embed(x)
        if keep is not None:
            patches = torch.gather(patches, 2, keep.unsqueeze(-1).expand(-1, -1, -1, patches.shape[-1]))
        b, leads = patches.shape[:2]
        return self.encode(patches).reshape(b, leads, -1, patches.shape[-1])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.pool(self.encode(self.embed(x)), x.shape[1]))

    # -- what explain needs (models/explainable.py) --------------------------------------------
    def token_starts(self, leads: int, samples: int) -> np.ndarray:
        """First sample of every token's span ``(L·(n+2),)``: patch p of any lead at p·patch; SEP at −patch (off)."""
        n = -(-samples // self.patch_size)
        lead = np.concatenate([[-self.patch_size], np.arange(n) * self.patch_size, [-self.patch_size]])
        return np.tile(lead, leads).astype(np.int64)

    def positions(self, layer_name, layer, x, shape):
        """Inside or after ``blocks`` the activation is the token map ``(B, L·(n+2), D)``."""
        if (layer_name == "blocks" or layer_name.startswith("blocks.")) and len(shape) == 3:
            starts = self.token_starts(x.shape[1], x.shape[-1])
            if shape[1] == len(starts):
                return Spans(starts, self.patch_size, channels_last=True)
        return None

    def attention(self, x):
        """Every head of every block over all L·(n+2) tokens; SEP tokens are not ``valid`` (not pooled, on no span)."""
        with recording(self) as blocks:
            with torch.no_grad():
                self(x)
        maps = [m.attention_map for _, m in blocks if m.attention_map is not None]
        leads, samples = x.shape[1], x.shape[-1]
        starts = self.token_starts(leads, samples)
        valid = np.broadcast_to(starts >= 0, (x.shape[0], len(starts))).copy()
        group = SelfAttention(maps, Spans(starts, self.patch_size, channels_last=True), name="tokens", valid=valid)
        n = len(starts) // leads - 2
        return Attention([group], {"attention_tokens": torch.stack(maps, dim=1).cpu().numpy()},
                         {"attention": "multi-head self-attention over all leads' patch and SEP tokens (lead-major: "
                                       "SEP, n patches, SEP per lead)", "tokens": len(starts), "leads": leads,
                          "patches_per_lead": n, "patch": self.patch_size, "layers": len(maps),
                          "heads": int(maps[0].shape[1]) if maps else 0})


_INPUT_VIEW = {"name": "raw", "in_model": "each lead cut into non-overlapping patches of patch_size samples (75 at "
               "250 Hz in the paper), zero-padded at the end to a multiple"}


def _register(name: str, doc: str, **config):
    """Register a variant ``name`` whose defaults are ``config`` over STMEMViT's."""
    return register_variant(name, STMEMViT, doc, config, family="st_mem_vit", paper=_PAPER, source=_SOURCE,
                            input_view=_INPUT_VIEW)


_SMALL = dict(patch_size=75, dim=384, depth=12, num_heads=384 // HEAD_DIM, mlp_ratio=4.0)
_BASE = dict(patch_size=75, dim=768, depth=12, num_heads=768 // HEAD_DIM, mlp_ratio=4.0)

st_mem_vit_small = _register("st_mem_vit_small", "ST-MEM's ViT-S/75 encoder (384-d, 12 blocks, 6 heads): "
                             "per-lead patches, SEP and lead embeddings, mean of patch tokens → LN → Linear.", **_SMALL)
st_mem_vit_base = _register("st_mem_vit_base", "ST-MEM's ViT-B/75 encoder (768-d, 12 blocks, 12 heads), the paper's "
                            "model: per-lead patches, SEP and lead embeddings, mean of patch tokens → LN → Linear.",
                            **_BASE)
