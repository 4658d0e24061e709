"""The ECG-JEPA encoder: a plain ViT over 1D patches that each hold every lead.

Paper: Weimann & Conrad, "Self-Supervised Pre-Training with Joint-Embedding Predictive Architecture
Boosts ECG Classification Performance", arXiv 2410.13867 (2024). Official code: kweimann/ECG-JEPA
@ 504b4e5 (MIT), read and re-implemented here (facts with line references: docs/pretrain-methods.md §4).
The pretraining objective around this encoder is ``ecgtool.train.pretrain.jepa``.

As the official code fixes it:

* patch embedding ``Conv1d(leads, dim, kernel=25, stride=25)`` then tokens ``(B, N, dim)``: one token
  holds all leads (``models/modules.py`` ``PatchEmbedding``);
* fixed sin-cos positions (sin on even, cos on odd dims, interleaved), a non-persistent buffer, added
  to the patch tokens before any masking (``models/utils.py`` ``get_1d_pos_embed``,
  ``vision_transformer.py`` l.23-28, 65) — :func:`ecgtool.models.attention.sinusoid` is that table;
* ``num_registers`` = 1 learnable register token (trunc-normal std .02) prepended after masking, no
  position (l.29-31, 68-70);
* ``depth`` pre-norm blocks: LN → MHSA (SDPA) → residual, LN → MLP(GELU, ``mlp_ratio`` 4) → residual;
  no layer scale (``layer_scale_eps: 0``); then a final ``LayerNorm`` (l.46, 73). The configs switch
  every bias off (``qkv_bias: False``, ``bias: False``: Linear, Conv and LayerNorm) and use LN eps 1e-6;
  the shared :class:`~ecgtool.models.attention.TransformerBlock` is built and its biases removed;
* sizes (``configs/pretrain/*.yaml``): ViT-XS 192/8/4, ViT-S 384/8/6 (depth **8**), ViT-B 768/12/12;
* initialisation of the 2025 "Fix initialization" commit (504b4e5, ``vision_transformer.py`` l.48-60):
  Linear and Conv1d weights trunc-normal std .02, residual projections (attention ``proj``, MLP ``fc2``)
  std .02/√(2·depth), LayerNorm weight 1. (The paper's runs predate it and used xavier init with biased
  LayerNorms; HEAD is what is followed here.)

Heads (``pool``), all with every parameter under ``head.*`` so that ``--freeze-encoder`` trains exactly
the official probe and the encoder checkpoint leaves it out:

* ``"attentive"`` (default) — the official linear-evaluation head (``configs/eval/linear.yaml``,
  ``models/vit_classifier.py`` l.16-26, ``modules.py`` ``AttentivePooler(complete_block=False)`` and
  ``CrossAttention``): one learnable query (trunc-normal .02) cross-attends with the encoder's heads to
  the register and patch tokens (``keep_registers = use_register = True`` there), ``q``/``kv`` Linear
  without bias, then ``proj: dim → classes``. Here the projection is ``head.fc``, and
  :meth:`forward_features` returns the attended vector before it (``(B, dim)``), so that
  ``forward_head(forward_features(x))`` is the official pooler's output exactly;
* ``"register"`` — the official fine-tune head (``configs/eval/finetune.yaml``): the register token's
  output → ``Linear(dim, classes)``;
* ``"mean"`` — the mean of the patch tokens → Linear (Kim et al.'s representation; not W&C's).

``head_bias`` defaults to False as the eval configs' ``bias: False``. ``dropout`` is the encoder's
dropout (attention projection and MLP), 0 in pretraining; the official fine-tune sets it to 0.05.

Chosen here (the official code asserts a length divisible by 25): a record whose length is not a
multiple of ``patch_size`` is **cropped** to ``patch_size·⌊T/patch_size⌋`` samples (what the strided
convolution does anyway; at most 24 samples, < 50 ms at 500 Hz, dropped from the end), and records
shorter than one patch are refused. The position table is computed for any number of patches (the
official code slices a 200-entry table), so the model runs at any length; ``num_samples`` only sizes
the cached table.

For the objective, :meth:`EcgJepaViT.tokens` runs the encoder on a subset of patch indices ``keep``
(B, K), as the official ``VisionTransformer.forward(x, mask)``: embed, add positions, gather, prepend
the registers, blocks, LayerNorm, and returns the patch tokens only (registers stripped).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from ecgtool.models.attention import AttentionBlock, MultiHeadSelfAttention, TransformerBlock, attend, recording, sinusoid
from ecgtool.models.explainable import Attention, PoolingAttention, SelfAttention, Spans
from ecgtool.models.layers import EcgClassifier
from ecgtool.models.registry import register_variant

__all__ = ["EcgJepaViT", "JepaHead", "vit_blocks", "init_vit_", "strip_biases_", "gather_tokens",
           "ecg_jepa_vit_xs", "ecg_jepa_vit_s", "ecg_jepa_vit_b"]

_PAPER = ("Weimann & Conrad, Self-Supervised Pre-Training with Joint-Embedding Predictive Architecture "
          "Boosts ECG Classification Performance, arXiv 2410.13867, 2024")
_SOURCE = "kweimann/ECG-JEPA @ 504b4e5 (MIT): models/vision_transformer.py, models/modules.py, models/vit_classifier.py"
POOLS = ("attentive", "register", "mean")


def strip_biases_(module: nn.Module, bias: bool, qkv_bias: bool, eps: float) -> None:
    """The official ``bias``/``qkv_bias`` switches on shared blocks: remove the biases of Linear, Conv1d and
    LayerNorm (``qkv`` Linears follow ``qkv_bias``); set every LayerNorm's eps."""
    for name, m in module.named_modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = eps
        keep = qkv_bias if name.endswith(("qkv", ".q", ".kv")) or name in ("q", "kv") else bias
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.LayerNorm)) and not keep and m.bias is not None:
            m.bias = None


def init_vit_(module: nn.Module, depth: int) -> None:
    """The official initialisation (504b4e5): trunc-normal .02 Linear/Conv1d weights, residual projections
    (``mixer.proj``, ``mlp.fc2``) .02/√(2·depth), zero biases, LayerNorm weight 1 and bias 0."""
    for name, m in module.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv1d)):
            residual = name.endswith(("mixer.proj", "mlp.fc2"))
            nn.init.trunc_normal_(m.weight, std=0.02 / math.sqrt(2 * depth) if residual else 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def vit_blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
               drop_path: float = 0.0) -> nn.Sequential:
    """``depth`` plain pre-norm ViT blocks (shared MHSA with fused SDPA, GELU MLP, no layer scale);
    stochastic depth rising linearly to ``drop_path`` (0 in the official configs)."""
    rates = np.linspace(0.0, drop_path, depth).tolist() if depth else []
    return nn.Sequential(*[
        TransformerBlock(dim, MultiHeadSelfAttention(dim, num_heads, proj_drop=dropout), mlp_ratio,
                         layer_scale=None, drop=dropout, drop_path=r)
        for r in rates])


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Tokens ``(B, N, D)`` at ``index`` ``(B, K)`` → ``(B, K, D)`` (the official ``apply_mask``)."""
    return torch.gather(x, 1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


class StripRegisters(nn.Module):
    """The final tokens ``(B, R + N, D)`` → the patch tokens ``(B, N, D)``: Grad-CAM's layer (tokens on spans)."""

    def __init__(self, num_registers: int):
        super().__init__()
        self.num_registers = num_registers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.num_registers:]


class AttentiveQuery(AttentionBlock):
    """One learnable query cross-attending to the tokens (the official ``AttentivePooler`` without its ``proj``)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False):
        super().__init__(dim, num_heads)
        self.query = nn.Parameter(torch.empty(1, 1, dim))
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, n, c = tokens.shape
        h, d = self.num_heads, self.head_dim
        # the query is projected once, then broadcast (a module input that is a view of a parameter made under
        # no_grad has no grad_fn, which the FLOP counter's module tracker cannot hook)
        q = self.q(self.query).reshape(1, 1, h, d).transpose(1, 2).expand(b, -1, -1, -1)
        k, v = self.kv(tokens).reshape(b, n, 2, h, d).permute(2, 0, 3, 1, 4)
        out, weights = attend(self, q, k, v)
        if weights is not None:
            self.attention_map = weights  # (B, heads, 1, n)
        return out.transpose(1, 2).reshape(b, c)


class JepaHead(nn.Module):
    """The classifier: ``pool`` (attentive / register / mean, see the module docstring) and ``fc``.

    ``pool_tokens`` turns the final tokens into features (called by the model's ``forward_features``);
    ``forward(features)`` is the projection to the classes.
    """

    def __init__(self, dim: int, num_classes: int, num_heads: int, pool: str = "attentive",
                 num_registers: int = 1, qkv_bias: bool = False, bias: bool = False):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {', '.join(POOLS)}, not {pool!r}")
        if pool == "register" and num_registers < 1:
            raise ValueError("pool='register' needs num_registers >= 1")
        self.pool, self.num_registers = pool, num_registers
        self.attentive = AttentiveQuery(dim, num_heads, qkv_bias) if pool == "attentive" else None
        self.fc = nn.Linear(dim, num_classes, bias=bias)

    def pool_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Final tokens ``(B, R + N, D)`` (registers first) → features ``(B, D)``."""
        if self.pool == "attentive":
            return self.attentive(tokens)
        if self.pool == "register":
            return tokens[:, 0]
        return tokens[:, self.num_registers:].mean(dim=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features)


class EcgJepaViT(EcgClassifier):
    """Children in forward order: ``patch_embed``, ``blocks``, ``norm``, ``patches``, ``head``.

    ``patches`` strips the register tokens (Grad-CAM's layer: patch tokens ``(B, N, dim)`` on spans of
    ``patch_size`` samples); the head pools the full final tokens (registers included).
    """

    def __init__(self, num_classes: int, num_leads: int = 12, num_samples: int = 1000, dim: int = 384,
                 depth: int = 8, num_heads: int = 6, mlp_ratio: float = 4.0, patch_size: int = 25,
                 num_registers: int = 1, qkv_bias: bool = False, bias: bool = False, norm_eps: float = 1e-6,
                 dropout: float = 0.0, drop_path: float = 0.0, pool: str = "attentive", head_bias: bool = False):
        super().__init__()
        if dim % 2:
            raise ValueError(f"dim must be even (sin-cos positions), not {dim}")
        self.num_classes, self.num_leads, self.num_samples = num_classes, num_leads, num_samples
        self.dim, self.depth, self.num_heads, self.patch_size = dim, depth, num_heads, patch_size
        self.num_registers, self.mlp_ratio, self.norm_eps = num_registers, mlp_ratio, norm_eps
        self.bias, self.qkv_bias = bias, qkv_bias
        self.patch_embed = nn.Conv1d(num_leads, dim, patch_size, stride=patch_size, bias=bias)
        self.registers = nn.Parameter(torch.empty(1, num_registers, dim)) if num_registers else None
        self.blocks = vit_blocks(dim, depth, num_heads, mlp_ratio, dropout, drop_path)
        self.norm = nn.LayerNorm(dim)
        self.patches = StripRegisters(num_registers)
        strip_biases_(self, bias, qkv_bias, norm_eps)
        init_vit_(self, depth)
        if self.registers is not None:
            nn.init.trunc_normal_(self.registers, std=0.02)
        # the head is built after the encoder's init (the official probe has its own: trunc-normal .02, zero bias)
        self.head = JepaHead(dim, num_classes, num_heads, pool, num_registers, qkv_bias, head_bias)
        init_vit_(self.head, depth)
        if self.head.attentive is not None:
            nn.init.trunc_normal_(self.head.attentive.query, std=0.02)
        self.register_buffer("pos_embed", sinusoid(max(1, num_samples // patch_size), dim, None, torch.float32),
                             persistent=False)
        self.num_features = dim
        self.stages = [name for name, _ in self.named_children()]
        self.default_cam_layer = "patches"

    # -- encoder ---------------------------------------------------------------------------------
    def num_patches(self, samples: int) -> int:
        n = samples // self.patch_size
        if n < 1:
            raise ValueError(f"a record of {samples} samples is shorter than one patch ({self.patch_size})")
        return n

    def positions_table(self, n: int) -> torch.Tensor:
        """The sin-cos positions of ``n`` patches ``(n, dim)`` (the cached table, extended when longer)."""
        if n > self.pos_embed.shape[0]:
            return sinusoid(n, self.dim, self.pos_embed.device, self.pos_embed.dtype)
        return self.pos_embed[:n]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` → patch tokens with positions ``(B, ⌊T/patch⌋, dim)`` (the tail beyond whole patches cropped)."""
        n = self.num_patches(x.shape[-1])
        t = self.patch_embed(x[..., :n * self.patch_size]).transpose(1, 2)
        return t + self.positions_table(n).to(t.dtype)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Patch tokens ``(B, K, dim)`` → final tokens ``(B, R + K, dim)``: registers prepended, blocks, LayerNorm."""
        if self.registers is not None:
            tokens = torch.cat([self.registers.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)
        return self.norm(self.blocks(tokens))

    def tokens(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's LayerNorm-ed patch tokens ``(B, K, dim)`` for the patches ``keep`` ``(B, K)`` (int64 indices
        into ``⌊T/patch⌋``; None: all), registers stripped — the official ``VisionTransformer.forward(x, mask)``."""
        t = self.embed(x)
        if keep is not None:
            t = gather_tokens(t, keep)
        return self.encode(t)[:, self.num_registers:]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        full = self.encode(self.embed(x))
        patches = self.patches(full)
        if self.num_registers:
            full = torch.cat([full[:, :self.num_registers], patches], dim=1)  # the same tensor, through the hooked layer
        else:
            full = patches
        return self.head.pool_tokens(full)

    # -- what explain needs (models/explainable.py) ------------------------------------------------
    def token_spans(self, samples: int) -> Spans:
        n = self.num_patches(samples)
        return Spans(np.arange(n, dtype=np.int64) * self.patch_size, self.patch_size, channels_last=True)

    def positions(self, layer_name, layer, x, shape):
        """``patches`` holds the patch tokens ``(B, N, dim)``; other token layers also hold the registers (no span)."""
        return self.token_spans(x.shape[-1]) if layer_name == "patches" else None

    def attention(self, x):
        """The blocks' self-attention (rollout over register + patch tokens) and, for the attentive probe, the
        probe's head-averaged weights over the patch tokens (renormalised without the registers)."""
        with recording(self) as blocks:
            with torch.no_grad():
                self(x)
        b, r = x.shape[0], self.num_registers
        maps = [m.attention_map for name, m in blocks if name.startswith("blocks.")]
        n = self.num_patches(x.shape[-1])
        patch_spans = self.token_spans(x.shape[-1])
        pool = self.head.pool
        if pool == "register":
            # the head reads register 0 (a CLS token): its rollout row; further registers are on no span
            starts = np.concatenate([np.zeros(r - 1, np.int64), patch_spans.starts])
            valid = np.broadcast_to(np.arange(r - 1 + n) >= r - 1, (b, r - 1 + n)).copy()
            groups = [SelfAttention(maps, Spans(starts, self.patch_size), name="blocks", cls_index=0,
                                    valid=valid if r > 1 else None)]
        else:
            starts = np.concatenate([np.zeros(r, np.int64), patch_spans.starts])
            valid = np.broadcast_to(np.arange(r + n) >= r, (b, r + n)).copy()
            groups = [SelfAttention(maps, Spans(starts, self.patch_size), name="blocks",
                                    valid=valid if r else None)]
        arrays = {"attention_blocks": torch.stack(maps, dim=1).cpu().numpy()}
        info = {"attention": f"self-attention of {len(maps)} blocks over {r} register(s) + {n} patch tokens "
                             f"of {self.patch_size} samples; head: {pool}"}
        if pool == "attentive":
            w = self.head.attentive.attention_map.mean(dim=1)[:, 0]  # (B, R + N)
            arrays["attention_probe"] = w.cpu().numpy()
            w = w[:, r:]
            groups.append(PoolingAttention(w / w.sum(dim=1, keepdim=True), patch_spans))
            info["probe"] = "the attentive probe's query weights (head mean) over the patch tokens, registers left out"
        return Attention(groups, arrays, info)


def _register(name: str, doc: str, **config):
    """Register a variant ``name`` whose defaults are ``config`` over EcgJepaViT's."""
    return register_variant(name, EcgJepaViT, doc, config, family="ecg_jepa_vit", paper=_PAPER, source=_SOURCE)


ecg_jepa_vit_xs = _register(
    "ecg_jepa_vit_xs", "ECG-JEPA ViT-XS (192 dim, depth 8, 4 heads; patches of 25 samples over all leads), attentive probe.",
    dim=192, depth=8, num_heads=4)
ecg_jepa_vit_s = _register(
    "ecg_jepa_vit_s", "ECG-JEPA ViT-S (384 dim, depth 8, 6 heads; patches of 25 samples over all leads), attentive probe.",
    dim=384, depth=8, num_heads=6)
ecg_jepa_vit_b = _register(
    "ecg_jepa_vit_b", "ECG-JEPA ViT-B (768 dim, depth 12, 12 heads; patches of 25 samples over all leads), attentive probe.",
    dim=768, depth=12, num_heads=12)
