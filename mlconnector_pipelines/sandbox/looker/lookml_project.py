"""LookML projects loaded from a directory: their models' explores, compiled to DuckDB SQL over the warehouse.

A project directory holds `<model>.model.lkml` files (anywhere below it) and the files they
`include:` (views, explores). `lkml` parses each file; this module binds every explore's views
to their aliases once, at load, and compiles each API query to one SQL statement as Looker does:

* fields are `<view alias>.<field>`; a `dimension_group` of `type: time` gives one dimension per
  timeframe, named `<group>_<timeframe>` (`created_date`, `created_month`);
* `${TABLE}`, `${field}`, `${view.field}` and `${[view.]SQL_TABLE_NAME}` in `sql`, `sql_on`,
  `sql_always_where`; a referenced field's SQL is inlined in parentheses;
* only the joins a query needs (its fields, filters, `sql_on` dependencies, `required_joins`);
* symmetric aggregates: a `sum`, `average`, `count`, `median` or `percentile` measure of a view
  whose rows a join in the query repeats (the other side of a `one_to_many`, either side of a
  `many_to_many`, the joined view of a `many_to_one`) aggregates each primary key once per result
  row, exactly (no hashing), so a document total stays the documents' total with their lines
  joined. Without a `primary_key` such a measure is refused, as Looker refuses it.

What the sandbox cannot compute it refuses by name, at load (unsupported field types, timeframes,
remote includes, refinements) or at query time (a field whose SQL references what the explore
lacks). The LookML `connection:` is not used: every model reads the sandbox warehouse.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import lkml

from . import models
from .models import MODEL, Field, QueryError, filter_sql

# -- what the sandbox supports ---------------------------------------------------------------------

# timeframe -> (how a filter on it reads: date | number | string, SQL over the point in time `{t}`)
TIMEFRAMES: dict[str, tuple[str, str]] = {
    "raw": ("date", "{t}"),
    "time": ("date", "date_trunc('second', CAST({t} AS TIMESTAMP))"),
    "minute": ("date", "strftime({t}, '%Y-%m-%d %H:%M')"),
    "hour": ("date", "strftime({t}, '%Y-%m-%d %H')"),
    "date": ("date", "CAST({t} AS DATE)"),
    "week": ("date", "CAST(date_trunc('week', {t}) AS DATE)"),  # weeks start on Monday, Looker's default
    "month": ("date", "strftime({t}, '%Y-%m')"),
    "quarter": ("date", "strftime({t}, '%Y') || '-Q' || CAST(quarter({t}) AS VARCHAR)"),
    "year": ("date", "year({t})"),
    "hour_of_day": ("number", "hour({t})"),
    "day_of_week": ("string", "dayname({t})"),
    "day_of_week_index": ("number", "(isodow({t}) - 1)"),
    "day_of_month": ("number", "day({t})"),
    "day_of_year": ("number", "dayofyear({t})"),
    "week_of_year": ("number", "weekofyear({t})"),
    "month_num": ("number", "month({t})"),
    "month_name": ("string", "monthname({t})"),
    "quarter_of_year": ("string", "'Q' || CAST(quarter({t}) AS VARCHAR)"),
}
DATATYPES = {
    "datetime": "{r}",
    "timestamp": "{r}",
    "date": "{r}",
    "epoch": "to_timestamp({r})",
    "yyyymmdd": "strptime(CAST({r} AS VARCHAR), '%Y%m%d')",
}
DIMENSION_TYPES = {"string", "number", "yesno", "date", "date_time", "zipcode"}
# Looker converts a point in time from the database's zone (the sandbox warehouse's: UTC) into the query's
# `query_timezone` before taking its timeframes; a calendar date (datatype date, yyyymmdd) has no zone.
ZONED_DATATYPES = {"datetime", "timestamp", "epoch"}
# Where the query's zone goes: bound once at load, written per query by ProjectExplore.compile.
QUERY_ZONE = "\x00query_timezone\x00"
AGGREGATES = {
    "sum": "SUM({v})",
    "average": "AVG({v})",
    "count": "COUNT({v})",
    "count_distinct": "COUNT(DISTINCT {v})",
    "min": "MIN({v})",
    "max": "MAX({v})",
    "median": "MEDIAN({v})",
    "percentile": "QUANTILE_CONT({v}, {p})",
    "sum_distinct": "SUM({v})",
    "average_distinct": "AVG({v})",
}
MEASURE_TYPES = set(AGGREGATES) | {"number"}
SYMMETRIC = {"sum", "average", "count", "median", "percentile"}  # wrong when their view's rows repeat
DISTINCT_BY_KEY = {"sum_distinct", "average_distinct"}  # always aggregate once per sql_distinct_key
JOIN_TYPES = {"left_outer": "LEFT JOIN", "inner": "INNER JOIN", "full_outer": "FULL OUTER JOIN", "cross": "CROSS JOIN"}
RELATIONSHIPS = {"one_to_one", "many_to_one", "one_to_many", "many_to_many"}

_REF = re.compile(r"\$\{\s*([^}]*?)\s*\}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class LookmlError(Exception):
    """A project the sandbox cannot load: every problem found, each naming its file."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


class _Unresolvable(Exception):
    pass


def title(name: str) -> str:
    """Looker's label for a name it was not given one for: words capitalised, `id` as ID."""
    return " ".join("ID" if w.lower() == "id" else w[:1].upper() + w[1:] for w in name.split("_") if w)


def _yes(value) -> bool:
    return str(value).strip().lower() == "yes"


# -- the project's definitions, as parsed ---------------------------------------------------------


@dataclass(frozen=True)
class FieldDef:
    short: str  # the field's name in its view (a timeframe: `<group>_<timeframe>`)
    category: str  # dimension | measure
    type: str  # Looker's field type: string, number, yesno, date_month, sum, count, ...
    sql: str | None  # as written (a timeframe: its group's)
    label: str
    description: str | None = None
    hidden: bool = False
    primary_key: bool = False
    group: str | None = None  # the dimension_group of a timeframe
    timeframe: str | None = None
    datatype: str | None = None
    group_label: str | None = None
    filters: tuple[tuple[str, str], ...] = ()  # a measure's `filters:` (dimension, Looker filter expression)
    distinct_key: str | None = None  # sql_distinct_key
    percentile: float | None = None
    convert_tz: bool = True  # `convert_tz: no`: values as the database holds them (filters still convert)


@dataclass
class ViewDef:
    name: str
    table: str  # what FROM names: sql_table_name as written, or a parenthesized derived table
    source_file: str
    label: str | None
    fields: dict[str, FieldDef]
    primary_key: str | None


@dataclass(frozen=True)
class LookmlField(Field):
    """A field of an explore, bound to its view's alias: what a query selects, filters and sorts by."""

    view: str = ""  # the alias
    original_view: str = ""
    view_label: str = ""
    definition: FieldDef | None = None
    expr: str = ""  # a dimension's value; an aggregate measure's argument (none for count)
    ref: str = ""  # what `${field}` inlines (a yesno's condition, not its Yes/No)
    point: str = ""  # a time's point in time, which a date filter compares (a month's day, not 'YYYY-MM')
    aliases: frozenset[str] = frozenset()  # the aliases its SQL reads
    condition: str = ""  # a measure's `filters:`, compiled
    distinct_key: str = ""
    template: str = ""  # a type: number measure's SQL, its measure references marked
    refs: tuple[str, ...] = ()
    error: str | None = None  # why the sandbox cannot compute it in this explore

    @property
    def full_label(self) -> str:
        return f"{self.view_label} {self.label}"

    @property
    def filter_kind(self) -> str:
        d = self.definition
        if d is not None and d.timeframe:
            return TIMEFRAMES[d.timeframe][0]
        if self.type in ("date", "date_time"):
            return "date"
        return "number" if self.category == "measure" or self.type == "number" else "string"

    @property
    def is_date(self) -> bool:
        return self.filter_kind == "date"

    @property
    def is_numeric(self) -> bool:
        return self.filter_kind == "number"


@dataclass(frozen=True)
class JoinDef:
    alias: str
    view: ViewDef
    type: str
    relationship: str
    sql_on: str | None
    foreign_key: str | None
    sql_foreign_key: str | None
    required: tuple[str, ...]
    view_label: str | None
    on: str = ""  # compiled condition
    depends: frozenset[str] = frozenset()  # aliases the condition reads, besides its own


@dataclass
class ProjectExplore:
    model: str
    name: str
    label: str
    description: str | None
    hidden: bool
    base_alias: str
    base: ViewDef
    joins: list[JoinDef]  # dependencies first
    fields: dict[str, LookmlField]
    keys: dict[str, tuple[str, frozenset[str]] | None]  # alias -> its primary key's SQL
    symmetric: bool
    always_where: tuple[str, frozenset[str]] | None
    always_join: tuple[str, ...]
    connection: str | None
    project: str
    source_file: str

    @property
    def table(self) -> str:
        return self.base.table

    # -- queries ----------------------------------------------------------------------------------

    def field(self, name: str, where: str) -> LookmlField:
        found = self.fields.get(name)
        if found is None:
            kind = "filter field" if where == "filters" else "field"
            raise QueryError(422, f"Unknown {kind} '{name}' in explore '{self.name}'.", where)
        if found.error:
            raise QueryError(400, f"Field '{name}' in explore '{self.name}': {found.error}")
        return found

    def compile(self, query: dict, limit: int | None) -> tuple[str, list, list[LookmlField]]:
        """SQL, its parameters, and the selected fields in order.

        Three levels: the joined rows (dimensions, measure arguments, the keys that deduplicate),
        each key's first row per result row flagged, then the groups and their aggregates."""
        names = query.get("fields") or []
        if not names:
            raise QueryError(422, "A query needs at least one field.", "fields")
        fields = [self.field(n, "fields") for n in names]
        filters = [(self.field(n, "filters"), str(e)) for n, e in (query.get("filters") or {}).items()]
        dimensions = [f for f in fields if f.category == "dimension"]
        measures = self._measures_needed([f for f in fields if f.category == "measure"] + [
            f for f, _ in filters if f.category == "measure"
        ])  # fmt: skip
        aggregates = [m for m in measures if m.type != "number"]
        joins = self._joins_for(self._aliases_read(dimensions, aggregates, filters))
        rows, params, argument = self._rows(dimensions, aggregates, filters, joins)

        outer: dict[str, str] = {}
        for m in measures:
            self._aggregate(m, argument, outer)
        select = []
        for f in fields:
            value = f'"__d{dimensions.index(f)}"' if f.category == "dimension" else outer[f.name]
            select.append(f'{value} AS "{f.name}"')
        text = f"SELECT {', '.join(select)} FROM ({rows}) AS __rows"
        if dimensions and measures:
            text += " GROUP BY " + ", ".join(f'"__d{i}"' for i in range(len(dimensions)))
        elif dimensions:
            text = text.replace("SELECT ", "SELECT DISTINCT ", 1)
        having = [_filter(f, outer[f.name], outer[f.name], e) for f, e in filters if f.category == "measure"]
        if having:
            text += " HAVING " + " AND ".join(sql for sql, _ in having)
        text += " ORDER BY " + ", ".join(models._order(None, fields, query.get("sorts") or []))
        if limit is not None:
            text += f" LIMIT {int(limit)}"
        text = text.replace(QUERY_ZONE, _literal(query.get("query_timezone") or "UTC"))
        return text, params + [v for _, values in having for v in values], fields

    def _aliases_read(self, dimensions, aggregates, filters) -> set[str]:
        wanted = {self.base_alias, *self.always_join}
        for f in dimensions + aggregates + [f for f, _ in filters if f.category == "dimension"]:
            wanted |= f.aliases | {f.view}
        for m in aggregates:
            wanted |= self.keys[m.view][1] if self.keys.get(m.view) else set()
        if self.always_where:
            wanted |= self.always_where[1]
        return wanted

    def _rows(self, dimensions, aggregates, filters, joins) -> tuple[str, list, dict[str, str]]:
        """The joined, filtered rows; and what each aggregate measure aggregates over them."""
        repeated = self._repeated(joins)
        columns = [f'{d.expr} AS "__d{i}"' for i, d in enumerate(dimensions)]
        keys: dict[str, int] = {}
        argument: dict[str, str] = {}
        for j, m in enumerate(aggregates):
            value = m.expr or (self.keys[m.view][0] if self.keys.get(m.view) else "1")
            if m.condition:
                value = f"CASE WHEN {m.condition} THEN {value} END"
            columns.append(f'{value} AS "__m{j}"')
            key = self._dedupe_key(m, repeated)
            if key is None:
                argument[m.name] = f'"__m{j}"'
            else:
                n = keys.setdefault(key, len(keys))
                argument[m.name] = f'CASE WHEN "__f{n}" THEN "__m{j}" END'
        columns += [f'{key} AS "__k{n}"' for key, n in keys.items()]

        where, params = [], []
        for f, expression in filters:
            if f.category == "dimension":
                sql, values = _filter(f, f.expr, f.point or f.expr, expression)
                where.append(sql)
                params.extend(values)
        if self.always_where:
            where.append(f"({self.always_where[0]})")
        rows = f"SELECT {', '.join(columns)} FROM {self._from(joins)}"
        if where:
            rows += " WHERE " + " AND ".join(where)
        if keys:  # a key's first row in each result row counts; the rows a join repeats it on do not
            groups = [f'"__d{i}"' for i in range(len(dimensions))]
            flags = []
            for n in keys.values():
                partition = ", ".join([*groups, f'"__k{n}"'])
                flags.append(f'("__k{n}" IS NOT NULL AND row_number() OVER (PARTITION BY {partition}) = 1) AS "__f{n}"')
            rows = f"SELECT *, {', '.join(flags)} FROM ({rows}) AS __rows"
        return rows, params, argument

    def _aggregate(self, m: LookmlField, argument: dict[str, str], outer: dict[str, str]) -> str:
        """The measure's SQL over the flagged rows (a type: number measure: over its measures')."""
        if m.name not in outer:
            if m.type == "number":
                for ref in m.refs:
                    self._aggregate(self.field(ref, "fields"), argument, outer)
                outer[m.name] = _fill(m, outer)
            else:
                percentile = m.definition.percentile if m.definition and m.definition.percentile is not None else 50
                outer[m.name] = AGGREGATES[m.type].format(v=argument[m.name], p=percentile / 100)
        return outer[m.name]

    def _measures_needed(self, chosen: list[LookmlField]) -> list[LookmlField]:
        needed: dict[str, LookmlField] = {}
        stack = list(chosen)
        while stack:
            m = stack.pop()
            if m.name in needed:
                continue
            needed[m.name] = m
            stack.extend(self.field(r, "fields") for r in m.refs)
        return list(needed.values())

    def _joins_for(self, aliases: set[str]) -> list[JoinDef]:
        by_alias = {j.alias: j for j in self.joins}
        needed, stack = set(), list(aliases)
        while stack:
            alias = stack.pop()
            if alias in needed or alias == self.base_alias:
                continue
            needed.add(alias)
            join = by_alias[alias]
            stack.extend(join.depends | set(join.required))
        return [j for j in self.joins if j.alias in needed]

    def _repeated(self, joins: list[JoinDef]) -> set[str]:
        """Aliases whose rows the query's joins may repeat (an over-estimate is harmless but for keys)."""
        present = {self.base_alias} | {j.alias for j in joins}
        repeated: set[str] = set()
        for j in joins:
            if j.relationship in ("one_to_many", "many_to_many"):
                repeated |= present - {j.alias}
            if j.relationship in ("many_to_one", "many_to_many"):
                repeated.add(j.alias)
        return repeated

    def _dedupe_key(self, m: LookmlField, repeated: set[str]) -> str | None:
        if m.type in DISTINCT_BY_KEY:
            key = m.distinct_key or (self.keys[m.view][0] if self.keys.get(m.view) else "")
            if not key:
                raise QueryError(
                    400, f"Measure '{m.name}' of type {m.type} needs a sql_distinct_key or a primary_key in its view."
                )
            return key
        if self.symmetric and m.view in repeated and m.type in SYMMETRIC:
            if not self.keys.get(m.view):
                raise QueryError(
                    400,
                    f"Measure '{m.name}' cannot be computed here: the query's joins repeat the rows of view "
                    f"'{m.view}', which has no primary_key (symmetric aggregates need one). Define a "
                    "dimension with primary_key: yes in that view.",
                )
            return self.keys[m.view][0]
        return None

    def _from(self, joins: list[JoinDef]) -> str:
        text = f'{self.base.table} AS "{self.base_alias}"'
        for j in joins:
            text += f' {JOIN_TYPES[j.type]} {j.view.table} AS "{j.alias}"'
            if j.type != "cross":
                text += f" ON {j.on}"
        return text

    # -- metadata ---------------------------------------------------------------------------------

    def describe(self) -> dict:
        def described(f: LookmlField) -> dict:
            d = f.definition
            return {
                "name": f.name,
                "label": f.full_label,
                "label_short": f.label,
                "view_label": f.view_label,
                "category": f.category,
                "type": f.type,
                "is_numeric": f.is_numeric,
                "is_timeframe": bool(d and d.timeframe) or f.type == "date",
                "measure": f.category == "measure",
                "view": f.view,
                "original_view": f.original_view,
                "sql": f.sql,
                "hidden": bool(d and d.hidden),
                "primary_key": bool(d and d.primary_key),
                "description": d.description if d else None,
                "dimension_group": d.group if d else None,
                "datatype": d.datatype if d else None,
                "convert_tz": d.convert_tz if d else True,
                "field_group_label": d.group_label if d else None,
                "project_name": self.project,
                "scope": f.view,
                "sortable": True,
                "can_filter": True,
                "is_filter": False,
            }

        fields = list(self.fields.values())
        return {
            "id": f"{self.model}::{self.name}",
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "hidden": self.hidden,
            "model_name": self.model,
            "view_name": self.base_alias,
            "project_name": self.project,
            "connection_name": self.connection,
            "dialect_name": "duckdb",
            "source_file": self.source_file,
            "sql_table_name": f"{self.base.table} AS {self.base_alias}",
            "joins": [
                {
                    "name": j.alias,
                    "from": j.view.name,
                    "type": j.type,
                    "relationship": j.relationship,
                    "sql_on": j.sql_on,
                    "foreign_key": j.foreign_key,
                    "sql_foreign_key": j.sql_foreign_key,
                    "required_joins": list(j.required),
                    "view_label": j.view_label,
                    "sql_table_name": j.view.table,
                }
                for j in self.joins
            ],
            "fields": {
                "dimensions": [described(f) for f in fields if f.category == "dimension"],
                "measures": [described(f) for f in fields if f.category == "measure"],
                "filters": [],
                "parameters": [],
            },
        }


@dataclass
class ProjectModel:
    name: str
    label: str
    connection: str | None
    project: str
    path: Path  # the project directory
    source_file: str
    explores: dict[str, ProjectExplore]
    warnings: list[str] = field(default_factory=list)

    def explore(self, name: str | None) -> ProjectExplore:
        found = self.explores.get(name or "")
        if found is None:
            raise QueryError(
                404,
                f"Explore '{name}' not found in model '{self.name}' (it has: {', '.join(sorted(self.explores))}).",
                "view",
            )
        return found

    def summary(self) -> dict:
        return {"name": self.name, "explores": sorted(self.explores), "warnings": self.warnings}


# -- filters ------------------------------------------------------------------------------------------


def _filter(f: LookmlField, value_sql: str, date_sql: str, expression: str) -> tuple[str, list]:
    """Looker's filter grammar (models.filter_sql) over this field's SQL; a yesno takes Yes or No."""
    if f.type == "yesno" and expression.strip().lower() in ("yes", "no"):
        return f"{value_sql} = ?", ["Yes" if expression.strip().lower() == "yes" else "No"]
    kind = f.filter_kind
    as_type = {"date": "date_date", "number": "number"}.get(kind, "string")
    return filter_sql(Field(f.name, f.label, f.category, as_type, value_sql, date_sql), expression)


def _literal(value) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def _inline_filter(f: LookmlField, expression: str) -> str:
    """A filter as SQL with its values written in (a measure's `filters:` lives in its SELECT)."""
    value_mark, date_mark = "\x00value\x00", "\x00date\x00"
    sql, params = _filter(f, value_mark, date_mark, expression)
    values = iter(params)
    sql = re.sub(r"\?", lambda _: _literal(next(values)), sql)
    return sql.replace(value_mark, f.expr).replace(date_mark, f.point or f.expr)


def _fill(m: LookmlField, outer: dict[str, str]) -> str:
    text = m.template
    for i, ref in enumerate(m.refs):
        text = text.replace(f"\x00{i}\x00", f"({outer[ref]})")
    return text


# -- loading --------------------------------------------------------------------------------------------


def _parse(path: Path, problems: list[str]) -> dict:
    try:
        return lkml.load(path.read_text(encoding="utf-8")) or {}
    except (SyntaxError, UnicodeDecodeError, OSError) as exc:
        problems.append(f"{path}: cannot parse LookML: {exc}")
        return {}


def _includes(model_file: Path, root: Path, patterns: Iterable[str], problems: list[str]) -> list[Path]:
    found: list[Path] = []
    for pattern in patterns:
        if pattern.startswith("//"):
            problems.append(f"{model_file}: include '{pattern}' names another project; the sandbox loads one")
            continue
        base = root if pattern.startswith("/") else model_file.parent
        candidates = [pattern.lstrip("/")]
        if not pattern.endswith(".lkml"):
            candidates.append(pattern.lstrip("/") + ".lkml")
        matched: list[Path] = []
        for candidate in candidates:  # root_dir: the directory's own name is not a pattern
            matched = sorted(base / p for p in glob.glob(candidate, root_dir=base, recursive=True))
            matched = [p.resolve() for p in matched if p.is_file() and not p.name.endswith(".model.lkml")]
            if matched:
                break
        if not matched:
            problems.append(f"{model_file}: include '{pattern}' matches no file")
        found += matched
    return list(dict.fromkeys(found))


def _filters_of(raw: dict) -> tuple[tuple[str, str], ...]:
    out = []
    for item in raw.get("filters__all") or []:
        if isinstance(item, dict) and "field" in item:  # filters: {field: x value: "…"}
            out.append((item["field"], str(item.get("value", ""))))
        elif isinstance(item, list):  # filters: [x: "…", y: "…"]
            for pair in item:
                out += [(k, str(v)) for k, v in pair.items()]
        elif isinstance(item, dict):
            out += [(k, str(v)) for k, v in item.items()]
    return tuple(out)


def _view(raw: dict, source: Path, root: Path, problems: list[str]) -> ViewDef | None:
    name = raw.get("name", "")
    where = f"{source}: view '{name}'"
    if name.startswith("+") or "extends__all" in raw or "extends" in raw:
        problems.append(f"{where}: refinements and extends are not supported by the sandbox")
        return None
    if "derived_table" in raw:
        derived = raw["derived_table"]
        if not derived.get("sql"):
            problems.append(f"{where}: only a derived_table with sql is supported by the sandbox")
            return None
        table = f"({derived['sql'].strip()})"
    else:
        table = (raw.get("sql_table_name") or name).strip()
    fields: dict[str, FieldDef] = {}
    for reader in (_dimensions, _timeframes, _measures):
        for definition in reader(raw, where, problems):
            if definition.short in fields:
                problems.append(f"{where}: field '{definition.short}' is defined twice")
            fields[definition.short] = definition
    keys = [f.short for f in fields.values() if f.primary_key]
    if len(keys) > 1:
        problems.append(f"{where}: more than one primary_key ({', '.join(keys)})")
    return ViewDef(name, table, _relative(source, root), raw.get("label"), fields, keys[0] if keys else None)


def _dimensions(raw: dict, where: str, problems: list[str]) -> Iterable[FieldDef]:
    for d in raw.get("dimensions", []):
        kind = d.get("type", "string")
        if kind not in DIMENSION_TYPES:
            problems.append(f"{where}: dimension '{d['name']}' has type {kind}, not supported by the sandbox")
        elif not d.get("sql"):
            problems.append(f"{where}: dimension '{d['name']}' has no sql")
        else:
            yield FieldDef(
                d["name"],
                "dimension",
                kind,
                d["sql"],
                d.get("label") or title(d["name"]),
                d.get("description"),
                _yes(d.get("hidden")),
                _yes(d.get("primary_key")),
                group_label=d.get("group_label"),
                convert_tz=_converts(d),
            )


def _converts(raw: dict) -> bool:
    return str(raw.get("convert_tz", "yes")).strip().lower() != "no"


def _in_query_zone(point: str) -> str:
    """A point in time (a naive one is in the database's zone, UTC) as wall-clock time in the query's zone."""
    return f"timezone({QUERY_ZONE}, CAST({point} AS TIMESTAMPTZ))"


def _timeframes(raw: dict, where: str, problems: list[str]) -> Iterable[FieldDef]:
    """One dimension per timeframe of each dimension_group: `<group>_<timeframe>`."""
    for g in raw.get("dimension_groups", []):
        kind, datatype = g.get("type", "time"), g.get("datatype", "datetime")
        if kind != "time":
            problems.append(f"{where}: dimension_group '{g['name']}' has type {kind}; the sandbox supports time")
        elif datatype not in DATATYPES:
            problems.append(f"{where}: dimension_group '{g['name']}' has datatype {datatype}, not supported")
        elif not g.get("sql"):
            problems.append(f"{where}: dimension_group '{g['name']}' has no sql")
        else:
            unknown = [t for t in g.get("timeframes") or () if t not in TIMEFRAMES]
            if unknown:
                problems.append(f"{where}: dimension_group '{g['name']}' timeframes {unknown} are not supported")
            label = g.get("label") or title(g["name"])
            for timeframe in [t for t in g.get("timeframes") or TIMEFRAMES if t in TIMEFRAMES]:
                yield FieldDef(
                    f"{g['name']}_{timeframe}",
                    "dimension",
                    f"date_{timeframe}",
                    g["sql"],
                    f"{label} {title(timeframe)}",
                    g.get("description"),
                    _yes(g.get("hidden")),
                    group=g["name"],
                    timeframe=timeframe,
                    datatype=datatype,
                    group_label=g.get("group_label"),
                    convert_tz=_converts(g),
                )


def _measures(raw: dict, where: str, problems: list[str]) -> Iterable[FieldDef]:
    for m in raw.get("measures", []):
        kind = m.get("type", "string")  # Looker's default type
        if kind not in MEASURE_TYPES:
            problems.append(f"{where}: measure '{m['name']}' has type {kind}, not supported by the sandbox")
        elif kind != "count" and not m.get("sql"):
            problems.append(f"{where}: measure '{m['name']}' of type {kind} has no sql")
        else:
            yield FieldDef(
                m["name"],
                "measure",
                kind,
                m.get("sql"),
                m.get("label") or title(m["name"]),
                m.get("description"),
                _yes(m.get("hidden")),
                group_label=m.get("group_label"),
                filters=_filters_of(m),
                distinct_key=m.get("sql_distinct_key"),
                percentile=float(m["percentile"]) if m.get("percentile") else None,
            )


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def load_project(path: Path) -> list[ProjectModel]:
    """Every model of the project at `path`; LookmlError lists every problem found."""
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise LookmlError([f"{root} is not a directory"])
    model_files = sorted(root.rglob("*.model.lkml"))
    if not model_files:
        raise LookmlError([f"{root} holds no *.model.lkml file"])
    problems: list[str] = []
    loaded = []
    for model_file in model_files:
        model = _parse(model_file, problems)
        name = model_file.name.removesuffix(".model.lkml")
        if not _IDENTIFIER.match(name):
            problems.append(f"{model_file}: '{name}' is not a valid model name")
            continue
        views: dict[str, ViewDef] = {}
        explores = [(e, model_file) for e in model.get("explores", [])]
        for included in _includes(model_file, root, model.get("includes", []), problems):
            doc = _parse(included, problems)
            for raw in doc.get("views", []):
                view = _view(raw, included, root, problems)
                if view is None:
                    continue
                if view.name in views:
                    problems.append(f"{included}: view '{view.name}' is also defined in {views[view.name].source_file}")
                views[view.name] = view
            explores += [(e, included) for e in doc.get("explores", [])]
        built: dict[str, ProjectExplore] = {}
        warnings: list[str] = []
        for raw, source in explores:
            explore = _explore(name, model, raw, source, root, views, problems, warnings)
            if explore is None:
                continue
            if explore.name in built:
                problems.append(f"{source}: explore '{explore.name}' is defined twice in model '{name}'")
            built[explore.name] = explore
        loaded.append(
            ProjectModel(
                name,
                model.get("label") or title(name),
                model.get("connection"),
                root.name,
                root,
                _relative(model_file, root),
                built,
                warnings,
            )
        )
    if problems:
        raise LookmlError(problems)
    return loaded


def _explore(
    model: str,
    model_raw: dict,
    raw: dict,
    source: Path,
    root: Path,
    views: dict[str, ViewDef],
    problems: list[str],
    warnings: list[str],
) -> ProjectExplore | None:
    name = raw.get("name", "")
    where = f"{source}: explore '{name}'"
    found = _aliases(raw, views, where, problems)
    if found is None:
        return None
    base_alias, aliases, labels, raw_joins = found
    binder = _Binder(aliases)
    keys: dict[str, tuple[str, frozenset[str]] | None] = {}
    for alias, view in aliases.items():
        keys[alias] = None
        if view.primary_key:
            try:
                sql, used = binder.dimension(alias, view.primary_key)
                keys[alias] = (f"({sql})", used)
            except _Unresolvable as exc:
                problems.append(f"{where}: the primary key of '{alias}': {exc}")
    joins = []
    for j in raw_joins:
        try:
            joins.append(_join(j, binder, keys, base_alias))
        except _Unresolvable as exc:
            problems.append(f"{where}: join '{j['name']}': {exc}")
    for j in joins:
        problems += [f"{where}: join '{j.alias}' requires '{r}', which it does not join" for r in j.required
                     if r not in aliases or r == base_alias]  # fmt: skip
    always_where = None
    if raw.get("sql_always_where"):
        try:
            sql, used = binder.substitute(raw["sql_always_where"], base_alias)
            always_where = (sql, frozenset(used))
        except _Unresolvable as exc:
            problems.append(f"{where}: sql_always_where: {exc}")
    always_join = tuple(raw.get("always_join") or ())
    problems += [f"{where}: always_join names '{a}', which it does not join" for a in always_join if a not in aliases]

    fields: dict[str, LookmlField] = {}
    for alias, view in aliases.items():
        for definition in view.fields.values():
            bound = binder.bind(alias, definition, labels[alias] or view.label or title(alias))
            if bound.error:
                warnings.append(f"{where}: {bound.name}: {bound.error}")
            fields[bound.name] = bound
    return ProjectExplore(
        model=model,
        name=name,
        label=raw.get("label") or title(name),
        description=raw.get("description"),
        hidden=_yes(raw.get("hidden")),
        base_alias=base_alias,
        base=aliases[base_alias],
        joins=_dependencies_first(joins, where, problems),
        fields=fields,
        keys=keys,
        symmetric=str(raw.get("symmetric_aggregates", "yes")).lower() != "no",
        always_where=always_where,
        always_join=always_join,
        connection=model_raw.get("connection"),
        project=root.name,
        source_file=_relative(source, root),
    )


def _aliases(raw: dict, views: dict[str, ViewDef], where: str, problems: list[str]):
    """The explore's base alias, its views by alias, their view labels, and its valid joins (as parsed).

    `from:` aliases a view under the explore's (or join's) name; `view_name:` keeps the view's."""
    name = raw.get("name", "")
    if name.startswith("+") or "extends__all" in raw:
        problems.append(f"{where}: refinements and extends are not supported by the sandbox")
        return None
    if raw.get("from") and raw.get("view_name"):
        problems.append(f"{where}: from and view_name cannot both be given")
        return None
    base_view = raw.get("from") or raw.get("view_name") or name
    base_alias = name if raw.get("from") else base_view
    if base_view not in views:
        problems.append(f"{where}: view '{base_view}' is not defined in a file the model includes")
        return None
    aliases: dict[str, ViewDef] = {base_alias: views[base_view]}
    labels: dict[str, str | None] = {base_alias: raw.get("view_label")}
    joins = []
    for j in raw.get("joins", []):
        alias, view = j["name"], j.get("from") or j["name"]
        kind, relationship = j.get("type", "left_outer"), j.get("relationship", "many_to_one")
        problem = (
            f"names view '{view}', not defined in a file the model includes" if view not in views
            else "is joined twice" if alias in aliases
            else f"has type {kind} (supported: {', '.join(JOIN_TYPES)})" if kind not in JOIN_TYPES
            else f"has relationship {relationship}" if relationship not in RELATIONSHIPS
            else "needs sql_on, foreign_key or sql_foreign_key"
            if kind != "cross" and not (j.get("sql_on") or j.get("foreign_key") or j.get("sql_foreign_key"))
            else None
        )  # fmt: skip
        if problem:
            problems.append(f"{where}: join '{alias}' {problem}")
            continue
        aliases[alias] = views[view]
        labels[alias] = j.get("view_label")
        joins.append(j)
    return base_alias, aliases, labels, joins


def _join(j: dict, binder: _Binder, keys: dict, base_alias: str) -> JoinDef:
    alias = j["name"]
    on, used = "", set()
    if j.get("sql_on"):
        on, used = binder.substitute(j["sql_on"], alias)
    elif j.get("foreign_key") or j.get("sql_foreign_key"):  # the explore's key matches the joined view's
        if keys.get(alias) is None:
            raise _Unresolvable(f"view '{binder.aliases[alias].name}' needs a primary_key for foreign_key")
        if j.get("foreign_key"):
            owner, _, short = j["foreign_key"].rpartition(".")
            fk, used = binder.dimension(owner or base_alias, short)
        else:
            fk, used = binder.substitute(j["sql_foreign_key"], base_alias)
        on, used = f"({fk}) = {keys[alias][0]}", set(used) | set(keys[alias][1])
    return JoinDef(
        alias,
        binder.aliases[alias],
        j.get("type", "left_outer"),
        j.get("relationship", "many_to_one"),
        j.get("sql_on"),
        j.get("foreign_key"),
        j.get("sql_foreign_key"),
        tuple(j.get("required_joins") or ()),
        j.get("view_label"),
        on,
        frozenset(set(used) - {alias, base_alias}),
    )


def _dependencies_first(joins: list[JoinDef], where: str, problems: list[str]) -> list[JoinDef]:
    by_alias = {j.alias: j for j in joins}
    ordered: list[JoinDef] = []
    placing: set[str] = set()

    def place(j: JoinDef) -> None:
        if j in ordered:
            return
        if j.alias in placing:
            problems.append(f"{where}: joins '{j.alias}' and its dependencies form a cycle")
            return
        placing.add(j.alias)
        for dep in sorted(j.depends | set(j.required)):
            if dep in by_alias:
                place(by_alias[dep])
        placing.discard(j.alias)
        ordered.append(j)

    for j in joins:
        place(j)
    return ordered


class _Binder:
    """Resolves `${…}` for the views of one explore, each under its alias."""

    def __init__(self, aliases: dict[str, ViewDef]):
        self.aliases = aliases
        self._dimensions: dict[tuple[str, str], tuple[str, frozenset[str]]] = {}
        self.points: dict[tuple[str, str], str] = {}  # a time dimension's point in time
        self._resolving: set[tuple[str, str]] = set()

    def _definition(self, alias: str, short: str) -> FieldDef:
        view = self.aliases.get(alias)
        if view is None:
            raise _Unresolvable(f"'{alias}' is not a view of this explore")
        definition = view.fields.get(short)
        if definition is None:
            raise _Unresolvable(f"view '{view.name}' has no field '{short}'")
        return definition

    def dimension(self, alias: str, short: str) -> tuple[str, frozenset[str]]:
        """What `${alias.short}` stands for (a yesno: its condition; a timeframe: its value)."""
        key = (alias, short)
        if key in self._dimensions:
            return self._dimensions[key]
        definition = self._definition(alias, short)
        if definition.category != "dimension":
            raise _Unresolvable(f"'{alias}.{short}' is a measure, not a dimension")
        if key in self._resolving:
            raise _Unresolvable(f"'{alias}.{short}' references itself")
        self._resolving.add(key)
        try:
            sql, used = self.substitute(definition.sql or "", alias)
        finally:
            self._resolving.discard(key)
        if definition.timeframe:
            datatype = definition.datatype or "datetime"
            point = DATATYPES[datatype].format(r=f"({sql})")
            local = _in_query_zone(point) if datatype in ZONED_DATATYPES else point
            self.points[key] = local  # a filter is in the query's zone, even with convert_tz: no
            sql = TIMEFRAMES[definition.timeframe][1].format(t=local if definition.convert_tz else point)
        elif definition.type == "date_time":
            self.points[key] = _in_query_zone(sql)
            sql = self.points[key] if definition.convert_tz else sql
        elif definition.type == "date":
            self.points[key] = sql
        result = (sql, frozenset(used))
        self._dimensions[key] = result
        return result

    def substitute(self, sql: str, alias: str, measures: list[str] | None = None) -> tuple[str, set[str]]:
        """The SQL with every `${…}` resolved; `measures` collects measure references (type: number)."""
        if "{%" in sql or "{{" in sql:
            raise _Unresolvable("Liquid templating is not supported by the sandbox")
        used: set[str] = set()

        def replace(match: re.Match) -> str:
            ref = match.group(1)
            owner, _, short = ref.rpartition(".")
            owner = owner or alias
            if short == "TABLE" and owner == alias:
                used.add(alias)
                return f'"{alias}"'
            if short == "SQL_TABLE_NAME":
                if owner not in self.aliases:
                    raise _Unresolvable(f"'{owner}' is not a view of this explore")
                return self.aliases[owner].table
            definition = self._definition(owner, short)
            if definition.category == "measure":
                if measures is None:
                    raise _Unresolvable(f"'{owner}.{short}' is a measure; only a type: number measure references one")
                measures.append(f"{owner}.{short}")
                return f"\x00{len(measures) - 1}\x00"
            value, aliases = self.dimension(owner, short)
            used.update(aliases | {owner})
            return f"({value})"

        return _REF.sub(replace, sql), used

    def bind(self, alias: str, d: FieldDef, view_label: str) -> LookmlField:
        view = self.aliases[alias]
        common = dict(
            name=f"{alias}.{d.short}",
            label=d.label,
            category=d.category,
            type=d.type,
            sql=d.sql or "",
            view=alias,
            original_view=view.name,
            view_label=view_label,
            definition=d,
        )
        try:
            if d.category == "dimension":
                ref, used = self.dimension(alias, d.short)
                expr = f"CASE WHEN ({ref}) THEN 'Yes' ELSE 'No' END" if d.type == "yesno" else ref
                if d.type in ("date", "date_time"):
                    expr = f"CAST(({ref}) AS {'DATE' if d.type == 'date' else 'TIMESTAMP'})"
                point = self.points.get((alias, d.short), "")
                return LookmlField(**common, expr=expr, ref=ref, point=point, aliases=frozenset(used))
            if d.type == "number":
                refs: list[str] = []
                template, used = self.substitute(d.sql or "", alias, refs)
                if used:
                    raise _Unresolvable("a type: number measure may reference measures only")
                return LookmlField(**common, template=template, refs=tuple(refs))
            expr, used = self.substitute(d.sql, alias) if d.sql and d.type != "count" else ("", set())
            key = ""
            if d.distinct_key:
                key, more = self.substitute(d.distinct_key, alias)
                used |= more
            conditions = []
            for dimension, expression in d.filters:
                owner, _, short = dimension.rpartition(".")
                owner = owner or alias
                target = self.bind(owner, self._definition(owner, short), view_label)
                if target.error or target.category != "dimension":
                    raise _Unresolvable(f"filter on '{dimension}': {target.error or 'not a dimension'}")
                try:
                    conditions.append(_inline_filter(target, expression))
                except QueryError as exc:
                    raise _Unresolvable(f"filter on '{dimension}': {exc.message}") from None
                used |= target.aliases | {owner}
            return LookmlField(
                **common,
                expr=expr,
                aliases=frozenset(used | {alias}),
                condition=" AND ".join(conditions),
                distinct_key=key,
            )
        except _Unresolvable as exc:
            return LookmlField(**common, error=str(exc))


# -- the catalog the simulator answers from ------------------------------------------------------------


class Catalog:
    """The built-in demo model plus the LookML projects loaded (from settings at start, or the admin API).

    `reset()` goes back to the projects of the settings, as they were read at start: a project
    loaded through the admin API is dropped, as any state a test created is.
    """

    def __init__(self, paths: Iterable[Path] = ()):
        self.models: dict[str, ProjectModel] = {}
        for path in paths:
            self.load(path)
        self._seed = dict(self.models)

    def reset(self) -> None:
        self.models = dict(self._seed)

    def load(self, path: Path) -> dict:
        """Load (or reload) the project at `path`; its models replace any of the same name."""
        loaded = load_project(path)
        root = Path(path).expanduser().resolve()
        reserved = [m.name for m in loaded if m.name == MODEL]
        if reserved:
            raise LookmlError([f"{root}: model '{MODEL}' is the sandbox's built-in model; name yours otherwise"])
        models_now = {k: v for k, v in self.models.items() if v.path != root}  # a reload drops what went away
        replaced = sorted(m.name for m in loaded if m.name in models_now)
        for m in loaded:
            models_now[m.name] = m
        self.models = models_now
        return {"path": str(root), "models": [m.summary() for m in loaded], "replaced": replaced}

    def projects(self) -> list[dict]:
        by_path: dict[Path, list[ProjectModel]] = {}
        for m in self.models.values():
            by_path.setdefault(m.path, []).append(m)
        return [{"path": str(p), "models": [m.summary() for m in ms]} for p, ms in sorted(by_path.items())]

    def explore(self, model: str | None, view: str | None):
        """The demo model's Explore, or a loaded project's ProjectExplore; Looker's 404 otherwise."""
        if model == MODEL:
            return models.explore_of(model, view)
        found = self.models.get(model or "")
        if found is None:
            known = ", ".join([MODEL, *sorted(self.models)])
            raise QueryError(404, f"Model '{model}' not found (the sandbox has: {known}).", "model")
        return found.explore(view)

    def compile(self, query: dict, limit: int | None) -> tuple[str, list, list]:
        explore = self.explore(query.get("model"), query.get("view"))
        if isinstance(explore, ProjectExplore):
            return explore.compile(query, limit)
        return models.compile_query(query, limit)

    def header(self, query: dict, f) -> str:
        """A result column's CSV heading: the field's view label and its own."""
        if isinstance(f, LookmlField):
            return f.full_label
        return f"{models.EXPLORES[query['view']].label} {f.label}"
