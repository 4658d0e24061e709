"""Training augmentations: each one's effect on a hand-checkable batch, seeded draws, DDP-size
independence, the specs, and train's use of them (resume exact, validation untouched)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import assert_same_run, interrupt_after_epoch, run_cli, train_one_and_two_processes, wfdb_store

from ecgtool.checkpoint import Checkpoint
from ecgtool.errors import ConfigError
from ecgtool.train import augment as A
from ecgtool.train.loop import TrainArgs, Trainer

FS = 100.0


def draws(n, seed=0):
    """Draws for a batch of ``n`` records from a NumPy generator of ``seed`` (which a test can repeat)."""
    return A.Draws(np.random.default_rng(seed), torch.Generator().manual_seed(seed), n, slice(None), torch.device("cpu"), FS,
                   lambda t: t)


def Augmenter(specs, n_leads=3, channels=None, seed=0):
    return A.Augmenter(specs, seed=seed, fs=FS, n_leads=n_leads, channels=channels)


def batch(b=16, c=3, t=400):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, c, t, generator=g) + 2.0, torch.eye(4)[torch.arange(b) % 4]


def test_lead_mask_zeroes_exactly_the_chosen_leads():
    x, _ = batch()
    out = A.lead_mask(x, draws(len(x)), prob=1.0, leads=2)
    zero = (out == 0).all(dim=-1)  # [B, C]
    assert (zero.sum(dim=1) == 2).all()  # two whole leads per record, nothing else touched
    assert torch.equal(out[~zero], x[~zero])
    assert torch.equal(A.lead_mask(x, draws(len(x)), prob=0.0), x)


def test_segment_mask_zeroes_one_end_of_every_lead():
    x, _ = batch(b=64)
    out = A.segment_mask(x, draws(len(x)), prob=1.0, max_fraction=0.25)
    for r in range(len(x)):
        zero = (out[r] == 0).all(dim=0)  # the same samples of every lead
        width = int(zero.sum())
        assert 1 <= width <= 100
        start, end = zero[:width].all(), zero[-width:].all()
        assert start != end  # one contiguous run at the start or at the end
        assert torch.equal(out[r][:, ~zero], x[r][:, ~zero])
    widths = (out == 0).all(dim=1).sum(dim=1).float()
    assert widths.max() > 60 and widths.min() < 40  # drawn, not fixed


def test_noise_std_is_relative_to_each_lead():
    t = torch.arange(20000) / FS
    x = torch.stack([torch.sin(2 * math.pi * t) * a for a in (1.0, 3.0)])[None].repeat(4, 1, 1)  # lead stds 0.707, 2.12
    out = A.noise(x, draws(4), prob=1.0, std=0.1)
    added = (out - x).std(dim=-1)
    torch.testing.assert_close(added, 0.1 * x.std(dim=-1), rtol=0.03, atol=0)


def test_amplitude_scale_multiplies_each_record_by_one_gain():
    x, _ = batch(b=256)
    out = A.amplitude_scale(x, draws(len(x)), prob=1.0, std=0.18)
    gain = out[:, 0, 0] / x[:, 0, 0]
    torch.testing.assert_close(out, x * gain[:, None, None], rtol=1e-5, atol=1e-6)
    assert abs(gain.mean() - 1) < 0.05 and abs(gain.std() - 0.18) < 0.03


def test_time_stretch_keeps_the_length_and_matches_torch_interpolate():
    x, _ = batch(b=32, t=300)
    d = draws(len(x), seed=5)
    out = A.time_stretch(x, d, prob=1.0, ratio=0.06)
    assert out.shape == x.shape
    # redo the draws and compare each record with torch_ecg's recipe (F.interpolate, cut or zero-pad)
    rng = np.random.default_rng(5)
    r = np.clip(0.06 + 0.382 * 0.06 * rng.standard_normal(32), 0, 0.12)
    sign = np.where(rng.random(32) < 0.5, -1, 1)
    for i in range(32):
        new = int(round((1 + sign[i] * r[i]) * 300))
        half = abs(new - 300) // 2
        y = torch.nn.functional.interpolate(x[i : i + 1], size=new, mode="linear", align_corners=True)[0]
        want = y[:, half : half + 300] if new >= 300 else torch.nn.functional.pad(y, (half, 300 - new - half))
        torch.testing.assert_close(out[i], want, rtol=1e-4, atol=2e-4)  # the same up to float32 position rounding
    assert torch.equal(A.time_stretch(x, draws(len(x)), prob=0.0), x)


def test_mixup_is_a_convex_combination_of_inputs_and_labels():
    x, y = batch(b=32)
    out, soft = A.mixup(x, y, draws(len(x), seed=2), prob=1.0, alpha=0.5)
    lam = float(np.random.default_rng(2).beta(0.5, 0.5))
    for i in range(len(x)):
        # the partner j: x_i' = lam x_i + (1 - lam) x_j for exactly the j whose labels mix the same way
        j = min(range(len(x)), key=lambda j: float((out[i] - lam * x[i] - (1 - lam) * x[j]).abs().max()))
        torch.testing.assert_close(out[i], lam * x[i] + (1 - lam) * x[j])
        torch.testing.assert_close(soft[i], lam * y[i] + (1 - lam) * y[j])
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(len(x)))  # still class probabilities


def test_mixup_of_multi_label_targets_keeps_them_in_unit_range():
    x, _ = batch(b=16)
    y = (torch.rand(16, 5, generator=torch.Generator().manual_seed(0)) < 0.4).float()
    _, soft = A.mixup(x, y, draws(16, seed=1), prob=1.0)
    assert ((soft >= 0) & (soft <= 1)).all() and not torch.equal(soft, y)


def test_baseline_wander_adds_slow_sinusoids_scaled_to_the_amplitude():
    x = torch.zeros(8, 2, 1000)
    x[..., ::100] = 1.0  # spikes: amplitude 1
    out = A.baseline_wander(x, draws(8), prob=1.0)
    added = out - x
    assert added.abs().max() <= sum(max(row) for row in A.BW_AMPL_RATIO) * 1.0 + 0.1
    assert (added.abs().amax(dim=-1) > 0).all()
    assert torch.equal(A.baseline_wander(torch.zeros(2, 2, 1000), draws(2), prob=1.0), torch.zeros(2, 2, 1000))  # flat: no amplitude


def test_amplitude_is_torch_ecgs_windowed_peak_to_peak():
    x = torch.zeros(1, 1, 500)
    x[0, 0, 100] = 2.0
    x[0, 0, 400] = -1.0  # far apart: no 0.2 s window holds both
    assert float(A.amplitude(x, FS)) == 2.0


@pytest.mark.parametrize("name", sorted(A.AUGMENTATIONS))
def test_draws_repeat_for_a_seed_and_step_and_do_not_depend_on_the_world_size(name):
    x, y = batch(b=8)
    aug = Augmenter([name])
    one = aug(x, y, epoch=1, step=3)
    again = aug(x, y, epoch=1, step=3)
    assert torch.equal(one[0], again[0]) and torch.equal(one[1], again[1])
    other = aug(x, y, epoch=1, step=4)
    assert not torch.equal(one[0], other[0]) or not torch.equal(one[1], other[1])
    # two "ranks" of a global batch of 8: each draws for all 8 and keeps its half; mixup gathers the rest
    whole = (x, y)
    gathered = iter([whole[0], whole[1], whole[0], whole[1]])
    ranks = A.Augmenter([name], seed=0, fs=FS, n_leads=3, gather=lambda t: next(gathered))
    halves = [ranks(x[p], y[p], epoch=1, step=3, draws=8, part=p) for p in (slice(0, 4), slice(4, 8))]
    torch.testing.assert_close(torch.cat([h[0] for h in halves]), one[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.cat([h[1] for h in halves]), one[1], rtol=0, atol=1e-6)


def test_an_extra_view_channel_is_left_alone_and_mixing_views_refused():
    x, y = batch(b=8, c=4)  # three leads and an R-peak channel
    out, _ = Augmenter(["noise:prob=1", "lead_mask:prob=1"], n_leads=3, channels=4)(x, y, 0, 0)
    assert torch.equal(out[:, 3], x[:, 3]) and not torch.equal(out[:, :3], x[:, :3])
    for name in ("mixup", "time_stretch"):
        with pytest.raises(ConfigError, match=name):
            Augmenter([name], n_leads=3, channels=4, seed=0)


def test_specs_are_resolved_and_checked():
    from ecgtool.train.choices import AUGMENTATIONS

    assert tuple(A.AUGMENTATIONS) == AUGMENTATIONS  # the names the CLI offers without importing torch
    specs = A.resolve_augment(["noise:std=0.1", {"name": "mixup", "alpha": 0.2}, "lead_mask"])
    assert specs == [{"name": "noise", "prob": 0.5, "std": 0.1}, {"name": "mixup", "prob": 0.5, "alpha": 0.2},
                     {"name": "lead_mask", "prob": 0.5, "leads": 1}]
    for bad, match in (("wobble", "unknown augmentation"), ("noise:sd=1", "no parameter 'sd'"), ("noise:std=x", "number"),
                       ("noise:prob=2", r"\[0, 1\]"), ("mixup:alpha=0", "alpha"), ("lead_mask:leads=1.5", "whole"),
                       ("noise:std", "KEY=VALUE")):
        with pytest.raises(ConfigError, match=match):
            A.resolve_augment([bad])
    with pytest.raises(ConfigError, match="twice"):
        A.resolve_augment(["noise", "noise:std=1"])
    with pytest.raises(ConfigError, match="fewer than"):
        Augmenter(["lead_mask:leads=3"], n_leads=3)


# -- train -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("aug")
    return wfdb_store(root / "train.zarr", n=32, seed=1), wfdb_store(root / "val.zarr", n=12, seed=2)


ALL = ["lead_mask", "segment_mask", "noise", "baseline_wander", "amplitude_scale", "time_stretch", "mixup"]


def args(**kw):
    base = dict(model="resnet18", epochs=3, batch_size=8, lr=1e-3, seed=0, device="cpu", crop=300, augment=ALL,
                model_kwargs={"base_width": 8})
    return TrainArgs(**{**base, **kw})


def test_resume_with_augmentations_is_exact_and_they_are_recorded(stores, tmp_path):
    train, val = stores
    full = Trainer(args(), train, val, tmp_path / "full.ckpt").run()
    plain = Trainer(args(augment=[]), train, val, tmp_path / "plain.ckpt").run()
    assert [h["train_loss"] for h in plain.history] != [h["train_loss"] for h in full.history]

    interrupt_after_epoch(lambda **hook: Trainer(args(), train, val, tmp_path / "cut.ckpt", **hook))
    trainer = Trainer(args(), train, val, tmp_path / "cut.ckpt")
    assert trainer.resume() and trainer.start_epoch == 1
    resumed = trainer.run()
    assert_same_run(full, resumed)
    recorded = Checkpoint.load(tmp_path / "full.ckpt").train_args["augment"]
    assert [s["name"] for s in recorded] == ALL and recorded[-1] == {"name": "mixup", "prob": 0.5, "alpha": 0.5}


def test_validation_is_never_augmented(stores, tmp_path, monkeypatch):
    train, val = stores
    calls = []
    original = A.Augmenter.__call__

    def spy(self, x, y, epoch, step, *rest):
        calls.append((epoch, step))
        return original(self, x, y, epoch, step, *rest)

    monkeypatch.setattr(A.Augmenter, "__call__", spy)
    trainer = Trainer(args(epochs=1), train, val, tmp_path / "m.ckpt")
    trainer.run()
    assert calls == [(0, s) for s in range(len(trainer.loader))]  # one call per training step, none in validate
    probs = [trainer.validate()[1] for _ in range(2)]
    assert np.array_equal(*probs) and len(calls) == len(trainer.loader)


def test_multiclass_mixup_trains_on_soft_targets(stores, tmp_path):
    from ecgtool.data.store import StoreWriter, open_store

    paths = []
    for name, src_path in (("train", stores[0]), ("val", stores[1])):
        src = open_store(src_path)
        attrs = {k: v for k, v in src.attrs.items() if k not in ("format", "format_version", "complete", "content_hash")}
        attrs["multi_label"] = False
        with StoreWriter(tmp_path / f"{name}.zarr", n_leads=len(src.leads), n_samples=src.n_samples, attrs=attrs) as w:
            w.append(src.rows(), src.labels, src.record_id, src.patient_id)
        paths.append(tmp_path / f"{name}.zarr")
    seen = []
    trainer = Trainer(args(epochs=1, augment=["mixup:prob=1"]), *paths, tmp_path / "m.ckpt")
    criterion = trainer.criterion
    trainer.criterion = lambda logits, target: (seen.append(target), criterion(logits, target))[1]
    ckpt = trainer.run()
    assert all(t.dtype == torch.float32 and t.shape[1] == 2 for t in seen)  # probabilities, not class indices
    assert any(((t > 0) & (t < 1)).any() for t in seen) and np.isfinite(ckpt.history[0]["train_loss"])


def test_cli_flags(stores, tmp_path):
    train, val = stores
    out = tmp_path / "m.ckpt"
    r = run_cli("train", "resnet18", train, "-o", out, "--epochs", 1, "--batch-size", 8, "--model-arg", "base_width=8",
                "--augment", "noise:std=0.1,lead_mask", "--augment", "mixup", "--label-fraction", 0.5)
    assert r.stdout.strip() == str(out)
    a = Checkpoint.load(out).train_args
    assert [s["name"] for s in a["augment"]] == ["noise", "lead_mask", "mixup"] and a["augment"][0]["std"] == 0.1
    assert a["label_fraction"] == 0.5 and a["label_subset"]["records"] == 16
    for flag, value, match in (("--augment", "wobble", "--augment"), ("--label-fraction", "0", "--label-fraction"),
                               ("--augment", "noise:prob=3", "--augment")):
        r = run_cli("train", "resnet18", train, "-o", tmp_path / "x.ckpt", flag, value, expect=2)
        assert match in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow  # two launches, one of them torchrun, ~20 s
def test_two_gloo_processes_augment_as_one(stores, tmp_path):
    """Augmentations (mixup's partners across ranks included) and a label fraction under torchrun with 2
    CPU processes give the model one process trains (dprnn: no batch statistics, head dropout off)."""
    train, val = stores
    common = ["train", "dprnn", str(train), "--val", str(val), "--epochs", "2", "--batch-size", "8", "--seed", "0",
              "--device", "cpu", "--threads", "1", "--crop", "300", "--label-fraction", "0.75",
              "--augment", "noise,lead_mask,segment_mask,amplitude_scale,baseline_wander,time_stretch,mixup:prob=1",
              "--model-arg", "channels=8", "--model-arg", "hidden_size=8", "--model-arg", "num_blocks=1",
              "--model-arg", "head_dropout=0", "--model-arg", "chunk_size=20"]
    one, two, _ = train_one_and_two_processes(common, tmp_path)
    a, b = Checkpoint.load(one), Checkpoint.load(two)
    assert a.train_args == b.train_args
    for k, v in a.state_dict.items():
        torch.testing.assert_close(b.state_dict[k], v, rtol=1e-4, atol=1e-5, msg=k)
    for ha, hb in zip(a.history, b.history):
        assert hb["train_loss"] == pytest.approx(ha["train_loss"], rel=1e-5)
