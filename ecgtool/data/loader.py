"""Batches from an ECG store, read a whole chunk at a time.

Reading one record per call (the way a per-index ``Dataset`` does) decodes a
compressed chunk for every record; this loader decodes each chunk once per
epoch. Two modes, chosen automatically from the store's size:

* in memory — the selected records are read once, chunk by chunk, and every
  epoch shuffles indices into that array;
* streaming — the chunk order is shuffled, a window of chunks is decoded and
  shuffled within the window, so memory stays at two windows whatever the store's size.

In memory mode the rows are dequantised once, as they are loaded, so that every
later epoch only gathers float32 rows (the speed of indexing an array in RAM).
In streaming mode, where each row is used once per epoch anyway, a window holds
its rows as the store keeps them (int16 with their scale: half the bytes) and
each batch is gathered and dequantised row by row straight into its own float32
tensor (pinned, for a GPU). A model input with a data-side view (R peaks) is
computed once per held row, as the view is costly. Two windows' buffers are
allocated once and reused epoch after epoch: while the batches of one window are
formed, the decoding threads (also kept from epoch to epoch) fill the other with
the next window. On a GPU the whole loader runs ahead of the training step in the
prefetch thread of ``train/prefetch.py``.

Both are deterministic for a (seed, epoch) pair, which is what ``--resume``
relies on; an epoch can start at any batch (a run resumed mid-epoch).

Under data-parallel training every rank forms the same global batches of
``batch_size × world_size`` records and keeps its own contiguous slice, so N
ranks see exactly the batches one process with the global batch would (the
equivalence DDP needs to reproduce a single-process run). Each rank decodes
what it reads; in streaming mode that is every chunk of each window.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

import numpy as np

from ecgtool.background import background
from ecgtool.data.choices import LOADER_MODES
from ecgtool.data.inputs import InputSpec
from ecgtool.data.quantise import dequantise, dequantise_rows
from ecgtool.data.store import EcgStore
from ecgtool.heap import release_free_memory

FALLBACK_MEMORY_BUDGET = 4 << 30  # where the available memory cannot be read


def auto_memory_budget(share: int = 1) -> int:
    """Bytes of decoded signals "auto" mode may hold in RAM: half the memory available now
    (Linux ``MemAvailable``), divided among ``share`` processes on this node."""
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        available = 2 * FALLBACK_MEMORY_BUDGET
    return available // 2 // max(1, share)


class ChunkLoader:
    """Yields ``(x, y, indices)``: float32 tensors ``[B, leads, samples]`` and ``[B, K]`` plus store rows.

    ``spec`` may be a tuple of input specs: then ``x`` is a tuple of one tensor per spec, the same records
    read through each (a teacher's input and its student's, in ``distill``), each chunk decoded once."""

    def __init__(
        self,
        store: EcgStore,
        batch_size: int,
        *,
        spec: InputSpec | tuple[InputSpec, ...] | None = None,
        indices: np.ndarray | None = None,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = False,
        mode: str = "auto",
        memory_budget: int | None = None,
        window_chunks: int = 8,
        pin_memory: bool = False,
        workers: int = 2,
        rank: int = 0,
        world_size: int = 1,
        prefetch: int = 0,
    ):
        self.store = store
        self.batch_size = batch_size
        self.specs = tuple(spec) if isinstance(spec, tuple) else (spec or InputSpec.of_store(store),)
        self.spec = self.specs[0]
        self.transforms = [s.reader(store) for s in self.specs]  # raw rows -> each model input
        self.indices = np.arange(len(store)) if indices is None else np.sort(np.asarray(indices, dtype=np.int64))
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.window_chunks = window_chunks
        self.pin_memory = pin_memory
        self.workers = max(1, workers)
        self.rank, self.world_size = rank, world_size
        self.global_batch = batch_size * world_size
        # Batches formed this many ahead in a thread of their own; 0: as they are asked for. A thread pays off
        # only beside a consumer that releases the GIL for long (a GPU step): handing each batch over costs up
        # to the interpreter's switch interval, and on a CPU the step needs the same cores. Training on a GPU
        # runs the whole loader in train/prefetch.py's thread instead, which also copies to the device.
        self.prefetch = prefetch
        self.epoch = 0
        self.start_batch = 0
        if mode not in LOADER_MODES:
            raise ValueError(f"mode must be one of {', '.join(LOADER_MODES)}, not {mode!r}")
        # What a row held in memory costs: its float32 row once for the specs formed per batch (memory mode
        # dequantises as it loads), a float32 input per spec with a data-side view.
        self.scale = getattr(store, "scale", None)  # an int16 store's; None: the rows read as float32
        self.per_batch = [t.view.get("name", "raw") == "raw" for t in self.transforms]
        self.n_leads, self.n_samples = store.signals.shape[1:]
        row_bytes = (self.n_leads * self.n_samples * 4 if any(self.per_batch) else 0) + sum(
            4 * s.channels * self.n_samples for s, fused in zip(self.specs, self.per_batch) if not fused)
        if mode == "auto":
            budget = auto_memory_budget() if memory_budget is None else memory_budget
            mode = "memory" if row_bytes * len(self.indices) <= budget else "stream"
        self.mode = mode
        self._held: _Held | None = None  # memory mode: the selected rows, kept from epoch to epoch
        self._windows: tuple[_Held, _Held] | None = None  # stream mode: two windows' buffers, reused from epoch to epoch
        self._threads: ThreadPoolExecutor | None = None  # the decoding threads, started at the first read
        self._scratch = threading.local()  # per decoding thread: one whole-chunk buffer, reused

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """The epoch whose order to produce, from its ``start_batch``-th batch on."""
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        """Batches per epoch (global batches: every rank yields this many)."""
        n = len(self.indices)
        return n // self.global_batch if self.drop_last else -(-n // self.global_batch)

    def rank_slice(self, n: int) -> slice:
        """This rank's part of a global batch of ``n`` records."""
        if self.world_size == 1:
            return slice(0, n)  # without the linspace, 5 % of an in-memory epoch at 12 × 1000
        bounds = np.linspace(0, n, self.world_size + 1).round().astype(int)
        return slice(bounds[self.rank], bounds[self.rank + 1])

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])

    # -- reading ---------------------------------------------------------------------------
    def _selected_chunks(self) -> list[tuple[int, int, np.ndarray]]:
        """``(start, stop, rows)`` of every chunk holding a selected record."""
        out = []
        for start, stop in self.store.chunk_bounds():
            rows = self.indices[(self.indices >= start) & (self.indices < stop)]
            if len(rows):
                out.append((start, stop, rows))
        return out

    def _new_held(self, capacity: int, scaled: bool, window: bool) -> _Held:
        """Buffers for ``capacity`` rows: int16 with their scale (``scaled``) or float32; a stream ``window`` also
        keeps the store row of each position (memory mode's positions are ``self.indices``)."""
        return _Held(capacity, (self.n_leads, self.n_samples), scaled,
                     [None if fused else (s.channels, self.n_samples) for s, fused in zip(self.specs, self.per_batch)],
                     keep_stored=any(self.per_batch), keep_rows=window)

    def _pool(self) -> ThreadPoolExecutor:
        """The decoding threads, kept from epoch to epoch with their reusable buffers."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="ecgtool-decode")
        return self._threads

    def _fill(self, held: _Held, offset: int, chunks: list) -> list[Future]:
        """Start decoding ``chunks`` into ``held`` from row ``offset`` on, in the pool's threads: one future per
        chunk, whose ``result()`` raises what decoding it raised."""
        offsets = offset + np.cumsum([0] + [len(rows) for _, _, rows in chunks])
        scratch = self._scratch

        def fill(i: int) -> None:
            start, stop, rows = chunks[i]
            at = slice(int(offsets[i]), int(offsets[i + 1]))
            if self.scale is not None:
                c = self.store.chunk_records
                if held.can_decode_into(at.start, c) and len(rows) == stop - start:
                    # A whole chunk decodes straight into its rows of the window (the last chunk's unused rows
                    # land in the window's slack): one copy fewer.
                    self.store.read_stored(start, stop, out=held.stored[at.start : at.start + c])
                    held.scale[at] = self.scale[start:stop]
                    return
                buffer = getattr(scratch, "buffer", None)
                if buffer is None:
                    buffer = scratch.buffer = np.empty(self.store.signals.chunks, np.int16)
                block = self.store.read_stored(start, stop, out=buffer)
                scale = self.scale[rows]
            else:
                block, scale = self.store.read_chunk(start, stop), None
            block = block if len(rows) == stop - start else block[rows - start]
            held.put(at, block, scale, self.transforms)

        return [self._pool().submit(fill, i) for i in range(len(chunks))]

    def _batch(self, held: _Held, pos: np.ndarray) -> list:
        """The inputs of the records at ``pos`` of ``held``, one float32 tensor per spec (pinned if asked)."""
        import torch

        out = []
        for i, transform in enumerate(self.transforms):
            x = torch.from_numpy(held.gather(i, pos, transform))
            if self.pin_memory:
                x = x.pin_memory()
            out.append(x)
        return out

    # -- the two modes --------------------------------------------------------------------
    def _memory_batches(self) -> Iterator[tuple[list, np.ndarray]]:
        if self._held is None:
            held = self._new_held(len(self.indices), scaled=False, window=False)
            _finish(self._fill(held, 0, self._selected_chunks()))
            self._held = held
        held = self._held
        order = self._rng().permutation(len(self.indices)) if self.shuffle else np.arange(len(self.indices))
        g = self.global_batch
        for b in range(self.start_batch, len(self)):
            batch = order[b * g : (b + 1) * g]
            pos = batch[self.rank_slice(len(batch))]  # in batch order, so a rank's records hold the same places as in one process
            yield self._batch(held, pos), self.indices[pos]

    def _stream_batches(self) -> Iterator[tuple[list, np.ndarray]]:
        """Windows of ``window_chunks`` chunks in the epoch's chunk order, each shuffled within itself; the
        records a window leaves over (fewer than a global batch) open the next one, as drawn."""
        chunks = self._selected_chunks()
        chunk_order = self._rng().permutation(len(chunks)) if self.shuffle else np.arange(len(chunks))
        rng = self._rng()  # a generator of its own for the windows, as the orders of earlier versions had
        # Two windows: while the batches of one are formed, the pool decodes the next into the other. Their
        # buffers outlive the epoch (allocating them anew cost the kernel's zeroing of tens of MB of fresh pages,
        # a third of a 12 × 1000 epoch); they are taken while an epoch runs, so a second iterator alive at the
        # same time gets buffers of its own.
        windows, self._windows = self._windows or (self._new_window(chunks), self._new_window(chunks)), None
        try:
            yield from self._window_batches(windows, [[chunks[c] for c in sorted(chunk_order[w : w + self.window_chunks])]
                                                      for w in range(0, len(chunk_order), self.window_chunks)], rng)
        finally:
            self._windows = windows

    def _new_window(self, chunks: list) -> _Held:
        """Buffers for the largest window any epoch's chunk order can form, plus the records the window before
        leaves over (fewer than a global batch) and room for a last, partial chunk decoded whole."""
        largest = sum(sorted((len(rows) for _, _, rows in chunks), reverse=True)[: self.window_chunks])
        slack = self.store.chunk_records if self.scale is not None else 0
        return self._new_held(self.global_batch - 1 + largest + slack, scaled=self.scale is not None, window=True)

    def _window_batches(self, buffers: tuple[_Held, _Held], windows: list, rng) -> Iterator[tuple[list, np.ndarray]]:
        """The epoch's batches, window after window; the next window decodes while this one's batches are formed.
        A window's records are shuffled among themselves; those it leaves over (fewer than a global batch) are
        copied to the front of the next window's buffer, ahead of its rows, and open its batches in drawn order."""
        g, done = self.global_batch, 0  # global batches formed so far; the first start_batch are skipped
        held, following = buffers
        carry = 0  # the first ``carry`` rows of ``held`` are the last window's left-over records, in drawn order
        pending = self._fill(held, 0, windows[0]) if windows else []
        try:
            for w, window in enumerate(windows):
                _finish(pending)
                added = sum(len(rows) for _, _, rows in window)
                held.rows[carry : carry + added] = np.concatenate([rows for _, _, rows in window])
                order = np.arange(carry + added)
                if self.shuffle:
                    order[carry:] = carry + rng.permutation(added)
                n_full = len(order) // g * g
                left = order[n_full:]
                pending = self._fill(following, len(left), windows[w + 1]) if w + 1 < len(windows) else []
                for b in range(0, n_full, g):
                    if done >= self.start_batch:
                        pos = order[b : b + g][self.rank_slice(g)]
                        yield self._batch(held, pos), held.rows[pos].copy()
                    done += 1
                following.take_front(held, left)
                held, following, carry = following, held, len(left)
                if w % 4 == 3:
                    release_free_memory()  # every fourth window: often enough to stay flat, seldom enough to cost nothing
        finally:
            _finish(pending, quiet=True)  # an epoch left early: no thread may still write into buffers handed back
        if carry and not self.drop_last and done >= self.start_batch:
            pos = np.arange(carry)[self.rank_slice(carry)]
            yield self._batch(held, pos), held.rows[pos].copy()

    def __iter__(self):
        import torch

        batches = self._memory_batches() if self.mode == "memory" else self._stream_batches()
        labels = self.store.labels
        if self.prefetch:
            batches = background(batches, depth=self.prefetch, name="ecgtool-loader")
        for x, rows in batches:
            yt = torch.from_numpy(labels[rows].astype(np.float32))
            if self.pin_memory:
                yt = yt.pin_memory()
            yield (x[0] if len(x) == 1 else tuple(x)), yt, rows


class _Held:
    """Rows held by the loader at positions ``[0, capacity)``: as stored (int16 with their scale, when
    ``scaled``; else float32, an int16 store's dequantised as they are put) for the inputs formed per batch,
    and the finished input of each spec with a data-side view; with ``keep_rows``, the store row of each position."""

    def __init__(self, capacity: int, row: tuple[int, int], scaled: bool, viewed: list, keep_stored: bool, keep_rows: bool):
        self.stored = np.empty((capacity, *row), np.int16 if scaled else np.float32) if keep_stored else None
        self.scale = np.empty((capacity, row[0]), np.float32) if scaled and keep_stored else None
        self.viewed = [None if shape is None else np.empty((capacity, *shape), np.float32) for shape in viewed]
        self.rows = np.empty(capacity, np.int64) if keep_rows else None

    def can_decode_into(self, start: int, rows: int) -> bool:
        """Whether a whole chunk of ``rows`` int16 rows may be decoded into the stored rows from ``start`` on."""
        return self.scale is not None and not any(v is not None for v in self.viewed) and start + rows <= len(self.stored)

    def put(self, at: slice, block: np.ndarray, scale: np.ndarray | None, transforms) -> None:
        """Hold ``block`` (a chunk's rows as stored; ``scale`` theirs, or None for float32) at positions ``at``."""
        if self.stored is not None:
            if self.scale is not None:
                self.stored[at] = block
                self.scale[at] = scale
            else:
                dequantise(block, scale, out=self.stored[at])
        if any(v is not None for v in self.viewed):
            x = dequantise(block, scale)
            for array, transform in zip(self.viewed, transforms):
                if array is not None:
                    array[at] = transform(x)

    def gather(self, i: int, pos: np.ndarray, transform) -> np.ndarray:
        """Spec ``i``'s input for the held records at ``pos`` (a new array: fancy indexing gathers rows faster
        than ``np.take`` into a given buffer)."""
        if self.viewed[i] is not None:
            return self.viewed[i][pos]
        leads = None if transform.all_leads else np.asarray(transform.lead_index)
        if self.scale is not None:
            rows = dequantise_rows(self.stored, self.scale, pos, leads)
        else:
            rows = self.stored[pos] if leads is None else self.stored[pos[:, None], leads]
        return transform.finish(rows, in_place=True)

    def take_front(self, other: _Held, pos: np.ndarray) -> None:
        """Put ``other``'s records at ``pos`` (in that order) at positions ``[0, len(pos))``."""
        for mine, theirs in zip((self.stored, self.scale, self.rows, *self.viewed),
                                (other.stored, other.scale, other.rows, *other.viewed)):
            if mine is not None and len(pos):
                mine[: len(pos)] = theirs[pos]


def _finish(futures: list[Future], quiet: bool = False) -> None:
    """Wait for every future; raise the first one's error unless ``quiet`` (all are waited for either way)."""
    error = None
    for f in futures:
        try:
            f.result()
        except BaseException as e:  # noqa: BLE001 - re-raised below once every thread has stopped writing
            error = error or e
    if error is not None and not quiet:
        raise error
