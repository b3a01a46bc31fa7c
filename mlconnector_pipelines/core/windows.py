"""Half-open UTC time windows and assignment of rows to the window that holds them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


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


def assign_window_starts(timestamps, windows: Sequence[TimeWindow]):
    """The start of the window holding each ISO timestamp of a pandas Series.

    A single-run backfill covers many partitions at once; each row still belongs to exactly one
    partition window, found by bisecting the window starts. Raises if a timestamp lies outside
    the windows: the server returned rows it was not asked for.
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
