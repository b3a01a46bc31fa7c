"""Fetch the next page while the current one is written, so network and writing overlap."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


def prefetch(source: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Yield from `source`, which runs in a thread at most `depth` items ahead (memory stays bounded)."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_DONE)
        except BaseException as exc:  # re-raised in the consumer, with its traceback
            buffer.put(exc)

    worker = threading.Thread(target=produce, daemon=True, name="prefetch")
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
