"""Looker API 4.0 (api-notes §7): login tokens, inline queries, saved Looks, query tasks.

Explores read the sandbox warehouse (a DuckDB file the ERP flows write) through a short
read-only connection per query, so a Dagster run writing the file waits at most a moment.
Nothing here writes data: Looker is read-only for the product, and so is its simulator.

Besides the built-in model, LookML projects (lookml_project.py) loaded from directories, at
start (`LookerSettings.projects`) or through `POST /_sandbox/looker/projects {"path": …}`,
answer the same API. A reset drops the projects loaded through the admin API.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import duckdb
import orjson
import tenacity
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..core import exact_json
from ..core.faults import FaultBook, FaultRule, retry_after_header
from ..core.service import RateWindow, SimulatedService
from . import Dialect, LookerSettings
from .lookml_project import Catalog, LookmlError, ProjectExplore
from .models import LOOKS, MODEL, QueryError, effective_limit, json_value

log = logging.getLogger("mlconnector.sandbox")

API = "/api/4.0"
DOCS = "https://cloud.google.com/looker/docs/r/api/"
RESULT_FORMATS = ("json", "csv")


@dataclass
class QueryTask:
    id: str
    query_id: str
    result_format: str
    limit: int | None
    created: float
    status: str = "added"  # added → running → complete | error
    body: bytes = b""
    error: str = ""
    runtime: float | None = None


@dataclass
class LookerSimulator(SimulatedService):
    settings: LookerSettings
    faults: FaultBook = field(default_factory=FaultBook)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expires at (monotonic)
    queries: dict[str, dict] = field(default_factory=dict)
    tasks: dict[str, QueryTask] = field(default_factory=dict)
    counts: Counter = field(default_factory=Counter)
    looks: dict[str, dict] = field(default_factory=dict)
    dialect: Dialect = field(default_factory=Dialect)

    def __post_init__(self) -> None:
        self.rate = RateWindow(self.settings.requests_per_minute, 60.0)
        self.catalog = Catalog(self.settings.projects)  # a project that cannot load stops the start
        self._seed()

    def _seed(self) -> None:
        for look_id, look in LOOKS.items():  # a saved Look refers to a stored query
            self.looks[look_id] = {**look, "query_id": self._store_query(look["query"])["id"]}

    def state(self) -> dict:
        return dict(self.counts)

    def reset(self) -> None:
        for held in (self.tokens, self.queries, self.tasks, self.counts, self.looks):
            held.clear()
        self.rate.clear()
        self.catalog.reset()
        self._seed()
        self.dialect = Dialect()

    def routes(self) -> list[Route]:
        return [
            Route(f"{API}/login", self.login, methods=["POST"]),
            Route(f"{API}/logout", self.logout, methods=["DELETE"]),
            Route(f"{API}/user", self._authorized(self.me)),
            Route(f"{API}/lookml_models/{{model}}/explores/{{explore}}", self._authorized(self.explore)),
            Route(f"{API}/queries", self._authorized(self.create_query), methods=["POST"]),
            Route(f"{API}/queries/run/{{result_format}}", self._authorized(self.run_inline), methods=["POST"]),
            Route(f"{API}/queries/{{query_id}}", self._authorized(self.get_query)),
            Route(f"{API}/queries/{{query_id}}/run/{{result_format}}", self._authorized(self.run_query)),
            Route(f"{API}/looks/{{look_id}}", self._authorized(self.get_look)),
            Route(f"{API}/looks/{{look_id}}/run/{{result_format}}", self._authorized(self.run_look)),
            Route(f"{API}/query_tasks", self._authorized(self.create_task), methods=["POST"]),
            Route(f"{API}/query_tasks/{{task_id}}", self._authorized(self.get_task)),
            Route(f"{API}/query_tasks/{{task_id}}/results", self._authorized(self.task_results)),
            Route("/_sandbox/looker/tokens/expire", self.expire_tokens, methods=["POST"]),
            Route("/_sandbox/looker/dialect", self.set_dialect, methods=["GET", "POST"]),
            Route("/_sandbox/looker/projects", self.projects, methods=["GET", "POST"]),
        ]

    # -- auth and rate --------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        self.counts["requests"] += 1
        form = dict(parse_qsl((await request.body()).decode()))  # x-www-form-urlencoded: the stdlib parses it
        client_id = form.get("client_id") or request.query_params.get("client_id")
        client_secret = form.get("client_secret") or request.query_params.get("client_secret")
        if client_id != self.settings.client_id or not secrets.compare_digest(
            str(client_secret or ""), self.settings.client_secret
        ):
            # Looker answers a failed login with 404, not 401.
            return _error(404, "Not found")
        self.counts["logins"] += 1
        token = secrets.token_urlsafe(30)
        self.tokens[token] = time.monotonic() + self.settings.token_lifetime_seconds
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.settings.token_lifetime_seconds,
                "refresh_token": None,
            }
        )

    async def logout(self, request: Request) -> Response:
        token = _token_of(request)
        if token is None or self.tokens.pop(token, None) is None:
            return _error(404, "Not found")
        return Response(status_code=204)

    # -- the pipeline's hooks, in Looker's words ---------------------------------------------------

    def caller(self, request: Request) -> str | None:
        expires = self.tokens.get(_token_of(request) or "")
        # One API user: its rate window outlives any one login token.
        return self.settings.client_id if expires is not None and expires >= time.monotonic() else None

    def unauthorized(self, request: Request) -> Response:
        return _error(401, "Requires authentication.")

    def throttled(self, request: Request) -> Response:
        return _error(429, "Too Many Requests", headers=retry_after_header(self.settings.retry_after_on_429))

    def failure(self, request: Request, fault: FaultRule) -> Response:
        return _error(fault.status, "Injected by the sandbox.", headers=retry_after_header(fault.retry_after))

    def expire_credentials(self) -> None:
        self.tokens.clear()

    def _authorized(self, handler):
        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except QueryError as exc:
                return _query_error(exc)

        return self.guarded(answer)

    # -- metadata ---------------------------------------------------------------------------------

    async def me(self, request: Request) -> Response:
        return JSONResponse(
            {
                "id": "1",
                "email": "api@sandbox.looker.local",
                "display_name": "Sandbox API user",
                "first_name": "Sandbox",
                "last_name": "API",
            }
        )

    async def explore(self, request: Request) -> Response:
        explore = self.catalog.explore(request.path_params["model"], request.path_params["explore"])
        if isinstance(explore, ProjectExplore):
            return JSONResponse(explore.describe())

        def describe(f):
            view, _, short = f.name.partition(".")
            return {
                "name": f.name,
                "label": f"{explore.label} {f.label}",
                "label_short": f.label,
                "category": f.category,
                "type": f.type,
                "is_numeric": f.is_numeric,
                "is_timeframe": f.is_date,
                "convert_tz": True,
                "view": view,
                "sql": f.sql.replace("t.", "${TABLE}."),
                "field_group_label": None,
            }

        fields = list(explore.fields.values())
        return JSONResponse(
            {
                "id": f"{MODEL}::{explore.name}",
                "name": explore.name,
                "label": explore.label,
                "model_name": MODEL,
                "view_name": explore.name,
                "fields": {
                    "dimensions": [describe(f) for f in fields if f.category == "dimension"],
                    "measures": [describe(f) for f in fields if f.category == "measure"],
                    "filters": [],
                    "parameters": [],
                },
            }
        )

    # -- queries ------------------------------------------------------------------------------------

    def _store_query(self, body: dict) -> dict:
        query_id = str(len(self.queries) + 1)
        query = {
            "id": query_id,
            "model": body.get("model"),
            "view": body.get("view"),
            "fields": list(body.get("fields") or []),
            "pivots": None,
            "fill_fields": None,
            "filters": dict(body.get("filters") or {}),
            "sorts": list(body.get("sorts") or []),
            "limit": None if body.get("limit") in (None, "") else str(body["limit"]),
            "filter_expression": body.get("filter_expression"),
            "dynamic_fields": body.get("dynamic_fields"),
            "query_timezone": body.get("query_timezone"),
            "total": bool(body.get("total")),  # Looker answers false for a query without totals
            "row_total": None,
            "slug": secrets.token_hex(4),
            "client_id": None,
        }
        self.queries[query_id] = query
        return query

    async def create_query(self, request: Request) -> Response:
        body = await _json_body(request)
        self.catalog.compile(body, limit=1)  # refuse unknown models, explores and fields now, as Looker does
        return JSONResponse(self._store_query(body))

    async def get_query(self, request: Request) -> Response:
        return JSONResponse(self._query(request.path_params["query_id"]))

    def _query(self, query_id: str) -> dict:
        query = self.queries.get(query_id)
        if query is None:
            raise QueryError(404, f"Query {query_id} not found.")
        return query

    async def run_inline(self, request: Request) -> Response:
        body = await _json_body(request)
        self.counts["query_runs"] += 1
        limit = effective_limit(body.get("limit"), request.query_params.get("limit"))
        return await self._run(body, request.path_params["result_format"], limit)

    async def run_query(self, request: Request) -> Response:
        query = self._query(request.path_params["query_id"])
        self.counts["query_runs"] += 1
        limit = effective_limit(query.get("limit"), request.query_params.get("limit"))
        return await self._run(query, request.path_params["result_format"], limit)

    async def get_look(self, request: Request) -> Response:
        look_id = request.path_params["look_id"]
        look = self.looks.get(look_id)
        if look is None:
            raise QueryError(404, f"Look {look_id} not found.")
        return JSONResponse(
            {
                "id": look_id,
                "title": look["title"],
                "query_id": look["query_id"],
                "query": self.queries[look["query_id"]],
                "model": {"id": MODEL, "label": "ml-connector demo"},
            }
        )

    async def run_look(self, request: Request) -> Response:
        look = self.looks.get(request.path_params["look_id"])
        if look is None:
            raise QueryError(404, f"Look {request.path_params['look_id']} not found.")
        self.counts["query_runs"] += 1
        query = self.queries[look["query_id"]]
        limit = effective_limit(query.get("limit"), request.query_params.get("limit"))
        return await self._run(query, request.path_params["result_format"], limit)

    async def _run(self, query: dict, result_format: str, limit: int | None) -> Response:
        _check_format(result_format)
        try:
            body = await run_in_threadpool(self._execute, query, result_format, limit)
        except QueryError as exc:
            if result_format == "json" and self.settings.query_errors_as_rows:
                return Response(_error_rows(exc.message), media_type="application/json")
            raise
        return Response(body, media_type="text/csv" if result_format == "csv" else "application/json")

    def _execute(self, query: dict, result_format: str, limit: int | None) -> bytes:
        if query.get("filter_expression") or query.get("dynamic_fields"):
            # Kept and answered in the query, but not evaluated: no rows rather than wrong ones.
            raise QueryError(400, "The sandbox does not evaluate custom filters or custom fields.")
        # Date-times are answered as wall-clock text in the query's zone (a query naming none: the instance's).
        zone = query.get("query_timezone") or self.settings.timezone
        try:
            ZoneInfo(str(zone))
        except (ValueError, ZoneInfoNotFoundError):
            raise QueryError(422, f"Unknown query_timezone '{zone}'.", "query_timezone") from None
        sql, params, fields = self.catalog.compile({**query, "query_timezone": zone}, limit)
        explore = self.catalog.explore(query["model"], query["view"])
        rows = self._read_warehouse(sql, params, explore.table, lookml=isinstance(explore, ProjectExplore))
        self.counts["rows_returned"] += len(rows)
        names = [f.name for f in fields]
        if result_format == "csv":
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow([self.catalog.header(query, f) for f in fields])
            writer.writerows([csv_value(json_value(v)) for v in row] for row in rows)
            return out.getvalue().encode()
        return exact_json.dumps([{n: json_value(v) for n, v in zip(names, row, strict=True)} for row in rows])

    def _read_warehouse(self, sql: str, params: list, table: str, lookml: bool = False) -> list[tuple]:
        path = self.settings.warehouse
        if path is None or not path.exists():
            raise QueryError(
                400,
                f"The warehouse {path} does not exist yet: load Business Central into it first "
                "(the sandbox's explores read its tables).",
            )
        # A Dagster step holds the file's write lock for a moment: wait for it, up to lock_wait_seconds.
        opener = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, duckdb.IOException) and "lock" in str(e).lower()),
            wait=tenacity.wait_fixed(0.1),
            stop=tenacity.stop_after_delay(self.settings.lock_wait_seconds),
            reraise=True,
        )
        try:
            con = opener(duckdb.connect, str(path), read_only=True)
        except duckdb.IOException as exc:
            raise QueryError(400, f"The warehouse is busy: {exc}") from None
        try:
            con.execute("SET TimeZone = 'UTC'")
            return con.execute(sql, params).fetchall()
        except duckdb.CatalogException as exc:
            if lookml:  # a loaded project's table or column: DuckDB's words name it
                raise QueryError(400, f"The warehouse lacks what the LookML names: {exc}") from None
            raise QueryError(
                400,
                f"Table {table} does not exist in the warehouse yet: materialize the Business Central assets first.",
            ) from None
        except duckdb.Error as exc:
            raise QueryError(400, f"SQL error: {exc}") from None
        finally:
            con.close()

    # -- query tasks ------------------------------------------------------------------------------

    async def create_task(self, request: Request) -> Response:
        body = await _json_body(request)
        query = self._query(str(body.get("query_id")))
        result_format = body.get("result_format") or ""
        _check_format(result_format)
        self.counts["query_tasks"] += 1
        limit = effective_limit(query.get("limit"), request.query_params.get("limit"))
        task = QueryTask(secrets.token_hex(16), query["id"], result_format, limit, time.monotonic())
        self.tasks[task.id] = task
        asyncio.get_running_loop().create_task(self._complete(task, query))
        return JSONResponse(self._task_json(task))

    async def _complete(self, task: QueryTask, query: dict) -> None:
        await asyncio.sleep(self.settings.query_task_seconds / 2)
        task.status = "running"
        await asyncio.sleep(self.settings.query_task_seconds / 2)
        try:
            task.body = await run_in_threadpool(self._execute, query, task.result_format, task.limit)
            task.status = "complete"
        except QueryError as exc:
            task.status, task.error = "error", exc.message
        task.runtime = time.monotonic() - task.created

    def _task(self, task_id: str) -> QueryTask:
        task = self.tasks.get(task_id)
        if task is None or time.monotonic() - task.created > self.settings.query_task_ttl_seconds:
            raise QueryError(404, "The Query Task Id was not found or the results have expired.")
        return task

    def _task_json(self, task: QueryTask) -> dict:
        return {
            "id": task.id,
            "query_id": task.query_id,
            "status": self._status_text(task.status),
            "result_format": task.result_format,
            "runtime": task.runtime,
            "source": "api",
            "look_id": None,
            "dashboard_id": None,
            "cache_key": None,
            "result_source": None,
        }

    def _status_text(self, status: str) -> str:
        if status == "error":
            status = self.dialect.failed_task_status
        return status.capitalize() if self.dialect.task_status_case == "capitalized" else status

    async def get_task(self, request: Request) -> Response:
        return JSONResponse(self._task_json(self._task(request.path_params["task_id"])))

    async def task_results(self, request: Request) -> Response:
        task = self._task(request.path_params["task_id"])
        if task.status in ("added", "running"):
            return Response(b"", status_code=202, media_type="text/plain")
        if task.status == "error":
            if task.result_format == "json" and self.settings.query_errors_as_rows:
                return Response(_error_rows(task.error), media_type="application/json")
            return _error(400, task.error)
        return Response(task.body, media_type="text/csv" if task.result_format == "csv" else "application/json")

    # -- admin --------------------------------------------------------------------------------------

    async def projects(self, request: Request) -> Response:
        """GET: the projects loaded; POST {"path": dir}: load (or reload) one, its models replacing any of
        the same name. A project with problems is refused whole (400), each problem named."""
        if request.method == "GET":
            return JSONResponse({"projects": self.catalog.projects()})
        try:
            path = Path(str((await _json_body(request))["path"]))
        except (QueryError, KeyError):
            return _error(400, 'Body must be a JSON object {"path": "<LookML project directory>"}.')
        try:
            loaded = await run_in_threadpool(self.catalog.load, path)
        except LookmlError as exc:
            return JSONResponse(
                {"message": f"LookML project not loaded: {len(exc.problems)} problem(s).", "errors": exc.problems},
                status_code=400,
            )
        log.info("looker: loaded LookML project %s (models %s)", loaded["path"], [m["name"] for m in loaded["models"]])
        return JSONResponse(loaded)

    async def set_dialect(self, request: Request) -> Response:
        if request.method == "POST":
            self.dialect = Dialect.model_validate({**self.dialect.model_dump(), **await request.json()})
        return JSONResponse(self.dialect.model_dump())

    async def expire_tokens(self, request: Request) -> Response:
        expired = len(self.tokens)
        self.tokens.clear()
        return JSONResponse({"expired": expired})


def _token_of(request: Request) -> str | None:
    # `token <t>` is the documented scheme; the official SDKs send `Bearer <t>`. Both are accepted.
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() in ("token", "bearer") and value.strip() else None


async def _json_body(request: Request) -> dict:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise QueryError(400, f"Body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise QueryError(400, "Body must be a JSON object.")
    return body


def _check_format(result_format: str) -> None:
    if result_format not in RESULT_FORMATS:
        raise QueryError(
            400, f"Unsupported result format '{result_format}' (the sandbox serves {', '.join(RESULT_FORMATS)})."
        )


def _error_rows(message: str) -> bytes:
    """A failed query as Looker's json results report it: one row holding the error."""
    return exact_json.dumps([{"looker_error": message}])


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"message": message, "documentation_url": DOCS}, status_code=status, headers=headers)


def _query_error(exc: QueryError) -> JSONResponse:
    if exc.status == 422:
        return JSONResponse(
            {
                "message": "Validation Failed",
                "documentation_url": DOCS,
                "errors": [{"field": exc.field, "code": "invalid", "message": exc.message, "documentation_url": DOCS}],
            },
            status_code=422,
        )
    return _error(exc.status, exc.message)


def csv_value(value):
    """A CSV cell: amounts in plain digits (str(Decimal) may write 1E-9)."""
    return format(value, "f") if isinstance(value, Decimal) else value


def build(settings: LookerSettings, context) -> LookerSimulator:
    if settings.warehouse is None:
        settings = settings.model_copy(update={"warehouse": context.data_dir / "warehouse.duckdb"})
    return LookerSimulator(settings)
