"""What a windowed read needs from a source system, whatever its protocol."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Protocol

import pyarrow as pa

from .catalog import SourceEntity


class SourceSession(Protocol):
    """One step's connection to a source system."""

    concurrent_companies: int  # how many companies' pages may be read at once

    def companies(self) -> list[dict]: ...  # [{"id": ..., "name": ...}], the configured ones

    # Records as an Arrow table (lines as list columns), or as parsed JSON objects.
    def pages(
        self, company_id: str, entity: SourceEntity, start: datetime, end: datetime
    ) -> Iterator[pa.Table | list[dict]]: ...

    def count(self, company_id: str, entity: SourceEntity, start: datetime, end: datetime) -> int | None: ...

    # Every key the source holds now, as text: a light read (`$select` of the key), paged by key so
    # records deleted while it runs cannot make it skip one that exists.
    def keys(self, company_id: str, entity: SourceEntity) -> set[str]: ...

    # Of keys the key read did not list, those the source still holds: nothing is ended as deleted that the
    # source still has. Empty where the key read vouches for every key; BC asks for each (its next links
    # are opaque, and one resuming at an offset passes over a record when another is deleted meanwhile).
    def still_held(self, company_id: str, entity: SourceEntity, keys: Sequence[str]) -> set[str]: ...

    def run_metadata(self) -> dict: ...  # request counts, logins, tokens...

    def close(self) -> None: ...
