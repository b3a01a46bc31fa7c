"""A LookML project for the tables the product loads: one view per current-state table, one explore per entity.

Views are typed from the warehouse's own schema (what is there, new source fields included), not from
the catalogs; the catalogs give descriptions, keys, lines and references. An explore starts at an
entity's table and joins its lines (one to many) and what it or its lines refer to in the same company
(many to one: a G/L entry's account, a line's item, an SAP line's account and profit centre). Every
key includes the company, since a Copy Company keeps record ids.

Files are written with `lkml` (LookML's own serializer), so what Looker parses is what was meant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import lkml

from ..core.catalog import ChildEntity, SourceEntity
from ..warehouse.schema import (
    COMPANY_ID,
    COMPANY_NAME,
    EXTRACTED_AT,
    PARENT_ID,
    PARENT_VERSION_ID,
    RUN_ID,
    VERSION_ID,
    WINDOW_START,
    ColumnType,
    TableSpec,
    column_name,
)

MODEL = "mlconnector"
# House columns as Looker users see them; those only the pipeline needs are hidden.
HOUSE = {
    COMPANY_ID: ("company_id", True),
    COMPANY_NAME: ("company_name", False),
    PARENT_ID: ("parent_id", True),
    WINDOW_START: ("window_start", True),
    EXTRACTED_AT: ("extracted_at", True),
    RUN_ID: ("run_id", True),
    VERSION_ID: ("version_id", True),
    PARENT_VERSION_ID: ("parent_version_id", True),
}
_TIME_SUFFIXES = ("_date_time", "_datetime", "_date", "_at", "_time")


@dataclass(frozen=True)
class Dialect:
    """How the selected warehouse names a table and a column in Looker's SQL, and casts to text."""

    table: Callable[[str], str]
    column: Callable[[str], str]
    text: str


@dataclass(frozen=True)
class LoadedTable:
    spec: TableSpec
    item: SourceEntity | ChildEntity  # where its description, key and references come from
    columns: dict[str, ColumnType]  # as the warehouse has them

    @property
    def names(self) -> dict[str, str]:
        """Column → LookML field name: house columns by their plain names (what explores join on); a source
        field that would take one of them (BC's dimension lines have their own `parentId`) says so."""
        house = {c: HOUSE[c][0] for c in self.columns if c in HOUSE}
        taken = set(house.values())
        return {c: house.get(c) or (f"{c}_in_source" if c in taken else c) for c in self.columns}

    def field(self, source_field: str) -> str:
        return self.names[column_name(source_field)]


def view(table: LoadedTable, dialect: Dialect, system: str) -> dict:
    """One view: a dimension per column (times as dimension groups), a hidden composite key, count and sums."""
    dimensions, groups, measures = [], [], []
    names = set(table.names.values())
    key_sql = ", '|', ".join(
        f"CAST(${{TABLE}}.{dialect.column(c)} AS {dialect.text})" for c in table.spec.key if c in table.columns
    )
    dimensions.append(
        {
            "name": "primary_key",
            "primary_key": "yes",
            "hidden": "yes",
            "type": "string",
            "description": "Company and key: one row per record (" + ", ".join(table.spec.key) + ").",
            "sql": f"CONCAT({key_sql})",
        }
    )
    for column, kind in table.columns.items():
        name, hidden = table.names[column], HOUSE.get(column, (None, False))[1]
        sql = f"${{TABLE}}.{dialect.column(column)}"
        if kind in (ColumnType.DATE, ColumnType.TIMESTAMP):
            group = _group_name(name, names)
            timeframes = ["raw", "date", "week", "month", "quarter", "year"]
            if kind is ColumnType.TIMESTAMP:
                timeframes.insert(1, "time")
            groups.append(
                {
                    "name": group,
                    "type": "time",
                    "timeframes": timeframes,
                    "datatype": "date" if kind is ColumnType.DATE else "timestamp",
                    "sql": sql,
                    **({"hidden": "yes"} if hidden else {}),
                }
            )
            continue
        dimension = {"name": name, "type": _looker_type(kind), "sql": sql}
        if hidden:
            dimension["hidden"] = "yes"
        dimensions.append(dimension)
        if kind is ColumnType.DECIMAL and column not in table.spec.key:
            measures.append({"name": f"total_{name}", "type": "sum", "sql": f"${{{name}}}"})
    measures.insert(0, {"name": "count", "type": "count", "description": f"{system}: {table.item.description}"})
    return {
        "name": table.spec.name,
        "sql_table_name": dialect.table(table.spec.name),
        "dimensions": dimensions,
        "dimension_groups": groups,
        "measures": measures,
    }


def explore(
    entity: SourceEntity,
    loaded: dict[str, LoadedTable],
    by_set: dict[str, SourceEntity],
    dialect: Dialect,
    system: str,
) -> dict | None:
    """The entity's table, its lines, and the records they refer to (same company)."""
    base = loaded.get(entity.table)
    if base is None:
        return None
    joins: list[dict] = []
    used = {entity.table}
    for child in entity.children:
        lines = loaded.get(child.table)
        if lines is None:
            continue
        used.add(child.table)
        key = base.field(entity.key)
        joins.append(
            {
                "name": child.table,
                "type": "left_outer",
                "relationship": "one_to_many",
                "sql_on": f"${{{child.table}.parent_id}} = CAST(${{{entity.table}.{key}}} AS {dialect.text}) "
                f"AND ${{{child.table}.company_id}} = ${{{entity.table}.company_id}}",
            }
        )
    for owner, item in ((entity.table, entity), *((c.table, c) for c in entity.children if c.table in used)):
        for reference in item.references:
            target = by_set.get(reference.entity_set)
            referred = loaded.get(target.table) if target is not None else None
            if referred is None or column_name(reference.column) not in loaded[owner].columns:
                continue  # not loaded: no join
            name = target.table if target.table not in used else f"{target.table}_of_{column_name(reference.column)}"
            used.add(name)
            mine, theirs = loaded[owner].field(reference.column), referred.field(reference.field)
            join = {
                "name": name,
                "type": "left_outer",
                "relationship": "many_to_one",
                "sql_on": f"${{{owner}.{mine}}} = ${{{name}.{theirs}}} AND ${{{owner}.company_id}} = ${{{name}.company_id}}",
            }
            if name != target.table:
                join["from"] = target.table
            joins.append(join)
    return {
        "name": entity.table,
        "label": f"{system}: " + " ".join(entity.table.split("_")[1:]).title(),  # "Business Central: Customers"
        "description": entity.description,
        "joins": joins,
    }


def render(views: Sequence[dict], explores: Sequence[dict], connection: str) -> dict[str, str]:
    """File path → LookML text: a model file including every view file."""
    files = {f"views/{v['name']}.view.lkml": lkml.dump({"views": [v]}) for v in views}
    files[f"{MODEL}.model.lkml"] = lkml.dump(
        {"connection": connection, "includes": ["/views/*.view.lkml"], "explores": list(explores)}
    )
    return files


def _looker_type(kind: ColumnType) -> str:
    if kind in (ColumnType.INTEGER, ColumnType.DECIMAL, ColumnType.DOUBLE):
        return "number"
    if kind is ColumnType.BOOLEAN:
        return "yesno"
    return "string"


def _group_name(column: str, taken: set[str]) -> str:
    """`posting_date` → `posting` (fields posting_date, posting_month…); a name that would collide keeps its own."""
    for suffix in _TIME_SUFFIXES:
        if column.endswith(suffix) and len(column) > len(suffix):
            stem = column[: -len(suffix)]
            if stem not in taken:
                return stem
    return column
