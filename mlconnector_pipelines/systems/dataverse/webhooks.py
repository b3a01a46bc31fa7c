"""Dataverse webhook calls (a service endpoint of contract Webhook): authenticated, parsed, reduced to a record.

Dataverse POSTs a RemoteExecutionContext (JSON; parameters as WCF key/value arrays, dates as `/Date(ms)/`)
with `x-ms-dynamics-*` headers, and authenticates with what the service endpoint's `authtype` says: a
WebhookKey arrives as `?code=<key>`, HttpHeader and HttpQueryString as the configured pairs. Only which
record changed is kept: the sensor reads the record itself, so a webhook carries no data the flow trusts.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import orjson

from ...ingest.store import Delivery
from .config import WebhookAuth

SOURCE = "dataverse"
# The tables the Sales flow starts from, by logical name (RemoteExecutionContext names tables so).
ENTITY_SETS = {"opportunity": "opportunities", "quote": "quotes", "salesorder": "salesorders"}
# Closing activities name the record they close in their input (WinOpportunity, WinQuote…).
_CLOSE_ACTIVITIES = {"opportunityclose": ("OpportunityClose", "opportunityid"), "quoteclose": ("QuoteClose", "quoteid")}


class WebhookRejected(Exception):
    def __init__(self, status: int, reason: str):
        self.status, self.reason = status, reason
        super().__init__(reason)


def key_parameter(auth: WebhookAuth) -> str | None:
    """The query parameter that carries the key (webhook_key appends ?code=…; http_query_string the configured
    pair); None when a header carries it."""
    if auth.type == "http_header":
        return None
    return "code" if auth.type == "webhook_key" else auth.name


def authenticated(auth: WebhookAuth, secret: str, headers: Mapping[str, str], query: Mapping[str, str]) -> bool:
    """Whether the call carries the service endpoint's key (compared in constant time)."""
    parameter = key_parameter(auth)
    if parameter is None:
        given = headers.get(auth.name.lower()) or headers.get(auth.name) or ""
    else:
        given = query.get(parameter) or ""
    return hmac.compare_digest(given.encode(), secret.encode())


def parse_context(body: bytes, headers: Mapping[str, str], received_at: str) -> Delivery:
    """A RemoteExecutionContext → a stored delivery naming the record (400-class WebhookRejected if malformed)."""
    try:
        context = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WebhookRejected(400, f"not JSON: {exc}") from None
    if not isinstance(context, dict) or not context.get("PrimaryEntityName") or not context.get("PrimaryEntityId"):
        raise WebhookRejected(400, "not a RemoteExecutionContext (no PrimaryEntityName / PrimaryEntityId)")
    entity, record_id = _record(context)
    detail = {
        "message": str(context.get("MessageName") or headers.get("x-ms-dynamics-request-name") or ""),
        "entity": entity,
        "record_id": record_id,
        "organization": str(headers.get("x-ms-dynamics-organization") or context.get("OrganizationName") or ""),
        "correlation_id": str(headers.get("x-ms-correlation-request-id") or context.get("CorrelationId") or ""),
        "operation_id": str(context.get("OperationId") or context.get("RequestId") or ""),
    }
    # One call is one delivery: Dataverse's retry of it repeats the same operation and correlation.
    identity = orjson.dumps([detail["message"], entity, record_id, detail["operation_id"], detail["correlation_id"]])
    return Delivery(
        id=hashlib.sha256(identity).hexdigest()[:32],
        source=SOURCE,
        target=entity,
        received_at=received_at,
        detail=detail,
        rows=[],
    )


def record_of_delivery(delivery: Delivery) -> tuple[str, str]:
    """(entity set, id) of the record a stored webhook call is about ("" for a table the flow does not read)."""
    return ENTITY_SETS.get(delivery.detail.get("entity", ""), ""), str(delivery.detail.get("record_id", ""))


def _record(context: dict[str, Any]) -> tuple[str, str]:
    entity, record_id = str(context["PrimaryEntityName"]).lower(), str(context["PrimaryEntityId"])
    if entity in _CLOSE_ACTIVITIES:  # a Win message: the record is the one the closing activity closes
        parameter, lookup = _CLOSE_ACTIVITIES[entity]
        closed = _parameter(context.get("InputParameters"), parameter) or {}
        reference = _attribute(closed.get("Attributes"), lookup) if isinstance(closed, dict) else None
        if isinstance(reference, dict) and reference.get("Id"):
            return str(reference.get("LogicalName") or entity.removesuffix("close")), str(reference["Id"])
    return entity, record_id


def _parameter(pairs: Any, name: str) -> Any:
    """A value from a WCF key/value array ([{"key": …, "value": …}]), or a plain object's member."""
    if isinstance(pairs, dict):
        return pairs.get(name)
    for pair in pairs or []:
        if isinstance(pair, dict) and pair.get("key") == name:
            return pair.get("value")
    return None


def _attribute(attributes: Any, name: str) -> Any:
    return _parameter(attributes, name)
