"""`mlconnector ingest`: the webhook receiver (Starlette + uvicorn).

`POST /looker/scheduled-plans/{secret}` takes Looker's scheduled-plan payload. The secret is
compared in constant time; a wrong one gets 404 and leaves no trace in any log (uvicorn's
access log is off, and a filter masks the path segment should anything log it). A delivery is fsynced to disk
before the 2xx; the `looker_scheduled_plan_deliveries` sensor turns it into a run.

Answers: 202 stored, 200 already stored (a repeat), 400 malformed (nothing stored), 404 wrong
secret, 413 past `ingest.max_body_mb`, 422 a plan no asset takes, 503 Looker could not be asked
for a Look's fields (the sender retries), 507 the store's quota is full.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..config import ConnectorConfig
from ..core.errors import ConfigError
from .body import BodyTooLarge, read_body
from .look_fields import LookFields
from .looker import DeliveryRejected, parse_delivery
from .store import MB, StoreFull, open_delivery_store

log = logging.getLogger("mlconnector.ingest")

_SECRET_IN_PATH = re.compile(r"(/looker/scheduled-plans/)[^/\s\"?]+")


class _HideUrlSecrets(logging.Filter):
    """Masks the URL secret in any server log line (access logs included, whoever turns them on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_SECRET_IN_PATH.sub(r"\1<secret>", a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = _SECRET_IN_PATH.sub(r"\1<secret>", record.msg)
        return True


def _hide_url_secrets_in_server_logs() -> None:
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _HideUrlSecrets) for f in logger.filters):
            logger.addFilter(_HideUrlSecrets())


def looker_delivery_secret(cfg: ConnectorConfig) -> str:
    looker = cfg.looker
    if looker is None or looker.delivery_secret is None:
        raise ConfigError("looker.delivery_secret is not set: the receiver needs a secret for its URL")
    ref = looker.delivery_secret
    value = ref.resolve(cfg.data_dir)
    if len(value) < 16 and not ref.sandbox_value():
        raise ConfigError(
            "looker.delivery_secret: use at least 16 random characters (it is the only protection of the URL)"
        )
    return value


def create_app(cfg: ConnectorConfig, *, clock: Callable[[], float] = time.time) -> Starlette:
    """The receiver. `clock` (seconds since the epoch) dates deliveries and drives the retention (tests move it)."""
    _hide_url_secrets_in_server_logs()
    secret = looker_delivery_secret(cfg).encode()
    plans = {q.scheduled_plan_id: q for q in cfg.looker.queries if q.scheduled_plan_id}
    store = open_delivery_store(cfg.ingest, cfg.data_dir, "looker", clock=clock)
    max_body = cfg.ingest.max_body_mb * MB
    fields_of_look = LookFields.from_config(cfg)  # a Look's fields, cached a few minutes

    def parse(body: bytearray):
        return parse_delivery(body, plans, look_fields=fields_of_look, received_at=datetime.fromtimestamp(clock(), UTC))

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "scheduled_plans": sorted(plans)})

    async def looker_delivery(request: Request) -> JSONResponse:
        if not hmac.compare_digest(request.path_params["secret"].encode(), secret):
            return JSONResponse({"error": "not found"}, status_code=404)
        try:
            body = await read_body(request, max_body)
        except BodyTooLarge as exc:
            # Connection: close stops the server reading (and discarding) the rest of an upload it refused.
            return JSONResponse({"error": str(exc)}, status_code=413, headers={"Connection": "close"})
        try:
            # In a worker thread: parsing a large body, or asking Looker for a Look's fields, would stall the loop.
            delivery = await run_in_threadpool(parse, body)
            del body  # the rows are parsed: let the raw body go before the store serialises them again
            stored = await run_in_threadpool(store.put, delivery)
        except DeliveryRejected as exc:
            log.warning("looker delivery rejected (%s): %s", exc.status, exc.reason)
            return JSONResponse({"error": exc.reason}, status_code=exc.status)
        except StoreFull as exc:
            log.error("looker delivery refused: %s", exc)
            return JSONResponse({"error": str(exc)}, status_code=507)
        log.info(
            "looker delivery %s for %s: %d rows, %s",
            delivery.id,
            delivery.target,
            len(delivery.rows),
            "stored" if stored else "already stored (repeated delivery)",
        )
        return JSONResponse(
            {
                "delivery_id": delivery.id,
                "asset": f"looker/{delivery.target}",
                "rows": len(delivery.rows),
                "stored": stored,
            },
            status_code=200 if not stored else 202,
        )

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/looker/scheduled-plans/{secret}", looker_delivery, methods=["POST"]),
        ]
    )
