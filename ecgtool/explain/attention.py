"""Attention maps of the models that attend over time: msse_transformer, mina, mamil.

The weights are captured with forward hooks and recomputed from the hooked
module's own inputs and parameters, so no model file changes (state_dict keys
and outputs stay identical). Each hook then checks that the recomputed weights
reproduce the module's actual output, so a future change to a model cannot make
these maps silently wrong.

* msse_transformer — multi-head self-attention over each scale's windows: every
  head of every layer, and the rollout of Abnar & Zuidema 2020 ("Quantifying
  Attention Flow in Transformers", ACL): per layer the head-averaged matrix with
  the residual connection added (0.5 A + 0.5 I, rows renormalised), multiplied
  through the layers. The scale's representation is the mean of its output
  tokens, so a window's relevance is the mean of its rollout column.
* mina — knowledge-guided additive attention at three levels (Hong et al. 2019):
  over conv positions within each segment (beat level), over segments (rhythm
  level), over frequency channels; their product is the weight of each position.
* mamil — the instance softmax of the top-instance correlation pooling, over
  heartbeats (mapped to their windows around the R peaks) and over GASF patches
  (kept as an array: a patch pairs two stretches of the record).

The time map is relative to uniform attention (1 everywhere when every position
gets the same weight) and does not depend on the class.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ecgtool.errors import EcgtoolError
from ecgtool.explain.methods import Explanation
from ecgtool.explain.timeaxis import spread

SUPPORTED = "msse_transformer, mina and mamil"


def attention_rollout(layers: list[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Rollout (Abnar & Zuidema 2020) of per-layer attention ``(B, heads, n, n)``, first layer first → ``(B, n, n)``.

    Rows of the result sum to 1: entry (i, j) is how much of output token i flows from input token j.
    """
    b, _, n, _ = layers[0].shape
    eye = torch.eye(n, dtype=layers[0].dtype, device=layers[0].device)
    rollout = eye.expand(b, n, n)
    for a in layers:
        a_hat = residual * eye + (1.0 - residual) * a.mean(dim=1)
        a_hat = a_hat / a_hat.sum(dim=-1, keepdim=True)
        rollout = a_hat @ rollout
    return rollout


def _check(name: str, recomputed: torch.Tensor, actual: torch.Tensor) -> None:
    if not torch.allclose(recomputed, actual, rtol=1e-4, atol=1e-5):
        raise RuntimeError(f"attention recomputed for {name} does not reproduce the model's output; "
                           "the model has changed and ecgtool/explain/attention.py must follow")


# --------------------------------------------------------------------------- where windows and beats lie


def msse_windows(model: nn.Module, samples: int) -> list[tuple[np.ndarray, int]]:
    """``(first samples, width)`` of each scale's windows, read off the model's own sampler."""
    index = torch.arange(samples, dtype=torch.float64).view(1, 1, samples)
    return [(w[0, :, 0, 0].long().numpy(), int(w.shape[-1])) for w in model.sampler(index)]


def mamil_beat_windows(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """First sample ``(B, K)`` of each beat window MAMIL cuts, and whether it holds a beat ``(B, K)``.

    The model's own ``beats`` is applied to a signal holding each sample's index + 1,
    so the windows are exactly the model's (a window of zeros is an empty instance).
    """
    b, _, samples = x.shape
    marks = x[:, -1] if x.shape[1] == model.num_leads + 1 else None
    index = torch.arange(1, samples + 1, dtype=torch.float64, device=x.device).expand(b, 1, samples)
    windows, valid = model.beats(index, None if marks is None else marks.double())
    peak = windows[:, :, 0, model.pre]  # index + 1 of the R peak; 0 for an empty instance
    placed = (valid & (peak > 0)).cpu().numpy()
    return (peak.long() - 1 - model.pre).cpu().numpy(), placed


def segment_spans(layer: nn.Module, positions: int) -> tuple[np.ndarray, int]:
    """MINA's per-segment conv: position p of segment s covers ``s*L + p*stride + [0, kernel)``."""
    seg, k, stride = layer.segment_len, layer.conv.kernel_size[0], layer.conv.stride[0]
    per_seg = (seg - k) // stride + 1
    n_seg = positions // per_seg
    return (np.arange(n_seg)[:, None] * seg + np.arange(per_seg)[None] * stride).ravel(), k


# --------------------------------------------------------------------------- per model


def _msse(model: nn.Module, x: torch.Tensor) -> Explanation:
    captured: dict = {}
    handles = []

    def on_qkv(key, heads):
        def hook(module, inputs, out):
            b, n, three_d = out.shape
            d = three_d // 3
            q, k, v = out.reshape(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            captured[key] = (torch.softmax((q @ k.transpose(-2, -1)) / math.sqrt(d // heads), dim=-1), v)
        return hook

    def on_proj(key):
        def hook(module, args):  # the projection's input is attention @ values: check the recomputation on it
            attn, v = captured[key]
            b, h, n, dh = v.shape
            _check(f"msse_transformer encoders.{key[0]}.layers.{key[1]}", (attn @ v).transpose(1, 2).reshape(b, n, h * dh), args[0])
        return hook

    for s, encoder in enumerate(model.encoders):
        for i, layer in enumerate(encoder.layers):
            handles.append(layer.qkv.register_forward_hook(on_qkv((s, i), layer.num_heads)))
            handles.append(layer.proj.register_forward_pre_hook(on_proj((s, i))))
    _forward_with_hooks(model, x, handles)

    samples = x.shape[-1]
    arrays, scales, maps = {}, [], []
    for s, (starts, width) in enumerate(msse_windows(model, samples)):
        layers = [captured[(s, i)][0] for i in range(len(model.encoders[s].layers))]
        rollout = attention_rollout(layers)
        n = rollout.shape[-1]
        relevance = rollout.mean(dim=1).cpu().numpy() * n  # tokens are mean-pooled; uniform -> 1
        maps.append(spread(relevance, starts, width, samples))
        arrays[f"attention_scale{s}"] = torch.stack(layers, dim=1).cpu().numpy()  # (B, layers, heads, n, n)
        arrays[f"rollout_scale{s}"] = rollout.cpu().numpy()
        scales.append({"window": width, "starts": starts.tolist(), "layers": len(layers), "heads": int(layers[0].shape[1])})
    info = {"attention": "multi-head self-attention over windows, per scale",
            "rollout": "Abnar & Zuidema 2020: 0.5 A + 0.5 I per layer, head mean, product over layers",
            "scales": scales}
    return Explanation(np.mean(maps, axis=0)[:, None], arrays, info)


def _forward_with_hooks(model: nn.Module, x: torch.Tensor, handles: list) -> None:
    """One forward pass for the hooks to capture; the hooks are removed whatever happens."""
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()


def _knowledge_weights(module: nn.Module, h: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """MINA's ``softmax(tanh([h; k] W) v)`` over dim 1 → ``(N, S)``."""
    e = torch.tanh(torch.cat([h, k], dim=-1) @ module.W) @ module.v
    return torch.softmax(e, dim=1)[..., 0]


def _mina(model: nn.Module, x: torch.Tensor) -> Explanation:
    captured: dict = {}
    handles = []

    def hook_for(key):
        def hook(module, inputs, out):
            h, k = inputs
            a = _knowledge_weights(module, h, k)
            _check(f"mina {key[0]} attention", (a.unsqueeze(-1) * h).sum(dim=1), out)
            captured[key] = a
        return hook

    branches = model.branches.branches
    for f, branch in enumerate(branches):
        handles.append(branch.beat_att.register_forward_hook(hook_for(("beat", f))))
        handles.append(branch.rhythm_att.register_forward_hook(hook_for(("rhythm", f))))
    handles.append(model.freq_attention.att.register_forward_hook(hook_for(("frequency",))))
    _forward_with_hooks(model, x, handles)

    b, samples = x.shape[0], x.shape[-1]
    freq = captured[("frequency",)]  # (B, F)
    rhythm = torch.stack([captured[("rhythm", f)] for f in range(len(branches))], dim=1)  # (B, F, S)
    n_seg = rhythm.shape[-1]
    beat = torch.stack([captured[("beat", f)].reshape(b, n_seg, -1) for f in range(len(branches))], dim=1)  # (B, F, S, P)
    weight = (freq[:, :, None, None] * rhythm[..., None] * beat).sum(dim=1).reshape(b, -1)  # sums to 1 per record
    starts, width = segment_spans(branches[0].conv, weight.shape[-1])
    time_map = spread(weight.cpu().numpy() * weight.shape[-1], starts, width, samples)
    arrays = {"attention_beat": beat.cpu().numpy(), "attention_rhythm": rhythm.cpu().numpy(),
              "attention_frequency": freq.cpu().numpy()}
    info = {"attention": "knowledge-guided: beat (positions within a segment), rhythm (segments), frequency (channels)",
            "combined": "product of the three levels, summed over frequency channels",
            "frequency_channels": ["raw"] + [f"{lo}-{hi} Hz" for lo, hi in model.filter_bank.bands],
            "segment": model.branches.branches[0].segment_len}
    return Explanation(time_map[:, None], arrays, info)


def _instance_weights(module: nn.Module, h: torch.Tensor, valid: torch.Tensor, out: torch.Tensor, name: str):
    """MAMIL's pooling softmax over instances (and the top instance), checked against the module's output."""
    scores = module.score(h).squeeze(-1).masked_fill(~valid, -1e9)
    top_index = scores.argmax(dim=1)
    rows = torch.arange(h.shape[0], device=h.device)
    top = h[rows, top_index] * torch.sigmoid(scores[rows, top_index]).unsqueeze(-1)
    corr = F.cosine_similarity(h, top.unsqueeze(1), dim=-1).masked_fill(~valid, -1e9)
    weights = torch.softmax(corr, dim=1)
    pooled = (weights.unsqueeze(-1) * h).sum(dim=1)
    _check(name, torch.relu(module.project(torch.cat([top, pooled], dim=-1))), out)
    return weights, top_index


def _mamil(model: nn.Module, x: torch.Tensor) -> Explanation:
    captured: dict = {}

    def hook_for(name):
        def hook(module, inputs, out):
            captured[name] = _instance_weights(module, *inputs, out, f"mamil {name}")
        return hook

    handles = [model.beat_fusion.register_forward_hook(hook_for("beat_fusion")),
               model.gaf_fusion.register_forward_hook(hook_for("gaf_fusion"))]
    _forward_with_hooks(model, x, handles)

    beats, top_beat = captured["beat_fusion"]
    patches, top_patch = captured["gaf_fusion"]
    starts, placed = mamil_beat_windows(model, x)
    w = beats.cpu().numpy()
    n_valid = np.maximum(placed.sum(axis=1, keepdims=True), 1)
    time_map = spread(w * n_valid, starts, model.width, x.shape[-1], placed)
    arrays = {"attention_beats": w, "beat_peak": np.where(placed, starts + model.pre, -1), "top_beat": top_beat.cpu().numpy(),
              "attention_patches": patches.cpu().numpy(), "top_patch": top_patch.cpu().numpy()}
    info = {"attention": "instance softmax of top-instance correlation pooling (beats, GASF patches)",
            "beat_window": model.width, "beat_pre": model.pre,
            "gasf": {"lead": model.gaf_lead, "size": model.gaf_size, "patch": model.patch}}
    return Explanation(time_map[:, None], arrays, info)


def attention(model: nn.Module, x: torch.Tensor, n_leads: int) -> Explanation:
    """Attention maps ``(B, n_leads, samples)`` (one time profile broadcast over leads) plus the raw weights."""
    from ecgtool.models.mamil import MAMIL
    from ecgtool.models.mina import MINA
    from ecgtool.models.msse_transformer import MultiScaleSETransformer

    if isinstance(model, MultiScaleSETransformer):
        e = _msse(model, x)
    elif isinstance(model, MINA):
        e = _mina(model, x)
    elif isinstance(model, MAMIL):
        e = _mamil(model, x)
    else:
        name = getattr(model, "model_name", type(model).__name__)
        raise EcgtoolError(f"--method attention: {name} has no attention over time positions "
                           f"(it works for {SUPPORTED}); use gradcam, ig or saliency")
    e.maps = np.ascontiguousarray(np.broadcast_to(e.maps, (x.shape[0], n_leads, x.shape[-1])), dtype=np.float32)
    e.arrays = {k: np.asarray(v, dtype=np.float32 if np.asarray(v).dtype.kind == "f" else np.int64) for k, v in e.arrays.items()}
    return e


def has_attention(model: nn.Module) -> bool:
    from ecgtool.models.mamil import MAMIL
    from ecgtool.models.mina import MINA
    from ecgtool.models.msse_transformer import MultiScaleSETransformer

    return isinstance(model, (MultiScaleSETransformer, MINA, MAMIL))
