"""OData request building and server-driven paging.

Literal formatting is hand-written: the OData libraries on PyPI parse filters (server side);
none builds client filters, and the rules needed here are a few lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, TypeVar

import httpx
import pyarrow as pa
import pyarrow.json as pa_json

from .http import ThrottledClient

T = TypeVar("T")


def datetime_literal(value: datetime) -> str:
    """An unquoted Edm.DateTimeOffset literal in UTC with milliseconds, e.g. 2024-08-18T20:05:51.603Z."""
    if value.tzinfo is None:
        raise ValueError("datetime literals must be timezone-aware")
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def string_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def half_open_window_filter(field: str, start: datetime, end: datetime) -> str:
    """`field ge start and field lt end`: every row exactly once across adjacent windows."""
    return f"{field} ge {datetime_literal(start)} and {field} lt {datetime_literal(end)}"


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
        body = client.parse_json(response)
        return body.get("value", []), next((body[k] for k in next_link_keys if body.get(k)), None)

    return _follow_next_links(client, url, params, headers, read)


def iterate_record_tables(
    client: ThrottledClient,
    url: str,
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    text_fields: Sequence[str] = (),
    next_link_keys: tuple[str, ...] = ("@odata.nextLink",),
) -> Iterator[pa.Table]:
    """Like `iterate_pages`, but each page's records come as an Arrow table (nested lines as list columns).

    Arrow's JSON reader parses the body in C++ without building a Python object per field,
    which is most of the client's CPU on large extracts and most of its memory per page.
    """
    def read(response: httpx.Response) -> tuple[pa.Table, str | None]:
        try:
            return page_table(response.content, text_fields, next_link_keys)
        except ValueError as exc:
            raise client.malformed(response, f"a page it cannot read: {exc}") from None

    return _follow_next_links(client, url, params, headers, read)


def _follow_next_links(client: ThrottledClient, url: str, params: Mapping[str, Any] | None,
                       headers: Mapping[str, str] | None,
                       read: Callable[[httpx.Response], tuple[T, str | None]]) -> Iterator[T]:
    """GET each page and yield what `read` makes of it, following the server's next link exactly as given."""
    next_url: str | None = url
    next_params = params
    while next_url:
        response = client.request("GET", next_url, params=next_params, headers=headers)
        page, next_url = read(response)
        del response  # read; do not hold the body while the caller works on the page
        yield page
        next_params = None  # the next link already carries the query


def page_table(body: bytes, text_fields: Sequence[str] = (),
               next_link_keys: tuple[str, ...] = ("@odata.nextLink",)) -> tuple[pa.Table, str | None]:
    """An OData page body -> (its `value` records as a table, the next link or None).

    `text_fields` stay text as sent: Arrow would otherwise read some ISO moments as timestamps,
    and a record's modified stamp must keep its exact spelling (it identifies the version).
    Raises ValueError for a body that is not an OData page or mixes JSON types in one field.
    """
    record_schema = pa.struct([(name, pa.string()) for name in text_fields])
    options = pa_json.ParseOptions(explicit_schema=pa.schema([("value", pa.list_(record_schema))]),
                                   unexpected_field_behavior="infer", newlines_in_values=True)
    # The body is one JSON object, so one block and one row; "in row 0" would only confuse.
    read_options = pa_json.ReadOptions(use_threads=False, block_size=max(len(body) + 1, 1 << 20))
    try:
        page = pa_json.read_json(pa.BufferReader(body), parse_options=options, read_options=read_options)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(str(exc).removeprefix("JSON parse error: ").removesuffix(" in row 0")) from None
    if page.num_rows != 1:
        raise ValueError(f"expected one JSON object, found {page.num_rows}")
    values = page.column("value").combine_chunks()
    if values.null_count:
        raise ValueError('"value" is missing or null')
    records = pa.Table.from_struct_array(values.flatten())
    next_link = next((page.column(k)[0].as_py() for k in next_link_keys
                      if k in page.column_names and page.column(k)[0].is_valid), None)
    return records, next_link
