"""Work on many records in worker processes, its results handed back in the records' order.

``prep`` (a dataset's records → store rows) and ``predict`` (recordings → model inputs) spend their time
reading and preprocessing records one by one: wfdb's header parsing and scipy's filters hold the GIL, so
threads would not run them in parallel. Processes are started with ``spawn``, as a parent that has
imported torch or started threads cannot fork safely, and receive the task once, at start-up (a reader and
its label tables are not pickled per record). Records go out in batches (amortising the inter-process
overhead) with a bounded number in flight, so memory holds a few batches, never the dataset.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Callable, Iterator, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

BATCH = 16  # items per task sent to a worker
IN_FLIGHT = 4  # batches in flight per worker
# Threads or processes beyond a few per CPU only contend for it, and a count typed a few digits too long was a
# failure far from its cause (100,000 torch threads: a MemoryError blamed on the training store; 100,000 --jobs:
# a process per batch of recordings). Counts above PER_CPU x the machine's CPUs are refused: a run that wants
# speed stays near 1x, and oversubscribing I/O-bound reads pays off well below 4x.
PER_CPU = 4

_task: list = []  # in a worker: the task it was started with


def default_workers() -> int:
    """Worker processes when the user gives none: one per CPU, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def max_parallel() -> int:
    """The most threads or processes a count option takes on this machine (``PER_CPU`` per CPU)."""
    return PER_CPU * (os.cpu_count() or 1)


def check_parallel(value: int, parameter: str, name: str, what: str) -> None:
    """Refuse a count of ``what`` (threads, processes) above :func:`max_parallel`, as the ``ConfigError`` of
    ``parameter`` (called ``name`` in the message)."""
    from ecgtool.errors import ConfigError

    if value > max_parallel():
        raise ConfigError(f"{name} {value} asks for more {what} than {PER_CPU} per CPU ({max_parallel()} on this "
                          f"machine's {os.cpu_count() or 1} CPUs)", parameter)


def _start(task: Callable) -> None:
    _task[:] = [task]


def _run(items: list) -> list:
    return [_task[0](item) for item in items]


def ordered_map(task: Callable[[T], R], items: Sequence[T], workers: int, batch: int = BATCH) -> Iterator[R]:
    """``task(item)`` for every item, yielded in the items' order, computed in ``workers`` processes (in this
    one when ``workers`` ≤ 1 or the items fill one batch). ``task`` must be picklable (a module-level function,
    or a ``functools.partial`` of one) and should return its errors rather than raise them: an exception
    raised in a worker ends the whole map."""
    batches = [items[i : i + batch] for i in range(0, len(items), batch)]
    if workers <= 1 or len(batches) <= 1:
        for part in batches:
            yield from (task(item) for item in part)
        return
    with ProcessPoolExecutor(min(workers, len(batches)), mp_context=get_context("spawn"), initializer=_start,
                             initargs=(task,)) as pool:
        pending: deque = deque()
        todo = iter(batches)
        for part in todo:
            pending.append(pool.submit(_run, part))
            if len(pending) >= IN_FLIGHT * workers:
                break
        while pending:
            done = pending.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append(pool.submit(_run, nxt))
            yield from done
