"""Durable storage of received deliveries, written before the sender hears 2xx.

Two stores, one interface:
- files under the data folder (the default; one machine), each fsynced and renamed into place;
- a SQL database (`ingest.store_url`, e.g. PostgreSQL), when the receiver and the Dagster
  daemon run on different machines or pods and share no disk.

A delivery's id is a hash of its payload, so a repeated delivery finds its twin and is not
stored again. Each store hands out an opaque, increasing cursor; the sensor keeps the last one.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson


@dataclass(frozen=True)
class Delivery:
    id: str
    source: str  # e.g. "looker"
    target: str  # the asset it feeds, e.g. the Looker query's name
    received_at: str
    detail: dict  # what the sender said about it (plan id, title, format)
    rows: list[dict]

    @staticmethod
    def id_of(payload: bytes) -> str:
        return hashlib.sha256(payload).hexdigest()[:32]


class DeliveryStore(ABC):
    @abstractmethod
    def put(self, delivery: Delivery) -> bool:
        """Store durably; False when a delivery with this id is already stored."""

    @abstractmethod
    def after(self, cursor: str | None) -> list[tuple[str, Delivery]]:
        """(cursor, delivery) of every delivery stored after `cursor`, oldest first."""

    @abstractmethod
    def get(self, delivery_id: str) -> Delivery: ...


class FileDeliveryStore(DeliveryStore):
    """`<received ns>-<id>.json` files: a listing is in arrival order, and a name is the cursor."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._lock = threading.Lock()

    def put(self, delivery: Delivery) -> bool:
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self._path_of(delivery.id) is not None:
                return False
            final = self.directory / f"{time.time_ns():020d}-{delivery.id}.json"
            fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".incoming-", suffix=".json")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(orjson.dumps(asdict(delivery)))
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
        return True

    def after(self, cursor: str | None) -> list[tuple[str, Delivery]]:
        if not self.directory.is_dir():
            return []
        names = sorted(p.name for p in self.directory.glob("*.json") if not p.name.startswith("."))
        return [(n, _load(self.directory / n)) for n in names if cursor is None or n > cursor]

    def get(self, delivery_id: str) -> Delivery:
        path = self._path_of(delivery_id)
        if path is None:
            raise KeyError(f"no stored delivery {delivery_id} in {self.directory}")
        return _load(path)

    def _path_of(self, delivery_id: str) -> Path | None:
        return next(iter(self.directory.glob(f"*-{delivery_id}.json")), None)


def _load(path: Path) -> Delivery:
    return Delivery(**orjson.loads(path.read_bytes()))


class SqlDeliveryStore(DeliveryStore):
    """One row per delivery in `mlconnector_deliveries`; the serial number is the cursor."""

    def __init__(self, url: str):
        import sqlalchemy as sa

        self._sa = sa
        self.engine = sa.create_engine(url, pool_pre_ping=True)
        metadata = sa.MetaData()
        self.table = sa.Table(
            "mlconnector_deliveries", metadata,
            sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                      autoincrement=True),
            sa.Column("id", sa.String(64), nullable=False, unique=True),
            sa.Column("source", sa.String(64), nullable=False),
            sa.Column("target", sa.String(128), nullable=False),
            sa.Column("received_at", sa.String(64), nullable=False),
            sa.Column("body", sa.LargeBinary, nullable=False),
        )
        metadata.create_all(self.engine, checkfirst=True)

    def put(self, delivery: Delivery) -> bool:
        try:
            with self.engine.begin() as con:  # committed (durable) before this returns
                con.execute(self.table.insert().values(
                    id=delivery.id, source=delivery.source, target=delivery.target,
                    received_at=delivery.received_at, body=orjson.dumps(asdict(delivery))))
        except self._sa.exc.IntegrityError:
            return False
        return True

    def after(self, cursor: str | None) -> list[tuple[str, Delivery]]:
        t = self.table
        query = self._sa.select(t.c.seq, t.c.body).order_by(t.c.seq)
        if cursor:
            query = query.where(t.c.seq > int(cursor))
        with self.engine.connect() as con:
            return [(f"{seq:020d}", Delivery(**orjson.loads(body))) for seq, body in con.execute(query)]

    def get(self, delivery_id: str) -> Delivery:
        with self.engine.connect() as con:
            body = con.execute(self._sa.select(self.table.c.body).where(self.table.c.id == delivery_id)).scalar()
        if body is None:
            raise KeyError(f"no stored delivery {delivery_id}")
        return Delivery(**orjson.loads(body))


def open_delivery_store(ingest, data_dir: Path, source: str) -> DeliveryStore:
    """The configured store (`ingest.store_url`), else files under `<data_dir>/ingest/<source>`."""
    if ingest is not None and ingest.store_url is not None:
        return SqlDeliveryStore(ingest.store_url.resolve(data_dir))
    return FileDeliveryStore(Path(data_dir) / "ingest" / source)
