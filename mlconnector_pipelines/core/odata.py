"""OData request building and page reading (the paging itself is core/paginate.py).

Literal formatting is hand-written: the OData libraries on PyPI parse filters (server side);
none builds client filters, and the rules needed here are a few lines.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urljoin

import httpx
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from .errors import RequestFailedError
from .http import ThrottledClient
from .paginate import NextLinkPages
from .types import DECIMAL_READ_TYPE

T = TypeVar("T")


def json_body(record: Any) -> bytes:
    """A request body with every Decimal written as the exact number it is (never through a binary float)."""
    return orjson.dumps(record, default=_exact)


def _exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(format(value, "f"))
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def datetime_literal(value: datetime) -> str:
    """An unquoted Edm.DateTimeOffset literal in UTC with milliseconds, e.g. 2024-08-18T20:05:51.603Z."""
    if value.tzinfo is None:
        raise ValueError("datetime literals must be timezone-aware")
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def string_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def half_open_window_filter(field: str, start: datetime, end: datetime) -> str:
    """`field ge start and field lt end`: every row exactly once across adjacent windows."""
    return f"{field} ge {datetime_literal(start)} and {field} lt {datetime_literal(end)}"


def page_values(client: ThrottledClient, response: httpx.Response, body: Any) -> list[dict[str, Any]]:
    """An OData collection answer's `value`: a list of records. Anything else (`{}`, `value` missing, null or
    not a list of objects) is a malformed answer naming the request, never an empty page."""
    values = body.get("value") if isinstance(body, dict) else None
    if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
        raise client.malformed(response, 'an answer without a "value" list of records')
    return values


def page_and_next_link(
    client: ThrottledClient, response: httpx.Response, body: Any, next_link_keys: tuple[str, ...] = ("@odata.nextLink",)
) -> tuple[list[dict[str, Any]], str | None]:
    """A parsed OData page: its records (`page_values`) and the link to the next page, or None."""
    return page_values(client, response, body), next((body[k] for k in next_link_keys if body.get(k)), None)


def iterate_pages(
    client: ThrottledClient,
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    next_link_keys: tuple[str, ...] = ("@odata.nextLink",),
) -> Iterator[list[dict[str, Any]]]:
    """Yield each page's `value` list."""

    def read(response: httpx.Response) -> tuple[list[dict[str, Any]], str | None]:
        return page_and_next_link(client, response, client.parse_json(response), next_link_keys)

    return NextLinkPages(client, url, read, params, headers)


def iterate_record_tables(
    client: ThrottledClient,
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    read_fields: Sequence[pa.Field] = (),
    next_link_keys: tuple[str, ...] = ("@odata.nextLink",),
    key: str | None = None,
) -> Iterator[pa.Table]:
    """Like `iterate_pages`, but each page's records come as an Arrow table (nested lines as list columns).

    Arrow's JSON reader parses the body in C++ without building a Python object per field,
    which is most of the client's CPU on large extracts and most of its memory per page.
    `read_fields` are read with the types given (see `page_table`); the rest are inferred.
    """

    def read(response: httpx.Response) -> tuple[pa.Table, str | None]:
        return read_page_table(client, response, read_fields, next_link_keys, key)

    return NextLinkPages(client, url, read, params, headers)


def read_page_table(
    client: ThrottledClient,
    response: httpx.Response,
    read_fields: Sequence[pa.Field] = (),
    next_link_keys: tuple[str, ...] = ("@odata.nextLink",),
    key: str | None = None,
) -> tuple[pa.Table, str | None]:
    """`page_table` of a response, or an error naming the system, the request, the record and what came back."""
    try:
        return page_table(response.content, read_fields, next_link_keys)
    except ValueError as exc:
        where = offending_record(response.content, str(exc), key, _numbers(read_fields))
        raise client.malformed(response, f"a page it cannot read: {exc}" + (f" — {where}" if where else "")) from None


NESTED_NEXT_LINK = "@odata.nextLink"  # `<navigation>@odata.nextLink`: the rest of an expanded collection


def complete_expanded(
    client: ThrottledClient,
    records: pa.Table,
    line_fields: Mapping[str, Sequence[pa.Field]],
    *,
    page_url: str,
    headers: Mapping[str, str] | None = None,
) -> pa.Table:
    """A page's records with every line of their expanded collections; the nested next-link columns dropped.

    A server may page an expanded collection (OData 4.0 JSON format, "Expanded Navigation Property"): a
    record then carries its first lines and `<navigation>@odata.nextLink`, the URL of the rest. Each such
    link is followed to its last page (`line_fields`: the lines' declared read fields, by navigation) and
    the further lines go into the record's list after its own, in order. A relative link is resolved
    against `page_url`, the page it came in. A page without such a column comes back as it is.
    """
    linked = [c for c in records.column_names if c.endswith(NESTED_NEXT_LINK) and c != NESTED_NEXT_LINK]
    if not linked:
        return records
    for column in linked:
        navigation = column.removesuffix(NESTED_NEXT_LINK)
        links = records.column(column)
        if navigation not in records.column_names or links.null_count == len(links):
            continue
        lines = _all_lines(
            client,
            navigation,
            records.column(navigation).combine_chunks(),
            [urljoin(page_url, link) if link else None for link in links.to_pylist()],
            line_fields.get(navigation, ()),
            headers,
        )
        records = records.set_column(records.column_names.index(navigation), navigation, lines)
    return records.drop_columns(linked)


def _all_lines(
    client: ThrottledClient,
    navigation: str,
    lines: pa.ListArray,
    links: list[str | None],
    fields: Sequence[pa.Field],
    headers: Mapping[str, str] | None,
) -> pa.ListArray:
    """`lines` (one list per record) with, after each linked record's own, the lines its link reads."""
    inline = pc.list_flatten(lines)
    if not pa.types.is_struct(inline.type):  # only empty lists inline: nothing to place the further lines after
        inline = pa.array([], pa.struct(list(fields)))
    inline_table = pa.Table.from_struct_array(inline)
    own_ends = pc.cumulative_sum(pc.list_value_length(lines).fill_null(0)).to_pylist()

    def read(response: httpx.Response) -> tuple[pa.Table, str | None]:
        return read_page_table(client, response, fields)

    pieces: list[pa.Table] = []
    added = [0] * len(links)
    start = 0
    for row, link in enumerate(links):
        if link is None:
            continue
        pieces.append(inline_table.slice(start, own_ends[row] - start))
        start = own_ends[row]
        for page in NextLinkPages(client, link, read, headers=headers):
            pieces.append(page)
            added[row] += page.num_rows
    pieces.append(inline_table.slice(start))
    try:
        merged = pa.concat_tables([p for p in pieces if p.num_columns] or [inline_table], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise RequestFailedError(
            client.system, f"the further {navigation} of a page do not read like its first ones: {exc}"
        ) from None
    offsets, extra = [0], 0
    for own_end, more in zip(own_ends, added, strict=True):
        extra += more
        offsets.append(own_end + extra)
    values = merged.to_struct_array().combine_chunks()
    absent = pc.and_(lines.is_null(), pa.array([link is None for link in links])) if lines.null_count else None
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values, mask=absent)


_MIXED_TYPES = re.compile(r"Column\(/value/\[\]/([^/)]+)\) changed from")
_NOT_A_NUMBER = re.compile(r"The string '(.*)' is not a valid decimal")


def _numbers(read_fields: Sequence[pa.Field]) -> set[str]:
    """The names of the declared decimal fields, its lines' included."""
    names = set()
    for f in read_fields:
        if pa.types.is_decimal(f.type):
            names.add(f.name)
        elif pa.types.is_list(f.type) and pa.types.is_struct(f.type.value_type):
            names |= _numbers(list(f.type.value_type))
    return names


def offending_record(body: bytes, problem: str, key: str | None, numbers: AbstractSet[str] = frozenset()) -> str | None:
    """Which record of a page Arrow refused, e.g. `record 17 (id 'ab12…'): debitAmount = '12,5'`
    (`numbers`: the declared decimal fields, where an empty string is the value refused).

    Only called after a page failed to read, so its second, slower parse costs nothing otherwise.
    """
    try:
        records = json.loads(body, parse_float=Decimal).get("value") or []
    except (ValueError, AttributeError):
        return None

    def described(number: int, record: dict, field: str, value: Any) -> str:
        named = f" ({key} {record.get(key)!r})" if key and isinstance(record, dict) and key in record else ""
        return f"record {number}{named}: {field} = {value!r}"

    mixed = _MIXED_TYPES.search(problem)
    if mixed:
        field, first_type = mixed.group(1), None
        for number, record in enumerate(records, start=1):
            value = record.get(field) if isinstance(record, dict) else None
            if value is None:
                continue
            first_type = first_type or type(value)
            if not isinstance(value, first_type):
                return described(number, record, field, value)
    text = _NOT_A_NUMBER.search(problem)
    empty = problem.startswith("Empty string cannot be converted")
    if text or empty:
        wanted = text.group(1) if text else ""
        for number, record in enumerate(records, start=1):
            for field, value, line in _values(record):
                if value == wanted and (text or field in numbers):
                    return described(number, record, field if line is None else f"line {line}: {field}", value)
    return None


def _values(record: Any) -> Iterator[tuple[str, Any, int | None]]:
    """(field, value, line number or None) of a record and of its nested lines."""
    if not isinstance(record, dict):
        return
    for field, value in record.items():
        if isinstance(value, list):
            for line, item in enumerate(value, start=1):
                if isinstance(item, dict):
                    yield from ((f, v, line) for f, v in item.items())
        else:
            yield field, value, None


def _read_json(body: bytes, value_type: pa.DataType) -> pa.Table:
    options = pa_json.ParseOptions(
        explicit_schema=pa.schema([("value", value_type)]), unexpected_field_behavior="infer", newlines_in_values=True
    )
    # The body is one JSON object, so one block and one row; "in row 0" would only confuse.
    read_options = pa_json.ReadOptions(use_threads=False, block_size=max(len(body) + 1, 1 << 20))
    return pa_json.read_json(pa.BufferReader(body), parse_options=options, read_options=read_options)


def _exactly(records: pa.DataType, children: AbstractSet[str]) -> pa.DataType:
    """The page's `value` type with each binary float of a record, or of a line of its declared `children`
    (the expanded collections the catalog names), an exact decimal instead, also wrapped in `{"value": …}`
    (Acumatica). Those are what the warehouse stages as columns, rounded by `exact_decimals`; a float held
    deeper (in a nested list or object that lands as one column) is left as inferred."""

    def field(name: str, kind: pa.DataType, record: bool) -> pa.DataType:
        if pa.types.is_floating(kind):
            return DECIMAL_READ_TYPE
        if pa.types.is_struct(kind) and kind.num_fields == 1 and kind.field(0).name == "value":
            return pa.struct([kind.field(0).with_type(field("value", kind.field(0).type, record=False))])
        if record and name in children and pa.types.is_list(kind) and pa.types.is_struct(kind.value_type):
            return pa.list_(kind.value_field.with_type(fields(kind.value_type, record=False)))
        return kind

    def fields(kind: pa.StructType, record: bool) -> pa.DataType:
        return pa.struct(
            [f.with_type(field(f.name, f.type, record)) for f in (kind.field(i) for i in range(kind.num_fields))]
        )

    if not (pa.types.is_list(records) and pa.types.is_struct(records.value_type)):
        return records
    return pa.list_(records.value_field.with_type(fields(records.value_type, record=True)))


def page_table(
    body: bytes, read_fields: Sequence[pa.Field] = (), next_link_keys: tuple[str, ...] = ("@odata.nextLink",)
) -> tuple[pa.Table, str | None]:
    """An OData page body -> (its `value` records as a table, the next link or None).

    `read_fields` are read as declared, whatever their values look like: text fields stay text
    as sent (Arrow would read some ISO moments as timestamps, and a record's modified stamp must
    keep its exact spelling: it identifies the version), and amounts are read exactly (see
    core.types), never as binary floats. Other fields are inferred, and a fraction no field declares
    (a balance or rate the catalog does not name) is read exactly too: inferred as a binary float, a
    17-digit amount lost its last digits.
    Raises ValueError for a body that is not an OData page or mixes JSON types in one field.
    """
    value_type = pa.list_(pa.struct(list(read_fields)))
    try:
        page = _read_json(body, value_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(str(exc).removeprefix("JSON parse error: ").removesuffix(" in row 0")) from None
    inferred = page.schema.field("value").type if "value" in page.column_names else value_type
    exact = _exactly(inferred, {f.name for f in read_fields if pa.types.is_list(f.type)})
    if exact != inferred:
        try:
            page = _read_json(body, exact)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass  # a number a decimal cannot hold (1e-45, 1e40): the page stays as inferred
    if page.num_rows != 1:
        raise ValueError(f"expected one JSON object, found {page.num_rows}")
    values = page.column("value").combine_chunks()
    if values.null_count:
        raise ValueError('"value" is missing or null')
    records = pa.Table.from_struct_array(values.flatten())
    next_link = next(
        (page.column(k)[0].as_py() for k in next_link_keys if k in page.column_names and page.column(k)[0].is_valid),
        None,
    )
    return records, next_link
