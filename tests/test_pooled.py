"""Pooled stores: several stores (other lead orders, other classes or none, their own normalisation) read as one
by the unchanged ChunkLoader, every record once per epoch, shuffled per (seed, epoch), split across ranks;
mismatched stores refused in one line; patient codes qualified by dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import write_wfdb_dir

from ecgtool.data.inputs import InputSpec
from ecgtool.data.loader import ChunkLoader
from ecgtool.data.pooled import PooledStore, patient_codes
from ecgtool.data.prep import run_prep
from ecgtool.data.readers import open_reader
from ecgtool.data.store import StoreWriter, open_store
from ecgtool.data.transforms import PrepConfig
from ecgtool.errors import EcgtoolError


def make_store(path, *, leads=("I", "II", "V1"), n=10, samples=200, fs=100.0, dataset="alpha", classes=("A", "B"),
               chunk=4, seed=0, offset=0.0, patients=None, source=None):
    """A store normalised by "dataset" statistics (its own), each lead at its own level (``offset`` + 10 × lead)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(leads), samples)) * (1 + seed) + offset + 10 * np.arange(len(leads))[:, None]
    x = x.astype(np.float32)
    norm = {"method": "dataset", "mean": x.mean((0, 2)).tolist(), "std": x.std((0, 2)).tolist()}
    attrs = {"fs": fs, "leads": list(leads), "units": "mV", "classes": list(classes), "task": dataset,
             "multi_label": True, "normalisation": norm, "dataset": dataset}
    with StoreWriter(path, n_leads=len(leads), n_samples=samples, attrs=attrs, chunk_records=chunk,
                     optional=("source",) if source is not None else ()) as w:
        w.append(x, rng.integers(0, 2, (n, len(classes))), [f"R{i}" for i in range(n)],
                 [f"P{i // 2}" for i in range(n)] if patients is None else patients,
                 **({"source": source} if source is not None else {}))
    return open_store(path)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("pooled")
    a = make_store(root / "a.zarr", n=10, chunk=4, seed=0)
    # the same leads in another order (as many leads: the statistics must follow the names), other classes
    b = make_store(root / "b.zarr", leads=("V1", "II", "I"), n=7, chunk=3, seed=1, offset=100, dataset="beta",
                   classes=("X", "Y", "Z"))
    # an unlabelled store with an extra lead
    c = make_store(root / "c.zarr", leads=("II", "V2", "I", "V1"), n=5, chunk=5, seed=2, offset=-50, dataset="gamma",
                   classes=())
    return [a, b, c]


@pytest.fixture(scope="module")
def pooled(stores):
    return PooledStore(stores, InputSpec.of_store(stores[0]))


def expected_rows(stores, leads) -> np.ndarray:
    """Every record of every store, in pooled order, read from its own store: leads by name, own statistics."""
    out = []
    for s in stores:
        index = [s.leads.index(lead) for lead in leads]
        norm = s.attrs["normalisation"]
        mean = np.asarray(norm["mean"], np.float32)[index, None]
        std = np.asarray(norm["std"], np.float32)[index, None]
        out.append((s.read_rows(np.arange(len(s)))[:, index] - mean) / std)
    return np.concatenate(out)


def epoch(loader, e):
    loader.set_epoch(e)
    xs, ys, rows = zip(*loader)
    return torch.cat(xs).numpy(), torch.cat(ys), np.concatenate(rows)


def test_pooled_store_shape_and_chunks(stores, pooled):
    assert len(pooled) == 22 and pooled.signals.shape == (22, 3, 200) and pooled.labels.shape == (22, 0)
    assert pooled.leads == ["I", "II", "V1"] and pooled.fs == 100.0 and pooled.n_samples == 200
    assert pooled.path == " + ".join(str(s.path) for s in stores)
    bounds = pooled.chunk_bounds()
    assert [b for b in bounds] == [(0, 4), (4, 8), (8, 10), (10, 13), (13, 16), (16, 17), (17, 22)]
    with pytest.raises(ValueError, match="span two pooled stores"):
        pooled.read_chunk(8, 12)


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_loader_yields_every_record_once_from_its_own_store(stores, pooled, mode):
    expected = expected_rows(stores, pooled.leads)
    loader = ChunkLoader(pooled, 4, spec=InputSpec.of_store(stores[0]), shuffle=True, seed=3, mode=mode, window_chunks=2)
    assert loader.mode == mode
    orders = []
    for e in range(2):
        x, y, rows = epoch(loader, e)
        assert sorted(rows.tolist()) == list(range(22))
        assert y.shape == (22, 0)
        np.testing.assert_allclose(x, expected[rows], rtol=1e-6, atol=1e-6)
        orders.append(rows)
    assert not np.array_equal(*orders)  # each epoch its own order
    # each store standardised on its own (not by the first store's statistics): every lead near mean 0, std 1
    for start, stop in zip(pooled.offsets[:-1], pooled.offsets[1:]):
        part = expected[start:stop]
        assert np.abs(part.mean((0, 2))).max() < 1e-4 and np.abs(part.std((0, 2)) - 1).max() < 1e-4


def test_rows_of_the_first_store_as_a_plain_store_reads_them(stores, pooled):
    spec = InputSpec.of_store(stores[0])
    alone = epoch(ChunkLoader(stores[0], 4, spec=spec, mode="memory"), 0)
    together = epoch(ChunkLoader(pooled, 4, spec=spec, mode="memory"), 0)
    n = len(stores[0])
    np.testing.assert_array_equal(together[0][:n], alone[0])
    assert together[2][:n].tolist() == alone[2].tolist()


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_shuffle_is_deterministic_per_seed_and_epoch(stores, pooled, mode):
    spec = InputSpec.of_store(stores[0])

    def order(seed, e):
        return epoch(ChunkLoader(pooled, 4, spec=spec, shuffle=True, seed=seed, mode=mode, window_chunks=2), e)[2]

    assert np.array_equal(order(5, 1), order(5, 1))
    assert not np.array_equal(order(5, 0), order(5, 1))
    assert not np.array_equal(order(5, 0), order(6, 0))


@pytest.mark.parametrize("mode", ["memory", "stream"])
def test_ranks_partition_the_records(stores, pooled, mode):
    spec = InputSpec.of_store(stores[0])
    one = ChunkLoader(pooled, 6, spec=spec, shuffle=True, seed=1, mode=mode, window_chunks=2)
    ranks = [ChunkLoader(pooled, 3, spec=spec, shuffle=True, seed=1, mode=mode, window_chunks=2, rank=r, world_size=2)
             for r in range(2)]
    for e in range(2):
        for loader in (one, *ranks):
            loader.set_epoch(e)
        batches = [list(loader) for loader in ranks]
        mine = [np.concatenate([rows for _, _, rows in b]) for b in batches]
        assert not set(mine[0]) & set(mine[1]) and sorted([*mine[0], *mine[1]]) == list(range(22))
        for (x0, _, r0), (x1, _, r1), (x, _, r) in zip(*batches, one):  # each global batch, split in two
            assert np.concatenate([r0, r1]).tolist() == r.tolist()
            assert torch.equal(torch.cat([x0, x1]), x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_pinned_batches_with_no_labels(stores, pooled):
    x, y, _ = next(iter(ChunkLoader(pooled, 4, spec=InputSpec.of_store(stores[0]), pin_memory=True)))
    assert x.is_pinned() and y.is_pinned() and y.shape == (4, 0)


def test_mismatched_stores_refused_in_one_line(tmp_path, stores):
    spec = InputSpec.of_store(stores[0])
    longer = make_store(tmp_path / "long.zarr", samples=300)
    with pytest.raises(EcgtoolError) as e:
        PooledStore([stores[0], longer], spec)
    message = str(e.value)
    assert "\n" not in message and str(longer.path) in message and str(stores[0].path) in message
    assert "300" in message and "200" in message and "--seconds" in message
    faster = make_store(tmp_path / "fast.zarr", fs=250.0)
    with pytest.raises(EcgtoolError, match=r"pretraining store .*fast\.zarr is sampled at 250 Hz.*--fs 100") as e:
        PooledStore([stores[0], faster], spec)
    assert "\n" not in str(e.value)
    lacking = make_store(tmp_path / "lacking.zarr", leads=("I", "II"))
    with pytest.raises(EcgtoolError, match=r"lacking\.zarr lacks lead\(s\) V1"):
        PooledStore([stores[0], lacking], spec)
    with pytest.raises(EcgtoolError, match="no pretraining store"):
        PooledStore([], spec)


def test_patient_codes_are_qualified_by_dataset(tmp_path, stores, pooled):
    a, b, c = stores
    codes = patient_codes(pooled)
    assert codes.dtype == np.int64 and codes.shape == (22,)
    assert codes[0] == codes[1] != codes[2]  # P0, P0, P1 of alpha
    assert codes[0] != codes[10]  # patient P0 of alpha and of beta: two patients
    assert np.array_equal(patient_codes(a), patient_codes(PooledStore([a], InputSpec.of_store(a))))
    assert len(np.unique(patient_codes(pooled))) == 5 + 4 + 3
    # the same dataset in two stores (its splits) is one set of patients; a record without a patient id is its own
    split = make_store(tmp_path / "split.zarr", n=4, patients=["P0", "", "", "P9"])
    codes = patient_codes(PooledStore([a, split], InputSpec.of_store(a)))
    assert codes[10] == codes[0] and len({codes[11], codes[12]} | set(codes[:10]) | {codes[13]}) == 5 + 3
    # a per-record source qualifies the patient too
    sourced = make_store(tmp_path / "sourced.zarr", n=4, patients=["P0", "P0", "P0", ""], source=["s1", "s2", "s1", "s1"])
    codes = patient_codes(sourced)
    assert codes[0] == codes[2] != codes[1] and codes[3] not in codes[:3]


def test_prepped_stores_pool(tmp_path):
    """Stores as prep writes them: other lead orders, classes and dataset names, --normalise dataset."""
    stores = []
    for name, leads, classes, seed in (("alpha", ("I", "II", "V1"), ("A", "B"), 0), ("beta", ("V1", "I", "II"), ("N", "AF", "O"), 1)):
        raw = write_wfdb_dir(tmp_path / name, n=6, leads=leads, classes=classes, seed=seed)
        (raw / "dataset.json").write_text(json.dumps({"dataset": name}))
        run_prep(open_reader(raw), tmp_path / f"{name}.zarr", PrepConfig(fs=100, seconds=4.0, normalisation="dataset"))
        stores.append(open_store(tmp_path / f"{name}.zarr"))
    assert [s.attrs["dataset"] for s in stores] == ["alpha", "beta"]
    pooled = PooledStore(stores, InputSpec.of_store(stores[0]))
    x, y, rows = epoch(ChunkLoader(pooled, 5, spec=InputSpec.of_store(stores[0]), shuffle=True, mode="stream"), 0)
    assert sorted(rows.tolist()) == list(range(12)) and y.shape == (12, 0)
    np.testing.assert_allclose(x, expected_rows(stores, pooled.leads)[rows], rtol=1e-6, atol=1e-6)
    codes = patient_codes(pooled)
    assert len(np.unique(codes)) == 6 and codes[0] != codes[6]  # P0..P2 in each dataset
