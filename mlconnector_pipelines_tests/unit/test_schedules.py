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
