"""Data-side input views: R-peak marks from wfdb's XQRS, and the beat model that uses them."""

from __future__ import annotations

import numpy as np
import torch

from ecgtool.data import synthetic
from ecgtool.data.views import apply_view, data_view, extra_channels
from ecgtool.models import create_model
from ecgtool.models.mamil import gasf


def test_rpeak_marks_match_the_generators_beats():
    cfg = synthetic.SyntheticConfig(n_records=30, fs=100, duration=10.0, seed=3)
    found_total = true_total = close = 0
    for spec in synthetic.sample_patients_and_labels(cfg):
        signal, info = synthetic.generate_record(spec, cfg)
        x = signal.T[None].astype(np.float32)  # (1, 12, 1000)
        out = apply_view({"name": "rpeaks"}, x, 100.0, synthetic.LEADS_12)
        assert out.shape == (1, 13, 1000) and np.array_equal(out[:, :12], x)
        found, truth = np.flatnonzero(out[0, 12]), np.asarray(info["r_peaks"])
        found_total += len(found)
        true_total += len(truth)
        close += sum(np.abs(truth - p).min() <= 10 for p in found)  # within 100 ms of a true beat
    # XQRS marks the QRS complex (not always the R apex of a wide or negative QRS): nearly all marks are beats
    assert close >= 0.95 * found_total and found_total >= 0.9 * true_total, (close, found_total, true_total)


def test_view_bookkeeping():
    assert data_view({"name": "raw", "in_model": "stft"}) == {"name": "raw"}
    assert data_view({"name": "rpeaks", "lead": "auto", "in_model": "beats"}) == {"name": "rpeaks", "lead": "auto"}
    assert extra_channels({"name": "rpeaks"}) == 1 and extra_channels({"name": "raw"}) == 0
    flat = apply_view({"name": "rpeaks"}, np.zeros((2, 3, 400), np.float32), 100.0, ["I", "II", "V1"])
    assert flat[:, 3].sum() == 0  # padding or a flat record has no beats


def test_mamil_cuts_beats_at_the_marks():
    model = create_model("mamil", num_classes=3, num_leads=2, num_samples=600, fs=100.0, n_beats=4).eval()
    x = torch.zeros(1, 3, 600)
    x[0, 0] = torch.arange(600, dtype=torch.float32)  # the sample index, to read the windows back
    x[0, 2, [100, 300, 500]] = 1.0
    beats, valid = model.beats(x[:, :2], x[:, 2])
    assert valid[0].tolist() == [True, True, True, False]
    assert beats[0, 1, 0, model.pre].item() == 300  # the window's R-peak position holds the marked sample
    assert beats[0, 0, 0, 0].item() == 100 - model.pre
    g = gasf(torch.randn(2, 64))
    assert g.shape == (2, 64, 64) and torch.allclose(g, g.transpose(1, 2), atol=1e-6) and g.abs().max() <= 1 + 1e-6
    assert model(x).shape == (1, 3)
