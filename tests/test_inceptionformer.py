"""InceptionFormer reproduces the research notebook's parameter/MAC table (NOTEBOOK-RESULTS.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from ecgtool.explain.attention import attention
from ecgtool.models import create_model, list_models, model_info
from ecgtool.profile.measure import count_macs

# The notebook's thop counts for 12 x 1000 input and 9 classes: (params, MACs).
NOTEBOOK_STAGES = {
    "stem": (36.72e3, 36.74e6),
    "block0": (35.07e3, 35.07e6),
    "block1": (271.36e3, 135.68e6),
    "block2": (3.18e6, 793.09e6),
    "block3": (8.41e6, 1.05e9),
}
NOTEBOOK_TOTALS = {
    "inceptionformer": (12.45e6, 2.14e9),
    "inceptionformer_3stage": (3.64e6, 1.04e9),
    "inceptionformer_2482": (8.25e6, 1.61e9),
    "inceptionformer_tiny": (3.13e6, 536.07e6),
    "inceptionformer_sparse": (17.19e6, 1.53e9),
}


def _profile(name: str) -> dict:
    torch.manual_seed(0)
    return count_macs(create_model(name, num_classes=9), (1, 12, 1000))


@pytest.fixture(scope="module")
def base() -> dict:
    return _profile("inceptionformer")


def test_totals_within_one_percent_of_the_notebook(base):
    params, macs = NOTEBOOK_TOTALS["inceptionformer"]
    assert base["params"] == pytest.approx(params, rel=0.01)
    assert base["macs"] == pytest.approx(macs, rel=0.01)


@pytest.mark.parametrize("stage", sorted(NOTEBOOK_STAGES))
def test_each_stage_within_three_percent(base, stage):
    row = {s["name"]: s for s in base["stages"]}[stage]
    params, macs = NOTEBOOK_STAGES[stage]
    assert row["params"] == pytest.approx(params, rel=0.03)
    assert row["macs"] == pytest.approx(macs, rel=0.03)


def test_the_rest_is_three_dense_patch_fusions(base):
    rows = {s["name"]: s for s in base["stages"]}
    assert sum(rows[f"merge{i}"]["params"] for i in (1, 2, 3)) == 516_096 + 128 + 256 + 512  # weights + biases
    assert sum(rows[f"merge{i}"]["macs"] for i in (1, 2, 3)) == pytest.approx(86.0e6, rel=0.01)


@pytest.mark.slow  # builds and counts four more 3-17 M parameter models
@pytest.mark.parametrize("name", [n for n in NOTEBOOK_TOTALS if n != "inceptionformer"])
def test_variant_totals_within_three_percent(name):
    result = _profile(name)
    params, macs = NOTEBOOK_TOTALS[name]
    assert result["params"] == pytest.approx(params, rel=0.03)
    assert result["macs"] == pytest.approx(macs, rel=0.03)


def test_sparse_attention_block_matches_the_notebook():
    result = _profile("inceptionformer_sparse")
    row = {s["name"]: s for s in result["stages"]}["semantic"]
    assert row["params"] == pytest.approx(4.74e6, rel=0.03) and row["macs"] == pytest.approx(236.95e6, rel=0.03)


def test_cls_variant_pools_the_class_token():
    torch.manual_seed(0)
    model = create_model("inceptionformer_cls", num_classes=3, num_leads=2, num_samples=200).eval()
    x = torch.randn(2, 2, 200)
    seen = {}
    model.block3.register_forward_hook(lambda m, i, o: seen.__setitem__("out", o))
    with torch.no_grad():
        features = model.forward_features(x)
    assert seen["out"].shape[-1] == 1 + 25  # class token + 200 / 8 tokens
    torch.testing.assert_close(features, model.pool.norm(seen["out"][..., 0]))


def test_stage_kinds_cycle_as_configured():
    model = create_model("inceptionformer_convmod", num_classes=2)
    kinds = [[type(b).__name__ for b in getattr(model, f"block{i}").blocks] for i in range(4)]
    assert kinds[0] == ["InceptionNeXtBlock"] * 2
    assert kinds[1] == ["InceptionNeXtBlock", "ConvModLayer"] * 2
    assert kinds[2] == ["ConvModLayer", "AttentionLayer"] * 4
    assert kinds[3] == ["AttentionLayer"] * 4


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="unknown mixer"):
        create_model("inceptionformer", num_classes=2, mixer="nope")
    with pytest.raises(ValueError, match="CLS token"):
        create_model("inceptionformer", num_classes=2, cls=True, stages=[["inception"]] * 4)


FAMILY = [n for n in list_models() if model_info(n)["family"] == "inceptionformer"]


@pytest.mark.parametrize("name", FAMILY)
def test_every_variant_narrowed_learns_and_shows_its_attention(name):
    """Each variant's code path at a fraction of its width (the full-size contract runs with the slow tests)."""
    stages = len(model_info(name)["default_kwargs"].get("dims", (64, 128, 256, 512)))
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, dims=[16, 32, 64, 128][:stages], depths=[1, 1, 2, 2][:stages])
    x = torch.randn(2, 12, 1000)
    nn.functional.cross_entropy(model(x), torch.tensor([0, 2])).backward()
    missing = [p for p, t in model.named_parameters() if t.grad is None or not torch.isfinite(t.grad).all()]
    assert not missing
    e = attention(model.eval(), x, n_leads=12)
    assert e.maps.shape == (2, 12, 1000) and np.isfinite(e.maps).all()
    assert e.maps.mean() == pytest.approx(1.0, abs=0.05)  # relative to uniform attention
    for stage in e.info["stages"]:
        weights = e.arrays[f"attention_{stage['stage']}"]  # (B, layers, heads, n, n), rows sum to 1
        assert weights.shape[1:] == (stage["layers"], stage["heads"], stage["tokens"], stage["tokens"])
        np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-4)
