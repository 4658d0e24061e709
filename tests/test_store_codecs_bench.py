"""The pure helpers of benchmarks/store_codecs.py (the measurement that chose the store's dtype and codec)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sc():
    spec = importlib.util.spec_from_file_location("store_codecs", ROOT / "benchmarks" / "store_codecs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_windows_runs_share_no_samples(sc):
    starts = sc.window_starts(38400, 1000, 10, 1)
    assert starts == [s * 1000 for s in range(29)]  # 38.4 s: windows starting at 0 … 28 s
    order, runs = sc.spread_order(len(starts), 10)
    assert sorted(order.tolist()) == list(range(29)) and sum(runs) == 29 and len(runs) == 10
    at = 0
    for length in runs:  # within a run, windows start at least 10 s apart: no shared samples
        run = np.array(starts)[order[at : at + length]]
        assert (np.diff(run) >= 10 * 1000).all()
        at += length


def test_leads_raw_size_and_precision(sc):
    names = ["i", "II", "iii", "AVR", "avl", "aVF", "v1", "v2", "v3", "v4", "v5", "v6", "vx"]
    assert [names[i] for i in sc.pick_leads(names)] == names[:12]  # case-insensitive, the 12 in order
    assert sc.pick_leads(["MLII", "V5"]) == [0, 1]  # lacking the 12: every lead
    assert sc.raw_bytes(3, 12, 1000, 600) == 3 * (2 * 12 * 1000 + 600)
    rows = np.zeros((2, 2, 4), np.float32)
    rows[0, 0] = [1, -4, 2, 0]
    back = rows.copy()
    back[0, 0, 1] = -3.9
    max_err, rel = sc.precision(rows, back)
    assert max_err == pytest.approx(0.1, rel=1e-5) and rel == pytest.approx(0.1 / 4, rel=1e-5)  # all-zero leads: exact


def test_int16_candidate_round_trips_and_is_no_larger_than_raw(sc):
    rng = np.random.default_rng(0)
    t = np.arange(1000) / 100
    phase = rng.uniform(0, 6, size=(20, 12, 1))
    rows = np.sin(2 * np.pi * 1.2 * t + phase).astype(np.float32)  # smooth: compressible
    q, scale = sc.stored(rows, "int16")
    codec = sc.Codec("lz4", 5, 1)
    assert sc.stored_size(codec, q, scale, 7, [20]) < sc.raw_bytes(20, 12, 1000, 0)
    assert np.array_equal(np.frombuffer(codec.blosc().decode(sc.encode(codec, q)), np.int16).reshape(q.shape), q)
    assert sc.encode(codec, q)[3] == 2  # Blosc's type size is int16's, not 1 (which would make shuffling a no-op)
    assert sc.chunk_records(12, 1000, 2, 4 << 20) == (4 << 20) // 24000
