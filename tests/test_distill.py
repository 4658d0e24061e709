"""``ecgtool distill``: every method through the command group, the reduced-lead student and its checkpoint,
the teacher frozen and fed its own input, exact resume (CLT's memory bank included), and the refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_same_run, interrupt_after_epoch, run_cli, wfdb_store

from ecgtool.checkpoint import Checkpoint
from ecgtool.provenance import fingerprint
from ecgtool.train.distill.loop import DistillArgs, Distiller
from ecgtool.train.loop import TrainArgs, Trainer

SMALL = ["--model-arg", "base_width=8"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 3-lead store (classes A: 1 Hz sine, B: 2 Hz sine), and a resnet18 teacher trained on all three leads."""
    root = tmp_path_factory.mktemp("distill")
    store = wfdb_store(root / "s.zarr", n=24, fs=100, seed=11)
    Trainer(TrainArgs("resnet18", epochs=2, batch_size=8, device="cpu", model_kwargs={"base_width": 8}),
            store, store, root / "teacher.ckpt").run()
    return store, root / "teacher.ckpt"


def _args(teacher, method="kd", **kw):
    base = dict(model="resnet18", epochs=2, batch_size=8, device="cpu", model_kwargs={"base_width": 8}, teacher=str(teacher),
                method=method, student_leads=["II"])
    if method == "mvkt":
        base["clt"] = {"negatives": 4, "embed_dim": 8}
    return DistillArgs(**{**base, **kw})


@pytest.mark.parametrize("method", ["kd", "mvms", "mvkt"])
def test_every_method_distils_a_single_lead_student(data, tmp_path, method):
    store, teacher = data
    extra = ["--clt-arg", "negatives=4", "--clt-arg", "embed_dim=8"] if method == "mvkt" else []
    r = run_cli("distill", teacher, store, "--val", store, "--student", "resnet18", *SMALL, "--student-leads", "II",
                "--method", method, "--epochs", 2, "--batch-size", 8, "--device", "cpu", *extra, "-o", tmp_path / "s.ckpt",
                "--json")
    ckpt = Checkpoint.load(tmp_path / "s.ckpt")
    assert ckpt.kind == "student" and ckpt.input.leads == ("II",) and ckpt.model.kwargs["num_leads"] == 1
    d = ckpt.distillation
    assert d["method"] == method and d["teacher"]["leads"] == ["I", "II", "V1"] and d["teacher"]["model"] == "resnet18"
    assert d["teacher"]["fingerprint"] == fingerprint(teacher)
    terms = {"kd": ["train_kd"], "mvms": ["train_kd"], "mvkt": ["train_mlkd", "train_clt"]}[method]
    assert all(np.isfinite(h[t]) for h in ckpt.history for t in terms)
    assert ckpt.thresholds is not None and "tuned on validation" in ckpt.thresholds["source"]
    assert ckpt.provenance[-1]["step"] == "distill" and ckpt.provenance[-1]["teacher"]["fingerprint"] == d["teacher"]["fingerprint"]
    assert '"distillation"' in r.stdout
    r = run_cli("eval", tmp_path / "s.ckpt", store, "--bootstrap", 0, "--tune-on-eval-store", "--json")  # lead II, by name
    assert "macro" in r.stdout


def test_method_defaults_are_recorded(data, tmp_path):
    store, teacher = data
    for method, expected in (("kd", {"alpha": 0.5, "temperature": 2.0, "noise_std": 0.0}),
                             ("mvms", {"alpha": 0.5, "temperature": 2.0, "noise_std": 0.1}),
                             ("mvkt", {"alpha": 1.0, "temperature": 1.0, "beta": 0.8, "hard_weight": 1.0,
                                       "nce_temperature": 0.07, "momentum": 0.5})):
        d = Distiller(_args(teacher, method, epochs=1), store, None, tmp_path / f"{method}.ckpt").distillation
        assert expected.items() <= d["hyperparameters"].items(), method


def test_the_teacher_is_frozen_and_reads_its_own_leads(data, tmp_path):
    store, teacher = data
    d = Distiller(_args(teacher, epochs=1), store, None, tmp_path / "s.ckpt")
    seen = []
    forward = d.teacher.forward_features
    d.teacher.forward_features = lambda x: (seen.append((x.shape, d.teacher.training)), forward(x))[1]
    before = {k: v.clone() for k, v in d.teacher.state_dict().items()}
    d.run()
    assert seen and all(shape[1] == 3 and not training for shape, training in seen)
    assert all(torch.equal(v, d.teacher.state_dict()[k]) for k, v in before.items())  # BatchNorm statistics too
    assert not any(p.requires_grad for p in d.teacher.parameters())
    trained = {id(p) for g in d.optimizer.param_groups for p in g["params"]}
    assert not trained & {id(p) for p in d.teacher.parameters()}


def test_mvms_noise_is_shared_by_teacher_and_student(data, tmp_path):
    store, teacher = data
    d = Distiller(_args(teacher, "mvms", epochs=1), store, None, tmp_path / "s.ckpt")
    xt = torch.zeros(4, 3, 50)
    xs = xt[:, 1:2].clone()  # lead II
    torch.manual_seed(0)
    ns, nt = d._add_noise(xs, xt)
    assert torch.equal(ns, nt[:, 1:2]) and 0.05 < nt.std().item() < 0.15


@pytest.mark.parametrize("method", ["mvkt", pytest.param("mvms", marks=pytest.mark.slow)])  # CLT's bank and Z; noise per step
def test_resume_after_an_epoch_is_exact(data, tmp_path, method):
    store, teacher = data
    whole = Distiller(_args(teacher, method, epochs=3), store, store, tmp_path / "a.ckpt").run()
    interrupt_after_epoch(lambda **kw: Distiller(_args(teacher, method, epochs=3), store, store, tmp_path / "b.ckpt", **kw), epoch=2)
    resumed = Distiller(_args(teacher, method, epochs=3), store, store, tmp_path / "b.ckpt")
    assert resumed.resume() and resumed.start_epoch == 1
    ckpt = resumed.run()
    assert_same_run(whole, ckpt)


def test_clt_bank_rows_follow_the_label_fraction(data, tmp_path):
    store, teacher = data
    d = Distiller(_args(teacher, "mvkt", epochs=1, label_fraction=0.5), store, None, tmp_path / "s.ckpt")
    assert len(d.bank_rows) == len(d.subset.indices) == d.clt.memory_s.shape[0] < 24
    d.run()


@pytest.mark.parametrize("flags, message", [
    (["--student-leads", "V6"], "lacks lead(s) V6"),
    (["--alpha", "1.5"], "alpha must be"),
    (["--temperature", "0"], "temperature must be"),
    (["--clt-arg", "negatives=4"], "apply to --method mvkt"),
    (["--method", "mvkt", "--clt-arg", "bogus=1"], "CLT has no setting bogus"),
    (["--crop", "200"], "distil with no --crop"),
])
def test_refusals_name_the_flag(data, tmp_path, flags, message):
    store, teacher = data
    r = run_cli("distill", teacher, store, "--student", "resnet18", *SMALL, "--epochs", 1, "--batch-size", 8,
                "--device", "cpu", *flags, "-o", tmp_path / "s.ckpt", expect=2)
    assert message in r.stderr and not (tmp_path / "s.ckpt").exists()


def test_an_encoder_or_another_task_is_no_teacher(data, tmp_path):
    store, teacher = data
    other = tmp_path / "other"
    wfdb_store(other, n=8, fs=100, classes=("X", "Y"))
    r = run_cli("distill", teacher, other, "--student", "resnet18", "-o", tmp_path / "s.ckpt", expect=2)
    assert "classifies A, B" in r.stderr
    enc = tmp_path / "enc.ckpt"
    run_cli("pretrain", "cpc", store, "--backbone", "resnet18", *SMALL, "--method-arg", "negatives=4", "--method-arg", "hidden=8",
            "--epochs", 1, "--batch-size", 8, "--device", "cpu", "-o", enc)
    r = run_cli("distill", enc, store, "--student", "resnet18", "-o", tmp_path / "s.ckpt", expect=2)
    assert "is an encoder" in r.stderr


def test_a_student_is_profiled_and_explained_on_its_own_leads(data, tmp_path):
    """profile and explain rebuild a student's input from its checkpoint: lead II of the 3-lead store."""
    import json

    store, teacher = data
    run_cli("distill", teacher, store, "--student", "resnet18", *SMALL, "--student-leads", "II", "--epochs", 1,
            "--batch-size", 8, "--device", "cpu", "-o", tmp_path / "s.ckpt")
    r = run_cli("profile", tmp_path / "s.ckpt", "--batch", 1, "--repeats", 1, "--json")
    assert json.loads(r.stdout)["input_shape"] == [1, 400]  # one lead of 4 s at 100 Hz
    run_cli("explain", tmp_path / "s.ckpt", store, "--first", 1, "-o", tmp_path / "cams")
    assert list((tmp_path / "cams").glob("*.png"))


@pytest.mark.slow  # two launches, one under torchrun
def test_two_gloo_processes_distil_with_clt(data, tmp_path):
    """Under torchrun distill runs data-parallel, mvkt included (the CLT heads in the student's DDP module, the
    memory banks updated from the gathered batch): rank 0 alone prints and writes, and the run matches one process
    closely (the negatives are drawn for the global batch on every rank; BatchNorm statistics are per rank)."""
    from conftest import train_one_and_two_processes

    store, teacher = data
    args = ["distill", str(teacher), str(store), "--student", "resnet18", *SMALL, "--student-leads", "II", "--method", "mvkt",
            "--clt-arg", "negatives=4", "--clt-arg", "embed_dim=8", "--epochs", "2", "--batch-size", "8", "--device", "cpu",
            "--threads", "1"]
    one, two, printed = train_one_and_two_processes(args, tmp_path)
    assert printed.strip() == str(two)
    a, b = Checkpoint.load(one), Checkpoint.load(two)
    assert b.kind == "student" and len(b.history) == 2
    assert all(np.isfinite(h["train_clt"]) for h in b.history)
    assert b.history[0]["train_clt"] == pytest.approx(a.history[0]["train_clt"], rel=0.2)
