"""Tests for the clocs_cnn family (ecgtool.models.clocs_cnn): fidelity to CLOCS' reference encoder."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from ecgtool.models import create_model, model_info
from ecgtool.models.clocs_cnn import CLOCSCNN, MIN_SAMPLES, clocs_length
from ecgtool.train.pretrain.clocs import CLOCSObjective

LEADS12 = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def test_reference_parameter_count_at_2500_samples():
    """cnn_network_contrastive (1 lead, 2500 samples, E=256) + second_cnn_network, counted from the layer shapes."""
    model = create_model("clocs_cnn", num_classes=1, num_leads=1, num_samples=2500)
    conv = (1 * 4 * 7 + 4) + (4 * 16 * 7 + 16) + (16 * 32 * 7 + 32)  # weights + biases
    bn = 2 * (4 + 16 + 32)  # affine weight + bias
    embed = 320 * 256 + 256
    head = 256 * 1 + 1
    assert sum(p.numel() for p in model.parameters()) == conv + bn + embed + head == 86649
    assert model.flat_features == 320 and model.embed.in_features == 320 and model.num_features == 256
    assert isinstance(model.head, nn.Linear) and (model.head.in_features, model.head.out_features) == (256, 1)
    for stage in (model.stage1, model.stage2, model.stage3):
        c = stage[0]
        assert (c.kernel_size, c.stride, c.padding, c.bias is not None) == ((7,), (3,), (0,), True)
        assert isinstance(stage[2], nn.ReLU) and not stage[2].inplace
        assert stage[3].kernel_size == 2 and stage[4].p == 0.1


def test_class_defaults_are_the_reference():
    model = CLOCSCNN(num_classes=2)
    assert (model.num_leads, model.num_samples, model.num_features, model.flat_features) == (1, 2500, 256, 320)
    assert model_info("clocs_cnn")["input_view"]["name"] == "raw"


def test_lengths_and_too_short_refused():
    assert clocs_length(2500) == 10 and clocs_length(500) == 1 and clocs_length(1000) == 3
    assert MIN_SAMPLES == 388 and clocs_length(388) == 1 and clocs_length(387) == 0
    create_model("clocs_cnn", num_classes=2, num_leads=1, num_samples=MIN_SAMPLES)
    with pytest.raises(ValueError, match="num_samples >= 388"):
        create_model("clocs_cnn", num_classes=2, num_leads=1, num_samples=387)


def test_features_embedding_and_cam_map():
    torch.manual_seed(0)
    model = create_model("clocs_cnn", num_classes=3, num_leads=1, num_samples=2500).eval()
    x = torch.randn(2, 1, 2500)
    store = {}
    hook = model.stage3.register_forward_hook(lambda m, i, o: store.__setitem__("act", o))
    with torch.no_grad():
        feats = model.forward_features(x)
    hook.remove()
    assert feats.shape == (2, 256) and store["act"].shape == (2, 32, 10)
    with pytest.raises(ValueError, match="built for 2500 samples"):
        model(torch.randn(2, 1, 2000))


@pytest.mark.parametrize("mode", ["cmsc", "cmlc"])
def test_clocs_objective_runs_on_the_encoder(mode):
    v = 500
    samples = 2 * v if mode == "cmsc" else v
    torch.manual_seed(0)
    encoder = create_model("clocs_cnn", num_classes=1, num_leads=1, num_samples=v)
    obj = CLOCSObjective(encoder, fs=100, leads=LEADS12, samples=samples, mode=mode)
    out = obj(torch.randn(4, 12, samples), torch.tensor([0, 1, 0, 2]))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    for name, p in encoder.named_parameters():
        if not name.startswith("head."):  # the head is not in the pretraining graph
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
