"""Dagster event log storages that write a batch of asset events in a few statements.

A single-run backfill of N daily windows makes, per asset, N "planned" events when the run starts and N
materializations when the step ends. Dagster hands such runs of events to `store_event_batch`, but only
when `DAGSTER_EVENT_BATCH_SIZE` is set, and open-source storages then store them one by one anyway: three
transactions per event, and on SQLite a new engine for each. A 365-day backfill of the BC group (10,000
asset events) spent ~20× the product's own work there (bench/backfill_bookkeeping.py).

These subclasses of Dagster's SQLite and PostgreSQL storages write the same rows — the event log, the
asset index (its tags and each asset's latest entry), the check executions — in one transaction per
shard. Any batch they do not recognise goes to Dagster's own code. Configured in dagster.yaml and
deploy/dagster-postgres.yaml.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster._core.event_api import EventLogEntry
from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, DagsterEventType
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._core.storage.event_log import SqlEventLogStorageTable, SqliteEventLogStorage
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine

# What Dagster sends as batches: a range run's planned events (with its checks' planned evaluations) and
# a range step's materializations. A failed-to-materialize batch is left to Dagster.
_BATCHED_TYPES = frozenset(
    {
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.ASSET_OBSERVATION,
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
    }
)
assert _BATCHED_TYPES <= ASSET_EVENTS | ASSET_CHECK_EVENTS  # all indexed: see the storages' _write_batch

# Dagster buffers a batch's events up to this many before writing: a 365-day backfill's planned events of 14
# assets (~5,100, ~10 MB) go in one write. Read per event in the process that runs the step, so it is set
# where these storages are built: every process of the instance builds one.
_BATCH_SIZE = "10000"
# Shards whose SQLite connection stays open: the cross-run index and the runs written lately.
_OPEN_SQLITE_SHARDS = 4


def _ask_dagster_for_batches() -> None:
    # Process-wide, and harmless to any other storage in the process: one that does not batch stores a
    # batch one event at a time, as it would without the setting. A deployment's own value wins.
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", _BATCH_SIZE)


def _batchable(events: Sequence[EventLogEntry]) -> bool:
    return (
        len(events) > 1
        and len({event.run_id for event in events}) == 1
        and all(event.is_dagster_event and event.dagster_event_type in _BATCHED_TYPES for event in events)
    )


class _BatchedEventWrites:
    """The batch written as Dagster's `store_event` would write each event, in fewer statements."""

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        if not _batchable(events):
            super().store_event_batch(events)  # type: ignore[misc]
            return
        self._write_batch(events, [self._event_to_row(event) for event in events])  # type: ignore[attr-defined]

    def _write_batch(self, events: Sequence[EventLogEntry], rows: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def _index(self, conn: Connection, indexed: list[tuple[EventLogEntry, int, dict[str, Any]]]) -> None:
        """What store_event adds for asset and check events, given each event's storage id and row."""
        asset_events = [
            (event, event_id)
            for event, event_id, _ in indexed
            if event.dagster_event_type in ASSET_EVENTS and event.get_dagster_event().asset_key
        ]
        if asset_events:
            self._store_asset_event_tags(conn, *zip(*asset_events, strict=True))  # type: ignore[attr-defined]
        # An asset's entry keeps, per kind of event, the latest one's columns: applying only the last of
        # each kind, in their order, leaves the row as applying every event would.
        latest: dict[tuple[str, DagsterEventType], tuple[EventLogEntry, int]] = {}
        for event, event_id in asset_events:
            latest[(event.get_dagster_event().asset_key.to_string(), event.get_dagster_event().event_type)] = (
                event,
                event_id,
            )
        for event, event_id in sorted(latest.values(), key=lambda pair: pair[1]):
            self._store_asset_event(conn, event, event_id)  # type: ignore[attr-defined]
        planned_checks = [
            (event, event_id, row["event"])
            for event, event_id, row in indexed
            if event.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED
        ]
        if planned_checks:
            conn.execute(AssetCheckExecutionsTable.insert(), self._planned_check_rows(planned_checks))

    def _planned_check_rows(self, planned: list[tuple[EventLogEntry, int, str]]) -> list[dict[str, Any]]:
        """The rows SqlEventLogStorage._store_asset_check_evaluation_planned writes, one per partition.

        Dagster serializes the event again for each of them and sends one statement of them all: a check
        planned over 365 partitions took ~0.2 s. Here the event's serialization from its own row is
        reused and the rows go as one executemany.
        """
        rows = []
        for event, event_id, serialized in planned:
            data = event.get_dagster_event().event_specific_data
            partitions = data.partitions_subset.get_partition_keys() if data.partitions_subset else [None]
            timestamp = self._event_insert_timestamp(event)  # type: ignore[attr-defined]
            rows.extend(
                dict(
                    asset_key=data.asset_key.to_string(),
                    check_name=data.check_name,
                    partition=partition,
                    run_id=event.run_id,
                    execution_status=AssetCheckExecutionRecordStatus.PLANNED.value,
                    evaluation_event=serialized,
                    evaluation_event_timestamp=timestamp,
                    evaluation_event_storage_id=event_id,
                )
                for partition in partitions
            )
        return rows


def _insert_returning_ids(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Ids in the rows' order: SQLAlchemy's insertmanyvalues guarantees it with sort_by_parameter_order."""
    if not rows:
        return []
    statement = SqlEventLogStorageTable.insert().returning(SqlEventLogStorageTable.c.id, sort_by_parameter_order=True)
    return [int(row[0]) for row in conn.execute(statement, rows)]


class BatchedSqliteEventLogStorage(_BatchedEventWrites, SqliteEventLogStorage):
    """Dagster's SQLite event log (a database per run, plus the cross-run index shard).

    Without a `base_dir` it lives where Dagster's default puts it, `<instance folder>/history/runs`, so an
    existing instance keeps its history. The instance folder is known only once the instance registers
    its storages (a dagster.yaml cannot say "this folder"), so the storage opens then.

    It keeps the last few shards' connections open between writes. Dagster's builds an engine, opens the
    file and closes it for every statement: a third of a backfill's event-log time went there. Each write
    is still its own committed transaction, and on a run's shard still ends in a checkpoint, which closing
    the file used to make and the UI's live view of a run waits for.
    """

    def __init__(self, base_dir: str | None = None, inst_data: ConfigurableClassData | None = None):
        _ask_dagster_for_batches()
        self._inst_data = inst_data
        self._engines: OrderedDict[str, Engine] = OrderedDict()  # by shard, the most recently used last
        if base_dir:
            super().__init__(base_dir, inst_data=inst_data)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        with self._db_lock:  # as Dagster's: one statement at a time per storage, whatever the thread
            engine = self._engines.pop(shard, None)
            if engine is None:
                engine = create_engine(
                    self.conn_string_for_shard(shard),
                    pool_size=1,
                    max_overflow=2,  # creating a shard's tables inspects it on a second connection
                    connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
                )
            self._engines[shard] = engine
            while len(self._engines) > _OPEN_SQLITE_SHARDS:
                self._engines.popitem(last=False)[1].dispose()
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn
                if shard != INDEX_SHARD_NAME:
                    # The UI follows a running run with `watch`, which waits for the run's file to change; a
                    # write stays in the write-ahead log beside it until a checkpoint (Dagster's closing of
                    # the connection after each write made one).
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def _close_shards(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        self._close_shards()  # before Dagster deletes the run shards' files
        super().wipe()

    def dispose(self) -> None:
        self._close_shards()
        super().dispose()

    def register_instance(self, instance) -> None:
        if not hasattr(self, "_base_dir"):
            super().__init__(os.path.join(instance.root_directory, "history", "runs"), inst_data=self._inst_data)
        super().register_instance(instance)

    @classmethod
    def config_type(cls):
        return {"base_dir": dg.Field(dg.StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(config_value.get("base_dir"), inst_data=inst_data)

    def _write_batch(self, events, rows):
        with self.run_connection(events[0].run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        # The index shard mirrors asset and check events (as SqliteEventLogStorage.store_event does), which
        # every batched type is; their ids there are the storage ids asset queries use.
        with self.index_transaction() as conn:
            self._index(conn, list(zip(events, _insert_returning_ids(conn, rows), rows, strict=True)))


class BatchedPostgresEventLogStorage(_BatchedEventWrites, PostgresEventLogStorage):
    """dagster-postgres's event log; same configuration (`postgres_db` or `postgres_url`).

    It keeps one connection open between writes. Dagster's opens a new one for every statement (a NullPool,
    so that no instance holds a connection): a run stores each of its step events apart, and the 365-day
    backfill opened ~180 connections, a tenth of its event-log time. One idle connection per process that
    holds an instance (a run worker, the daemon) is what the webserver's own storage keeps too.
    """

    def __init__(self, *args, **kwargs):
        _ask_dagster_for_batches()
        super().__init__(*args, **kwargs)
        self._engine.dispose()
        self._engine = create_pg_engine(
            self.postgres_url,
            self._token_provider,
            isolation_level="AUTOCOMMIT",
            pool_size=1,
            max_overflow=10,  # other threads' writes get a connection of their own, closed after use
            pool_pre_ping=True,  # a connection the server dropped while idle is replaced, not used
            pool_recycle=3600,  # and none outlives an hour (a token-authenticated login's lifetime)
        )

    @classmethod
    def from_config_value(cls, inst_data, config_value):  # as PostgresEventLogStorage's, which names its class
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def _write_batch(self, events, rows):
        with self.index_transaction() as conn:
            self._index(conn, list(zip(events, _insert_returning_ids(conn, rows), rows, strict=True)))
