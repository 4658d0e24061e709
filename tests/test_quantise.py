"""int16 stores (data/quantise.py): the precision that prep's default dtype gives up is bounded and does not show
in what a researcher reads — eval's metrics on the synthetic test split equal a float32 store's to 3 decimals."""

import json

import numpy as np
import pytest

from conftest import run_cli
from ecgtool.data.quantise import INT16_PEAK, as_stored, dequantise, dequantise_rows, quantise
from ecgtool.data.store import open_store


@pytest.mark.slow
def test_eval_metrics_of_an_int16_store_equal_a_float32_stores_to_3_decimals(synthetic_raw, trained_checkpoint, tmp_path):
    metrics = {}
    for dtype in ("int16", "float32"):
        store, splits = tmp_path / f"{dtype}.zarr", tmp_path / dtype
        run_cli("prep", synthetic_raw, "-o", store, "--fs", 100, "--jobs", 1, "--dtype", dtype)
        run_cli("split", store, "-o", splits, "--ratios", "0.6,0.2,0.2")
        r = run_cli("eval", trained_checkpoint, splits / "test.zarr", "--json", "--bootstrap", 0)
        metrics[dtype] = json.loads(r.stdout)
    a, b = (open_store(tmp_path / d / "test.zarr") for d in ("int16", "float32"))
    assert list(a.record_id) == list(b.record_id) and a.signals.dtype == np.int16 and b.signals.dtype == np.float32
    assert np.abs(a.rows() - b.rows()).max() <= np.abs(b.rows()).max() / 65534 * 1.01
    flat = {d: _numbers(m) for d, m in metrics.items()}
    assert flat["int16"].keys() == flat["float32"].keys() and len(flat["int16"]) > 10
    for key, value in flat["float32"].items():
        assert round(flat["int16"][key], 3) == round(value, 3), key
    assert any("auroc" in key.lower() for key in flat["float32"]), sorted(flat["float32"])


def _numbers(doc, prefix="") -> dict:
    """Every number in eval's JSON, by its path (the per-record and timing parts left out)."""
    out = {}
    if isinstance(doc, dict):
        for k, v in doc.items():
            if "provenance" not in k and k not in ("seconds", "elapsed"):
                out.update(_numbers(v, f"{prefix}/{k}"))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.update(_numbers(v, f"{prefix}/{i}"))
    elif isinstance(doc, (int, float)) and not isinstance(doc, bool):
        out[prefix] = float(doc)
    return out


def test_quantise_round_trips_the_int16_grid_and_float16_rounds():
    q = np.arange(-INT16_PEAK, INT16_PEAK + 1, 97, dtype=np.int16)[None, None, :]
    scale = np.array([[0.001]], np.float32)
    x = dequantise(q, scale)
    q2, scale2 = quantise(x)
    assert np.array_equal(dequantise(q2, scale2), as_stored(x, "int16"))
    assert np.abs(dequantise(q2, scale2) - x).max() <= float(scale[0, 0]) / 2
    assert np.array_equal(as_stored(x, "float16"), x.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("leads", [None, [0, 2]])
def test_dequantise_rows_is_dequantise_of_the_gathered_rows_bit_for_bit(leads):
    rng = np.random.default_rng(4)
    q, scale = quantise(rng.normal(size=(9, 3, 50)).astype(np.float32) * rng.uniform(0.1, 5, size=(9, 3, 1)))
    pos = np.array([7, 0, 3, 3, 8])
    got = dequantise_rows(q, scale, pos, None if leads is None else np.array(leads))
    sel = slice(None) if leads is None else leads
    want = dequantise(q[pos][:, sel], scale[pos][:, sel])
    assert got.dtype == np.float32 and got.shape == want.shape and np.array_equal(got.view(np.int32), want.view(np.int32))
