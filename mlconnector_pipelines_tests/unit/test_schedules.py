"""The settle-lag schedules: each tick loads the window that closed (and settled) before it, each window once."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import dagster as dg
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._scheduler.scheduler import launch_scheduled_runs
from dagster._utils.schedules import cron_string_iterator

from mlconnector_pipelines.core.settings import PartitionConfig
from mlconnector_pipelines.flows.partitions import CATCH_UP_WINDOWS, partitions_def, settled_window_schedule


@dg.op
def _nothing() -> None:
    pass


@dg.job
def _load() -> None:
    _nothing()


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def window_asked_for(schedule: dg.ScheduleDefinition, tick: datetime, instance: dg.DagsterInstance) -> str:
    """The window a tick asks for when the schedule has launched no run before (none to catch up)."""
    (request,) = schedule(dg.build_schedule_context(instance, scheduled_execution_time=tick))
    return request.partition_key


@pytest.mark.parametrize(
    ("cadence", "zone", "lag", "first_tick", "ticks"),
    [
        ("hourly", "Europe/Berlin", 30, "2026-03-28T20:00:00+00:00", 12),  # clocks go forward on the 29th
        ("hourly", "Europe/Berlin", 30, "2026-10-24T20:00:00+00:00", 12),  # and back on 25 October
        ("hourly", "America/New_York", 30, "2026-03-08T03:00:00+00:00", 8),
        ("daily", "Europe/Berlin", 150, "2026-03-27T00:00:00+00:00", 4),
        ("daily", "UTC", 90, "2026-03-27T00:00:00+00:00", 4),
        ("daily", "UTC", 1440, "2026-03-27T00:00:00+00:00", 4),
        ("weekly", "UTC", 1440, "2026-03-01T00:00:00+00:00", 3),  # the tick was Monday 00:00: no settle at all
        ("monthly", "Europe/Berlin", 1440, "2026-01-15T00:00:00+00:00", 3),
        ("weekly", "Europe/Berlin", 120, "2026-03-20T00:00:00+00:00", 3),
    ],
)
def test_each_tick_loads_the_window_that_settled_before_it_and_no_window_is_skipped(
    cadence, zone, lag, first_tick, ticks, instance
):
    """Computed on the wall clock, a tick after a DST change asked for a window still open, the next asked for it
    again (dropped as a repeated run key) and the window between was never loaded."""
    cfg = PartitionConfig(cadence=cadence, start=date(2026, 1, 1), settle_lag_minutes=lag, timezone=zone)
    partitions = partitions_def(cfg)
    schedule = settled_window_schedule(_load, cfg, partitions, name="load_settled")
    moments = cron_string_iterator(datetime.fromisoformat(first_tick).timestamp(), schedule.cron_schedule, zone)
    keys = []
    for _ in range(ticks):
        tick = next(moments)
        key = window_asked_for(schedule, tick, instance)
        window = partitions.time_window_for_partition_key(key)
        assert window.end <= tick - timedelta(minutes=lag), f"{key} had not settled at {tick}"
        keys.append(key)
    assert len(set(keys)) == len(keys), f"a window asked for twice: {keys}"
    windows = [partitions.time_window_for_partition_key(k) for k in keys]
    assert all(a.end.astimezone(UTC) == b.start.astimezone(UTC) for a, b in pairwise(windows)), keys


@pytest.mark.parametrize(
    ("cadence", "zone", "lag", "first_tick", "expected"),
    [
        # Clocks go back 25 October 03:00 CEST: that day's 03:00 tick came 4 hours after the 24th closed.
        ("daily", "Europe/Berlin", 180, "2026-10-23T00:00:00+00:00", ["2026-10-22", "2026-10-23", "2026-10-24"]),
        ("daily", "Europe/Berlin", 150, "2026-10-23T00:00:00+00:00", ["2026-10-22", "2026-10-23", "2026-10-24"]),
        # And forward 29 March 02:00 CET: the 03:00 tick came 2 hours after the 28th closed.
        ("daily", "Europe/Berlin", 180, "2026-03-27T00:00:00+00:00", ["2026-03-26", "2026-03-27", "2026-03-28"]),
        ("daily", "America/New_York", 120, "2026-10-30T00:00:00+00:00", ["2026-10-29", "2026-10-30", "2026-10-31"]),
        ("daily", "America/New_York", 120, "2026-03-06T00:00:00+00:00", ["2026-03-05", "2026-03-06", "2026-03-07"]),
        ("weekly", "America/New_York", 180, "2026-10-20T00:00:00+00:00", ["2026-10-19", "2026-10-26", "2026-11-02"]),
    ],
)
def test_a_tick_on_a_dst_change_day_loads_the_window_that_ended_the_lag_before_on_the_zones_clock(
    cadence, zone, lag, first_tick, expected, instance
):
    """A daily (weekly) schedule in a zone ticks at a time of day on its clock. The lag subtracted in elapsed time on
    the 25-hour autumn day landed inside the day still open: the tick asked for it, and the day before it was never
    asked for. On the zone's clock the tick at 03:00 with a 3-hour lag asks for the window that ended at midnight."""
    cfg = PartitionConfig(cadence=cadence, start=date(2026, 1, 1), settle_lag_minutes=lag, timezone=zone)
    partitions = partitions_def(cfg)
    schedule = settled_window_schedule(_load, cfg, partitions, name="load_settled")
    moments = cron_string_iterator(datetime.fromisoformat(first_tick).timestamp(), schedule.cron_schedule, zone)
    assert [window_asked_for(schedule, next(moments), instance) for _ in expected] == expected


# What Dagster's scheduler (the daemon) evaluates in the catch-up tests: a daily load, 30 minutes' lag, in UTC.
DAILY = PartitionConfig(cadence="daily", start=date(2026, 1, 1), settle_lag_minutes=30)
_days = partitions_def(DAILY)


@dg.asset(partitions_def=_days)
def window_load() -> None:
    pass


_window_job = dg.define_asset_job("load_windows", selection=[window_load])
daemon_defs = dg.Definitions(
    assets=[window_load],
    jobs=[_window_job],
    schedules=[settled_window_schedule(_window_job, DAILY, _days, name="load_windows_schedule")],
)


@contextmanager
def daemon_running_the_schedule(started_at: datetime, tmp_path):
    """This module's `daemon_defs` loaded as a code location, its schedule switched on at `started_at`, and a
    function running the scheduler daemon's pass at a moment (each pass evaluates the ticks since the last)."""
    target = LoadableTargetOrigin(module_name=__name__, attribute="daemon_defs")
    origin = InProcessCodeLocationOrigin(target, location_name="schedules")
    # Runs are queued, not executed; one event log database, not one per run (each costs a schema).
    overrides = {
        "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"},
        "event_log_storage": {
            "module": "dagster._core.storage.event_log",
            "class": "ConsolidatedSqliteEventLogStorage",
            "config": {"base_dir": str(tmp_path)},
        },
    }
    with dg.instance_for_test(overrides=overrides) as instance:
        with create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget([origin]), instance) as workspace:
            location = next(iter(workspace.create_request_context().get_code_location_entries().values()))
            repository = next(iter(location.code_location.get_repositories().values()))
            with freeze_time(started_at):
                instance.start_schedule(repository.get_schedule("load_windows_schedule"))

            def daemon_pass(at: datetime) -> list[str]:
                """The windows of the runs the pass launched."""
                before = {run.run_id for run in instance.get_runs()}
                with freeze_time(at):
                    list(launch_scheduled_runs(workspace, logging.getLogger(__name__), at, {}))
                launched = [run for run in instance.get_runs() if run.run_id not in before]
                return sorted(run.tags["dagster/partition"] for run in launched)

            daemon_pass.instance = instance  # for a test adding runs of its own
            yield daemon_pass


def test_after_the_daemon_was_down_the_next_tick_loads_every_window_it_missed(tmp_path):
    """Dagster runs only the latest missed tick of a schedule without a partition set, and each tick asked for its
    own window: three days of downtime left two windows never loaded. The schedule now asks for every settled window
    since the last one it asked for, each its own run (run key = window)."""
    first_tick = datetime(2026, 3, 10, 0, 30, tzinfo=UTC)
    with daemon_running_the_schedule(first_tick - timedelta(minutes=10), tmp_path) as daemon_pass:
        assert daemon_pass(first_tick + timedelta(minutes=5)) == ["2026-03-09"]  # not the history since January
        assert daemon_pass(first_tick + timedelta(days=3, minutes=5)) == ["2026-03-10", "2026-03-11", "2026-03-12"]
        assert daemon_pass(first_tick + timedelta(days=3, minutes=20)) == []  # no tick due: nothing again


def test_a_long_outage_is_caught_up_a_bounded_number_of_windows_a_tick_oldest_first_with_none_skipped(tmp_path):
    """Thirty days behind, a tick does not launch thirty runs at once: the oldest CATCH_UP_WINDOWS, then the rest
    on the next tick, so the windows still come in order and none is left out."""
    first_tick = datetime(2026, 3, 10, 0, 30, tzinfo=UTC)
    missed = [f"2026-03-{day:02d}" for day in range(10, 32)] + [f"2026-04-{day:02d}" for day in range(1, 9)]
    with daemon_running_the_schedule(first_tick - timedelta(minutes=10), tmp_path) as daemon_pass:
        assert daemon_pass(first_tick) == ["2026-03-09"]
        assert daemon_pass(first_tick + timedelta(days=30)) == missed[:CATCH_UP_WINDOWS]
        assert daemon_pass(first_tick + timedelta(days=31)) == missed[CATCH_UP_WINDOWS:] + ["2026-04-09"]


def test_re_executions_of_old_windows_do_not_make_the_next_tick_load_windows_again(tmp_path):
    """Re-executed runs (the UI's re-execute, the run-retry daemon) keep their parent's schedule, partition and run
    key tags. Re-runs of March windows pushed the schedule's newest window out of the runs it looked at, and the
    next tick loaded a week again (a repeated run key on another tick is not dropped for schedules). More of them
    than a page of runs: the newest window is still found."""
    from dagster._core.storage.dagster_run import DagsterRun

    first_tick = datetime(2026, 3, 10, 0, 30, tzinfo=UTC)
    with daemon_running_the_schedule(first_tick - timedelta(minutes=10), tmp_path) as daemon_pass:
        assert daemon_pass(first_tick) == ["2026-03-09"]
        assert len(daemon_pass(first_tick + timedelta(days=30))) == CATCH_UP_WINDOWS
        assert daemon_pass(first_tick + timedelta(days=31))[-1] == "2026-04-09"
        instance = daemon_pass.instance
        for n in range(150):
            key = (date(2026, 3, 10) + timedelta(days=n % CATCH_UP_WINDOWS)).isoformat()
            instance.add_run(DagsterRun(job_name="load_windows", tags={
                "dagster/schedule_name": "load_windows_schedule", "dagster/partition": key, "dagster/run_key": key,
                "dagster/parent_run_id": "a-failed-run", "dagster/root_run_id": "a-failed-run"}))  # fmt: skip
        assert daemon_pass(first_tick + timedelta(days=33)) == ["2026-04-10", "2026-04-11"]  # a tick missed too


def test_an_upstream_named_for_lineage_only_holds_no_period_and_one_loaded_here_still_does():
    """`upstream` also names what nothing here loads (a dbt model, a table another tool fills, a system switched
    off): waiting for its materialization held every period for good, tick after tick, with only a skip reason.
    Only upstream assets this code location materializes hold a period until they have loaded its end."""
    cfg = PartitionConfig(cadence="daily", start=date(2026, 1, 1), settle_lag_minutes=90)
    days = partitions_def(cfg)
    loaded, lineage = dg.AssetKey(["erp", "entries"]), dg.AssetKey(["dbt", "fct_fees"])

    @dg.asset(partitions_def=days, key=loaded)
    def entries() -> None:
        pass

    @dg.asset(partitions_def=days, key=["looker", "fees"], deps=[loaded, lineage])
    def fees() -> None:
        pass

    job = dg.define_asset_job("looker_fees", selection=[fees], partitions_def=days)
    schedule = settled_window_schedule(job, cfg, days, "looker_fees_schedule", upstream=[loaded, lineage])
    repository = dg.Definitions(assets=[entries, fees], jobs=[job], schedules=[schedule]).get_repository_def()
    tick = datetime(2026, 3, 10, 1, 30, tzinfo=UTC)
    with dg.instance_for_test() as instance:

        def evaluate():
            context = dg.build_schedule_context(instance, scheduled_execution_time=tick, repository_def=repository)
            return schedule.evaluate_tick(context)

        waiting = evaluate()
        assert not waiting.run_requests and "erp/entries" in waiting.skip_message, waiting.skip_message
        assert "dbt/fct_fees" not in waiting.skip_message
        instance.report_runless_asset_event(dg.AssetMaterialization(loaded, partition="2026-03-09"))
        assert [r.partition_key for r in evaluate().run_requests] == ["2026-03-09"]
