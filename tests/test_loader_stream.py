"""The stream loader's two windows (data/loader.py): one decodes in the pool's threads while the other's batches
are formed, and both outlive the epoch. Every record comes once per epoch with the values the store holds; the
buffers are reused; an epoch left early, two iterators alive at once and a chunk that fails to decode in a thread
all leave the loader giving what a fresh one gives."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import wfdb_store

from ecgtool.data import store as store_module
from ecgtool.data.inputs import InputSpec
from ecgtool.data.loader import ChunkLoader
from ecgtool.data.store import StoreError, open_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    with pytest.MonkeyPatch.context() as mp:  # chunks of 3 records: an epoch spans several windows of 2 chunks
        mp.setattr(store_module, "CHUNK_BYTES", 3 * 3 * 300 * 2)  # 3 leads × 300 samples of int16
        wfdb_store(root / "s.zarr", n=31, fs=100, seconds=3.0, seed=8)
    s = open_store(root / "s.zarr")
    assert s.signals.dtype == np.int16 and len(s.chunk_bounds()) >= 8
    return s


def _epoch(loader: ChunkLoader, epoch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    loader.set_epoch(epoch)
    return [(x.numpy().copy(), rows) for x, _, rows in loader]


def _loader(store, **kw) -> ChunkLoader:
    return ChunkLoader(store, 4, shuffle=True, seed=2, mode="stream", window_chunks=2, **kw)


@pytest.mark.parametrize("subset", [False, True])
def test_every_record_once_with_the_rows_the_store_holds(store, subset):
    spec = InputSpec.of_store(store)
    leads = (store.leads[2], store.leads[0]) if subset else None
    if leads:
        spec = replace(spec, leads=leads)
    batches = _epoch(_loader(store, spec=spec), 0)
    rows = np.concatenate([r for _, r in batches])
    assert sorted(rows) == list(range(len(store))) and not np.array_equal(rows, np.sort(rows))  # shuffled
    want = store.rows()[:, [list(store.leads).index(lead) for lead in leads] if leads else slice(None)]
    for x, r in batches:
        assert np.array_equal(x, want[r])


def test_the_windows_are_reused_from_epoch_to_epoch(store):
    loader = _loader(store)
    _epoch(loader, 0)
    windows, threads = loader._windows, loader._threads
    assert windows is not None and threads is not None
    again = _epoch(loader, 1)
    assert loader._windows is windows and loader._threads is threads
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(again, _epoch(_loader(store), 1)))


def test_an_epoch_left_early_leaves_the_next_as_a_fresh_loader_gives_it(store):
    loader = _loader(store)
    loader.set_epoch(0)
    it = iter(loader)
    next(it)  # the next window is decoding now
    it.close()
    got, want = _epoch(loader, 1), _epoch(_loader(store), 1)
    assert len(got) == len(want)
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(got, want))


def test_two_iterators_at_once_each_get_their_own_windows(store):
    loader = _loader(store)
    loader.set_epoch(3)
    a = iter(loader)
    first = next(a)  # epoch 3 under way, its windows taken
    loader.set_epoch(4)
    b = iter(loader)
    got_a, got_b = [first], []
    for x in b:  # interleaved: each step of one runs a step of the other
        got_b.append(x)
        got_a.extend([next(a)] if len(got_a) < len(loader) else [])
    got_a.extend(a)
    for got, want in ((got_a, _epoch(_loader(store), 3)), (got_b, _epoch(_loader(store), 4))):
        assert len(got) == len(want)
        assert all(np.array_equal(x.numpy(), w[0]) and np.array_equal(r, w[1]) for (x, _, r), w in zip(got, want))


def test_a_chunk_that_fails_to_decode_in_a_thread_is_a_store_error(store, tmp_path):
    import shutil

    copy = tmp_path / "s.zarr"
    shutil.copytree(store.path, copy)
    damaged = open_store(copy)
    path = Path(copy) / "signals" / "c" / str(len(damaged.chunk_bounds()) - 2) / "0" / "0"
    path.write_bytes(path.read_bytes()[:40])  # truncated: Blosc's frame says more than the file holds
    loader = ChunkLoader(damaged, 4, mode="stream", window_chunks=2)
    with pytest.raises(StoreError, match="signals chunk"):
        for _ in loader:
            pass
