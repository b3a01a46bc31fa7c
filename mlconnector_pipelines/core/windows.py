"""Half-open UTC time windows and assignment of rows to the window that holds them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo


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
    """The start of the window holding each ISO timestamp, as an Arrow timestamp array (UTC).

    A single-run backfill covers many partitions at once; each row still belongs to exactly one
    partition window, found by bisecting the window starts. Raises if a timestamp lies outside
    the windows: the server returned rows it was not asked for.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    moments = utc_moments(
        pa.array(timestamps) if not isinstance(timestamps, (pa.Array, pa.ChunkedArray)) else timestamps
    )
    micros = np.asarray(pc.cast(moments, pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    starts = np.array([int(w.start.timestamp() * 1_000_000) for w in windows], dtype=np.int64)
    end = int(windows[-1].end.timestamp() * 1_000_000)
    index = np.searchsorted(starts, micros, side="right") - 1
    outside = (index < 0) | (micros >= end)
    if outside.any():
        first = moments[int(np.argmax(outside))].as_py()
        raise ValueError(
            f"{first.isoformat()} is outside the windows being loaded "
            f"[{windows[0].start.isoformat()}, {windows[-1].end.isoformat()})"
        )
    return pa.array(starts[index], type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def at_or_after(stamps, end: datetime):
    """Which ISO stamps are at or past `end` (False for none): rows of records changed while their window
    was being read, which a server serving the records it matched first sends with their new stamp."""
    import pyarrow as pa
    import pyarrow.compute as pc

    moments = utc_moments(stamps)
    return pc.greater_equal(moments, pa.scalar(end, moments.type)).fill_null(False)


def utc_moments(stamps):
    """ISO stamps (Arrow text, or timestamps) as UTC microseconds. OData allows up to twelve digits of a
    second (.NET writes seven): those past the sixth are cut, which never moves a stamp across a window's
    bound (a bound is a whole microsecond, and cutting only lowers a stamp to the microsecond it is in).
    A stamp without an offset (an Acumatica site may write one) is read as UTC, as the window's filter and
    Acumatica's scan read it; it failed the whole load with Arrow's "expected a zone offset"."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(stamps.type) or pa.types.is_large_string(stamps.type):
        stamps = pc.replace_substring_regex(stamps, r"(\.\d{6})\d+", r"\1")
        stamps = pc.replace_substring_regex(stamps, r"(T\d\d:\d\d(:\d\d(\.\d+)?)?)$", r"\1Z")
    return pc.cast(stamps, pa.timestamp("us", tz="UTC"))


_DAY_MICROS = 86_400_000_000
_EPOCH = datetime(1970, 1, 1)


def local_to_utc_micros(local_micros, zone: tzinfo):
    """Wall-clock moments of `zone` (naive microseconds since 1970-01-01 00:00) -> UTC microseconds.

    A wall-clock time that a DST change makes ambiguous (it occurs twice) or skips takes the
    later of its readings: a record placed later is loaded by a later window, never by one that
    closed before it changed. Days without a change are converted with one offset each.
    """
    import numpy as np

    local = np.asarray(local_micros, dtype=np.int64)
    days = local // _DAY_MICROS
    result = np.empty_like(local)
    for day in np.unique(days):
        on_day = days == day
        midnight = _EPOCH + timedelta(microseconds=int(day) * _DAY_MICROS)
        offsets = {(midnight + timedelta(hours=h)).replace(tzinfo=zone).utcoffset() for h in range(25)}
        if len(offsets) == 1:
            result[on_day] = local[on_day] - offsets.pop() // timedelta(microseconds=1)
        else:  # the day of a DST change: moment by moment
            result[on_day] = [
                (latest_utc(_EPOCH + timedelta(microseconds=int(m)), zone).replace(tzinfo=None) - _EPOCH)
                // timedelta(microseconds=1)
                for m in local[on_day]
            ]
    return result


def latest_utc(wall: datetime, zone: tzinfo) -> datetime:
    """The later UTC reading of a wall-clock time of `zone` (see `local_to_utc_micros`)."""
    return max(wall.replace(fold=fold, tzinfo=zone).astimezone(UTC) for fold in (0, 1))


def one_moment(value, zone: tzinfo = UTC) -> datetime | None:
    """One moment, any year from 1 to 9999 (past pandas' nanosecond range): a datetime or ISO text, an offset
    naming it, or wall-clock time of `zone` read as `latest_utc`; None for a missing value (None, NaN, NaT)."""
    if value is None or value == "" or value != value:  # NaN and NaT are not equal to themselves
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.astimezone(UTC) if moment.tzinfo is not None else latest_utc(moment, zone)
