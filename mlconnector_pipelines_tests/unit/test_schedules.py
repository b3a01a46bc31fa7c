"""The settle-lag schedules: each tick loads the window that closed (and settled) before it, each window once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import pairwise

import dagster as dg
import pytest
from dagster._utils.schedules import cron_string_iterator

from mlconnector_pipelines.core.settings import PartitionConfig
from mlconnector_pipelines.flows.partitions import partitions_def, settled_window_schedule


@dg.op
def _nothing() -> None:
    pass


@dg.job
def _load() -> None:
    _nothing()


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
    cadence, zone, lag, first_tick, ticks
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
        request = schedule(dg.build_schedule_context(scheduled_execution_time=tick))
        window = partitions.time_window_for_partition_key(request.partition_key)
        assert window.end <= tick - timedelta(minutes=lag), f"{request.partition_key} had not settled at {tick}"
        keys.append(request.partition_key)
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
    cadence, zone, lag, first_tick, expected
):
    """A daily (weekly) schedule in a zone ticks at a time of day on its clock. The lag subtracted in elapsed time on
    the 25-hour autumn day landed inside the day still open: the tick asked for it, and the day before it was never
    asked for. On the zone's clock the tick at 03:00 with a 3-hour lag asks for the window that ended at midnight."""
    cfg = PartitionConfig(cadence=cadence, start=date(2026, 1, 1), settle_lag_minutes=lag, timezone=zone)
    partitions = partitions_def(cfg)
    schedule = settled_window_schedule(_load, cfg, partitions, name="load_settled")
    moments = cron_string_iterator(datetime.fromisoformat(first_tick).timestamp(), schedule.cron_schedule, zone)
    asked = [schedule(dg.build_schedule_context(scheduled_execution_time=next(moments))) for _ in expected]
    assert [request.partition_key for request in asked] == expected
