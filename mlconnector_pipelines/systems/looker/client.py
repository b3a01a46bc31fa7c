"""Looker API 4.0 client: inline queries, saved Looks, and async query tasks for large results.

Only reads. Results up to Looker's synchronous cap come from one run call; anything larger (or
"every row") goes through a query task whose JSON result is parsed as it streams, so a large
result never sits in memory whole.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal

import httpx
import ijson

from ...core.errors import RequestFailedError
from ...core.http import ThrottledClient
from ...core.tls import ssl_context
from ...core.types import ColumnType
from .config import LookerConfig
from .session import SYSTEM, LookerLogin

# Looker returns at most this many rows unless a query says otherwise; past it we use a query task.
SYNC_ROW_CAP = 5000
# A query task still running; any other status (complete, error, failure, killed, expired, one not known here)
# sends the client to the results, which answer 202 while they are not ready and carry Looker's message if it failed.
_TASK_UNDER_WAY = {"added", "pending", "running", "queued"}
_COUNT_TYPES = {"count", "count_distinct"}
_EXACT_TYPES = {"number", "sum", "sum_distinct", "min", "max"}
_MOMENT_TIMEFRAMES = {
    "date_time",
    "date_raw",
    "date_second",
    "date_minute",
    "date_millisecond",
    "date_microsecond",
    "date_hour",
}


@dataclass(frozen=True)
class LookerField:
    """A field of an explore, as `GET /lookml_models/{model}/explores/{explore}` describes it."""

    name: str
    type: str
    category: str
    is_numeric: bool
    label: str = ""
    # Looker writes a date-time in the query's time zone, unless its LookML says `convert_tz: no`: then it is
    # the database's own value (LookmlModelExploreField.convert_tz; absent means Looker's default, converted).
    convert_tz: bool = True

    @property
    def column_type(self) -> ColumnType:
        if self.type == "yesno":
            return ColumnType.BOOLEAN
        if self.type in ("date_date", "date"):
            return ColumnType.DATE
        if self.type in _MOMENT_TIMEFRAMES:
            return ColumnType.TIMESTAMP
        if self.type in _COUNT_TYPES:
            return ColumnType.INTEGER
        if self.is_numeric:  # money is summed and compared exactly; averages and ratios are not money
            return ColumnType.DECIMAL if self.type in _EXACT_TYPES else ColumnType.DOUBLE
        return ColumnType.STRING  # strings, tiers, and coarse timeframes such as "2026-11"


@dataclass(frozen=True)
class QuerySpec:
    """What to ask Looker: an explore's fields with filters and sorts; `limit=None` means every row."""

    model: str
    view: str  # the Explore
    fields: tuple[str, ...]
    filters: dict[str, str] = field(default_factory=dict)
    sorts: tuple[str, ...] = ()
    limit: int | None = None
    query_timezone: str = "UTC"
    dropped: tuple[str, ...] = ()  # what a saved Look's query has that this spec does not carry (look_query)

    def body(self) -> dict:
        return {
            "model": self.model,
            "view": self.view,
            "fields": list(self.fields),
            "filters": dict(self.filters),
            "sorts": list(self.sorts),
            "limit": "-1" if self.limit is None else str(self.limit),
            "query_timezone": self.query_timezone,
        }

    @property
    def fits_one_call(self) -> bool:
        return self.limit is not None and self.limit <= SYNC_ROW_CAP


class LookerClient:
    """One Looker instance; counts every API call and, apart, the calls that run a query."""

    def __init__(
        self,
        cfg: LookerConfig,
        *,
        client_secret: str,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.login = LookerLogin(cfg.client_id, client_secret)
        self.http = ThrottledClient(
            SYSTEM,
            base_url=f"{cfg.base_url}/api/4.0/",
            policy=cfg.http,
            auth=self.login,
            verify=ssl_context(cfg.ca_bundle, what="looker"),
            secrets=[client_secret],
            transport=transport,
            sleep=sleep,
            headers={"Accept": "application/json"},
        )
        self.login.http = self.http
        self.poll_seconds = cfg.query_task_poll_seconds
        self.task_timeout_seconds = cfg.query_task_timeout_seconds
        self._sleep = sleep
        self.timezone = cfg.timezone  # what a Look whose query names no zone runs in
        self.query_calls = 0  # what monthly query quotas count
        self.query_tasks = 0

    # -- metadata ---------------------------------------------------------------------------------

    def me(self) -> dict:
        return self.http.get_json("user", params={"fields": "id,display_name,email"})

    def explore_fields(self, model: str, explore: str) -> dict[str, LookerField]:
        body = self.http.get_json(f"lookml_models/{model}/explores/{explore}", params={"fields": "fields"})
        fieldset = body.get("fields") or {}
        return {
            f["name"]: LookerField(
                f["name"],
                f.get("type") or "string",
                f.get("category") or "dimension",
                bool(f.get("is_numeric")),
                f.get("label") or f["name"],
                f.get("convert_tz") is not False,
            )
            for group in ("dimensions", "measures")
            for f in (fieldset.get(group) or [])
        }

    def look_query(self, look_id: str) -> QuerySpec:
        """The query a saved Look runs, with the row limit its author saved. What a QuerySpec cannot carry
        (a custom filter, custom fields, pivots, filled dates, totals) is named in `dropped`: a query rebuilt
        without it would answer other rows than the Look."""
        look = self.http.get_json(f"looks/{look_id}")
        query = look.get("query") or {}
        limit = query.get("limit")
        # Set when truthy (`total: false` is no totals) and not an empty list spelled as JSON text.
        dropped = tuple(name for name in _LOOK_FEATURES_NOT_CARRIED if query.get(name) and query.get(name) != "[]")
        return QuerySpec(
            model=query["model"],
            view=query["view"],
            fields=tuple(query.get("fields") or ()),
            filters=dict(query.get("filters") or {}),
            sorts=tuple(query.get("sorts") or ()),
            limit=None if limit in (None, "", "-1") else int(limit),
            query_timezone=query.get("query_timezone") or self.timezone,
            dropped=dropped,
        )

    # -- results ------------------------------------------------------------------------------------

    def rows(self, spec: QuerySpec, batch_rows: int = 10_000) -> Iterator[list[dict]]:
        """Every row the query returns, in batches; never cut at Looker's synchronous cap."""
        if spec.fits_one_call:
            self.query_calls += 1
            yield self._json_rows(
                self.http.request("POST", "queries/run/json", json=spec.body(), idempotent=True).content
            )
            return
        # Looker writes nothing a reader sees: a query or task created twice is harmless, so these POSTs repeat.
        query_id = str(self.http.post_json("queries", json=spec.body(), idempotent=True)["id"])
        yield from self.query_task_rows(query_id, batch_rows)

    def look_rows(self, look_id: str, limit: int) -> list[dict]:
        """A saved Look run as saved, up to `limit` rows (at most Looker's synchronous cap)."""
        if limit > SYNC_ROW_CAP:
            raise ValueError(f"a Look runs synchronously up to {SYNC_ROW_CAP} rows; use rows() for more")
        self.query_calls += 1
        return self._json_rows(
            self.http.request("GET", f"looks/{look_id}/run/json", params={"limit": str(limit)}).content
        )

    def query_task_rows(self, query_id: str, batch_rows: int = 10_000) -> Iterator[list[dict]]:
        """Run a stored query as an async task, poll it, and stream its JSON rows in batches."""
        self.query_calls += 1
        self.query_tasks += 1
        task = self.http.post_json("query_tasks", json={"query_id": query_id, "result_format": "json"}, idempotent=True)
        task_id = task["id"]
        deadline = time.monotonic() + self.task_timeout_seconds
        while True:
            status = str(self.http.get_json(f"query_tasks/{task_id}").get("status") or "").strip().lower()
            if status not in _TASK_UNDER_WAY:
                break  # complete, or failed (error, failure, killed…): the results call carries Looker's own message
            if time.monotonic() > deadline:
                raise RequestFailedError(
                    SYSTEM,
                    f"query task {task_id} (query {query_id}) was still {status!r} "
                    f"after {self.task_timeout_seconds:g}s",
                )
            self._sleep(self.poll_seconds)
        while True:
            with self.http.stream("GET", f"query_tasks/{task_id}/results") as response:
                # 202 (204 in older docs): finished as a task, results not readable yet
                if response.status_code not in (202, 204):
                    yield from _stream_batches(response, batch_rows)
                    return
            if time.monotonic() > deadline:
                raise RequestFailedError(SYSTEM, f"results of query task {task_id} never became ready")
            self._sleep(self.poll_seconds)

    def close(self) -> None:
        self.http.close()

    @staticmethod
    def _json_rows(content: bytes) -> list[dict]:
        try:
            # Numbers exactly as Looker wrote them (Decimal), never binary floats: these are amounts.
            rows = json.loads(content, parse_float=Decimal)
        except ValueError as exc:
            raise RequestFailedError(SYSTEM, f"query results are not valid JSON: {exc}") from None
        _refuse_error_row(rows)  # an error as the whole answer
        if not isinstance(rows, list):
            raise RequestFailedError(SYSTEM, f"query results are a {type(rows).__name__}, not a list of rows")
        for row in rows[:1]:  # an error as the one row
            _refuse_error_row(row)
        return rows


class _ChunkReader:
    """A file-like view of an httpx byte stream, for ijson (which reads at most `size` bytes a call)."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buffer = b""

    def peek(self) -> bytes:
        """The first byte that is not white space, left unread; b"" at the end."""
        while True:
            stripped = self._buffer.lstrip()
            if stripped:
                self._buffer = stripped
                return stripped[:1]
            chunk = next(self._chunks, None)
            if chunk is None:
                self._buffer = b""
                return b""
            self._buffer = chunk

    def read(self, size: int = -1) -> bytes:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._buffer = chunk
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def _refuse_error_row(row: object) -> None:
    """Looker reports a query that failed (a SQL error) as `{"looker_error": …}`: the answer, or its one row."""
    if isinstance(row, dict) and "looker_error" in row:
        raise RequestFailedError(SYSTEM, f"the query failed in Looker: {row['looker_error']}")


def _stream_batches(response: httpx.Response, batch_rows: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    reader = _ChunkReader(response.iter_bytes())
    try:
        start = reader.peek()
        if start != b"[":  # an object (an error, a task) holds no "item": it would read as no rows at all
            raise RequestFailedError(
                SYSTEM, f"query task results start {start.decode(errors='replace')!r}, not a list of rows"
            )
        # use_float=False: non-integral numbers arrive as Decimal, exactly as written.
        for number, row in enumerate(ijson.items(reader, "item", use_float=False)):
            if not isinstance(row, dict):
                raise RequestFailedError(SYSTEM, f"query task results hold a {type(row).__name__}, not a row")
            if number == 0:
                _refuse_error_row(row)
            batch.append(row)
            if len(batch) >= batch_rows:
                yield batch
                batch = []
    except ijson.JSONError as exc:
        raise RequestFailedError(SYSTEM, f"query task results are not valid JSON: {exc}") from None
    except httpx.TransportError as exc:
        raise RequestFailedError(SYSTEM, f"the connection dropped while reading query task results: {exc}") from None
    if batch:
        yield batch


# Parts of a Look's query (Looker API 4.0 Query) that change its rows and that a rebuilt query would lose.
_LOOK_FEATURES_NOT_CARRIED = (
    "filter_expression",
    "dynamic_fields",
    "pivots",
    "fill_fields",
    "subtotals",
    "total",
    "row_total",
)


def with_filters(spec: QuerySpec, filters: dict[str, str], limit: int | None) -> QuerySpec:
    """The query with more filters (the configuration's and a partition's) and the configured limit."""
    return replace(spec, filters={**spec.filters, **filters}, limit=limit)
