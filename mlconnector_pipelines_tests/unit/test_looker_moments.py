"""Looker's date-times (wall-clock text in the query's zone) as the UTC moments they name, for any year."""

from datetime import UTC, datetime

import pandas as pd
import pytest

from mlconnector_pipelines.flows.looker import looker_moments


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin"])
def test_a_no_end_date_past_pandas_range_lands_with_the_others(zone):
    """9999-12-31 is past pandas' nanosecond timestamps (2262): it and its neighbours still read as moments."""
    values = pd.Series(["2026-07-01 12:00:00", "9999-12-31 00:00:00", None, "2026-01-15 08:30:00"])
    moments = [None if pd.isna(m) else pd.Timestamp(m).to_pydatetime() for m in looker_moments(values, zone)]
    offset = {"UTC": (0, 0), "Europe/Berlin": (2, 1)}[zone]  # summer, winter
    assert moments == [
        datetime(2026, 7, 1, 12 - offset[0], tzinfo=UTC),
        datetime(9999, 12, 31, tzinfo=UTC) - pd.Timedelta(hours=offset[1]).to_pytimedelta(),
        None,
        datetime(2026, 1, 15, 8 - offset[1], 30, tzinfo=UTC),
    ]
