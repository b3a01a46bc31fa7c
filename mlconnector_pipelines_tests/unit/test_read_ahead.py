"""core.prefetch.read_ahead: several page streams read in threads, merged for one writer."""

import threading

import pytest

from mlconnector_pipelines.core.prefetch import read_ahead


class Source:
    """A page stream that records whether it was closed."""

    def __init__(self, items, barrier=None, fail_after=None):
        self.items, self.barrier, self.fail_after = items, barrier, fail_after
        self.closed = False
        self.started = threading.Event()

    def __iter__(self):
        return self._pages()

    def _pages(self):
        try:
            self.started.set()
            for n, item in enumerate(self.items):
                if self.barrier is not None and n == 1:
                    self.barrier.wait(timeout=5)  # both sources must be mid-stream at once
                if self.fail_after is not None and n == self.fail_after:
                    raise RuntimeError(f"source broke at item {n}")
                yield item
        finally:
            self.closed = True


def test_every_item_arrives_in_its_sources_order_then_an_end_marker():
    sources = [iter(Source(["a1", "a2", "a3"])), iter(Source(["b1"])), iter(Source([]))]
    seen = list(read_ahead(sources, workers=2))
    assert [item for index, item in seen if index == 0] == ["a1", "a2", "a3", None]
    assert [item for index, item in seen if index == 1] == ["b1", None]
    assert [item for index, item in seen if index == 2] == [None]


def test_two_workers_read_two_sources_at_the_same_time():
    barrier = threading.Barrier(2)
    sources = [iter(Source(["a1", "a2"], barrier)), iter(Source(["b1", "b2"], barrier))]
    seen = list(read_ahead(sources, workers=2))
    assert not barrier.broken  # each source waited mid-stream for the other: they ran concurrently
    assert len(seen) == 6


def test_one_worker_reads_sources_one_after_another():
    first, second = Source(["a1", "a2"]), Source(["b1"])
    seen = list(read_ahead([iter(first), iter(second)], workers=1))
    assert seen == [(0, "a1"), (0, "a2"), (0, None), (1, "b1"), (1, None)]


def test_an_error_in_one_source_is_raised_and_every_source_is_closed():
    broken, healthy = Source(["a1", "a2", "a3"], fail_after=1), Source([f"b{n}" for n in range(1000)])
    with pytest.raises(RuntimeError, match="source broke at item 1"):
        for _ in read_ahead([iter(broken), iter(healthy)], workers=2):
            pass
    assert broken.closed and (healthy.closed or not healthy.started.is_set())


def test_leaving_early_closes_the_sources():
    source = Source([f"a{n}" for n in range(1000)])
    for _ in read_ahead([iter(source)], workers=1):
        break
    assert source.closed
