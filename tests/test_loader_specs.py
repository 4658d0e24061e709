"""A ChunkLoader given a tuple of input specs yields each batch's records through every spec: the same
records in the same order as one loader per spec, in both modes and under rank slicing."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from conftest import wfdb_store

from ecgtool.data.inputs import InputSpec
from ecgtool.data import store as store_module
from ecgtool.data.loader import ChunkLoader
from ecgtool.data.store import open_store
from ecgtool.train.engine import random_crop


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("specs")
    with pytest.MonkeyPatch.context() as mp:  # chunks of 3 records: streaming then shuffles whole chunks
        mp.setattr(store_module, "CHUNK_BYTES", 3 * 3 * 300 * 4)
        wfdb_store(root / "s.zarr", n=20, fs=100, seconds=3.0, seed=5)
    s = open_store(root / "s.zarr")
    assert len(s.chunk_bounds()) > 3
    return s


@pytest.mark.parametrize("mode", ["memory", "stream"])
@pytest.mark.parametrize("rank", [0, 1])
def test_a_tuple_of_specs_reads_the_same_records_through_each(store, mode, rank):
    full = InputSpec.of_store(store)
    lead_one = replace(full, leads=("II",))  # a student's single lead, found by name
    kw = dict(shuffle=True, seed=3, mode=mode, window_chunks=2, rank=rank, world_size=2, drop_last=True)
    both = list(ChunkLoader(store, 3, spec=(full, lead_one), **kw))
    alone = [list(ChunkLoader(store, 3, spec=s, **kw)) for s in (full, lead_one)]
    assert len(both) == len(alone[0]) > 0
    for (x, y, rows), (xa, ya, ra), (xb, _, rb) in zip(both, *alone):
        assert isinstance(x, tuple) and len(x) == 2
        assert torch.equal(x[0], xa) and torch.equal(x[1], xb) and torch.equal(y, ya)
        assert list(rows) == list(ra) == list(rb)
        assert torch.equal(x[1][:, 0], x[0][:, list(store.leads).index("II")])


def test_a_tuple_is_cropped_with_one_window():
    torch.manual_seed(0)
    a = torch.arange(2 * 3 * 10, dtype=torch.float32).reshape(2, 3, 10)
    b = a[:, 1:2].clone()
    ca, cb = random_crop((a, b), 4)
    assert ca.shape == (2, 3, 4) and cb.shape == (2, 1, 4)
    assert torch.equal(ca[:, 1:2], cb)


def test_release_free_memory_trims_the_c_heap_where_there_is_one():
    import sys

    from ecgtool.heap import _malloc_trim, release_free_memory

    release_free_memory()  # after each streamed window; a no-op where the C library has no malloc_trim
    if sys.platform.startswith("linux"):
        assert _malloc_trim() is not None
