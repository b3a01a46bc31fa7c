"""A local fake of the BigQuery REST API (v2), enough for the official google-cloud-bigquery client.

Datasets, tables (get, create, delete), queries and scripts (`jobs.query`, `jobs.getQueryResults`),
and load jobs uploaded as multipart or resumable (newline-delimited JSON or CSV), over plain
HTTP on loopback. SQL is GoogleSQL translated by sqlglot and run on an in-memory DuckDB; a
script's transaction is rolled back when a statement fails, as BigQuery does. It is a test
double: it does not enforce quotas, IAM, or every GoogleSQL nuance.
"""

from __future__ import annotations

import email.parser
import socket
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import orjson
import sqlglot
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API = "/bigquery/v2/projects/{project}"
_BQ_TYPES = {
    "VARCHAR": "STRING",
    "BIGINT": "INTEGER",
    "INTEGER": "INTEGER",
    "DOUBLE": "FLOAT",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
    "TIMESTAMP": "DATETIME",
    "HUGEINT": "INTEGER",
}
_PARAM_CASTS = {
    "INT64": int,
    "FLOAT64": float,
    "BOOL": lambda v: v == "true",
    "STRING": str,
    "TIMESTAMP": lambda v: datetime.fromisoformat(v.replace(" UTC", "+00:00")),
}


def _error(status: int, reason: str, message: str) -> JSONResponse:
    names = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 409: "ALREADY_EXISTS"}
    return JSONResponse(
        {
            "error": {
                "code": status,
                "message": message,
                "status": names.get(status, "UNKNOWN"),
                "errors": [{"reason": reason, "message": message, "domain": "global"}],
            }
        },
        status_code=status,
    )


def _bq_type(duck_type: str) -> str:
    if duck_type.startswith("DECIMAL"):
        return "NUMERIC"
    return _BQ_TYPES.get(duck_type, "STRING")


def _cell(value, int64_timestamps: bool):
    if value is None:
        return None
    if isinstance(value, datetime):
        micros = (
            int(value.astimezone(UTC).timestamp() * 1_000_000)
            if value.tzinfo
            else int(value.replace(tzinfo=UTC).timestamp() * 1_000_000)
        )
        return str(micros) if int64_timestamps else repr(micros / 1_000_000)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (Decimal, float)):
        return str(value)
    return str(value)


class FakeBigQuery:
    def __init__(self):
        self.db = duckdb.connect(":memory:")
        self.db.execute("SET TimeZone = 'UTC'")
        self.lock = threading.Lock()
        self.jobs: dict[str, dict] = {}
        self.results: dict[str, dict] = {}
        self.uploads: dict[str, dict] = {}
        self.scripts_run = 0

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(f"{API}/datasets", self.create_dataset, methods=["POST"]),
                Route(f"{API}/datasets/{{dataset}}", self.get_dataset, methods=["GET"]),
                Route(f"{API}/datasets/{{dataset}}/tables", self.create_table, methods=["POST"]),
                Route(f"{API}/datasets/{{dataset}}/tables/{{table}}", self.table, methods=["GET", "DELETE"]),
                Route(f"{API}/queries", self.query, methods=["POST"]),
                Route(f"{API}/queries/{{job_id}}", self.query_results, methods=["GET"]),
                Route(f"{API}/jobs", self.list_jobs, methods=["GET"]),
                Route(f"{API}/jobs/{{job_id}}", self.get_job, methods=["GET"]),
                Route("/upload/bigquery/v2/projects/{project}/jobs", self.upload, methods=["POST", "PUT"]),
                Route("/upload/sessions/{upload_id}", self.resumable_chunk, methods=["PUT"]),
            ]
        )

    # -- datasets and tables ------------------------------------------------------------------------

    def _schemas(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT schema_name FROM information_schema.schemata").fetchall()}

    def _columns(self, dataset: str, table: str) -> list[tuple[str, str]]:
        return self.db.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? "
            "AND table_name = ? ORDER BY ordinal_position",
            [dataset, table],
        ).fetchall()

    async def create_dataset(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        ref = body["datasetReference"]
        with self.lock:
            if ref["datasetId"] in self._schemas():
                return _error(409, "duplicate", f"Already Exists: Dataset {ref['projectId']}:{ref['datasetId']}")
            self.db.execute(f'CREATE SCHEMA "{ref["datasetId"]}"')
        return JSONResponse(
            {**body, "id": f"{ref['projectId']}:{ref['datasetId']}", "location": body.get("location", "US")}
        )

    async def get_dataset(self, request: Request) -> Response:
        project, dataset = request.path_params["project"], request.path_params["dataset"]
        with self.lock:
            if dataset not in self._schemas():
                return _error(404, "notFound", f"Not found: Dataset {project}:{dataset}")
        return JSONResponse(
            {
                "datasetReference": {"projectId": project, "datasetId": dataset},
                "id": f"{project}:{dataset}",
                "location": "US",
            }
        )

    def _table_json(self, project: str, dataset: str, table: str) -> dict | None:
        columns = self._columns(dataset, table)
        if not columns:
            return None
        rows = self.db.execute(f'SELECT count(*) FROM "{dataset}"."{table}"').fetchone()[0]
        return {
            "tableReference": {"projectId": project, "datasetId": dataset, "tableId": table},
            "schema": {"fields": [{"name": n, "type": _bq_type(t), "mode": "NULLABLE"} for n, t in columns]},
            "numRows": str(rows),
            "type": "TABLE",
            "id": f"{project}:{dataset}.{table}",
        }

    async def create_table(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        ref = body["tableReference"]
        with self.lock:
            if self._columns(ref["datasetId"], ref["tableId"]):
                return _error(409, "duplicate", f"Already Exists: Table {ref['tableId']}")
            self._create(ref["datasetId"], ref["tableId"], body["schema"]["fields"])
            return JSONResponse(self._table_json(ref["projectId"], ref["datasetId"], ref["tableId"]))

    def _create(self, dataset: str, table: str, fields: list[dict]) -> None:
        columns = ", ".join(
            f'"{f["name"]}" {sqlglot.transpile(f["type"], read="bigquery", write="duckdb")[0]}' for f in fields
        )
        self.db.execute(f'CREATE TABLE IF NOT EXISTS "{dataset}"."{table}" ({columns})')

    async def table(self, request: Request) -> Response:
        p = request.path_params
        with self.lock:
            found = self._table_json(p["project"], p["dataset"], p["table"])
            if found is None:
                return _error(404, "notFound", f"Not found: Table {p['project']}:{p['dataset']}.{p['table']}")
            if request.method == "DELETE":
                self.db.execute(f'DROP TABLE "{p["dataset"]}"."{p["table"]}"')
                return Response(status_code=204)
            return JSONResponse(found)

    # -- queries ------------------------------------------------------------------------------------

    async def query(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        project = request.path_params["project"]
        params = [
            _PARAM_CASTS.get(p["parameterType"]["type"], str)(p["parameterValue"]["value"])
            for p in body.get("queryParameters") or []
        ]
        int64 = bool((body.get("formatOptions") or {}).get("useInt64Timestamp"))
        job_id = f"job_{uuid.uuid4().hex}"
        with self.lock:
            try:
                columns, rows = self._run_script(body["query"], params)
            except (duckdb.Error, sqlglot.errors.SqlglotError) as exc:
                return _error(400, "invalidQuery", str(exc).splitlines()[0])
        result = {
            "kind": "bigquery#queryResponse",
            "jobComplete": True,
            "cacheHit": False,
            "jobReference": {"projectId": project, "jobId": job_id, "location": body.get("location", "US")},
            "schema": {"fields": [{"name": n, "type": _bq_type(t), "mode": "NULLABLE"} for n, t in columns]},
            "totalRows": str(len(rows)),
            "rows": [{"f": [{"v": _cell(v, int64)} for v in row]} for row in rows],
        }
        self.results[job_id] = result
        self.jobs[job_id] = {
            "jobReference": result["jobReference"],
            "status": {"state": "DONE"},
            "configuration": {"query": {"query": body["query"]}},
            "statistics": {},
        }
        return JSONResponse(result)

    def _refuse_what_bigquery_does_not_coerce_on_insert(self, statement: str) -> None:
        """GoogleSQL coerces a query column into the table's only along its coercion rules (INT64 to NUMERIC or
        FLOAT64, NUMERIC to FLOAT64, DATE to DATETIME); a DATE into a TIMESTAMP, text into a number, is refused:
        `Query column N has type DATE which cannot be inserted into column c, which has type TIMESTAMP`.
        (DuckDB casts them.)"""
        parsed = sqlglot.parse_one(statement, read="duckdb")
        query = parsed.expression
        schema = parsed.this
        if not isinstance(schema, sqlglot.exp.Schema) or not isinstance(query, sqlglot.exp.Query):
            return
        table = schema.this.sql(dialect="duckdb")
        names = [c.name for c in schema.expressions]
        held = {str(r[0]): _bq_type(str(r[1])) for r in self.db.execute(f"DESCRIBE {table}").fetchall()}
        given = [str(r[1]) for r in self.db.execute(f"DESCRIBE {query.sql(dialect='duckdb')}").fetchall()]
        for number, (name, duck_type) in enumerate(zip(names, given, strict=False), start=1):
            kind, wanted = _bq_type(duck_type), held.get(name)
            if wanted and duck_type != '"NULL"' and kind != wanted and (kind, wanted) not in _COERCIBLE:
                raise duckdb.ConversionException(
                    f"Query column {number} has type {kind} which cannot be inserted into column {name}, which has "
                    f"type {wanted}"
                )

    def _run_script(self, script: str, params: list) -> tuple[list[tuple[str, str]], list[tuple]]:
        _refuse_a_line_break_in_a_quoted_string(script)
        statements = sqlglot.transpile(script, read="bigquery", write="duckdb")
        self.scripts_run += 1
        in_transaction = False
        columns, rows = [], []
        try:
            for statement in statements:
                upper = statement.strip().upper()
                if upper.startswith("INSERT INTO") and "?" not in statement:
                    self._refuse_what_bigquery_does_not_coerce_on_insert(statement)
                cursor = self.db.execute(statement, params if "?" in statement else None)
                if upper.startswith("BEGIN"):
                    in_transaction = True
                elif upper.startswith(("COMMIT", "ROLLBACK")):
                    in_transaction = False
                if cursor.description:
                    rows = cursor.fetchall()
                    columns = [(d[0], str(d[1])) for d in cursor.description]
        except BaseException:
            if in_transaction:  # a failed script rolls its transaction back
                self.db.execute("ROLLBACK")
            raise
        return columns, rows

    async def query_results(self, request: Request) -> Response:
        result = self.results.get(request.path_params["job_id"])
        if result is None:
            return _error(404, "notFound", f"Not found: Job {request.path_params['job_id']}")
        return JSONResponse({**result, "kind": "bigquery#getQueryResultsResponse"})

    async def list_jobs(self, request: Request) -> Response:
        """jobs.list: every job run, newest first, in one page (as BigQuery lists them, with their configuration)."""
        listed = [{"id": job_id, **job} for job_id, job in reversed(self.jobs.items())]
        return JSONResponse({"kind": "bigquery#jobList", "jobs": listed})

    async def get_job(self, request: Request) -> Response:
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return _error(404, "notFound", f"Not found: Job {request.path_params['job_id']}")
        return JSONResponse(job)

    # -- load jobs ------------------------------------------------------------------------------------

    async def upload(self, request: Request) -> Response:
        kind = request.query_params.get("uploadType")
        body = await request.body()
        if kind == "multipart":
            message = email.parser.BytesParser().parsebytes(
                b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + body
            )
            metadata, data = message.get_payload()
            return self._load(
                request.path_params["project"],
                orjson.loads(metadata.get_payload(decode=True)),
                data.get_payload(decode=True),
            )
        if kind == "resumable":
            upload_id = uuid.uuid4().hex
            self.uploads[upload_id] = {
                "job": orjson.loads(body),
                "data": bytearray(),
                "project": request.path_params["project"],
            }
            location = f"{request.url.scheme}://{request.url.netloc}/upload/sessions/{upload_id}"
            return Response(status_code=200, headers={"Location": location})
        return _error(400, "invalid", f"unsupported uploadType {kind}")

    async def resumable_chunk(self, request: Request) -> Response:
        upload = self.uploads.get(request.path_params["upload_id"])
        if upload is None:
            return _error(404, "notFound", "unknown upload session")
        upload["data"] += await request.body()
        total = request.headers.get("content-range", "").rpartition("/")[2]
        if total.isdigit() and len(upload["data"]) >= int(total):
            self.uploads.pop(request.path_params["upload_id"])
            return self._load(upload["project"], upload["job"], bytes(upload["data"]))
        return Response(status_code=308, headers={"Range": f"bytes=0-{len(upload['data']) - 1}"})

    def _load(self, project: str, job: dict, data: bytes) -> Response:
        load = job["configuration"]["load"]
        ref = load["destinationTable"]
        job_id = (job.get("jobReference") or {}).get("jobId") or f"job_{uuid.uuid4().hex}"
        fields = (load.get("schema") or {}).get("fields") or []
        status: dict = {"state": "DONE"}
        with self.lock:
            try:
                if not self._columns(ref["datasetId"], ref["tableId"]):
                    self._create(ref["datasetId"], ref["tableId"], fields)
                elif load.get("writeDisposition") == "WRITE_TRUNCATE":
                    self.db.execute(f'DELETE FROM "{ref["datasetId"]}"."{ref["tableId"]}"')
                with tempfile.NamedTemporaryFile(suffix=".data", delete=False) as f:
                    f.write(data)
                columns = "{" + ", ".join(f"'{f['name']}': 'VARCHAR'" for f in fields) + "}"
                reader = (
                    f"read_csv('{f.name}', header = true, columns = {columns})"
                    if load.get("sourceFormat") == "CSV"
                    else f"read_json('{f.name}', format = 'newline_delimited', columns = {columns})"
                )
                if data.strip():
                    self.db.execute(
                        f'INSERT INTO "{ref["datasetId"]}"."{ref["tableId"]}" BY NAME SELECT * FROM {reader}'
                    )
                Path(f.name).unlink()
            except duckdb.Error as exc:
                status["errorResult"] = {"reason": "invalid", "message": str(exc).splitlines()[0]}
        resource = {
            "jobReference": {"projectId": project, "jobId": job_id, "location": load.get("location", "US")},
            "configuration": job["configuration"],
            "status": status,
            "statistics": {"creationTime": str(int(time.time() * 1000))},
        }
        self.jobs[job_id] = resource
        return JSONResponse(resource)


TRIPLE_QUOTES = ("'" * 3, '"' * 3)


_COERCIBLE = {
    ("INTEGER", "NUMERIC"),
    ("INTEGER", "FLOAT"),
    ("NUMERIC", "FLOAT"),
    ("DATE", "DATETIME"),
}  # _bq_type's names


def _refuse_a_line_break_in_a_quoted_string(script: str) -> None:
    """GoogleSQL: a quoted string (not triple-quoted) may not hold a raw line break; BigQuery answers
    `Syntax error: Unclosed string literal`. (sqlglot and DuckDB take it.)"""
    index, quote = 0, None
    while index < len(script):
        ch = script[index]
        if quote is None:
            if script.startswith(TRIPLE_QUOTES, index):
                end = script.find(script[index : index + 3], index + 3)
                index = len(script) if end < 0 else end + 3
                continue
            if ch in "'\"`":
                quote = ch
        elif ch == "\\":
            index += 1  # the escaped character
        elif ch == quote:
            quote = None
        elif ch in "\r\n" and quote != "`":
            raise sqlglot.errors.ParseError("Syntax error: Unclosed string literal")
        index += 1


@contextmanager
def running_fake_bigquery():
    """Serve a fresh fake on an ephemeral loopback port; yields its base URL."""
    fake = FakeBigQuery()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(fake.app(), access_log=False, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
