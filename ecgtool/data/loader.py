"""Batches from an ECG store, read a whole chunk at a time.

Reading one record per call (the way a per-index ``Dataset`` does) decodes a
compressed chunk for every record; this loader decodes each chunk once per
epoch. Two modes, chosen automatically from the store's size:

* in memory — the selected records are read once, chunk by chunk, and every
  epoch shuffles indices into that array;
* streaming — the chunk order is shuffled, a window of chunks is decoded in a
  background thread and shuffled within the window, so memory stays at a few
  windows whatever the store's size.

Both are deterministic for a (seed, epoch) pair, which is what ``--resume``
relies on; an epoch can start at any batch (a run resumed mid-epoch).

Under data-parallel training every rank forms the same global batches of
``batch_size × world_size`` records and keeps its own contiguous slice, so N
ranks see exactly the batches one process with the global batch would (the
equivalence DDP needs to reproduce a single-process run). Each rank decodes
what it reads; in streaming mode that is every chunk of each window.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator

import numpy as np

from ecgtool.data.choices import LOADER_MODES
from ecgtool.data.store import EcgStore
from ecgtool.data.inputs import InputSpec

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
        self.epoch = 0
        self.start_batch = 0
        if mode not in LOADER_MODES:
            raise ValueError(f"mode must be one of {', '.join(LOADER_MODES)}, not {mode!r}")
        row_bytes = int(np.prod(store.signals.shape[1:])) * 4 * len(self.specs)
        if mode == "auto":
            budget = auto_memory_budget() if memory_budget is None else memory_budget
            mode = "memory" if row_bytes * len(self.indices) <= budget else "stream"
        self.mode = mode
        self._cache: list[np.ndarray] | None = None

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """The epoch whose order to produce, from its ``start_batch``-th batch on."""
        self.epoch, self.start_batch = epoch, start_batch

    def __len__(self) -> int:
        """Batches per epoch (global batches: every rank yields this many)."""
        n = len(self.indices)
        return n // self.global_batch if self.drop_last else -(-n // self.global_batch)

    def rank_slice(self, n: int) -> slice:
        """This rank's part of a global batch of ``n`` records."""
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

    def _decode(self, chunk: tuple[int, int, np.ndarray]) -> list[np.ndarray]:
        """The chunk's selected records as each spec's input."""
        start, stop, rows = chunk
        block = self.store.read_chunk(start, stop)
        if len(rows) < stop - start:  # a whole chunk needs no row selection (and no copy)
            block = block[rows - start]
        return [transform(block) for transform in self.transforms]

    def _decode_many(self, chunks: list) -> list[list[np.ndarray]]:
        """Decode chunks, in ``workers`` threads when there are several (Blosc releases the GIL)."""
        if self.workers == 1 or len(chunks) == 1:
            return [self._decode(c) for c in chunks]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(self._decode, chunks))

    # -- the two modes --------------------------------------------------------------------
    def _load_all(self) -> list[np.ndarray]:
        """The selected records, decoded once into one preallocated array per spec (peak memory: the arrays)."""
        if self._cache is None:
            chunks = self._selected_chunks()
            cache = [np.empty((len(self.indices), s.channels, self.store.n_samples), np.float32) for s in self.specs]
            offsets = np.cumsum([0] + [len(rows) for _, _, rows in chunks])
            from concurrent.futures import ThreadPoolExecutor

            def fill(i: int) -> None:
                for array, decoded in zip(cache, self._decode(chunks[i])):
                    array[offsets[i] : offsets[i + 1]] = decoded

            with ThreadPoolExecutor(self.workers) as pool:
                list(pool.map(fill, range(len(chunks))))
            self._cache = cache
        return self._cache

    def _memory_batches(self) -> Iterator[tuple[list[np.ndarray], np.ndarray]]:
        data = self._load_all()
        order = self._rng().permutation(len(self.indices)) if self.shuffle else np.arange(len(self.indices))
        g = self.global_batch
        for b in range(self.start_batch, len(self)):
            batch = order[b * g : (b + 1) * g]
            pos = batch[self.rank_slice(len(batch))]  # in batch order, so a rank's records hold the same places as in one process
            yield [d[pos] for d in data], self.indices[pos]

    def _windows(self) -> Iterator[tuple[list[list[np.ndarray]], np.ndarray]]:
        """Decoded (signals, rows) per window of chunks, in the epoch's chunk order."""
        chunks = self._selected_chunks()
        order = self._rng().permutation(len(chunks)) if self.shuffle else np.arange(len(chunks))
        for w in range(0, len(order), self.window_chunks):
            window = [chunks[c] for c in sorted(order[w : w + self.window_chunks])]
            yield self._decode_many(window), np.concatenate([rows for _, _, rows in window])

    def _stream_batches(self) -> Iterator[tuple[list[np.ndarray], np.ndarray]]:
        rng = self._rng()
        carry_x = [np.empty((0, s.channels, self.store.n_samples), np.float32) for s in self.specs]
        carry_rows = np.empty(0, np.int64)
        g, done = self.global_batch, 0  # global batches formed so far; the first start_batch are skipped
        for blocks, rows in _background(self._windows()):
            # One copy joins the carried-over records and the window; each batch is then gathered
            # once in the shuffled order (the carry first, as it was drawn earlier).
            x = [np.concatenate([carry, *(block[i] for block in blocks)]) for i, carry in enumerate(carry_x)]
            order = np.arange(len(x[0]))
            if self.shuffle:
                order[len(carry_rows):] = len(carry_rows) + rng.permutation(len(rows))
            rows = np.concatenate([carry_rows, rows])[order]
            n_full = len(rows) // g * g
            for b in range(0, n_full, g):
                if done >= self.start_batch:
                    mine = self.rank_slice(len(rows[b : b + g]))
                    yield [a[order[b : b + g][mine]] for a in x], rows[b : b + g][mine]
                done += 1
            carry_x, carry_rows = [a[order[n_full:]] for a in x], rows[n_full:]
        if len(carry_rows) and not self.drop_last and done >= self.start_batch:
            mine = self.rank_slice(len(carry_rows))
            yield [a[mine] for a in carry_x], carry_rows[mine]

    def __iter__(self):
        import torch

        batches = self._memory_batches() if self.mode == "memory" else self._stream_batches()
        labels = self.store.labels
        for x, rows in batches:
            xt = [torch.from_numpy(np.ascontiguousarray(a)) for a in x]
            yt = torch.from_numpy(labels[rows].astype(np.float32))
            if self.pin_memory:
                xt, yt = [a.pin_memory() for a in xt], yt.pin_memory()
            yield (xt[0] if len(xt) == 1 else tuple(xt)), yt, rows


def _background(it: Iterator, depth: int = 2) -> Iterator:
    """Run ``it`` in a thread, ``depth`` items ahead: decoding overlaps the training step."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():  # a consumer that stopped early must not leave this thread blocked
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in it:
                if not put(item):
                    return
            put(done)
        except BaseException as e:  # re-raised in the consumer
            put(e)

    t = threading.Thread(target=work, daemon=True)
    t.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
