"""LightConv (models/attention.py) against a direct, per-position reading of fairseq's lightweight convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ecgtool.models.attention import LightConv, recording


def _reference(mixer: LightConv, x: torch.Tensor) -> torch.Tensor:
    """out[b, i, c] = Σ_k softmax(w[c // (C/H)])[k] · v[b, i + k − left, c], zero outside, then linear2."""
    v = F.glu(mixer.linear1(x), dim=-1)
    b, n, c = v.shape
    kernel = torch.softmax(mixer.weight.view(mixer.num_heads, -1), dim=-1)
    k = kernel.shape[1]
    left = (k - 1) // 2
    out = torch.zeros_like(v)
    for ch in range(c):
        w = kernel[ch // (c // mixer.num_heads)]
        for i in range(n):
            for j in range(k):
                t = i + j - left
                if 0 <= t < n:
                    out[:, i, ch] += w[j] * v[:, t, ch]
    return mixer.linear2(out)


@pytest.mark.parametrize("kernel_size", [3, 4])
def test_lightconv_is_the_softmax_normalised_depthwise_convolution(kernel_size):
    torch.manual_seed(0)
    mixer = LightConv(8, num_heads=2, kernel_size=kernel_size, weight_dropout=0.3).eval()
    x = torch.randn(2, 6, 8)
    with torch.no_grad():
        torch.testing.assert_close(mixer(x), _reference(mixer, x), rtol=1e-5, atol=1e-6)
    assert sum(p.numel() for p in mixer.parameters()) == (8 * 16 + 16) + 2 * kernel_size + (8 * 8 + 8)


def test_recorded_map_is_the_band_of_the_kernels_and_padding_contributes_nothing():
    torch.manual_seed(1)
    mixer = LightConv(8, num_heads=4, kernel_size=3).eval()
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    with torch.no_grad(), recording(mixer) as blocks:
        out = mixer(x, mask)
    assert blocks == [("", mixer)]
    a = mixer.attention_map
    kernel = torch.softmax(mixer.weight.view(4, 3), dim=-1)
    assert a.shape == (2, 4, 5, 5)
    torch.testing.assert_close(a[0, :, 2, 1:4], kernel)  # an inner row holds the whole kernel, centred
    torch.testing.assert_close(a[0, :, 1:4].sum(-1), torch.ones(4, 3))
    assert (a[1, :, :, 3:] == 0).all()  # the padding tokens' columns
    changed = x.clone()
    changed[1, 3:] = 100.0
    with torch.no_grad():
        again = mixer(changed, mask)
    torch.testing.assert_close(again[1, :3], out[1, :3])  # what a padding token holds reaches no real token


def test_weight_dropout_only_in_training():
    torch.manual_seed(2)
    mixer = LightConv(8, num_heads=2, kernel_size=5, weight_dropout=0.5)
    x = torch.randn(3, 7, 8)
    evaluated = mixer.eval()(x)
    torch.manual_seed(3)
    trained = mixer.train()(x)
    assert not torch.allclose(trained, evaluated)
    # drop nothing: the unfolded training path and the convolution agree
    mixer.weight_dropout = 0.0
    torch.testing.assert_close(mixer.train()(x), evaluated, rtol=1e-5, atol=1e-6)
    mixer.weight_dropout = 1e-9
    torch.testing.assert_close(mixer.train()(x), evaluated, rtol=1e-5, atol=1e-5)
