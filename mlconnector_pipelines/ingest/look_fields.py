"""The fields each saved Look selects, read from Looker (read-only) and kept a few minutes.

A delivery for a Look asset is checked against them before it is stored: rows carrying fields the
Look does not select would only fail later, in the run, looking like Looker's fault. The payload
names its fields only sometimes, so the receiver asks Looker (`GET /api/4.0/looks/{id}`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import dagster as dg
import httpx

from ..config import ConnectorConfig
from ..core.errors import ConnectorError
from ..systems.looker.resource import LookerResource

log = logging.getLogger("mlconnector.ingest")

CACHE_SECONDS = 300.0  # a Look edited in Looker is seen within five minutes; deliveries cost no API call meanwhile
# The sender waits for our answer: a few quick attempts, then 503 (the sender retries the delivery), rather than
# the runs' patient policy of many attempts with back-off of up to a minute each.
_RECEIVER_HTTP = {"max_attempts": 3, "timeout_seconds": 20.0, "backoff_cap_seconds": 5.0}


class LookerUnavailable(Exception):
    """The Look's fields could not be read; the delivery cannot be checked now."""


class LookFields:
    """Called with a Look's id: its fields, from the cache or from Looker; LookerUnavailable on any failure."""

    def __init__(
        self,
        read: Callable[[str], tuple[str, ...]],
        *,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._read, self._cache_seconds, self._clock = read, cache_seconds, clock
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def __call__(self, look_id: str) -> tuple[str, ...]:
        now = self._clock()
        with self._lock:
            cached = self._cache.get(look_id)
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        try:
            fields = self._read(look_id)
        except (ConnectorError, dg.DagsterError, httpx.HTTPError, KeyError, ValueError) as exc:
            # Not cached: the sender's retry asks Looker again.
            log.warning("could not read the fields of Look %s from Looker: %s", look_id, exc)
            raise LookerUnavailable(f"could not read the fields of Look {look_id} from Looker: {_brief(exc)}") from None
        with self._lock:
            self._cache[look_id] = (now, fields)
        return fields

    @classmethod
    def from_config(cls, cfg: ConnectorConfig) -> LookFields:
        looker = cfg.looker.model_copy(
            update={
                "http": cfg.looker.http.model_copy(
                    update={name: min(getattr(cfg.looker.http, name), bound) for name, bound in _RECEIVER_HTTP.items()}
                )
            }
        )

        def read(look_id: str) -> tuple[str, ...]:
            # Built per read (rare, thanks to the cache) so a secret rotated in the environment is picked up.
            client = LookerResource.from_section(looker, cfg.data_dir).client()
            try:
                return tuple(client.look_query(look_id).fields)
            finally:
                client.close()

        return cls(read)


def _brief(exc: Exception) -> str:
    """What the sender may be told: our own errors are worded for people (and carry no secret); Dagster's
    resource errors are pages of stack, so they stay in the receiver's log."""
    if isinstance(exc, dg.DagsterError):
        return "the Looker client could not be set up (its credentials?); the receiver's log has the details"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
