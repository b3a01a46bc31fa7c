"""Warehouse naming, and the description of a change-log/current-state table pair."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..core.types import ColumnType

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,127}$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def column_name(source_field: str) -> str:
    """Source field -> warehouse column: snake_case, restricted to safe identifier characters."""
    name = _CAMEL.sub("_", source_field).lower()
    name = re.sub(r"[^a-z0-9_]", "_", name)
    if not name or name[0].isdigit():
        name = f"f_{name}"
    return name


def validate_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"unsafe warehouse identifier {name!r}")
    return name


# Columns every change-log row carries.
COMPANY_ID = "_company_id"
COMPANY_NAME = "_company_name"
WINDOW_START = "_window_start"
EXTRACTED_AT = "_extracted_at"
RUN_ID = "_run_id"
VERSION_ID = "_version_id"  # identifies one version of one record: "<id>@<modified>"
PARENT_ID = "_parent_id"
PARENT_VERSION_ID = "_parent_version_id"
SOURCE = "_source"  # where a snapshot's rows came from: the API, or a delivery's id
ROW_NUMBER = "_row_number"  # a snapshot row's place in the result (1-based): what a journal line traces to
# A Looker result's: the zone whose wall-clock time Looker showed each date-time column in, as JSON
# {"<column>": "<zone>"} (they land as UTC moments; a journal reads its posting date on the day Looker showed).
DATE_TIME_ZONES = "_date_time_zones"
# Change log only: TRUE on a tombstone, the version that says a record was deleted at the source
# (NULL on every other version). Current state never holds one, so it has no such column.
DELETED = "_deleted"

_COMMON_METADATA = {
    COMPANY_ID: ColumnType.STRING,
    COMPANY_NAME: ColumnType.STRING,
    WINDOW_START: ColumnType.TIMESTAMP,
    EXTRACTED_AT: ColumnType.TIMESTAMP,
    RUN_ID: ColumnType.STRING,
}
METADATA_TYPES = {**_COMMON_METADATA, VERSION_ID: ColumnType.STRING}
# A line is identified by its parent's version and its own key; it needs no version id of its own.
CHILD_METADATA_TYPES = {**_COMMON_METADATA, PARENT_ID: ColumnType.STRING, PARENT_VERSION_ID: ColumnType.STRING}
# A snapshot (a report's result) has no company or versions: its rows per window are replaced whole.
SNAPSHOT_METADATA_TYPES = {
    WINDOW_START: ColumnType.TIMESTAMP,
    EXTRACTED_AT: ColumnType.TIMESTAMP,
    RUN_ID: ColumnType.STRING,
    SOURCE: ColumnType.STRING,
}


def column_type_of(sql_type: str, scale: int | None = None) -> ColumnType:
    """A warehouse's own type name (DuckDB, Snowflake or BigQuery) as the product's column type."""
    name = sql_type.upper().split("(")[0].strip()
    if name in ("NUMBER", "NUMERIC", "DECIMAL", "BIGNUMERIC"):
        inside = sql_type[sql_type.find("(") + 1 : sql_type.find(")")] if "(" in sql_type else ""
        scale = int(inside.split(",")[1]) if "," in inside else scale
        return ColumnType.INTEGER if name == "NUMBER" and not scale else ColumnType.DECIMAL
    if name in ("BIGINT", "INTEGER", "INT", "INT64", "SMALLINT", "TINYINT", "HUGEINT", "UBIGINT"):
        return ColumnType.INTEGER
    if name in ("DOUBLE", "FLOAT", "FLOAT64", "REAL", "FLOAT8"):
        return ColumnType.DOUBLE
    if name in ("BOOLEAN", "BOOL"):
        return ColumnType.BOOLEAN
    if name == "DATE":
        return ColumnType.DATE
    if name.startswith("TIMESTAMP") or name == "DATETIME":
        return ColumnType.TIMESTAMP
    return ColumnType.STRING


@dataclass(frozen=True)
class TableSpec:
    """A `<name>_changes` table (every version, by window) and a `<name>` current-state table.

    Current state of a top-level table: the latest version per key. Of a child table (lines):
    the rows of the current version of their parent, so lines removed from a document vanish.
    """

    name: str
    key: tuple[str, ...]
    modified_column: str | None
    types: dict[str, ColumnType] = field(default_factory=dict)
    parent: TableSpec | None = None
    snapshot: bool = False  # one table, rows replaced per window; no change log, no current state

    def __post_init__(self) -> None:
        validate_identifier(self.name)

    @property
    def changes_table(self) -> str:
        return f"{self.name}_changes"

    def all_types(self) -> dict[str, ColumnType]:
        metadata = SNAPSHOT_METADATA_TYPES if self.snapshot else CHILD_METADATA_TYPES if self.parent else METADATA_TYPES
        return {**metadata, **self.types}
