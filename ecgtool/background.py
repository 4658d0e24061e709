"""Work done in a thread ahead of its consumer: the loader's batch assembly and the prefetch to a GPU.

:func:`background` runs ``work(item)`` over an iterable in one thread, up to ``depth`` results ahead, and
yields them in order. NumPy's copies, Blosc's decoding and CUDA copies release the GIL, so the thread's work
overlaps the consumer's training step. An exception in the thread is raised in the consumer; a consumer that
stops early (an error, a pre-emption, ``break``) stops the thread and closes the iterable in the thread that
ran it, so a generator holding threads or buffers of its own is finished too.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator


def background(items: Iterable, work: Callable | None = None, depth: int = 2, setup: Callable[[], None] | None = None,
               name: str = "ecgtool-background") -> Iterator:
    """``work(item)`` (default: the item itself) for each item, computed in a thread up to ``depth`` ahead.
    ``setup`` runs first in that thread (per-thread state, such as the current CUDA device)."""
    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    end = object()
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():  # a consumer that left must not leave this thread blocked
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run():
        it = iter(items)
        try:
            if setup is not None:
                setup()
            for item in it:
                if not put((item if work is None else work(item),)):
                    return
            put(end)
        except BaseException as e:  # re-raised in the consumer
            put(e)
        finally:
            close(it)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not end:
            if isinstance(item, BaseException):
                raise item
            yield item[0]
    finally:
        stop.set()
        thread.join()


def close(it) -> None:
    """Close ``it`` if it is a generator (or has ``close``)."""
    method = getattr(it, "close", None)
    if method is not None:
        method()
