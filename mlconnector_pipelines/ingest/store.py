"""Durable storage of received deliveries, written before the sender hears 2xx.

Two stores, one interface:
- files under the data folder (the default; one machine), each fsynced and renamed into place;
- a SQL database (`ingest.store_url`, e.g. PostgreSQL), when the receiver and the Dagster
  daemon run on different machines or pods and share no disk.

A delivery's id is a digest of what it carries (see identity.py), so a repeated delivery finds its
twin and is not stored again (a Looker delivery's also names the delivery before it: see app.py).
Each store hands out an opaque, increasing cursor; the sensor keeps the last one. Both are bounded (`ingest.retention_days`, `ingest.quota_mb`): each put first removes
deliveries stored longer ago than the retention, then refuses (StoreFull) a delivery that would take
the stored bodies past the quota, so a chatty or hostile sender cannot fill the disk.

Deliveries are stored as JSON whose numbers are exact (exact_json): `get()` returns amounts as
Decimal, digit for digit as Looker sent them, like the Looker API client does.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import exact_json

MB = 1024 * 1024
DAY_SECONDS = 86_400


@dataclass(frozen=True)
class Delivery:
    id: str
    source: str  # e.g. "looker"
    target: str  # the asset it feeds, e.g. the Looker query's name
    received_at: str
    detail: dict  # what the sender said about it (plan id, title, format)
    rows: list[dict]


class StoreFull(Exception):
    """Storing the delivery would pass `ingest.quota_mb`; nothing was stored."""


@dataclass(frozen=True)
class Bounds:
    retention_days: int = 30
    quota_bytes: int = 2048 * MB

    def expired_before(self, now: float) -> float:
        """Deliveries stored before this time (seconds since the epoch) are past the retention."""
        return now - self.retention_days * DAY_SECONDS

    def check_room(self, stored_bytes: int, new_bytes: int) -> None:
        if stored_bytes + new_bytes > self.quota_bytes:
            raise StoreFull(
                f"the delivery store is full: this delivery takes {new_bytes / MB:.1f} MB and stored deliveries "
                f"{stored_bytes / MB:.1f} MB of ingest.quota_mb = {self.quota_bytes / MB:g} MB. Nothing was stored. "
                f"Deliveries are removed {self.retention_days} day(s) after they arrive (ingest.retention_days); "
                "raise the quota or shorten the retention, then send it again"
            )


class DeliveryStore(ABC):
    @abstractmethod
    def put(self, delivery: Delivery) -> bool:
        """Store durably; False when a delivery with this id is already stored."""

    @abstractmethod
    def after(self, cursor: str | None, *, rows: bool = True) -> list[tuple[str, Delivery]]:
        """(cursor, delivery) of every delivery stored after `cursor`, oldest first; without `rows`, each with
        its id, target and detail only (a sensor's tick over a backlog read every row of it: gigabytes)."""

    @abstractmethod
    def get(self, delivery_id: str) -> Delivery: ...

    @abstractmethod
    def latest(self, target: str, *, rows: bool = True) -> Delivery | None:
        """The delivery stored last for `target` (an asset), if any is still kept (`rows`: as `after`)."""


_STORED_NAME = re.compile(r"^(\d{20})-([0-9a-f]+)\.json$")
# A stored delivery begins {"id": …, "source": …, "target": …}: its target is read from the file's head.
_HEAD_BYTES = 4096
_TARGET = re.compile(rb'"target":\s*"(?:[^"\\]|\\.)*"')


@dataclass(frozen=True)
class _StoredFile:
    path: Path
    stored_ns: int
    id: str
    size: int


class FileDeliveryStore(DeliveryStore):
    """`<stored ns>-<id>.json` files: a listing is in arrival order, and a name is the cursor."""

    def __init__(self, directory: Path, bounds: Bounds = Bounds(), clock: Callable[[], float] = time.time):
        self.directory = Path(directory)
        self.bounds, self._clock = bounds, clock
        self._lock = threading.Lock()

    def put(self, delivery: Delivery) -> bool:
        record = exact_json.dumps(asdict(delivery))
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            now = self._clock()
            now_ns = int(now * 1e9)
            kept = self._remove_expired(self._stored(), cutoff_ns=int(self.bounds.expired_before(now) * 1e9))
            if any(f.id == delivery.id for f in kept):
                return False
            self.bounds.check_room(sum(f.size for f in kept), len(record))
            # Strictly after every stored name, even if the clock stepped back: the sensor's cursor only grows.
            stored_ns = max([now_ns] + [f.stored_ns + 1 for f in kept])
            self._write(self.directory / f"{stored_ns:020d}-{delivery.id}.json", record)
        return True

    def after(self, cursor: str | None, *, rows: bool = True) -> list[tuple[str, Delivery]]:
        if not self.directory.is_dir():
            return []
        entries = []
        for stored in sorted(self._stored(), key=lambda f: f.path.name):
            if cursor is None or stored.path.name > cursor:
                try:
                    entries.append((stored.path.name, _load(stored.path, rows)))
                except FileNotFoundError:  # removed by the retention since the listing
                    continue
        return entries

    def get(self, delivery_id: str) -> Delivery:
        path = self._path_of(delivery_id)
        if path is None:
            raise KeyError(f"no stored delivery {delivery_id} in {self.directory}")
        return _load(path)

    def latest(self, target: str, *, rows: bool = True) -> Delivery | None:
        if not self.directory.is_dir():
            return None
        for stored in sorted(self._stored(), key=lambda f: f.path.name, reverse=True):
            try:
                with stored.path.open("rb") as held:  # the target is among the first fields: no whole read
                    head = held.read(_HEAD_BYTES)
                match = _TARGET.search(head)
                if match is not None and exact_json.loads(b"{" + match[0] + b"}")["target"] == target:
                    return _load(stored.path, rows)
            except FileNotFoundError:  # removed by the retention since the listing
                continue
        return None

    def _path_of(self, delivery_id: str) -> Path | None:
        return next(iter(self.directory.glob(f"*-{delivery_id}.json")), None)

    def _stored(self) -> list[_StoredFile]:
        """Every stored delivery (temporary `.incoming-` files are not: they match no stored name)."""
        found = []
        for path in self.directory.iterdir():
            match = _STORED_NAME.match(path.name)
            if match is None:
                continue
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            found.append(_StoredFile(path, int(match[1]), match[2], size))
        return found

    @staticmethod
    def _remove_expired(stored: list[_StoredFile], cutoff_ns: int) -> list[_StoredFile]:
        # No fsync of the removals: one a crash undoes is simply removed again by the next put.
        for expired in (f for f in stored if f.stored_ns < cutoff_ns):
            expired.path.unlink(missing_ok=True)
        return [f for f in stored if f.stored_ns >= cutoff_ns]

    def _write(self, final: Path, record: bytes) -> None:
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".incoming-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(record)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, final)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself must survive a crash
        finally:
            os.close(directory)


def _load(path: Path, rows: bool = True) -> Delivery:
    if rows:
        return Delivery(**exact_json.loads(path.read_bytes()))
    with path.open("rb") as held:
        return _head(held)


def _head(stored) -> Delivery:
    """A stored delivery without its rows: its fields read as they stream, up to the rows, which are skipped
    unparsed (a stored delivery is `{"id", "source", "target", "received_at", "detail", "rows"}`)."""
    import ijson
    from ijson.common import ObjectBuilder

    head = ObjectBuilder()
    for prefix, event, value in ijson.parse(stored, use_float=False, buf_size=4096):
        if prefix == "" and event == "map_key" and value == "rows":
            break
        head.event(event, value)
    return Delivery(**{**head.value, "rows": []})


class SqlDeliveryStore(DeliveryStore):
    """One row per delivery in `mlconnector_deliveries`; the serial number is the cursor.

    `received_at` holds when the row was stored (ISO 8601, UTC, microseconds: it sorts as text), which the
    retention compares; a body's size is `length(body)`, so existing tables need no new column.
    """

    def __init__(self, url: str, bounds: Bounds = Bounds(), clock: Callable[[], float] = time.time):
        import sqlalchemy as sa

        self._sa = sa
        self.bounds, self._clock = bounds, clock
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        metadata = sa.MetaData()
        self.table = sa.Table(
            "mlconnector_deliveries",
            metadata,
            sa.Column(
                "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
            ),
            sa.Column("id", sa.String(64), nullable=False, unique=True),
            sa.Column("source", sa.String(64), nullable=False),
            sa.Column("target", sa.String(128), nullable=False),
            sa.Column("received_at", sa.String(64), nullable=False),
            sa.Column("body", sa.LargeBinary, nullable=False),
        )
        metadata.create_all(self.engine, checkfirst=True)

    def put(self, delivery: Delivery) -> bool:
        sa, t = self._sa, self.table
        record = exact_json.dumps(asdict(delivery))
        now = self._clock()
        # The retention in its own transaction: it stands even when the quota then refuses this delivery.
        with self.engine.begin() as con:
            con.execute(t.delete().where(t.c.received_at < _iso(self.bounds.expired_before(now))))
        try:
            with self.engine.begin() as con:  # committed (durable) before this returns
                if con.dialect.name == "postgresql":
                    # One writer at a time, so serial numbers are committed in their order: the sensor's cursor
                    # (the last seq it saw) passed over a delivery inserted earlier but committed after a later
                    # one (two receivers). Reads go on meanwhile. (SQLite writes one at a time anyway.)
                    con.execute(sa.text(f"LOCK TABLE {t.name} IN EXCLUSIVE MODE"))
                if con.execute(sa.select(t.c.seq).where(t.c.id == delivery.id)).first() is not None:
                    return False
                stored = con.execute(sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(t.c.body)), 0))).scalar()
                self.bounds.check_room(int(stored), len(record))
                con.execute(
                    t.insert().values(
                        id=delivery.id,
                        source=delivery.source,
                        target=delivery.target,
                        received_at=_iso(now),
                        body=record,
                    )
                )
        except sa.exc.IntegrityError:  # the same delivery, stored meanwhile by another receiver
            return False
        return True

    def after(self, cursor: str | None, *, rows: bool = True) -> list[tuple[str, Delivery]]:
        t = self.table
        query = self._sa.select(t.c.seq, t.c.body).order_by(t.c.seq)
        if cursor:
            query = query.where(t.c.seq > int(cursor))
        with self.engine.connect() as con:
            return [
                (f"{seq:020d}", _from_body(body, rows))
                for seq, body in con.execution_options(yield_per=16).execute(query)
            ]

    def get(self, delivery_id: str) -> Delivery:
        with self.engine.connect() as con:
            body = con.execute(self._sa.select(self.table.c.body).where(self.table.c.id == delivery_id)).scalar()
        if body is None:
            raise KeyError(f"no stored delivery {delivery_id}")
        return Delivery(**exact_json.loads(body))

    def latest(self, target: str, *, rows: bool = True) -> Delivery | None:
        t = self.table
        query = self._sa.select(t.c.body).where(t.c.target == target).order_by(t.c.seq.desc()).limit(1)
        with self.engine.connect() as con:
            body = con.execute(query).scalar()
        return _from_body(body, rows) if body is not None else None


def _from_body(body: bytes, rows: bool) -> Delivery:
    return Delivery(**exact_json.loads(body)) if rows else _head(io.BytesIO(body))


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="microseconds")


def open_delivery_store(ingest, data_dir: Path, source: str, clock: Callable[[], float] = time.time) -> DeliveryStore:
    """The configured store (`ingest.store_url`), else files under `<data_dir>/ingest/<source>`."""
    bounds = Bounds(ingest.retention_days, ingest.quota_mb * MB) if ingest is not None else Bounds()
    if ingest is not None and ingest.store_url is not None:
        return SqlDeliveryStore(ingest.store_url.resolve(data_dir), bounds, clock)
    return FileDeliveryStore(Path(data_dir) / "ingest" / source, bounds, clock)
