"""Batches of a load, staged as Parquet files in a private folder until the atomic swap.

Every backend stages the same way, so a load's memory is one batch whatever the warehouse:
DuckDB reads the files directly; Snowflake and BigQuery upload them one file at a time.
Writing Parquet happens in Arrow's C++ code without holding the GIL, so the next page is
fetched and parsed meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .base import WindowLoad
from .schema import ColumnType, TableSpec


class ParquetStaging(WindowLoad):
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

    def write(self, table: TableSpec, batch: pd.DataFrame | pa.Table) -> None:
        if isinstance(batch, pd.DataFrame):
            batch = pa.Table.from_pandas(batch, preserve_index=False)
        if batch.num_rows == 0:
            return
        columns = self.columns[table.name]
        known = table.all_types()
        for field in batch.schema:
            if field.name not in columns:  # a field new in the source: typed from its values
                columns[field.name] = known.get(field.name) or _column_type(field.type)
        self._files[table.name] += 1
        path = self.directory / table.name / f"{self._files[table.name]:06d}.parquet"
        # LZ4: the files live for one load on local disk; speed matters more than size.
        pq.write_table(batch, path, compression="lz4")
        self._rows[table.name] += batch.num_rows

    def files(self, table: TableSpec) -> list[Path]:
        return sorted((self.directory / table.name).glob("*.parquet"))

    def text_batches(self, table: TableSpec) -> Iterator[pd.DataFrame]:
        """Each staged file as text columns in the table's column order (None for missing values).

        Cloud warehouses load these and CAST in SQL: one exact, dialect-neutral representation
        (decimals keep their digits, timestamps are UTC without an offset to misread).
        """
        columns = self.columns[table.name]
        for path in self.files(table):
            frame = pq.read_table(path).to_pandas()
            yield pd.DataFrame({name: _as_text(frame[name], kind) if name in frame else None
                                for name, kind in columns.items()}, index=frame.index)


def _column_type(kind: pa.DataType) -> ColumnType:
    if pa.types.is_boolean(kind):
        return ColumnType.BOOLEAN
    if pa.types.is_integer(kind):
        return ColumnType.INTEGER
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return ColumnType.DOUBLE
    if pa.types.is_timestamp(kind):
        return ColumnType.TIMESTAMP
    if pa.types.is_date(kind):
        return ColumnType.DATE
    return ColumnType.STRING  # text, and anything nested (kept as its JSON text)


def _as_text(series: pd.Series, kind: ColumnType) -> pd.Series:
    if kind is ColumnType.TIMESTAMP:
        moments = pd.to_datetime(series, utc=True, format="ISO8601")
        return moments.dt.strftime("%Y-%m-%d %H:%M:%S.%f").where(moments.notna(), None)
    if kind is ColumnType.DATE:
        return series.map(lambda v: None if v is None or v is pd.NaT or (isinstance(v, float) and v != v)
                          else v.isoformat()[:10] if isinstance(v, (date, datetime, pd.Timestamp)) else str(v)[:10])
    if kind is ColumnType.BOOLEAN:
        return series.map(lambda v: None if v is None or (isinstance(v, float) and v != v)
                          else "true" if v in (True, "true", "True", 1) else "false")
    return series.map(_text)


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same number
    if isinstance(value, (dict, list)):
        import orjson
        return orjson.dumps(value).decode()
    return str(value)
