"""OData request building and server-driven paging.

Literal formatting is hand-written: the OData libraries on PyPI parse filters (server side);
none builds client filters, and the rules needed here are a few lines.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

from .http import ThrottledClient


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
    """Yield each page's `value` list, following the server's next link exactly as given."""
    next_url: str | None = url
    next_params = params
    while next_url:
        body = client.get_json(next_url, params=next_params, headers=headers)
        yield body.get("value", [])
        next_url = next((body[k] for k in next_link_keys if body.get(k)), None)
        next_params = None  # the next link already carries the query
