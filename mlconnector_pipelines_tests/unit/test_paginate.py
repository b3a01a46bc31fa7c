"""Slicing a window for a server with $top/$skip and no documented order: every record once, whatever it does."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from mlconnector_pipelines.core.paginate import SlicedWindowPages, at_offset, link_offset, slices

T0 = datetime(2026, 3, 2, tzinfo=UTC)


class Server:
    """Records (key → modified) answered in a shuffled order, as a server that promises none might."""

    def __init__(self, records: dict[str, datetime], seed: int = 1):
        self.records = dict(records)
        self.rng = random.Random(seed)
        self.fetches: list[tuple] = []
        self.on_fetch = lambda n: None

    def scan(self):
        return [(moment, key) for key, moment in self.records.items()]

    def fetch(self, lower, upper):
        self.fetches.append((lower, upper))
        self.on_fetch(len(self.fetches))
        found = [
            {"key": k, "modified": m.isoformat()}
            for k, m in self.records.items()
            if (lower is None or m >= lower) and (upper is None or m < upper)
        ]
        self.rng.shuffle(found)
        return pa.Table.from_pylist(found, schema=pa.schema([("key", pa.string()), ("modified", pa.string())]))


def pages(server: Server, size: int) -> list[list[dict]]:
    return [
        page.to_pylist()
        for page in SlicedWindowPages(
            scan=server.scan, ask=server.fetch, read=lambda page: page, key="key", modified="modified", page_size=size
        )
    ]


def test_slices_hold_at_most_a_page_and_never_split_one_moment():
    stamps = sorted([(T0 + timedelta(seconds=s // 3), f"k{s:03d}") for s in range(30)])  # 3 records per second
    cut = slices(stamps, 7)
    assert [end - start for start, end in cut] == [6, 6, 6, 6, 6]  # 7 would split a second's three
    assert all(stamps[end - 1][0] != stamps[end][0] for _, end in cut[:-1])
    big = sorted([(T0, f"k{n}") for n in range(10)] + [(T0 + timedelta(seconds=1), "z")])
    assert slices(big, 4) == [(0, 10), (10, 11)]  # one moment of ten: read whole, not split


def test_every_record_once_in_shuffled_pages_with_ties_on_slice_boundaries():
    records = {f"k{n:04d}": T0 + timedelta(milliseconds=(n // 5) * 250) for n in range(500)}  # ties of five
    server = Server(records)
    read = [r["key"] for page in pages(server, 40) for r in page]
    assert sorted(read) == sorted(records) and len(read) == len(set(read))
    assert all(len(page) <= 40 for page in pages(Server(records), 40))
    assert server.fetches[0][0] is None and server.fetches[-1][1] is None  # the window's own bounds at its ends


def test_a_record_changed_between_two_slices_comes_back_in_its_newer_version_and_none_is_lost():
    records = {f"k{n:03d}": T0 + timedelta(seconds=n) for n in range(100)}
    server = Server(records)

    def change(fetch_number: int) -> None:
        if fetch_number == 2:  # after the first slice was read, k005 (read) and k050 (not yet) change
            server.records["k005"] = T0 + timedelta(seconds=95, milliseconds=500)
            server.records["k050"] = T0 + timedelta(seconds=99, milliseconds=500)
            del server.records["k060"]  # and k060 leaves the window (deleted, or moved past its end)

    server.on_fetch = change
    read = [(r["key"], r["modified"]) for page in pages(server, 20) for r in page]
    keys = [k for k, _ in read]
    assert set(keys) == set(records) - {"k060"}
    assert keys.count("k005") == 2  # its old version, then its new one: current state takes the newer
    assert [m for k, m in read if k == "k005"][-1] == (T0 + timedelta(seconds=95, milliseconds=500)).isoformat()
    assert keys.count("k050") == 1


def test_an_empty_scan_still_reads_the_window_once():
    server = Server({})
    server.on_fetch = lambda n: server.records.update({"late": T0})  # a record commits between scan and read
    assert [[r["key"] for r in page] for page in pages(server, 10)] == [["late"]]


def test_the_next_slice_is_asked_for_while_this_one_is_read_one_request_at_a_time():
    import threading

    records = {f"k{n:03d}": T0 + timedelta(seconds=n) for n in range(50)}
    server = Server(records)
    asked = [threading.Event() for _ in range(6)]
    in_flight, most_in_flight = [0], [0]
    lock = threading.Lock()

    def ask(lower, upper):
        with lock:
            in_flight[0] += 1
            most_in_flight[0] = max(most_in_flight[0], in_flight[0])
        try:
            return server.fetch(lower, upper)
        finally:
            with lock:
                in_flight[0] -= 1
            asked[len(server.fetches) - 1].set()

    overlapped = []

    def read(page):
        n = len(overlapped)
        overlapped.append(n + 1 >= 5 or asked[n + 1].wait(2))  # the last slice has no next one
        return page

    read_keys = [
        r["key"]
        for page in SlicedWindowPages(
            scan=server.scan, ask=ask, read=read, key="key", modified="modified", page_size=10
        )
        for r in page.to_pylist()
    ]
    assert sorted(read_keys) == sorted(records)
    assert overlapped == [True] * 5 and most_in_flight[0] == 1


def test_a_failed_request_is_raised_and_leaving_early_waits_for_the_one_in_flight():
    records = {f"k{n:03d}": T0 + timedelta(seconds=n) for n in range(50)}
    server = Server(records)

    def failing(lower, upper):
        if len(server.fetches) == 2:
            raise RuntimeError("slice 3 failed")
        return server.fetch(lower, upper)

    read = []
    try:
        for page in SlicedWindowPages(
            scan=server.scan, ask=failing, read=lambda p: p, key="key", modified="modified", page_size=10
        ):
            read.append(page.num_rows)
    except RuntimeError as exc:
        assert str(exc) == "slice 3 failed"
    else:
        raise AssertionError("the failed request was not raised")
    assert read == [10, 10]

    pages = iter(
        SlicedWindowPages(
            scan=server.scan, ask=server.fetch, read=lambda p: p, key="key", modified="modified", page_size=10
        )
    )
    next(pages)
    pages.close()  # the consumer stops: the request already sent is waited for, nothing more is asked
    assert len(server.fetches) == 2 + 2


def test_a_next_link_at_an_offset_is_told_from_a_skip_token_and_moved_with_the_rest_of_it_as_written():
    encoded = "https://bc/api/v2.0/companies(1)/vendors?%24filter=a%20ge%201&%24skip=40&%24top=90"
    assert link_offset(encoded) == 40
    assert (
        at_offset(encoded, 36) == "https://bc/api/v2.0/companies(1)/vendors?%24filter=a%20ge%201&%24skip=36&%24top=90"
    )
    assert link_offset("vendors?$top=5&$skip=7") == 7
    assert at_offset("vendors?$skip=7", 0) == "vendors?$skip=0"
    assert link_offset("vendors?$skiptoken=eyJr&$skipcount=40") is None  # resumes after a key: nothing to move
    assert link_offset("vendors?aid=FIN&$skiptoken='10000'") is None
