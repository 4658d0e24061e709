"""InceptionFormer: the research notebook's own CNN–transformer pyramid, and every variant it records.

Source: the research notebook (``research-notebook.txt``, section
"InceptionFormer"; its numbers are extracted in ``NOTEBOOK-RESULTS.md``). No
code was published; the notebook gives the design in words, the stage shapes,
and thop's parameter and MAC count of every stage. This file is built to
reproduce that table (``ecgtool profile inceptionformer``; docs/models.md).
Its parts follow:

* InceptionNeXt (Yu et al., "InceptionNeXt: When Inception Meets ConvNeXt",
  CVPR 2024; official code sail-sg/inceptionnext): a MetaNeXt block whose token
  mixer splits the channels into an identity group and depthwise-conv groups of
  different kernels; then BatchNorm, a 1×1-conv MLP, layer scale (init 1e-6)
  and the residual. In 1D the groups are a quarter of the channels each, with
  kernels 3, 11 and 31 (the 2D square / band kernels have no 1D analogue; these
  give the stage parameters exactly: stage 1 35,072 vs the notebook's 35.07K,
  stage 2 271,360 vs 271.36K).
* SMT (Lin et al., "Scale-Aware Modulation Meet Transformer", ICCV 2023): the
  progressive hybrid layout the notebook copies — convolution in the early
  stages, convolution interleaved with self-attention in stage 3 (the
  notebook's ``MixBlock``), self-attention in stage 4.
* Patch fusion between stages: a dense Conv1d k=3, s=2, p=1 (overlapping),
  which halves the tokens and doubles the width; the notebook's total minus its
  stages is exactly three of these (516,096 parameters, 86 M MACs).
* Attention layers: ``x + dwconv₃(x)`` (the notebook's "DWConv instead of a
  position encoding"), then a pre-norm transformer block with layer scale
  (``models/attention.TransformerBlock``), MLP ratio 2 — the ratio every
  stage's parameter count implies (8·d² per attention block, 4·d² per
  InceptionNeXt block).

Choices where the notebook is ambiguous (see NOTEBOOK-RESULTS.md):

* Stage 3 is the interleaved InceptionNeXt + attention ``MixBlock`` (4 + 4
  blocks), not convolutional modulation: only the interleaved reading
  reproduces its 3.18 M parameters (3,181,568 here); convolutional modulation
  is the separate ``inceptionformer_convmod`` variant.
* The stem is 12 → 64 wide (the stage-1 shape and dims say 64; the "→ 128"
  comment does not fit 36.72 K parameters): three parallel convolutions
  (kernels 5, 11 and 31, "multi-scale", summed as in the token-selection
  dual-branch paper's CNN blocks the notebook cites), BatchNorm, GELU: 36,416
  parameters vs the notebook's 36.72 K. The notebook does not give the
  kernels; these are ours.
* The head: global average pooling (or the CLS token), LayerNorm, Linear.
  Stochastic depth rises linearly to ``drop_path=0.1`` over the blocks (timm's
  convention; the notebook is silent).

Variants are small registered functions below; each says which notebook
experiment it reruns.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

from ecgtool.models.attention import (TOKEN_MIXERS, CoordAttention1d, DwConvPosition, LearnedPosition, TransformerBlock,
                                      drop_path, recording, token_mixer)
from ecgtool.models.explainable import Attention, SelfAttention, Spans
from ecgtool.models.layers import EcgClassifier, SqueezeExcite
from ecgtool.models.registry import register_variant

__all__ = ["InceptionFormer", "InceptionDWConv1d", "InceptionNeXtBlock", "AttentionLayer"]

_PAPER = ("InceptionFormer (the research notebook's model): InceptionNeXt blocks (Yu et al., CVPR 2024) in a "
          "progressive CNN-transformer pyramid after SMT (Lin et al., ICCV 2023)")
_SOURCE = ("research notebook, InceptionFormer section (no published code); parameter/MAC table reproduced, "
           "see the module docstring")

STAGE_KINDS = ("inception", "attention", "convmod", "sandwich")
POSITIONS = ("dwconv", "learned", "relative", "none")  # the notebook's position-encoding options


class MultiScaleStem(nn.Module):
    """Parallel convolutions of several kernel lengths, summed, then BatchNorm and GELU: ``(B, leads, T) → (B, C, T)``."""

    def __init__(self, in_channels: int, out_channels: int, kernels: Sequence[int] = (5, 11, 31),
                 attention: str | None = None):
        super().__init__()
        self.branches = nn.ModuleList(nn.Conv1d(in_channels, out_channels, k, padding=k // 2) for k in kernels)
        self.norm = nn.BatchNorm1d(out_channels)
        self.act = nn.GELU()
        if attention == "se":  # channel recalibration (Hu et al. 2018), reduction 16
            self.attention = SqueezeExcite(out_channels, ratio=16)
        elif attention == "ca":  # channel + temporal recalibration (coordinate attention, Hou et al. 2021)
            self.attention = CoordAttention1d(out_channels)
        elif attention is None:
            self.attention = nn.Identity()
        else:
            raise ValueError(f"stem attention must be 'se', 'ca' or None, not {attention!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.branches[0](x)
        for branch in self.branches[1:]:
            y = y + branch(x)
        return self.attention(self.act(self.norm(y)))


class InceptionDWConv1d(nn.Module):
    """InceptionNeXt's token mixer in 1D: channel groups through depthwise convs of different kernels, the rest identity."""

    def __init__(self, dim: int, kernels: Sequence[int] = (3, 11, 31), branch_ratio: float = 0.25):
        super().__init__()
        group = int(dim * branch_ratio)
        self.split = [dim - group * len(kernels)] + [group] * len(kernels)
        self.convs = nn.ModuleList(nn.Conv1d(group, group, k, padding=k // 2, groups=group) for k in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity, *groups = torch.split(x, self.split, dim=1)
        return torch.cat([identity] + [conv(g) for conv, g in zip(self.convs, groups)], dim=1)


class ConvMlp(nn.Module):
    """1×1-conv MLP on ``(B, C, T)``; ``glu`` makes it a gated linear unit (the hidden half gates the other)."""

    def __init__(self, dim: int, ratio: float = 2.0, glu: bool = False):
        super().__init__()
        hidden = int(dim * ratio)
        self.glu = glu
        self.fc1 = nn.Conv1d(dim, 2 * hidden if glu else hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv1d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        if self.glu:
            a, gate = h.chunk(2, dim=1)
            h = a * self.act(gate)
        else:
            h = self.act(h)
        return self.fc2(h)


class _Residual(nn.Module):
    """Layer scale γ (per channel, init 1e-6) and stochastic depth on a ``(B, C, T)`` residual branch."""

    def __init__(self, dim: int, layer_scale: float, drop_path_rate: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim, 1), layer_scale))
        self.drop_path_rate = drop_path_rate

    def forward(self, x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
        return x + drop_path(branch * self.gamma, self.drop_path_rate, self.training)


class InceptionNeXtBlock(nn.Module):
    """MetaNeXt block: ``x + γ · mlp(BN(inception_dwconv(x)))`` on ``(B, C, T)``."""

    def __init__(self, dim: int, mlp_ratio: float = 2.0, layer_scale: float = 1e-6, drop_path_rate: float = 0.0,
                 kernels: Sequence[int] = (3, 11, 31)):
        super().__init__()
        self.mixer = InceptionDWConv1d(dim, kernels)
        self.norm = nn.BatchNorm1d(dim)
        self.mlp = ConvMlp(dim, mlp_ratio)
        self.residual = _Residual(dim, layer_scale, drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.residual(x, self.mlp(self.norm(self.mixer(x))))


class SandwichBlock(nn.Module):
    """SandwichNet block: ``x + γ₁ · reduce(msdw(expand(BN x)))``, then ``x + γ₂ · GLU-MLP(BN x)`` on ``(B, C, T)``.

    The notebook's "InceptionFormer with an inverted residual around the multi-scale depthwise conv":
    a 1×1 conv expands the channels (``expand``×), the InceptionNeXt depthwise groups mix tokens at
    several scales, a 1×1 conv reduces back; the channel mixer is a gated linear unit.
    """

    def __init__(self, dim: int, mlp_ratio: float = 2.0, layer_scale: float = 1e-6, drop_path_rate: float = 0.0,
                 expand: float = 2.0):
        super().__init__()
        hidden = int(dim * expand)
        self.norm1 = nn.BatchNorm1d(dim)
        self.expand = nn.Conv1d(dim, hidden, 1)
        self.act = nn.GELU()
        self.mixer = InceptionDWConv1d(hidden)
        self.reduce = nn.Conv1d(hidden, dim, 1)
        self.residual1 = _Residual(dim, layer_scale, drop_path_rate)
        self.norm2 = nn.BatchNorm1d(dim)
        self.mlp = ConvMlp(dim, mlp_ratio, glu=True)
        self.residual2 = _Residual(dim, layer_scale, drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.residual1(x, self.reduce(self.mixer(self.act(self.expand(self.norm1(x))))))
        return self.residual2(x, self.mlp(self.norm2(x)))


class AttentionLayer(nn.Module):
    """A transformer block on a ``(B, C, T)`` map: optional ``x + dwconv₃(x)`` position term, then tokens ``(B, T, C)``.

    With ``cls`` the first token is a class token: the position term skips it.
    """

    def __init__(self, dim: int, mixer: nn.Module, mlp_ratio: float = 2.0, layer_scale: float = 1e-6,
                 drop_path_rate: float = 0.0, position: bool = True):
        super().__init__()
        self.position = DwConvPosition(dim, 3) if position else None
        self.block = TransformerBlock(dim, mixer, mlp_ratio, layer_scale, drop_path=drop_path_rate)
        self.cls = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        if self.position is not None:
            x = torch.cat([x[:, :1], self.position(x[:, 1:])], dim=1) if self.cls else self.position(x)
        return self.block(x).transpose(1, 2)


class ConvModLayer(nn.Module):
    """Convolutional modulation (Conv2Former) as a pre-norm block on a ``(B, C, T)`` map."""

    def __init__(self, dim: int, mlp_ratio: float = 2.0, layer_scale: float = 1e-6, drop_path_rate: float = 0.0):
        super().__init__()
        self.block = TransformerBlock(dim, TOKEN_MIXERS["convmod"](dim, 1), mlp_ratio, layer_scale,
                                      drop_path=drop_path_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x.transpose(1, 2)).transpose(1, 2)


class Stage(nn.Module):
    """One pyramid stage: ``depth`` blocks whose kinds cycle through ``kinds`` (e.g. inception, attention, …)."""

    def __init__(self, dim: int, depth: int, kinds: Sequence[str], mixer: str, heads: int, mlp_ratio: float,
                 drop_paths: Sequence[float], position: str, length: int, mixer_kwargs: dict,
                 cls: bool = False, layer_scale: float = 1e-6):
        super().__init__()
        blocks: list[nn.Module] = []
        attention_index = 0
        for i in range(depth):
            kind = kinds[i % len(kinds)]
            dp = drop_paths[i]
            if kind == "inception":
                blocks.append(InceptionNeXtBlock(dim, mlp_ratio, layer_scale, dp))
            elif kind == "sandwich":
                blocks.append(SandwichBlock(dim, mlp_ratio, layer_scale, dp))
            elif kind == "convmod":
                blocks.append(ConvModLayer(dim, mlp_ratio, layer_scale, dp))
            elif kind == "attention":
                kw = dict(mixer_kwargs, relative_bias=True) if position == "relative" else mixer_kwargs
                # Swin: plain and shifted windows alternate
                name = "window" if mixer == "shifted_window" and attention_index % 2 == 0 else mixer
                blocks.append(AttentionLayer(dim, token_mixer(name, dim, heads, **kw), mlp_ratio, layer_scale, dp,
                                             position == "dwconv"))
                attention_index += 1
            else:
                raise ValueError(f"unknown block kind {kind!r}; expected one of {', '.join(STAGE_KINDS)}")
        self.position = LearnedPosition(length, dim) if position == "learned" and "attention" in kinds else None
        self.cls_token = nn.Parameter(torch.zeros(1, dim, 1)) if cls else None
        if cls:
            if set(kinds) != {"attention"}:
                raise ValueError("a CLS token needs a stage of attention blocks only")
            nn.init.trunc_normal_(self.cls_token, std=0.02)
            for b in blocks:
                b.cls = True
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.position is not None:
            x = self.position(x.transpose(1, 2)).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=-1)
        return self.blocks(x)


class Pool(nn.Module):
    """Global average pooling over time, or the CLS token (position 0); then LayerNorm: ``(B, C, T) → (B, C)``."""

    def __init__(self, dim: int, cls: bool):
        super().__init__()
        self.cls = cls
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x[..., 0] if self.cls else x.mean(dim=-1))


class SemanticTokens(nn.Module):
    """The notebook's "SparseSemanticToken" stage input (after STViT, Chang et al. CVPR 2023).

    The stage's tokens are pooled by a depthwise strided conv ("DW-SpatialPool",
    ``pool`` tokens into one) into local semantic tokens; ``global_tokens``
    learned tokens join them; a ``SparseAttentionBlock`` of ``depth``
    transformer blocks mixes the lot; the stage then runs on the local semantic
    tokens only. The notebook gives only this block's totals (4.74 M
    parameters, 236.95 M MACs, whose ratio says every weight acts on 50
    tokens): 25 pooled + 25 global tokens of width 512 through two blocks of
    MLP ratio 2.5 reproduce both; the ratio is our choice to meet them.
    """

    def __init__(self, dim: int, heads: int, pool: int = 5, global_tokens: int = 25, depth: int = 2,
                 mlp_ratio: float = 2.5, layer_scale: float = 1e-6):
        super().__init__()
        self.pool = nn.Conv1d(dim, dim, pool, stride=pool, groups=dim)
        self.global_tokens = nn.Parameter(torch.zeros(1, global_tokens, dim))
        nn.init.trunc_normal_(self.global_tokens, std=0.02)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, TOKEN_MIXERS["mhsa"](dim, heads), mlp_ratio, layer_scale)
                                      for _ in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.pool(x).transpose(1, 2)  # (B, T / pool, C)
        tokens = torch.cat([local, self.global_tokens.expand(x.shape[0], -1, -1)], dim=1)
        return self.blocks(tokens)[:, :local.shape[1]].transpose(1, 2)


class InceptionFormer(EcgClassifier):
    """Children in forward order: ``stem``, ``block0``, ``merge1``, ``block1``, ``merge2``, ``block2``, …, ``pool``, ``head``.

    ``stages`` lists, per stage, the kinds of its blocks in the order they
    cycle ("inception", "attention", "convmod", "sandwich"); ``mixer`` names the
    attention stages' token mixer (``models/attention.TOKEN_MIXERS``) and
    ``mixer_kwargs`` its arguments; ``position`` is "dwconv" (a depthwise-conv
    term before every attention block), "learned" (an absolute table added at
    each attention stage's input, ViT), "relative" (a learned bias on the
    attention scores by token distance, Swin; MHSA and window mixers) or
    "none"; ``cls`` replaces global average
    pooling by a class token in the last stage; ``stem_attention`` adds SE or
    coordinate attention after the stem; ``semantic_tokens`` runs the last stage
    on pooled semantic tokens.
    """

    def __init__(self, num_classes: int, num_leads: int = 12, num_samples: int = 1000,
                 dims: Sequence[int] = (64, 128, 256, 512), depths: Sequence[int] = (2, 4, 8, 4),
                 stages: Sequence[Sequence[str]] = (("inception",), ("inception",), ("inception", "attention"),
                                                    ("attention",)),
                 mixer: str = "mhsa", mixer_kwargs: dict | None = None, heads: Sequence[int] = (1, 2, 8, 8),
                 mlp_ratio: float = 2.0, position: str = "dwconv", cls: bool = False,
                 stem_kernels: Sequence[int] = (5, 11, 31), stem_attention: str | None = None,
                 semantic_tokens: bool = False, drop_path: float = 0.1, dropout: float = 0.0):
        super().__init__()
        if not (len(dims) == len(depths) == len(stages) <= len(heads)):
            raise ValueError("dims, depths and stages need one entry per stage (heads at least as many)")
        if mixer not in TOKEN_MIXERS:
            raise ValueError(f"unknown mixer {mixer!r}; expected one of {', '.join(sorted(TOKEN_MIXERS))}")
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {', '.join(POSITIONS)}, not {position!r}")
        self.num_classes, self.num_leads, self.num_samples = num_classes, num_leads, num_samples
        self.stem = MultiScaleStem(num_leads, dims[0], stem_kernels, stem_attention)
        rates = np.linspace(0.0, drop_path, sum(depths)).tolist()
        length, first = num_samples, 0
        self.strides = []
        for i, (dim, depth, kinds) in enumerate(zip(dims, depths, stages)):
            if i:
                self.add_module(f"merge{i}", nn.Conv1d(dims[i - 1], dim, 3, stride=2, padding=1))
                length = (length + 1) // 2
            last = i == len(dims) - 1
            if last and semantic_tokens:
                self.add_module("semantic", SemanticTokens(dim, heads[i]))
            self.add_module(f"block{i}", Stage(dim, depth, list(kinds), mixer, heads[i], mlp_ratio,
                                               rates[first:first + depth], position, length, dict(mixer_kwargs or {}),
                                               cls=cls and last))
            self.strides.append(num_samples / length)
            first += depth
        self.pool = Pool(dims[-1], cls)
        self.num_features = dims[-1]
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(dims[-1], num_classes))
        self.stages = [name for name, _ in self.named_children()]
        self.cls = cls
        self.semantic_tokens = semantic_tokens
        # Grad-CAM on the last stage's map, unless it holds a class token (no place on the record).
        self.default_cam_layer = f"block{len(dims) - 2}" if cls else f"block{len(dims) - 1}"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.stages[:-1]:
            x = getattr(self, name)(x)
        return x

    # -- what explain needs (models/explainable.py) --------------------------------------------
    def attention(self, x):
        """Every attention block's heads, grouped per stage; rollout within a stage (its tokens share one grid)."""
        with recording(self) as blocks:
            with torch.no_grad():
                self(x)
        groups, arrays, info = [], {}, []
        samples = x.shape[-1]
        for i in range(len([n for n in self.stages if n.startswith("block")])):
            stage = getattr(self, f"block{i}")
            maps = [m.attention_map for name, m in blocks if name.startswith(f"block{i}.") and m.attention_map is not None]
            if not maps:
                continue
            cls_index = 0 if stage.cls_token is not None else None  # the class token, first, is on no span
            n = maps[0].shape[-1] - (cls_index is not None)
            width = samples / n
            spans = Spans(np.floor(np.arange(n) * width).astype(np.int64), int(np.ceil(width)))
            groups.append(SelfAttention(maps, spans, name=f"block{i}", cls_index=cls_index))
            arrays[f"attention_block{i}"] = torch.stack(maps, dim=1).cpu().numpy()
            info.append({"stage": f"block{i}", "tokens": int(maps[0].shape[-1]), "layers": len(maps),
                         "heads": int(maps[0].shape[1]), "class_token": cls_index is not None})
        return Attention(groups, arrays, {"attention": "self-attention per stage (attention blocks only; the "
                                          "interleaved convolutions are not part of the rollout)", "stages": info})


def _register(name: str, doc: str, **config):
    """Register a variant ``name`` whose defaults are ``config`` over InceptionFormer's."""
    return register_variant(name, InceptionFormer, doc, config, family="inceptionformer", paper=_PAPER, source=_SOURCE)


_CROSS = (("inception",), ("inception",), ("inception", "attention"), ("attention",))

_register("inceptionformer", "InceptionFormer: InceptionNeXt stages, interleaved InceptionNeXt + MHSA, MHSA (12.45M / 2.14G, notebook).")
_register("inceptionformer_sra", "InceptionFormer with spatial-reduction attention (PVT, sr=2) in the attention stages.",
          mixer="sra", mixer_kwargs={"sr_ratio": 2})
_register("inceptionformer_shunted", "InceptionFormer with shunted self-attention (8 heads: 4 at full resolution, 2 at /2, 2 at /4).",
          mixer="shunted")
_register("inceptionformer_hilo", "InceptionFormer with HiLo attention (half the heads windowed, half on pooled keys).",
          mixer="hilo")
_register("inceptionformer_bra", "InceptionFormer with bi-level routing attention (25 regions, top-10 routing).",
          mixer="bra", mixer_kwargs={"regions": 25, "topk": 10})
_register("inceptionformer_window", "InceptionFormer with window attention (windows of 25 tokens).",
          mixer="window", mixer_kwargs={"window": 25})
_register("inceptionformer_swin", "InceptionFormer with shifted-window attention (windows of 25 tokens, every other block shifted).",
          mixer="shifted_window", mixer_kwargs={"window": 25})
_register("inceptionformer_convmod", "InceptionFormer with convolutional modulation: conv, conv x modulation, modulation x MHSA, MHSA.",
          stages=(("inception",), ("inception", "convmod"), ("convmod", "attention"), ("attention",)))
_register("inceptionformer_cls", "InceptionFormer with a CLS token in the last stage instead of global average pooling.",
          cls=True)
_register("inceptionformer_learnedpos", "InceptionFormer with a learned absolute position table instead of the depthwise-conv term.",
          position="learned")
_register("inceptionformer_relpos", "InceptionFormer with a learned relative position bias in the attention scores (Swin-style).",
          position="relative")
_register("inceptionformer_nopos", "InceptionFormer with no position information in the attention blocks.",
          position="none")
_register("inceptionformer_se", "InceptionFormer with squeeze-and-excitation after the multi-scale stem (MS-DWConv-SE).",
          stem_attention="se")
_register("inceptionformer_ca", "InceptionFormer with coordinate attention after the multi-scale stem (MS-DWConv-CA).",
          stem_attention="ca")
_register("inceptionformer_3stage", "InceptionFormer, first three stages only (3.64M / 1.04G, notebook).",
          dims=(64, 128, 256), depths=(2, 4, 8), stages=_CROSS[:3])
_register("inceptionformer_2482", "InceptionFormer with stage depths [2, 4, 8, 2] (8.25M / 1.61G, notebook).",
          depths=(2, 4, 8, 2))
_register("inceptionformer_tiny", "InceptionFormer-Tiny: dims [32, 64, 128, 256] (3.13M / 536M, notebook).",
          dims=(32, 64, 128, 256))
_register("inceptionformer_sparse", "InceptionFormer whose last stage runs on 25 pooled semantic tokens (17.19M / 1.53G, notebook).",
          semantic_tokens=True)
_register("inceptionformer_crossstack", "Cross-stack InceptionNeXt + shunted attention in stages 3 and 4 (the notebook's final model).",
          mixer="shunted", stages=(("inception",), ("inception",), ("inception", "attention"), ("inception", "attention")))
_register("sandwichnet", "SandwichNet: inverted-residual multi-scale depthwise blocks, GLU channel mixer, HiLo attention.",
          stages=(("sandwich",), ("sandwich",), ("sandwich", "attention"), ("attention",)), mixer="hilo")
