"""Paging, whatever the server offers: one protocol, one implementation per kind.

- `NextLinkPages`: the server links each page to the next (BC, F&O, Dataverse, SAP B1 v2).
- `OverlappingNextLinkPages`: the same for a list that may change while it is read (BC's windows and
  keys): a next link that resumes at an offset (`$skip=N`) is asked for a little earlier, and what was
  read already is dropped, so a record leaving the list before the offset cannot make one go unread.
- `KeysetPages`: the server pages by `$skip` over a list that may change while it is read; we
  ask for `key gt <last key read>` instead, ordered by the key (SAP B1, which sorts on request).
- `SlicedWindowPages`: the server offers `$top`/`$skip` and documents no ordering (Acumatica's
  contract API). A light read of every record's (modified, key) in the window cuts it into slices
  of at most a page each, at distinct modified moments; each slice is then read whole. No offset
  is ever used, so records changing or leaving the window between two requests cannot shift what
  is read; a record read twice (it changed between two slices) comes back only in its newer version.
- `DeltaLinkPages`: change tracking (Dataverse): pages of what changed since a delta link (or of
  everything, the first time), the last page carrying the delta link for next time.

A paginator is an iterable of pages; a page is whatever its `read` makes of a response (an Arrow
table, or a list of records).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urljoin

import httpx
import pyarrow as pa

from .http import ThrottledClient

T = TypeVar("T")
A = TypeVar("A")  # a request's answer, not yet read
T_co = TypeVar("T_co", covariant=True)


class Paginator(Protocol[T_co]):
    def __iter__(self) -> Iterator[T_co]: ...


@dataclass
class NextLinkPages(Generic[T]):
    """GET each page and yield what `read` makes of it, following the server's next link exactly as given.

    A relative link (OData allows one, e.g. `/data/X?$skiptoken=…` or `X?$skip=20`) is resolved against
    the URL of the page it came in, as RFC 3986 says, not appended to the client's base URL."""

    client: ThrottledClient
    url: str
    read: Callable[[httpx.Response], tuple[T, str | None]]
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None

    def __iter__(self) -> Iterator[T]:
        next_url: str | None = self.url
        next_params = self.params
        while next_url:
            response = self.client.request("GET", next_url, params=next_params, headers=self.headers)
            page, next_url = self.read(response)
            if next_url:
                next_url = urljoin(str(response.url), next_url)
            del response  # read; do not hold the body while the caller works on the page
            yield page
            next_params = None  # the next link already carries the query


# `$skip=N` in a next link's query (percent-encoded or not): the server resumes at an offset.
_OFFSET = re.compile(r"([?&](?:\$|%24)skip=)(\d+)", re.IGNORECASE)


def link_offset(link: str) -> int | None:
    """The offset a next link resumes at, if it resumes at one (`$skip=N`); None for a skip token."""
    found = _OFFSET.search(link)
    return int(found.group(2)) if found else None


def at_offset(link: str, offset: int) -> str:
    """The link with its `$skip` set to `offset`, the rest of it exactly as the server wrote it."""
    return _OFFSET.sub(lambda m: f"{m.group(1)}{offset}", link, count=1)


@dataclass
class OverlappingNextLinkPages:
    """Arrow pages of a list that may change while it is read, following the server's next links; yields
    (page, the URL it came from, against which links inside it resolve).

    OData lets a next link resume at an offset (`$skip=N`, as simple servers page). A record read on an
    earlier page that leaves the list meanwhile (it changed past the window, or was deleted) then makes
    the next page start one record late, and a record is never read. Such a link is asked for `overlap`
    records earlier (a tenth of a page, at least one), and the versions already read are dropped. The
    page must begin with a version already read: in the server's order nothing then lies unread between
    what was read and it. If not (more records left than the overlap covers, or the record there changed
    and moved), the page is asked for earlier still, down to where remembering began. Each version
    (`key`, `version` column) is yielded once; a record that changed and stayed in the list comes again
    in its newer version, as any re-read does. When an overlap takes a whole page (pages of one record),
    the server's own link is followed next, so each page moves on.

    Links that carry a skip token are followed as given and nothing is remembered: BC's own tokens resume
    after the last key read. A token is opaque, though, and one that hides an offset shifts the same way
    unseen: the count check after a load reports what that leaves out, and reconciliation asks for a key
    before it ends it (`BusinessCentralClient.held`).
    """

    client: ThrottledClient
    url: str
    read: Callable[[httpx.Response], tuple[pa.Table, str | None]]
    key: str
    version: str | None = None  # a column that changes with the record (its modified stamp)
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None

    def _versions(self, page: pa.Table, rows: int | None = None) -> list[int]:
        """Each record's version, hashed: remembering a million versions costs ~70 MB, not ~300 MB."""
        page = page.slice(0, rows) if rows is not None else page
        columns = [page.column(self.key).to_pylist()]
        if self.version is not None and self.version in page.column_names:
            columns.append(page.column(self.version).to_pylist())
        return [hash(version) for version in zip(*columns, strict=True)]

    def __iter__(self) -> Iterator[tuple[pa.Table, str]]:
        url: str | None = self.url
        params = self.params
        read: set[int] | None = None  # versions read, once the server pages by offset
        floor = 0  # pages before it came by skip token and are not remembered: never asked for again
        server_link, server_offset, asked, step = "", 0, 0, 0  # the server's link, and how much earlier we ask
        while url:
            response = self.client.request("GET", url, params=params, headers=self.headers)
            page, next_link = self.read(response)
            page_url = str(response.url)
            del response
            params = None  # the next link already carries the query
            rows = page.num_rows
            if read is not None and asked > floor and (not rows or self._versions(page, 1)[0] not in read):
                asked, step = max(floor, asked - step), step * 2  # a record may lie unread before this page
                url = at_offset(server_link, asked)
                continue
            next_url = urljoin(page_url, next_link) if next_link else None
            offset = link_offset(next_url) if next_url else None
            if read is None and offset:  # from here on the server pages by offset: what is read is remembered
                read, floor = set(), max(0, offset - rows)
            if read is not None and rows:
                versions = self._versions(page)
                fresh = [version not in read for version in versions]
                read.update(versions)
                if not all(fresh):
                    page = page.filter(pa.array(fresh))
            yield page, page_url
            asked = 0
            if next_url and offset and read is not None and offset > server_offset:
                server_link, server_offset, step = next_url, offset, max(1, rows // 10)
                asked = max(floor, offset - step)
                next_url = at_offset(next_url, asked)
            url = next_url


def key_literal(value: Any) -> str:
    """A key value as an OData literal: numbers bare, text quoted."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"keyset paging needs an integer or text key, got {value!r}")
    return str(value) if isinstance(value, int) else "'" + value.replace("'", "''") + "'"


@dataclass
class KeysetPages:
    """Pages of records matching `conjunction` (comparisons joined by `and`), ordered by `key`.

    For servers that page by offset (`$skip`): an offset counts rows of a filtered list that
    changes while we read it, so a record leaving the filter makes the next page start one row
    late and a record never read is skipped. Here each page is asked for as `key gt <last key
    read>`, so records leaving or entering the set can never shift what is read next. The
    server's next link only says whether more rows follow; its `$skip` is never used.
    """

    client: ThrottledClient
    url: str
    key: str
    conjunction: str | None  # None: every record
    read: Callable[[httpx.Response], tuple[pa.Table, str | None]]
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None

    def __iter__(self) -> Iterator[pa.Table]:
        last = None
        while True:
            terms = [t for t in (self.conjunction, last is not None and f"{self.key} gt {key_literal(last)}") if t]
            where = {"$filter": " and ".join(terms)} if terms else {}
            response = self.client.request(
                "GET",
                self.url,
                params={**(self.params or {}), **where, "$orderby": self.key},
                headers=self.headers,
            )
            page, next_link = self.read(response)
            del response
            if page.num_rows:
                yield page
            if not next_link or not page.num_rows:
                return
            last = page.column(self.key)[-1].as_py()


def slices(stamps: Sequence[tuple[datetime, str]], page_size: int) -> list[tuple[int, int]]:
    """Index ranges of sorted (modified, key) stamps, each at most `page_size` long, cut only where the
    modified moment changes (a slice is asked for by time, so records of one moment go together)."""
    cuts: list[tuple[int, int]] = []
    start = 0
    while start < len(stamps):
        end = min(start + page_size, len(stamps))
        while end < len(stamps) and stamps[end][0] == stamps[end - 1][0]:
            end -= 1  # step back to the moment's first record...
            if end == start:  # ...unless one moment alone is more than a page: it is read whole
                end = start + 1
                while end < len(stamps) and stamps[end][0] == stamps[start][0]:
                    end += 1
                break
        cuts.append((start, end))
        start = end
    return cuts


@dataclass
class SlicedWindowPages(Generic[A]):
    """A time window read in slices of at most a page, for servers without server-driven paging or ordering.

    `scan()` returns every record's (modified, key) in the window (one light request: `$select` of two
    fields); `ask(lower, upper)` sends the request for the records modified in `[lower, upper)` (None:
    the window's own bound) and returns its answer unread; `read(answer)` makes it a table with columns
    `key` and `modified` (the stamp as the server wrote it). Adjacent slices share their boundary, so
    together they cover the window whatever precision the server keeps. A record that changed between
    two slices is read in both versions (the newer one second); a version already read is not yielded again.

    The next slice is asked for while this one is read: one request in flight, as before, but the server
    is no longer idle while an answer is parsed (a 1,000-bill slice with its lines takes ~20 ms to read).
    """

    scan: Callable[[], Sequence[tuple[datetime, str]]]
    ask: Callable[[datetime | None, datetime | None], A]
    read: Callable[[A], pa.Table]
    key: str
    modified: str
    page_size: int

    def __iter__(self) -> Iterator[pa.Table]:
        stamps = sorted(self.scan())
        seen: set[tuple[str, str]] = set()
        bounds = [
            (stamps[first][0] if first else None, stamps[last][0] if last < len(stamps) else None)
            for first, last in slices(stamps, self.page_size)
        ] or [(None, None)]  # an empty scan may have raced a record in: one read of the window settles it
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="next-slice") as asking:
            answer = asking.submit(self.ask, *bounds[0])
            for following in [*bounds[1:], None]:
                this = answer.result()
                if following is not None:
                    answer = asking.submit(self.ask, *following)
                page = self.read(this)
                del this
                if page.num_rows == 0:  # (an empty answer has no columns to read)
                    continue
                versions = list(
                    zip(page.column(self.key).to_pylist(), page.column(self.modified).to_pylist(), strict=True)
                )
                fresh = [version not in seen for version in versions]
                seen.update(versions)
                if not all(fresh):
                    page = page.filter(pa.array(fresh))
                if page.num_rows:
                    yield page


@dataclass
class DeltaLinkPages(Generic[T]):
    """Change tracking (OData delta links): `url` is the first request (with `Prefer: odata.track-changes`) or a
    delta link kept from last time. Pages are linked by next links; the last one carries the delta link to ask
    with next time, found in `delta_link` once every page has been read. `read` makes (page, next link, delta
    link) of a response; a page that ends with neither leaves `delta_link` None (the server kept no token)."""

    client: ThrottledClient
    url: str
    read: Callable[[httpx.Response], tuple[T, str | None, str | None]]
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None
    delta_link: str | None = field(default=None, init=False)

    def __iter__(self) -> Iterator[T]:
        next_url: str | None = self.url
        next_params = self.params
        while next_url:
            response = self.client.request("GET", next_url, params=next_params, headers=self.headers)
            page, next_url, delta = self.read(response)
            # Either link may be relative (OData allows it): resolved against the page that carried it, not sent
            # as a path under the client's base URL, which doubled it (404), now or when the delta link is used.
            page_url = str(response.url)
            next_url, delta = (urljoin(page_url, link) if link else None for link in (next_url, delta))
            del response
            yield page
            next_params = None  # next and delta links carry their query
            if next_url is None:
                self.delta_link = delta
