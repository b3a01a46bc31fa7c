"""BigQuery backend (google-cloud-bigquery, the client under dagster-gcp).

BigQuery runs a multi-statement transaction only inside one script, so a swap is sent as one
script: the DDL first (new columns), then `BEGIN TRANSACTION … COMMIT TRANSACTION`. If any
statement fails, BigQuery rolls the transaction back. Batches are loaded one staged file at a
time into a stage table (load jobs, not streaming inserts: streamed rows cannot be changed by
DML for a while). TIMESTAMP is always UTC in BigQuery; NUMERIC(38, 9) holds money exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import pandas as pd
from google.api_core.exceptions import NotFound
from google.cloud import bigquery

from .config import BigQueryConfig
from .schema import ColumnType, TableSpec, column_type_of, validate_identifier
from .sql_warehouse import SqlDialect, SqlSession, SqlWarehouse
from .staging import ParquetStaging

_PARAM_TYPES = {bool: "BOOL", int: "INT64", float: "FLOAT64", str: "STRING"}


class BigQueryDialect(SqlDialect):
    types = {
        ColumnType.STRING: "STRING",
        ColumnType.INTEGER: "INT64",
        ColumnType.DECIMAL: "NUMERIC(38, 9)",
        ColumnType.DOUBLE: "FLOAT64",
        ColumnType.BOOLEAN: "BOOL",
        ColumnType.DATE: "DATE",
        ColumnType.TIMESTAMP: "TIMESTAMP",
    }
    union_distinct = "UNION DISTINCT"
    text = "STRING"
    one_swap_at_a_time = False  # sessions of several runs may swap one table: see SqlDialect

    def __init__(self, dataset: str = ""):
        self.dataset = dataset

    def column(self, name: str) -> str:
        return f"`{validate_identifier(name)}`"

    def table(self, name: str) -> str:
        if name.startswith("_swap_"):  # temporary tables live in the script, not the dataset
            return f"`{validate_identifier(name)}`"
        return f"`{self.dataset}.{validate_identifier(name)}`"

    def temp_table(self, name: str, select: str) -> str:
        return f"CREATE TEMP TABLE {self.table(name)} AS {select}"

    def string(self, value: str) -> str:
        """A quoted string: BigQuery reads backslash escapes, and takes no raw line break inside single quotes."""
        escaped = str(value).replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
        return "'" + escaped + "'"

    def fingerprint(self, expressions: Sequence[str]) -> str:
        parts = ", '\\x1f', ".join(f"COALESCE(CAST({e} AS STRING), '')" for e in expressions)
        return f"MD5(CONCAT({parts}))"

    def timestamp(self, value: datetime) -> str:
        utc = value.astimezone(UTC).replace(tzinfo=None)
        return f"TIMESTAMP '{utc.isoformat(sep=' ')}+00'"


class BigQueryWarehouse(SqlWarehouse):
    def __init__(self, cfg: BigQueryConfig, client: bigquery.Client | None = None):
        self.cfg = cfg
        self.dialect = BigQueryDialect(cfg.dataset)
        self.client = client or _client(cfg)
        self._dataset_ready = False

    def _ensure_dataset(self) -> None:
        if not self._dataset_ready:
            dataset = bigquery.Dataset(f"{self.cfg.project}.{self.cfg.dataset}")
            dataset.location = self.cfg.location
            self.client.create_dataset(dataset, exists_ok=True)
            self._dataset_ready = True

    @contextmanager
    def session(self) -> Iterator[_BigQuerySession]:
        self._ensure_dataset()
        s = _BigQuerySession(self)
        try:
            yield s
            s.flush()
        finally:
            s.drop_stages()

    def run(self, sql: str, parameters: Sequence[Any] = ()):
        config = bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter(None, _param_type(v), v) for v in parameters]
        )
        return self.client.query_and_wait(sql, job_config=config, location=self.cfg.location)

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple]:
        return [tuple(row.values()) for row in self.run(sql, parameters)]

    def frame(self, sql: str, parameters: Sequence[Any] = ()) -> pd.DataFrame:
        rows = self.run(sql, parameters)
        return pd.DataFrame([dict(r.items()) for r in rows], columns=[f.name for f in rows.schema])

    def column_types(self, name: str) -> dict[str, ColumnType]:
        try:
            found = self.client.get_table(f"{self.cfg.project}.{self.cfg.dataset}.{validate_identifier(name)}")
        except NotFound:
            return {}
        return {f.name.lower(): column_type_of(f.field_type, f.scale) for f in found.schema}

    def table_exists(self, name: str) -> bool:
        try:
            self.client.get_table(f"{self.cfg.project}.{self.cfg.dataset}.{validate_identifier(name)}")
            return True
        except NotFound:
            return False


class _BigQuerySession(SqlSession):
    """Collects the swap's statements and runs them as one script when the swap is complete."""

    def __init__(self, warehouse: BigQueryWarehouse):
        self.w = warehouse
        self.script: list[str] = []
        self.stages: list[str] = []

    def execute(self, sql: str) -> None:
        self.script.append(sql)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.execute("BEGIN TRANSACTION")
        yield
        self.execute("COMMIT TRANSACTION")

    def flush(self) -> None:
        if self.script:
            self.w.run(";\n".join(self.script))
            self.script = []

    def existing_columns(self, table: str) -> dict[str, ColumnType]:
        return self.w.column_types(table)

    def load_stage(self, table: TableSpec, staging: ParquetStaging, columns: dict[str, ColumnType], token: str) -> str:
        name = f"_stage_{table.name}_{token}"
        destination = f"{self.w.cfg.project}.{self.w.cfg.dataset}.{name}"
        self.stages.append(destination)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            schema=[bigquery.SchemaField(c, "STRING") for c in columns],
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
            create_disposition=bigquery.CreateDisposition.CREATE_IF_NEEDED,
        )
        # One load job for the whole stage: a job per staged file (a page of a company) ran into BigQuery's fixed
        # 1,500 load jobs per table per day on a long backfill. The rows go to one file first, a staged file in
        # memory at a time.
        rows = staging.directory / f"{table.name}.ndjson"
        with rows.open("wb") as out:
            for batch in staging.text_batches(table):
                for row in batch.to_dict(orient="records"):
                    out.write(orjson.dumps(row) + b"\n")
        size = rows.stat().st_size
        if size:
            with rows.open("rb") as body:
                self.w.client.load_table_from_file(
                    body, destination, job_config=config, size=size, location=self.w.cfg.location
                ).result()
        else:
            self.w.client.create_table(bigquery.Table(destination, schema=config.schema), exists_ok=True)
        rows.unlink()
        d = self.w.dialect
        select = ", ".join(f"CAST({d.column(c)} AS {d.types[t]}) AS {d.column(c)}" for c, t in columns.items())
        return f"(SELECT {select} FROM {d.table(name)})"

    def drop_stages(self) -> None:
        for stage in self.stages:
            self.w.client.delete_table(stage, not_found_ok=True)


def _param_type(value: Any) -> str:
    if isinstance(value, datetime):
        return "TIMESTAMP"
    return _PARAM_TYPES.get(type(value), "STRING")


def _client(cfg: BigQueryConfig) -> bigquery.Client:
    from google.api_core.client_options import ClientOptions

    options = ClientOptions(api_endpoint=cfg.api_endpoint) if cfg.api_endpoint else None
    if cfg.api_endpoint:  # a local emulator or fake: no Google credentials exist or are wanted
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=cfg.project, credentials=AnonymousCredentials(), client_options=options, location=cfg.location
        )
    if cfg.credentials_file:
        from google.oauth2 import service_account

        credentials = service_account.Credentials.from_service_account_file(str(cfg.credentials_file))
        return bigquery.Client(project=cfg.project, credentials=credentials, location=cfg.location)
    return bigquery.Client(project=cfg.project, location=cfg.location)
