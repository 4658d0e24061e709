"""The shared token mixers (models/attention.py) on hand-checkable inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from ecgtool.models.attention import MultiHeadSelfAttention, TransformerBlock, recording, spread_keys


def _seeded(module: nn.Module, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    for p in module.parameters():
        nn.init.normal_(p, std=0.2)
    return module.eval()


def test_mhsa_equals_torch_multihead_attention():
    mhsa = _seeded(MultiHeadSelfAttention(16, num_heads=4))
    ref = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    with torch.no_grad():
        ref.in_proj_weight.copy_(mhsa.qkv.weight)
        ref.in_proj_bias.copy_(mhsa.qkv.bias)
        ref.out_proj.weight.copy_(mhsa.proj.weight)
        ref.out_proj.bias.copy_(mhsa.proj.bias)
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        expected, weights = ref(x, x, x, average_attn_weights=False)
        with recording(mhsa) as blocks:
            out = mhsa(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert blocks == [("", mhsa)] and not mhsa.record_attention  # switched off again
    torch.testing.assert_close(mhsa.attention_map, weights, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mhsa.attention_map.sum(-1), torch.ones(2, 4, 7))


def test_map_is_only_computed_when_recording():
    mhsa = _seeded(MultiHeadSelfAttention(8, num_heads=2))
    mhsa(torch.randn(1, 5, 8))
    assert mhsa.attention_map is None


def test_spread_keys_shares_a_pooled_weight_equally():
    w = torch.tensor([[0.5, 0.25, 0.25]])  # keys pooled 2 tokens each over 5 tokens; the last pools one
    out = spread_keys(w, 2, 5)
    torch.testing.assert_close(out, torch.tensor([[0.25, 0.25, 0.125, 0.125, 0.125]]))


@pytest.mark.parametrize("layer_scale", [None, 1e-6])
def test_transformer_block_residual_and_layer_scale(layer_scale):
    block = TransformerBlock(8, MultiHeadSelfAttention(8, 2), mlp_ratio=2.0, layer_scale=layer_scale).eval()
    x = torch.randn(2, 5, 8)
    y = block(x)
    assert y.shape == x.shape
    if layer_scale is not None:  # γ starts tiny: the block starts near the identity
        assert (y - x).abs().max() < 1e-4
    n = sum(p.numel() for p in block.parameters())
    assert n == (8 * 24 + 24 + 8 * 8 + 8) + (8 * 16 + 16 + 16 * 8 + 8) + 4 * 8 + (16 if layer_scale else 0)
