"""Snowflake backend (snowflake-connector-python, the client under dagster-snowflake).

Names are upper case and quoted, so Looker and analysts can write them unquoted. Timestamps are
TIMESTAMP_NTZ holding UTC (the session's TIMEZONE is UTC too). Batches are uploaded one staged
file at a time with `write_pandas` into a temporary table, then swapped in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import snowflake.connector
from snowflake.connector.pandas_tools import write_pandas

from ..core.errors import ConfigError
from .config import SnowflakeConfig
from .schema import ColumnType, TableSpec, column_type_of, validate_identifier
from .sql_warehouse import SqlDialect, SqlSession, SqlWarehouse
from .staging import ParquetStaging


class SnowflakeDialect(SqlDialect):
    types = {
        ColumnType.STRING: "VARCHAR",
        ColumnType.INTEGER: "NUMBER(38, 0)",
        ColumnType.DECIMAL: "NUMBER(38, 9)",
        ColumnType.DOUBLE: "FLOAT",
        ColumnType.BOOLEAN: "BOOLEAN",
        ColumnType.DATE: "DATE",
        ColumnType.TIMESTAMP: "TIMESTAMP_NTZ",
    }

    one_swap_at_a_time = False  # sessions of several runs may swap one table: see SqlDialect

    def column(self, name: str) -> str:
        return '"' + validate_identifier(name).upper() + '"'

    def string(self, value: str) -> str:
        """Snowflake reads backslash escapes inside single quotes: `TOOLS\\DRILL` was the key `TOOLSDRILL` (its
        deletion missed it), a trailing backslash broke the statement, `\\'` ended the literal early."""
        return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"

    def table(self, name: str) -> str:
        return '"' + validate_identifier(name).upper() + '"'

    def temp_table(self, name: str, select: str) -> str:
        return f"CREATE OR REPLACE TEMPORARY TABLE {self.table(name)} AS {select}"

    def fingerprint(self, expressions: Sequence[str]) -> str:
        return "MD5_BINARY(" + " || CHR(31) || ".join(f"COALESCE(CAST({e} AS VARCHAR), '')" for e in expressions) + ")"

    def timestamp(self, value: datetime) -> str:
        utc = value.astimezone(UTC).replace(tzinfo=None)
        return f"CAST('{utc.isoformat(sep=' ')}' AS TIMESTAMP_NTZ)"


class SnowflakeWarehouse(SqlWarehouse):
    dialect = SnowflakeDialect()

    def __init__(self, cfg: SnowflakeConfig, secret: str | None):
        self.cfg = cfg
        self._secret = secret

    def _connect(self):
        c = self.cfg
        options: dict[str, Any] = {
            "account": c.account,
            "user": c.user,
            "database": c.database,
            "schema": c.schema_name,
            "session_parameters": {"TIMEZONE": "UTC"},
            "application": "ml-connector",
            "paramstyle": "qmark",
        }
        if c.role:
            options["role"] = c.role
        if c.warehouse:
            options["warehouse"] = c.warehouse
        if c.private_key_file is not None:
            options["private_key_file"] = str(c.private_key_file)
            if self._secret:
                options["private_key_file_pwd"] = self._secret
        else:
            if not self._secret:
                raise ConfigError("warehouse.snowflake.password: no value (set the variable or stored credential)")
            options["password"] = self._secret
        try:
            return snowflake.connector.connect(**options)
        except snowflake.connector.errors.DatabaseError as exc:
            message = str(exc).replace(self._secret, "***") if self._secret else str(exc)
            raise ConfigError(f"Snowflake: could not connect to account {c.account} as {c.user}: {message}") from None

    @contextmanager
    def session(self) -> Iterator[_SnowflakeSession]:
        con = self._connect()
        try:
            yield _SnowflakeSession(con, self.dialect)
        finally:
            con.close()

    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple]:
        con = self._connect()
        try:
            return [tuple(r) for r in con.cursor().execute(sql, list(parameters)).fetchall()]
        finally:
            con.close()

    def frame(self, sql: str, parameters: Sequence[Any] = ()) -> pd.DataFrame:
        con = self._connect()
        try:
            cursor = con.cursor().execute(sql, list(parameters))
            return pd.DataFrame(cursor.fetchall(), columns=[c[0] for c in cursor.description])
        finally:
            con.close()

    def table_exists(self, name: str) -> bool:
        return bool(
            self.query(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = CURRENT_SCHEMA() AND table_name = ?",
                [validate_identifier(name).upper()],
            )
        )


class _SnowflakeSession(SqlSession):
    def __init__(self, con, dialect: SnowflakeDialect):
        self.con, self.cursor, self.d = con, con.cursor(), dialect

    def execute(self, sql: str) -> None:
        self.cursor.execute(sql)

    def existing_columns(self, table: str) -> dict[str, ColumnType]:
        rows = self.cursor.execute(
            "SELECT column_name, data_type, numeric_scale FROM information_schema.columns WHERE table_schema = "
            "CURRENT_SCHEMA() AND table_name = ?",
            [validate_identifier(table).upper()],
        ).fetchall()
        return {r[0].lower(): column_type_of(str(r[1]), r[2]) for r in rows}

    def load_stage(self, table: TableSpec, staging: ParquetStaging, columns: dict[str, ColumnType], token: str) -> str:
        name = f"_stage_{table.name}_{token}"
        d = self.d
        self.execute(
            f"CREATE OR REPLACE TEMPORARY TABLE {d.table(name)} "
            f"({', '.join(f'{d.column(c)} VARCHAR' for c in columns)})"
        )
        for batch in staging.text_batches(table):  # one staged file in memory at a time
            batch.columns = [c.upper() for c in batch.columns]
            write_pandas(self.con, batch, name.upper(), quote_identifiers=True, auto_create_table=False)
        select = ", ".join(f"CAST({d.column(c)} AS {d.types[t]}) AS {d.column(c)}" for c, t in columns.items())
        return f"(SELECT {select} FROM {d.table(name)})"
