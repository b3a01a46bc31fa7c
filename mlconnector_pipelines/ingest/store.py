"""Durable storage of received deliveries: one JSON file each, fsynced before the sender hears 2xx.

A file is named `<received ns>-<delivery id>.json`, so a listing is in arrival order and the
sensor's cursor is simply the last name it handed over. The id is a hash of the payload, so a
repeated delivery finds its twin and is not stored again.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
import time
from dataclasses import dataclass
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


class DeliveryStore:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._lock = threading.Lock()

    def put(self, delivery: Delivery) -> bool:
        """Store durably; False when a delivery with this id is already stored."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if self._path_of(delivery.id) is not None:
                return False
            final = self.directory / f"{time.time_ns():020d}-{delivery.id}.json"
            fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".incoming-", suffix=".json")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(orjson.dumps(delivery.__dict__))
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

    def names_after(self, cursor: str | None) -> list[str]:
        """Stored deliveries, oldest first, after the file name `cursor`."""
        if not self.directory.is_dir():
            return []
        names = sorted(p.name for p in self.directory.glob("*.json") if not p.name.startswith("."))
        return [n for n in names if cursor is None or n > cursor]

    def load_name(self, name: str) -> Delivery:
        return Delivery(**orjson.loads((self.directory / name).read_bytes()))

    def get(self, delivery_id: str) -> Delivery:
        path = self._path_of(delivery_id)
        if path is None:
            raise KeyError(f"no stored delivery {delivery_id} in {self.directory}")
        return Delivery(**orjson.loads(path.read_bytes()))

    def _path_of(self, delivery_id: str) -> Path | None:
        return next(iter(self.directory.glob(f"*-{delivery_id}.json")), None)
