"""DuckDB backend: a file under the data folder, the embedded default.

DuckDB lets one process write a file at a time, and Dagster runs steps in parallel processes.
So a load stages its batches in a private folder and takes the warehouse file's lock only
for the short atomic swap, retrying while another step holds it.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import tenacity

from ..core.errors import ConnectorError
from .base import ReplaceScope, Warehouse, WindowLoad
from .schema import (COMPANY_ID, PARENT_ID, PARENT_VERSION_ID, VERSION_ID, WINDOW_START, ColumnType, TableSpec,
                     infer_type, validate_identifier)

log = logging.getLogger("mlconnector.warehouse")

SQL_TYPES = {
    ColumnType.STRING: "VARCHAR", ColumnType.INTEGER: "BIGINT", ColumnType.DECIMAL: "DECIMAL(38, 9)",
    ColumnType.DOUBLE: "DOUBLE", ColumnType.BOOLEAN: "BOOLEAN", ColumnType.DATE: "DATE",
    ColumnType.TIMESTAMP: "TIMESTAMPTZ",
}


def _q(name: str) -> str:
    return '"' + validate_identifier(name) + '"'


def _is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


class DuckDBWarehouse(Warehouse):
    def __init__(self, path: Path, lock_timeout_seconds: float = 600.0, memory_limit: str = "512MB"):
        self.path = Path(path)
        self.lock_timeout_seconds = lock_timeout_seconds
        self.memory_limit = memory_limit
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to the warehouse file, waiting while another process holds its lock."""
        opener = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_is_lock_conflict),
            wait=tenacity.wait_random_exponential(multiplier=0.05, max=2.0),
            stop=tenacity.stop_after_delay(self.lock_timeout_seconds),
            reraise=True,
        )
        read_only = read_only and self.path.exists()
        try:
            con = opener(duckdb.connect, str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            raise ConnectorError(
                f"warehouse {self.path} stayed locked by another process for {self.lock_timeout_seconds:g}s "
                f"(close other DuckDB sessions on it): {exc}") from None
        try:
            con.execute("SET TimeZone = 'UTC'")
            # Past the limit DuckDB spills to disk, so a large window does not grow the step's memory.
            con.execute(f"SET memory_limit = '{self.memory_limit}'")
            yield con
        finally:
            con.close()

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple]:
        with self.connect(read_only=True) as con:
            return con.execute(sql, list(parameters)).fetchall()

    def frame(self, sql: str, parameters: Sequence[Any] = ()) -> pd.DataFrame:
        with self.connect(read_only=True) as con:
            return con.execute(sql, list(parameters)).df()

    def table_exists(self, name: str) -> bool:
        if not self.path.exists():
            return False
        return super().table_exists(name)

    @contextmanager
    def replace_windows(self, tables: Sequence[TableSpec], scope: ReplaceScope) -> Iterator[WindowLoad]:
        staging_dir = Path(tempfile.mkdtemp(prefix="mlconnector-stage-"))
        try:
            load = _DuckDBLoad(staging_dir, tables)
            yield load
            self._swap(load, tables, scope)
        finally:
            shutil.rmtree(staging_dir, ignore_errors=True)

    @contextmanager
    def replace_snapshot(self, table: TableSpec, window_start: datetime | None) -> Iterator[WindowLoad]:
        staging_dir = Path(tempfile.mkdtemp(prefix="mlconnector-stage-"))
        try:
            load = _DuckDBLoad(staging_dir, [table])
            yield load
            with self.connect() as con:
                con.execute("BEGIN TRANSACTION")
                try:
                    self._ensure_columns(con, table.name, load.columns[table.name])
                    if window_start is None:
                        con.execute(f"DELETE FROM {_q(table.name)}")
                    else:
                        con.execute(f"DELETE FROM {_q(table.name)} WHERE {_q(WINDOW_START)} = ?", [window_start])
                    con.execute(f"INSERT INTO {_q(table.name)} BY NAME {load.relation(table)}")
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
        finally:
            shutil.rmtree(staging_dir, ignore_errors=True)

    # -- the atomic swap ----------------------------------------------------------------------

    def _swap(self, load: "_DuckDBLoad", tables: Sequence[TableSpec], scope: ReplaceScope) -> None:
        with self.connect() as con:
            # Row order inside a table carries no meaning here; dropping it lets DuckDB insert in parallel.
            con.execute("SET preserve_insertion_order = false")
            con.execute("BEGIN TRANSACTION")
            try:
                for table in tables:  # parents before children: children join the parent's current state
                    con.execute(f"CREATE OR REPLACE TEMP VIEW {_q('_stage_' + table.name)} AS {load.relation(table)}")
                    self._replace_table(con, table, load.columns[table.name], scope)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def _replace_table(self, con, table: TableSpec, staged: dict[str, ColumnType], scope: ReplaceScope) -> None:
        for name in (table.changes_table, table.name):
            self._ensure_columns(con, name, staged)
        changes, current, stage = _q(table.changes_table), _q(table.name), _q("_stage_" + table.name)
        in_scope = (f"{_q(COMPANY_ID)} IN ({', '.join('?' for _ in scope.company_ids)}) "
                    f"AND {_q(WINDOW_START)} >= ? AND {_q(WINDOW_START)} < ?")
        scope_params = [*scope.company_ids, scope.start, scope.end]
        if table.parent is None:
            # Keys whose latest version may change: in the old window rows or in the new ones.
            affected = _q(f"_affected_{table.name}")
            keys = ", ".join(_q(k) for k in table.key)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {affected} AS "
                        f"SELECT DISTINCT {keys} FROM {changes} WHERE {in_scope} "
                        f"UNION SELECT DISTINCT {keys} FROM {stage}", scope_params)
            match = " AND ".join(f"t.{_q(k)} = a.{_q(k)}" for k in table.key)
        else:
            # Lines follow their document: recompute them for every document whose version may change.
            affected = _q(f"_affected_{table.parent.name}")
            parent_key = _q(table.parent.key[-1])  # the parent's own key; _parent_id holds it as text
            match = f"t.{_q(COMPANY_ID)} = a.{_q(COMPANY_ID)} AND t.{_q(PARENT_ID)} = a.{parent_key}::VARCHAR"
        con.execute(f"DELETE FROM {changes} WHERE {in_scope}", scope_params)
        con.execute(f"INSERT INTO {changes} BY NAME SELECT * FROM {stage}")
        con.execute(f"DELETE FROM {current} AS t USING {affected} AS a WHERE {match}")
        if table.parent is None:
            order = f"{_q(table.modified_column)} DESC, " if table.modified_column else ""
            partition = ", ".join(f"t.{_q(k)}" for k in table.key)
            con.execute(
                f"INSERT INTO {current} BY NAME SELECT * EXCLUDE (_rn) FROM ("
                f"SELECT t.*, row_number() OVER (PARTITION BY {partition} "
                f"ORDER BY {order}t.\"_extracted_at\" DESC) AS _rn "
                f"FROM {changes} AS t SEMI JOIN {affected} AS a ON {match}) WHERE _rn = 1")
        else:
            con.execute(
                f"INSERT INTO {current} BY NAME SELECT t.* FROM {changes} AS t "
                f"SEMI JOIN {affected} AS a ON {match} "
                f"SEMI JOIN {_q(table.parent.name)} AS p ON t.{_q(PARENT_VERSION_ID)} = p.{_q(VERSION_ID)} "
                f"AND t.{_q(COMPANY_ID)} = p.{_q(COMPANY_ID)}")  # keys repeat across companies (SAP DocEntry)

    @staticmethod
    def _ensure_columns(con, name: str, columns: dict[str, ColumnType]) -> None:
        existing = {r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_catalog = current_database() "
            "AND table_schema = 'main' AND table_name = ?",
            [name]).fetchall()}
        if not existing:
            definition = ", ".join(f"{_q(c)} {SQL_TYPES[t]}" for c, t in columns.items())
            con.execute(f"CREATE TABLE {_q(name)} ({definition})")
            return
        for column, column_type in columns.items():
            if column not in existing:  # a field new in the source: a new nullable column
                log.info("warehouse: adding column %s.%s (%s)", name, column, column_type.value)
                con.execute(f"ALTER TABLE {_q(name)} ADD COLUMN {_q(column)} {SQL_TYPES[column_type]}")


class _DuckDBLoad(WindowLoad):
    """Batches staged as Parquet files in a private folder, one file per batch and table.

    Writing Parquet happens in Arrow's C++ code without holding the GIL, so the next page is
    fetched and parsed meanwhile; DuckDB reads and types all files at once during the swap.
    """

    def __init__(self, directory: Path, tables: Sequence[TableSpec]):
        self.directory = directory
        self.columns: dict[str, dict[str, ColumnType]] = {}
        self._rows: dict[str, int] = {}
        self._files: dict[str, int] = {}
        for table in tables:
            known = table.all_types()
            # Columns the swap relies on (a snapshot's: all it declares) exist even when a window brings no rows.
            always = [*table.key, *([table.modified_column] if table.modified_column else [])]
            initial = {c: t for c, t in known.items() if c.startswith("_") or table.snapshot}
            initial.update({c: known.get(c, ColumnType.STRING) for c in always})
            self.columns[table.name] = initial
            self._rows[table.name] = 0
            self._files[table.name] = 0
            (directory / table.name).mkdir(parents=True)

    @property
    def rows_written(self) -> dict[str, int]:
        return dict(self._rows)

    def write(self, table: TableSpec, batch: pd.DataFrame) -> None:
        if batch.empty:
            return
        columns = self.columns[table.name]
        known = table.all_types()
        for column in batch.columns:
            if column not in columns:
                columns[column] = known.get(column) or _infer_column(batch[column])
        self._files[table.name] += 1
        path = self.directory / table.name / f"{self._files[table.name]:06d}.parquet"
        pq.write_table(pa.Table.from_pandas(batch, preserve_index=False), path, compression="snappy")
        self._rows[table.name] += len(batch)

    def relation(self, table: TableSpec) -> str:
        """SQL for the staged rows of a table, typed as the warehouse columns are."""
        columns = self.columns[table.name]
        if self._files[table.name] == 0:
            select = ", ".join(f"CAST(NULL AS {SQL_TYPES[t]}) AS {_q(c)}" for c, t in columns.items())
            return f"SELECT {select} WHERE false"
        pattern = str(self.directory / table.name / "*.parquet").replace("'", "''")
        select = ", ".join(f"CAST({_q(c)} AS {SQL_TYPES[t]}) AS {_q(c)}" for c, t in columns.items())
        return f"SELECT {select} FROM read_parquet('{pattern}', union_by_name = true)"


def _infer_column(series: pd.Series) -> ColumnType:
    non_null = series.dropna()
    return infer_type(non_null.iloc[0]) if len(non_null) else ColumnType.STRING
