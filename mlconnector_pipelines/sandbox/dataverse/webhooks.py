"""Webhooks: the registrations a step binds to an event, and the sender that posts each run.

A serviceendpoint with contract 8 is a webhook: `url` plus authentication by `authtype` — 4
WebhookKey (`?code=<authvalue>`), 5 HttpHeader and 6 HttpQueryString (`authvalue` is
`<settings><setting name="…" value="…" /></settings>`). An enabled sdkmessageprocessingstep
names a message (sdkmessageid), optionally a table (sdkmessagefilterid) and the endpoint
(eventhandler). Each matching event is posted as a RemoteExecutionContext in a background task,
never holding up the API's answer: 60 s timeout, one more attempt after 502, 503 or 504, any
other non-2xx a failure. Attempts are kept for the admin API (the URL without its secrets).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
import xml.etree.ElementTree as ElementTree
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx

from . import wcf
from .errors import bad_argument
from .events import Entity, Event
from .models import DataverseModel
from .tables import BY_LOGICAL, Table

log = logging.getLogger("mlconnector.sandbox")
WEBHOOK_CONTRACT = 8
AUTH_TYPES = {4: "WebhookKey", 5: "HttpHeader", 6: "HttpQueryString"}
RETRIED = (502, 503, 504)
INVALID_HEADERS = (
    "0x80050203",
    "The webhook call failed because of invalid http headers in authValue. Check if the authValue format, "
    "header names and values are valid for your Service Endpoint entity.",
)


def validate_registration(model: DataverseModel, table: Table, values: dict, binds: dict, existing: dict | None):
    """What a create or update of a registration row must name (the row as it would be afterwards)."""
    merged = {**(existing or {}), **values}
    merged |= {f"_{a}_value": key for a, (_, key) in binds.items()}
    if table.entity_set == "serviceendpoints" and merged.get("contract") == WEBHOOK_CONTRACT:
        if not str(merged.get("url") or "").startswith(("https://", "http://")):
            raise bad_argument("A webhook service endpoint needs an absolute http(s) url.")
        if merged.get("authtype") not in AUTH_TYPES:
            raise bad_argument("A webhook's authtype is 4 (WebhookKey), 5 (HttpHeader) or 6 (HttpQueryString).")
    if table.entity_set == "sdkmessageprocessingsteps":
        message_id = merged.get("_sdkmessageid_value")
        if not message_id:
            raise bad_argument("A step names its message: sdkmessageid@odata.bind.")
        filter_row = model.tables["sdkmessagefilters"].get(merged.get("_sdkmessagefilterid_value") or "")
        if filter_row is not None and filter_row["_sdkmessageid_value"] != message_id:
            raise bad_argument("The sdkmessagefilter belongs to another message than the step's sdkmessage.")
        if not merged.get("_eventhandler_value"):
            raise bad_argument("A step names its handler: eventhandler_serviceendpoint@odata.bind.")
        if merged.get("stage", 40) not in (10, 20, 40) or merged.get("mode", 1) not in (0, 1):
            raise bad_argument("A step's stage is 10, 20 or 40 and its mode 0 (synchronous) or 1 (asynchronous).")
        if merged.get("mode", 1) == 1 and merged.get("stage", 40) != 40:
            raise bad_argument("An asynchronous step runs in the PostOperation stage (40).")


def _settings(authvalue: str | None) -> list[tuple[str, str]]:
    """`<settings><setting name="k" value="v" /></settings>` as (name, value) pairs."""
    root = ElementTree.fromstring(authvalue or "")
    if root.tag != "settings":
        raise ValueError("the root element is not <settings>")
    pairs = [(s.get("name"), s.get("value")) for s in root.iter("setting")]
    if not pairs or any(not name or value is None for name, value in pairs):
        raise ValueError("a <setting> lacks its name or value")
    return pairs


def _target(endpoint: dict) -> tuple[str, dict[str, str]]:
    """The URL (with its authentication query) and the extra headers of a webhook endpoint."""
    url, authtype, authvalue = endpoint["url"], endpoint.get("authtype"), endpoint.get("authvalue")
    joiner = "&" if urlsplit(url).query else "?"
    if authtype == 4:
        return f"{url}{joiner}{urlencode({'code': authvalue or ''})}", {}
    pairs = _settings(authvalue)
    if authtype == 5:
        headers = dict(pairs)
        httpx.Headers(headers)  # a name or value HTTP cannot carry fails here, as the platform's call fails
        for name, value in headers.items():
            if not name.isascii() or any(c in name for c in " :\r\n") or "\n" in value or "\r" in value:
                raise ValueError(f"invalid header {name!r}")
        return url, headers
    return f"{url}{joiner}{urlencode(pairs)}", {}


def _shown(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


class WebhookSender:
    def __init__(self, model: DataverseModel, settings, org: dict, ca_bundle: Path | None):
        self.model, self.settings, self.org = model, settings, org
        self.ssl = ssl.create_default_context()
        if ca_bundle is not None and ca_bundle.is_file():
            self.ssl.load_verify_locations(str(ca_bundle))  # a receiver behind the sandbox CA is trusted too
        self.deliveries: deque[dict] = deque(maxlen=2000)
        self.tasks: set[asyncio.Task] = set()
        model.listeners.append(self.on_event)

    def reset(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks.clear()
        self.deliveries.clear()

    def state(self) -> dict:
        outcomes: dict[str, int] = {}
        for d in self.deliveries:
            outcomes[d["outcome"]] = outcomes.get(d["outcome"], 0) + 1
        return {"attempts": len(self.deliveries), "outcomes": outcomes, "pending": len(self.tasks)}

    # -- matching --------------------------------------------------------------------------------------------

    def steps_for(self, event: Event) -> list[tuple[dict, dict]]:
        found = []
        for step in self.model.tables["sdkmessageprocessingsteps"].values():
            if step.get("statecode") != 0:
                continue
            message = self.model.tables["sdkmessages"].get(step["_sdkmessageid_value"] or "")
            if message is None or message["name"] != event.message:
                continue
            filter_row = self.model.tables["sdkmessagefilters"].get(step["_sdkmessagefilterid_value"] or "")
            if filter_row is not None and filter_row["primaryobjecttypecode"] != event.entity:
                continue
            wanted = {a.strip() for a in (step.get("filteringattributes") or "").split(",") if a.strip()}
            if event.message == "Update" and wanted and not wanted & set(event.changed):
                continue
            endpoint = self.model.tables["serviceendpoints"].get(step["_eventhandler_value"] or "")
            if endpoint is not None and endpoint.get("contract") == WEBHOOK_CONTRACT:
                found.append((step, endpoint))
        return sorted(found, key=lambda pair: (pair[0].get("stage") or 40, pair[0].get("rank") or 0))

    def on_event(self, event: Event) -> None:
        for step, endpoint in self.steps_for(event):
            at = datetime.now(UTC)
            pre, post = self._images(event, step)
            body = wcf.context(event, {**step, "@operation": str(uuid.uuid4())}, self.org, pre, post, at)
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._record(step, endpoint, event, endpoint["url"], 0, None, "failed", "no event loop to send from")
                continue
            task = loop.create_task(self._deliver(step, endpoint, event, wcf.encode(body)))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _images(self, event: Event, step: dict) -> tuple[dict[str, Entity], dict[str, Entity]]:
        table = BY_LOGICAL.get(event.entity)
        pre: dict[str, Entity] = {}
        post: dict[str, Entity] = {}
        if table is None:
            return pre, post
        for image in self.model.tables["sdkmessageprocessingstepimages"].values():
            if image["_sdkmessageprocessingstepid_value"] != step["sdkmessageprocessingstepid"]:
                continue
            names = [a.strip() for a in (image.get("attributes") or "").split(",") if a.strip()] or None
            alias = image.get("entityalias") or image.get("name") or "Image"
            if image.get("imagetype") in (0, 2) and event.pre is not None:
                pre[alias] = self.model.entity(table, event.pre, names)
            if image.get("imagetype") in (1, 2) and event.post is not None:
                post[alias] = self.model.entity(table, event.post, names)
        if step.get("mode") == 1 and event.post is not None and table.primary_name in table.types:
            post.setdefault(
                "AsynchronousStepPrimaryName", self.model.entity(table, event.post, [table.primary_name, table.key])
            )
        return pre, post

    # -- sending ---------------------------------------------------------------------------------------------

    async def _deliver(self, step: dict, endpoint: dict, event: Event, body: bytes) -> None:
        try:
            url, extra = _target(endpoint)
        except (ValueError, ElementTree.ParseError) as exc:
            self._record(step, endpoint, event, endpoint["url"], 1, None, "failed", f"{INVALID_HEADERS[1]} ({exc})")
            return
        headers = {
            "Content-Type": "application/json",
            "x-ms-dynamics-organization": urlsplit(self.settings.org_url).netloc,
            "x-ms-dynamics-entity-name": event.entity,
            "x-ms-dynamics-request-name": event.message,
            "x-ms-correlation-request-id": event.correlation,
            **extra,
        }
        timeout = httpx.Timeout(self.settings.webhook_timeout_seconds)
        async with httpx.AsyncClient(verify=self.ssl, timeout=timeout) as client:
            for attempt in (1, 2):
                try:
                    answer = await client.post(url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    self._record(step, endpoint, event, url, attempt, None, "failed", f"{type(exc).__name__}: {exc}")
                    return
                if 200 <= answer.status_code < 300:
                    self._record(step, endpoint, event, url, attempt, answer.status_code, "delivered", None)
                    return
                if answer.status_code in RETRIED and attempt == 1:
                    self._record(step, endpoint, event, url, attempt, answer.status_code, "retrying", None)
                    await asyncio.sleep(self.settings.webhook_retry_delay_seconds)
                    continue
                self._record(step, endpoint, event, url, attempt, answer.status_code, "failed", answer.reason_phrase)
                return

    def _record(self, step, endpoint, event: Event, url: str, attempt, status, outcome: str, error) -> None:
        self.deliveries.append(
            {
                "at": datetime.now(UTC).isoformat(),
                "step": step["sdkmessageprocessingstepid"],
                "serviceendpoint": endpoint["serviceendpointid"],
                "authtype": AUTH_TYPES.get(endpoint.get("authtype"), endpoint.get("authtype")),
                "url": _shown(url),
                "message": event.message,
                "entity": event.entity,
                "record": event.id,
                "correlation": event.correlation,
                "attempt": attempt,
                "retry": attempt > 1,
                "status": status,
                "outcome": outcome,
                "error": error,
            }
        )
        if outcome == "failed":
            log.info("webhook %s for %s %s failed: %s", _shown(url), event.message, event.entity, error)
