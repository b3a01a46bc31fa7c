"""`mlconnector ingest`: the webhook receiver (Starlette + uvicorn).

`POST /looker/scheduled-plans/{secret}` takes Looker's scheduled-plan payload. The secret is
compared in constant time; a wrong one gets 404 and leaves no trace in any log (uvicorn's
access log is off, and a filter masks the path segment, and Dataverse's key in the query, should anything log
them). A delivery is fsynced to disk
before the 2xx; the `looker_scheduled_plan_deliveries` sensor turns it into a run.

Answers: 202 stored, 200 already stored (a repeat), 400 malformed (nothing stored), 404 wrong
secret, 413 past `ingest.max_body_mb`, 422 a plan no asset takes, 503 Looker could not be asked
for a Look's fields (the sender retries), 507 the store's quota is full.

`POST /dataverse/webhooks` takes Dynamics 365 Sales webhooks (systems/dataverse/webhooks.py): 401
without the service endpoint's key, 202 stored, 200 a repeat, 400 malformed, 503 the store is full
(Dataverse retries a 503 once). The sensor `dynamics_sales_changes` turns them into runs.

`/business-central/notifications` takes Business Central's change notifications
(systems/business_central/notifications.py): the validation handshake (`?validationToken=X` answered
200 with X as plain text, at once), then notices: 401 a wrong clientState (stored nowhere), 400
malformed, 202 stored, 200 a repeat, 503 only when the store cannot take them (BC retries 408, 429
and 5xx; any other answer makes BC delete the subscription). The sensor
`business_central_notifications` turns them into re-reads and deletions.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from ..config import ConnectorConfig
from ..core.errors import ConfigError
from .body import BodyTooLarge, read_body
from .identity import delivery_id_after
from .look_fields import LookFields
from .looker import DeliveryRejected, parse_delivery
from .store import MB, Delivery, DeliveryStore, StoreFull, open_delivery_store

log = logging.getLogger("mlconnector.ingest")

_SECRET_IN_PATH = re.compile(r"(/looker/scheduled-plans/)[^/\s\"?]+")


class _HideUrlSecrets(logging.Filter):
    """Masks the URL secrets in any server log line (access logs included, whoever turns them on): Looker's path
    segment and the values of `query_parameters` (Dataverse's webhook key)."""

    def __init__(self, query_parameters: Iterable[str] = ()):
        super().__init__()
        names = "|".join(re.escape(n) for n in query_parameters)
        self._in_query = re.compile(rf"([?&](?:{names})=)[^&\s\"#]+") if names else None

    def _masked(self, text: str) -> str:
        text = _SECRET_IN_PATH.sub(r"\1<secret>", text)
        return self._in_query.sub(r"\1<secret>", text) if self._in_query else text

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._masked(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = self._masked(record.msg)
        return True


def _hide_url_secrets_in_server_logs(cfg: ConnectorConfig) -> None:
    """The filter for this configuration's secrets, in place of one an earlier app installed."""
    from ..systems.dataverse.webhooks import key_parameter

    dataverse = getattr(cfg, "dataverse", None)
    webhook = dataverse.webhook if dataverse is not None and dataverse.enabled else None
    parameter = key_parameter(webhook) if webhook is not None else None
    for name in ("uvicorn.access", "uvicorn.error", "uvicorn"):
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, _HideUrlSecrets)]:
            logger.removeFilter(old)
        logger.addFilter(_HideUrlSecrets([parameter] if parameter else []))


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
    if any(ch in value for ch in "/?#% ") or not value.isprintable():  # a base64 secret may hold `/`
        raise ConfigError(
            "looker.delivery_secret: it is one segment of the URL, so it may not hold /, ?, #, % or spaces (every "
            "delivery would be answered 404): use letters and digits, e.g. `openssl rand -hex 32`"
        )
    return value


def create_app(cfg: ConnectorConfig, *, clock: Callable[[], float] = time.time) -> Starlette:
    """The receiver. `clock` (seconds since the epoch) dates deliveries and drives the retention (tests move it)."""
    _hide_url_secrets_in_server_logs(cfg)
    routes = [Route("/health", _health)]
    if cfg.looker is not None and cfg.looker.enabled and cfg.looker.delivery_secret is not None:
        routes.append(_looker_route(cfg, clock))
    dataverse = getattr(cfg, "dataverse", None)
    if dataverse is not None and dataverse.enabled and dataverse.webhook is not None:
        routes.append(_dataverse_route(cfg, clock))
    business_central = getattr(cfg, "business_central", None)
    if business_central is not None and business_central.enabled and business_central.notifications is not None:
        routes.append(_business_central_route(cfg, clock))
    if len(routes) == 1:
        raise ConfigError(
            "nothing to receive: set looker.delivery_secret (scheduled plans), dataverse.webhook (Sales webhooks) "
            "or business_central.notifications (change notifications)"
        )
    return Starlette(routes=routes)


async def _health(request: Request) -> JSONResponse:
    return JSONResponse(
        {"status": "ok", "receiving": sorted(r.path for r in request.app.routes if r.path != "/health")}
    )


def store_unless_repeated(store: DeliveryStore, delivery: Delivery) -> tuple[Delivery, bool]:
    """A Looker delivery is a repeat (the sender retrying) when it carries what the last one for its asset
    carried; then it is that one, not stored again. Otherwise it is stored, also when an earlier one carried
    the same rows (Monday's empty result again on Wednesday, after Tuesday's): its id names the delivery before
    it, so it is a delivery of its own, with a run of its own, and the asset holds it, not Tuesday's."""
    content = delivery.id
    latest = store.latest(delivery.target, rows=False)  # its id and content id are what is compared
    if latest is not None and latest.detail.get("content_id", latest.id) == content:
        return replace(latest, rows=delivery.rows), False  # the same rows: the ones just received
    # With no delivery for the asset kept (its last one past the retention), the id names the day it came:
    # by its rows alone, rows an expired delivery also carried had that one's id, and Dagster, which starts one
    # run per run key, never ran them (a monthly result back to an earlier month's figures kept the newer).
    since = f"nothing kept before {delivery.received_at[:10]}"
    chained = delivery_id_after(content, since if latest is None else latest.id)
    delivery = replace(delivery, id=chained, detail={**delivery.detail, "content_id": content})
    return delivery, store.put(delivery)


def _looker_route(cfg: ConnectorConfig, clock: Callable[[], float]) -> Route:
    secret = looker_delivery_secret(cfg).encode()
    plans = {q.scheduled_plan_id: q for q in cfg.looker.queries if q.scheduled_plan_id}
    store = open_delivery_store(cfg.ingest, cfg.data_dir, "looker", clock=clock)
    max_body = cfg.ingest.max_body_mb * MB
    fields_of_look = LookFields.from_config(cfg)  # a Look's fields, cached a few minutes

    def parse(body: bytearray):
        return parse_delivery(body, plans, look_fields=fields_of_look, received_at=datetime.fromtimestamp(clock(), UTC))

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
            delivery, stored = await run_in_threadpool(store_unless_repeated, store, delivery)
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

    return Route("/looker/scheduled-plans/{secret}", looker_delivery, methods=["POST"])


def _dataverse_route(cfg: ConnectorConfig, clock: Callable[[], float]) -> Route:
    """Dataverse webhooks (Win, quote to order, state changes): only which record changed is stored; a call
    without the service endpoint's key is refused (401) and stored nowhere. Answered as soon as it is on disk."""
    from ..systems.dataverse.webhooks import SOURCE, WebhookRejected, authenticated, parse_context

    auth = cfg.dataverse.webhook
    secret = auth.key.resolve(cfg.data_dir, "dataverse.webhook.key")
    store = open_delivery_store(cfg.ingest, cfg.data_dir, SOURCE, clock=clock)
    max_body = cfg.ingest.max_body_mb * MB

    async def dataverse_webhook(request: Request) -> JSONResponse:
        if not authenticated(auth, secret, request.headers, request.query_params):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        try:
            body = await read_body(request, max_body)
            received = datetime.fromtimestamp(clock(), UTC).isoformat()
            delivery = parse_context(bytes(body), request.headers, received)
            stored = await run_in_threadpool(store.put, delivery)
        except BodyTooLarge as exc:
            return JSONResponse({"error": str(exc)}, status_code=413, headers={"Connection": "close"})
        except WebhookRejected as exc:
            log.warning("dataverse webhook rejected (%s): %s", exc.status, exc.reason)
            return JSONResponse({"error": exc.reason}, status_code=exc.status)
        except StoreFull as exc:  # 5xx: Dataverse retries, and the call is not lost
            log.error("dataverse webhook refused: %s", exc)
            return JSONResponse({"error": str(exc)}, status_code=503)
        log.info("dataverse webhook %s %s(%s): %s", delivery.detail["message"], delivery.target,
                 delivery.detail["record_id"], "stored" if stored else "already stored")  # fmt: skip
        return JSONResponse({"delivery_id": delivery.id, "stored": stored}, status_code=202 if stored else 200)

    return Route("/dataverse/webhooks", dataverse_webhook, methods=["POST"])


def _business_central_route(cfg: ConnectorConfig, clock: Callable[[], float]) -> Route:
    """BC change notifications: the handshake, then notices checked against clientState and stored before the 2xx."""
    from ..systems.business_central.notifications import SOURCE, NotificationRejected, parse_notifications

    client_state = cfg.business_central.notifications.client_state.resolve(
        cfg.data_dir, "business_central.notifications.client_state"
    )
    store = open_delivery_store(cfg.ingest, cfg.data_dir, SOURCE, clock=clock)
    max_body = cfg.ingest.max_body_mb * MB

    async def business_central_notifications(request: Request):
        token = request.query_params.get("validationToken")
        if token is not None:  # BC checks the URL before it subscribes, and on each renewal: answer in time
            return PlainTextResponse(token, status_code=200)
        try:
            body = await read_body(request, max_body)
            received = datetime.fromtimestamp(clock(), UTC).isoformat()
            delivery = parse_notifications(bytes(body), client_state, received)
            stored = await run_in_threadpool(store.put, delivery)
        except BodyTooLarge as exc:
            return JSONResponse({"error": str(exc)}, status_code=413, headers={"Connection": "close"})
        except NotificationRejected as exc:
            log.warning("business central notification rejected (%s): %s", exc.status, exc.reason)
            return JSONResponse({"error": exc.reason}, status_code=exc.status)
        except (StoreFull, OSError) as exc:  # 503: BC retries for 36 hours, and the notices are not lost
            log.error("business central notification not stored: %s", exc)
            return JSONResponse({"error": str(exc)}, status_code=503)
        log.info("business central notification %s: %d notice(s), %s", delivery.id, len(delivery.rows),
                 "stored" if stored else "already stored")  # fmt: skip
        return JSONResponse({"delivery_id": delivery.id, "stored": stored}, status_code=202 if stored else 200)

    return Route("/business-central/notifications", business_central_notifications, methods=["GET", "POST"])
