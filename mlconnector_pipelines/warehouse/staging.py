"""Batches of a load, staged as Parquet files in a private folder until the atomic swap.

Every backend stages the same way, so a load's memory is one batch whatever the warehouse:
DuckDB reads the files directly; Snowflake and BigQuery upload them one file at a time.
Writing Parquet happens in Arrow's C++ code without holding the GIL, so the next page is
fetched and parsed meanwhile.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..core.windows import one_moment
from .base import WindowLoad
from .schema import COMPANY_ID, WINDOW_START, ColumnType, TableSpec

log = logging.getLogger("mlconnector.warehouse")

_LOCK = ".in-use"
# A folder this young may be one another process has just made and not yet locked.
_STALE_AFTER_SECONDS = 60.0


@contextmanager
def staging_folder(root: Path | None) -> Iterator[Path]:
    """A private folder for one load under `root` (the data folder's `staging/`), removed afterwards.

    A process killed mid-load (out of memory, a lost node) cannot remove its folder; it holds an
    exclusive lock on it while alive instead, so the next load finds unlocked folders and clears
    them. Without a root (a warehouse used on its own) the folder is a system temporary one.
    """
    if root is None:
        directory = Path(tempfile.mkdtemp(prefix="mlconnector-stage-"))
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    root.mkdir(parents=True, exist_ok=True)
    clear_stale_staging(root)
    directory = Path(tempfile.mkdtemp(prefix="load-", dir=root))
    with open(directory / _LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def clear_stale_staging(root: Path, older_than_seconds: float = _STALE_AFTER_SECONDS) -> list[Path]:
    """Remove the staging folders under `root` that no live process holds; returns them."""
    removed = []
    for directory in root.glob("load-*"):
        try:
            if time.time() - directory.stat().st_mtime < older_than_seconds:
                continue
            with open(directory / _LOCK, "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # only a dead load's folder is free
                shutil.rmtree(directory, ignore_errors=True)
        except BlockingIOError:
            continue  # a load in progress
        except FileNotFoundError:
            continue  # removed meanwhile by its own load
        removed.append(directory)
        log.info("removed %s, left behind by a load that did not finish (its process is gone)", directory)
    return removed


class ParquetStaging(WindowLoad):
    def __init__(self, directory: Path, tables: Sequence[TableSpec]):
        self.directory = directory
        self.columns: dict[str, dict[str, ColumnType]] = {}
        self._rows: dict[str, int] = {}
        self._files: dict[str, int] = {}
        self._specs = {table.name: table for table in tables}
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

    def write(self, table: TableSpec, batch: pd.DataFrame | pa.Table) -> None:
        if isinstance(batch, pd.DataFrame):
            batch = pa.Table.from_pandas(batch, preserve_index=False)
        if batch.num_rows == 0:
            return
        columns = self.columns[table.name]
        known = table.all_types()
        for field in batch.schema:
            if field.name not in columns:  # a field new in the source: typed from its values
                if pa.types.is_null(field.type) and field.name not in known:
                    # No value to type it by yet: made a text column, it stayed one when amounts came (and on
                    # BigQuery every later load failed, NUMERIC beside STRING). It waits for its first value.
                    continue
                columns[field.name] = known.get(field.name) or _column_type(field.type)
        self._files[table.name] += 1
        path = self.directory / table.name / f"{self._files[table.name]:06d}.parquet"
        # LZ4: the files live for one load on local disk; speed matters more than size.
        pq.write_table(batch, path, compression="lz4")
        self._rows[table.name] += batch.num_rows

    def files(self, table: TableSpec) -> list[Path]:
        return sorted((self.directory / table.name).glob("*.parquet"))

    def first_uncastable(self, types: dict[ColumnType, str]) -> str | None:
        """Where a staged value does not cast to its column type (`types`: DuckDB's type names), or None.

        Run after a load failed: DuckDB's TRY_CAST over the staged files names the table, column,
        value, company, window and record key that the warehouse refused.
        """
        import duckdb

        with duckdb.connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            for name, columns in self.columns.items():
                files = sorted((self.directory / name).glob("*.parquet"))
                if not files:
                    continue
                listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
                staged = f"read_parquet([{listed}], union_by_name = true)"
                present = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {staged}").fetchall()}
                keys = [k for k in self._specs[name].key if k in present and k != COMPANY_ID]
                shown = [c for c in (COMPANY_ID, WINDOW_START, *keys) if c in present]
                for column, kind in columns.items():
                    if kind is ColumnType.STRING or column not in present:
                        continue
                    row = con.execute(
                        f'SELECT "{column}", ' + ", ".join(f'"{c}"' for c in shown) + f" FROM {staged} "
                        f'WHERE "{column}" IS NOT NULL AND TRY_CAST("{column}" AS {types[kind]}) IS NULL LIMIT 1'
                    ).fetchone()
                    if row is not None:
                        value, *where = row
                        facts = dict(zip(shown, where, strict=True))
                        key = ", ".join(f"{k} {facts[k]!r}" for k in keys) or "no key"
                        return (
                            f"{name}.{column}: {value!r} is not a valid {kind.value} ({types[kind]}) — record "
                            f"{key} of company {facts.get(COMPANY_ID)}, window starting {facts.get(WINDOW_START)}"
                        )
        return None

    def text_batches(self, table: TableSpec) -> Iterator[pd.DataFrame]:
        """Each staged file as text columns in the table's column order (None for missing values).

        Cloud warehouses load these and CAST in SQL: one exact, dialect-neutral representation
        (decimals keep their digits, timestamps are UTC without an offset to misread).
        """
        columns = self.columns[table.name]
        for path in self.files(table):
            # An int beside a null stays an int (not a float, nor pandas' nullable Int64, which maps through one)
            frame = pq.read_table(path).to_pandas(integer_object_nulls=True, ignore_metadata=True)
            yield pd.DataFrame(
                {name: _as_text(frame[name], kind) if name in frame else None for name, kind in columns.items()},
                index=frame.index,
            )


def _column_type(kind: pa.DataType) -> ColumnType:
    if pa.types.is_boolean(kind):
        return ColumnType.BOOLEAN
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        # A number the source's catalog does not declare is most likely money or a quantity (a field the
        # customer added): exact, and never integer only because the first batch's values were whole.
        return ColumnType.DECIMAL
    if pa.types.is_timestamp(kind):
        return ColumnType.TIMESTAMP
    if pa.types.is_date(kind):
        return ColumnType.DATE
    return ColumnType.STRING  # text, and anything nested (kept as its JSON text)


def _as_text(series: pd.Series, kind: ColumnType) -> pd.Series:
    if kind is ColumnType.TIMESTAMP:
        try:
            moments = pd.to_datetime(series, utc=True, format="ISO8601")
        except pd.errors.OutOfBoundsDatetime:  # 9999-12-31 ("no end"), 1601: past pandas' nanoseconds
            return series.map(_utc_text)
        return moments.dt.strftime("%Y-%m-%d %H:%M:%S.%f").where(moments.notna(), None)
    if kind is ColumnType.DATE:
        return series.map(
            lambda v: (
                None
                if v is None or v is pd.NaT or (isinstance(v, float) and v != v)
                else v.isoformat()[:10]
                if isinstance(v, (date, datetime, pd.Timestamp))
                else str(v)[:10]
            )
        )
    if kind is ColumnType.BOOLEAN:
        return series.map(
            lambda v: (
                None
                if v is None or (isinstance(v, float) and v != v)
                else "true"
                if v in (True, "true", "True", 1)
                else "false"
            )
        )
    return series.map(_text)


def _utc_text(value) -> str | None:
    """One moment (a datetime, or ISO text; naive means UTC) as UTC text, any year from 1 to 9999."""
    moment = one_moment(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if moment is not None else None


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same number
    if isinstance(value, (dict, list)):
        import orjson

        return orjson.dumps(value).decode()
    return str(value)
