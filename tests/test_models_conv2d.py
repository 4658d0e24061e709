"""Fidelity tests for the 2D-convolution model families: two_stream, im_ecg, se_ecgnet."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from ecgtool.models import create_model
from ecgtool.profile.measure import count_parameters

# --------------------------------------------------------------------------- SE-ECGNet


def _se(c: int, r: int = 16) -> int:
    """SE_Module: Linear(c, c//r) + Linear(c//r, c), both with bias."""
    h = c // r
    return (c * h + h) + (h * c + c)


def se_ecgnet_reference_params(num_leads: int, num_classes: int, struct=(3, 5, 7)) -> int:
    """Parameters of Amadeuszhao/SE-ECGNet models/SE_ECGNet.py, derived layer by layer.

    The official 1D width is 256 = 32 x 8 leads; in general 32 x num_leads. The
    official ``_make_layer`` builds ONE downsample module per stage and passes it
    to every block, so it is counted once per stage.
    """
    bn = lambda c: 2 * c
    stem = 32 * 1 * 1 * 50 + bn(32)  # Conv2d(1, 32, (1, 50), bias=False), BN
    # block1: 3 x ResBlock2d(num_conv=1, k=(1, 15)): BN, conv, SE; shared shortcut BN + Conv2d 1x1 (bias)
    block1 = 3 * (bn(32) + 32 * 32 * 15 + _se(32)) + (bn(32) + 32 * 32 + 32)
    c = 32 * num_leads
    total = stem + block1
    for k in struct:
        # 4 x ResBlock2d(num_conv=3): 3 x (BN + conv 32->32 (1, k)) + SE; no shortcut module
        block2 = 4 * (3 * (bn(32) + 32 * 32 * k) + _se(32))
        # 4 x ResBlock1d: bn1, conv1, SE1, bn4..6, conv4..6, SE2; shared shortcut BN1d + Conv1d 1x1 (bias)
        block3 = 4 * (4 * (bn(c) + c * c * k) + 2 * _se(c)) + (bn(c) + c * c + c)
        total += block2 + block3
    fc = len(struct) * c * num_classes + num_classes
    return total + fc


@pytest.mark.parametrize("num_leads", [8, 12])
def test_se_ecgnet_matches_official_parameter_count(num_leads):
    # Official default: 34 classes (config.py); 8 leads in the official data (5000 samples at 500 Hz,
    # resampled to 2048 by the official loader); the count does not depend on the length.
    model = create_model("se_ecgnet", num_classes=34, num_leads=num_leads, num_samples=5000)
    assert count_parameters(model)["total"] == se_ecgnet_reference_params(num_leads, 34)


def test_se_ecgnet_official_shapes():
    """The official code's shape comments: [b,32,8,2476] -> block1 [b,32,8,310] -> 1D [b,256,20]."""
    model = create_model("se_ecgnet", num_classes=34, num_leads=8, num_samples=5000).eval()
    seen = {}
    model.stem.register_forward_hook(lambda m, i, o: seen.__setitem__("stem", o.shape))
    model.block1.register_forward_hook(lambda m, i, o: seen.__setitem__("block1", o.shape))
    model.scales.branches[0].block1d.register_forward_hook(lambda m, i, o: seen.__setitem__("1d", o.shape))
    with torch.no_grad():
        y = model(torch.randn(2, 8, 5000))
    assert y.shape == (2, 34)
    assert seen["stem"] == (2, 32, 8, 2476)
    assert seen["block1"] == (2, 32, 8, 310)
    assert seen["1d"] == (2, 256, 20)
    assert model.num_features == 3 * 256


def test_se_ecgnet_shares_downsample_like_official():
    model = create_model("se_ecgnet", num_classes=3)
    assert model.block1[0].downsample is model.block1[2].downsample
    unshared = create_model("se_ecgnet", num_classes=3, share_downsample=False)
    assert unshared.block1[0].downsample is not unshared.block1[2].downsample
    assert count_parameters(unshared)["total"] > count_parameters(model)["total"]


# --------------------------------------------------------------------------- two-stream

TORCHVISION_RESNET34 = 21_797_672  # 3 input channels, 1000 classes


@pytest.mark.parametrize("num_leads", [1, 3, 12])
def test_two_stream_freq_stream_is_torchvision_resnet34(num_leads):
    model = create_model("two_stream", num_classes=9, num_leads=num_leads)
    expected = TORCHVISION_RESNET34 - 64 * 3 * 7 * 7 + 64 * num_leads * 7 * 7 - (512 * 1000 + 1000)  # conv1, no fc
    assert count_parameters(model.freq_stream)["total"] == expected
    # The time stream is the 1D ResNet-34 without its classifier; the head sees 512 + 512 features.
    ref_1d = create_model("resnet34", num_classes=9, num_leads=num_leads)
    assert count_parameters(model.time_stream)["total"] == count_parameters(ref_1d)["total"] - (512 * 9 + 9)
    assert model.num_features == 1024


def test_two_stream_spectrogram_view():
    model = create_model("two_stream", num_classes=2)
    x = torch.randn(2, 12, 1000)
    spec = model.spectrogram(x)
    assert spec.shape == (2, 12, 51, 21)  # window 100 -> 51 bins; hop 50, centred -> 21 frames
    assert (spec >= 0).all()
    # Lead 3's spectrogram depends on lead 3 only.
    x2 = x.clone()
    x2[:, 5] = 0
    assert torch.equal(model.spectrogram(x2)[:, 3], spec[:, 3])
    # Short inputs: the window is clamped to the signal length.
    assert model.spectrogram(torch.randn(1, 3, 60)).shape[:2] == (1, 3)


# --------------------------------------------------------------------------- Grad-CAM on 2D maps


@pytest.mark.parametrize("name,num_leads,num_samples", [
    ("im_ecg", 12, 1000), ("im_ecg", 3, 400), ("im_ecg", 1, 500),
    ("se_ecgnet", 12, 1000), ("se_ecgnet", 3, 400),
])
def test_cam_layer_is_leads_by_time(name, num_leads, num_samples):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, num_leads=num_leads, num_samples=num_samples).eval()
    layer = model.get_submodule(model.default_cam_layer)
    store = {}
    h1 = layer.register_forward_hook(lambda m, i, o: store.__setitem__("act", o))
    h2 = layer.register_full_backward_hook(lambda m, gi, go: store.__setitem__("grad", go[0]))
    try:
        y = model(torch.randn(1, num_leads, num_samples))
        y[0, 1].backward()
    finally:
        h1.remove()
        h2.remove()
    act = store["act"]
    assert act.dim() == 4 and act.shape[2] == num_leads and act.shape[3] > 1
    assert store["grad"].shape == act.shape
    weights = store["grad"].mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * act).sum(1))
    assert cam.shape == (1, num_leads, act.shape[3]) and torch.isfinite(cam).all()


def test_im_ecg_structure():
    model = create_model("im_ecg", num_classes=5)
    assert model.default_cam_layer == "multi_branch"
    assert len(model.multi_branch.branches) == 3
    kernels = [b.temporal.kernel_size for b in model.multi_branch.branches]
    assert kernels == [(1, 3), (1, 5), (1, 7)]
    regions = [b.region.kernel_size for b in model.multi_branch.branches]
    assert regions == [(3, 3), (3, 5), (3, 7)]
    assert all(isinstance(b.se, nn.Module) for b in model.multi_branch.branches)


@pytest.mark.parametrize("name", ["two_stream", "im_ecg", "se_ecgnet"])
def test_short_three_lead_input(name):
    """3 leads x 400 samples (the train round-trip's input) and a shorter signal both work."""
    torch.manual_seed(0)
    for t in (400, 120):
        model = create_model(name, num_classes=3, num_leads=3, num_samples=t).train()
        y = model(torch.randn(4, 3, t))
        assert y.shape == (4, 3) and torch.isfinite(y).all()
        y.sum().backward()
        assert all(p.grad is not None for p in model.parameters())
