"""The checkpoint contract: weights-only loading, validation, atomic writes."""

from __future__ import annotations

import pytest
import torch

from ecgtool.errors import EcgtoolError
from ecgtool.models import create_model
from ecgtool.train.checkpoint import CKPT_VERSION, CheckpointError, build_model, load_checkpoint, save_checkpoint


def make_ckpt(model=None, **over):
    model = model or create_model("resnet18", num_classes=3, num_leads=2, num_samples=200)
    doc = {
        "kind": "classifier",
        "model": {"name": "resnet18", "kwargs": model.model_kwargs},
        "state_dict": model.state_dict(),
        "classes": ["A", "B", "C"],
        "class_descriptions": {},
        "task": "t",
        "multi_label": True,
        "input": {"fs": 100.0, "leads": ["I", "II"], "samples": 200, "normalisation": {"method": "zscore"}, "view": {"name": "raw"}},
        "thresholds": {"values": [0.5, 0.4, 0.3], "source": "test"},
        "train_args": {"epochs": 1},
        "metrics": {"val_macro_auc": 0.9},
        "provenance": [],
    }
    doc.update(over)
    return doc


def test_round_trip_rebuilds_the_same_model(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=3, num_leads=2, num_samples=200).eval()
    save_checkpoint(tmp_path / "m.ckpt", make_ckpt(model))
    # The contract: plain torch.load with weights_only=True opens it.
    raw = torch.load(tmp_path / "m.ckpt", weights_only=True)
    assert raw["format_version"] == CKPT_VERSION
    ckpt = load_checkpoint(tmp_path / "m.ckpt")
    rebuilt = build_model(ckpt).eval()
    x = torch.randn(2, 2, 200)
    torch.testing.assert_close(rebuilt(x), model(x))


def test_numpy_values_become_plain(tmp_path):
    import numpy as np

    save_checkpoint(tmp_path / "m.ckpt", make_ckpt(metrics={"auc": np.float64(0.8), "per": np.arange(3)}))
    assert load_checkpoint(tmp_path / "m.ckpt")["metrics"] == {"auc": 0.8, "per": [0, 1, 2]}


def test_refuses_code_carrying_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "evil.ckpt", "wb") as f:
        torch.save({"format": "ecgtool.checkpoint", "payload": Evil()}, f)
    with pytest.raises(CheckpointError, match="not a readable ecgtool checkpoint"):
        load_checkpoint(tmp_path / "evil.ckpt")


@pytest.mark.parametrize(
    "over, message",
    [
        ({"format_version": CKPT_VERSION + 1}, "newer than this ecgtool"),
        ({"thresholds": {"values": [0.5], "source": "x"}}, "1 thresholds for 3 classes"),
        ({"kind": "banana"}, "unknown checkpoint kind"),
    ],
)
def test_malformed_checkpoints_are_refused(tmp_path, over, message):
    doc = make_ckpt()
    doc.update({"format": "ecgtool.checkpoint", "format_version": CKPT_VERSION})
    doc.update(over)
    torch.save(doc, tmp_path / "m.ckpt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "m.ckpt")


def test_foreign_and_missing_files(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an ecgtool checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    (tmp_path / "text.ckpt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path / "text.ckpt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.ckpt")


def test_no_overwrite_without_asking(tmp_path):
    save_checkpoint(tmp_path / "m.ckpt", make_ckpt())
    with pytest.raises(EcgtoolError, match="--overwrite"):
        save_checkpoint(tmp_path / "m.ckpt", make_ckpt())
    save_checkpoint(tmp_path / "m.ckpt", make_ckpt(), overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt"]  # no temporary left behind


def test_weights_that_do_not_fit_are_refused(tmp_path):
    other = create_model("resnet34", num_classes=3, num_leads=2, num_samples=200)
    save_checkpoint(tmp_path / "m.ckpt", make_ckpt(state_dict=other.state_dict()))
    with pytest.raises(CheckpointError, match="do not fit resnet18"):
        build_model(load_checkpoint(tmp_path / "m.ckpt"))
