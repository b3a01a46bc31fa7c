"""The atomic window swap, written once for every SQL warehouse; backends supply dialect and plumbing.

A load stages its batches (staging.py), then in one session: adds new columns and loads the
stage (DDL, which Snowflake and BigQuery cannot run inside a transaction), computes the keys
whose current version may change, and applies every delete and insert in one transaction. If
anything fails before the commit, the old window and current state stay as they were.
"""

from __future__ import annotations

import uuid
from abc import abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.errors import ConnectorError, RecordError
from ..core.memory import release_free_memory
from .base import Deletion, ReplaceScope, Warehouse, WindowLoad
from .schema import (
    COMPANY_ID,
    COMPANY_NAME,
    DELETED,
    EXTRACTED_AT,
    PARENT_ID,
    PARENT_VERSION_ID,
    RUN_ID,
    VERSION_ID,
    WINDOW_START,
    ColumnType,
    TableSpec,
    column_type_of,
    validate_identifier,
)
from .staging import ParquetStaging, staging_folder


class SqlDialect:
    """How a warehouse spells things. Defaults are ANSI / DuckDB."""

    types: dict[ColumnType, str] = {
        ColumnType.STRING: "VARCHAR",
        ColumnType.INTEGER: "BIGINT",
        ColumnType.DECIMAL: "DECIMAL(38, 9)",
        ColumnType.DOUBLE: "DOUBLE",
        ColumnType.BOOLEAN: "BOOLEAN",
        ColumnType.DATE: "DATE",
        ColumnType.TIMESTAMP: "TIMESTAMPTZ",
    }
    union_distinct = "UNION"
    text = "VARCHAR"
    # Whether one swap of a table runs at a time (DuckDB: one writer holds the file): then the keys with several
    # candidate versions may be counted before the transaction. Elsewhere another run's swap of the table may
    # commit between that count and the transaction, so the latest version is picked inside it.
    one_swap_at_a_time = True

    def column(self, name: str) -> str:
        return '"' + validate_identifier(name) + '"'

    def table(self, name: str) -> str:
        return '"' + validate_identifier(name) + '"'

    def temp_table(self, name: str, select: str) -> str:
        return f"CREATE OR REPLACE TEMP TABLE {self.table(name)} AS {select}"

    def values(self, rows: Sequence[str]) -> str:
        """An INSERT's rows, each a comma-separated list of SQL literals."""
        return "VALUES " + ", ".join(f"({row})" for row in rows)

    def string(self, value: str) -> str:
        return "'" + str(value).replace("'", "''") + "'"

    def fingerprint(self, expressions: Sequence[str]) -> str:
        """One 128-bit digest of several values, so a composite key is matched as one value.

        Set lookups on it stay cheap where a join on the key columns would hash all their text;
        two keys share a digest with odds far below one in 10^20 for any realistic load.
        """
        return "md5_number(" + " || chr(31) || ".join(f"COALESCE(CAST({e} AS VARCHAR), '')" for e in expressions) + ")"

    def timestamp(self, value: datetime) -> str:
        utc = value.astimezone(UTC).replace(tzinfo=None)
        return f"TIMESTAMP '{utc.isoformat(sep=' ')}'"

    def is_tombstone(self, alias: str = "") -> str:
        return f"COALESCE({alias}{self.column(DELETED)}, FALSE)"


def window_swap(
    d: SqlDialect,
    tables: Sequence[TableSpec],
    staged: dict[str, list[str]],
    stages: dict[str, str],
    scope: ReplaceScope,
    token: str,
    held: dict[str, list[str]],
) -> tuple[list[str], list[str]]:
    """(prepare, apply): statements that read only, then the ones that must commit together.

    `staged` lists each table's staged columns; `stages` names the relation holding its batches; `held` lists
    every column the table has (the staged ones and any an earlier load brought): a key's version from another
    window is copied back into current state whole, though this window's load may bring fewer columns (none
    but the key when it is empty). Keys are matched by fingerprint (one value per composite key) in temp tables
    computed up front, so no statement has to hold a whole window's rows to compare them; only keys with
    more than one candidate version go through the sort that picks the latest.
    """
    prepare, apply = [], []
    in_scope = (
        f"{d.column(COMPANY_ID)} IN ({', '.join(d.string(c) for c in scope.company_ids)}) "
        f"AND {d.column(WINDOW_START)} >= {d.timestamp(scope.start)} "
        f"AND {d.column(WINDOW_START)} < {d.timestamp(scope.end)}"
    )
    # Tombstones stay when their window is re-read: the source no longer returns the record they end.
    in_scope_versions = f"{in_scope} AND NOT {d.is_tombstone()}"
    affected: dict[str, str] = {}

    def fingerprint(alias: str, columns: Sequence[str]) -> str:
        return d.fingerprint([f"{alias}{d.column(c)}" for c in columns])

    for table in tables:  # parents before children: children follow the parent's current state
        changes, current, stage = d.table(table.changes_table), d.table(table.name), stages[table.name]
        loaded = staged[table.name]
        every = [*loaded, *(c for c in held[table.name] if c not in loaded)]
        stage_columns = ", ".join(d.column(c) for c in loaded)  # what the stage holds
        columns = ", ".join(d.column(c) for c in every)
        t_columns = ", ".join(f"t.{d.column(c)}" for c in every)
        from_stage = ", ".join(
            [*(d.column(c) for c in loaded), *(f"NULL AS {d.column(c)}" for c in every[len(loaded) :])]
        )
        if table.parent is None:
            # Keys whose latest version may change: in the old window rows or in the new ones.
            name = affected[table.name] = f"_swap_affected_{table.name}_{token}"
            own_key = table.key
        else:
            # Lines follow their document: recomputed for every document whose version may change.
            name = affected[table.parent.name]
            own_key = (COMPANY_ID, PARENT_ID)  # _parent_id holds the parent's own key as text
        touched = f"{fingerprint('t.', own_key)} IN (SELECT f FROM {d.table(name)})"
        # Candidates are the new rows as staged plus the touched versions of other windows (and every
        # tombstone), read after this window's old rows left the change log and before the new ones join it.
        if table.parent is None:
            candidates = (
                f"(SELECT {from_stage}, FALSE AS {d.column(DELETED)} FROM {stage} UNION ALL "
                f"SELECT {t_columns}, {d.is_tombstone('t.')} FROM {changes} AS t WHERE {touched})"
            )
        else:
            candidates = (
                f"(SELECT {from_stage} FROM {stage} UNION ALL SELECT {t_columns} FROM {changes} AS t WHERE {touched})"
            )
        apply += [
            f"DELETE FROM {changes} WHERE {in_scope_versions if table.parent is None else in_scope}",
            f"DELETE FROM {current} AS t WHERE {touched}",
        ]
        if table.parent is None:
            repeated_name = f"_swap_repeated_{table.name}_{token}"
            repeated = d.table(repeated_name)
            key = fingerprint("", own_key)
            prepare.append(
                d.temp_table(
                    name,
                    f"SELECT {key} AS f FROM {changes} WHERE {in_scope} "
                    f"{d.union_distinct} SELECT {key} AS f FROM {stage}",
                )
            )
            order = f"c.{d.column(table.modified_column)} DESC, " if table.modified_column else ""
            partition = ", ".join(f"c.{d.column(k)}" for k in table.key)
            latest = (
                f"INSERT INTO {current} ({columns}) SELECT {columns} FROM ("
                f"SELECT c.*, row_number() OVER (PARTITION BY {partition} "
                f"ORDER BY {order}c.{d.column('_extracted_at')} DESC) AS _rn FROM {candidates} AS c"
            )
            if d.one_swap_at_a_time:
                # Keys with more than one candidate version (the change log's are those the swap keeps): only
                # they go through the sort; the others' one version is current as it is.
                prepare.append(
                    d.temp_table(
                        repeated_name,
                        f"SELECT f FROM (SELECT {key} AS f FROM {stage} UNION ALL "
                        f"SELECT {fingerprint('t.', own_key)} AS f FROM {changes} AS t "
                        f"WHERE {touched} AND NOT ({in_scope_versions})) AS k GROUP BY f HAVING count(*) > 1",
                    )
                )
                # The latest version of each key is current, unless it is a tombstone.
                apply += [
                    f"INSERT INTO {current} ({columns}) SELECT {columns} FROM {candidates} AS c "
                    f"WHERE {fingerprint('c.', own_key)} NOT IN (SELECT f FROM {repeated}) "
                    f"AND NOT c.{d.column(DELETED)}",
                    f"{latest} WHERE {fingerprint('c.', own_key)} IN (SELECT f FROM {repeated})) AS r "
                    f"WHERE _rn = 1 AND NOT {d.column(DELETED)}",
                ]
            else:
                # Every key's latest version is picked inside the transaction, from the candidates as they are
                # then: a version or a tombstone another run committed since the prepare counted (a schedule
                # beside a backfill) outranks or joins this load's, where a stale count put a key in twice or
                # brought a deleted record back.
                apply.append(f"{latest}) AS r WHERE _rn = 1 AND NOT {d.column(DELETED)}")
        else:
            parent = table.parent
            current_versions = (
                f"SELECT {fingerprint('p.', [COMPANY_ID, VERSION_ID])} FROM {d.table(parent.name)} AS p "
                f"WHERE {fingerprint('p.', parent.key)} IN (SELECT f FROM {d.table(name)})"
            )
            of_current = f"{fingerprint('c.', [COMPANY_ID, PARENT_VERSION_ID])} IN ({current_versions})"
            # A parent version staged twice (a source repeating a record while it pages) brings its lines twice:
            # each line key once, its latest read.
            once = (
                f"INSERT INTO {current} ({columns}) SELECT {columns} FROM (SELECT c.*, row_number() OVER ("
                f"PARTITION BY {', '.join(f'c.{d.column(k)}' for k in table.key)} "
                f"ORDER BY c.{d.column('_extracted_at')} DESC) AS _rn FROM {candidates} AS c WHERE {of_current}"
            )
            if d.one_swap_at_a_time:  # only the lines of parents with several candidate versions go through it
                repeated_parents = d.table(f"_swap_repeated_{parent.name}_{token}")
                apply += [
                    f"INSERT INTO {current} ({columns}) SELECT {columns} FROM {candidates} AS c WHERE {of_current} "
                    f"AND {fingerprint('c.', own_key)} NOT IN (SELECT f FROM {repeated_parents})",
                    f"{once} AND {fingerprint('c.', own_key)} IN (SELECT f FROM {repeated_parents})) AS r "
                    "WHERE _rn = 1",
                ]
            else:
                apply.append(f"{once}) AS r WHERE _rn = 1")
        apply.append(f"INSERT INTO {changes} ({stage_columns}) SELECT {stage_columns} FROM {stage}")
    return prepare, apply


class SqlSession:
    """One connection for one swap. `transaction()` groups statements that commit together."""

    @abstractmethod
    def execute(self, sql: str) -> None: ...

    @abstractmethod
    def existing_columns(self, table: str) -> dict[str, ColumnType]:
        """The table's columns with their types; none when it does not exist yet."""

    @abstractmethod
    def load_stage(self, table: TableSpec, staging: ParquetStaging, columns: dict[str, ColumnType], token: str) -> str:
        """Make the staged batches queryable, typed as the warehouse columns; returns the relation's SQL."""

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.execute("ROLLBACK")
            raise
        self.execute("COMMIT")


class SqlWarehouse(Warehouse):
    dialect: SqlDialect
    staging_root: Path | None = None  # where loads stage their batches (<data_dir>/staging); a temp folder if unset

    @abstractmethod
    def session(self) -> Any:
        """A context manager yielding a SqlSession."""

    # -- loads ------------------------------------------------------------------------------------

    @contextmanager
    def replace_windows(self, tables: Sequence[TableSpec], scope: ReplaceScope) -> Iterator[WindowLoad]:
        with self._staging(tables) as staging:
            yield staging
            release_free_memory()  # the batches are on disk now; the swap needs the memory they used
            token = uuid.uuid4().hex[:12]
            with self._explaining_cast_failures(staging), self.session() as s:
                for table in tables:  # current state first: a type it holds is the one staged
                    self._ensure_columns(s, table.name, staging.columns[table.name])
                    self._ensure_columns(s, table.changes_table, self._change_log_columns(table, staging))
                stages = {t.name: s.load_stage(t, staging, staging.columns[t.name], token) for t in tables}
                staged = {t.name: list(staging.columns[t.name]) for t in tables}
                held = {t.name: sorted(s.existing_columns(t.name)) for t in tables}
                prepare, apply = window_swap(self.dialect, tables, staged, stages, scope, token, held)
                for statement in prepare:
                    s.execute(statement)
                with s.transaction():
                    for statement in apply:
                        s.execute(statement)

    @contextmanager
    def replace_snapshot(self, table: TableSpec, window_start: datetime | None) -> Iterator[WindowLoad]:
        d = self.dialect
        with self._staging([table]) as staging:
            yield staging
            with self._explaining_cast_failures(staging), self.session() as s:
                self._ensure_columns(s, table.name, staging.columns[table.name])
                stage = s.load_stage(table, staging, staging.columns[table.name], uuid.uuid4().hex[:12])
                columns = ", ".join(d.column(c) for c in staging.columns[table.name])
                where = "TRUE" if window_start is None else f"{d.column(WINDOW_START)} = {d.timestamp(window_start)}"
                with s.transaction():
                    s.execute(f"DELETE FROM {d.table(table.name)} WHERE {where}")
                    s.execute(f"INSERT INTO {d.table(table.name)} ({columns}) SELECT {columns} FROM {stage}")

    @contextmanager
    def apply_changes(self, table: TableSpec, *, deleted: Sequence[str], full: bool) -> Iterator[WindowLoad]:
        d = self.dialect
        (key,) = table.key  # one key column: a change token names records by one id
        with self._staging([table]) as staging:
            yield staging
            columns = staging.columns[table.name]
            with self._explaining_cast_failures(staging), self.session() as s:
                self._ensure_columns(s, table.name, columns)
                staged = staging.rows_written[table.name] > 0
                stage = s.load_stage(table, staging, columns, uuid.uuid4().hex[:12]) if staged else None
                names = ", ".join(d.column(c) for c in columns)
                with s.transaction():
                    if full:
                        s.execute(f"DELETE FROM {d.table(table.name)} WHERE TRUE")
                    elif stage is not None:
                        s.execute(
                            f"DELETE FROM {d.table(table.name)} WHERE {d.column(key)} IN "
                            f"(SELECT {d.column(key)} FROM {stage})"
                        )
                    for start in range(0, len(deleted) if not full else 0, 500):
                        gone = ", ".join(d.string(str(k)) for k in deleted[start : start + 500])
                        s.execute(f"DELETE FROM {d.table(table.name)} WHERE {d.column(key)} IN ({gone})")
                    if stage is not None:
                        s.execute(f"INSERT INTO {d.table(table.name)} ({names}) SELECT {names} FROM {stage}")

    def delete_records(
        self, tables: Sequence[TableSpec], company: dict, deletions: Sequence[Deletion], run_id: str
    ) -> list[str]:
        parent, *children = tables
        if not deletions or not self.table_exists(parent.changes_table):
            return []  # never loaded: nothing to end (a window loading it now finds no record at the source)
        d = self.dialect
        (key_column,) = [k for k in parent.key if k != COMPANY_ID]
        key_type = d.types[parent.types.get(key_column, ColumnType.STRING)]
        of_company = f"{d.column(COMPANY_ID)} = {d.string(company['id'])}"
        as_text = f"CAST({d.column(key_column)} AS {d.text})"
        extracted_at = datetime.now(UTC)
        held = self._held(parent, of_company, as_text, [x.key for x in deletions])  # for the caller's figures
        current_tables = [t for t in (parent, *children) if self.table_exists(t.name)]
        columns = [COMPANY_ID, COMPANY_NAME, key_column, VERSION_ID, WINDOW_START, EXTRACTED_AT, RUN_ID, DELETED]
        columns += [parent.modified_column] if parent.modified_column else []
        with self.session() as s:
            self._ensure_columns(s, parent.changes_table, {DELETED: ColumnType.BOOLEAN})
            with s.transaction():
                for start in range(0, len(deletions), 500):
                    chunk = deletions[start : start + 500]
                    keys = ", ".join(d.string(x.key) for x in chunk)
                    for table in current_tables:
                        column = as_text if table is parent else d.column(PARENT_ID)  # lines name their parent
                        s.execute(f"DELETE FROM {d.table(table.name)} WHERE {of_company} AND {column} IN ({keys})")
                    versions = [f"{x.key}@deleted@{x.deleted_at.astimezone(UTC).isoformat()}" for x in chunk]
                    s.execute(  # the same deletion applied again replaces its tombstone
                        f"DELETE FROM {d.table(parent.changes_table)} WHERE {of_company} AND "
                        f"{d.column(VERSION_ID)} IN ({', '.join(d.string(v) for v in versions)})"
                    )
                    rows = [
                        ", ".join(
                            [
                                d.string(company["id"]),
                                d.string(company["name"]),
                                f"CAST({d.string(x.key)} AS {key_type})",
                                d.string(version),
                                d.timestamp(x.window_start),
                                d.timestamp(extracted_at),
                                d.string(run_id),
                                "TRUE",
                                *([d.timestamp(x.deleted_at)] if parent.modified_column else []),
                            ]
                        )
                        for x, version in zip(chunk, versions, strict=True)
                    ]
                    s.execute(
                        f"INSERT INTO {d.table(parent.changes_table)} ({', '.join(d.column(c) for c in columns)}) "
                        + d.values(rows)
                    )
        return held

    def _held(self, table: TableSpec, of_company: str, as_text: str, keys: Sequence[str]) -> list[str]:
        """Which of `keys` a company's current state holds (read 500 at a time, not the whole key set)."""
        if not self.table_exists(table.name):
            return []
        d, found = self.dialect, set()
        for start in range(0, len(keys), 500):
            listed = ", ".join(d.string(k) for k in keys[start : start + 500])
            found.update(
                str(r[0])
                for r in self.query(
                    f"SELECT {as_text} FROM {d.table(table.name)} WHERE {of_company} AND {as_text} IN ({listed})"
                )
            )
        return sorted(found)

    def current_keys(self, table: TableSpec, company_id: str) -> set[str]:
        if not self.table_exists(table.name):
            return set()
        d = self.dialect
        (key_column,) = [k for k in table.key if k != COMPANY_ID]
        return {
            str(r[0])
            for r in self.query(
                f"SELECT CAST({d.column(key_column)} AS {d.text}) FROM {d.table(table.name)} "
                f"WHERE {d.column(COMPANY_ID)} = {d.string(company_id)}"
            )
        }

    @staticmethod
    def _change_log_columns(table: TableSpec, staging: ParquetStaging) -> dict[str, ColumnType]:
        """A top-level table's change log also holds tombstones: the swap reads their flag."""
        columns = staging.columns[table.name]
        return columns if table.parent is not None else {**columns, DELETED: ColumnType.BOOLEAN}

    @contextmanager
    def _staging(self, tables: Sequence[TableSpec]) -> Iterator[ParquetStaging]:
        with staging_folder(self.staging_root) as directory:
            yield ParquetStaging(directory, tables)

    @contextmanager
    def _explaining_cast_failures(self, staging: ParquetStaging) -> Iterator[None]:
        """A load the warehouse refused because a value does not cast says which value, where."""
        try:
            yield
        except Exception as exc:
            if isinstance(exc, ConnectorError):
                raise
            problem = staging.first_uncastable(SqlDialect.types)
            if problem is None:
                raise
            raise RecordError(
                f"the warehouse refused the load: {problem}; nothing was changed "
                f"({type(exc).__name__}: {str(exc).splitlines()[0][:300]})"
            ) from exc

    def _ensure_columns(self, s: SqlSession, name: str, columns: dict[str, ColumnType]) -> None:
        d = self.dialect
        existing = s.existing_columns(name)
        if not existing:
            definition = ", ".join(f"{d.column(c)} {d.types[t]}" for c, t in columns.items())
            s.execute(f"CREATE TABLE IF NOT EXISTS {d.table(name)} ({definition})")
            return
        for column, column_type in columns.items():
            if column not in existing:  # a field new in the source: a new nullable column
                s.execute(f"ALTER TABLE {d.table(name)} ADD COLUMN {d.column(column)} {d.types[column_type]}")
            elif existing[column] is not column_type:
                # A column an earlier release typed otherwise (a business date held as a timestamp, an amount as
                # text) keeps its type, and the batch is staged in it: BigQuery refused the swap whole, a DATE
                # beside a TIMESTAMP in one UNION ALL.
                columns[column] = existing[column]

    # -- reads ------------------------------------------------------------------------------------

    def read_table(self, name: str, window: tuple[datetime, datetime] | None = None) -> pd.DataFrame:
        d = self.dialect
        sql = f"SELECT * FROM {d.table(name)}"
        if window is not None:
            sql += (
                f" WHERE {d.column(WINDOW_START)} >= {d.timestamp(window[0])} "
                f"AND {d.column(WINDOW_START)} < {d.timestamp(window[1])}"
            )
        frame = self.frame(sql)
        frame.columns = [str(c).lower() for c in frame.columns]
        return frame

    def column_types(self, name: str) -> dict[str, ColumnType]:
        if not self.table_exists(name):
            return {}
        rows = self.query(
            "SELECT column_name, data_type, numeric_scale FROM information_schema.columns "
            f"WHERE table_schema = current_schema() AND lower(table_name) = {self.dialect.string(name.lower())} "
            "ORDER BY ordinal_position"
        )
        return {str(c).lower(): column_type_of(str(t), s) for c, t, s in rows}

    def row_count(self, name: str) -> int:
        if not self.table_exists(name):
            return 0
        return self.query(f"SELECT count(*) FROM {self.dialect.table(name)}")[0][0]

    def duplicate_keys(self, table: TableSpec) -> int:
        if not self.table_exists(table.name):
            return 0
        d = self.dialect
        keys = ", ".join(d.column(k) for k in table.key)
        return self.query(
            f"SELECT count(*) FROM (SELECT {keys} FROM {d.table(table.name)} "
            f"GROUP BY {keys} HAVING count(*) > 1) AS dup"
        )[0][0]

    def loaded_from(self, table: TableSpec, company_id: str) -> datetime | None:
        if not self.table_exists(table.changes_table):
            return None
        d = self.dialect
        value = self.query(
            f"SELECT min({d.column(WINDOW_START)}) FROM {d.table(table.changes_table)} "
            f"WHERE {d.column(COMPANY_ID)} = {d.string(company_id)}"
        )[0][0]
        return _utc(value)

    def current_count(
        self, table: TableSpec, company_id: str, modified_from: datetime, modified_before: datetime
    ) -> int:
        if not self.table_exists(table.name):
            return 0
        d, column = self.dialect, self.dialect.column(table.modified_column)
        return self.query(
            f"SELECT count(*) FROM {d.table(table.name)} WHERE {d.column(COMPANY_ID)} = "
            f"{d.string(company_id)} AND {column} >= {d.timestamp(modified_from)} "
            f"AND {column} < {d.timestamp(modified_before)}"
        )[0][0]


def _utc(value):
    """Warehouses without a zoned timestamp type hand back naive UTC; make it explicit."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
