"""`ecgtool explain` as a clinician reads it: charts in mV from the store's zscore_scale, signed integrated
gradients on a diverging scale, the per-lead view, and crop-trained models explained window by window."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli, wfdb_store

from ecgtool.data.store import ZSCORE_SCALE, StoreError, StoreWriter, open_store
from ecgtool.data.transforms import PrepConfig, beat_windows, filtered, fix_length
from ecgtool.explain import chart
from ecgtool.explain.run import Z_FOOTER, chart_signal, open_saliency


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """12 WFDB records of 3 leads, 4 s at 250 Hz in mV, prepared at 100 Hz with the default per-record z-score."""
    return wfdb_store(tmp_path_factory.mktemp("views") / "w.zarr")


@pytest.fixture(scope="module")
def crop_checkpoint(store, tmp_path_factory):
    """A tiny resnet trained for one epoch on 2-s crops of the 4-s records (eval scores it on 3 windows)."""
    out = tmp_path_factory.mktemp("crop") / "crop.ckpt"
    run_cli("train", "resnet18", store, "--val", store, "-o", out, "--epochs", 1, "--batch-size", 4, "--seed", 0,
            "--device", "cpu", "--crop", 200, "--model-arg", "base_width=8")
    return out


def _old_store(src, out):
    """``src`` as a store written before zscore_scale existed (the same records, no scale)."""
    s = open_store(src)
    attrs = {k: v for k, v in s.attrs.items() if k not in ("format", "format_version", "complete", "content_hash")}
    with StoreWriter(out, n_leads=len(s.leads), n_samples=s.n_samples, attrs=attrs) as w:
        w.append(s.read_rows(np.arange(len(s))), s.labels, s.record_id, s.patient_id, s.fold)
    return out


# --------------------------------------------------------------------------- mV from the store


def test_chart_draws_the_raw_records_filtered_mv(store):
    import wfdb

    s = open_store(store)
    assert s.extras[ZSCORE_SCALE].shape == (12, 3, 2) and s.extras[ZSCORE_SCALE].dtype == np.float32
    rows = np.array([0, 5])
    signal, units = chart_signal(s, rows, s.read_rows(rows), [0, 1, 2])
    assert units == "mV"
    cfg = PrepConfig(fs=100, seconds=4.0)
    for k, row in enumerate(rows):
        rec = wfdb.rdrecord(str(store.parent / f"raw-{store.stem}" / s.record_id[row]))
        assert rec.units == ["mV"] * 3
        want = fix_length(filtered(rec.p_signal.T, rec.fs, cfg), 400)  # prep's own filter chain, before the z-score
        np.testing.assert_allclose(signal[k], want, atol=2e-4 * np.abs(want).max())
    # and the chart puts them on paper at 10 mm/mV: each strip's trace is its baseline + 10 × mV
    fig, ax = chart.figure(signal[0], s.leads, s.fs, None, "t", "s", units=units, dpi=60)
    traces = [line for line in ax.get_lines() if len(line.get_ydata()) == 400]
    assert len(traces) == 3
    for lead, line in enumerate(traces):
        y = np.asarray(line.get_ydata())
        np.testing.assert_allclose(y - y.mean(), 10.0 * (signal[0, lead] - signal[0, lead].mean()), atol=1e-4)


def test_a_store_without_scale_is_drawn_in_z_scores_and_says_so(store, tmp_path):
    old = open_store(_old_store(store, tmp_path / "old.zarr"))
    assert ZSCORE_SCALE not in old.extras and old.to_physical(np.array([0]), old.read_rows(np.array([0]))) is None
    raw = old.read_rows(np.array([0]))
    signal, units = chart_signal(old, np.array([0]), raw, [0, 1, 2])
    assert units == "SD" and np.array_equal(signal, raw)
    ckpt = tmp_path / "m.ckpt"
    _untrained(ckpt, old.path)
    run_cli("explain", ckpt, old.path, "--first", 1, "-o", tmp_path / "o", "--dpi", 50)
    assert open_saliency(tmp_path / "o" / "saliency.zarr").attrs["chart_units"] == "z-score"
    fig, _ = chart.figure(signal[0], old.leads, old.fs, None, "t", "s", units=units, footer=Z_FOOTER, dpi=50)
    assert any(Z_FOOTER in t.get_text() for t in fig.texts)


def test_mv_stores_stay_as_they_are_and_a_damaged_scale_is_refused(store, tmp_path):
    import zarr

    from ecgtool.data.prep import run_prep
    from ecgtool.data.readers import open_reader

    out = tmp_path / "d.zarr"  # --normalise dataset: the store holds mV, its statistics are applied at load time only
    run_prep(open_reader(store.parent / f"raw-{store.stem}"), out, PrepConfig(fs=100, seconds=4.0, normalisation="dataset"))
    d = open_store(out)
    assert d.attrs["units"] == "mV" and ZSCORE_SCALE not in d.extras
    raw = d.read_rows(np.array([1]))
    assert chart_signal(d, np.array([1]), raw, [0, 1, 2])[1] == "mV"
    np.testing.assert_array_equal(d.to_physical(np.array([1]), raw), raw)

    damaged = tmp_path / "z.zarr"
    run_cli("split", store, "-o", tmp_path / "s", "--ratios", "0.5,0.25,0.25")
    import shutil

    shutil.copytree(tmp_path / "s" / "test.zarr", damaged)
    g = zarr.open_group(damaged, mode="r+")
    n = g["signals"].shape[0]
    del g[ZSCORE_SCALE]
    g.create_array(ZSCORE_SCALE, data=np.zeros((n, 3), np.float32))  # one value per lead instead of (mean, std)
    with pytest.raises(StoreError, match="optional array zscore_scale must be float"):
        open_store(damaged)


def test_beat_windows_keep_each_windows_scale():
    rng = np.random.default_rng(0)
    x = np.sin(np.arange(3000) / 20.0)[None].repeat(2, 0) * np.array([[1.0], [3.0]]) + 0.1 * rng.standard_normal((2, 3000))
    cfg = PrepConfig(fs=100, seconds=None, beat_window=(0.2, 0.4))
    windows, centres, keep, scales = beat_windows(x, 100, np.array([10, 500, 1500, 2990]), cfg)
    assert keep.tolist() == [False, True, True, False] and scales.shape == (2, 2, 2)
    ref = filtered(x, 100, cfg)
    for w, c, sc in zip(windows, centres, scales):
        np.testing.assert_allclose(w * sc[:, 1:] + sc[:, :1], ref[:, c - 20 : c + 40], atol=1e-5)


def test_split_carries_the_scale(store, tmp_path):
    run_cli("split", store, "-o", tmp_path / "s", "--ratios", "0.5,0.25,0.25")
    parent = open_store(store)
    for name in ("train", "val", "test"):
        part = open_store(tmp_path / "s" / f"{name}.zarr")
        rows = [parent.record_id.tolist().index(r) for r in part.record_id]
        np.testing.assert_array_equal(part.extras[ZSCORE_SCALE], parent.extras[ZSCORE_SCALE][rows])


# --------------------------------------------------------------------------- signed maps


def test_signed_maps_keep_their_sign_on_a_symmetric_scale():
    m = np.array([[-4.0, -1.0, 0.0, 1.0, 2.0]])
    shown, scale = chart.display_map(m, 100.0, signed=True)
    assert scale == pytest.approx(np.percentile(np.abs(m), chart.DISPLAY_PERCENTILE))
    assert (np.sign(shown) == np.sign(m)).all() and shown.min() >= -1 and shown.max() <= 1
    rgba = chart._overlay_colours(np.array([-1.0, 0.0, 1.0]), signed=True)
    assert rgba[0, 2] > rgba[0, 0] and rgba[2, 0] > rgba[2, 2]  # -1 blue, +1 red
    assert rgba[1, 3] == 0 and rgba[0, 3] == pytest.approx(rgba[2, 3])  # 0 leaves the paper plain; symmetric opacity
    magnitude, _ = chart.display_map(m, 100.0)  # the unsigned view stays for |gradient| and Grad-CAM
    assert (magnitude >= 0).all()


# --------------------------------------------------------------------------- per-lead view


def _untrained(path, store_path, samples=None):
    from ecgtool.checkpoint import Checkpoint, ModelSpec
    from ecgtool.data.inputs import InputSpec
    from ecgtool.models import create_model

    s = open_store(store_path)
    torch.manual_seed(0)
    model = create_model("resnet18", num_classes=len(s.classes), num_leads=len(s.leads), num_samples=samples or s.n_samples,
                         base_width=8)
    Checkpoint(kind="classifier", model=ModelSpec("resnet18", model.model_kwargs), state_dict=model.state_dict(),
               classes=tuple(s.classes), task=s.attrs["task"], multi_label=s.multi_label,
               input=InputSpec.of_store(s, samples=samples), thresholds=None, train_args={}, metrics={},
               provenance=[]).save(path)
    return path


def test_per_lead_view_ranks_the_leads(store, tmp_path):
    ckpt = _untrained(tmp_path / "m.ckpt", store)
    out = tmp_path / "pl"
    r = run_cli("explain", ckpt, store, "--first", 2, "--method", "ig", "--steps", 8, "--per-lead", "-o", out, "--dpi", 50, "--json")
    doc = json.loads(r.stdout)
    g = open_saliency(out / "saliency.zarr")
    imp, maps = g["lead_importance"][:], g["saliency"][:]
    np.testing.assert_allclose(imp, np.abs(maps).sum(-1), rtol=1e-5)
    share = doc["records"][0]["lead_share"]
    assert list(share) == [g.attrs["leads"][k] for k in np.argsort(-imp[0], kind="stable")]
    assert sum(share.values()) == pytest.approx(1.0) and g.attrs["chart_units"] == "mV"
    assert (maps < 0).any() and (maps > 0).any()  # signed maps are stored signed
    from PIL import Image

    with Image.open(out / doc["records"][0]["chart"]) as im:  # one row per lead, and the ranking column
        w_mm, h_mm = chart.page_size_mm(g.attrs["leads"], maps.shape[-1], g.attrs["fs"], per_lead=True)
        assert abs(im.size[0] - w_mm / 25.4 * 50) <= 1 and abs(im.size[1] - h_mm / 25.4 * 50) <= 1
    r = run_cli("explain", ckpt, store, "--first", 1, "--per-lead", "-o", tmp_path / "x", expect=2)
    assert "Invalid value for '--per-lead'" in r.stderr and not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- crop-trained models


@pytest.mark.slow
def test_crop_trained_model_is_explained_on_evals_windows(store, crop_checkpoint, tmp_path):
    from ecgtool.checkpoint import Checkpoint
    from ecgtool.eval.predict import each_window_probabilities, window_probabilities, windows_for
    from ecgtool.explain.methods import integrated_gradients

    out = tmp_path / "c"
    r = run_cli("explain", crop_checkpoint, store, "--first", 3, "--method", "ig", "--steps", 8, "-o", out, "--dpi", 50, "--json")
    doc = json.loads(r.stdout)
    g = open_saliency(out / "saliency.zarr")
    assert doc["windows"]["starts"] == [0, 100, 200] and g.attrs["windows"]["length"] == 200
    assert g["saliency"].shape == (3, 3, 400) and g["ig_delta"].shape == (3, 3)  # records, windows

    ckpt = Checkpoint.load(crop_checkpoint)
    s = open_store(store)
    model = ckpt.build_model().eval()
    x = torch.from_numpy(ckpt.input.reader(s)(s.read_rows(np.arange(3))))
    windows = windows_for(200, 400, aggregate="max")
    with torch.no_grad():  # the record's probabilities are eval's
        np.testing.assert_allclose(g["probabilities"][:], window_probabilities(model, x, windows, True).numpy(), rtol=1e-5)
        each = each_window_probabilities(model, x, windows, True).numpy()
    cls = g["explained_class"][:]
    in_class = each[np.arange(3), :, cls]
    np.testing.assert_allclose(g["window_probability"][:], in_class, rtol=1e-5)
    assert (g["deciding_window"][:] == in_class.argmax(1)).all()
    np.testing.assert_allclose(in_class.max(1), g["probabilities"][:][np.arange(3), cls], rtol=1e-5)  # max aggregation
    k = int(g["deciding_window"][0])
    assert doc["records"][0]["window"]["start_s"] == k * 1.0 and doc["records"][0]["window"]["stop_s"] == k * 1.0 + 2.0

    # stitched: samples only the first window covers are its map; overlaps are the mean of the windows covering them
    maps = [integrated_gradients(model, x[:1, :, s0:s0 + 200], torch.tensor(cls[:1]), 3, steps=8).maps[0] for s0 in (0, 100, 200)]
    got = g["saliency"][0]
    np.testing.assert_allclose(got[:, :100], maps[0][:, :100], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got[:, 100:200], (maps[0][:, 100:] + maps[1][:, :100]) / 2, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got[:, 300:], maps[2][:, 100:], rtol=1e-4, atol=1e-6)
    assert (out / doc["records"][0]["chart"]).is_file()


def test_crop_model_with_gradcam_and_window_options(store, tmp_path):
    ckpt = _untrained(tmp_path / "c.ckpt", store, samples=200)
    out = tmp_path / "g"
    r = run_cli("explain", ckpt, store, "--first", 2, "-o", out, "--window-stride", 50, "--aggregate", "mean", "--dpi", 50, "--json",
                "--sanity", "full")
    doc = json.loads(r.stdout)
    assert doc["windows"]["starts"] == [0, 50, 100, 150, 200] and doc["windows"]["aggregate"] == "mean"
    assert open_saliency(out / "saliency.zarr")["saliency"].shape == (2, 3, 400) and len(doc["sanity"]) == 1
    r = run_cli("explain", ckpt, store, "--first", 1, "-o", tmp_path / "x", "--window-stride", 300, expect=2)
    assert "samples would go unseen" in r.stderr
    whole = _untrained(tmp_path / "w.ckpt", store)
    r = run_cli("explain", whole, store, "--first", 1, "-o", tmp_path / "x", "--aggregate", "max", expect=2)
    assert "there are no windows" in r.stderr and not (tmp_path / "x").exists()
