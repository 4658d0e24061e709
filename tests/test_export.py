"""ecgtool export: ONNX and TorchScript files that compute what the checkpoint's model computes, with its metadata."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ecgtool.checkpoint import Checkpoint, ModelSpec, encoder_checkpoint
from ecgtool.data.inputs import InputSpec
from ecgtool.data.views import data_view
from ecgtool.models import create_model, list_models, model_info
from ecgtool.models.layers import BeatWindows
from ecgtool.provenance import fingerprint
from conftest import help_imports, run_cli

METADATA_KEYS = ("format", "format_version", "ecgtool_version", "model", "checkpoint", "input", "input_name", "input_shape",
                 "input_channels", "output_name", "output", "activation", "classes", "class_descriptions", "task",
                 "multi_label", "thresholds", "provenance")


def _logits(ckpt_path, x: np.ndarray) -> np.ndarray:
    model = Checkpoint.load(ckpt_path).build_model().eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _check_metadata(meta: dict, ckpt_path) -> None:
    ckpt = Checkpoint.load(ckpt_path)
    assert set(meta) == set(METADATA_KEYS)
    assert meta["input"] == ckpt.input.to_dict() and meta["classes"] == list(ckpt.classes)
    assert meta["input_shape"] == ["batch", 12, ckpt.input.samples] and meta["input_channels"] == list(ckpt.input.leads)
    assert meta["multi_label"] is True and meta["activation"] == "sigmoid" and meta["output"] == "logits"
    assert meta["thresholds"] == ckpt.thresholds and meta["task"] == ckpt.task
    assert meta["checkpoint"]["fingerprint"] == fingerprint(ckpt_path) and meta["model"]["name"] == "resnet18"


# --------------------------------------------------------------------------- through the command

def test_torchscript_export_runs_as_the_checkpoint(trained_checkpoint, tmp_path):
    out = tmp_path / "model.pt"
    result = run_cli("export", trained_checkpoint, "-o", out, "--json")
    report = json.loads(result.stdout)
    assert report["format"] == "torchscript" and report["opset"] is None and report["size_bytes"] == out.stat().st_size
    assert report["input_shape"] == ["batch", 12, 1000] and [c["batch"] for c in report["checks"]] == [2, 1]
    assert report["max_abs_diff"] <= 1e-4 and "parity: max |logit difference|" in result.stderr
    files = {k: "" for k in METADATA_KEYS}
    module = torch.jit.load(str(out), _extra_files=files)
    _check_metadata({k: json.loads(v) for k, v in files.items()}, trained_checkpoint)
    x = np.random.default_rng(5).standard_normal((3, 12, 1000), dtype=np.float32)  # another batch size than exported
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(x)).numpy(), _logits(trained_checkpoint, x), atol=1e-5)
    assert report["warnings"] == []


def test_a_resume_file_exports_with_a_warning(trained_checkpoint, tmp_path):
    import dataclasses

    dataclasses.replace(Checkpoint.load(trained_checkpoint), resume={"epoch": 0, "position": {}}).save(tmp_path / "m.ckpt.resume")
    result = run_cli("export", tmp_path / "m.ckpt.resume", "-o", tmp_path / "m.pt", "--json")
    assert json.loads(result.stdout)["warnings"] and "is the resume file of an unfinished run" in " ".join(result.stderr.split())


@pytest.mark.slow
def test_onnx_export_runs_in_onnxruntime(trained_checkpoint, synthetic_splits, tmp_path):
    import onnx
    import onnxruntime as ort

    out, store = tmp_path / "model.onnx", synthetic_splits / "val.zarr"
    report = json.loads(run_cli("export", trained_checkpoint, "-o", out, "--check-store", store, "--json").stdout)
    assert report["format"] == "onnx" and report["opset"] == 18 and len(report["checks"]) == 3
    assert report["checks"][2]["input"].startswith(str(store)) and report["max_abs_diff"] <= 1e-4
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(out)).metadata_props}
    _check_metadata(meta, trained_checkpoint)
    # docs/export.md's example, as a deployment runs it
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(5).standard_normal((3, 12, 1000), dtype=np.float32)
    logits = session.run([meta["output_name"]], {meta["input_name"]: x})[0]
    np.testing.assert_allclose(logits, _logits(trained_checkpoint, x), atol=1e-4)
    probabilities = 1 / (1 + np.exp(-logits))
    assert (probabilities >= np.asarray(meta["thresholds"]["values"])).shape == (3, 9)


def test_missing_onnx_extra_fails_in_one_line_before_work(trained_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails, as where the extra is not installed
    result = run_cli("export", trained_checkpoint, "-o", tmp_path / "model.onnx", expect=1)
    assert "pip install 'ecgtool[export]'" in result.stderr and "onnxruntime" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_refusals(trained_checkpoint, synthetic_splits, tmp_path):
    err = run_cli("export", trained_checkpoint, "-o", trained_checkpoint, "--format", "torchscript", "--overwrite", expect=1).stderr
    assert "is the input" in err
    (tmp_path / "old.pt").write_text("a previous export")
    assert "already exists; pass --overwrite" in run_cli("export", trained_checkpoint, "-o", tmp_path / "old.pt", expect=1).stderr
    err = run_cli("export", trained_checkpoint, "-o", tmp_path / "model.bin", expect=2).stderr
    assert "cannot tell the format" in err and "--format" in err
    store = synthetic_splits / "train.zarr"
    encoder = tmp_path / "enc.ckpt"
    encoder_checkpoint(create_model("resnet18", num_classes=2, base_width=8), [store], method="st-mem").save(encoder)
    assert "is an encoder" in run_cli("export", encoder, "-o", tmp_path / "enc.pt", expect=1).stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["enc.ckpt", "old.pt"]


@pytest.mark.parametrize("opset", ["29", "99999"])
def test_an_opset_the_installed_exporter_cannot_write_is_a_usage_error_before_work(trained_checkpoint, tmp_path, monkeypatch,
                                                                                  opset):
    import onnx.defs

    import ecgtool.export.run as run

    def never(*args):
        raise AssertionError("exported despite an opset out of range")

    monkeypatch.setattr(run, "write_onnx", never)
    monkeypatch.setattr(onnx.defs, "onnx_opset_version", lambda: 28)  # the range is asked of onnx, not written down
    err = run_cli("export", trained_checkpoint, "-o", tmp_path / "m.onnx", "--opset", opset, "--json", expect=2).stderr
    assert "Invalid value for '--opset'" in err and f"opset {opset}" in err and "18 to 28" in err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_an_opset_given_to_a_torchscript_export_is_refused(trained_checkpoint, tmp_path):
    err = run_cli("export", trained_checkpoint, "-o", tmp_path / "m.pt", "--opset", "20", expect=2).stderr
    assert "Invalid value for '--opset'" in err and "TorchScript" in err and list(tmp_path.iterdir()) == []


def test_a_file_at_another_opset_than_asked_is_not_published(trained_checkpoint, tmp_path, monkeypatch):
    import ecgtool.export.run as run

    def keeps_its_own(model, example, path, metadata, opset):  # as the exporter does when its conversion fails
        path.write_bytes(b"an opset-18 model")
        return 18

    monkeypatch.setattr(run, "write_onnx", keeps_its_own)
    err = run_cli("export", trained_checkpoint, "-o", tmp_path / "m.onnx", "--opset", "20", expect=1).stderr
    assert "could not convert resnet18 to opset 20 (it wrote opset 18); nothing was written" in err
    assert list(tmp_path.iterdir()) == []


def test_parity_failure_leaves_no_output(tmp_path, monkeypatch):
    import ecgtool.export.run as run

    ckpt = tmp_path / "small.ckpt"
    _small_checkpoint("resnet18", ckpt, base_width=8)
    real = run.run_torchscript
    monkeypatch.setattr(run, "run_torchscript", lambda path, xs: [y + np.float32(1e-2) for y in real(path, xs)])  # a subtly wrong export
    err = run_cli("export", ckpt, "-o", tmp_path / "model.pt", expect=1).stderr
    assert "differ from the PyTorch model's by up to 0.01" in err and "nothing was written" in err
    assert [p.name for p in tmp_path.iterdir()] == ["small.ckpt"]  # nor a temporary sibling
    run_cli("export", ckpt, "-o", tmp_path / "model.pt", "--atol", "0.02")  # within a looser tolerance


def test_exporter_and_runtime_failures_are_one_line(tmp_path, monkeypatch):
    import ecgtool.export.run as run

    ckpt = tmp_path / "small.ckpt"
    _small_checkpoint("resnet18", ckpt, base_width=8)

    def refuse(*args):
        raise RuntimeError("Could not guard on data-dependent expression\nmore detail")

    monkeypatch.setattr(run, "run_torchscript", refuse)  # as onnxruntime refusing a batch size fixed in the graph
    err = run_cli("export", ckpt, "-o", tmp_path / "model.pt", expect=1).stderr
    assert "fails on the parity inputs" in err and "RuntimeError: Could not guard" in err and len(err.splitlines()) == 1
    monkeypatch.setattr(run, "write_torchscript", refuse)  # as an exporter failing
    err = run_cli("export", ckpt, "-o", tmp_path / "model.pt", expect=1).stderr
    assert err.startswith("error: resnet18 cannot be exported to TorchScript: RuntimeError: Could not guard") and "--debug" in err
    assert [p.name for p in tmp_path.iterdir()] == ["small.ckpt"]


def test_help_imports_neither_torch_nor_onnx():
    text, imported = help_imports("export", ("torch", "onnx", "onnxruntime", "onnxscript", "numpy"))
    assert "export" in text and "--check-store" in text and imported == []


# --------------------------------------------------------------------------- every registered model

# Narrow enough that each exports in seconds; the graph, not the width, is what the exporters walk. The ONNX exporter
# walks an LSTM step by step, so the recurrent models get fewer samples (cpc: 110 s at 500 samples, 8 s at 100).
SMALL = {"inceptionformer": {"dims": [16, 32, 64, 128], "depths": [1, 1, 1, 1]}, "ecg_jepa_vit": {"dim": 32, "depth": 1, "num_heads": 2},
         "st_mem_vit": {"dim": 32, "depth": 1, "num_heads": 2}, "cpc": {"width": 16, "hidden": 16}}
SAMPLES = {"cpc": 100, "ecgnet_lstm": 250}
MODELS = list_models()
# ONNX export takes 3-30 s a model here (10 minutes for the registry, 2 for one variant per family). By default the
# suite exports one model for each kind of graph the exporter must handle (~40 s): convolutions, an LSTM, an STFT,
# attention with token selection, fixed-shape beat windows, a ViT and InceptionFormer's attention variants.
# ECGTOOL_TEST_EXPORT_FAMILIES=1 exports one variant per family (the family's namesake, else its first variant, or
# the cheaper variant named here); ECGTOOL_TEST_EXPORT_ALL=1 every registered model.
CHEAPER = {"cpc": "cpc_strided", "xresnet1d": "xresnet1d50", "ecg_jepa_vit": "ecg_jepa_vit_xs", "st_mem_vit": "st_mem_vit_small"}
FAMILIES = {}
for _name in MODELS:
    FAMILIES.setdefault(model_info(_name)["family"], []).append(_name)
ONNX_KINDS = ["resnet18", "cpc_strided", "two_stream", "dual_branch_tokensel", "light_transformer", "st_mem_vit_small",
              "inceptionformer"]
ONNX_MODELS = MODELS if os.environ.get("ECGTOOL_TEST_EXPORT_ALL") == "1" else \
    sorted(CHEAPER.get(f) or (f if f in names else names[0]) for f, names in FAMILIES.items()) \
    if os.environ.get("ECGTOOL_TEST_EXPORT_FAMILIES") == "1" else ONNX_KINDS


def _small_checkpoint(name: str, path, **kwargs) -> None:
    info = model_info(name)
    kwargs = {**SMALL.get(info["family"], {}), **kwargs}
    if "dims" in kwargs and len(info["default_kwargs"].get("dims", ())) == 3:  # a three-stage pyramid
        kwargs = {"dims": kwargs["dims"][:3], "depths": kwargs["depths"][:3]}
    samples = SAMPLES.get(name, 500)
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, num_leads=2, num_samples=samples, **kwargs)
    spec = InputSpec(fs=float(info["default_kwargs"].get("fs", 100.0)), leads=("I", "II"), samples=samples,
                     normalisation={"method": "zscore"}, view=data_view(info["input_view"]))
    Checkpoint(kind="classifier", model=ModelSpec(name, dict(model.model_kwargs)), state_dict=model.state_dict(),
               classes=("a", "b", "c"), task="test", multi_label=False, input=spec, thresholds=None, train_args={},
               metrics={}, provenance=[]).save(path)


def _export(name: str, suffix: str, tmp_path) -> None:
    ckpt = tmp_path / f"{name}.ckpt"
    _small_checkpoint(name, ckpt)
    report = json.loads(run_cli("export", ckpt, "-o", tmp_path / f"{name}{suffix}", "--json").stdout)
    assert report["max_abs_diff"] <= 1e-4 and [c["batch"] for c in report["checks"]] == [2, 1], report
    assert all(c["passed"] for c in report["checks"]), report


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_every_registered_model_exports_to_torchscript(name, tmp_path):
    _export(name, ".pt", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ONNX_MODELS)
def test_registered_models_export_to_onnx(name, tmp_path):
    _export(name, ".onnx", tmp_path)


# --------------------------------------------------------------------------- the model change export needed

def _cut_per_record(windows: BeatWindows, signal: torch.Tensor, marks: torch.Tensor | None):
    """BeatWindows.cut as it was, a loop over records' nonzero() marks (data-dependent shapes, which no exporter
    takes): the reference the fixed-shape version must equal."""
    b, _, n = signal.shape
    padded = F.pad(signal, (windows.pre, windows.width - windows.pre))
    out = signal.new_zeros(b, windows.n_beats, signal.shape[1], windows.width)
    valid = torch.zeros(b, windows.n_beats, dtype=torch.bool)
    peak = torch.full((b, windows.n_beats), -1, dtype=torch.long)
    grid = torch.arange(windows.grid // 2, n, windows.grid)[: windows.n_beats] if marks is None else None
    for i in range(b):
        p = grid if marks is None else (marks[i] > 0.5).nonzero().flatten()[: windows.n_beats]
        if len(p):
            out[i, : len(p)] = padded[i][:, p.unsqueeze(1) + torch.arange(windows.width)].permute(1, 0, 2)
            valid[i, : len(p)] = True
            peak[i, : len(p)] = p
    valid[:, 0] = True
    return out, valid, peak


@pytest.mark.parametrize("samples, n_beats", [(500, 20), (200, 3), (30, 50)])
def test_beat_windows_cut_equals_the_per_record_loop(samples, n_beats):
    windows = BeatWindows.in_seconds(100.0, n_beats)
    g = torch.Generator().manual_seed(samples)
    x = torch.randn(5, 3, samples, generator=g)
    marks = (torch.rand(5, samples, generator=g) < 0.05).float()
    marks[1] = 0  # no beat
    marks[2] = 1  # more marks than beats
    marks[3, 0] = marks[3, -1] = 1  # at both ends
    for m in (marks, None) if samples > windows.grid // 2 else (marks,):
        for got, want in zip(windows.cut(x, m), _cut_per_record(windows, x, m)):
            assert got.shape == want.shape and got.dtype == want.dtype and torch.equal(got, want)
