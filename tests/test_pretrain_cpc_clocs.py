"""Tests for the CPC and CLOCS pretraining objectives (ecgtool.train.pretrain.cpc / .clocs)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from ecgtool.models import create_model
from ecgtool.train.pretrain.cpc import CPCObjective, info_nce, sample_negatives

LEADS12 = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def _cpc_backbone(samples=64, seed=0, name="cpc", **kwargs):
    torch.manual_seed(seed)
    return create_model(name, num_classes=3, num_samples=samples, **{"width": 16, "hidden": 16, **kwargs})


# --------------------------------------------------------------------------- CPC: the loss


def _hand_case():
    z = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0]]])  # (1, 4, 2)
    pred = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [5.0, 5.0]]])  # the last step predicts nothing
    idx = torch.tensor([[[2, 3], [0, 3], [0, 1]]])  # steps=1: positives are steps 1, 2, 3
    return z, pred, idx


def test_info_nce_hand_computed():
    z, pred, idx = _hand_case()
    # step 0: scores z.pred0 = [1, 0, 1, 2]; positive z1 -> 0, negatives z2, z3 -> 1, 2
    # step 1: [0, 1, 1, 0]; positive z2 -> 1, negatives z0, z3 -> 0, 0
    # step 2: [1, 1, 2, 2]; positive z3 -> 2, negatives z0, z1 -> 1, 1
    terms = [math.log(1 + math.e + math.e ** 2), math.log(math.e + 2) - 1, math.log(1 + 2 / math.e)]
    loss, acc = info_nce(z, pred, 1, idx, "sum")
    assert loss.item() == pytest.approx(sum(terms), rel=1e-6)
    assert acc.item() == pytest.approx(2 / 3)  # step 0 ranks negative z3 first
    loss, _ = info_nce(z, pred, 1, idx, "mean")
    assert loss.item() == pytest.approx(sum(terms) / 3, rel=1e-6)
    # The batch is averaged: the same record twice gives the same loss.
    loss2, _ = info_nce(z.repeat(2, 1, 1), pred.repeat(2, 1, 1), 1, idx.repeat(2, 1, 1), "sum")
    assert loss2.item() == pytest.approx(sum(terms), rel=1e-6)


def test_info_nce_matches_a_loop_over_steps():
    """The vectorised loss equals the reference's per-step formulation (gather the vectors, dot, CE)."""
    g = torch.Generator().manual_seed(0)
    b, t, d, steps, n = 3, 9, 5, 2, 4
    z = torch.randn(b, t, d, generator=g)
    pred = torch.randn(b, t, d, generator=g)
    torch.manual_seed(1)
    idx = sample_negatives(b, t, steps, n)
    expected = 0.0
    for i in range(t - steps):
        cand = torch.cat([z[:, i + steps].unsqueeze(1), z[torch.arange(b).unsqueeze(1), idx[:, i]]], dim=1)
        logits = (pred[:, i].unsqueeze(1) * cand).sum(-1)
        expected = expected + F.cross_entropy(logits, torch.zeros(b, dtype=torch.long))
    loss, _ = info_nce(z, pred, steps, idx)
    assert torch.allclose(loss, expected, rtol=1e-5)


def test_negatives_never_include_the_positive():
    torch.manual_seed(0)
    length, steps = 6, 2
    idx = sample_negatives(4, length, steps, 2000)
    assert idx.shape == (4, length - steps, 2000)
    positive = torch.arange(steps, length).view(1, -1, 1)
    assert not (idx == positive).any()
    assert idx.min() >= 0 and idx.max() < length
    for i in range(length - steps):  # every other step of the record is drawn
        assert set(idx[:, i].unique().tolist()) == set(range(length)) - {i + steps}


# --------------------------------------------------------------------------- CPC: the objective


def test_cpc_objective_own_backbone_gradients_and_hyperparameters():
    backbone = _cpc_backbone()
    obj = CPCObjective(backbone, fs=100, leads=LEADS12, samples=64, negatives=8)
    assert obj.own_context and obj.rnn is None and obj.backbone is backbone
    assert obj.proj.bias is None and obj.proj.weight.shape == (16, 16)
    torch.manual_seed(1)
    out = obj(torch.randn(2, 12, 64))
    assert set(out) == {"loss", "accuracy"} and out["loss"].dim() == 0
    # 64 steps, 12 ahead: 52 cross-entropies summed, each near log(1 + 8) at the start.
    assert 0.5 * 52 * math.log(9) < out["loss"].item() < 2 * 52 * math.log(9)
    out["loss"].backward()
    for name, p in backbone.named_parameters():
        if not name.startswith("head."):
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert obj.proj.weight.grad is not None
    hp = json.loads(json.dumps(obj.hyperparameters()))
    assert hp["method"] == "cpc" and hp["steps"] == 12 and hp["negatives"] == 8 and hp["context"] == "backbone"
    assert CPCObjective(_cpc_backbone(), fs=100, leads=LEADS12, samples=64).negatives == 128  # the paper's default


def test_cpc_strided_backbone():
    backbone = _cpc_backbone(samples=320, name="cpc_strided")
    obj = CPCObjective(backbone, fs=100, leads=LEADS12, samples=320, negatives=4)
    assert obj.encoder.encode(torch.zeros(1, 12, 320)).shape[1] == 20  # downsampling 16
    obj(torch.randn(2, 12, 320))["loss"].backward()
    with pytest.raises(ValueError, match="steps ahead"):
        obj(torch.randn(2, 12, 160))  # 10 steps: nothing 12 ahead


def test_cpc_sum_and_mean_reductions():
    obj = CPCObjective(_cpc_backbone(), fs=100, leads=LEADS12, samples=64, negatives=8, reduction="mean").eval()
    x = torch.randn(2, 12, 64)
    torch.manual_seed(3)
    mean = obj(x)["loss"]
    obj.reduction = "sum"
    torch.manual_seed(3)
    assert torch.allclose(obj(x)["loss"], mean * (64 - 12), rtol=1e-5)


def test_cpc_determinism_under_seed():
    x = torch.randn(2, 12, 64)
    losses = []
    for _ in range(2):
        torch.manual_seed(7)
        obj = CPCObjective(_cpc_backbone(seed=5), fs=100, leads=LEADS12, samples=64, negatives=8)
        losses.append(obj(x)["loss"])
    assert torch.equal(losses[0], losses[1])


@pytest.mark.parametrize("name,kwargs", [("xresnet1d50", {"width": 8}), ("resnet18", {"base_width": 8})])
def test_cpc_generic_backbone(name, kwargs):
    torch.manual_seed(0)
    backbone = create_model(name, num_classes=2, num_samples=512, **kwargs)
    obj = CPCObjective(backbone, fs=100, leads=LEADS12, samples=512, steps=4, negatives=8, hidden=16, rnn_layers=1)
    assert not obj.own_context and obj.rnn is not None
    channels = obj.rnn.lstm.input_size
    assert obj.proj.weight.shape == (channels, 16)
    assert backbone.training  # the probe left the mode alone
    out = obj(torch.randn(2, 12, 512))
    out["loss"].backward()
    assert backbone.get_submodule(backbone.default_cam_layer)
    first = next(p for n, p in backbone.named_parameters() if not n.startswith("head."))
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert all(p.grad is not None for p in obj.rnn.parameters())
    hp = json.loads(json.dumps(obj.hyperparameters()))
    assert hp["context"] == "objective" and hp["z_layer"] == backbone.default_cam_layer and hp["hidden"] == 16
