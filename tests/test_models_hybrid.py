"""The CNN/transformer hybrids: light_transformer (beats, LightConv), dual_branch_tokensel (token selection,
RR loss), mpgt (gated fine-to-coarse fusion) — their specific mechanisms and their attention for explain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_cli
from test_explain import make_checkpoint

from ecgtool.errors import EcgtoolError
from ecgtool.explain.attention import attention
from ecgtool.explain.methods import gradcam
from ecgtool.explain.run import open_saliency
from ecgtool.models import create_model
from ecgtool.models.dual_branch_tokensel import _in_full_space, rr_loss
from ecgtool.models.mpgt import GatedFusion, TemporalConv


@pytest.fixture(scope="module")
def test_store(synthetic_splits):
    return synthetic_splits / "test.zarr"


def _marked(samples: int, peaks_per_record: list[list[int]], leads: int = 2, seed: int = 0) -> torch.Tensor:
    """Random leads plus the rpeaks view's mark channel."""
    torch.manual_seed(seed)
    x = torch.randn(len(peaks_per_record), leads + 1, samples)
    x[:, -1] = 0
    for i, peaks in enumerate(peaks_per_record):
        x[i, -1, peaks] = 1.0
    return x


# --------------------------------------------------------------------------- light_transformer


def test_light_transformer_rr_features_and_empty_beat_slots_are_masked():
    torch.manual_seed(0)
    small = create_model("light_transformer", num_classes=3, num_leads=2, num_samples=600, fs=100.0, n_beats=6).eval()
    large = create_model("light_transformer", num_classes=3, num_leads=2, num_samples=600, fs=100.0, n_beats=9).eval()
    large.load_state_dict(small.state_dict())  # the number of beat slots holds no parameter
    x = _marked(600, [[100, 200, 350], [50, 150, 250, 350, 450, 550]])
    with torch.no_grad():
        torch.testing.assert_close(large(x), small(x))  # empty slots reach neither the convolution nor the pooling
    _, valid, peaks = small.windows.cut(x[:, :2], x[:, 2])
    assert peaks[0].tolist() == [100, 200, 350, -1, -1, -1] and valid[0].tolist() == [True] * 3 + [False] * 3
    rr = small.rr.intervals(peaks)[0]  # pre, post (s), pre / mean − 1, post / mean − 1; the mean RR is 1.25 s
    torch.testing.assert_close(rr[:3, :2], torch.tensor([[1.0, 1.0], [1.0, 1.5], [1.5, 1.5]]))
    torch.testing.assert_close(rr[:3, 2:], torch.tensor([[-0.2, -0.2], [-0.2, 0.2], [0.2, 0.2]]))
    assert (rr[3:] == 0).all()


def test_light_transformer_attention_through_the_rpeaks_view(test_store, tmp_path):
    ckpt = make_checkpoint(tmp_path / "lt.ckpt", test_store, "light_transformer", fs=100.0)
    out = tmp_path / "att"
    run_cli("explain", ckpt, test_store, "--first", 2, "-o", out, "--method", "attention", "--no-charts")
    g = open_saliency(out / "saliency.zarr")
    assert g["saliency"].shape == (2, 12, 1000)
    heads, peaks = g["attention_beats"][:], g["beat_peak"][:]
    assert heads.shape[:3] == (2, 2, 4) and heads.shape[3] == heads.shape[4] == 20  # records, layers, heads, beats²
    assert ((peaks >= 0).sum(1) >= 5).all()  # ~1 beat/s in 10 s
    assert (heads[:, :, :, :, peaks[0] < 0][0] == 0).all()  # nobody takes from an empty beat slot
    saliency = g["saliency"][:]
    assert (saliency >= 0).all() and np.isfinite(saliency).all()


# --------------------------------------------------------------------------- dual_branch_tokensel


def _dual(**kw):
    torch.manual_seed(0)
    base = dict(num_classes=3, num_leads=2, num_samples=400, cnn_widths=[8, 8], bottleneck=4, dim=16, depths=[3, 2])
    return create_model("dual_branch_tokensel", **{**base, **kw})


def test_token_selection_keeps_the_tokens_the_cls_attends_to_most():
    model = _dual(patch_sizes=[20, 50], keep_ratio=0.5, select_after=1).eval()
    x = torch.randn(2, 2, 400)
    e = attention(model, x, n_leads=2)
    branch = model.branches[0]  # 20 patches of 20 samples, 10 kept after the first block
    first = torch.from_numpy(e.arrays["attention_branch0"][:, 0])  # (B, heads, 21, 21): before the selection
    expected = first[:, :, 0, 1:].mean(1).topk(10, dim=1).indices.sort(dim=1).values
    assert torch.equal(torch.from_numpy(e.arrays["kept_branch0"]), expected)
    assert torch.equal(branch.kept_index, expected)
    later = e.arrays["attention_branch0"][:, 1]  # in the full token space: no remaining token takes from a dropped one
    remaining = np.concatenate([[0], expected[0].numpy() + 1])
    dropped = np.setdiff1d(np.arange(21), remaining)
    assert (later[0][:, remaining][:, :, dropped] == 0).all() and np.allclose(later.sum(-1), 1.0, atol=1e-5)
    assert e.maps.shape == (2, 2, 400) and abs(e.maps.mean() - 1.0) < 1e-3  # CLS relevance, 1 = uniform
    with torch.no_grad():
        model(x)
    assert branch.blocks[0].mixer.cls_weights is None  # nothing kept once selected


def test_selected_layers_are_placed_back_in_the_full_token_space():
    torch.manual_seed(0)
    a = torch.softmax(torch.randn(2, 3, 3, 3), dim=-1)  # [CLS, 2 kept tokens] of 5
    index = torch.tensor([[1, 3], [0, 2]])
    full = _in_full_space(a, index, 5)
    where = torch.tensor([[0, 2, 4], [0, 1, 3]])
    for b in range(2):
        torch.testing.assert_close(full[b][:, where[b]][:, :, where[b]], a[b])
        others = [t for t in range(5) if t not in where[b]]
        torch.testing.assert_close(full[b][:, others][:, :, others], torch.eye(len(others)).expand(3, -1, -1))
    torch.testing.assert_close(full.sum(-1), torch.ones(2, 3, 5))


def test_rr_loss_is_one_minus_the_correlation_and_is_an_auxiliary_loss():
    a = torch.randn(4, 16)
    assert rr_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    assert rr_loss(a, -3 * a + 1).item() == pytest.approx(2.0, abs=1e-5)  # Pearson: shift and scale do not matter
    model = _dual(patch_sizes=[20, 50], rr_weight=0.5).train()
    x = torch.randn(3, 2, 400)
    features = model.forward_features(x)
    terms = model.auxiliary_losses()
    assert set(terms) == {"rr"}
    torch.testing.assert_close(terms["rr"], 0.5 * rr_loss(features[:, :16], features[:, 16:]))
    terms["rr"].backward()  # it trains both branches
    assert model.branches[0].embed.weight.grad.abs().sum() > 0 and model.branches[1].embed.weight.grad.abs().sum() > 0
    model.eval()(x)
    assert model.auxiliary_losses() == {}
    off = _dual(patch_sizes=[20, 50], rr_weight=0.0).train()
    off(x)
    assert off.auxiliary_losses() == {}


def test_dual_branch_gradcam_places_patches_and_refuses_the_token_layers():
    model = _dual(patch_sizes=[20, 50]).eval()
    x = torch.randn(2, 2, 400)
    e = gradcam(model, x, torch.tensor([0, 1]), n_leads=2, layer="branches.1.embed")
    assert e.maps.shape == (2, 2, 400) and (e.maps[:, 0, :50] == e.maps[:, 0, :1]).all()  # one value per patch
    with pytest.raises(EcgtoolError, match="CLS token"):
        gradcam(model, x, torch.tensor([0, 1]), n_leads=2, layer="branches.0.blocks.2")
    other = model(torch.randn(2, 2, 300))  # another length: the position table is interpolated
    assert other.shape == (2, 3)


# --------------------------------------------------------------------------- mpgt


def test_gated_fusion_and_causal_tcn():
    torch.manual_seed(0)
    fusion = GatedFusion(4)
    x1, x2 = torch.randn(2, 8, 4), torch.randn(2, 4, 4)
    pooled = (x1[:, 0::2] + x1[:, 1::2]) / 2  # 8 fine tokens → 4 coarse ones
    torch.testing.assert_close(fusion(x1, x2), pooled * torch.sigmoid(torch.tanh(fusion.fc(pooled))) + x2)
    tcn = TemporalConv(4, kernel_size=3, dilation=2).eval()
    x = torch.randn(1, 10, 4)
    changed = x.clone()
    changed[:, 6:] = 5.0
    torch.testing.assert_close(tcn(changed)[:, :6], tcn(x)[:, :6])  # the future does not reach the past
    assert not torch.allclose(tcn(changed)[:, 6:], tcn(x)[:, 6:])


def test_mpgt_attention_per_branch(test_store, tmp_path):
    torch.manual_seed(0)
    model = create_model("mpgt", num_classes=3, num_leads=2, num_samples=500, dim=16).eval()
    e = attention(model, torch.randn(2, 2, 500), n_leads=2)
    fine, coarse = e.arrays["attention_fine"], e.arrays["attention_coarse"]
    assert fine.shape == (2, 2, 4, 63, 63) and coarse.shape == (2, 2, 4, 16, 16)  # ⌈500 / 8⌉, ⌈⌈500 / 4⌉ / 8⌉
    np.testing.assert_allclose(fine.sum(-1), 1.0, atol=1e-5)
    assert e.maps.shape == (2, 2, 500) and abs(e.maps.mean() - 1.0) < 0.05
    # and through the command, for the registered defaults
    ckpt = make_checkpoint(tmp_path / "mpgt.ckpt", test_store, "mpgt")
    run_cli("explain", ckpt, test_store, "--first", 1, "-o", tmp_path / "att", "--method", "attention", "--no-charts")
    assert open_saliency(tmp_path / "att" / "saliency.zarr")["saliency"].shape == (1, 12, 1000)
