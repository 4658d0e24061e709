"""train/prefetch.py: batches on the device ahead of the step, in the loader's order; the epoch's data wait; and
ecgtool/background.py, the thread both the prefetch and the loader use."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from ecgtool.background import background
from ecgtool.train.engine import random_crop
from ecgtool.train.prefetch import DataWait, prefetch

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")


def _batches(n=7, tuple_x=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        x = torch.randn(3, 2, 10, generator=g)
        out.append(((x, x[:, :1] * 2) if tuple_x else x, torch.rand(3, 4, generator=g), [3 * i, 3 * i + 1, 3 * i + 2]))
    return out


def _same(a, b) -> bool:
    (xa, ya, ra), (xb, yb, rb) = a, b
    xa, xb = (xa if isinstance(xa, tuple) else (xa,)), (xb if isinstance(xb, tuple) else (xb,))
    return len(xa) == len(xb) and all(torch.equal(p.cpu(), q.cpu()) for p, q in zip(xa, xb)) \
        and torch.equal(ya.cpu(), yb.cpu()) and list(ra) == list(rb)


@pytest.mark.parametrize("tuple_x", [False, True])
def test_on_the_cpu_the_batches_pass_through_unchanged_in_order(tuple_x):
    batches = _batches(tuple_x=tuple_x)
    got = list(prefetch(batches, torch.device("cpu")))
    assert len(got) == len(batches) and all(_same(a, b) for a, b in zip(got, batches))
    assert got[0][0] is batches[0][0] or all(p is q for p, q in zip(got[0][0], batches[0][0]))  # no copy


@pytest.mark.parametrize("depth", [1, 2, 5])
def test_background_yields_every_result_in_order_computed_ahead(depth):
    seen = []

    def work(batch):
        seen.append(threading.current_thread().name)
        return batch[2][0]

    assert list(background(_batches(9), work, depth)) == [3 * i for i in range(9)]
    assert set(seen) == {"ecgtool-background"}  # the work ran in the thread, not the caller's


def test_background_raises_the_sources_error_in_the_consumer():
    def source():
        yield from _batches(2)
        raise ValueError("decoding failed")

    got = []
    with pytest.raises(ValueError, match="decoding failed"):
        for b in background(source(), lambda b: b, 2):
            got.append(b)
    assert len(got) == 2  # the batches before the error arrived first


def test_a_consumer_that_stops_early_stops_the_thread_and_closes_the_source():
    closed = threading.Event()

    def endless():
        try:
            while True:
                yield _batches(1)[0]
        finally:
            closed.set()

    it = background(endless(), lambda b: b, 2)
    next(it)
    it.close()  # the engine's closing(): a pre-empted or failed epoch
    assert closed.wait(5) and not any(t.name == "ecgtool-prefetch" for t in threading.enumerate())


def test_data_wait_counts_the_time_spent_in_the_loaders_next():
    def slow(n, pause):
        for b in _batches(n):
            time.sleep(pause)  # the loader's work
            yield b

    clock = DataWait(torch.device("cpu"))
    clock.start()
    for _ in clock.timed(slow(4, 0.02)):
        time.sleep(0.01)  # the step's work
    clock.stop()
    assert clock.wait >= 4 * 0.02 and clock.elapsed >= clock.wait + 4 * 0.01
    assert 0.3 < clock.wait / clock.elapsed < 1

    clock.start()
    for _ in clock.timed(_batches(4)):
        time.sleep(0.01)
    clock.stop()
    assert clock.wait / clock.elapsed < 0.3  # batches that are ready cost (almost) nothing


@cuda
@pytest.mark.parametrize("tuple_x", [False, True])
def test_on_cuda_the_prefetched_batches_equal_the_loaders_in_order(tuple_x):
    device = torch.device("cuda")
    batches = [(tuple(t.pin_memory() for t in x) if isinstance(x, tuple) else x.pin_memory(), y.pin_memory(), r)
               for x, y, r in _batches(20, tuple_x)]
    got = []
    for x, y, rows in prefetch(batches, device, depth=3):
        first = x[0] if isinstance(x, tuple) else x
        assert first.device.type == "cuda" and y.device.type == "cuda"
        got.append((tuple(t * 1 for t in x) if isinstance(x, tuple) else x * 1, y * 1, rows))  # used on the step's stream
    torch.cuda.synchronize()
    assert len(got) == len(batches) and all(_same(a, b) for a, b in zip(got, batches))


@cuda
def test_random_crop_on_the_device_cuts_what_it_cuts_on_the_cpu():
    x = torch.randn(6, 3, 50)
    torch.manual_seed(3)
    on_cpu = random_crop(x, 20)
    torch.manual_seed(3)
    on_gpu = random_crop(x.cuda(), 20)
    assert torch.equal(on_cpu, on_gpu.cpu())
