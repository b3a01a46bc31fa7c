"""The shipped instance storages (dagster.yaml, deploy/dagster-postgres.yaml) write a single-run backfill's
asset events in batches, and Dagster reads back from them what it reads back from its own storage.

One job (two daily-partitioned assets, a partitioned check, a single-run backfill policy) runs over a range
of days on Dagster's default SQLite storage and on the shipped one; every reading the UI makes of those
events — materialized partitions, each asset's latest materialization and run, indexed tags, planned
events (they mark a failed run's partitions failed), check executions — must agree.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
import uuid
from collections import Counter
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.instance.ref import InstanceRef

from mlconnector_pipelines import instance_storage

REPO = Path(__file__).resolve().parents[2]
START, END = "2026-01-01", "2026-01-08"  # a range of 7 daily partitions, the last one 2026-01-07


def _job(prefix: str) -> tuple[dg.JobDefinition, list[dg.AssetKey], dg.AssetCheckKey]:
    days = dg.DailyPartitionsDefinition(start_date=START, end_date="2026-01-31")
    ledger_key, summary_key = dg.AssetKey([prefix, "ledger"]), dg.AssetKey([prefix, "summary"])
    check = dg.AssetCheckSpec("rows_positive", asset=ledger_key)

    @dg.asset(key=ledger_key, partitions_def=days, backfill_policy=dg.BackfillPolicy.single_run(), check_specs=[check])
    def ledger(context):
        if context.run.tags.get("fail") == "yes":
            raise RuntimeError("the source is down")
        yield dg.Output(None, metadata={"rows": len(context.partition_keys)})
        yield dg.AssetCheckResult(check_name="rows_positive", passed=True)

    @dg.asset(key=summary_key, deps=[ledger], partitions_def=days, backfill_policy=dg.BackfillPolicy.single_run())
    def summary(context):
        return dg.MaterializeResult(metadata={"days": len(context.partition_keys)})

    defs = dg.Definitions(
        assets=[ledger, summary],
        jobs=[dg.define_asset_job("backfill", selection=[ledger, summary])],
        resources={"io_manager": dg.mem_io_manager},
    )
    return defs.resolve_job_def("backfill"), [ledger_key, summary_key], check.key


def _run(job: dg.JobDefinition, instance: dg.DagsterInstance, *, fail: bool = False) -> dg.ExecuteInProcessResult:
    tags = {"dagster/asset_partition_range_start": START, "dagster/asset_partition_range_end": "2026-01-07"}
    return job.execute_in_process(
        instance=instance, tags={**tags, "fail": "yes" if fail else "no"}, raise_on_error=False
    )


def _readings(instance: dg.DagsterInstance, keys, check_key, runs: dict[str, str]) -> dict:
    """What the UI reads of a backfill's events, with run ids named by role so two instances compare."""
    role = {run_id: name for name, run_id in runs.items()}
    storage = instance.event_log_storage
    readings = {}
    for key in keys:
        name = key.path[-1]
        record = instance.get_asset_records([key])[0].asset_entry
        latest = instance.get_latest_materialization_event(key)
        planned = instance.get_latest_planned_materialization_info(key)
        readings[name] = {
            "materialized": sorted(instance.get_materialized_partitions(key)),
            "latest partition": latest.dagster_event.partition,
            "latest run": role[latest.run_id],
            "entry run": role[record.last_run_id],
            "entry materialization run": role[record.last_materialization_record.run_id],
            "planned run": role[planned.run_id] if planned else None,
            "failed": sorted(storage.get_latest_asset_partition_materialization_attempts_without_materializations(key)),
            # Indexed tag keys per event (their data versions hash run-specific inputs).
            "tags": Counter(tuple(sorted(tags)) for tags in instance.get_event_tags_for_asset(key)),
            "data version tags by partition": len(
                storage.get_latest_tags_by_partition(
                    key, dg.DagsterEventType.ASSET_MATERIALIZATION, ["dagster/data_version"]
                )
            ),
        }
    history = storage.get_asset_check_execution_history(check_key, limit=100)
    readings["check executions"] = Counter((role[e.run_id], e.status.value, e.partition) for e in history)
    readings["events by run"] = {
        name: Counter(r.event_log_entry.dagster_event_type for r in instance.get_records_for_run(run_id).records)
        for name, run_id in runs.items()
    }
    return readings


def _backfill_then_failed_backfill(instance: dg.DagsterInstance, prefix: str) -> dict:
    job, keys, check_key = _job(prefix)
    ok = _run(job, instance)
    assert ok.success
    failed = _run(job, instance, fail=True)
    assert not failed.success
    return _readings(instance, keys, check_key, {"ok": ok.run_id, "failed": failed.run_id})


@pytest.fixture
def dagster_home(tmp_path, monkeypatch):
    home = tmp_path / "dagster-home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    return home


@pytest.fixture
def batches_written(monkeypatch):
    """Batches the shipped storage wrote itself (not handed to Dagster's one-by-one fallback)."""
    written: list[Counter] = []
    for storage in (instance_storage.BatchedSqliteEventLogStorage, instance_storage.BatchedPostgresEventLogStorage):
        original = storage._write_batch

        def spy(self, events, rows, original=original):
            written.append(Counter(event.dagster_event_type for event in events))
            return original(self, events, rows)

        monkeypatch.setattr(storage, "_write_batch", spy)
    return written


def _dagster_default(tmp_path: Path) -> dict:
    home = tmp_path / "default-home"
    home.mkdir()
    with dg.DagsterInstance.local_temp(str(home)) as instance:
        assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
        return _backfill_then_failed_backfill(instance, "shop")


def _assert_batched(batches_written: list[Counter]) -> None:
    planned = dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    # 7 partitions × 2 assets planned (with the check's planned evaluation) per run, and each step's 7.
    assert {15: 2} == Counter(sum(b.values()) for b in batches_written if planned in b)
    materialized = [b for b in batches_written if dg.DagsterEventType.ASSET_MATERIALIZATION in b]
    assert [sum(b.values()) for b in materialized] == [7, 7]


def test_the_shipped_sqlite_storage_batches_a_backfill_and_reads_back_as_dagster_s(
    dagster_home, batches_written, tmp_path
):
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.event_log_storage, instance_storage.BatchedSqliteEventLogStorage)
        assert Path(instance.event_log_storage._base_dir) == dagster_home / "history" / "runs"
        shipped = _backfill_then_failed_backfill(instance, "shop")
    _assert_batched(batches_written)
    default = _dagster_default(tmp_path)
    assert shipped == default
    # The readings are not vacuous: the failed run's partitions are failed, the first run's materialized.
    assert default["ledger"]["failed"] == [f"2026-01-0{day}" for day in range(1, 8)]
    assert default["summary"]["materialized"] == [f"2026-01-0{day}" for day in range(1, 8)]
    assert default["ledger"]["latest partition"] == "2026-01-07"
    planned_checks = Counter(run for run, status, _ in default["check executions"] if status == "PLANNED")
    assert planned_checks == {"ok": 7, "failed": 7}  # one per partition and run


def test_the_shipped_sqlite_storage_keeps_a_shard_open_between_writes_and_lets_go_of_it_when_wiped(
    dagster_home, monkeypatch
):
    """Dagster's opens (and checkpoints) a shard's file for every statement; the shipped one keeps it open."""
    opened: Counter = Counter()
    connect = sqlite3.dbapi2.connect  # what SQLAlchemy's SQLite dialect calls

    def counted(path, *args, **kwargs):
        opened.update([Path(path).name])
        return connect(path, *args, **kwargs)

    monkeypatch.setattr(sqlite3.dbapi2, "connect", counted)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    with dg.DagsterInstance.get() as instance:
        job, keys, _ = _job("shop")
        result = _run(job, instance)
        assert result.success
        shard = f"{result.run_id}.db"
        stored = len(instance.all_logs(result.run_id))
        assert stored > 30  # each event written as its own transaction
        assert opened[shard] <= 3, opened  # the shard's tables created on a second connection, then one
        instance.event_log_storage.wipe()
        assert not (dagster_home / "history" / "runs" / shard).exists()
        # What is written after the wipe lands in a new file that another process (a new storage) reads.
        note = dg.EventLogEntry(None, "INFO", "after the wipe", result.run_id, time.time())
        instance.event_log_storage.store_event(note)
        other = instance_storage.BatchedSqliteEventLogStorage(str(dagster_home / "history" / "runs"))
        assert [e.user_message for e in other.get_logs_for_run(result.run_id)] == ["after the wipe"]
        assert instance.get_materialized_partitions(keys[0]) == set()
        again = _run(job, instance)  # a wiped storage writes and reads as a new one
        assert len(instance.all_logs(again.run_id)) == stored
        assert len(instance.get_materialized_partitions(keys[0])) == 7


def test_a_run_s_events_reach_a_watcher_as_they_are_stored(dagster_home):
    """The UI follows a running run through `watch`, which on SQLite waits for the run's file to change: each
    write must reach the file itself, not only the write-ahead log beside it."""
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    with dg.DagsterInstance.get() as instance:
        storage, run_id, seen = instance.event_log_storage, str(uuid.uuid4()), []
        storage.store_event(dg.EventLogEntry(None, "INFO", "first", run_id, time.time()))

        def follow(event, cursor):
            seen.append(event.user_message)

        storage.watch(run_id, None, follow)
        try:
            for message in ("second", "third"):
                storage.store_event(dg.EventLogEntry(None, "INFO", message, run_id, time.time()))
                deadline = time.monotonic() + 10
                while message not in seen and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert message in seen, seen
        finally:
            storage.end_watch(run_id, follow)


def test_the_sqlite_event_logs_live_in_the_folder_of_the_instance_that_opens_them(tmp_path, monkeypatch):
    """Not in $DAGSTER_HOME's when another folder's dagster.yaml is opened (dagster dev without DAGSTER_HOME)."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "elsewhere"))
    home = tmp_path / "opened"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        assert Path(instance.event_log_storage._base_dir) == home / "history" / "runs"
        job, keys, _ = _job("shop")
        assert _run(job, instance).success
        assert len(instance.get_materialized_partitions(keys[0])) == 7
    assert (home / "history" / "runs" / "index.db").exists()
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get("DAGSTER_PG_HOST"), reason="needs PostgreSQL (.ci/run)")
def test_the_shipped_postgres_storage_batches_a_backfill_and_reads_back_as_dagster_s(
    dagster_home, batches_written, tmp_path
):
    shutil.copy(REPO / "deploy" / "dagster-postgres.yaml", dagster_home / "dagster.yaml")
    # The database is shared with other tests: this test's assets are its own.
    prefix = f"shop_{uuid.uuid4().hex[:8]}"
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.event_log_storage, instance_storage.BatchedPostgresEventLogStorage)
        connections: list = []
        sa.event.listen(instance.event_log_storage._engine, "connect", lambda *_: connections.append(1))
        shipped = _backfill_then_failed_backfill(instance, prefix)
        # Two runs, each storing its events one at a time: Dagster's opens a connection for every statement;
        # the shipped one keeps one, and opens another only where Dagster nests a second connection.
        assert sum(shipped["events by run"]["ok"].values()) > 30
        assert len(connections) <= 6, len(connections)
    _assert_batched(batches_written)
    assert shipped == _dagster_default(tmp_path)
