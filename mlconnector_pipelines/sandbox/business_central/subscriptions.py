"""Business Central webhooks: `api/v2.0/subscriptions` and the notifications BC sends (facts and
sources: docs/vendor-facts/bc-webhook-facts.md).

A subscription names a notificationUrl and a resource, `[/]api/v2.0/companies({id})/<entity set>`
(relative or absolute), of an entity set BC sends notifications for. Creating and renewing (PATCH
behind If-Match) first runs the handshake: a POST to `notificationUrl?validationToken=<token>`
whose answer must be 200 with the token as its body, within `handshake_timeout_seconds`. A
subscription lives `subscription_lifetime_seconds` (3 days) from its creation or last renewal and
vanishes when expired; at most `subscription_max` (200) exist at once.

Every change the model reports becomes a notice for each subscription to its (company, entity set).
As BC's "API Webhook Notification Send" codeunit does, notices wait `notification_delay_seconds`
after the first change, a run of `updated` notices for one record merges into the last one, and
more than `collection_threshold` notices of one subscription become one `collection` notice whose
resource carries `?$filter=lastModifiedDateTime%20gt%20<first change - 50 ms>` (no filter when a
record was deleted). Notices go out as one POST `{"value": [...]}` per notificationUrl, from a
background task, never from an API request. The receiver's 2xx ends it; no answer, 408, 429 or 5xx
keeps the notices for another attempt `notification_retry_interval_seconds` later, for up to
`notification_retry_window_seconds` (36 h), after which the subscriptions are deleted; any other
status deletes every subscription of that URL at once. Every handshake and delivery attempt is kept
for the admin API.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import secrets
import ssl
import uuid
import zlib
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import httpx
import orjson

from . import BusinessCentralSettings
from .models import BusinessCentralModel, Change, bad_request, check_if_match, not_found
from .seed import iso_ms

log = logging.getLogger("mlconnector.sandbox")

# The entity sets of "List of supported entities" (dynamics-subscriptions.md) that the sandbox has.
# dimensionValues, the document lines and companies are not in the list; a line's change is
# notified as its header's.
WEBHOOK_SETS = frozenset(
    {
        "accounts",
        "customers",
        "dimensions",
        "generalLedgerEntries",
        "items",
        "paymentTerms",
        "purchaseInvoices",
        "salesInvoices",
        "salesOrders",
        "vendors",
    }
)
# The subscriptions resource's properties (resources/dynamics_subscriptions.md); a body may echo
# the read-only ones (the create page's own example does), which are ignored.
WRITABLE = ("notificationUrl", "resource", "clientState")
READ_ONLY = frozenset(
    {
        "subscriptionId",
        "timestamp",
        "userId",
        "lastModifiedDateTime",
        "expirationDateTime",
        "systemCreatedAt",
        "systemCreatedBy",
        "systemModifiedAt",
        "systemModifiedBy",
    }
)
RETRIED = frozenset({408, 429})  # and any 5xx, and no answer at all
# [scheme://host][/v2.0[/{tenant}]/{environment}][/]api/v2.0/companies({id})/<set>, or companies({id})/<set>
_RESOURCE = re.compile(
    r"^(?:https?://[^/]+)?(?:/v2\.0(?:/[^/]+){1,2}?)?/?(?:api/v2\.0/)?companies\(([^)]+)\)/(\w+)/?$", re.IGNORECASE
)
_COLLECTION_FILTER = "?$filter=lastModifiedDateTime%20gt%20"


def _seconds(moment: datetime) -> str:
    """A subscription's datetimes as the docs show them: `2021-10-15T12:32:35Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _moment(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _with_query(url: str, params: dict[str, str]) -> str:
    return f"{url}{'&' if urlsplit(url).query else '?'}{urlencode(params)}"


def _shown(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


@dataclass
class Notice:
    record_id: str
    kind: str  # created | updated | deleted
    at: str


@dataclass
class Collection:
    first: str
    last: str
    deleted: bool  # a deletion among the changes: the resource carries no $filter


@dataclass
class Pending:
    """One subscription's notices not yet delivered, aggregated as BC aggregates them."""

    notices: list[Notice] = field(default_factory=list)
    collection: Collection | None = None
    _last: dict[str, Notice] = field(default_factory=dict)  # record id -> its latest notice

    def __len__(self) -> int:
        return 1 if self.collection is not None else len(self.notices)

    def add(self, notice: Notice, threshold: int) -> None:
        if self.collection is not None:
            self.collection.first = min(self.collection.first, notice.at)
            self.collection.last = max(self.collection.last, notice.at)
            self.collection.deleted |= notice.kind == "deleted"
            return
        last = self._last.get(notice.record_id)
        if notice.kind == "updated" and last is not None and last.kind == "updated":
            last.at = max(last.at, notice.at)  # sequential updates of one record: one notice
            return
        if len(self.notices) >= threshold:  # this change would make more than `threshold`
            every = [*self.notices, notice]
            self.collection = Collection(
                min(n.at for n in every), max(n.at for n in every), any(n.kind == "deleted" for n in every)
            )
            self.notices, self._last = [], {}
            return
        self.notices.append(notice)
        self._last[notice.record_id] = notice

    def merge(self, newer: Pending, threshold: int) -> None:
        """`newer`'s notices after this one's (a failed delivery's notices go again, first)."""
        if newer.collection is None:
            for notice in newer.notices:
                self.add(Notice(notice.record_id, notice.kind, notice.at), threshold)
            return
        if self.collection is None:
            ats = [n.at for n in self.notices]
            deleted = any(n.kind == "deleted" for n in self.notices)
            self.collection = Collection(
                min([*ats, newer.collection.first]), max([*ats, newer.collection.last]), deleted
            )
            self.notices, self._last = [], {}
        self.collection.first = min(self.collection.first, newer.collection.first)
        self.collection.last = max(self.collection.last, newer.collection.last)
        self.collection.deleted |= newer.collection.deleted


@dataclass
class Subscription:
    id: str
    notification_url: str
    resource: str  # as the client wrote it: notices name `<resource>(<id>)`
    client_state: str
    company_id: str
    entity_set: str
    user_id: str
    created_at: datetime
    modified_at: datetime
    expires_at: datetime
    version: int
    pending: Pending = field(default_factory=Pending)


@dataclass
class Outbox:
    """What goes to one notificationUrl: one timer, one delivery at a time, its failures."""

    timer: asyncio.Task | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    failing_since: datetime | None = None
    attempt: int = 0


class Subscriptions:
    """The subscriptions of the environment and their notifications."""

    def __init__(self, model: BusinessCentralModel, settings: BusinessCentralSettings, ca_bundle: Path | None):
        self.model, self.settings, self.ca_bundle = model, settings, ca_bundle
        self.subscriptions: dict[str, Subscription] = {}
        self.outboxes: dict[str, Outbox] = {}
        self.deliveries: deque[dict] = deque(maxlen=5000)  # every handshake and notification attempt
        self.deleted: deque[dict] = deque(maxlen=1000)  # subscriptions BC deleted, and why
        self.generation = 0  # bumped by reset: a delivery under way then records nothing
        self._versions = 0
        self._ssl: ssl.SSLContext | None = None
        model.listeners.append(self.on_change)

    # -- the API: subscriptions ---------------------------------------------------------------------

    def list(self) -> list[dict]:
        self._purge()
        return [self.render(s) for s in self.subscriptions.values()]

    def get(self, subscription_id: str) -> dict:
        return self.render(self._find(subscription_id))

    async def create(self, body: dict, user_id: str) -> dict:
        fields = self._fields(body)
        url, resource = fields.get("notificationUrl"), fields.get("resource")
        company_id, entity_set = self._check(url, resource)
        self._check_room()
        await self._handshake(url, fields.get("clientState") or "", None)
        self._check_room()  # another subscription may have come while the handshake ran
        now = datetime.now(UTC)
        subscription = Subscription(
            id=uuid.uuid4().hex,
            notification_url=url,
            resource=resource,
            client_state=fields.get("clientState") or "",
            company_id=company_id,
            entity_set=entity_set,
            user_id=user_id,
            created_at=now,
            modified_at=now,
            expires_at=now + timedelta(seconds=self.settings.subscription_lifetime_seconds),
            version=self._next_version(),
        )
        self.subscriptions[subscription.id] = subscription
        return self.render(subscription)

    async def renew(self, subscription_id: str, body: dict, if_match: str | None, user_id: str) -> dict:
        """PATCH: If-Match required; the handshake again; a new expiration, lifetime from now."""
        subscription = self._find(subscription_id)
        self._check_if_match(subscription, if_match, required=True)
        fields = self._fields(body)
        url = fields.get("notificationUrl", subscription.notification_url)
        resource = fields.get("resource", subscription.resource)
        client_state = fields.get("clientState", subscription.client_state) or ""
        company_id, entity_set = self._check(url, resource)
        await self._handshake(url, client_state, subscription.id)
        subscription = self._find(subscription_id)  # it may have gone while the handshake ran
        now = datetime.now(UTC)
        subscription.notification_url, subscription.resource, subscription.client_state = url, resource, client_state
        subscription.company_id, subscription.entity_set = company_id, entity_set
        subscription.modified_at = now
        subscription.expires_at = now + timedelta(seconds=self.settings.subscription_lifetime_seconds)
        subscription.version = self._next_version()
        subscription.user_id = user_id
        if len(subscription.pending):
            self._schedule(url, self.settings.notification_delay_seconds)
        return self.render(subscription)

    def delete(self, subscription_id: str, if_match: str | None) -> None:
        """DELETE: If-Match checked when sent (docs: required; the platform: checked when present)."""
        subscription = self._find(subscription_id)
        self._check_if_match(subscription, if_match, required=False)
        self.subscriptions.pop(subscription.id, None)

    def render(self, subscription: Subscription) -> dict:
        return {
            "@odata.etag": self._etag(subscription),
            "subscriptionId": subscription.id,
            "notificationUrl": subscription.notification_url,
            "resource": subscription.resource,
            "timestamp": subscription.version,
            "userId": subscription.user_id,
            "lastModifiedDateTime": _seconds(subscription.modified_at),
            "clientState": subscription.client_state,
            "expirationDateTime": _seconds(subscription.expires_at),
            "systemCreatedAt": iso_ms(subscription.created_at),
            "systemCreatedBy": subscription.user_id,
            "systemModifiedAt": iso_ms(subscription.modified_at),
            "systemModifiedBy": subscription.user_id,
        }

    # -- rules ------------------------------------------------------------------------------------

    def _find(self, subscription_id: str) -> Subscription:
        self._purge()
        key = subscription_id.strip("'")
        subscription = self.subscriptions.get(key)
        if subscription is None:
            raise not_found(f"The subscription '{key}' does not exist.")
        return subscription

    @staticmethod
    def _fields(body: dict) -> dict:
        fields = {}
        for name, value in body.items():
            if name.startswith("@") or name in READ_ONLY:
                continue
            if name not in WRITABLE:
                raise bad_request(
                    f"The property '{name}' does not exist on type 'Microsoft.NAV.subscriptions'. Make sure to only "
                    "use property names that are defined by the type."
                )
            if value is not None and not isinstance(value, str):
                raise bad_request(f"Cannot convert the literal '{value}' to the expected type 'Edm.String'.")
            fields[name] = value
        return fields

    def _check(self, url: str | None, resource: str | None) -> tuple[str, str]:
        """The notification URL is absolute http(s); the resource is an entity set BC notifies."""
        parts = urlsplit(url or "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise bad_request("The notificationUrl must be an absolute http or https URL.")
        match = _RESOURCE.match(resource or "")
        company = None
        if match is not None:
            company = self.model.companies.get(match.group(1).strip("'").lower())
        if match is None or company is None or match.group(2) not in WEBHOOK_SETS:
            raise not_found(f"The resource '{resource}' does not exist or does not support webhooks.")
        return company.data.id, match.group(2)

    def _check_room(self) -> None:
        self._purge()
        if len(self.subscriptions) >= self.settings.subscription_max:
            raise bad_request(
                f"The maximum number of subscriptions ({self.settings.subscription_max}) has been reached. "
                "Delete a subscription before you create another."
            )

    def _check_if_match(self, subscription: Subscription, if_match: str | None, required: bool) -> None:
        check_if_match(if_match, lambda: self._etag(subscription), required)

    @staticmethod
    def _etag(subscription: Subscription) -> str:
        token = f"{zlib.crc32(subscription.id.encode()):010d}{subscription.version:010d}"
        return 'W/"' + base64.b64encode(f"'{len(token)};{token};00;'".encode()).decode() + '"'

    def _next_version(self) -> int:
        self._versions += 1
        return self._versions

    def _purge(self) -> None:
        """Expired subscriptions vanish, with whatever they had not delivered."""
        now = datetime.now(UTC)
        for subscription in [s for s in self.subscriptions.values() if s.expires_at <= now]:
            self.remove(subscription.id, "expired")

    def remove(self, subscription_id: str, reason: str) -> bool:
        """BC deletes a subscription (expired, refused by its receiver, retries exhausted, admin)."""
        subscription = self.subscriptions.pop(subscription_id, None)
        if subscription is None:
            return False
        self.deleted.append(
            {
                "subscriptionId": subscription.id,
                "notificationUrl": subscription.notification_url,
                "resource": subscription.resource,
                "reason": reason,
                "at": iso_ms(datetime.now(UTC)),
                "undelivered": len(subscription.pending),
            }
        )
        log.info("BC subscription %s deleted: %s", subscription.id, reason)
        return True

    # -- the handshake ------------------------------------------------------------------------------

    def _client(self, timeout: float) -> httpx.AsyncClient:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
            if self.ca_bundle is not None and self.ca_bundle.is_file():
                self._ssl.load_verify_locations(str(self.ca_bundle))  # a receiver behind the sandbox CA
        return httpx.AsyncClient(verify=self._ssl, timeout=timeout)

    async def _handshake(self, url: str, client_state: str, subscription_id: str | None) -> None:
        """POST notificationUrl?validationToken=<token>: 200 with the token as the body, in time."""
        token = secrets.token_urlsafe(24)
        target = _with_query(url, {"validationToken": token})
        limit = self.settings.handshake_timeout_seconds
        status, answer, reason = None, None, None
        try:
            async with self._client(limit) as client:
                response = await asyncio.wait_for(
                    client.post(target, content=client_state.encode(), headers={"Content-Type": "text/plain"}),
                    timeout=limit,
                )
            status, answer = response.status_code, response.text
            if status != 200:
                reason = f"the notification URL answered {status}"
            elif answer.strip() != token:
                reason = "the answer's body is not the validationToken"
        except (TimeoutError, httpx.TimeoutException):
            reason = f"the notification URL did not answer within {limit:g} seconds"
        except httpx.HTTPError as exc:
            reason = f"the notification URL could not be reached ({type(exc).__name__})"
        self.deliveries.append(
            {
                "kind": "handshake",
                "at": iso_ms(datetime.now(UTC)),
                "url": _shown(url),
                "subscriptionIds": [subscription_id] if subscription_id else [],
                "validationToken": token,
                "body": client_state,
                "status": status,
                "response": (answer or "")[:2000],
                "outcome": "validated" if reason is None else "failed",
                "error": reason,
            }
        )
        if reason is not None:
            raise bad_request(
                f"The subscription could not be validated: {reason}. The notification URL must answer the "
                f"validation request with 200 OK and the validationToken as the body within {limit:g} seconds."
            )

    # -- notifications ----------------------------------------------------------------------------

    def on_change(self, change: Change) -> None:
        """The model's listener: a notice for every live subscription to the change's entity set."""
        self._purge()
        for subscription in self.subscriptions.values():
            if subscription.company_id == change.company_id and subscription.entity_set == change.entity_set:
                subscription.pending.add(Notice(change.record_id, change.kind, change.at), self._threshold)
                self._schedule(subscription.notification_url, self.settings.notification_delay_seconds)

    @property
    def _threshold(self) -> int:
        return self.settings.collection_threshold

    def _schedule(self, url: str, delay: float) -> None:
        box = self.outboxes.setdefault(url, Outbox())
        if box.timer is not None and not box.timer.done():
            return  # already due: the notices go with it
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (the model used on its own): pending until a flush
        box.timer = loop.create_task(self._send_later(url, delay, self.generation))

    async def _send_later(self, url: str, delay: float, generation: int) -> None:
        await asyncio.sleep(delay)
        box = self.outboxes.get(url)
        if box is None or generation != self.generation:
            return
        box.timer = None  # from here on a new change schedules its own send
        try:
            await self._send(url)
        except Exception:  # a delivery must never take the sandbox down
            log.exception("BC notification to %s failed", _shown(url))

    async def flush(self) -> list[dict]:
        """Send every pending notice now (the admin API): the attempts made."""
        self._purge()
        for box in self.outboxes.values():
            if box.timer is not None and not box.timer.done():
                box.timer.cancel()
            box.timer = None
        urls = dict.fromkeys(s.notification_url for s in self.subscriptions.values() if len(s.pending))
        attempts = []
        for url in urls:
            attempt = await self._send(url)
            if attempt is not None:
                attempts.append(attempt)
        return attempts

    def _payload(self, subscription: Subscription, pending: Pending) -> list[dict]:
        base = {
            "subscriptionId": subscription.id,
            "clientState": subscription.client_state,
            "expirationDateTime": _seconds(subscription.expires_at),
        }
        if pending.collection is not None:
            resource = subscription.resource
            if not pending.collection.deleted:
                # BC subtracts 50 ms "to be sure we get all the changes" (SQL rounds differently)
                since = iso_ms(_moment(pending.collection.first) - timedelta(milliseconds=50))
                resource = f"{resource}{_COLLECTION_FILTER}{since}"
            return [
                {
                    **base,
                    "resource": resource,
                    "changeType": "collection",
                    "lastModifiedDateTime": pending.collection.last,
                }
            ]
        return [
            {
                **base,
                "resource": f"{subscription.resource}({notice.record_id})",
                "changeType": notice.kind,
                "lastModifiedDateTime": notice.at,
            }
            for notice in sorted(pending.notices, key=lambda n: n.at)
        ]

    async def _send(self, url: str) -> dict | None:
        """One POST of every pending notice for `url`; the answer decides what becomes of them."""
        box = self.outboxes.setdefault(url, Outbox())
        generation = self.generation
        async with box.lock:
            self._purge()
            due = [s for s in self.subscriptions.values() if s.notification_url == url and len(s.pending)]
            if not due:
                return None
            batch = {s.id: s.pending for s in due}
            for subscription in due:
                subscription.pending = Pending()
            payload = {"value": [n for s in due for n in self._payload(s, batch[s.id])]}
            correlation = str(uuid.uuid4())
            status, answer, error = None, None, None
            try:
                async with self._client(self.settings.notification_timeout_seconds) as client:
                    response = await client.post(
                        url,
                        content=orjson.dumps(payload),
                        headers={
                            "Content-Type": "application/json",
                            "clientRequestId": correlation,
                            "x-ms-correlation-id": correlation,
                        },
                    )
                status, answer = response.status_code, response.text
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            if generation != self.generation:
                return None  # the sandbox was reset meanwhile
            box.attempt += 1
            outcome = self._outcome(url, box, due, batch, status)
            attempt = {
                "kind": "notification",
                "at": iso_ms(datetime.now(UTC)),
                "url": _shown(url),
                "subscriptionIds": [s.id for s in due],
                "attempt": box.attempt,
                "body": payload,
                "status": status,
                "response": (answer or "")[:2000],
                "outcome": outcome,
                "error": error,
            }
            if outcome == "delivered":
                box.attempt, box.failing_since = 0, None
            self.deliveries.append(attempt)
            return attempt

    def _outcome(self, url: str, box: Outbox, due: list[Subscription], batch: dict[str, Pending], status) -> str:
        if status is not None and 200 <= status < 300:
            return "delivered"
        if status is None or status in RETRIED or 500 <= status <= 599:
            now = datetime.now(UTC)
            box.failing_since = box.failing_since or now
            if (now - box.failing_since).total_seconds() > self.settings.notification_retry_window_seconds:
                for subscription in due:
                    self.remove(subscription.id, "notification retries exhausted")
                box.attempt, box.failing_since = 0, None
                return "given up"
            for subscription in due:  # the failed notices go again, ahead of newer ones
                if subscription.id in self.subscriptions:
                    failed = batch[subscription.id]
                    failed.merge(subscription.pending, self._threshold)
                    subscription.pending = failed
            self._schedule(url, self.settings.notification_retry_interval_seconds)
            return "retrying"
        for subscription in due:  # any other answer: BC deletes the subscription
            self.remove(subscription.id, f"the notification URL answered {status}")
        box.attempt, box.failing_since = 0, None
        return "subscription deleted"

    # -- admin ------------------------------------------------------------------------------------

    def age(self, subscription_id: str, seconds: float) -> dict:
        """Move a subscription's expiration `seconds` closer (tests make one 2.5 days old at once)."""
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            raise not_found(f"The subscription '{subscription_id}' does not exist.")
        subscription.expires_at -= timedelta(seconds=seconds)
        rendered = self.render(subscription)
        self._purge()
        return {**rendered, "expired": subscription.id not in self.subscriptions}

    def admin_view(self) -> dict:
        self._purge()
        attempts = list(self.deliveries)
        subscriptions = []
        for subscription in self.subscriptions.values():
            box = self.outboxes.get(subscription.notification_url)
            subscriptions.append(
                {
                    **self.render(subscription),
                    "company": subscription.company_id,
                    "entitySet": subscription.entity_set,
                    "pendingNotices": len(subscription.pending),
                    "collectionPending": subscription.pending.collection is not None,
                    "failingSince": iso_ms(box.failing_since) if box and box.failing_since else None,
                    "attempts": [a for a in attempts if subscription.id in a["subscriptionIds"]],
                }
            )
        return {"subscriptions": subscriptions, "deleted": list(self.deleted), "deliveries": attempts}

    def state(self) -> dict:
        self._purge()
        return {
            "active": len(self.subscriptions),
            "pending_notices": sum(len(s.pending) for s in self.subscriptions.values()),
            "deliveries": len(self.deliveries),
            "deleted": len(self.deleted),
        }

    def reset(self) -> None:
        self.generation += 1
        for box in self.outboxes.values():
            if box.timer is not None and not box.timer.done():
                box.timer.cancel()
        self.outboxes.clear()
        self.subscriptions.clear()
        self.deliveries.clear()
        self.deleted.clear()
