"""Read several page streams ahead in threads while the caller writes, so network and writing overlap."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")
_END = object()


# One generator keeps the workers, the queue and the early-exit clean-up in view together; split, the
# protocol between them would be spread over several functions.
def read_ahead(sources: Sequence[Iterator[T]], workers: int = 1) -> Iterator[tuple[int, T | None]]:  # noqa: C901
    """Yield `(index, item)` from every source, then `(index, None)` when that source is done.

    Up to `workers` sources are read at once, each in its own thread and in its own order;
    items of different sources interleave. One item waits unconsumed at most, besides the one
    each worker is reading, so memory stays bounded. The first error from any source is raised
    here, with its traceback; leaving the loop early stops and closes every source.
    """
    buffer: queue.Queue = queue.Queue(maxsize=1)
    pending: queue.SimpleQueue = queue.SimpleQueue()
    for index in range(len(sources)):
        pending.put(index)
    stop = threading.Event()

    def offer(entry) -> bool:
        while not stop.is_set():
            try:
                buffer.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        while not stop.is_set():
            try:
                index = pending.get_nowait()
            except queue.Empty:
                return
            source = sources[index]
            try:
                for item in source:
                    if not offer((index, item)):
                        return
                if not offer((index, _END)):
                    return
            except BaseException as exc:  # re-raised in the consumer
                offer((index, exc))
                return
            finally:
                close = getattr(source, "close", None)
                if close is not None:
                    close()

    threads = [
        threading.Thread(target=work, daemon=True, name=f"read-ahead-{n}")
        for n in range(min(max(1, workers), len(sources)))
    ]
    for thread in threads:
        thread.start()
    remaining = len(sources)
    try:
        while remaining:
            index, item = buffer.get()
            if isinstance(item, BaseException):
                raise item
            if item is _END:
                remaining -= 1
                yield index, None
            else:
                yield index, item
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
