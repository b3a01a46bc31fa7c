"""Business Central change notifications: what a notice says, and the subscriptions that make BC send them.

BC's notices carry no record, only which resource changed, how, and when (api-notes §2,
docs/vendor-facts/bc-webhook-facts.md): the connector re-reads the window holding that moment. A
`deleted` notice is the only way BC tells of a deletion; a `collection` notice stands for more than
1,000 changes and names them by a `$filter` on lastModifiedDateTime.

Subscriptions expire after three days and BC deletes one whose receiver answered wrong, so
`Subscriptions.sync()` (a scheduled job) lists what exists, creates what is missing, renews what
expires soon and removes what is no longer wanted. Creating one is a write without an idempotency
key: when its answer is lost, the next listing says whether it exists; it is never sent twice blind.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import orjson

from ...core.errors import ConnectorError, OutcomeUnknown, RequestFailedError
from ...ingest.store import Delivery

SOURCE = "business_central"  # the delivery store's name for stored notices
MAX_SUBSCRIPTIONS = 200  # per environment (api-notes §2)
# Entity sets BC sends notifications for, of those the flow loads (the docs' "List of supported entities";
# docs/vendor-facts/bc-webhook-facts.md). dimensionValues is not among them: it changes only by the schedule.
WEBHOOK_ENTITY_SETS = frozenset(
    {
        "accounts",
        "customers",
        "dimensions",
        "generalLedgerEntries",
        "items",
        "purchaseInvoices",
        "salesInvoices",
        "salesOrders",
        "vendors",
    }
)
_RESOURCE = re.compile(
    r"companies\((?P<company>[^)]+)\)/(?P<set>[A-Za-z]+)(?:\((?P<record>[^)]+)\))?(?:\?(?P<query>.*))?$"
)
# Words apart by spaces, or by `+` where the query was written form-encoded; a `+` is the moment's only as the
# sign of its offset (`+02:00`), not as the space before another term (`…Z+and+…`).
_SINCE = re.compile(
    r"lastModifiedDateTime[\s+]+(?:gt|ge)[\s+]+'?(?P<moment>\d{4}-\d\d-\d\dT[0-9:.]+(?:Z|[+-]\d\d:?\d\d)?)",
    re.IGNORECASE,
)


class NotificationRejected(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class Notice:
    company_id: str
    entity_set: str
    record_id: str | None  # None for a `collection` notice
    change: str  # created | updated | deleted | collection
    modified_at: datetime  # the notice's lastModifiedDateTime
    since: datetime | None = None  # a collection's lower bound (its $filter), when it names one


def parse_moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_notice(row: dict) -> Notice:
    """A stored notice → what changed (ValueError naming the field when BC's shape is not met)."""
    resource = unquote(str(row.get("resource") or ""))
    match = _RESOURCE.search(resource)
    if match is None:
        raise ValueError(f"resource {resource!r} names no company and entity set")
    change = str(row.get("changeType") or "").lower()
    if change not in ("created", "updated", "deleted", "collection"):
        raise ValueError(f"changeType {row.get('changeType')!r} is none of created, updated, deleted, collection")
    since = None
    if match["query"]:
        # Searched in the query as decoded once: decoding it as a form again made an offset's `+` a space, and
        # `12:00+02:00` was read as 12:00 UTC, two hours after the changes it covers.
        found = _SINCE.search(match["query"]) or _SINCE.search(unquote(match["query"]))  # encoded twice
        since = parse_moment(found["moment"]) if found else None
    return Notice(
        company_id=match["company"].strip("'"),
        entity_set=match["set"],
        record_id=match["record"].strip("'") if match["record"] else None,
        change=change,
        modified_at=parse_moment(str(row.get("lastModifiedDateTime") or "")),
        since=since,
    )


def parse_notifications(body: bytes, client_state: str, received_at: str) -> Delivery:
    """A notification POST → one stored delivery of its notices (without the secret).

    Every notice must carry our clientState, else the whole call is refused (401) and stored nowhere:
    BC sends the value it was given, so anything else did not come from our subscriptions.
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise NotificationRejected(400, f"not JSON: {exc}") from None
    notices = payload.get("value") if isinstance(payload, dict) else None
    if not isinstance(notices, list) or not all(isinstance(n, dict) for n in notices):
        raise NotificationRejected(400, 'not a notification: no "value" list of notices')
    expected = client_state.encode()
    if not all(hmac.compare_digest(str(n.get("clientState") or "").encode(), expected) for n in notices):
        raise NotificationRejected(401, "clientState does not match")
    rows = [{k: v for k, v in n.items() if k != "clientState"} for n in notices]
    for index, row in enumerate(rows):
        try:
            parse_notice(row)
        except ValueError as exc:
            raise NotificationRejected(400, f"notice {index}: {exc}") from None
    # BC's retry of a call repeats its notices: the same id, stored once.
    digest = hashlib.sha256(orjson.dumps(rows, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    return Delivery(
        id=digest,
        source=SOURCE,
        target="notifications",
        received_at=received_at,
        detail={"notices": len(rows)},
        rows=rows,
    )


# -- subscriptions --------------------------------------------------------------------------------


@dataclass
class SubscriptionState:
    resource: str
    action: str  # kept | created | renewed | removed | failed | unknown
    subscription_id: str | None = None
    expires: str | None = None
    error: str | None = None

    def row(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Subscriptions:
    """Our subscriptions in one environment: one per (company, entity set), all to one notification URL."""

    client: object  # BusinessCentralClient
    notification_url: str
    client_state: str
    resources: Sequence[str]  # as `resource_path()` makes them
    renew_when_left: timedelta
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    @property
    def path(self) -> str:
        return f"{self.client.base_path}/subscriptions"

    def listed(self) -> list[dict]:
        return self.client.parse(self.client.http.request("GET", self.path))["value"]

    def ours(self, listed: list[dict]) -> dict[str, dict]:
        return {
            _same(s.get("resource", "")): s
            for s in listed
            if str(s.get("notificationUrl", "")).rstrip("/") == self.notification_url
        }

    def sync(self) -> list[SubscriptionState]:
        listed = self.listed()
        ours = self.ours(listed)
        room = MAX_SUBSCRIPTIONS - len(listed)
        states = []
        for resource in self.resources:
            existing = ours.pop(_same(resource), None)
            if existing is None:
                if room <= 0:
                    states.append(
                        SubscriptionState(
                            resource,
                            "failed",
                            error=f"the environment has {MAX_SUBSCRIPTIONS} subscriptions, BC's limit: remove some "
                            "or subscribe to fewer entities (business_central.notifications.entities)",
                        )
                    )
                    continue
                states.append(self._create(resource))
                room -= 1
            elif self._expiring(existing) or existing.get("clientState") not in (None, self.client_state):
                states.append(self._renew(resource, existing))
            else:
                states.append(self._state(resource, "kept", existing))
        for resource, unwanted in ours.items():
            states.append(self._remove(resource, unwanted))
        return states

    def _expiring(self, subscription: dict) -> bool:
        expires = subscription.get("expirationDateTime")
        return expires is None or parse_moment(expires) - self.clock() < self.renew_when_left

    def _body(self, resource: str) -> bytes:
        return orjson.dumps(
            {"notificationUrl": self.notification_url, "resource": resource, "clientState": self.client_state}
        )

    def _create(self, resource: str) -> SubscriptionState:
        try:
            created = self.client.parse(
                self.client.http.request(
                    "POST", self.path, content=self._body(resource), headers={"Content-Type": "application/json"}
                )
            )
        except OutcomeUnknown:
            # BC may have made it: the listing says. Never posted twice blind.
            found = self.ours(self.listed()).get(_same(resource))
            if found is not None:
                return self._state(resource, "created", found)
            return SubscriptionState(resource, "unknown", error="BC's answer was lost; the next check settles it")
        except RequestFailedError as exc:
            return SubscriptionState(resource, "failed", error=_why(exc))
        return self._state(resource, "created", created)

    def _renew(self, resource: str, existing: dict) -> SubscriptionState:
        try:
            renewed = self.client.parse(
                self.client.http.request(
                    "PATCH",
                    f"{self.path}('{existing['subscriptionId']}')",
                    content=self._body(resource),
                    headers={"Content-Type": "application/json", "If-Match": existing.get("@odata.etag", "*")},
                    idempotent=True,  # a renewal repeated only moves the expiry again
                )
            )
        except RequestFailedError as exc:
            if exc.status == 404:  # BC deleted it meanwhile: make it again
                return self._create(resource)
            return SubscriptionState(resource, "failed", existing.get("subscriptionId"), error=_why(exc))
        return self._state(resource, "renewed", renewed or existing)

    def _remove(self, resource: str, unwanted: dict) -> SubscriptionState:
        try:
            self.client.http.request(
                "DELETE",
                f"{self.path}('{unwanted['subscriptionId']}')",
                headers={"If-Match": unwanted.get("@odata.etag", "*")},
                idempotent=True,  # deleting twice: the second finds nothing
            )
        except RequestFailedError as exc:
            if exc.status != 404:
                return SubscriptionState(resource, "failed", unwanted.get("subscriptionId"), error=_why(exc))
        return SubscriptionState(resource, "removed", unwanted.get("subscriptionId"))

    @staticmethod
    def _state(resource: str, action: str, subscription: dict) -> SubscriptionState:
        return SubscriptionState(
            resource, action, subscription.get("subscriptionId"), subscription.get("expirationDateTime")
        )


def resource_path(company_id: str, entity_set: str) -> str:
    return f"/api/v2.0/companies({company_id})/{entity_set}"


def _same(resource: str) -> str:
    """One spelling of a resource path (BC may answer without the leading slash, or in other case)."""
    return "/" + unquote(resource).strip().lstrip("/").lower()


def _why(exc: ConnectorError) -> str:
    return str(exc).splitlines()[0][:500]


def readable_resource(resource: str, names: dict[str, str]) -> str:
    """`/api/v2.0/companies(<id>)/customers` → `CRONUS USA, Inc./customers`."""
    try:
        company = resource.split("companies(")[1].split(")")[0]
        return f"{names.get(company.lower(), company)}/{resource.rsplit('/', 1)[-1]}"
    except IndexError:
        return resource
