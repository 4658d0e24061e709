"""The C heap of a long-running process: what glibc keeps after Python has let go.

Each batch a loader forms is a fresh multi-MB array, and so are a model's activations and the bootstrap's
blocks: glibc serves such sizes from its heaps once it has freed one (its mmap threshold adapts upwards) and
keeps what they free, so a process streaming a large store grew with the store while Python held nothing
more (eval --bootstrap 0: 589 MB at 8,000 records, 740–810 MB at 32,000). Handing the free memory back now
and then keeps it flat (594 → 606 MB); doing it after every streamed window cost the bare loader 10% (the
next batches fault their pages in again), after every fourth nothing measurable (docs/scaling.md).
"""

from __future__ import annotations

import functools


def release_free_memory() -> None:
    """Hand the C heap's free memory back to the system (glibc's ``malloc_trim``; elsewhere nothing)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim this way
        return None
