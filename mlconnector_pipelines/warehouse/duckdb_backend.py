"""DuckDB backend: a file under the data folder, the embedded default.

DuckDB lets one process write a file at a time, and Dagster runs steps in parallel processes.
So a load stages its batches in a private folder and takes the warehouse file's lock only
for the short atomic swap, retrying while another step holds it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa
import tenacity

from ..core.errors import ConnectorError
from . import DUCKDB_DEFAULT_MEMORY_LIMIT
from .schema import ColumnType, TableSpec, column_type_of
from .sql_warehouse import SqlDialect, SqlSession, SqlWarehouse
from .staging import ParquetStaging

log = logging.getLogger("mlconnector.warehouse")
_LOCK_WAIT_REMINDER_SECONDS = 30.0

# Integers and booleans stay integers and booleans when a column has NULLs (as DuckDB's .df() keeps them).
_NULLABLE = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.bool_(): pd.BooleanDtype(),
}


class WarehouseLocked(ConnectorError):
    """Another process held the DuckDB file's lock for longer than this one waits."""

    fix = "close the other DuckDB session on the file (a DuckDB CLI, a notebook), or wait for the step writing it"


def _is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


class DuckDBWarehouse(SqlWarehouse):
    dialect = SqlDialect()

    def __init__(
        self, path: Path, lock_timeout_seconds: float = 600.0, memory_limit: str = DUCKDB_DEFAULT_MEMORY_LIMIT
    ):
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
            before_sleep=self._say_we_wait(read_only),
            reraise=True,
        )
        read_only = read_only and self.path.exists()
        try:
            con = opener(duckdb.connect, str(self.path), read_only=read_only)
        except duckdb.IOException as exc:
            raise WarehouseLocked(
                f"warehouse file {self.path} locked by another process ({exc}); waited "
                f"{self.lock_timeout_seconds:g}s: {WarehouseLocked.fix}"
            ) from None
        try:
            con.execute("SET TimeZone = 'UTC'")
            # Past the limit DuckDB spills to disk, so a large window does not grow the step's memory.
            con.execute(f"SET memory_limit = '{self.memory_limit}'")
            yield con
        finally:
            con.close()

    def _say_we_wait(self, read_only: bool):
        """A wait for the file lock shows in the run's log: at once, then every half minute."""
        said_at: list[float] = []

        def say(retry_state: tenacity.RetryCallState) -> None:
            now = time.monotonic()
            if said_at and now - said_at[-1] < _LOCK_WAIT_REMINDER_SECONDS:
                return
            said_at.append(now)
            waited = retry_state.seconds_since_start or 0.0
            log.warning(
                "waiting for the DuckDB warehouse %s: another process holds its lock (DuckDB allows one "
                "writer process at a time; a Dagster step's swap, or a DuckDB session left open on the "
                "file); waited %.0fs, giving up after %gs",
                self.path,
                waited,
                self.lock_timeout_seconds,
            )

        return say

    @contextmanager
    def session(self) -> Iterator[_DuckDBSession]:
        with self.connect() as con:
            # Row order inside a table carries no meaning here; dropping it lets DuckDB insert in parallel.
            con.execute("SET preserve_insertion_order = false")
            yield _DuckDBSession(con)

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple]:
        with self.connect(read_only=True) as con:
            return con.execute(sql, list(parameters)).fetchall()

    def frame(self, sql: str, parameters: Sequence[Any] = ()) -> pd.DataFrame:
        """Through Arrow, so DECIMAL columns arrive as exact Decimals (DuckDB's own .df() makes them floats)."""
        with self.connect(read_only=True) as con:
            table = con.sql(sql, params=list(parameters) or None).to_arrow_table()
        return table.to_pandas(types_mapper=_NULLABLE.get)

    def table_exists(self, name: str) -> bool:
        if not self.path.exists():
            return False
        return bool(self.query("SELECT 1 FROM information_schema.tables WHERE table_name = ?", [name]))


class _DuckDBSession(SqlSession):
    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    def execute(self, sql: str) -> None:
        self.con.execute(sql)

    def existing_columns(self, table: str) -> dict[str, ColumnType]:
        return {
            r[0]: column_type_of(r[1])
            for r in self.con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = "
                "current_database() AND table_schema = 'main' AND table_name = ?",
                [table],
            ).fetchall()
        }

    def load_stage(self, table: TableSpec, staging: ParquetStaging, columns: dict[str, ColumnType], token: str) -> str:
        """A temporary view over the Parquet files, cast to the warehouse types; DuckDB reads them in the swap."""
        d = DuckDBWarehouse.dialect
        name = d.table(f"_stage_{table.name}_{token}")
        if not staging.files(table):
            select = ", ".join(f"CAST(NULL AS {d.types[t]}) AS {d.column(c)}" for c, t in columns.items())
            self.con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {select} WHERE false")
            return name
        pattern = str(staging.directory / table.name / "*.parquet").replace("'", "''")
        select = ", ".join(f"CAST({d.column(c)} AS {d.types[t]}) AS {d.column(c)}" for c, t in columns.items())
        self.con.execute(
            f"CREATE OR REPLACE TEMP VIEW {name} AS "
            f"SELECT {select} FROM read_parquet('{pattern}', union_by_name = true)"
        )
        return name
