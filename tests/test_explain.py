"""`ecgtool explain`: attribution methods, attention capture, the sanity check, the charts and the command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import help_imports, run_cli

from ecgtool.checkpoint import Checkpoint, ModelSpec
from ecgtool.data.inputs import InputSpec
from ecgtool.data.store import open_store
from ecgtool.data.views import data_view
from ecgtool.explain import chart
from ecgtool.explain.attention import attention, attention_rollout
from ecgtool.explain.methods import explain, gradcam, integrated_gradients
from ecgtool.explain.run import file_names, open_saliency
from ecgtool.explain.sanity import rank_correlation, sanity_check
from ecgtool.explain.timeaxis import spread
from ecgtool.models import create_model, model_info


def make_checkpoint(path, store_path, name, **kwargs):
    """An untrained checkpoint of ``name`` fitting ``store_path`` (its classes, leads, length and view)."""
    store = open_store(store_path)
    torch.manual_seed(0)
    model = create_model(name, num_classes=len(store.classes), num_leads=len(store.leads), num_samples=store.n_samples, **kwargs)
    Checkpoint(
        kind="classifier", model=ModelSpec(name, model.model_kwargs), state_dict=model.state_dict(),
        classes=tuple(store.classes), task=store.attrs["task"], multi_label=store.multi_label,
        input=InputSpec.of_store(store, data_view(model_info(name)["input_view"])), thresholds=None,
        train_args={}, metrics={}, provenance=[],
    ).save(path)
    return path


def model_input(ckpt_path, store_path, rows):
    """The model and its input for ``rows``, rebuilt the way eval does."""
    ckpt = Checkpoint.load(ckpt_path)
    store = open_store(store_path)
    read = ckpt.input.reader(store)
    return ckpt.build_model().eval(), torch.from_numpy(read(store.read_rows(np.asarray(rows)))), store


@pytest.fixture(scope="module")
def test_store(synthetic_splits):
    return synthetic_splits / "test.zarr"


# --------------------------------------------------------------------------- the command


def test_explain_writes_saliency_store_and_true_scale_charts(trained_checkpoint, test_store, tmp_path):
    store = open_store(test_store)
    ids = store.record_id[:3].tolist()
    out = tmp_path / "cams"
    r = run_cli("explain", trained_checkpoint, test_store, "--records", f"{ids[0]},{ids[1]}", "--records", ids[2],
                "-o", out, "--dpi", 80)
    assert r.stdout.strip() == str(out)

    g = open_saliency(out / "saliency.zarr")
    a = g.attrs
    assert (a["format"], a["format_version"], a["complete"], a["method"], a["layer"]) == ("ecgtool.saliency", 1, True, "gradcam", "layer4")
    assert a["leads"] == store.leads and a["fs"] == store.fs and a["classes"] == store.classes
    assert a["checkpoint"]["fingerprint"].startswith("sha256:") and a["checkpoint"]["model"]["name"] == "resnet18"
    assert [p["step"] for p in a["checkpoint"]["provenance"]] == ["fetch", "prep", "split", "train"]
    assert a["provenance"][0]["step"] == "explain" and a["signal_units"].startswith("per-record z-score")
    assert g["saliency"].shape == (3, 12, store.n_samples) and g["saliency"].dtype == np.float32
    assert g["record_id"][:].tolist() == ids
    np.testing.assert_array_equal(g["labels"][:], store.labels[:3])
    saliency = g["saliency"][:]
    assert (saliency >= 0).all() and (saliency.max(axis=(1, 2)) > 0).all()
    assert np.allclose(saliency, saliency[:, :1])  # a 1D model's map is one profile shared by the leads

    # probabilities come from exactly eval's input (leads, normalisation, view): recompute them independently
    model, x, _ = model_input(trained_checkpoint, test_store, [0, 1, 2])
    with torch.no_grad():
        probs = torch.sigmoid(model(x)).numpy()
    np.testing.assert_allclose(g["probabilities"][:], probs, rtol=1e-5, atol=1e-6)
    cls = g["explained_class"][:]
    assert a["class"] == [store.classes[k] for k in cls]

    from PIL import Image

    w_mm, h_mm = chart.page_size_mm(store.leads, store.n_samples, store.fs)
    for rid in ids:
        with Image.open(out / f"{rid}.png") as im:
            im.verify()
        with Image.open(out / f"{rid}.png") as im:
            assert abs(im.size[0] - w_mm / 25.4 * 80) <= 1 and abs(im.size[1] - h_mm / 25.4 * 80) <= 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cams"]  # no temporary sibling left behind


def test_existing_output_is_refused_unless_overwrite(trained_checkpoint, test_store, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    r = run_cli("explain", trained_checkpoint, test_store, "--first", 1, "-o", out, "--no-charts", expect=1)
    assert r.stderr == f"error: {out} already exists; pass --overwrite to replace it\n"
    r = run_cli("explain", trained_checkpoint, test_store, "--first", 2, "-o", out, "--no-charts", "--overwrite",
                "--method", "saliency", "--class", "AF", "--json")
    doc = json.loads(r.stdout)
    assert [rec["class"] for rec in doc["records"]] == ["AF", "AF"] and doc["records"][0]["chart"] is None
    assert sorted(p.name for p in out.iterdir()) == ["saliency.zarr"]
    assert open_saliency(out / "saliency.zarr")["explained_class"][:].tolist() == [1, 1]
    assert doc["warnings"] == []


def test_a_store_filtered_otherwise_is_named_as_eval_names_it(trained_checkpoint, synthetic_raw, tmp_path):
    run_cli("prep", synthetic_raw, "-o", tmp_path / "raw.zarr", "--fs", 100, "--highcut", 30, "--limit", 4, "--jobs", 1)
    r = run_cli("explain", trained_checkpoint, tmp_path / "raw.zarr", "--first", 1, "-o", tmp_path / "o", "--no-charts",
                "--method", "saliency", "--json")
    assert json.loads(r.stdout)["warnings"] and "raw.zarr was prepared otherwise" in " ".join(r.stderr.split())


@pytest.mark.parametrize("args, code, message", [
    (["--records", "SYN99999,NOPE"], 1, "error: record(s) SYN99999, NOPE not in"),
    (["--first", "1", "--class", "XYZ"], 2, "Error: Invalid value for '--class': unknown class 'XYZ'"),
    (["--first", "1", "--layer", "layer9"], 2, "Error: Invalid value for '--layer': unknown layer 'layer9' in resnet18; did you mean layer4"),
    (["--first", "1", "--layer", "global_pool"], 1, "Grad-CAM needs (batch, channels, time)"),
    (["--first", "1", "--method", "attention"], 2, "Error: Invalid value for '--method': resnet18 has no attention over time positions"),
    (["--first", "1", "--method", "ig", "--layer", "layer4"], 2, "Error: Invalid value for '--layer': a layer applies to the gradcam method"),
])
def test_errors_are_one_line_and_leave_nothing(trained_checkpoint, test_store, tmp_path, args, code, message):
    r = run_cli("explain", trained_checkpoint, test_store, "-o", tmp_path / "o", *args, expect=code)
    last = r.stderr.strip().splitlines()[-1]
    assert message in last and "Traceback" not in r.stderr, r.stderr
    if code == 1:
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "o").exists() and list(tmp_path.iterdir()) == []


def test_records_or_first_is_required(trained_checkpoint, test_store, tmp_path):
    r = run_cli("explain", trained_checkpoint, test_store, "-o", tmp_path / "o", expect=2)
    assert "--records" in r.stderr


def test_help_does_not_import_torch_or_matplotlib():
    text, imported = help_imports("explain", ("torch", "matplotlib", "captum"))
    assert "explain" in text and "--method" in text and imported == []


# --------------------------------------------------------------------------- Grad-CAM, 1D and 2D


def test_gradcam_on_a_2d_model_spans_leads_and_time(test_store, tmp_path):
    ckpt = make_checkpoint(tmp_path / "im.ckpt", test_store, "im_ecg", widths=[8, 8, 8], stem_width=8, branch_width=8)
    model, x, store = model_input(ckpt, test_store, [0, 1])
    e = gradcam(model, x, torch.tensor([0, 3]), n_leads=12)
    assert e.maps.shape == (2, 12, store.n_samples) and e.info["layer"] == "multi_branch"
    assert e.info["activation_shape"][1] == 12  # (channels, leads, time): the leads axis survives
    assert (e.maps >= 0).all() and e.maps.std(axis=1).mean() > 0  # lead rows differ

    # and through the command, with a chosen layer
    out = tmp_path / "o"
    run_cli("explain", ckpt, test_store, "--first", 1, "-o", out, "--layer", "layer2", "--no-charts")
    s = open_saliency(out / "saliency.zarr")
    assert s.attrs["layer"] == "layer2" and s["saliency"].shape == (1, 12, store.n_samples)


def test_gradcam_places_a_token_map_on_its_windows():
    """msse_transformer's token map: a value per window, spread over the window's samples."""
    torch.manual_seed(0)
    model = create_model("msse_transformer", num_classes=3, num_leads=2, num_samples=400, widths=[8, 8, 8], d_model=16).eval()
    e = gradcam(model, torch.randn(2, 2, 400), torch.tensor([0, 1]), n_leads=2)
    assert e.maps.shape == (2, 2, 400) and np.isfinite(e.maps).all()
    # spread: the mean of overlapping spans, zero where nothing covers
    out = spread(np.array([[1.0, 3.0]]), np.array([0, 2]), 4, 8)
    np.testing.assert_allclose(out[0], [1, 1, 2, 2, 3, 3, 0, 0])


# --------------------------------------------------------------------------- attention


def test_msse_attention_per_head_and_rollout():
    torch.manual_seed(0)
    model = create_model("msse_transformer", num_classes=3, num_leads=3, num_samples=500, widths=[8, 8, 8], d_model=16,
                         num_heads=4, encoder_layers=2).eval()
    x = torch.randn(2, 3, 500)
    with torch.no_grad():
        before = model(x)
    e = attention(model, x, n_leads=3)
    with torch.no_grad():
        assert torch.equal(model(x), before)  # hooks are gone, outputs untouched
    heads = e.arrays["attention_scale0"]
    n = len(e.info["scales"][0]["starts"])
    assert heads.shape == (2, 2, 4, n, n)  # records, layers, heads, queries, keys
    np.testing.assert_allclose(heads.sum(-1), 1.0, atol=1e-5)
    rollout = e.arrays["rollout_scale0"]
    assert rollout.shape == (2, n, n)
    np.testing.assert_allclose(rollout.sum(-1), 1.0, atol=1e-5)
    # the rollout is 0.5 A + 0.5 I (head mean), multiplied through the layers, first layer rightmost
    a = [torch.from_numpy(heads[:, i]) for i in range(2)]
    step = [0.5 * t.mean(1) + 0.5 * torch.eye(n) for t in a]
    np.testing.assert_allclose(attention_rollout(a).numpy(), (step[1] @ step[0]).numpy(), atol=1e-6)
    assert e.maps.shape == (2, 3, 500) and abs(e.maps.mean() - 1.0) < 0.05  # relative to uniform attention


class _PooledWindows(torch.nn.Module):
    """A model unknown to explain/: attention pooling over 4 fixed windows of 100 samples, declared the
    models/explainable.py way (the first user of this contract beyond part 1's models)."""

    def __init__(self):
        super().__init__()
        self.score = torch.nn.Conv1d(2, 1, 100, stride=100)
        self.head = torch.nn.Linear(2, 3)
        self.default_cam_layer = "score"

    def weights(self, x):
        return torch.softmax(self.score(x)[:, 0], dim=1)  # (B, 4)

    def forward(self, x):
        windows = x.unfold(-1, 100, 100).mean(-1)  # (B, C, 4)
        return self.head((windows * self.weights(x)[:, None]).sum(-1))


def test_a_new_model_needs_no_change_in_explain():
    from ecgtool.models.explainable import Attention, PoolingAttention, Spans
    from ecgtool.models.layers import EcgClassifier

    class Declared(EcgClassifier, _PooledWindows):
        def positions(self, layer_name, layer, x, shape):
            return Spans(np.arange(4) * 100, 100) if layer_name == "score" else None

        def attention(self, x):
            return Attention([PoolingAttention(self.weights(x), Spans(np.arange(4) * 100, 100))], info={"attention": "windows"})

        forward = _PooledWindows.forward

    torch.manual_seed(0)
    model, x = Declared().eval(), torch.randn(2, 2, 400)
    e = attention(model, x, n_leads=2)
    w = model.weights(x).detach().numpy()
    np.testing.assert_allclose(e.maps[:, 0, ::100], w * 4, rtol=1e-5)  # each window's weight on its span, 1 = uniform
    assert e.maps.shape == (2, 2, 400) and e.info == {"attention": "windows"}
    cam = gradcam(model, x, torch.tensor([0, 1]), n_leads=2)  # one value per window, on its span
    assert (cam.maps[:, 0, :100] == cam.maps[:, 0, :1]).all() and cam.maps.shape == (2, 2, 400)


def test_explain_imports_no_model_family():
    """explain/ reaches models only through the declared interface (models.explainable, layers.EcgClassifier)."""
    import pathlib
    import re

    root = pathlib.Path(__file__).parent.parent / "ecgtool" / "explain"
    found = {p.name: re.findall(r"ecgtool\.models\.(\w+)", p.read_text()) for p in root.glob("*.py")}
    assert {m for ms in found.values() for m in ms} <= {"explainable", "layers"}, found


def test_mina_attention_levels():
    torch.manual_seed(0)
    model = create_model("mina", num_classes=2, num_leads=1, num_samples=500, fs=100.0).eval()
    e = attention(model, torch.randn(2, 1, 500), n_leads=1)
    assert e.arrays["attention_frequency"].shape == (2, 4)
    np.testing.assert_allclose(e.arrays["attention_frequency"].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(e.arrays["attention_rhythm"].sum(-1), 1.0, atol=1e-5)  # over the 10 segments
    assert e.arrays["attention_beat"].shape[:3] == (2, 4, 10)
    assert e.maps.shape == (2, 1, 500) and (e.maps >= 0).all()


def test_mamil_attention_and_gradcam_through_the_rpeaks_view(test_store, tmp_path):
    """The rpeaks view adds a channel: the maps keep only the 12 signal leads."""
    ckpt = make_checkpoint(tmp_path / "mamil.ckpt", test_store, "mamil", fs=100.0)
    assert Checkpoint.load(ckpt).input.view["name"] == "rpeaks"
    out = tmp_path / "att"
    run_cli("explain", ckpt, test_store, "--first", 2, "-o", out, "--method", "attention", "--dpi", 60)
    g = open_saliency(out / "saliency.zarr")
    assert g["saliency"].shape == (2, 12, 1000)
    beats, peaks = g["attention_beats"][:], g["beat_peak"][:]  # R-peak sample per instance, -1 = empty instance
    np.testing.assert_allclose(beats.sum(-1), 1.0, atol=1e-5)
    assert (beats[peaks < 0] < 1e-6).all() and ((peaks >= 0).sum(1) >= 5).all()  # ~1 beat/s in 10 s
    model, x, _ = model_input(ckpt, test_store, [0, 1])
    assert x.shape[1] == 13
    e = gradcam(model, x, torch.tensor([0, 1]), n_leads=12)  # default layer: the per-beat encoder
    assert e.maps.shape == (2, 12, 1000) and (e.maps >= 0).all()


# --------------------------------------------------------------------------- integrated gradients


def test_integrated_gradients_completeness(trained_checkpoint, test_store):
    model, x, _ = model_input(trained_checkpoint, test_store, [0, 1])
    targets = torch.tensor([1, 4])
    # the Riemann sum's error falls as 1/steps: at 32 steps one record of one trained model was 5% off
    e = integrated_gradients(model, x, targets, n_leads=12, steps=128)
    with torch.no_grad():
        gap = (model(x) - model(torch.zeros_like(x))).gather(1, targets[:, None])[:, 0].numpy()
    total = e.maps.reshape(2, -1).sum(1)
    np.testing.assert_allclose(total, gap, rtol=0.02, atol=0.02)
    assert np.abs(e.arrays["ig_delta"]).max() < 0.02 + 0.02 * np.abs(gap).max()


# --------------------------------------------------------------------------- sanity check (Adebayo et al. 2018)


def test_randomised_weights_change_the_maps(trained_checkpoint, test_store):
    """Model-parameter randomisation: maps of a re-initialised model must not rank like the trained model's."""
    model, x, _ = model_input(trained_checkpoint, test_store, [0, 1])
    with torch.no_grad():
        targets = model(x).argmax(1)
    maps = {m: (lambda mm, xx, tt, m=m: explain(m, mm, xx, tt, 12, steps=8).maps) for m in ("gradcam", "saliency", "ig")}
    same = maps["gradcam"](model, x, targets)
    assert np.allclose(rank_correlation(same, same), 1.0)  # the metric itself: identical maps rank identically
    rows = {m: sanity_check(model, x, targets, f, mode="full", seed=1)[0] for m, f in maps.items()}
    assert rows["gradcam"]["randomised"][0] == "head" and len(rows["gradcam"]["randomised"]) == 6
    assert abs(rows["gradcam"]["spearman_abs"]) < 0.4  # measured: |rho| <= 0.13 over seeds 0-2
    assert abs(rows["saliency"]["spearman_abs"]) < 0.3  # measured: <= 0.02
    # |IG| keeps the input's own structure (IG ~ input x mean gradient; Adebayo et al. saw the same,
    # measured 0.43-0.49), its signed ranks do not (<= 0.01)
    assert rows["ig"]["spearman_abs"] < 0.75 and abs(rows["ig"]["spearman"]) < 0.3
    cascade = sanity_check(model, x, targets, maps["gradcam"], mode="cascade")
    assert [r["randomised"][-1] for r in cascade] == ["head", "layer4", "layer3", "layer2", "layer1", "stem"]


def test_sanity_flag_records_the_correlations(trained_checkpoint, test_store, tmp_path):
    out = tmp_path / "s"
    r = run_cli("explain", trained_checkpoint, test_store, "--first", 2, "-o", out, "--no-charts", "--sanity", "full")
    assert "Adebayo" in r.stderr and r.stdout.strip() == str(out)
    rows = open_saliency(out / "saliency.zarr").attrs["sanity"]
    assert len(rows) == 1 and rows[0]["spearman_abs"] < 0.5


# --------------------------------------------------------------------------- the chart


def test_chart_is_true_to_scale():
    fs, n = 100.0, 1000
    leads = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    sig = np.sin(np.linspace(0, 60, n))[None].repeat(12, 0)
    fig, ax = chart.figure(sig, leads, fs, np.abs(sig), "title", "subtitle", dpi=100)
    px_per_mm = 100 / 25.4
    (x0, y0), (x1, y1) = ax.transData.transform([(0, 0), (25, 10)])
    assert x1 - x0 == pytest.approx(25 * px_per_mm, rel=1e-3)  # 1 s of paper
    assert y1 - y0 == pytest.approx(10 * px_per_mm, rel=1e-3)  # 1 mV
    w, h = fig.get_size_inches() * 25.4
    assert (w, h) == pytest.approx(chart.page_size_mm(leads, n, fs))
    strips, rows, seconds = chart.layout(leads, n, fs)
    assert rows == 4 and seconds == 10.0
    assert [s.label for s in strips if s.row == 0] == ["I", "aVR", "V1", "V4"]
    assert [(s.start, s.stop) for s in strips if s.row == 1] == [(0, 250), (250, 500), (500, 750), (750, 1000)]
    assert [(s.label, s.start, s.stop) for s in strips if s.row == 3] == [("II", 0, 1000)]  # rhythm strip


def test_chart_for_other_lead_sets_and_long_records(tmp_path):
    strips, rows, _ = chart.layout(["I", "II", "V1"], 400, 100.0)
    assert rows == 3 and [s.label for s in strips] == ["I", "II", "V1"]
    twelve = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    strips, rows, _ = chart.layout(twelve, 400, 100.0)  # 4 s is too short for 3 x 4 columns of 2.5 s
    assert rows == 12 and [s.label for s in strips] == twelve
    strips, rows, seconds = chart.layout(["II"], 2500, 100.0)  # 25 s: three 10-s rows
    assert rows == 3 and seconds == 10.0 and strips[-1].label.endswith("20–25 s") and strips[-1].stop == 2500
    size = chart.save_chart(tmp_path / "c.png", np.zeros((3, 400)), ["I", "II", "V1"], 100.0, np.ones((3, 400)), "t", "s", dpi=60)
    from PIL import Image

    with Image.open(tmp_path / "c.png") as im:
        assert im.size == size


def test_file_names_are_safe_and_distinct():
    names = file_names(["a/b", "../x", "ok-1.2", "dup", "dup"], np.array([0, 1, 2, 3, 4]))
    assert names == ["a_b.png", "_x.png", "ok-1.2.png", "dup_row3.png", "dup_row4.png"]
