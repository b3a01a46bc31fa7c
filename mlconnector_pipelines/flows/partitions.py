"""Time-window partitions (UTC, or a configured zone) and the schedule that loads each window once it has settled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from ..core.settings import PartitionConfig
from ..core.windows import TimeWindow

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
    job, cfg: PartitionConfig, partitions: dg.TimeWindowPartitionsDefinition, name: str
) -> dg.ScheduleDefinition:
    """Runs `settle_lag_minutes` after each window closes and loads that window."""
    minute, hour = cfg.settle_lag_minutes % 60, (cfg.settle_lag_minutes // 60) % 24
    days = cfg.settle_lag_minutes // (24 * 60)  # a lag of a whole day: the tick moves a day on, not to 00:00
    cron = _CRON[cfg.cadence].format(m=minute, h=hour, w=1 + days, d=1 + days)

    @dg.schedule(
        name=name,
        cron_schedule=cron,
        job=job,
        execution_timezone=cfg.timezone,
        description=f"Loads each {cfg.cadence} window {cfg.settle_lag_minutes} min after it closes "
        "(late-committed rows settle first).",
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        key = _settled_window_key(partitions, cfg, context.scheduled_execution_time)
        if key is None:
            return dg.SkipReason(f"no window has closed and settled yet (the first starts {partitions.start})")
        return dg.RunRequest(run_key=key, partition_key=key)

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
