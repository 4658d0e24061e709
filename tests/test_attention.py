"""The shared token mixers (models/attention.py) on hand-checkable inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import ecgtool.models.attention as attention
from ecgtool.models.attention import (
    TOKEN_MIXERS,
    AttentionBlock,
    BiLevelRoutingAttention,
    ConvModulation,
    CoordAttention1d,
    DwConvPosition,
    HiLoAttention,
    LearnedPosition,
    MultiHeadSelfAttention,
    ShuntedSelfAttention,
    SpatialReductionAttention,
    TransformerBlock,
    WindowAttention,
    recording,
    spread_keys,
    token_mixer,
)


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
    torch.testing.assert_close(out, torch.tensor([[0.25, 0.25, 0.125, 0.125, 0.25]]))  # rows still sum to 1
    with pytest.raises(ValueError):
        spread_keys(w, 2, 7)


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


# ---------------------------------------------------------------------------
# Every mixer: any length, maps in token space, checked explicit path, gradients

DIM, HEADS = 32, 8


def _mixer(name: str, seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return _seeded(token_mixer(name, DIM, HEADS, **kw), seed)


@pytest.mark.parametrize("name", sorted(TOKEN_MIXERS))
@pytest.mark.parametrize("n", [250, 125, 7])
def test_every_mixer_keeps_tokens_and_records_a_token_map(name, n, monkeypatch):
    mixer = _mixer(name)
    x = torch.randn(2, n, DIM)
    with torch.no_grad():
        y = mixer(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    if not isinstance(mixer, AttentionBlock):
        assert name == "convmod"
        return
    checks = []
    real_check = attention.check_recomputed

    def counting_check(*args):
        checks.append(args[0])
        real_check(*args)

    monkeypatch.setattr(attention, "check_recomputed", counting_check)
    with torch.no_grad(), recording(mixer):
        y_recorded = mixer(x)
    assert checks and set(checks) == {type(mixer).__name__}  # the explicit path was checked against the fused one
    torch.testing.assert_close(y_recorded, y)
    amap = mixer.attention_map
    assert amap.shape == (2, HEADS, n, n)
    assert (amap >= 0).all()
    torch.testing.assert_close(amap.sum(-1), torch.ones(2, HEADS, n), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", sorted(TOKEN_MIXERS))
def test_gradients_reach_every_parameter(name):
    mixer = _mixer(name).train()
    x = torch.randn(2, 125, DIM, requires_grad=True)  # 125: odd, not a multiple of any rate, window or region
    (mixer(x) * torch.randn(2, 125, DIM)).sum().backward()
    for pname, p in mixer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    assert x.grad.abs().sum() > 0


def test_token_mixer_names_and_refusal():
    assert set(TOKEN_MIXERS) == {"mhsa", "sra", "shunted", "hilo", "bra", "window", "shifted_window", "convmod"}
    assert token_mixer("shifted_window", 16, 2, window=10).shift == 5
    assert token_mixer("window", 16, 2).window == 25 and token_mixer("window", 16, 2).shift == 0
    assert token_mixer("hilo", 16, 4, window=3, alpha=0.25).l_heads == 1
    with pytest.raises(ValueError, match="unknown token mixer"):
        token_mixer("nope", 16, 2)


def _copy_mhsa(mhsa: MultiHeadSelfAttention, q_w, q_b, kv_w, kv_b, proj: nn.Linear) -> MultiHeadSelfAttention:
    with torch.no_grad():
        mhsa.qkv.weight.copy_(torch.cat([q_w, kv_w]))
        mhsa.qkv.bias.copy_(torch.cat([q_b, kv_b]))
        mhsa.proj.weight.copy_(proj.weight)
        mhsa.proj.bias.copy_(proj.bias)
    return mhsa.eval()


def _same_as_mhsa(block: nn.Module, mhsa: MultiHeadSelfAttention, n: int = 9) -> None:
    x = torch.randn(2, n, mhsa.dim)
    with torch.no_grad():
        with recording(block):
            out = block(x)
        with recording(mhsa):
            expected = mhsa(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(block.attention_map, mhsa.attention_map, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# PVT spatial-reduction attention


def test_sra_without_reduction_is_mhsa():
    sra = _seeded(SpatialReductionAttention(16, 4, sr_ratio=1))
    assert not hasattr(sra, "sr")
    mhsa = _copy_mhsa(MultiHeadSelfAttention(16, 4), sra.q.weight, sra.q.bias, sra.kv.weight, sra.kv.bias, sra.proj)
    _same_as_mhsa(sra, mhsa)


def test_sra_keys_are_strided_conv_then_layernorm():
    sra = _seeded(SpatialReductionAttention(16, 4, sr_ratio=3))
    x = torch.randn(1, 7, 16)  # 7 = 3 + 3 + 1: the last key reduces one real token and two zeros
    reduced = sra.norm(F.conv1d(F.pad(x.transpose(1, 2), (0, 2)), sra.sr.weight, sra.sr.bias, stride=3).transpose(1, 2))
    q = sra.q(x).reshape(1, 7, 4, 4).transpose(1, 2)
    k, v = sra.kv(reduced).reshape(1, 3, 2, 4, 4).permute(2, 0, 3, 1, 4)
    w = torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1)  # √head_dim = 2
    expected = sra.proj((w @ v).transpose(1, 2).reshape(1, 7, 16))
    with torch.no_grad(), recording(sra):
        out = sra(x)
    torch.testing.assert_close(out, expected.detach(), rtol=1e-5, atol=1e-5)
    amap = sra.attention_map
    torch.testing.assert_close(amap[..., :3], (w[..., :1] / 3).expand(-1, -1, -1, 3).detach())
    torch.testing.assert_close(amap[..., 6], w[..., 2].detach())  # the last key pooled one real token


# ---------------------------------------------------------------------------
# Shunted self-attention


def test_shunted_all_rates_one_without_local_term_is_mhsa():
    ssa = _seeded(ShuntedSelfAttention(16, 4, head_rates=(1, 1, 1, 1), local=False))
    assert not ssa.multi_scale and len(ssa.kv) == 1
    mhsa = _copy_mhsa(MultiHeadSelfAttention(16, 4), ssa.q.weight, ssa.q.bias, ssa.kv[0].weight, ssa.kv[0].bias,
                      ssa.proj)
    _same_as_mhsa(ssa, mhsa)


def test_shunted_default_groups_and_validation():
    ssa = ShuntedSelfAttention(64, 8)
    assert ssa.head_rates == (1, 1, 1, 1, 2, 2, 4, 4)
    assert ssa.groups == [(1, 0, 4), (2, 4, 2), (4, 6, 2)]
    assert [kv.out_features for kv in ssa.kv] == [2 * 32, 2 * 16, 2 * 16]
    assert [conv.kernel_size[0] for conv in ssa.sr] == [1, 2, 4]
    with pytest.raises(ValueError, match="adjacent"):
        ShuntedSelfAttention(64, 4, head_rates=(1, 2, 1, 2))
    with pytest.raises(ValueError):
        ShuntedSelfAttention(64, 4, head_rates=(1, 2))


def test_shunted_two_groups_follow_the_official_formulas():
    """Official sr_ratio=2: half the heads over conv-k2 keys, half over conv-k1 keys; reduce → LN → GELU;
    each group's values are enhanced by a depthwise k3 conv before the attention; concat; proj."""
    ssa = _seeded(ShuntedSelfAttention(16, 4, head_rates=(2, 2, 1, 1)))
    x = torch.randn(2, 6, 16)
    q = ssa.q(x).reshape(2, 6, 4, 4).transpose(1, 2)
    outs = []
    for g, (rate, first) in enumerate([(2, 0), (1, 2)]):
        xr = F.conv1d(x.transpose(1, 2), ssa.sr[g].weight, ssa.sr[g].bias, stride=rate).transpose(1, 2)
        xr = F.gelu(F.layer_norm(xr, (16,), ssa.norm[g].weight, ssa.norm[g].bias))
        k, v = ssa.kv[g](xr).reshape(2, -1, 2, 2, 4).permute(2, 0, 3, 1, 4)
        v_flat = v.transpose(1, 2).reshape(2, -1, 8).transpose(1, 2)  # (B, group channels, keys)
        v = v + F.conv1d(v_flat, ssa.local[g].weight, ssa.local[g].bias, padding=1, groups=8).reshape(
            2, 2, 4, -1).transpose(-1, -2)
        w = torch.softmax(q[:, first:first + 2] @ k.transpose(-2, -1) / 2.0, dim=-1)
        outs.append(w @ v)
    expected = ssa.proj(torch.cat(outs, dim=1).transpose(1, 2).reshape(2, 6, 16))
    with torch.no_grad():
        torch.testing.assert_close(ssa(x), expected.detach(), rtol=1e-5, atol=1e-5)


def test_shunted_single_scale_local_term_is_added_to_the_output():
    ssa = _seeded(ShuntedSelfAttention(16, 4, head_rates=(1, 1, 1, 1), local=True))
    plain = _seeded(ShuntedSelfAttention(16, 4, head_rates=(1, 1, 1, 1), local=False))
    plain.load_state_dict({k: v for k, v in ssa.state_dict().items() if not k.startswith("local")})
    x = torch.randn(1, 5, 16)
    v = ssa.kv[0](x)[..., 16:]
    side = F.conv1d(v.transpose(1, 2), ssa.local[0].weight, ssa.local[0].bias, padding=1, groups=16).transpose(1, 2)
    with torch.no_grad():
        torch.testing.assert_close(ssa(x), plain(x) + side @ ssa.proj.weight.T, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# HiLo


def test_hilo_window_one_is_mhsa():
    hilo = _seeded(HiLoAttention(16, 4, window=1))
    assert hilo.h_heads == 0 and hilo.l_heads == 4
    with torch.no_grad():  # HiLo has no output projection beyond l_proj; give MHSA the same
        mhsa = _copy_mhsa(MultiHeadSelfAttention(16, 4), hilo.l_q.weight, hilo.l_q.bias, hilo.l_kv.weight,
                          hilo.l_kv.bias, hilo.l_proj)
    _same_as_mhsa(hilo, mhsa)


def test_hilo_hifi_only_is_window_attention_without_bias():
    hilo = _seeded(HiLoAttention(16, 4, window=4, alpha=0.0))
    win = WindowAttention(16, 4, window=4, relative_bias=False).eval()
    with torch.no_grad():
        win.qkv.load_state_dict(hilo.h_qkv.state_dict())
        win.proj.load_state_dict(hilo.h_proj.state_dict())
    _same_as_mhsa(hilo, win, n=11)


def test_hilo_maps_windows_and_pooled_keys():
    hilo = _seeded(HiLoAttention(16, 4, window=3, alpha=0.5))  # 2 Hi-Fi heads, then 2 Lo-Fi heads
    x = torch.randn(1, 8, 16)  # windows {0,1,2} {3,4,5} {6,7}
    with torch.no_grad(), recording(hilo):
        hilo(x)
    amap = hilo.attention_map[0]
    same_window = torch.arange(8)[:, None] // 3 == torch.arange(8)[None, :] // 3
    assert (amap[:2][:, ~same_window] == 0).all() and (amap[:2][:, same_window] > 0).all()
    lofi = amap[2:]  # a pooled key's weight shared by the tokens it averaged
    torch.testing.assert_close(lofi[..., 0], lofi[..., 1])
    torch.testing.assert_close(lofi[..., 3], lofi[..., 5])
    torch.testing.assert_close(lofi[..., 6], lofi[..., 7])
    q = hilo.l_q(x).reshape(1, 8, 2, 4).transpose(1, 2)
    pooled = torch.stack([x[:, 0:3].mean(1), x[:, 3:6].mean(1), x[:, 6:8].mean(1)], dim=1)  # real tokens only
    k = hilo.l_kv(pooled)[..., :8].reshape(1, 3, 2, 4).transpose(1, 2)
    w = torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1)[0]
    torch.testing.assert_close(lofi[..., 6], w[..., 2].detach() / 2)


# ---------------------------------------------------------------------------
# BiFormer bi-level routing attention


@pytest.mark.parametrize("n, regions, topk", [(250, 25, 3), (7, 3, 2), (23, 5, 2)])
def test_bra_attends_only_inside_routed_regions(n, regions, topk):
    bra = _seeded(BiLevelRoutingAttention(DIM, HEADS, regions=regions, topk=topk))
    with torch.no_grad(), recording(bra):
        bra(torch.randn(2, n, DIM))
    s = math.ceil(n / regions)
    routed = bra.routed_regions  # (B, R, topk)
    assert routed.shape == (2, math.ceil(n / s), topk)
    token_region = torch.arange(n) // s
    allowed = torch.zeros(2, n, n, dtype=torch.bool)
    for b in range(2):
        for t in range(n):
            allowed[b, t] = torch.isin(token_region, routed[b, token_region[t]])
    amap = bra.attention_map
    assert (amap.masked_select(~allowed[:, None].expand_as(amap)) == 0).all()
    assert (amap.masked_select(allowed[:, None].expand_as(amap)) > 0).all()  # every routed real token is seen
    assert allowed.float().mean() < 1  # the routing did exclude something


def test_bra_routing_every_region_is_full_attention():
    bra = _seeded(BiLevelRoutingAttention(16, 4, regions=5, topk=5, side_kernel=0, qk_scale=0.5))  # 1/√head_dim
    mhsa = MultiHeadSelfAttention(16, 4).eval()
    with torch.no_grad():
        mhsa.qkv.load_state_dict(bra.qkv.state_dict())
        mhsa.proj.load_state_dict(bra.wo.state_dict())
    _same_as_mhsa(bra, mhsa, n=23)  # 23: regions of 5 tokens, two padded keys masked


def test_bra_official_scale_and_local_context_enhancement():
    """Default scale is dim^-0.5 (official qk_dim ** -0.5), and LCE = wo(attention + dwconv(v))."""
    bra = _seeded(BiLevelRoutingAttention(16, 4, regions=4, topk=4, side_kernel=5))
    mhsa = MultiHeadSelfAttention(16, 4).eval()
    with torch.no_grad():
        factor = math.sqrt(4) / math.sqrt(16)  # head-scaled MHSA with q shrunk = dim-scaled attention
        mhsa.qkv.weight.copy_(bra.qkv.weight * torch.tensor([factor] * 16 + [1.0] * 32)[:, None])
        mhsa.qkv.bias.copy_(bra.qkv.bias * torch.tensor([factor] * 16 + [1.0] * 32))
        mhsa.proj.load_state_dict(bra.wo.state_dict())
        x = torch.randn(2, 12, 16)
        v = bra.qkv(x)[..., 32:]
        side = F.conv1d(v.transpose(1, 2), bra.lepe.weight, bra.lepe.bias, padding=2, groups=16).transpose(1, 2)
        torch.testing.assert_close(bra(x), mhsa(x) + side @ bra.wo.weight.T, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# Swin window attention


def _groups_mask(groups: list[list[int]], n: int) -> torch.Tensor:
    mask = torch.zeros(n, n, dtype=torch.bool)
    for g in groups:
        for i in g:
            mask[i, g] = True
    return mask


@pytest.mark.parametrize("n, window, shift, groups", [
    (10, 5, 0, [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]),
    # rolled by -2: windows hold tokens 2..6 and 7 8 9 | 0 1; the wrapped 0 1 never meet 7 8 9
    (10, 5, 2, [[2, 3, 4, 5, 6], [7, 8, 9], [0, 1]]),
    # 8 tokens padded to 10 (pads 8, 9 masked): 2..6, then 7 (8, 9 padded) | 0 1
    (8, 5, 2, [[2, 3, 4, 5, 6], [7], [0, 1]]),
    (7, 5, 0, [[0, 1, 2, 3, 4], [5, 6]]),
])
def test_window_attention_masks_are_exactly_the_windows(n, window, shift, groups):
    win = _seeded(WindowAttention(16, 4, window=window, shift=shift))
    with torch.no_grad(), recording(win):
        win(torch.randn(2, n, 16))
    expected = _groups_mask(groups, n)
    nonzero = win.attention_map != 0
    assert (nonzero == expected).all()


def test_shifted_window_output_is_window_attention_on_rolled_tokens():
    shifted = _seeded(WindowAttention(16, 4, window=4, shift=2))
    plain = WindowAttention(16, 4, window=4).eval()
    plain.load_state_dict(shifted.state_dict())
    x = torch.randn(1, 12, 16)
    with torch.no_grad():
        a, b = shifted(x), plain(torch.roll(x, -2, dims=1)).roll(2, dims=1)
    # windows that did not wrap are ordinary windows of the rolled sequence
    torch.testing.assert_close(a[:, 2:10], b[:, 2:10], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a[:, :2], b[:, :2])  # the wrapped window is masked apart


def test_one_window_without_bias_is_mhsa():
    win = _seeded(WindowAttention(16, 4, window=9))
    with torch.no_grad():
        win.relative_position_bias_table.zero_()
    mhsa = MultiHeadSelfAttention(16, 4).eval()
    mhsa.qkv.load_state_dict(win.qkv.state_dict())
    mhsa.proj.load_state_dict(win.proj.state_dict())
    _same_as_mhsa(win, mhsa, n=9)
    _same_as_mhsa(win, mhsa, n=6)  # shorter than a window: one window of N tokens, as Swin's block


def _bias_only(block: AttentionBlock, n: int) -> torch.Tensor:
    with torch.no_grad():
        block.qkv.weight.zero_()
        block.qkv.bias.zero_()
        with recording(block):
            block(torch.randn(1, n, block.dim))
    return block.attention_map[0]


def test_window_relative_bias_is_indexed_by_offset():
    win = WindowAttention(8, 2, window=3).eval()
    table = torch.tensor([[0.0, 1.0], [0.5, -1.0], [2.0, 0.0], [-0.5, 0.25], [1.5, 3.0]])  # row = i - j + 2
    with torch.no_grad():
        win.relative_position_bias_table.copy_(table)
    amap = _bias_only(win, 3)
    for h in range(2):
        for i in range(3):
            scores = torch.tensor([table[i - j + 2, h] for j in range(3)])
            torch.testing.assert_close(amap[h, i], torch.softmax(scores, 0))
    torch.manual_seed(0)
    fresh = WindowAttention(8, 2, 50).relative_position_bias_table
    assert fresh.shape == (99, 2) and 0.015 < fresh.std() < 0.025  # trunc-normal std .02 (timm's ±2 bounds never bind)


def test_mhsa_relative_bias_clips_long_offsets():
    mhsa = MultiHeadSelfAttention(8, 2, relative_bias=True, max_len=2).eval()
    table = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.5]])  # offset i-j: -1, 0, +1 (clipped beyond)
    with torch.no_grad():
        mhsa.relative_position_bias_table.copy_(table)
    amap = _bias_only(mhsa, 5)
    for h in range(2):
        for i in range(5):
            scores = torch.tensor([table[max(-1, min(1, i - j)) + 1, h] for j in range(5)])
            torch.testing.assert_close(amap[h, i], torch.softmax(scores, 0))
    assert "relative_position_bias_table" not in MultiHeadSelfAttention(8, 2).state_dict()


# ---------------------------------------------------------------------------
# Conv2Former modulation, coordinate attention, positions


def test_conv_modulation_formula():
    cm = _seeded(ConvModulation(8, kernel=5))
    x = torch.randn(2, 9, 8)
    a = F.conv1d(F.gelu(cm.a(x)).transpose(1, 2), cm.a_conv.weight, cm.a_conv.bias, padding=2, groups=8)
    expected = cm.proj(a.transpose(1, 2) * cm.v(x))
    torch.testing.assert_close(cm(x), expected)
    assert sum(p.numel() for p in cm.parameters()) == 3 * (8 * 8 + 8) + (8 * 5 + 8)
    with pytest.raises(ValueError):
        ConvModulation(8, kernel=4)


def test_coordinate_attention_is_shared_by_mvms():
    from ecgtool.models import mvms_ecg

    assert mvms_ecg.CoordAttention1d is CoordAttention1d
    assert set(CoordAttention1d(32).state_dict()) >= {"conv1.weight", "bn1.running_mean", "conv_h.weight",
                                                      "conv_w.bias"}


def test_position_encodings():
    pos = DwConvPosition(8, kernel=3)
    with torch.no_grad():
        pos.conv.weight.zero_()
        pos.conv.bias.zero_()
    x = torch.randn(2, 11, 8)
    torch.testing.assert_close(pos(x), x)  # x + dwconv(x)
    learned = LearnedPosition(6, 8)
    torch.testing.assert_close(learned(x[:, :6]), x[:, :6] + learned.pos)
    with torch.no_grad():
        learned.pos.copy_(torch.arange(8.0).expand(1, 6, 8))  # constant along tokens
    torch.testing.assert_close(learned(x), x + torch.arange(8.0))  # resized to 11 tokens
    with pytest.raises(ValueError):
        DwConvPosition(8, kernel=2)


def test_block_param_counts_at_dim_256():
    counts = {name: sum(p.numel() for p in token_mixer(name, 256, 8).parameters()) for name in TOKEN_MIXERS}
    assert counts == {"mhsa": 263168, "sra": 395008, "shunted": 725248, "hilo": 230400, "bra": 264704,
                      "window": 263560, "shifted_window": 263560, "convmod": 200448}


@pytest.mark.parametrize("name", sorted(set(TOKEN_MIXERS) - {"convmod"}))
def test_every_attention_mixer_runs_on_a_fused_kernel(name):
    """4D inputs and masks a fused SDPA kernel accepts: the CPU flash kernel here (a 5D input would be refused)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    mixer = _mixer(name)
    with torch.no_grad(), sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        for n in (125, 7):
            assert mixer(torch.randn(1, n, DIM)).shape == (1, n, DIM)
