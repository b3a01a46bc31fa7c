"""Query options on an entity set: $filter, $select, $orderby, $top, $skip, $count, server-driven paging.

Rows are ordered by the $orderby fields, then by the entity key, so every row has a unique
position. The `$skiptoken` of a next link is the last served row's position (its sort values),
not an offset: a row inserted while a client pages lands before or after the cursor and never
shifts a page or repeats a row.
"""

from __future__ import annotations

import base64
import bisect
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..core.exact_json import dumps
from ..core.odata_filter import Dialect, FilterError, parse_expression
from .entities import EntitySet

SUPPORTED = {"$filter", "$select", "$orderby", "$top", "$skip", "$count", "$expand", "$skiptoken", "$format"}


class QueryError(FilterError):
    """A query option F&O would refuse (an ODataException: 'The query specified in the URI is not valid')."""


@dataclass
class Query:
    filter: Any = None
    select: list[str] | None = None
    orderby: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    top: int | None = None
    skip: int = 0
    count: bool = False
    expand: list[str] = field(default_factory=list)
    after: list | None = None  # the skiptoken's sort values


def parse_query(params: dict[str, str], entity: EntitySet) -> Query:
    unknown = sorted(k for k in params if k.startswith("$") and k not in SUPPORTED)
    if unknown:
        raise QueryError(f"The query parameter '{unknown[0]}' is not supported.")
    query = Query()
    if params.get("$filter"):
        dialect = Dialect(type_name=entity.qualified_type, fold_case=True, wildcards=True, exact_numbers=True)
        query.filter = parse_expression(params["$filter"], entity.filter_types(), dialect)
    if params.get("$select"):
        query.select = _fields(params["$select"], entity)
    if params.get("$orderby"):
        query.orderby = _orderby(params["$orderby"], entity)
    query.top = _count_option(params, "$top")
    query.skip = _count_option(params, "$skip") or 0
    count = params.get("$count", "false").lower()
    if count not in ("true", "false"):
        raise QueryError(f"'{params['$count']}' is not a valid count option.")
    query.count = count == "true"
    query.expand = [e.strip() for e in params.get("$expand", "").split(",") if e.strip()]
    for name in query.expand:
        if name not in entity.navigation:
            raise QueryError(f"Could not find a property named '{name}' on type '{entity.qualified_type}'.")
    if params.get("$skiptoken"):
        query.after = decode_skiptoken(params["$skiptoken"])
    return query


def _fields(text: str, entity: EntitySet) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if name != "*" and name not in entity.fields:
            raise QueryError(f"Could not find a property named '{name}' on type '{entity.qualified_type}'.")
    return list(entity.fields) if "*" in names else names


def _orderby(text: str, entity: EntitySet) -> list[tuple[str, bool]]:
    order = []
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise QueryError(f"Syntax error in $orderby '{text}'.")
        if words[0] not in entity.fields:
            raise QueryError(f"Could not find a property named '{words[0]}' on type '{entity.qualified_type}'.")
        order.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    return order


def _count_option(params: dict[str, str], name: str) -> int | None:
    if name not in params:
        return None
    text = params[name]
    if not text.isdigit():
        raise QueryError(
            f"Invalid value '{text}' for {name} query option found. "
            f"The {name} query option requires a non-negative integer value."
        )
    return int(text)


# -- ordering and the cursor ---------------------------------------------------------------------


class _Descending:
    """Reverses the order of one sort component."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __lt__(self, other: _Descending) -> bool:
        return other.value < self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)


def sort_fields(query: Query, entity: EntitySet) -> list[tuple[str, bool]]:
    named = {name for name, _ in query.orderby}
    return query.orderby + [(key, False) for key in entity.keys if key not in named]


def _component(value, descending: bool):
    # None sorts first (SQL Server's NULL order); strings by the case-insensitive collation.
    plain = (value is not None, value.casefold() if isinstance(value, str) else value)
    return _Descending(plain) if descending else plain


def sort_key(fields: list[tuple[str, bool]]):
    def key(row: dict) -> tuple:
        return tuple(_component(row.get(name), descending) for name, descending in fields)

    return key


def encode_skiptoken(row: dict, fields: list[tuple[str, bool]]) -> str:
    return base64.urlsafe_b64encode(dumps([row.get(name) for name, _ in fields])).decode().rstrip("=")


def decode_skiptoken(token: str) -> list:
    try:
        padded = token + "=" * (-len(token) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()), parse_float=Decimal)
    except (ValueError, TypeError):
        raise QueryError("The $skiptoken is not valid.") from None
    if not isinstance(values, list):
        raise QueryError("The $skiptoken is not valid.")
    return values


@dataclass
class Page:
    rows: list[dict]
    count: int  # every row the filter matches, before $top and $skip
    next_after: str | None  # the next page's skiptoken; None on the last page
    top_left: int | None  # what remains of $top after this page


def run(rows, query: Query, entity: EntitySet, page_size: int) -> Page:
    """One page of the rows that match, in order, after the cursor."""
    matched = [r for r in rows if query.filter.matches(r)] if query.filter is not None else list(rows)
    fields = sort_fields(query, entity)
    if len(query.after or ()) not in (0, len(fields)):
        raise QueryError("The $skiptoken does not belong to this query.")
    key = sort_key(fields)
    matched.sort(key=key)
    start = query.skip
    if query.after is not None:
        cursor = key({name: value for (name, _), value in zip(fields, query.after, strict=True)})
        start = bisect.bisect_right(matched, cursor, key=key)
    limit = page_size if query.top is None else min(page_size, query.top)
    page = matched[start : start + limit]
    top_left = None if query.top is None else query.top - len(page)
    more = start + len(page) < len(matched) and (top_left is None or top_left > 0) and bool(page)
    return Page(page, len(matched), encode_skiptoken(page[-1], fields) if more else None, top_left)
