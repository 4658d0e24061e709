"""Each pretraining objective's backbone, after a few optimiser steps, becomes an encoder checkpoint that
`train --init` fine-tunes: the pieces of `pretrain` (objectives, the encoder contract, transfer) fit."""

from __future__ import annotations

import pytest
import torch
from conftest import run_cli, wfdb_store

from ecgtool.checkpoint import Checkpoint, encoder_checkpoint
from ecgtool.data.store import open_store
from ecgtool.models import create_model
from ecgtool.train.pretrain.clocs import CLOCSObjective
from ecgtool.train.pretrain.cpc import CPCObjective
from ecgtool.train.pretrain.jepa import JEPAObjective
from ecgtool.train.pretrain.st_mem import STMEMObjective


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    return wfdb_store(root / "s.zarr", n=16, seed=3)  # 16 records, 3 leads x 400 samples


# (method, backbone name, backbone kwargs (also given to train as --model-arg), objective, its kwargs, train's crop)
CASES = {
    "cpc": ("resnet18", {"base_width": 8}, CPCObjective, {"negatives": 4, "hidden": 16, "rnn_layers": 1}, 0),
    "clocs-cmsc": ("resnet18", {"base_width": 8}, CLOCSObjective, {"mode": "cmsc", "embedding_dim": 16}, 200),
    "st-mem": ("st_mem_vit_small", {"patch_size": 20, "dim": 32, "depth": 1, "num_heads": 2}, STMEMObjective,
               {"decoder_dim": 16, "decoder_depth": 1, "decoder_heads": 2}, 0),
    "jepa": ("ecg_jepa_vit_xs", {"dim": 32, "depth": 2, "num_heads": 4}, JEPAObjective, {"total_steps": 3}, 0),
}


@pytest.mark.parametrize("method", sorted(CASES))
def test_pretrained_backbone_fine_tunes_through_train_init(store, tmp_path, method):
    name, kwargs, objective_class, objective_kwargs, crop = CASES[method]
    s = open_store(store)
    torch.manual_seed(0)
    samples = crop or s.n_samples
    backbone = create_model(name, num_classes=1, num_leads=len(s.leads), num_samples=samples, **kwargs)
    objective = objective_class(backbone, fs=s.fs, leads=list(s.leads), samples=s.n_samples, **objective_kwargs)
    trainable = [p for p in objective.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=1e-3)
    x = torch.from_numpy(s.rows(0, 8)).float()
    patients = torch.arange(8) // 2  # two records per patient
    losses = []
    for _ in range(3):
        loss = objective(x, patients)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        objective.after_step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    enc = encoder_checkpoint(objective.backbone, [s], method=objective.method, hyperparameters=objective.hyperparameters(),
                             metrics={"loss": losses[-1]})
    enc.save(tmp_path / "enc.ckpt")
    assert Checkpoint.load(tmp_path / "enc.ckpt").pretraining["method"] == objective.method

    margs = [a for k, v in kwargs.items() for a in ("--model-arg", f"{k}={v}")]
    run_cli("train", name, store, "--init", tmp_path / "enc.ckpt", "--epochs", "1", "--batch-size", "8",
            "--device", "cpu", *(["--crop", crop] if crop else []), *margs, "-o", tmp_path / "ft.ckpt")
    tuned = Checkpoint.load(tmp_path / "ft.ckpt")
    assert tuned.init["fingerprint"] and tuned.pretraining["method"] == objective.method
    run_cli("train", name, store, "--init", tmp_path / "enc.ckpt", "--freeze-encoder", "--epochs", "1", "--batch-size", "8",
            "--device", "cpu", *(["--crop", crop] if crop else []), *margs, "-o", tmp_path / "probe.ckpt")
    probe = Checkpoint.load(tmp_path / "probe.ckpt")
    for key, value in enc.state_dict.items():  # a linear probe leaves every pretrained tensor as it was
        assert torch.equal(probe.state_dict[key], value), key
