"""The auxiliary-loss contract (``EcgClassifier.auxiliary_losses``): train adds the terms a model asks for,
logs them, resumes them exactly, and finds them through DDP and torch.compile."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from conftest import wfdb_store

from ecgtool.checkpoint import Checkpoint
from ecgtool.models import registry as registry_module
from ecgtool.models import register_model
from ecgtool.models.layers import EcgClassifier
from ecgtool.train import loop
from ecgtool.train.engine import Preempted, resume_path
from ecgtool.train.loop import TrainArgs, Trainer, auxiliary_losses


class _Pulled(EcgClassifier):
    """A classifier plus a parameter ``anchor`` that no logit depends on: only its auxiliary loss
    ``weight · (anchor − 3)²`` can move it."""

    def __init__(self, num_classes: int, num_leads: int = 12, num_samples: int = 1000, weight: float = 1.0):
        super().__init__()
        self.conv = nn.Conv1d(num_leads, 4, 5, padding=2)
        self.head = nn.Linear(4, num_classes)
        self.anchor = nn.Parameter(torch.zeros(()))
        self.weight = weight
        self.num_features = 4
        self.stages, self.default_cam_layer = ["conv", "head"], "conv"

    def forward_features(self, x):
        self._auxiliary = {"pull": self.weight * (self.anchor - 3.0) ** 2} if self.training and self.weight else {}
        return self.conv(x).mean(dim=-1)


@pytest.fixture(scope="module")
def pulled():
    @register_model(default_cfg=dict(family="test", paper="-", source="-"))
    def _pulled_test_model(num_classes, num_leads=12, num_samples=1000, **kwargs):
        """A model with an auxiliary loss, for the train loop's tests."""
        return _Pulled(num_classes, num_leads, num_samples, **kwargs)

    yield "_pulled_test_model"
    registry_module._MODEL_REGISTRY.pop("_pulled_test_model", None)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("aux")
    return wfdb_store(root / "s.zarr", n=24, seed=5)


def _args(name, **kw):
    base = dict(model=name, epochs=3, batch_size=8, lr=0.1, schedule="constant", seed=0, device="cpu", threads=1,
                model_kwargs={"weight": 1.0})
    return TrainArgs(**{**base, **kw})


def test_the_auxiliary_loss_alone_drives_a_parameter_and_is_logged(pulled, store, tmp_path):
    ckpt = Trainer(_args(pulled), store, None, tmp_path / "a.ckpt").run()
    anchor = ckpt.state_dict["anchor"].item()
    assert 0.5 < anchor < 3.0  # pulled towards 3 by its loss alone (Adam: about lr per step, 9 steps)
    pulls = [h["train_pull"] for h in ckpt.history]
    assert pulls == sorted(pulls, reverse=True) and pulls[0] < 9.0  # the epoch mean of (anchor - 3)², falling
    assert all(h["train_loss"] < 5 for h in ckpt.history)  # the classification loss alone, not the sum

    off = Trainer(_args(pulled, model_kwargs={"weight": 0.0}), store, None, tmp_path / "b.ckpt").run()
    assert off.state_dict["anchor"].item() == 0.0  # no term, no gradient: AdamW leaves it alone
    assert not any(k.startswith("train_pull") for h in off.history for k in h)


def test_resume_mid_epoch_continues_the_auxiliary_sums_exactly(pulled, store, tmp_path, monkeypatch):
    full = Trainer(_args(pulled), store, None, tmp_path / "full.ckpt").run()
    calls = {"n": 0}

    def stop_at_step_two(self):  # as if SIGTERM arrived during the second step of the first epoch
        calls["n"] += 1
        return calls["n"] == 2

    with monkeypatch.context() as m:
        m.setattr(loop.Trainer, "_stop", stop_at_step_two)
        with pytest.raises(Preempted):
            Trainer(_args(pulled), store, None, tmp_path / "cut.ckpt").run()
    position = Checkpoint.load(resume_path(tmp_path / "cut.ckpt")).resume["position"]
    assert position["batch"] == 2 and set(position["aux_total"]) == {"pull"}
    trainer = Trainer(_args(pulled), store, None, tmp_path / "cut.ckpt")
    assert trainer.resume()
    resumed = trainer.run()
    assert [h["train_pull"] for h in resumed.history] == [h["train_pull"] for h in full.history]
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    assert torch.equal(resumed.state_dict["anchor"], full.state_dict["anchor"])


def test_the_terms_are_found_through_ddp_and_compile(tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(0)
    model = _Pulled(3, num_leads=2, weight=0.5).train()
    x = torch.randn(2, 2, 50)
    compiled = torch.compile(model, backend="eager")
    compiled(x)
    terms = auxiliary_losses(compiled)
    assert set(terms) == {"pull"} and terms["pull"].requires_grad
    torch.testing.assert_close(terms["pull"], 0.5 * (model.anchor.detach() - 3) ** 2)
    terms["pull"].backward()
    assert model.anchor.grad is not None

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(model)
        ddp(x)
        assert set(auxiliary_losses(ddp)) == {"pull"}
    finally:
        dist.destroy_process_group()
    model(x)
    assert set(auxiliary_losses(model)) == {"pull"} and auxiliary_losses(model) == {}  # handed over once
    copy.deepcopy(model)  # no graph left behind
    model.eval()(x)
    assert auxiliary_losses(model) == {}  # an eval pass leaves no terms
    assert auxiliary_losses(nn.Linear(2, 2)) == {}  # a module without the contract has none
