from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from mlconnector_pipelines.core.windows import TimeWindow, assign_window_starts

UTC = UTC
DAY1 = datetime(2026, 3, 1, tzinfo=UTC)
WINDOWS = [TimeWindow(DAY1 + timedelta(days=i), DAY1 + timedelta(days=i + 1)) for i in range(3)]


def test_each_timestamp_lands_in_the_window_that_holds_it():
    stamps = pd.Series(
        [
            "2026-03-01T00:00:00.000Z",
            "2026-03-01T23:59:59.999Z",
            "2026-03-02T00:00:00.000Z",
            "2026-03-03T12:00:00+02:00",
        ]
    )
    starts = assign_window_starts(stamps, WINDOWS).to_pylist()
    assert starts == [DAY1, DAY1, DAY1 + timedelta(days=1), DAY1 + timedelta(days=2)]


@pytest.mark.parametrize("stamp", ["2026-02-28T23:59:59.999Z", "2026-03-04T00:00:00.000Z"])
def test_a_row_outside_the_windows_is_refused(stamp):
    with pytest.raises(ValueError, match="outside the windows being loaded"):
        assign_window_starts(pd.Series([stamp]), WINDOWS)


def test_windows_are_aware_and_non_empty():
    with pytest.raises(ValueError):
        TimeWindow(datetime(2026, 3, 1), datetime(2026, 3, 2))
    with pytest.raises(ValueError):
        TimeWindow(DAY1, DAY1)


@pytest.mark.parametrize(
    "value, expected",
    [
        ("14:23:05", (14, 23, 5)),
        ("14:23", (14, 23, 0)),
        (142305, (14, 23, 5)),
        ("142305", (14, 23, 5)),
        (1840, (0, 18, 40)),  # HHMMSS as B1 stores UpdateTS, also when it has four digits or fewer
        (905, (0, 9, 5)),
        (0, (0, 0, 0)),
        # No time of day: the end of the (server-local) day, so the record is never placed in a window
        # that closed before it changed.
        (None, (23, 59, 59)),
        ("", (23, 59, 59)),
    ],
)
def test_service_layer_update_time_formats(value, expected):
    from mlconnector_pipelines.systems.sap_business_one.client import update_time

    parsed = update_time(value)
    assert (parsed.hour, parsed.minute, parsed.second) == expected


def test_local_times_convert_to_utc_across_dst_changes_taking_the_later_reading():
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from mlconnector_pipelines.core.windows import local_to_utc_micros

    epoch = datetime(1970, 1, 1)
    walls = [
        datetime(2026, 3, 7, 12),
        datetime(2026, 3, 8, 1, 30),
        datetime(2026, 3, 8, 2, 30),  # 02:30 is skipped
        datetime(2026, 3, 8, 3, 30),
        datetime(2026, 11, 1, 1, 30),  # 01:30 happens twice on Nov 1
        datetime(2026, 3, 9, 0, 0),
    ]
    utc = local_to_utc_micros([(w - epoch) // timedelta(microseconds=1) for w in walls], ZoneInfo("America/New_York"))
    assert [epoch + timedelta(microseconds=int(u)) for u in utc] == [
        datetime(2026, 3, 7, 17),
        datetime(2026, 3, 8, 6, 30),
        datetime(2026, 3, 8, 7, 30),
        datetime(2026, 3, 8, 7, 30),
        datetime(2026, 11, 1, 6, 30),
        datetime(2026, 3, 9, 4),
    ]
