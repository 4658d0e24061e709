"""Tests for ecgtool.profile.measure."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from ecgtool.models import create_model
from ecgtool.profile.measure import count_macs, count_parameters, measure_latency


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
    assert res["stages"] == [
        {"name": "conv", "macs": batch * TINY_CONV_MACS, "params": TINY_CONV_PARAMS},
        {"name": "fc", "macs": batch * TINY_FC_MACS, "params": TINY_FC_PARAMS},
    ]


def test_stage_fallback_and_other_remainder():
    model = Tiny()
    del model.stages  # fallback: named_children
    res = count_macs(model, (1, 2, 10))
    assert [s["name"] for s in res["stages"]] == ["conv", "fc"]

    model.stages = ["conv"]  # fc not listed -> reported as "other"
    model.scale = nn.Parameter(torch.ones(1))  # parameter outside every stage
    res = count_macs(model, (1, 2, 10))
    assert res["stages"][-1] == {"name": "other", "macs": TINY_FC_MACS, "params": TINY_FC_PARAMS + 1}
    assert sum(s["macs"] for s in res["stages"]) == res["macs"]
    assert sum(s["params"] for s in res["stages"]) == res["params"]

    model.stages = ["conv", "missing"]
    with pytest.raises(ValueError, match="missing"):
        count_macs(model, (1, 2, 10))


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
    assert macs["macs"] == count_macs(model.cpu(), (1, 12, 1000))["macs"]
