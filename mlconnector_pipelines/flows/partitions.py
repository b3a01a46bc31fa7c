"""Time-window partitions (UTC, or a configured zone) and the schedule that loads each window once it has settled."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from ..core.settings import PartitionConfig
from ..core.windows import TimeWindow

# A schedule that fell behind (the daemon down, the schedule switched off) asks for the windows it missed, oldest
# first, at most this many a tick; the rest follow on the next ticks. A schedule's first tick asks for one window.
CATCH_UP_WINDOWS = 24
SCHEDULE_NAME_TAG = "dagster/schedule_name"  # Dagster's tags on a scheduled run
PARTITION_TAG = "dagster/partition"
PARENT_RUN_TAG = "dagster/parent_run_id"  # on a re-execution
_RUNS_PAGE = 100  # the schedule's runs read at a time for the newest window it asked for

# `d`: the days of the lag, past the window's first day (a week's Monday, a month's 1st)
_CRON = {"hourly": "{m} * * * *", "daily": "{m} {h} * * *", "weekly": "{m} {h} * * {w}", "monthly": "{m} {h} {d} * *"}


def partitions_def(cfg: PartitionConfig) -> dg.TimeWindowPartitionsDefinition:
    """Windows from `start` in the configured time zone; the still-open current window is offered too."""
    start, zone = cfg.start.isoformat(), cfg.timezone
    if cfg.cadence == "hourly":
        return dg.HourlyPartitionsDefinition(start_date=f"{start}-00:00", timezone=zone, end_offset=1)
    if cfg.cadence == "weekly":
        return dg.WeeklyPartitionsDefinition(start_date=start, timezone=zone, end_offset=1, day_offset=1)
    if cfg.cadence == "monthly":
        return dg.MonthlyPartitionsDefinition(start_date=start, timezone=zone, end_offset=1)
    return dg.DailyPartitionsDefinition(start_date=start, timezone=zone, end_offset=1)


def partition_windows(context: dg.AssetExecutionContext) -> dict[str, TimeWindow]:
    """Every partition the run covers (one, or many in a single-run backfill) and its window, in order."""
    partitions = context.assets_def.partitions_def
    keys = partitions.get_partition_keys_in_range(context.partition_key_range)
    windows = {}
    for key in keys:
        window = partitions.time_window_for_partition_key(key)
        windows[key] = TimeWindow(window.start, window.end)
    return windows


def settled_window_schedule(
    job,
    cfg: PartitionConfig,
    partitions: dg.TimeWindowPartitionsDefinition,
    name: str,
    upstream: Sequence[dg.AssetKey] = (),
) -> dg.ScheduleDefinition:
    """Runs `settle_lag_minutes` after each window closes and loads every settled window not asked for yet.

    With `upstream`, a window is asked for only once each upstream asset has loaded the window's end, and the
    schedule ticks every hour (at the lag's minute) to ask for it soon after they have."""
    minute, hour = cfg.settle_lag_minutes % 60, (cfg.settle_lag_minutes // 60) % 24
    days = cfg.settle_lag_minutes // (24 * 60)  # a lag of a whole day: the tick moves a day on, not to 00:00
    cron = _CRON["hourly" if upstream else cfg.cadence].format(m=minute, h=hour, w=1 + days, d=1 + days)
    waits = (
        f" once {', '.join(k.to_user_string() for k in upstream)} (those loaded here) loaded its end"
        if upstream
        else ""
    )

    @dg.schedule(
        name=name,
        cron_schedule=cron,
        job=job,
        execution_timezone=cfg.timezone,
        description=f"Loads each {cfg.cadence} window {cfg.settle_lag_minutes} min after it closes "
        f"(late-committed rows settle first){waits}, and any it missed (the daemon down, the schedule off), "
        f"up to {CATCH_UP_WINDOWS} a tick.",
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        settled = _settled_window_key(partitions, cfg, context.scheduled_execution_time)
        if settled is None:
            return dg.SkipReason(f"no window has closed and settled yet (the first starts {partitions.start})")
        due = _windows_not_asked_for(context, partitions, name, settled)
        requests = []
        for key in due:
            waiting = _upstream_without(context, upstream, partitions.time_window_for_partition_key(key))
            if waiting:  # later windows wait too: asked for in order, none is passed over
                if not requests:
                    return dg.SkipReason(f"window {key} waits for {'; '.join(waiting)}")
                break
            requests.append(dg.RunRequest(run_key=key, partition_key=key))
        return requests or dg.SkipReason(f"every window up to {settled} was asked for already")

    return _schedule


def _settled_window_key(
    partitions: dg.TimeWindowPartitionsDefinition, cfg: PartitionConfig, moment: datetime
) -> str | None:
    """The newest window that had closed `settle_lag_minutes` before `moment` (None before the first one had)."""
    lag = timedelta(minutes=cfg.settle_lag_minutes)
    if cfg.cadence == "hourly":
        # An hour's window and its lag are elapsed time: on the wall clock, the two ticks in the hour repeated in
        # autumn would ask for one window twice and never for the one between.
        settled_by = moment.astimezone(UTC) - lag
    else:
        # A day (week, month) ends at midnight on the zone's clock and its tick is a time of day there: the lag is
        # counted on that clock. Counted in elapsed time, a 25-hour day's tick asked for the day still open and the
        # day before was never loaded.
        zone = ZoneInfo(cfg.timezone)
        settled_by = (moment.astimezone(zone).replace(tzinfo=None) - lag).replace(tzinfo=zone)
    still_open = partitions.time_window_for_partition_key(
        partitions.get_partition_key_for_timestamp(settled_by.timestamp())
    )
    if still_open.start <= partitions.start:
        return None
    return partitions.get_partition_key_for_timestamp(still_open.start.timestamp(), end_closed=True)


def _windows_not_asked_for(
    context: dg.ScheduleEvaluationContext, partitions: dg.TimeWindowPartitionsDefinition, name: str, settled: str
) -> list[str]:
    """The settled windows after the newest one this schedule asked for, oldest first, at most CATCH_UP_WINDOWS;
    only `settled` when it never asked for one (history is a backfill's)."""
    newest = _newest_asked_for(context, partitions, name)
    if newest is None:
        return [settled]
    if not partitions.less_than(newest, settled):
        return []
    following = partitions.get_next_partition_key(newest)
    due = list(partitions.get_partition_keys_in_range(dg.PartitionKeyRange(following, settled)))
    if len(due) > CATCH_UP_WINDOWS:
        context.log.warning(
            f"{len(due)} settled windows were not loaded ({due[0]} to {due[-1]}): asking for the oldest "
            f"{CATCH_UP_WINDOWS} now, the rest on the next ticks (a backfill loads them at once)"
        )
    return due[:CATCH_UP_WINDOWS]


def _newest_asked_for(
    context: dg.ScheduleEvaluationContext, partitions: dg.TimeWindowPartitionsDefinition, name: str
) -> str | None:
    """The newest window this schedule's ticks asked for, from its runs, newest first, a page at a time.

    A re-execution (from the UI, or the run-retry daemon) keeps its parent's tags: re-runs of old windows are not
    what the schedule asked for last (taken so, the next tick asked for windows loaded already). A run of another
    partitioning (the cadence changed since) is none of these windows."""
    cursor = None
    while True:
        runs = context.instance.get_runs(
            filters=dg.RunsFilter(tags={SCHEDULE_NAME_TAG: name}), cursor=cursor, limit=_RUNS_PAGE
        )
        asked = [run.tags.get(PARTITION_TAG) for run in runs if PARENT_RUN_TAG not in run.tags]
        asked = [key for key in asked if key and partitions.has_partition_key(key)]
        if asked:  # ticks launch their windows oldest first: the newest is on the first page holding any
            return max(asked, key=lambda key: partitions.time_window_for_partition_key(key).start)
        if len(runs) < _RUNS_PAGE:
            return None
        cursor = runs[-1].run_id


def _upstream_without(
    context: dg.ScheduleEvaluationContext, upstream: Sequence[dg.AssetKey], window: dg.TimeWindow
) -> list[str]:
    """The upstream assets that have not loaded the window's end yet, each with what it lacks.

    A time-partitioned one needs the partition holding the window's last moment materialized after that partition
    closed: one re-read while still open (a change notification's run) lacks the rest of it. Any other needs a
    materialization after the window closed."""
    waiting = []
    for key in upstream:
        graph = context.repository_def.asset_graph
        if not graph.has(key) or not graph.get(key).is_materializable:
            # Named for lineage only (a dbt model, a table another tool loads, a system switched off): nothing here
            # loads it, and waiting for it held every period for good.
            continue
        own, partition, closed = _time_partitions_of(context, key), None, window.end
        if own is not None:
            last = own.get_partition_key_for_timestamp(window.end.timestamp(), end_closed=True)
            if not own.has_partition_key(last):
                continue  # before the upstream's first window: nothing of it to wait for
            partition, closed = last, own.time_window_for_partition_key(last).end
        found = dg.AssetRecordsFilter(
            asset_key=key,
            asset_partitions=[partition] if partition else None,
            after_timestamp=closed.timestamp(),
        )
        if not context.instance.fetch_materializations(found, limit=1).records:
            what = f" partition {partition}" if partition else ""
            waiting.append(f"{key.to_user_string()}{what} to be loaded after {closed.isoformat()}")
    return waiting


def _time_partitions_of(
    context: dg.ScheduleEvaluationContext, key: dg.AssetKey
) -> dg.TimeWindowPartitionsDefinition | None:
    partitions = context.repository_def.asset_graph.get(key).partitions_def
    return partitions if isinstance(partitions, dg.TimeWindowPartitionsDefinition) else None
