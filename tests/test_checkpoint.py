"""The checkpoint contract: weights-only loading, validation, atomic writes, typed fields."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ecgtool.checkpoint import CKPT_VERSION, Checkpoint, CheckpointError
from ecgtool.data.inputs import InputSpec
from ecgtool.errors import EcgtoolError
from ecgtool.models import create_model

DATA = Path(__file__).parent / "data"


def make_doc(net=None, **over) -> dict:
    """The on-disk dict of a small classifier checkpoint."""
    model = net or create_model("resnet18", num_classes=3, num_leads=2, num_samples=200)
    doc = {
        "format": "ecgtool.checkpoint", "format_version": CKPT_VERSION,
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


def make_ckpt(net=None, **over) -> Checkpoint:
    return Checkpoint.from_dict(make_doc(net, **over))


def save_checkpoint(path, ckpt: Checkpoint, overwrite: bool = False) -> None:
    ckpt.save(path, overwrite=overwrite)


load_checkpoint = Checkpoint.load


def test_round_trip_rebuilds_the_same_model(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=3, num_leads=2, num_samples=200).eval()
    save_checkpoint(tmp_path / "m.ckpt", make_ckpt(model))
    # The contract: plain torch.load with weights_only=True opens it.
    raw = torch.load(tmp_path / "m.ckpt", weights_only=True)
    assert raw["format_version"] == CKPT_VERSION
    ckpt = load_checkpoint(tmp_path / "m.ckpt")
    assert isinstance(ckpt.input, InputSpec) and ckpt.input.leads == ("I", "II") and ckpt.classes == ("A", "B", "C")
    assert ckpt.path == tmp_path / "m.ckpt" and ckpt.threshold_values == [0.5, 0.4, 0.3]
    rebuilt = ckpt.build_model().eval()
    x = torch.randn(2, 2, 200)
    torch.testing.assert_close(rebuilt(x), model(x))


def test_numpy_values_become_plain(tmp_path):
    save_checkpoint(tmp_path / "m.ckpt", make_ckpt(metrics={"auc": np.float64(0.8), "per": np.arange(3)}))
    assert load_checkpoint(tmp_path / "m.ckpt").metrics == {"auc": 0.8, "per": [0, 1, 2]}


def test_refuses_code_carrying_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "evil.ckpt", "wb") as f:
        torch.save({"format": "ecgtool.checkpoint", "payload": Evil()}, f)
    with pytest.raises(CheckpointError, match="not an ecgtool checkpoint: it holds objects other than tensors") as e:
        load_checkpoint(tmp_path / "evil.ckpt")
    import pickle

    with open(tmp_path / "evil2.ckpt", "wb") as f:  # a plain pickle (protocol 2): "unsupported GLOBAL … is blocked"
        pickle.dump({"format": "ecgtool.checkpoint", "payload": Evil()}, f, protocol=2)
    with pytest.raises(CheckpointError, match="not an ecgtool checkpoint: it holds objects other than tensors"):
        load_checkpoint(tmp_path / "evil2.ckpt")
    assert "weights_only" not in str(e.value) and "Re-running" not in str(e.value)  # never relay torch's advice to load it unsafely


@pytest.mark.parametrize(
    "over, message",
    [
        ({"format_version": CKPT_VERSION + 1}, "newer than this ecgtool"),
        ({"thresholds": {"values": [0.5], "source": "x"}}, "1 thresholds for 3 classes"),
        ({"kind": "banana"}, "unknown checkpoint kind"),
        ({"input": {"fs": 100.0, "leads": ["I"], "samples": 200, "normalisation": {"method": "zscore"}}}, "input spec lacks view"),
        ({"input": {"fs": -1, "leads": ["I"], "samples": 200, "normalisation": {"method": "zscore"}, "view": {"name": "raw"}}},
         "fs must be a positive number"),
        ({"input": {"fs": 100, "leads": ["I"], "samples": 200, "normalisation": {"method": "zscore"}, "view": {"name": "x"}}},
         "unknown input view"),
        ({"model": {"name": "resnet18"}}, "'model' must hold a name and constructor kwargs"),
        ({"classes": "ABC"}, "'classes' must be a list"),
    ],
)
def test_malformed_checkpoints_are_refused(tmp_path, over, message):
    torch.save(make_doc(**over), tmp_path / "m.ckpt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "m.ckpt")


def test_foreign_and_missing_files(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an ecgtool checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    (tmp_path / "text.ckpt").write_text("hello")
    with pytest.raises(CheckpointError, match="is not a checkpoint file that torch can read"):
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
    with pytest.raises(CheckpointError, match=r"m\.ckpt: its weights do not fit resnet18: \d+ missing"):
        load_checkpoint(tmp_path / "m.ckpt").build_model()
    wrong = make_ckpt().state_dict
    key = next(k for k, v in wrong.items() if v.ndim == 3)
    wrong[key] = torch.zeros(1, 1, 1)
    save_checkpoint(tmp_path / "w.ckpt", make_ckpt(state_dict=wrong))
    with pytest.raises(CheckpointError, match=r"w\.ckpt: its weights do not fit resnet18: 1 tensor\(s\) of the wrong shape"):
        load_checkpoint(tmp_path / "w.ckpt").build_model()


def test_an_unknown_model_names_the_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "m.ckpt", make_ckpt(model={"name": "resnet99", "kwargs": {"num_classes": 3}}))
    with pytest.raises(CheckpointError, match=r"m\.ckpt: Unknown model 'resnet99'"):
        load_checkpoint(tmp_path / "m.ckpt").build_model()


def test_the_file_keeps_its_keys(tmp_path):
    """The typed form changes nothing on disk: the same keys a plain torch.load reader sees."""
    save_checkpoint(tmp_path / "m.ckpt", make_ckpt())
    raw = torch.load(tmp_path / "m.ckpt", weights_only=True)
    assert set(raw) == {"format", "format_version", "kind", "model", "state_dict", "classes", "class_descriptions", "task",
                        "multi_label", "input", "thresholds", "train_args", "metrics", "history", "provenance"}
    assert raw["input"] == make_doc()["input"] and raw["model"]["name"] == "resnet18"


def test_a_checkpoint_written_before_the_typed_contract_loads():
    """tests/data/checkpoint-v1-mamil.ckpt was written by `ecgtool train mamil` (1 epoch, synthetic data) with the
    dict-based checkpoint code of commit bbbb91c; the logits beside it were computed then, on a fixed input."""
    ckpt = load_checkpoint(DATA / "checkpoint-v1-mamil.ckpt")
    assert ckpt.kind == "classifier" and ckpt.model.name == "mamil" and ckpt.format_version == 1
    assert ckpt.input.view == {"name": "rpeaks", "lead": "auto"} and ckpt.input.channels == 13 and ckpt.input.samples == 1000
    assert len(ckpt.classes) == 9 and ckpt.multi_label and ckpt.thresholds["windows"] is None
    assert ckpt.trained_on() and ckpt.history and ckpt.resume is None
    x = torch.randn(2, 13, 1000, generator=torch.Generator().manual_seed(0))
    x[:, -1] = 0
    x[:, -1, 50::80] = 1  # R-peak marks
    with torch.no_grad():
        logits = ckpt.build_model().eval()(x)
    np.testing.assert_allclose(logits.numpy(), np.load(DATA / "checkpoint-v1-mamil-logits.npy"), atol=1e-5)
    # and it is written back with the same contents
    again = Checkpoint.from_dict(ckpt.to_dict())
    assert again.input == ckpt.input and again.model == ckpt.model and again.thresholds == ckpt.thresholds


def test_garbage_bytes_are_not_called_code(tmp_path):
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "text.ckpt")
    assert str(e.value) == (f"{tmp_path / 'text.ckpt'} is not a checkpoint file that torch can read (another kind of file, "
                            "or a truncated or damaged checkpoint)")  # not the unpickler's "Unsupported operand 116"
    assert "weights_only" not in str(e.value)
