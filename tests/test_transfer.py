"""Transfer learning: the encoder checkpoint contract, train --init / --freeze-encoder / --encoder-lr,
and eval's warning when an evaluated store was in the encoder's pretraining data."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_same_run, interrupt_after_epoch, run_cli, train_one_and_two_processes, write_wfdb_dir

from ecgtool.checkpoint import Checkpoint, CheckpointError, encoder_checkpoint, qualified_record_ids
from ecgtool.data.prep import run_prep
from ecgtool.data.readers import open_reader
from ecgtool.data.store import open_store
from ecgtool.data.transforms import PrepConfig
from ecgtool.errors import ConfigError, EcgtoolError
from ecgtool.eval.evaluate import run_eval
from ecgtool.eval.options import EvalOptions
from ecgtool.models import create_model
from ecgtool.train.engine import resume_path
from ecgtool.train.loop import TrainArgs, Trainer

SMALL = {"base_width": 16}  # a narrow ResNet-18, as in test_train


def _store(root, name, dataset, n, seed, fs=100):
    raw = write_wfdb_dir(root / f"raw-{name}", n=n, seed=seed)
    (raw / "dataset.json").write_text(json.dumps({"dataset": dataset, "task": "ab"}))
    run_prep(open_reader(raw), root / f"{name}.zarr", PrepConfig(fs=fs, seconds=4.0))
    return root / f"{name}.zarr"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Stores of two datasets (their record ids R000… collide, their qualified ids do not), and an encoder
    pretrained (here: random weights with moved BatchNorm statistics) on the 'alpha' store."""
    root = tmp_path_factory.mktemp("transfer")
    pre = _store(root, "pre", "alpha", 16, 3)
    train = _store(root, "train", "beta", 48, 1)
    val = _store(root, "val", "beta-val", 16, 2)
    torch.manual_seed(123)
    backbone = create_model("resnet18", num_classes=7, num_leads=3, num_samples=400, **SMALL)
    with torch.no_grad():
        for name, buf in backbone.named_buffers():
            if name.endswith("running_mean"):
                buf.uniform_(-0.5, 0.5)
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    enc = encoder_checkpoint(backbone, [pre], method="test-method", hyperparameters={"mask_ratio": 0.5},
                             metrics={"loss": 1.25})
    enc.save(root / "enc.ckpt")
    return {"root": root, "pre": pre, "train": train, "val": val, "enc": root / "enc.ckpt"}


def args(**kw):
    base = dict(model="resnet18", epochs=2, batch_size=8, lr=1e-3, seed=0, device="cpu", model_kwargs=dict(SMALL))
    base.update(kw)
    return TrainArgs(**base)


def backbone_of(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith("head.")}


# -- the contract -------------------------------------------------------------------------------

def test_encoder_checkpoint_contract(data):
    raw = torch.load(data["enc"], weights_only=True)  # plain tensors and values: loads weights-only
    assert raw["kind"] == "encoder" and raw["classes"] == [] and raw["thresholds"] is None
    enc = Checkpoint.load(data["enc"])
    assert enc.is_encoder and enc.task == "pretraining" and enc.classes == () and not enc.multi_label
    assert not any(k.startswith("head.") for k in enc.state_dict) and "num_classes" not in enc.model.kwargs
    assert enc.model.name == "resnet18" and enc.model.kwargs["base_width"] == 16
    assert enc.input.fs == 100 and enc.input.samples == 400 and enc.input.leads == ("I", "II", "V1")
    assert enc.train_args == {"mask_ratio": 0.5} and enc.metrics == {"loss": 1.25}
    (store,) = enc.pretraining["stores"]
    assert enc.pretraining["method"] == "test-method" and enc.pretraining["hyperparameters"] == {"mask_ratio": 0.5}
    assert store["dataset"] == "alpha" and store["records"] == 16 and store["fingerprint"].startswith("store:")
    assert store["record_ids"][:2] == ["alpha/R000", "alpha/R001"]
    assert enc.provenance[-1]["step"] == "pretrain" and enc.provenance[-1]["method"] == "test-method"
    # an encoder's backbone is built with a placeholder head; its weights are the encoder's
    model = enc.build_model(num_classes=4)
    assert model.head.out_features == 4
    for k, v in enc.state_dict.items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=0, atol=0)
    prof = json.loads(run_cli("profile", data["enc"], "--json", "--repeats", 1, "--batch", 1, "--device", "cpu").stdout)
    assert prof["input_shape"] == [3, 400]


def test_qualified_ids_keep_datasets_apart(data):
    a, b = qualified_record_ids(open_store(data["pre"])), qualified_record_ids(open_store(data["train"]))
    assert "alpha/R000" in a and "beta/R000" in b and not set(a) & set(b)


@pytest.mark.parametrize("change, words", [
    ({"thresholds": {"values": [], "source": "x"}}, "no classes or thresholds"),
    ({"classes": ("A",)}, "no classes or thresholds"),
    ({"pretraining": None}, "must record its pretraining"),
    ({"pretraining": {"method": "m", "stores": [{"path": "p"}]}}, "'pretraining' must record"),
])
def test_an_encoder_is_validated_on_load(data, tmp_path, change, words):
    doc = Checkpoint.load(data["enc"]).to_dict()
    doc.update({k: list(v) if isinstance(v, tuple) else v for k, v in change.items()})
    if doc.get("pretraining") is None:
        doc.pop("pretraining")
    torch.save(doc, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match=words):
        Checkpoint.load(tmp_path / "bad.ckpt")


def test_an_encoder_with_head_weights_is_refused(data, tmp_path):
    doc = Checkpoint.load(data["enc"]).to_dict()
    doc["state_dict"]["head.weight"] = torch.zeros(2, 128)
    torch.save(doc, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match=r"holds no classifier head, but it has 1 'head\.\*' tensor"):
        Checkpoint.load(tmp_path / "bad.ckpt")


def test_eval_refuses_an_encoder(data):
    with pytest.raises(CheckpointError, match="is an encoder from pretraining, with no classifier .* --init"):
        run_eval(data["enc"], data["val"], "cpu", EvalOptions(bootstrap=0))
    r = run_cli("eval", data["enc"], data["val"], expect=1)
    assert r.stderr.count("\n") == 1 and "train MODEL STORE --init" in r.stderr


# -- train --init -------------------------------------------------------------------------------

def test_init_loads_the_encoder_and_starts_a_fresh_head(data, tmp_path):
    enc = Checkpoint.load(data["enc"])
    trainer = Trainer(args(init=str(data["enc"])), data["train"], data["val"], tmp_path / "m.ckpt")
    plain = Trainer(args(), data["train"], data["val"], tmp_path / "p.ckpt")
    state = trainer.model.state_dict()
    assert backbone_of(state).keys() == enc.state_dict.keys()
    for k, v in enc.state_dict.items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0)
    for k in ("head.weight", "head.bias"):  # the head this run's model gives itself, as without --init
        torch.testing.assert_close(state[k], plain.model.state_dict()[k], rtol=0, atol=0)
    ckpt = trainer.run()
    assert ckpt.init["kind"] == "encoder" and ckpt.init["path"] == str(data["enc"].resolve())
    assert ckpt.init["fingerprint"].startswith("sha256:")
    assert ckpt.pretraining["encoder"]["path"] == str(data["enc"].resolve())
    assert ckpt.pretraining["stores"][0]["record_ids"] == enc.pretraining["stores"][0]["record_ids"]
    assert ckpt.provenance[-1]["init"] == {k: ckpt.init[k] for k in ("path", "fingerprint", "kind")}
    assert ckpt.train_args["init"] == str(data["enc"]) and ckpt.train_args["freeze_encoder"] is False
    saved = Checkpoint.load(tmp_path / "m.ckpt")
    assert saved.init == ckpt.init and saved.pretraining == ckpt.pretraining
    # a classifier is an init too: its head is dropped, and the pretraining it inherited is kept
    again = Trainer(args(init=str(tmp_path / "m.ckpt"), epochs=1), data["train"], data["val"], tmp_path / "again.ckpt")
    assert any("is a classifier checkpoint" in w and "head is dropped" in w for w in again.warnings)
    for k, v in backbone_of(saved.state_dict).items():
        torch.testing.assert_close(again.model.state_dict()[k], v, rtol=0, atol=0)
    out = again.run()
    assert out.init["kind"] == "classifier" and out.pretraining["encoder"] == ckpt.pretraining["encoder"]
    assert out.init["trained_on"][0] == ckpt.trained_on()[0]


def test_init_mismatches_are_usage_errors_of_init(data, tmp_path):
    common = (data["train"], "-o", tmp_path / "m.ckpt", "--init", data["enc"], "--epochs", 1, "--device", "cpu")
    cases = [
        (("resnet34", *common, "--model-arg", "base_width=16"), "holds a resnet18, not a resnet34"),
        (("resnet18", *common, "--model-arg", "base_width=32"), "base_width=16 there, 32 here"),
        (("resnet18", *common), "base_width=16 there, '(default)' here"),
        (("resnet18", *common, "--model-arg", "base_width=16", "--crop", 200), "inputs of 400 samples, this run trains on 200"),
    ]
    for argv, words in cases:
        r = run_cli("train", *argv, expect=2)
        assert "Invalid value for '--init'" in r.stderr and words in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    other_fs = _store(tmp_path, "fs50", "beta", 8, 4, fs=50)
    with pytest.raises(ConfigError, match="sampled at 50 Hz, the encoder .* at 100 Hz") as e:
        Trainer(args(init=str(data["enc"])), other_fs, None, tmp_path / "m.ckpt")
    assert e.value.parameter == "init"
    assert not (tmp_path / "m.ckpt").exists()


# -- --freeze-encoder and --encoder-lr ------------------------------------------------------------

def test_freeze_encoder_trains_the_head_only(data, tmp_path):
    enc = Checkpoint.load(data["enc"])
    trainer = Trainer(args(init=str(data["enc"]), freeze_encoder=True), data["train"], data["val"], tmp_path / "m.ckpt")
    head = [p for n, p in trainer.model.named_parameters() if n.startswith("head.")]
    assert [p.requires_grad for p in trainer.model.parameters()] == [n.startswith("head.") for n, _ in trainer.model.named_parameters()]
    (group,) = trainer.optimizer.param_groups
    assert [id(p) for p in group["params"]] == [id(p) for p in head]
    head_before = {k: v.clone() for k, v in trainer.model.state_dict().items() if k.startswith("head.")}
    ckpt = trainer.run()
    for k, v in enc.state_dict.items():  # weights and BatchNorm statistics (and their counters) bit-identical
        torch.testing.assert_close(ckpt.state_dict[k], v, rtol=0, atol=0)
    assert all(not torch.equal(ckpt.state_dict[k], v) for k, v in head_before.items())
    assert ckpt.train_args["freeze_encoder"] is True
    # without --init: the random-encoder baseline, recorded as such
    base = Trainer(args(freeze_encoder=True, epochs=1), data["train"], None, tmp_path / "b.ckpt")
    start = {k: v.clone() for k, v in backbone_of(base.model.state_dict()).items()}
    out = base.run()
    assert out.init is None and out.pretraining is None and out.train_args["freeze_encoder"] is True
    for k, v in start.items():
        torch.testing.assert_close(out.state_dict[k], v, rtol=0, atol=0)


def test_the_command_freezes_an_encoder_only_when_told_where_it_comes_from(data, tmp_path):
    """--freeze-encoder alone was a linear probe of random weights without a word; the random-encoder baseline
    is now asked for by name (--init random), in train and distill alike."""
    for command in (["train", "resnet18"], ["distill", data["enc"], "--student", "resnet18"]):  # refused before the teacher is read
        r = run_cli(*command, data["train"], "-o", tmp_path / "c.ckpt", "--freeze-encoder", "--epochs", "1", expect=2)
        assert r.stderr.splitlines()[-1].startswith("Error: --freeze-encoder needs --init") and "--init random" in r.stderr
    assert not (tmp_path / "c.ckpt").exists()
    run_cli("train", "resnet18", data["train"], "-o", tmp_path / "c.ckpt", "--init", "random", "--freeze-encoder", "--epochs", "1",
            "--batch-size", "8", "--device", "cpu", "--model-arg", "base_width=8")
    ckpt = Checkpoint.load(tmp_path / "c.ckpt")
    assert ckpt.init is None and ckpt.train_args["init"] is None and ckpt.train_args["freeze_encoder"] is True


def test_encoder_lr_makes_two_scheduled_groups(data, tmp_path):
    trainer = Trainer(args(init=str(data["enc"]), encoder_lr=1e-4, epochs=1), data["train"], None, tmp_path / "m.ckpt")
    head, encoder = trainer.optimizer.param_groups
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    assert all(names[id(p)].startswith("head.") for p in head["params"])
    assert len(head["params"]) + len(encoder["params"]) == len(names)
    assert (head["lr"], encoder["lr"]) == (1e-3, 1e-4)
    trainer.optimizer.step()
    trainer.scheduler.step()
    trainer.scheduler.step()
    lrs = trainer.scheduler.get_last_lr()
    assert lrs[0] < 1e-3 and lrs[1] == pytest.approx(lrs[0] / 10)  # the schedule scales both
    with pytest.raises(ConfigError, match="frozen encoder") as e:
        Trainer(args(freeze_encoder=True, encoder_lr=1e-4), data["train"], None, tmp_path / "m.ckpt")
    assert e.value.parameter == "encoder_lr"
    r = run_cli("train", "resnet18", data["train"], "-o", tmp_path / "c.ckpt", "--init", "random", "--freeze-encoder", "--encoder-lr", "1e-4",
                expect=2)
    assert "Invalid value for '--encoder-lr'" in r.stderr and "frozen encoder" in r.stderr


def test_resume_with_a_frozen_encoder_is_exact(data, tmp_path):
    a = dict(init=str(data["enc"]), freeze_encoder=True, epochs=3)
    train, val = data["train"], data["val"]
    full = Trainer(args(**a), train, val, tmp_path / "full.ckpt").run()

    interrupt_after_epoch(lambda **hook: Trainer(args(**a), train, val, tmp_path / "cut.ckpt", **hook))
    assert Checkpoint.load(resume_path(tmp_path / "cut.ckpt")).train_args["freeze_encoder"] is True
    with pytest.raises(EcgtoolError, match="different training options"):
        Trainer(args(init=str(data["enc"]), epochs=3), train, val, tmp_path / "cut.ckpt").resume()
    trainer = Trainer(args(**a), train, val, tmp_path / "cut.ckpt")
    assert trainer.resume() and trainer.start_epoch == 1
    resumed = trainer.run()
    assert_same_run(full, resumed)


def test_resume_files_from_before_the_transfer_options_still_resume(data, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        Trainer(args(epochs=2), data["train"], None, tmp_path / "m.ckpt",
                on_epoch=lambda r, b: (_ for _ in ()).throw(KeyboardInterrupt) if r["epoch"] == 2 else None).run()
    path = resume_path(tmp_path / "m.ckpt")
    doc = torch.load(path, weights_only=True)
    for key in ("init", "freeze_encoder", "encoder_lr"):
        del doc["train_args"][key]
    torch.save(doc, path)
    assert Trainer(args(epochs=2), data["train"], None, tmp_path / "m.ckpt").resume()


# -- eval and info --------------------------------------------------------------------------------

def test_eval_warns_about_records_seen_in_pretraining(data, tmp_path):
    out = tmp_path / "m.ckpt"
    run_cli("train", "resnet18", data["train"], "--val", data["val"], "-o", out, "--init", data["enc"], "--epochs", 1,
            "--batch-size", 16, "--model-arg", "base_width=16", "--device", "cpu")
    r = run_cli("eval", out, data["pre"], "--bootstrap", 0, "--json")
    warnings = json.loads(r.stdout)["warnings"]
    assert any(w.startswith(f"16 of 16 records of {data['pre']} were in {data['enc'].resolve()}'s pretraining data "
                            "(dataset alpha") and "alpha/R000" in w for w in warnings), warnings
    assert "pretraining data" in r.stderr
    r = run_cli("eval", out, data["val"], "--bootstrap", 0, "--tune-on-eval-store", "--json")
    assert not any("pretraining" in w for w in json.loads(r.stdout)["warnings"])


def test_info_shows_the_pretraining_record(data, tmp_path):
    doc = json.loads(run_cli("info", data["enc"], "--json").stdout)
    assert doc["checkpoint_kind"] == "encoder" and doc["pretraining"]["method"] == "test-method"
    assert doc["pretraining"]["stores"][0]["records"] == 16 and "record_ids" not in doc["pretraining"]["stores"][0]
    text = run_cli("info", data["enc"]).stdout
    assert "pretraining test-method: mask_ratio=0.5" in text and "dataset alpha, 16 records" in text
    assert "an encoder without a classifier head" in text
    out = tmp_path / "m.ckpt"
    Trainer(args(init=str(data["enc"]), freeze_encoder=True, epochs=1), data["train"], None, out).run()
    text = run_cli("info", out).stdout
    assert "initialised from encoder" in text and "pretraining test-method" in text
    doc = json.loads(run_cli("info", out, "--json").stdout)
    assert doc["init"]["kind"] == "encoder" and doc["pretraining"]["encoder"]["path"] == str(data["enc"].resolve())


@pytest.mark.slow  # two launches, one of them torchrun with 2 gloo processes, ~20 s
def test_a_frozen_encoder_trains_under_ddp_as_in_one_process(data, tmp_path):
    """DDP with the encoder's parameters frozen (no gradients: DDP waits for none of them) and its BatchNorm in
    eval mode: 2 processes train the head exactly as one does, BatchNorm layers and all."""
    common = ["train", "resnet18", str(data["train"]), "--epochs", "2", "--batch-size", "8", "--seed", "0", "--device", "cpu",
              "--threads", "1", "--model-arg", "base_width=16", "--init", str(data["enc"]), "--freeze-encoder"]
    one, two, _ = train_one_and_two_processes(common, tmp_path)
    a, b, enc = (Checkpoint.load(f) for f in (one, two, data["enc"]))
    for k, v in enc.state_dict.items():
        torch.testing.assert_close(b.state_dict[k], v, rtol=0, atol=0, msg=k)
    for k, v in a.state_dict.items():
        torch.testing.assert_close(b.state_dict[k], v, rtol=1e-4, atol=1e-5, msg=k)
