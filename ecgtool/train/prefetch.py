"""Training batches on the device before the step asks for them, and the time the step waited for them.

On CUDA, :func:`prefetch` runs the loader in a background thread ``depth`` batches ahead: the thread takes
the next batch (pinned host tensors, ``ChunkLoader(pin_memory=True)``) and starts its host→device copy on a
side stream while the current step runs on the default stream. The consumer makes its stream wait for that
copy (an event), then marks the tensors as used on its stream (``record_stream``), so the caching allocator
does not give their memory back to the side stream while a step still reads them. This is the pattern of
NVIDIA Apex's ``data_prefetcher`` (examples/imagenet/main_amp.py) and of PyTorch's CUDA-streams note
(docs: "CUDA semantics", section "CUDA streams", on ``record_stream``), with the loader's own host work in
the thread too, so that it overlaps the step instead of preceding it. On the CPU there is nothing to copy:
the batches pass through unchanged, in the caller's thread.

:class:`DataWait` measures what the brief of a fast loop is about: the share of an epoch's wall time the
step spent waiting for its batch. The training loop synchronises the device every step (it reads the
step's loss), so a wait for the batch is time the GPU sits idle; on CUDA the wait includes the copy's
completion, and the epoch's time ends with one synchronise.
"""

from __future__ import annotations

import time
from typing import Iterable, Iterator

import torch

from ecgtool.background import background, close


def _tensors(batch):
    """The tensors of a loader batch ``(x, y, rows)``: ``x`` may be a tuple of inputs."""
    x, y = batch[0], batch[1]
    return (*(x if isinstance(x, tuple) else (x,)), *(() if y is None else (y,)))


def to_device(batch, device: torch.device):
    """``(x, y, rows)`` with ``x`` (a tensor or a tuple of them) and ``y`` (None for unlabelled recordings) on
    ``device``; non-blocking from pinned memory."""
    x, y, rows = batch

    def move(t: torch.Tensor) -> torch.Tensor:
        return t.to(device, non_blocking=True)

    return (tuple(move(t) for t in x) if isinstance(x, tuple) else move(x)), None if y is None else move(y), rows


def prefetch(batches: Iterable, device: torch.device, depth: int = 2) -> Iterator:
    """The loader's batches on ``device``, in the loader's order: on CUDA copied ``depth`` batches ahead by a
    background thread on a side stream; elsewhere moved as they are asked for (on the CPU: unchanged).
    Closing the generator stops the thread and closes ``batches``."""
    if device.type != "cuda":
        it = iter(batches)
        try:
            for batch in it:
                yield to_device(batch, device)
        finally:
            close(it)
        return
    stream = torch.cuda.Stream(device)

    def copy(batch):
        with torch.cuda.stream(stream):
            moved = to_device(batch, device)
            done = torch.cuda.Event()
            done.record(stream)
        return moved, done

    ahead = background(batches, copy, depth, setup=lambda: torch.cuda.set_device(device),  # per thread
                       name="ecgtool-prefetch")
    try:
        for moved, done in ahead:
            done.synchronize()  # the copy's completion is part of the wait for the batch (the GPU would idle for it)
            current = torch.cuda.current_stream(device)
            current.wait_event(done)
            for t in _tensors(moved):
                t.record_stream(current)  # allocated on the side stream, read on this one: kept until this stream is done
            yield moved
    finally:
        ahead.close()


class DataWait:
    """Times an epoch: wall time from :meth:`start` to :meth:`stop` (after a device synchronise) and the
    part of it spent in the loader's ``next`` (:meth:`timed`)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.wait = 0.0
        self.elapsed = 0.0
        self._t0 = 0.0

    def start(self) -> None:
        self.wait, self.elapsed = 0.0, 0.0
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # the queued work belongs to this epoch's time
        self.elapsed = time.perf_counter() - self._t0

    def timed(self, batches: Iterable) -> Iterator:
        """``batches``, adding the time each ``next`` takes to :attr:`wait`; closing this closes ``batches``."""
        it = iter(batches)
        try:
            while True:
                t = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    self.wait += time.perf_counter() - t
                yield item
        finally:
            close(it)
