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
from .schema import ColumnType, TableSpec, infer_type


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

    def write(self, table: TableSpec, batch: pd.DataFrame) -> None:
        if batch.empty:
            return
        columns = self.columns[table.name]
        known = table.all_types()
        for column in batch.columns:
            if column not in columns:  # a field new in the source: typed from its values
                columns[column] = known.get(column) or _infer_column(batch[column])
        self._files[table.name] += 1
        path = self.directory / table.name / f"{self._files[table.name]:06d}.parquet"
        pq.write_table(pa.Table.from_pandas(batch, preserve_index=False), path, compression="snappy")
        self._rows[table.name] += len(batch)

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


def _infer_column(series: pd.Series) -> ColumnType:
    non_null = series.dropna()
    return infer_type(non_null.iloc[0]) if len(non_null) else ColumnType.STRING


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
