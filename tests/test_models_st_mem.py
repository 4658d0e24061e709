"""ST-MEM's ViT encoder: the official structure (docs/pretrain-methods.md §3.1), padding, token API, explain."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ecgtool.explain.attention import attention
from ecgtool.explain.methods import gradcam
from ecgtool.models import create_model
from ecgtool.models.st_mem_vit import sincos_positions

TINY = dict(dim=64, depth=2, num_heads=2)


def _tiny(**kw):
    torch.manual_seed(0)
    return create_model("st_mem_vit_small", **{"num_classes": 3, **TINY, **kw}).eval()


def test_sincos_table_has_zero_sep_rows_and_concatenated_sin_cos():
    t = sincos_positions(4, 8)
    assert t.shape == (6, 8)
    assert (t[0] == 0).all() and (t[-1] == 0).all()
    np.testing.assert_allclose(t[1], [0, 0, 0, 0, 1, 1, 1, 1])  # patch 0: sin 0, cos 0
    omega = [1.0 / 10000 ** (k / 4) for k in range(4)]
    np.testing.assert_allclose(t[3], [math.sin(2 * w) for w in omega] + [math.cos(2 * w) for w in omega], rtol=1e-6)


@pytest.mark.parametrize("dim, heads", [(384, 6), (768, 12)])
def test_parameter_count_is_the_official_structure(dim, heads):
    """Official ViT-S/B at 12 x 2250 (30 patches): patch embedding, tables, 12 blocks, norm, head."""
    name = "st_mem_vit_small" if dim == 384 else "st_mem_vit_base"
    model = create_model(name, num_classes=5, num_samples=2250)
    assert model.blocks[0].mixer.num_heads == heads and model.blocks[0].mixer.head_dim == 64
    embed = 2 * 75 + (75 * dim + dim) + 2 * dim
    tables = 32 * dim + dim + 12 * dim  # positions (n + 2 rows), SEP, lead vectors
    block = 4 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + (4 * dim * dim + 4 * dim) + (4 * dim * dim + dim)
    expected = embed + tables + 12 * block + 2 * dim + (dim * 5 + 5)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_records_are_zero_padded_to_whole_patches():
    model = _tiny(num_leads=1, num_samples=500)
    assert model.num_patches == 7 and model.pos_embedding.shape == (1, 9, 64)
    x = torch.randn(1, 1, 500)
    patches = model.patch_embed.patchify(x)
    assert patches.shape == (1, 1, 7, 75)
    assert torch.equal(patches[0, 0, 6, :50], x[0, 0, 450:]) and (patches[0, 0, 6, 50:] == 0).all()
    with pytest.raises(ValueError, match="built for 500 samples"):
        model(torch.randn(1, 1, 600))
    assert model(torch.randn(1, 1, 300)).shape == (1, 3)  # shorter: the first rows of the table


def test_pooled_features_are_the_norm_of_the_mean_of_patch_tokens():
    model = _tiny(num_leads=2, num_samples=300)
    x = torch.randn(2, 2, 300)
    with torch.no_grad():
        tokens = model.tokens(x)
        assert tokens.shape == (2, 2, 4 + 2, 64)
        expected = model.norm(tokens[:, :, 1:-1].mean(dim=(1, 2)))
        torch.testing.assert_close(model.forward_features(x), expected)


def test_tokens_see_only_the_kept_patches():
    model = _tiny(num_leads=2, num_samples=300)
    x = torch.randn(1, 2, 300)
    keep = torch.tensor([[[2, 0], [3, 1]]])  # lead 0 keeps patches 2, 0; lead 1 keeps 3, 1
    with torch.no_grad():
        out = model.tokens(x, keep)
        assert out.shape == (1, 2, 2 + 2, 64)
        y = x.clone()
        y[0, 0, 75:150] += 5.0  # lead 0's patch 1 is dropped
        y[0, 1, 0:75] -= 5.0  # lead 1's patch 0 is dropped
        torch.testing.assert_close(model.tokens(y, keep), out)
        all_kept = torch.arange(4).expand(1, 2, 4)
        torch.testing.assert_close(model.tokens(x, all_kept), model.tokens(x))


def test_lead_embeddings_and_leads_check():
    model = _tiny(num_leads=2, num_samples=150)
    assert model.lead_embedding.shape == (2, 64)
    assert model(torch.randn(1, 1, 150)).shape == (1, 3)  # fewer leads: the first lead vectors (official)
    with pytest.raises(ValueError, match="lead embeddings"):
        model(torch.randn(1, 3, 150))


def test_attention_and_gradcam_put_patch_tokens_on_their_samples():
    model = _tiny(num_leads=2, num_samples=300)
    x = torch.randn(2, 2, 300)
    found = model.attention(x)
    (group,) = found.groups
    assert len(group.layers) == 2 and group.layers[0].shape == (2, 2, 12, 12)
    assert group.spans.starts.tolist() == [-75, 0, 75, 150, 225, -75] * 2 and group.spans.channels_last
    assert group.valid.shape == (2, 12) and group.valid.sum() == 2 * 8
    explained = attention(model, x, n_leads=2)
    assert explained.maps.shape == (2, 2, 300) and np.isfinite(explained.maps).all()
    cam = gradcam(model, x, torch.tensor([0, 2]), n_leads=2)
    assert cam.maps.shape[0] == 2 and cam.maps.shape[-1] == 300 and np.isfinite(cam.maps).all()
