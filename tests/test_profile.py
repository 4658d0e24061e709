"""Tests for ecgtool.profile.measure."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ecgtool.models import create_model
from ecgtool.profile.measure import count_full_macs, count_macs, count_parameters, measure_latency


class Tiny(nn.Module):
    """Conv1d(2->4, k=3, no padding, bias) on length 10 -> flatten -> Linear(32 -> 5)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 4, kernel_size=3, bias=True)
        self.fc = nn.Linear(4 * 8, 5)
        self.stages = ["conv", "fc"]

    def forward(self, x):
        return self.fc(torch.flatten(self.conv(x), 1))


# Hand-computed (thop convention: bias not counted in conv MACs):
#   conv: out 4 ch x 8 samples, each 2 ch * 3 taps      -> 4*8*2*3 = 192 MACs / sample
#         params 2*4*3 + 4                               -> 28
#   fc:   5 outputs x 32 inputs                          -> 160 MACs / sample
#         params 32*5 + 5                                -> 165
TINY_CONV_MACS, TINY_FC_MACS = 192, 160
TINY_CONV_PARAMS, TINY_FC_PARAMS = 28, 165


def test_count_parameters_by_hand():
    model = Tiny()
    assert count_parameters(model) == {"total": 193, "trainable": 193}
    model.conv.weight.requires_grad_(False)
    assert count_parameters(model) == {"total": 193, "trainable": 193 - 24}


@pytest.mark.parametrize("batch", [1, 3])
def test_count_macs_by_hand(batch):
    res = count_macs(Tiny(), (batch, 2, 10))
    assert res["macs"] == batch * (TINY_CONV_MACS + TINY_FC_MACS)
    assert res["flops"] == 2 * res["macs"]
    assert res["params"] == TINY_CONV_PARAMS + TINY_FC_PARAMS
    # conv and linear only: FlopCounterMode counts the same MACs as thop (bias excluded by both)
    assert res["macs_with_attention"] == res["macs"] and res["flops_with_attention"] == 2 * res["macs"]
    assert res["stages"] == [
        {"name": "conv", "macs": batch * TINY_CONV_MACS, "params": TINY_CONV_PARAMS, "macs_with_attention": batch * TINY_CONV_MACS},
        {"name": "fc", "macs": batch * TINY_FC_MACS, "params": TINY_FC_PARAMS, "macs_with_attention": batch * TINY_FC_MACS},
    ]
    assert "macs_with_attention" not in count_macs(Tiny(), (batch, 2, 10), with_attention=False)


def test_stage_fallback_and_other_remainder():
    model = Tiny()
    del model.stages  # fallback: named_children
    res = count_macs(model, (1, 2, 10))
    assert [s["name"] for s in res["stages"]] == ["conv", "fc"]

    model.stages = ["conv"]  # fc not listed -> reported as "other"
    model.scale = nn.Parameter(torch.ones(1))  # parameter outside every stage
    res = count_macs(model, (1, 2, 10))
    assert res["stages"][-1] == {"name": "other", "macs": TINY_FC_MACS, "params": TINY_FC_PARAMS + 1,
                                 "macs_with_attention": TINY_FC_MACS}
    assert sum(s["macs"] for s in res["stages"]) == res["macs"]
    assert sum(s["params"] for s in res["stages"]) == res["params"]
    assert sum(s["macs_with_attention"] for s in res["stages"]) == res["macs_with_attention"]

    model.stages = ["conv", "missing"]
    with pytest.raises(ValueError, match="missing"):
        count_macs(model, (1, 2, 10))
    with pytest.raises(ValueError, match="missing"):
        count_full_macs(model, (1, 2, 10))


class Sdpa(nn.Module):
    """Functional multi-head attention: no parameters, so thop sees nothing here."""

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


class TinyAttention(nn.Module):
    """Tokens (B, N, D) = the input (B, D, N) transposed; Linear qkv (D -> 3D) -> F.scaled_dot_product_attention
    over (B, heads, N, D/heads) inside ``blocks`` (a ModuleList, never called itself) -> Linear proj (D -> D)."""

    def __init__(self, dim=8, heads=2):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.blocks = nn.ModuleList([Sdpa()])
        self.proj = nn.Linear(dim, dim)
        self.stages = ["qkv", "blocks", "proj"]

    def forward(self, x):
        b, d, n = x.shape
        q, k, v = self.qkv(x.transpose(1, 2)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        for block in self.blocks:
            q = block(q, k, v)
        return self.proj(q.transpose(1, 2).reshape(b, n, d))


def _tiny_attention_macs(batch, dim=8, heads=2, tokens=10):
    """Hand count: (qkv, attention, proj) MACs; attention = q @ k^T + attn @ v = 2 * B * heads * N * N * d_head."""
    qkv = batch * tokens * dim * 3 * dim
    attention = 2 * batch * heads * tokens * tokens * (dim // heads)
    proj = batch * tokens * dim * dim
    return qkv, attention, proj


@pytest.mark.parametrize("batch", [1, 3])
def test_full_count_includes_scaled_dot_product_attention_on_cpu(batch):
    # On CPU, F.scaled_dot_product_attention runs aten._scaled_dot_product_flash_attention_for_cpu, which
    # torch 2.13's FlopCounterMode has no formula for (it would count 0): ecgtool registers torch's formula.
    qkv, attention, proj = _tiny_attention_macs(batch)  # B=1: 1920, 1600, 640
    res = count_macs(TinyAttention(), (batch, 8, 10))
    assert res["macs"] == qkv + proj  # thop: the two Linear layers only
    assert res["macs_with_attention"] == qkv + attention + proj
    assert res["flops_with_attention"] == 2 * res["macs_with_attention"]
    assert res["stages"] == [
        {"name": "qkv", "macs": qkv, "params": 8 * 24 + 24, "macs_with_attention": qkv},
        {"name": "blocks", "macs": 0, "params": 0, "macs_with_attention": attention},  # the ModuleList's member ran
        {"name": "proj", "macs": proj, "params": 8 * 8 + 8, "macs_with_attention": proj},
    ]


def test_full_count_stage_names_dotted_and_remainder():
    qkv, attention, proj = _tiny_attention_macs(1)
    model = TinyAttention()
    model.stages = ["qkv", "blocks.0", "proj"]  # a nested stage name
    assert [s["macs_with_attention"] for s in count_full_macs(model, (1, 8, 10))["stages"]] == [qkv, attention, proj]

    model.stages = ["qkv", "proj"]  # the attention runs outside every stage: only the full count needs "other"
    res = count_macs(model, (1, 8, 10))
    assert res["stages"][-1] == {"name": "other", "macs": 0, "params": 0, "macs_with_attention": attention}
    assert sum(s["macs_with_attention"] for s in res["stages"]) == res["macs_with_attention"]
    assert sum(s["macs"] for s in res["stages"]) == res["macs"]


def test_full_count_matrix_vector_products():
    """``mv`` and ``dot`` (a 2-D or 1-D tensor @ a vector) have no FlopCounterMode formula in torch 2.13: ecgtool's."""

    class Readout(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("w", torch.ones(20))

        def forward(self, x):
            flat = x.flatten(1)  # (B, 20)
            return flat @ self.w + flat[0] @ self.w  # mv: B x 20 MACs; dot: 20 MACs

    assert count_full_macs(Readout(), (3, 2, 10))["macs_with_attention"] == 3 * 20 + 20


def test_full_count_on_the_meta_device_matches_cpu():
    expected = count_full_macs(TinyAttention(), (2, 8, 10))
    model = TinyAttention().to("meta")
    assert count_full_macs(model, (2, 8, 10)) == expected
    assert count_macs(model, (2, 8, 10))["macs_with_attention"] == expected["macs_with_attention"]
    assert next(model.parameters()).device.type == "meta"


def test_full_count_sees_lstm_and_transformer_encoder():
    """nn.LSTM (oneDNN's fused kernel on CPU) and an eval-mode nn.TransformerEncoderLayer (native fast path)
    each run as one kernel FlopCounterMode cannot see; the count runs them unfused, and restores the switches."""
    b, n, d, hidden, ff = 2, 6, 8, 5, 16

    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(d, hidden, batch_first=True)
            self.encoder = nn.TransformerEncoderLayer(d, nhead=2, dim_feedforward=ff, batch_first=True)
            self.stages = ["lstm", "encoder"]

        def forward(self, x):
            x = x.transpose(1, 2)
            return self.lstm(x)[0].sum() + self.encoder(x).sum()

    switches = (torch.backends.mkldnn.enabled, torch.backends.cudnn.enabled, torch.backends.mha.get_fastpath_enabled())
    res = count_full_macs(Recurrent(), (b, d, n))
    assert switches == (torch.backends.mkldnn.enabled, torch.backends.cudnn.enabled, torch.backends.mha.get_fastpath_enabled())
    lstm = b * n * 4 * hidden * (d + hidden)  # input and hidden projections of the 4 gates, every step
    encoder = (b * n * d * 3 * d + 2 * b * n * n * d + b * n * d * d  # in-projection, attention, out-projection
               + b * n * d * ff + b * n * ff * d)  # feed-forward
    assert res["stages"] == [{"name": "lstm", "macs_with_attention": lstm},
                             {"name": "encoder", "macs_with_attention": encoder}]


def test_msse_transformer_full_count_adds_its_attention_products():
    """msse_transformer writes attention as q @ k^T and attn @ v between nn.Linear projections: thop counts the
    projections only; the full count adds exactly 2 * B * n_windows^2 * d_model per scale (one layer each)."""
    leads, samples, d_model = 2, 256, 64
    model = create_model("msse_transformer", num_classes=3, num_leads=leads, num_samples=samples)
    x = torch.zeros(1, leads, samples)
    windows = [w.shape[1] for w in model.sampler(x)]
    linear = []  # MACs of every nn.Linear call in the encoders, thop's rule (out_numel * in_features)
    hooks = [m.register_forward_hook(lambda m, i, o: linear.append(o.numel() * m.in_features))
             for m in model.encoders.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model.eval()(x)
    for h in hooks:
        h.remove()
    attention = sum(2 * n * n * d_model for n in windows)

    res = count_macs(model, (1, leads, samples))
    encoders = next(s for s in res["stages"] if s["name"] == "encoders")
    assert encoders["macs_with_attention"] == sum(linear) + attention
    assert encoders["macs_with_attention"] > sum(linear)
    assert sum(s["macs_with_attention"] for s in res["stages"]) == res["macs_with_attention"]


def test_full_count_is_lower_for_batchnorm_and_counts_shared_modules_once():
    """FlopCounterMode counts no BatchNorm (thop: 4 MACs per element, affine) and each call of a module once;
    thop counts each call of a module shared by k parents k**2 times."""
    conv = nn.Conv1d(2, 2, 1, bias=False)  # 2 * 2 * 10 = 40 MACs per call

    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Sequential(conv, nn.BatchNorm1d(2))
            self.b = nn.Sequential(conv)
            self.stages = ["a", "b"]

        def forward(self, x):
            return self.b(self.a(x))

    res = count_macs(Shared(), (1, 2, 10))
    assert res["macs_with_attention"] == 2 * 40  # two calls of the conv
    assert [s["macs_with_attention"] for s in res["stages"][:2]] == [40, 40]  # charged to the stage it runs in
    # thop hooks the shared conv once per parent and adds its total into each parent: 2 parents -> 2**2 x its two
    # calls; plus BatchNorm's 4 MACs per element
    assert res["macs"] == 2**2 * (2 * 40) + 4 * 2 * 10
    # (the shared conv's parameters are in both stages, so an "other" row of -4 params balances them)
    assert res["stages"][2] == {"name": "other", "macs": 0, "params": -4, "macs_with_attention": 0}


def test_resnet18_stage_macs_sum_to_total():
    model = create_model("resnet18", num_classes=9)
    res = count_macs(model, (1, 12, 1000))
    names = [s["name"] for s in res["stages"]]
    assert names == model.stages  # no "other" remainder needed
    assert sum(s["macs"] for s in res["stages"]) == res["macs"]
    assert sum(s["params"] for s in res["stages"]) == res["params"] == count_parameters(model)["total"]
    # Stem by hand: conv k7 s2 -> 64 ch x 500 samples x (12*7) MACs, plus thop's
    # affine BatchNorm convention 4 * numel (64 x 500); ReLU / max-pool count 0.
    stem = res["stages"][0]
    assert stem["macs"] == 64 * 500 * 12 * 7 + 4 * 64 * 500
    assert all(s["macs"] > 0 for s in res["stages"])
    # The full count: the same convolutions and linear layer, no BatchNorm or pooling
    assert stem["macs_with_attention"] == 64 * 500 * 12 * 7
    assert sum(s["macs_with_attention"] for s in res["stages"]) == res["macs_with_attention"] < res["macs"]


def test_mobilenet_v2_macs_match_the_notebook():
    # The research notebook's thop count for MobileNetV2 at 12 x 1000, 9 classes; the global
    # average pool is functional (as torchvision), so thop does not count it.
    res = count_macs(create_model("mobilenet_v2", num_classes=9), (1, 12, 1000))
    assert round(res["macs"] / 1e6, 2) == 96.60


def test_thop_leaves_model_unchanged(capsys):
    model = create_model("mobilenet_v2", num_classes=4).train()
    keys_before = list(model.state_dict().keys())
    sd_before = {k: v.clone() for k, v in model.state_dict().items()}
    count_macs(model, (1, 12, 500))
    assert list(model.state_dict().keys()) == keys_before
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd_before[k]), k
    assert model.training
    for name, m in model.named_modules():
        assert not m._forward_hooks and not m._forward_pre_hooks, name
        assert not hasattr(m, "total_ops") and not hasattr(m, "total_params"), name
    captured = capsys.readouterr()
    assert captured.out == ""  # stdout must carry only results


def test_measure_latency_sane():
    model = Tiny().train()
    res = measure_latency(model, (4, 2, 10), repeats=5, warmup=1)
    assert res["batch"] == 4
    assert 0 < res["median_ms"] <= res["p90_ms"]
    assert res["min_ms"] <= res["median_ms"]
    assert math.isclose(res["samples_per_s"], 4 / (res["median_ms"] / 1e3), rel_tol=1e-9)
    assert res["device"] == "cpu"
    assert model.training  # mode restored
    with pytest.raises(ValueError):
        measure_latency(model, (1, 2, 10), repeats=0)


def test_measure_latency_resnet18_cpu():
    model = create_model("resnet18", num_classes=9)
    res = measure_latency(model, (1, 12, 1000), repeats=3, warmup=1)
    assert res["batch"] == 1 and res["median_ms"] > 0 and res["samples_per_s"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_measure_latency_cuda():
    model = create_model("resnet18", num_classes=9)
    res = measure_latency(model, (2, 12, 1000), device="cuda", repeats=3, warmup=1)
    assert res["device"].startswith("cuda") and res["median_ms"] > 0
    assert next(model.parameters()).device.type == "cpu"  # caller's model not moved
    macs = count_macs(model.cuda(), (1, 12, 1000))
    assert macs == count_macs(model.cpu(), (1, 12, 1000))  # both counts, every stage


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
@pytest.mark.parametrize("name", ["msse_transformer", "multimodule_rcnn", "ecgnet_lstm"])
def test_full_count_cuda_matches_cpu(name):
    """On CUDA, attention runs flash/efficient kernels and nn.LSTM cuDNN's: the counts match the CPU ones."""
    model = create_model(name, num_classes=3, num_leads=12, num_samples=1000)
    cpu = count_full_macs(model, (2, 12, 1000))
    assert count_full_macs(model.cuda(), (2, 12, 1000)) == cpu
    assert count_full_macs(TinyAttention().cuda(), (2, 8, 10)) == count_full_macs(TinyAttention(), (2, 8, 10))
