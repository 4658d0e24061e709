"""The ECG-JEPA encoder ViT (ecgtool/models/ecg_jepa_vit.py): official sizes, tokens(keep), heads, explain."""

from __future__ import annotations

import math

import pytest
import torch

from ecgtool.explain.attention import attention as attention_maps
from ecgtool.models import create_model
from ecgtool.models.attention import sinusoid
from ecgtool.models.ecg_jepa_vit import EcgJepaViT

TINY = dict(dim=32, depth=2, num_heads=4)


def _tiny(seed=0, **kwargs):
    torch.manual_seed(seed)
    return EcgJepaViT(3, **{**TINY, **kwargs})


def _encoder_params(model):
    return sum(p.numel() for k, p in model.named_parameters() if not k.startswith("head."))


@pytest.mark.slow
def test_official_parameter_counts():
    # the configs' "learnable encoder parameters" (configs/pretrain/ViT*_*.yaml l.1)
    for name, count in [("ecg_jepa_vit_xs", 3_600_000), ("ecg_jepa_vit_s", 14_277_888), ("ecg_jepa_vit_b", 85_185_024)]:
        assert _encoder_params(create_model(name, num_classes=2, num_samples=5000)) == count, name


def test_no_biases_and_official_init():
    model = _tiny()
    names = [k for k, _ in model.named_parameters()]
    assert not any(k.endswith(".bias") for k in names), names
    assert all(m.eps == 1e-6 for m in model.modules() if isinstance(m, torch.nn.LayerNorm))
    big = EcgJepaViT(2, dim=192, depth=8, num_heads=4)
    std = 0.02 / math.sqrt(16)
    assert abs(big.blocks[0].mlp.fc2.weight.std().item() - std) < 0.2 * std
    assert abs(big.blocks[0].mlp.fc1.weight.std().item() - 0.02) < 0.004
    assert torch.equal(model.pos_embed, sinusoid(40, 32, None, torch.float32))
    assert "pos_embed" not in model.state_dict()  # a non-persistent buffer, as official


def test_tokens_keep_matches_gathered_inputs():
    model = _tiny().eval()
    x = torch.randn(2, 12, 1000)
    full = model.tokens(x)
    assert full.shape == (2, 40, 32)
    keep = torch.tensor([[0, 5, 6, 39], [1, 2, 3, 4]])
    sub = model.tokens(x, keep)
    assert sub.shape == (2, 4, 32)
    # the same as encoding the gathered patch embeddings (positions added before the gather)
    emb = model.embed(x)
    ref = model.encode(torch.stack([emb[i, keep[i]] for i in range(2)]))[:, 1:]
    assert torch.allclose(sub, ref, atol=1e-6)
    # the final LayerNorm (no affine bias; weight 1 at init): zero mean, unit variance per token
    assert torch.allclose(full.mean(-1), torch.zeros(2, 40), atol=1e-5)


def test_length_not_a_multiple_of_the_patch_is_cropped():
    model = _tiny().eval()
    x = torch.randn(1, 12, 1010)
    with torch.no_grad():
        assert torch.equal(model(x), model(x[..., :1000]))
        longer = model(torch.randn(1, 12, 1500))  # beyond the cached table: positions extended
    assert longer.shape == (1, 3)
    with pytest.raises(ValueError, match="shorter than one patch"):
        model(torch.randn(1, 12, 20))


@pytest.mark.parametrize("pool", ["attentive", "register", "mean"])
def test_heads(pool):
    model = _tiny(pool=pool).eval()
    x = torch.randn(2, 12, 500)
    with torch.no_grad():
        feats = model.forward_features(x)
        tokens = model.norm(model.blocks(torch.cat([model.registers.expand(2, -1, -1), model.embed(x)], 1)))
    if pool == "register":
        assert torch.allclose(feats, tokens[:, 0], atol=1e-6)
    elif pool == "mean":
        assert torch.allclose(feats, tokens[:, 1:].mean(1), atol=1e-6)
    else:  # one query cross-attending to register + patches, then head.fc (the official pooler's proj)
        a = model.head.attentive
        q = a.q(a.query).reshape(1, 4, 8).transpose(0, 1)  # (heads, 1, d)
        k, v = a.kv(tokens).reshape(2, -1, 2, 4, 8).permute(2, 0, 3, 1, 4)
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(8), dim=-1)
        assert torch.allclose(feats, (w @ v).transpose(1, 2).reshape(2, 32), atol=1e-5)
    assert all(k.startswith("head.") for k, _ in model.named_parameters()
               if "attentive" in k or k.startswith("head"))


@pytest.mark.parametrize("pool", ["attentive", "register", "mean"])
def test_attention_maps(pool):
    model = _tiny(pool=pool)
    x = torch.randn(2, 12, 500)
    found = model.attention(x)
    assert found.arrays["attention_blocks"].shape == (2, 2, 4, 21, 21)
    explanation = attention_maps(model, x, 12)
    assert explanation.maps.shape == (2, 12, 500)
    assert torch.isfinite(torch.as_tensor(explanation.maps)).all()
    spans = model.positions("patches", model.patches, x, (2, 20, 32))
    assert spans.channels_last and spans.width == 25 and list(spans.starts[:3]) == [0, 25, 50]
