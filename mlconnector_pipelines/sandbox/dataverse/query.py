"""Query options on an entity set and the server-driven paging cursor.

Rows are ordered by the $orderby columns, then by the primary key, so every row has one position.
The `$skiptoken` is Dataverse's paging-cookie shape (`<cookie pagenumber=… pagingcookie=…
istracking=… />`, the inner cookie URL-encoded once more); its inner cookie carries the last
served row's sort values, not an offset, so rows written while a client pages never shift a page.
"""

from __future__ import annotations

import base64
import bisect
import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote

from ..core.exact_json import dumps
from ..core.odata_filter import Dialect, FilterError, parse_expression
from .errors import DataverseError, no_property, not_supported
from .tables import Table

OPTIONS = {"$select", "$filter", "$orderby", "$top", "$count", "$expand", "$skiptoken", "$deltatoken"}
UNSUPPORTED = {"$skip", "$search", "$levels", "$format", "$apply"}
TRACKING_REFUSED = ("$filter", "$orderby", "$expand", "$top")


@dataclass
class Expand:
    navigation: str
    select: list[str] | None = None
    filter: Any = None
    orderby: list[tuple[str, bool]] = field(default_factory=list)
    top: int | None = None
    text: str = ""  # its options as written, for the expanded collection's nextLink


@dataclass
class Query:
    select: list[str] | None = None
    filter: Any = None
    orderby: list[tuple[str, bool]] = field(default_factory=list)
    top: int | None = None
    count: bool = False
    expand: list[Expand] = field(default_factory=list)
    cursor: dict | None = None  # the skiptoken's state
    deltatoken: str | None = None


def query_error(message: str) -> DataverseError:
    return DataverseError(400, "0x0", message)


def parse_query(params: dict[str, str], table: Table, tables: dict[str, Table]) -> Query:
    for name in params:
        if name in UNSUPPORTED:
            raise not_supported(f"The query parameter {name} is not supported.")
        if name.startswith("$") and name not in OPTIONS:
            raise query_error(f"The query parameter '{name}' is not supported.")
    query = Query()
    query.select = _select(params.get("$select"), table)
    if params.get("$filter"):
        query.filter = _filter(params["$filter"], table)
    query.orderby = _orderby(params.get("$orderby"), table)
    query.top = _count_option(params, "$top")
    count = params.get("$count", "false").lower()
    if count not in ("true", "false"):
        raise query_error(f"'{params['$count']}' is not a valid count option.")
    query.count = count == "true"
    query.expand = [_expand(item, table, tables) for item in _split(params.get("$expand", ""), ",")]
    if params.get("$skiptoken"):
        query.cursor = decode_skiptoken(params["$skiptoken"])
    query.deltatoken = params.get("$deltatoken") or None
    return query


def _select(text: str | None, table: Table) -> list[str] | None:
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in table.properties:
            raise no_property(name, table.type_name)
    return list(dict.fromkeys(names))


def _filter(text: str, table: Table):
    dialect = Dialect(type_name=table.type_name, fold_case=True, exact_numbers=True)
    try:
        return parse_expression(text, table.properties, dialect)
    except FilterError as exc:
        raise query_error(str(exc)) from None


def _orderby(text: str | None, table: Table) -> list[tuple[str, bool]]:
    order = []
    for part in _split(text or "", ","):
        words = part.split()
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise query_error(f"Syntax error at position {len(part)} in '{text}'.")
        if words[0] not in table.properties:
            raise no_property(words[0], table.type_name)
        order.append((words[0], len(words) == 2 and words[1].lower() == "desc"))
    return order


def _count_option(params: dict[str, str], name: str) -> int | None:
    if name not in params:
        return None
    if not params[name].isdigit():
        raise query_error(
            f"Invalid value '{params[name]}' for {name} query option found. "
            f"The {name} query option requires a non-negative integer value."
        )
    return int(params[name])


def _expand(item: str, table: Table, tables: dict[str, Table]) -> Expand:
    match = re.fullmatch(r"\s*([\w]+)\s*(?:\((.*)\))?\s*", item, re.DOTALL)
    if match is None:
        raise query_error(f"Syntax error in $expand '{item}'.")
    navigation, options = match.group(1), match.group(2) or ""
    if navigation in table.lines:
        target = tables[table.lines[navigation].child_set]
        collection = True
    elif navigation in table.navigation:
        lookup = table.navigation[navigation]
        target = next((t for t in tables.values() if t.logical == lookup.target_of(navigation)), None)
        if target is None:  # a lookup to a table the sandbox keeps as ids only
            raise not_supported(f"The sandbox cannot expand '{navigation}': its table is not simulated.")
        collection = False
    else:
        raise no_property(navigation, table.type_name)
    expand = Expand(navigation, text=options)
    for option in _split(options, ";"):
        name, _, value = option.partition("=")
        name = name.strip()
        if name == "$expand":
            raise not_supported("The sandbox does not serve a nested $expand.")
        if not collection and name != "$select":
            raise not_supported(
                "Only $select and $filter clause can be provided while doing $expand on many-to-one relationship "
                "or nested one-to-many relationship."
            )
        if name == "$select":
            expand.select = _select(value, target)
        elif name == "$filter":
            expand.filter = _filter(value, target)
        elif name == "$orderby":
            expand.orderby = _orderby(value, target)
        elif name == "$top":
            expand.top = _count_option({name: value.strip()}, name)
        else:
            raise not_supported(f"The query option '{name}' is not supported in $expand.")
    return expand


def _split(text: str, separator: str) -> list[str]:
    """Split at `separator` outside parentheses and quotes."""
    parts, depth, quoted, current = [], 0, False, []
    for char in text:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == separator and depth == 0 and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


# -- ordering and the cursor -------------------------------------------------------------------------------


class _Descending:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __lt__(self, other: _Descending) -> bool:
        return other.value < self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.value == other.value


def sort_fields(orderby: list[tuple[str, bool]], key: str) -> list[tuple[str, bool]]:
    return orderby + ([(key, False)] if key not in {name for name, _ in orderby} else [])


def sort_key(fields: list[tuple[str, bool]]):
    def component(value, descending: bool):
        # NULL first, strings as SQL Server's case-insensitive collation compares them.
        plain = (value is not None, value.casefold() if isinstance(value, str) else value)
        return _Descending(plain) if descending else plain

    def key(row: dict) -> tuple:
        return tuple(component(row.get(name), desc) for name, desc in fields)

    return key


@dataclass
class Page:
    rows: list[dict]
    count: int  # every row the filter matches
    last: list | None  # the last row's sort values when more rows follow


def run(rows, flt, orderby: list[tuple[str, bool]], key: str, size: int, after: list | None) -> Page:
    matched = [r for r in rows if flt.matches(r)] if flt is not None else list(rows)
    fields = sort_fields(orderby, key)
    order = sort_key(fields)
    matched.sort(key=order)
    start = 0
    if after is not None:
        if len(after) != len(fields):
            raise query_error("The $skiptoken does not belong to this query.")
        start = bisect.bisect_right(matched, order(dict(zip((n for n, _ in fields), after, strict=True))), key=order)
    page = matched[start : start + size]
    more = start + len(page) < len(matched) and bool(page)
    return Page(page, len(matched), [page[-1].get(n) for n, _ in fields] if more else None)


def _lower_escapes(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def encode_skiptoken(state: dict, key_name: str, first: str, last: str, tracking: bool) -> str:
    """`<cookie pagenumber="2" pagingcookie="…" istracking="False" />`, as Dataverse writes it."""
    page = int(state.get("page", 1))
    blob = base64.urlsafe_b64encode(dumps(state)).decode().rstrip("=")
    inner = (
        f'<cookie page="{page}" sandboxcursor="{blob}"><{key_name} last="{{{last.upper()}}}" '
        f'first="{{{first.upper()}}}" /></cookie>'
    )
    return (
        f'<cookie pagenumber="{page + 1}" pagingcookie="{_lower_escapes(quote(inner, safe=""))}" '
        f'istracking="{"True" if tracking else "False"}" />'
    )


def decode_skiptoken(token: str) -> dict:
    match = re.search(r'pagingcookie="([^"]*)"', token)
    inner = unquote(match.group(1)) if match else ""
    blob = re.search(r'sandboxcursor="([^"]*)"', inner)
    if blob is None:
        raise query_error("The $skiptoken is not valid.")
    try:
        padded = blob.group(1) + "=" * (-len(blob.group(1)) % 4)
        state = json.loads(base64.urlsafe_b64decode(padded.encode()), parse_float=Decimal)
    except ValueError:
        raise query_error("The $skiptoken is not valid.") from None
    if not isinstance(state, dict):
        raise query_error("The $skiptoken is not valid.")
    return state


def link_query(params: dict[str, str], skiptoken: str | None = None) -> str:
    """A next or delta link's query string: option values readable, the skiptoken encoded as Dataverse does."""
    parts = [
        f"{name}={_lower_escapes(quote(value, safe='')) if name == '$deltatoken' else quote(value, safe=',()$=@/:*')}"
        for name, value in params.items()
    ]
    if skiptoken is not None:
        parts.append(f"$skiptoken={quote(skiptoken, safe='=/')}")
    return "&".join(parts)
