"""How the process allocates and hands back memory during large loads.

A load parses pages into Arrow tables in reader threads, frees them in the writing thread, and
then runs the warehouse swap. With the allocators' defaults, memory freed that way stays with
the process: measured on bench/bc_throughput.py (1M G/L entries), these settings take the
step's peak from ~480 to ~440 MB and the resident memory before the swap from ~330 to ~260 MB.
"""

from __future__ import annotations

import ctypes
import gc
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

_M_MMAP_THRESHOLD = -3  # mallopt parameter, <malloc.h>
_LARGE_BLOCK = 4 << 20


@cache
def _libc(name: str):
    """A glibc function, or None on other C libraries (macOS, musl), where these settings do not apply.

    `CDLL(None)` is the process's own symbols, libc among them: nothing is searched or loaded.
    """
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def configure_process_memory() -> None:
    """Allocator settings for the process; run once, before the first page is read. Environment variables win.

    - Arrow uses the system allocator: its bundled one (mimalloc) keeps memory per thread.
    - glibc serves blocks of 4 MB and more (page bodies) straight from the OS and returns them
      when freed. By default it raises that threshold to the largest block freed so far, after
      which every page body lands in, and fragments, the heap of the thread that read it.
    """
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # read at Arrow's first allocation
    mallopt = _libc("mallopt")
    if mallopt is not None and "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt(_M_MMAP_THRESHOLD, _LARGE_BLOCK)


def release_free_memory() -> None:
    """Return freed-but-kept heap pages to the OS (as Dask's workers do), e.g. before a warehouse swap."""
    # Young garbage in reference cycles first, so its pages are free to hand back. Not a full collection: in
    # a loaded Dagster process that takes ~0.1 s holding the GIL, stalling the threads reading the next pages.
    gc.collect(1)
    trim = _libc("malloc_trim")
    if trim is not None:
        trim(0)


_paused = 0
_paused_lock = threading.Lock()
_was_enabled = False


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while building, recording and checking a large plan.

    A 10,000-line plan is a few hundred thousand new objects, none of them in reference cycles
    (reference counting frees them). Allocating them triggers full collections, and a full
    collection walks Dagster's whole import graph: measured on bench/fo_journal.py, two of them
    cost ~0.2 s of a ~2 s post. Nests and works across threads: collection resumes when the
    last pause ends, and only if it was on before the first began.
    """
    global _paused, _was_enabled
    with _paused_lock:
        if _paused == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _paused_lock:
            _paused -= 1
            if _paused == 0 and _was_enabled:
                gc.enable()
