"""ST-MEM's objective: hand-computed loss, masked patches only, per-lead masking, what the encoder sees, gradients."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ecgtool.models import create_model
from ecgtool.train.pretrain.st_mem import STMEMObjective, kept_count

LEADS = ["I", "II"]


def _objective(samples: int = 80, patch: int = 10, **kw) -> STMEMObjective:
    torch.manual_seed(0)
    encoder = create_model("st_mem_vit_small", num_classes=2, num_leads=2, num_samples=samples, patch_size=patch,
                           dim=32, depth=2, num_heads=2)
    kw = {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2, **kw}
    return STMEMObjective(encoder, fs=100.0, leads=LEADS, samples=samples, **kw)


def _fixed_masking(objective, mask_rows):
    """Replace the random draw by ``mask_rows`` (L, n), the same for every record: 1 = dropped."""
    mask_rows = torch.tensor(mask_rows, dtype=torch.float32)

    def masking(batch, leads, n, device):
        order = torch.argsort(mask_rows, dim=1, stable=True)  # kept (0) first, each in patch order
        restore = order.argsort(dim=1)
        k = int((mask_rows[0] == 0).sum())
        expand = (batch, leads, n)
        return order[:, :k].expand(batch, leads, k), mask_rows.expand(expand), restore.expand(expand)

    objective.random_masking = masking


def test_loss_by_hand_norm_pix_off_and_on():
    obj = _objective(samples=4, patch=2, norm_pix_loss=False)
    x = torch.tensor([[[1.0, 3.0, 2.0, 2.0], [0.0, 0.0, 4.0, 0.0]]])
    pred = torch.zeros(1, 2, 2, 2)
    mask = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # lead I drops patch 0, lead II patch 1
    # lead I patch [1, 3]: mean(1, 9) = 5; lead II patch [4, 0]: mean(16, 0) = 8; mean of the two = 6.5
    assert obj.reconstruction_loss(x, pred, mask).item() == pytest.approx(6.5)
    obj.norm_pix_loss = True
    # [1, 3] → mean 2, unbiased var 2 → (∓1)/√(2+1e-6); [4, 0] → mean 2, var 8 → (±2)/√(8+1e-6)
    expected = 0.5 * (1 / (2 + 1e-6) + 4 / (8 + 1e-6))
    assert obj.reconstruction_loss(x, pred, mask).item() == pytest.approx(expected, rel=1e-6)


def test_forward_loss_is_the_hand_value_of_the_decoded_patches(monkeypatch):
    obj = _objective(samples=4, patch=2, norm_pix_loss=False)
    _fixed_masking(obj, [[1, 0], [0, 1]])
    pred = torch.tensor([[[[0.0, 1.0], [9.0, 9.0]], [[9.0, 9.0], [1.0, 2.0]]]], requires_grad=True)
    monkeypatch.setattr(obj, "decode", lambda latent, restore: pred)
    x = torch.tensor([[[1.0, 3.0, 2.0, 2.0], [0.0, 0.0, 4.0, 0.0]]])
    # lead I patch 0: ((1-0)² + (3-1)²)/2 = 2.5; lead II patch 1: ((4-1)² + (0-2)²)/2 = 6.5 → 4.5
    assert obj(x)["loss"].item() == pytest.approx(4.5)


def test_unmasked_patches_do_not_change_the_loss():
    obj = _objective()
    x = torch.randn(3, 2, 80)
    torch.manual_seed(1)
    _, mask, _ = obj.random_masking(3, 2, 8, x.device)
    pred = torch.randn(3, 2, 8, 10)
    base = obj.reconstruction_loss(x, pred, mask)
    kept = (mask == 0).unsqueeze(-1)
    other_pred = torch.where(kept, torch.randn_like(pred) * 100, pred)
    other_x = torch.where(kept.reshape(3, 2, 8, 1).expand(-1, -1, -1, 10).reshape(3, 2, 80), torch.randn_like(x) * 7, x)
    torch.testing.assert_close(obj.reconstruction_loss(x, other_pred, mask), base)
    torch.testing.assert_close(obj.reconstruction_loss(other_x, pred, mask), base)
    assert not torch.allclose(obj.reconstruction_loss(x, torch.where(kept, pred, pred + 1), mask), base)


def test_padded_samples_count_nowhere():
    obj = _objective(samples=75, patch=10)  # 8 patches, the last with 5 real samples and 5 zeros
    x = torch.randn(2, 2, 75)
    mask = torch.ones(2, 2, 8)
    pred = torch.randn(2, 2, 8, 10)
    base = obj.reconstruction_loss(x, pred, mask)
    changed = pred.clone()
    changed[..., 7, 5:] += 50.0
    torch.testing.assert_close(obj.reconstruction_loss(x, changed, mask), base)
    obj.norm_pix_loss = False  # the last patch's error is the mean over its 5 real samples
    only_last = torch.zeros(2, 2, 8)
    only_last[..., 7] = 1
    expected = ((pred[..., 7, :5] - x[..., 70:]) ** 2).mean()
    torch.testing.assert_close(obj.reconstruction_loss(x, pred, only_last), expected)


@pytest.mark.parametrize("n, ratio, kept", [(30, 0.75, 7), (8, 0.75, 2), (4, 0.75, 1), (3, 0.75, 1), (2, 0.1, 1)])
def test_kept_count_is_the_official_one_within_bounds(n, ratio, kept):
    assert kept_count(n, ratio) == kept


def test_mask_ratio_is_exact_per_lead_and_leads_are_independent():
    obj = _objective(samples=300)  # 30 patches of 10: the official 7 kept, 23 dropped
    torch.manual_seed(3)
    keep, mask, restore = obj.random_masking(4, 2, 30, "cpu")
    assert keep.shape == (4, 2, 7)
    assert (mask.sum(dim=2) == 23).all()
    assert (mask.gather(2, keep) == 0).all()  # the kept patches are the unmasked ones
    assert not torch.equal(mask[:, 0], mask[:, 1])  # each lead its own draw
    assert torch.equal(torch.sort(restore, dim=2).values, torch.arange(30).expand(4, 2, 30))


def test_encoder_sees_only_kept_patches_and_sep_tokens():
    obj = _objective()
    seen = []
    handle = obj.encoder.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    _fixed_masking(obj, [[0, 1, 1, 1, 0, 1, 1, 1], [1, 1, 0, 1, 1, 1, 0, 1]])
    latents = []
    h2 = obj.encoder.blocks.register_forward_hook(lambda m, i, o: latents.append(o.detach()))
    try:
        x = torch.randn(2, 2, 80)
        obj(x)
        y = x.clone()
        y[:, 0, 10:40] += 3.0  # lead I's dropped patches 1-3
        y[:, 1, 0:20] -= 3.0  # lead II's dropped patches 0-1
        obj(y)
    finally:
        handle.remove()
        h2.remove()
    assert seen[0] == (2, 2 * (2 + 2), 32)  # 2 kept + 2 SEP per lead
    torch.testing.assert_close(latents[0], latents[1])


def test_gradients_reach_encoder_and_decoder_and_positions_are_frozen():
    obj = _objective()
    obj(torch.randn(2, 2, 80))["loss"].backward()
    assert not obj.encoder.pos_embedding.requires_grad
    for name, p in obj.named_parameters():
        if name.startswith("encoder.head.") or name == "encoder.pos_embedding":
            assert p.grad is None, name  # the classifier head is not part of pretraining
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_deterministic_under_seed():
    x = torch.randn(2, 2, 80)
    losses = []
    for seed in (7, 7, 8):
        obj = _objective()
        torch.manual_seed(seed)
        losses.append(obj(x)["loss"].item())
    assert losses[0] == losses[1] and losses[0] != losses[2]
    assert math.isfinite(losses[0])


def test_hyperparameters_are_json_and_refusals():
    obj = _objective()
    hp = json.loads(json.dumps(obj.hyperparameters()))
    assert hp["method"] == "st-mem" and hp["mask_ratio"] == 0.75 and hp["norm_pix_loss"] is True
    assert hp["decoder_dim"] == 16 and hp["patch_size"] == 10 and hp["leads"] == LEADS
    assert obj.backbone is obj.encoder
    with pytest.raises(TypeError, match="ST-MEM ViT"):
        STMEMObjective(create_model("resnet18", num_classes=2), fs=100.0, leads=LEADS, samples=80)
    encoder = create_model("st_mem_vit_small", num_classes=2, num_samples=80, patch_size=10, dim=32, depth=1, num_heads=2)
    with pytest.raises(ValueError, match="built for 80 samples"):
        STMEMObjective(encoder, fs=100.0, leads=LEADS, samples=160)
