"""The warehouse interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from .schema import ColumnType, TableSpec


@dataclass(frozen=True)
class ReplaceScope:
    """Which rows a load replaces: these companies, windows starting in `[start, end)`."""

    company_ids: tuple[str, ...]
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Deletion:
    """A record the source no longer has: its key (as text) and when it went, as the source says or we saw."""

    key: str
    deleted_at: datetime
    window_start: datetime  # the partition window holding `deleted_at`: where the tombstone lives


class WindowLoad(ABC):
    """Receives batches for one replace; nothing is visible until the load commits."""

    @abstractmethod
    def write(self, table: TableSpec, batch: pd.DataFrame) -> None: ...

    @property
    @abstractmethod
    def rows_written(self) -> dict[str, int]: ...


class Warehouse(ABC):
    @abstractmethod
    def replace_windows(self, tables: Sequence[TableSpec], scope: ReplaceScope) -> AbstractContextManager[WindowLoad]:
        """Stage batches, then atomically swap the scope's rows in every table and merge current state.

        If the block raises, nothing changes: the old window stays as it was.
        """

    @abstractmethod
    def replace_snapshot(self, table: TableSpec, window_start: datetime | None) -> AbstractContextManager[WindowLoad]:
        """Stage batches, then atomically replace the table's rows of this window (all rows when None).

        For results that are recomputed whole (a Looker query): no change log, no current state.
        If the block raises, nothing changes.
        """

    @abstractmethod
    def apply_changes(
        self, table: TableSpec, *, deleted: Sequence[str], full: bool
    ) -> AbstractContextManager[WindowLoad]:
        """Stage rows created or changed (whole rows, keyed by `table.key`), then in one transaction: with `full`
        the table becomes exactly the staged rows; otherwise the rows of staged keys and of `deleted` keys go
        and the staged rows come in. For sources that say what changed and what was deleted (a change token).
        If the block raises, nothing changes.
        """

    @abstractmethod
    def delete_records(
        self, tables: Sequence[TableSpec], company: dict, deletions: Sequence[Deletion], run_id: str
    ) -> list[str]:
        """In one transaction: a tombstone version per deletion in the change log, and the records (with
        their lines, the following tables) out of current state. Returns the keys current state held.

        A tombstone outranks older versions, so a window loaded later (or still in flight) cannot bring
        the record back; a window re-load keeps tombstones, as the source no longer returns the record.
        Applying the same deletion twice changes nothing more.
        """

    @abstractmethod
    def current_keys(self, table: TableSpec, company_id: str) -> set[str]:
        """A company's keys in current state, as text (what a reconciliation compares with the source's)."""

    @abstractmethod
    def query(self, sql: str, parameters: Sequence[Any] = ()) -> list[tuple]: ...

    @abstractmethod
    def frame(self, sql: str, parameters: Sequence[Any] = ()) -> pd.DataFrame:
        """A query's result as a DataFrame (what downstream steps read)."""

    @abstractmethod
    def table_exists(self, name: str) -> bool: ...

    @abstractmethod
    def read_table(self, name: str, window: tuple[datetime, datetime] | None = None) -> pd.DataFrame:
        """A table's rows (those of windows starting in `window`), columns in lower case."""

    @abstractmethod
    def column_types(self, name: str) -> dict[str, ColumnType]:
        """A table's columns (lower case) and their types as the warehouse holds them ({} when it does not exist)."""

    @abstractmethod
    def row_count(self, name: str) -> int:
        """Rows in a table (0 when it does not exist yet)."""

    @abstractmethod
    def duplicate_keys(self, table: TableSpec) -> int:
        """Number of keys that occur more than once in the current-state table."""

    @abstractmethod
    def loaded_from(self, table: TableSpec, company_id: str) -> datetime | None:
        """Start of the earliest window loaded for a company (None before its first load)."""

    @abstractmethod
    def current_count(
        self, table: TableSpec, company_id: str, modified_from: datetime, modified_before: datetime
    ) -> int:
        """Current-state rows of a company last modified in `[modified_from, modified_before)`."""
