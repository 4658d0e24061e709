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


# --------------------------------------------------------------------------- CLOCS: the loss

from ecgtool.train.pretrain.clocs import CLOCSObjective, clocs_loss, view_samples  # noqa: E402

L2, E10 = math.log(2), math.exp(10)


def test_clocs_loss_hand_computed():
    # view a: e1, e2; view b: e1, e1 -> cos/0.1 = [[10, 10], [0, 0]]
    h = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]])
    diag_row = (L2 + L2) / 2  # -log(e^10 / 2e^10), -log(1 / 2)
    diag_col = (math.log(1 + 1 / E10) + math.log(1 + E10)) / 2  # columns sum to e^10 + 1
    distinct = clocs_loss(h, torch.tensor([0, 1]))
    assert distinct.item() == pytest.approx((diag_row + diag_col) / 2, rel=1e-6)
    assert clocs_loss(h, None).item() == pytest.approx(distinct.item())
    # One patient: the off-diagonal pairs are positives too. The reference takes the upper triangle row-wise
    # (-log(e^10 / 2e^10)) and the lower column-wise (-log(1 / (e^10 + 1))); 4 terms.
    same = torch.tensor([7, 7])
    reference = (diag_row + diag_col + L2 + math.log(1 + E10)) / 4
    assert clocs_loss(h, same, symmetric=False).item() == pytest.approx(reference, rel=1e-6)
    # Symmetric: rows (0,1) and (1,0) both -log 1/2; columns (0,1) and (1,0) as the diagonal's columns.
    assert clocs_loss(h, same).item() == pytest.approx((diag_row + diag_col + L2 + diag_col) / 4, rel=1e-6)


def _reference_transcription(h, pids):
    """The reference's obtain_contrastive_loss (exp, log, triangles) with its `loss =` read as `+=`."""
    same = (pids.view(-1, 1) == pids.view(1, -1)).float()
    r1, c1 = torch.where(torch.triu(same, 1) > 0)
    r2, c2 = torch.where(torch.tril(same, -1) > 0)
    loss, n, terms = 0.0, 0, 2
    for a, b in [(a, b) for a in range(h.shape[0]) for b in range(a + 1, h.shape[0])]:
        v1, v2 = h[a], h[b]
        s = torch.exp(v1 @ v2.T / (v1.norm(dim=1).view(-1, 1) * v2.norm(dim=1).view(1, -1) * 0.1))
        rows, cols = s.sum(1), s.sum(0)
        pair = -torch.log(s.diag() / rows).mean() - torch.log(s.diag() / cols).mean()
        terms = 2
        if len(r1):
            pair = pair - torch.log(s[r1, c1] / rows[r1]).mean()
            terms += 1
        if len(r2):
            pair = pair - torch.log(s[r2, c2] / cols[c2]).mean()
            terms += 1
        loss, n = loss + pair, n + 1
    return loss / (terms * n)


@pytest.mark.parametrize("pids", [[0, 1, 2, 3, 4], [0, 1, 0, 2, 1]])
def test_clocs_loss_matches_the_reference_over_all_pairs(pids):
    torch.manual_seed(0)
    h, pids = torch.randn(4, 5, 3, dtype=torch.float64), torch.tensor(pids)
    assert torch.allclose(clocs_loss(h, pids, symmetric=False), _reference_transcription(h, pids))


def test_clocs_loss_is_invariant_to_a_permutation_of_the_batch():
    torch.manual_seed(0)
    h, pids = torch.randn(3, 6, 4), torch.tensor([0, 1, 0, 2, 1, 3])
    perm = torch.randperm(6)
    assert torch.allclose(clocs_loss(h, pids), clocs_loss(h[:, perm], pids[perm]), atol=1e-6)


_SIMPLEX = [[1.0, 0.0, 0.0], [-0.5, 0.75 ** 0.5, 0.0], [-0.5, -(0.75 ** 0.5), 0.0]]


@pytest.mark.parametrize("pids,records,value", [
    ([0, 1], [[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]], math.log(1 + math.exp(-20))),  # antipodal: cos 1 vs -1
    ([0, 1, 2], _SIMPLEX, math.log(1 + 2 * math.exp(-15))),  # simplex: cos 1 vs -1/2
    ([4, 4], [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], math.log(2)),  # one patient: every similarity equal
])
def test_identical_views_give_the_minimum(pids, records, value):
    """With both views identical and the records arranged as the loss wants them (apart for different
    patients, together for one), CLOCS is at its minimum for that batch composition: moving either view
    only raises it. (Identical views alone are not enough: negatives can still move further apart.)"""
    pids, one = torch.tensor(pids), torch.tensor(records, dtype=torch.float64)
    best = clocs_loss(torch.stack([one, one]), pids)
    assert best.item() == pytest.approx(value, rel=1e-9)
    torch.manual_seed(0)
    for _ in range(20):
        moved = torch.stack([one, one + 0.3 * torch.randn_like(one)])
        assert clocs_loss(moved, pids) > best
        assert clocs_loss(torch.stack([one + 0.3 * torch.randn_like(one), one]), pids) > best


def test_same_patient_records_are_positives():
    torch.manual_seed(0)
    h = torch.randn(2, 4, 3, dtype=torch.float64)
    a, b = clocs_loss(h, torch.tensor([0, 1, 2, 3])), clocs_loss(h, torch.tensor([0, 1, 0, 3]))
    assert not torch.isclose(a, b)
    # Pulling record 2 of view b onto record 0 of view a lowers the loss only when they share a patient.
    pulled = h.clone()
    pulled[1, 2] = h[0, 0]
    assert clocs_loss(pulled, torch.tensor([0, 1, 0, 3])) - b < clocs_loss(pulled, torch.tensor([0, 1, 2, 3])) - a


# --------------------------------------------------------------------------- CLOCS: the objective


def _resnet(leads=12, samples=128, seed=0):
    torch.manual_seed(seed)
    return create_model("resnet18", num_classes=2, num_leads=leads, num_samples=samples, base_width=8)


def test_clocs_views_and_shapes():
    x = torch.arange(2 * 12 * 256, dtype=torch.float32).view(2, 12, 256)
    pids = torch.tensor([5, 9])
    obj = CLOCSObjective(_resnet(samples=128), fs=100, leads=LEADS12, samples=256, mode="cmsc")
    views, p = obj.views(x, pids)
    assert len(views) == 2 and torch.equal(views[0], x[..., :128]) and torch.equal(views[1], x[..., 128:])
    assert torch.equal(p, pids)
    obj = CLOCSObjective(_resnet(1, 128), fs=100, leads=LEADS12, samples=256, mode="cmsc", view_leads=["II", "V2"])
    views, p = obj.views(x, pids)
    assert [v.shape for v in views] == [(4, 1, 128)] * 2 and p.tolist() == [5, 5, 9, 9]
    assert torch.equal(views[1][1, 0], x[0, 7, 128:])  # record 0, lead V2, second half
    obj = CLOCSObjective(_resnet(1, 256), fs=100, leads=LEADS12, samples=256, mode="cmlc")
    views, _ = obj.views(x, pids)
    assert len(views) == 12 and torch.equal(views[3], x[:, 3:4])
    obj = CLOCSObjective(_resnet(12, 128), fs=100, leads=LEADS12, samples=256, mode="cmsmlc", view_leads=["I", "aVL"])
    views, _ = obj.views(x, pids)
    assert len(views) == 4 and all(v.shape == (2, 12, 128) for v in views)
    assert torch.equal(views[1][:, 0], x[:, 0, 128:]) and views[1][:, 1:].abs().sum() == 0  # lead I, half 2
    assert torch.equal(views[2][:, 4], x[:, 4, :128]) and views[2][:, :4].abs().sum() == 0  # aVL, half 1
    assert view_samples("cmsc", 1000) == 500 and view_samples("cmlc", 1000) == 1000
    with pytest.raises(ValueError, match="num_samples=128"):
        CLOCSObjective(_resnet(samples=256), fs=100, leads=LEADS12, samples=256, mode="cmsc")
    with pytest.raises(ValueError, match="one lead or all 12"):
        CLOCSObjective(_resnet(leads=3, samples=256), fs=100, leads=LEADS12, samples=256, mode="cmlc")


@pytest.mark.parametrize("mode", ["cmsc", "cmlc", "cmsmlc"])
def test_clocs_objective_trains_the_backbone(mode):
    samples = 256
    backbone = _resnet(12, view_samples(mode, samples))
    obj = CLOCSObjective(backbone, fs=100, leads=LEADS12, samples=samples, mode=mode, embedding_dim=16,
                         view_leads=["I", "II", "V1"])
    out = obj(torch.randn(4, 12, samples), torch.tensor([0, 1, 0, 2]))
    assert set(out) == {"loss", "positive_cosine"} and torch.isfinite(out["loss"])
    out["loss"].backward()
    for name, p in backbone.named_parameters():
        if not name.startswith("head."):
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    hp = json.loads(json.dumps(obj.hyperparameters()))
    assert hp["method"] == f"clocs-{mode}" and hp["temperature"] == 0.1 and hp["view_samples"] == view_samples(mode, samples)


def test_clocs_objective_permuted_batch_same_loss():
    obj = CLOCSObjective(_resnet(1, 128), fs=100, leads=LEADS12, samples=128, mode="cmlc",
                         view_leads=["I", "II", "V1"]).eval()
    torch.manual_seed(0)
    x, pids = torch.randn(5, 12, 128), torch.tensor([0, 1, 0, 2, 1])
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        assert torch.allclose(obj(x, pids)["loss"], obj(x[perm], pids[perm])["loss"], atol=1e-5)


def test_clocs_backbone_swap_and_determinism():
    losses = []
    for _ in range(2):
        torch.manual_seed(3)
        backbone = create_model("xresnet1d50", num_classes=2, num_samples=128, width=8)
        obj = CLOCSObjective(backbone, fs=100, leads=LEADS12, samples=256, mode="cmsc", embedding_dim=0)
        assert isinstance(obj.embed, torch.nn.Identity)
        losses.append(obj(torch.randn(3, 12, 256), torch.tensor([0, 0, 1]))["loss"])
    assert torch.equal(losses[0], losses[1])
    losses[0].backward()
    assert backbone.stem[0][0].weight.grad is None  # the second objective's backbone: untouched by the first


# --------------------------------------------------------------------------- the cpc model, narrowed


def test_cpc_model_contract_narrowed():
    """The registry contract for ``cpc`` at width 16 (the full 512-wide one runs with the slow tests)."""
    model = _cpc_backbone(samples=1000, width=16, hidden=16, head_hidden=8)
    assert model.stages == ["encoder", "rnn", "pool", "head"] and model.num_features == 48
    x = torch.randn(2, 12, 1000)
    store = {}
    layer = model.get_submodule(model.default_cam_layer)
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("act", o))
    y = model.train()(x)
    handle.remove()
    assert y.shape == (2, 3) and store["act"].shape == (2, 16, 1000)
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        z = model.encode(x)
        c = model.context(z)
        assert z.shape == (2, 1000, 16) and c.shape == (2, 1000, 16)
        assert torch.allclose(model.forward_features(x), model.pool(c.transpose(1, 2)))
        # The context is causal: step t does not see later steps.
        x2 = x.clone()
        x2[..., 500:] = 0
        assert torch.allclose(model.context(model.encode(x2))[:, :500], c[:, :500], atol=1e-6)
    linear = _cpc_backbone(samples=1000, head_hidden=0)
    assert isinstance(linear.head, torch.nn.Linear) and linear.head.in_features == 48  # the --linear-eval head
