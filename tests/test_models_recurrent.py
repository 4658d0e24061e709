"""Fidelity tests for the recurrent model families: dprnn, mina, multimodule_rcnn.

Parameter counts are derived layer by layer from the official architectures
(wangmou21/ECG_RNN ``model.py`` + asteroid ``DPRNNBlock``; hsd1503/MINA
``mina.py``) in their official settings (CinC 2017, 1 lead: DPRNN 4 classes,
MINA 2 classes, AF vs the rest).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from ecgtool.models import create_model
from ecgtool.models.dprnn import overlap_add, segment_chunks
from ecgtool.models.mina import FrequencyFilterBank, periodogram_power
from ecgtool.profile.measure import count_parameters


def _conv1d(cin, cout, k, bias=True):
    return cin * cout * k + (cout if bias else 0)


def _linear(fin, fout, bias=True):
    return fin * fout + (fout if bias else 0)


def _lstm(inp, hidden, layers=1, bidirectional=False):
    dirs = 2 if bidirectional else 1
    total = 0
    for layer in range(layers):
        layer_in = inp if layer == 0 else hidden * dirs
        total += dirs * (4 * hidden * layer_in + 4 * hidden * hidden + 2 * 4 * hidden)
    return total


# --------------------------------------------------------------------------- DPRNN


def _official_dprnn_params(n_classes=4, bn_chan=64, hid=64, n_repeats=4):
    conv1 = _conv1d(1, bn_chan, 8)  # Conv1d(1, 64, k=8, s=4, p=4)
    gln = 2 * bn_chan  # asteroid GlobLN: gamma, beta per channel
    one_path = _lstm(bn_chan, hid, bidirectional=True) + _linear(2 * hid, bn_chan) + gln
    block = 2 * one_path  # intra + inter
    fc1 = _linear(bn_chan * 4, bn_chan * 4)
    fc2 = _linear(bn_chan * 4, n_classes)
    return conv1 + n_repeats * block + fc1 + fc2


def test_dprnn_parameter_count_matches_official():
    expected = _official_dprnn_params()
    assert expected == 666948
    model = create_model("dprnn", num_classes=4, num_leads=1, num_samples=3000)
    assert count_parameters(model)["total"] == expected


def test_dprnn_segmentation_overlap_add_round_trip():
    torch.manual_seed(0)
    chunk, hop = 45, 22
    for n_frames in (251, 751, 100, 45, 7):
        x = torch.randn(2, 5, n_frames)
        chunks = segment_chunks(x, chunk, hop)
        assert chunks.shape[:3] == (2, 5, chunk)
        # normalised overlap-add is the exact inverse
        torch.testing.assert_close(overlap_add(chunks, n_frames, hop, normalize=True), x)
        # the official (unnormalised) sum counts every frame once per covering chunk
        count = overlap_add(torch.ones_like(chunks), n_frames, hop)
        assert count.min() >= 1
        torch.testing.assert_close(overlap_add(chunks, n_frames, hop), x * count)
    # the first chunk starts one chunk before the signal (padding=chunk_size)
    x = torch.arange(1, 101, dtype=torch.float32).reshape(1, 1, 100)
    c = segment_chunks(x, chunk, hop)
    assert torch.all(c[0, 0, :, 0] == 0)
    assert torch.all(c[0, 0, :23, 1] == 0) and c[0, 0, 23, 1] == x[0, 0, 0]  # chunk 1 starts at frame -23


def test_dprnn_model_path_is_identity_without_blocks():
    torch.manual_seed(0)
    model = create_model("dprnn", num_classes=3, num_leads=3, num_samples=400, ola_normalize=True).eval()
    model.blocks = nn.Sequential()
    x = torch.randn(2, 3, 400)
    with torch.no_grad():
        front = model.frontend(x)
        back = model.overlap_add(model.blocks(model.segment(front)), front.shape[-1])
    torch.testing.assert_close(back, front)


def test_dprnn_block_structure():
    model = create_model("dprnn", num_classes=4, num_leads=1, num_samples=3000)
    assert len(model.blocks) == 4
    blk = model.blocks[0]
    for path in (blk.intra, blk.inter):
        assert path.rnn.bidirectional and path.rnn.hidden_size == 64 and path.rnn.input_size == 64
        assert isinstance(path.norm, nn.GroupNorm) and path.norm.num_groups == 1
    assert model.frontend.kernel_size == (8,) and model.frontend.stride == (4,)
    assert model.num_features == 256


# --------------------------------------------------------------------------- MINA


def _official_mina_params(n_classes=2, n_channels=4):
    conv = _conv1d(1, 64, 32)
    conv_k = _conv1d(1, 1, 32)
    att_cnn = (64 + 1) * 8 + 8 * 1
    lstm = _lstm(64, 32, bidirectional=True)
    att_rnn = (2 * 32 + 1) * 8 + 8 * 1
    fc = _linear(2 * 32, 8)
    base = conv + conv_k + att_cnn + lstm + att_rnn + fc
    att_channel = (8 + 1) * 2 + 2 * 1
    return n_channels * base + att_channel + _linear(8, n_classes)


def test_mina_parameter_count_matches_official():
    # The official Net fixes n_class = 2 (AF vs the rest); counted by instantiating it: 115,274.
    expected = _official_mina_params()
    assert expected == 115274
    model = create_model("mina", num_classes=2, num_leads=1, num_samples=3000)
    assert count_parameters(model)["total"] == expected


def _band_gains(fb: FrequencyFilterBank, freq: float, fs: float = 300.0, seconds: float = 30.0):
    t = torch.arange(int(seconds * fs), dtype=torch.float32) / fs
    x = torch.cos(2 * math.pi * freq * t).reshape(1, 1, -1)
    y = fb(x)[0, :, 0]
    edge = int(5 * fs)  # ignore filter edge effects
    rms = lambda v: v[edge:-edge].pow(2).mean().sqrt()
    return [float(rms(y[i]) / rms(x[0, 0])) for i in range(y.shape[0])]


@pytest.mark.parametrize(
    "freq, passing",
    [(0.05, 1), (0.1, 1), (2.0, 2), (10.0, 2), (40.0, 2), (60.0, 3), (100.0, 3), (120.0, 3)],
)
def test_mina_frequency_channels_pass_and_stop_bands(freq, passing):
    fb = FrequencyFilterBank(fs=300.0)  # channels: raw, 0.001-0.5, 0.5-50, >50 Hz
    gains = _band_gains(fb, freq)
    assert gains[0] == pytest.approx(1.0, abs=1e-5)  # raw channel is untouched
    for ch in (1, 2, 3):
        if ch == passing:
            assert gains[ch] > 0.95, (freq, gains)
        else:
            assert gains[ch] < 0.05, (freq, gains)


def test_mina_filters_are_fixed_buffers_and_follow_fs():
    model = create_model("mina", num_classes=2, num_leads=1, num_samples=1000, fs=100.0)
    fb = model.filter_bank
    assert "taps" in dict(fb.named_buffers())
    assert not any(n.startswith("filter_bank") for n, _ in model.named_parameters())
    # at 100 Hz the >50 Hz band is above Nyquist -> the remaining (0.5-50) band becomes a high-pass
    gains = _band_gains(fb, 10.0, fs=100.0)
    assert gains[2] > 0.95 and gains[1] < 0.05
    assert gains[3] == 0.0  # >50 Hz is empty at fs=100: an all-zero channel
    y = model(torch.randn(2, 1, 1000))
    assert torch.isfinite(y).all()


def test_mina_periodogram_power_matches_scipy():
    from scipy.signal import periodogram

    rng = np.random.default_rng(0)
    for n in (3000, 999):
        x = rng.standard_normal((3, n)) + 0.3
        expected = np.array([periodogram(row, 300)[1].sum() for row in x])
        got = periodogram_power(torch.tensor(x), 300.0).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_mina_knowledge_features_guide_attention():
    """The beat/rhythm/frequency knowledge enters the attention scores (changing it changes output)."""
    torch.manual_seed(0)
    model = create_model("mina", num_classes=4, num_leads=1, num_samples=3000).eval()
    branch = model.branches[0]
    x = torch.randn(2, 1, 3000)
    with torch.no_grad():
        base = model(x)
        branch.beat_att.W[-1].mul_(5.0)  # weight on the |first difference| knowledge
        changed = model(x)
    assert not torch.allclose(base, changed)
    # logits, not probabilities (no double softmax)
    assert not torch.allclose(base.softmax(-1).sum(-1), base.sum(-1))


# --------------------------------------------------------------------------- multi-module RCNN


def test_multimodule_structure_and_optional_demographics():
    model = create_model("multimodule_rcnn", num_classes=4, num_leads=1, num_samples=3000)
    assert "demographics" not in model.stages and not hasattr(model, "demographics")
    enc = model.fusion.encoder
    assert len(enc.layers) == 3
    assert enc.layers[0].self_attn.embed_dim == 64 and enc.layers[0].self_attn.num_heads == 8
    assert model.spec_rnn.lstm.bidirectional and model.spec_rnn.lstm.num_layers == 6
    assert not model.raw_rnn.lstm.bidirectional and model.raw_rnn.lstm.num_layers == 2

    torch.manual_seed(0)
    demo = create_model("multimodule_rcnn", num_classes=4, num_leads=1, num_samples=3000, use_demographics=True)
    # age: Linear(100,128)->Linear(128,64); sex: Linear(50,128)->Linear(128,64)
    extra = _linear(100, 128) + _linear(128, 64) + _linear(50, 128) + _linear(128, 64)
    assert count_parameters(demo)["total"] == count_parameters(model)["total"] + extra
    assert demo.stages[-3:] == ["demographics", "fusion", "head"]
    x = torch.randn(2, 1, 3000)
    y = demo(x, age=torch.randn(2, 100), sex=torch.randn(2, 50))
    assert y.shape == (2, 4)
    y.sum().backward()
    assert all(p.grad is not None for p in demo.parameters())
    with pytest.raises(ValueError, match="age and sex"):
        demo(x)


def test_multimodule_raw_resnet_matches_reference_layout():
    model = create_model("multimodule_rcnn", num_classes=4, num_leads=1, num_samples=3000)
    raw = model.raw_cnn
    # stem conv 1->16 k3 (no bias) + BN, then 3 x 3 basic blocks at 16/32/64
    expected = _conv1d(1, 16, 3, bias=False) + 2 * 16
    inplanes = 16
    for planes in (16, 32, 64):
        for j in range(3):
            expected += _conv1d(inplanes, planes, 3, False) + 2 * planes + _conv1d(planes, planes, 3, False) + 2 * planes
            if inplanes != planes:
                expected += _conv1d(inplanes, planes, 1, False) + 2 * planes
            inplanes = planes
    assert sum(p.numel() for p in raw.parameters()) == expected
    x = torch.randn(2, 1, 3000)
    assert raw(x).shape == (2, 64, 10 * 75)  # 300-sample segments, stride 4 -> 75 positions each


def test_multimodule_spectrogram_in_model():
    model = create_model("multimodule_rcnn", num_classes=4, num_leads=2, num_samples=1000)
    t = torch.arange(1000, dtype=torch.float32)
    x = torch.stack([torch.sin(2 * math.pi * t / 8.0), torch.zeros(1000)]).unsqueeze(0)
    spec = model.spectrogram(x)  # (B*S, leads, F, T)
    assert spec.shape[:2] == (10, 2)
    assert spec.shape[2] == model.spectrogram.n_fft // 2 + 1
    # period 8 samples -> bin n_fft / 8 dominates for the sine lead; the zero lead is all zero
    peak = spec[:, 0].mean(dim=-1).argmax(dim=-1)
    assert torch.all(peak == model.spectrogram.n_fft // 8)
    assert torch.all(spec[:, 1] == 0)
