"""Report figures: the expected PNGs are written, valid and reproducible; ECE is right; nothing stays open."""

from __future__ import annotations

import gc
import subprocess
import sys

import numpy as np
import pytest

from ecgtool.eval.plots import calibration_bins, expected_calibration_error, write_report_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def multi_label_data(n: int = 200, k: int = 5, seed: int = 0, empty: tuple[int, ...] = (2,)):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < rng.uniform(0.1, 0.4, k)).astype(np.uint8)
    y[:, list(empty)] = 0                                   # classes with no positives
    logit = rng.normal(0, 1, (n, k)) + 2.5 * (y - 0.5) - 0.5
    return y, 1 / (1 + np.exp(-logit))


def multi_class_data(n: int = 160, k: int = 4, seed: int = 1):
    rng = np.random.default_rng(seed)
    y = np.eye(k, dtype=np.uint8)[rng.integers(0, k, n)]
    logit = rng.normal(0, 1, (n, k)) + 2 * y
    p = np.exp(logit)
    return y, p / p.sum(axis=1, keepdims=True)


def assert_png(path) -> None:
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] >= 300 and img.shape[1] >= 400, (path, img.shape)
    assert img[..., :3].std() > 0.01, f"{path} is blank"


def figures_alive() -> int:
    from matplotlib.figure import Figure

    gc.collect()
    return sum(isinstance(o, Figure) for o in gc.get_objects())


def test_multi_label_writes_every_figure(tmp_path):
    y, p = multi_label_data()
    thresholds = np.array([0.3, 0.5, 0.5, 0.6, 0.45])
    paths = write_report_plots(tmp_path, y, p, ["NORM", "MI", "STTC", "CD", "HYP"], True, thresholds, title="unit test")
    assert [q.name for q in paths] == ["roc.png", "pr.png", "reliability.png", "confusion.png", "thresholds.png"]
    assert sorted(q.name for q in tmp_path.iterdir()) == sorted(q.name for q in paths)
    for q in paths:
        assert q.parent == tmp_path
        assert_png(q)


def test_multi_class_writes_every_figure(tmp_path):
    y, p = multi_class_data()
    paths = write_report_plots(tmp_path, y, p, ["sinus", "AF", "other", "noisy"], False, None)
    assert [q.name for q in paths] == ["roc.png", "pr.png", "reliability.png", "confusion.png"]   # no thresholds.png
    for q in paths:
        assert_png(q)


def test_single_valued_classes_do_not_crash(tmp_path):
    """No positives, all positive, constant scores, no thresholds given, a single class."""
    rng = np.random.default_rng(3)
    y = (rng.random((40, 4)) < 0.3).astype(np.uint8)
    y[:, 0], y[:, 1] = 1, 0
    p = rng.random((40, 4)) ** 3
    p[:, 2] = 0.3
    p[0, 3], p[1, 3] = 1.0, 0.0
    paths = write_report_plots(tmp_path, y, p, ["all", "none", "flat", "x"], True, None)
    assert len(paths) == 5
    one = tmp_path / "one"
    one.mkdir()
    assert len(write_report_plots(one, y[:, 3:], p[:, 3:], ["x"], True, np.array([0.2]))) == 5
    # multi-class where a class never occurs in the labels
    mc = tmp_path / "mc"
    mc.mkdir()
    yc = np.eye(3, dtype=np.uint8)[[0, 0, 1, 1, 0]]
    pc = np.array([[.8, .1, .1], [.2, .5, .3], [.3, .3, .4], [.1, .8, .1], [.6, .2, .2]])
    assert len(write_report_plots(mc, yc, pc, ["a", "b", "absent"], False, None)) == 4


@pytest.mark.slow  # nine 30-class figures, ~5 s
def test_many_classes_split_into_pages(tmp_path):
    y, p = multi_label_data(n=60, k=30, seed=2, empty=(7,))
    names = [f"class {i}" for i in range(30)]
    paths = write_report_plots(tmp_path, y, p, names, True, np.full(30, 0.5))
    # 24 panels per file: the first page holds the summary panel and 23 classes, the second the last 7
    assert [q.name for q in paths] == ["roc.png", "roc-2.png", "pr.png", "pr-2.png", "reliability.png",
                                       "confusion.png", "confusion-2.png", "thresholds.png", "thresholds-2.png"]
    from matplotlib.image import imread

    first, second = imread(tmp_path / "roc.png"), imread(tmp_path / "roc-2.png")
    assert first.shape[1] == second.shape[1]            # same panel size and columns, fewer rows
    assert first.shape[0] > second.shape[0]
    assert_png(tmp_path / "thresholds-2.png")


def test_output_is_deterministic_and_leaves_no_figure(tmp_path):
    y, p = multi_class_data(n=80, k=3)
    before = figures_alive()
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    pa = write_report_plots(a, y, p, ["x", "y", "z"], False, None, title="same")
    pb = write_report_plots(b, y, p, ["x", "y", "z"], False, None, title="same")
    for qa, qb in zip(pa, pb):
        assert qa.read_bytes() == qb.read_bytes(), qa.name
        assert b"Software" not in qa.read_bytes()
    assert figures_alive() == before
    if "matplotlib.pyplot" in sys.modules:
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_matplotlib_is_imported_lazily():
    code = "import sys, ecgtool.eval.plots; assert 'matplotlib' not in sys.modules, 'imported at module level'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bad_input_is_refused(tmp_path):
    y, p = multi_class_data(n=10, k=3)
    with pytest.raises(ValueError):
        write_report_plots(tmp_path, y, p[:, :2], ["a", "b", "c"], False, None)
    with pytest.raises(ValueError):
        write_report_plots(tmp_path, y, p, ["a", "b"], False, None)
    with pytest.raises(ValueError):
        write_report_plots(tmp_path, y, p, ["a", "b", "c"], True, np.array([0.5, 0.5]))
    with pytest.raises(FileNotFoundError):
        write_report_plots(tmp_path / "missing", y, p, ["a", "b", "c"], False, None)


# ---------------------------------------------------------------- ECE

def test_ece_hand_computed():
    y = [0, 1, 1, 0, 1]
    p = [0.05, 0.15, 0.95, 0.92, 0.55]
    # bins: [0,.1): p .05 y 0 -> |0 - .05| = .05; [.1,.2): .15 vs 1 -> .85; [.5,.6): .55 vs 1 -> .45;
    # [.9,1]: mean p .935, frequency .5 -> .435, two predictions. ECE = (.05 + .85 + .45 + 2 * .435) / 5
    assert expected_calibration_error(y, p) == pytest.approx((0.05 + 0.85 + 0.45 + 2 * 0.435) / 5)
    assert expected_calibration_error(y, p) == pytest.approx(0.444)


def test_ece_edges_and_perfect_calibration():
    # 0.25 predicted, one in four positive: perfectly calibrated
    assert expected_calibration_error([1, 0, 0, 0], [0.25] * 4) == pytest.approx(0.0)
    # 1.0 belongs to the last bin, 0.0 to the first, an inner edge to the upper bin
    count, _, _ = calibration_bins([1, 0, 1], [1.0, 0.0, 0.2])
    assert count.tolist() == [1, 0, 1, 0, 0, 0, 0, 0, 0, 1]
    assert expected_calibration_error([1, 0], [1.0, 0.0]) == pytest.approx(0.0)
    assert expected_calibration_error([0, 0], [1.0, 1.0]) == pytest.approx(1.0)
    assert np.isnan(expected_calibration_error([], []))
    assert expected_calibration_error([1, 0, 1, 1], [0.31, 0.39, 0.71, 0.79], bins=2) == pytest.approx(
        (2 * abs(0.5 - 0.35) + 2 * abs(1 - 0.75)) / 4)


def test_calibration_bins_agree_with_sklearn():
    from sklearn.calibration import calibration_curve

    rng = np.random.default_rng(5)
    p = rng.random(500)
    y = (rng.random(500) < p ** 1.5).astype(int)
    count, mean_p, freq = calibration_bins(y, p, bins=10)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    used = count > 0
    np.testing.assert_allclose(freq[used], prob_true)
    np.testing.assert_allclose(mean_p[used], prob_pred)
