"""Half-open UTC time windows and assignment of rows to the window that holds them."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class TimeWindow:
    """`[start, end)` in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if not self.start < self.end:
            raise ValueError(f"empty window [{self.start}, {self.end})")

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def parse_utc(value: str) -> datetime:
    """Parse an ISO-8601 timestamp (with Z or offset) into an aware UTC datetime."""
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


class WindowAssigner:
    """Maps a timestamp to the start of the partition window containing it.

    A single-run backfill covers many partitions at once; each row still belongs to exactly
    one partition window, found by bisecting the window starts.
    """

    def __init__(self, windows: Sequence[TimeWindow]):
        if not windows:
            raise ValueError("at least one window is required")
        self._starts = [w.start for w in windows]
        self._end = windows[-1].end

    def window_start(self, moment: datetime) -> datetime:
        index = bisect.bisect_right(self._starts, moment) - 1
        if index < 0 or moment >= self._end:
            raise ValueError(f"{moment.isoformat()} is outside the windows being loaded")
        return self._starts[index]


def assign_window_starts(timestamps, windows: Sequence[TimeWindow]):
    """Vectorised WindowAssigner for a pandas Series of ISO timestamps -> Series of window starts.

    Raises if any timestamp lies outside the windows: the server returned rows it was not asked for.
    """
    import numpy as np
    import pandas as pd

    moments = pd.to_datetime(timestamps, utc=True, format="ISO8601")
    starts = pd.DatetimeIndex([w.start for w in windows])
    end = pd.Timestamp(windows[-1].end)
    index = np.searchsorted(starts.values, moments.values, side="right") - 1
    outside = (index < 0) | (moments.values >= end.to_datetime64())
    if outside.any():
        first = moments[outside].iloc[0] if hasattr(moments, "iloc") else moments[outside][0]
        raise ValueError(f"{first.isoformat()} is outside the windows being loaded "
                         f"[{windows[0].start.isoformat()}, {windows[-1].end.isoformat()})")
    return pd.Series(starts[index], index=getattr(timestamps, "index", None))
