"""ECG-JEPA objective (ecgtool/train/pretrain/jepa.py): masks, EMA target, L1 loss, gradients."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ecgtool.models import create_model
from ecgtool.train.pretrain.jepa import JEPAObjective, momentum_at, sample_block_mask, sample_masks

LEADS = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def _objective(seed=0, samples=1000, **kwargs):
    torch.manual_seed(seed)
    encoder = create_model("ecg_jepa_vit_xs", num_classes=2, num_samples=samples, dim=32, depth=2, num_heads=4)
    return JEPAObjective(encoder, fs=500, leads=LEADS, samples=samples, **kwargs)


def _runs(mask: np.ndarray) -> list[int]:
    """Lengths of the maximal runs of True."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(edges[1::2] - edges[::2])


@pytest.mark.parametrize("n", [200, 40])
def test_masks_are_disjoint_blocks_with_the_official_keep_ratio(n):
    torch.manual_seed(0)
    for _ in range(20):
        keep, target = sample_masks(8, n)
        k = keep.shape[1]
        assert 0.15 * n <= k <= np.ceil(0.25 * n)
        assert keep.shape == (8, k) and target.shape == (8, n - k)
        for i in range(8):
            ctx, tgt = set(keep[i].tolist()), set(target[i].tolist())
            assert not ctx & tgt and ctx | tgt == set(range(n))
            assert keep[i].tolist() == sorted(ctx) and target[i].tolist() == sorted(tgt)
            masked = np.zeros(n, dtype=bool)
            masked[target[i].numpy()] = True
            assert min(_runs(masked)) >= 10, _runs(masked)


def test_masks_deterministic_under_seed_and_differ_per_record():
    torch.manual_seed(3)
    a = sample_masks(4, 200)
    torch.manual_seed(3)
    b = sample_masks(4, 200)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0][0], a[0][1])  # per-record masks, one keep count for the batch
    torch.manual_seed(4)
    assert not all(torch.equal(u, v) for u, v in zip(sample_masks(4, 200), a))


def test_block_mask_remainder_attaches():
    rng = np.random.default_rng(0)
    for _ in range(200):
        keep = sample_block_mask(37, 200, 10, rng)
        assert keep.sum() == 37
        assert min(_runs(~keep)) >= 10


def test_target_gets_no_gradient_and_loss_reaches_context_and_predictor():
    obj = _objective()
    out = obj(torch.randn(3, 12, 1000))
    assert set(out) >= {"loss", "context_fraction", "momentum", "target_std"}
    assert all(v.dim() == 0 for v in out.values())
    out["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in obj.target.parameters())
    for name, p in list(obj.encoder.named_parameters()) + list(obj.predictor.named_parameters()):
        if name.startswith("head."):
            assert p.grad is None  # the probe is not part of pretraining
            continue
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_after_step_is_exactly_the_ema_rule_with_the_linear_schedule():
    obj = _objective(total_steps=4)
    opt = torch.optim.AdamW(obj.parameters(), lr=1e-2, weight_decay=0.1)  # all parameters: the target has no grad
    assert obj.momentum_now() == pytest.approx(0.998 + 0.0015 / 4)
    expected_m = [momentum_at(n, 4, 0.998, 0.9995) for n in range(1, 7)]
    assert expected_m[-3:] == [0.9995] * 3
    for step in range(6):
        obj(torch.randn(2, 12, 500))["loss"].backward()
        before = [t.clone() for t in obj.target.parameters()]
        opt.step()
        assert all(torch.equal(t, b) for t, b in zip(obj.target.parameters(), before))  # the optimiser never moves it
        opt.zero_grad()
        m = expected_m[step]
        obj.after_step()
        for t, b, c in zip(obj.target.parameters(), before, obj.encoder.parameters()):
            assert torch.equal(t, m * b + (1.0 - m) * c)
        assert int(obj.ema_steps) == step + 1
    assert "ema_steps" in obj.state_dict()  # the schedule resumes with the objective's state
    moved = [not torch.equal(t, c) for t, c in zip(obj.target.parameters(), obj.encoder.parameters())]
    assert any(moved)


def test_loss_is_l1_of_prediction_against_target_layernorm_outputs(monkeypatch):
    obj = _objective(samples=500)  # 20 patches
    torch.manual_seed(1)
    keep, target = sample_masks(2, 20)
    monkeypatch.setattr(obj, "masks", lambda b, n, device=None: (keep, target))
    full = torch.arange(2 * 20 * 32, dtype=torch.float32).reshape(2, 20, 32) / 100
    pred = torch.randn(2, target.shape[1], 32)
    monkeypatch.setattr(obj.target, "tokens", lambda x, keep=None: full)
    monkeypatch.setattr(obj.predictor, "forward", lambda z, k, t, n: pred)
    loss = obj(torch.randn(2, 12, 500))["loss"]
    hand = sum(abs(pred[b, j, d].item() - full[b, target[b, j], d].item())
               for b in range(2) for j in range(target.shape[1]) for d in range(32)) / pred.numel()
    assert loss.item() == pytest.approx(hand, rel=1e-5)


def test_targets_are_the_target_encoders_layernorm_tokens(monkeypatch):
    obj = _objective(samples=500).eval()
    x = torch.randn(2, 12, 500)
    captured = {}
    original = obj.predictor.forward

    def spy(z, k, t, n):
        captured["k"], captured["t"] = k, t
        return original(z, k, t, n)

    monkeypatch.setattr(obj.predictor, "forward", spy)
    torch.manual_seed(5)
    loss = obj(x)["loss"]
    with torch.no_grad():
        h = obj.target.tokens(x).gather(1, captured["t"][..., None].expand(-1, -1, 32))
        p = original(obj.encoder.tokens(x, captured["k"]), captured["k"], captured["t"], 20)
    assert loss.item() == pytest.approx((p - h).abs().mean().item(), rel=1e-5)


def test_backbone_is_the_target_and_hyperparameters_serialise():
    obj = _objective(total_steps=123)
    assert obj.backbone is obj.target and obj.backbone.model_name == "ecg_jepa_vit_xs"
    ctx = _objective(checkpoint_encoder="context")
    assert ctx.backbone is ctx.encoder
    hp = json.loads(json.dumps(obj.hyperparameters()))
    assert hp["method"] == "jepa" and hp["total_steps"] == 123 and hp["pred_dim"] == 16 and hp["pred_depth"] == 2
    assert hp["min_block_size"] == 10 and hp["min_keep"] == 0.15 and hp["max_keep"] == 0.25
    with pytest.raises(TypeError, match="ecg_jepa_vit"):
        JEPAObjective(create_model("resnet18", num_classes=2), fs=500, leads=LEADS, samples=1000)


def test_predictor_defaults_follow_the_official_configs():
    # every official config: pred_dim = dim / 2, pred_depth = depth, pred_heads = heads (96/8/4 for ViT-XS)
    torch.manual_seed(0)
    enc = create_model("ecg_jepa_vit_xs", num_classes=2, dim=64, depth=3, num_heads=2)
    obj = JEPAObjective(enc, fs=500, leads=LEADS, samples=5000)
    assert (obj.pred_dim, obj.pred_depth, obj.pred_heads) == (32, 3, 2)
    assert not any(k.endswith(".bias") for k, _ in obj.predictor.named_parameters())
