"""Dataverse Web API client (Dynamics 365 Sales): tables, change tracking, actions' results, PATCH with If-Match.

A token for the organisation's own scope (msal, renewed before expiry and once on a 401). Money
is Decimal both ways. Dataverse has no idempotency header: a PATCH sets columns to values, so
sending it twice does what sending it once did; nothing here creates Sales records.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from ...core.errors import RequestFailedError
from ...core.http import ThrottledClient
from ...core.odata import json_body, page_and_next_link, page_values
from ...core.paginate import DeltaLinkPages, NextLinkPages
from ...core.tls import ssl_context
from ..entra import EntraTokenProvider
from .config import DataverseConfig

SYSTEM = "Dynamics 365 Sales"
# The token's scope is the organisation URL (config.scope), and Dataverse needs no API permission in Entra: a
# resource Entra does not know is a mistyped URL.
ENTRA_FIXES = {
    "AADSTS500011": "no Dataverse organisation at that address in this tenant: check dataverse.org_url (exactly the "
    "organisation's URL, e.g. https://contoso.crm.dynamics.com, lower case, in the same tenant as the app)"
}
_JSON = "application/json"

# Dataverse's "version stamp expired: perform a full sync" (ExpiredVersionStamp), in either spelling.
_EXPIRED_DELTA_CODES = {"0x80044352", "-2147204270"}  # compared lower case


def dataverse_error_message(response: httpx.Response) -> tuple[str, str | None]:
    """(message, code) of a Dataverse error: `{"error": {"code": "0x8004…", "message": …}}`."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return (response.text.strip()[:400] or response.reason_phrase, None)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return (str(error.get("message") or response.reason_phrase), str(error["code"]) if error.get("code") else None)
    return (response.text[:400], None)


def guid_literal(value: str) -> str:
    """A GUID in a Web API filter is written bare."""
    text = str(value).strip("{}").lower()
    if len(text) != 36 or text.count("-") != 4:
        raise ValueError(f"not a GUID: {value!r}")
    return text


class DeltaTokenExpired(RequestFailedError):
    """The delta link is no longer honoured (expired, or the table's tracking was reset): read everything again."""


class PreconditionFailed(RequestFailedError):
    """If-Match did not match: the record changed since it was read."""


@dataclass
class Changes:
    """What a change-tracking read returned: rows created or changed (whole, as selected), ids deleted."""

    rows: list[dict] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    delta_link: str | None = None
    full: bool = False  # the read started from nothing (first read, or the old token had expired)


class DataverseClient:
    def __init__(self, cfg: DataverseConfig, *, client_secret: str):
        self.cfg = cfg
        self.tokens = EntraTokenProvider.for_section(
            cfg, system=SYSTEM, client_secret=client_secret, name="dataverse", fixes=ENTRA_FIXES
        )
        self.http = ThrottledClient(
            SYSTEM,
            base_url=cfg.api_url,
            policy=cfg.http,
            auth=self.tokens,
            verify=ssl_context(cfg.ca_bundle, what="dataverse"),
            secrets=(client_secret,),
            headers={"Accept": _JSON, "OData-Version": "4.0", "OData-MaxVersion": "4.0"},
            error_message=dataverse_error_message,
        )

    def close(self) -> None:
        self.http.close()
        self.tokens.close()

    def parse(self, response: httpx.Response) -> Any:
        try:
            return json.loads(response.content, parse_float=Decimal)
        except ValueError as exc:
            raise self.http.malformed(response, f"malformed JSON: {exc}") from None

    # -- reads -----------------------------------------------------------------------------------

    def who_am_i(self) -> dict:
        """The WhoAmI function: the application user's id, business unit and organisation."""
        return self.parse(self.http.request("GET", "/WhoAmI"))

    def get(self, entity_set: str, record_id: str, *, select: Sequence[str] | None = None) -> dict | None:
        """One row by its id; None when it does not exist (any more)."""
        params = {"$select": ",".join(select)} if select else None
        try:
            return self.parse(self.http.request("GET", f"/{entity_set}({guid_literal(record_id)})", params=params))
        except RequestFailedError as exc:
            if exc.status == 404:
                return None
            raise

    def rows(
        self,
        entity_set: str,
        *,
        filter: str | None = None,
        select: Sequence[str] | None = None,
        orderby: str | None = None,
    ) -> list[dict]:
        """Every row matching, following @odata.nextLink (it carries a $skiptoken; opaque) as given."""
        params: dict[str, str] = {}
        if filter:
            params["$filter"] = filter
        if select:
            params["$select"] = ",".join(select)
        if orderby:
            params["$orderby"] = orderby
        pages = NextLinkPages(
            self.http,
            f"/{entity_set}",
            self._read_page,
            params=params or None,
            headers={"Prefer": f"odata.maxpagesize={self.cfg.page_size}"},
        )
        return [row for page in pages for row in page]

    def _read_page(self, response: httpx.Response) -> tuple[list[dict], str | None]:
        return page_and_next_link(self.http, response, self.parse(response))

    def changes(self, entity_set: str, *, key: str, select: Sequence[str], delta_link: str | None = None) -> Changes:
        """Rows changed and ids deleted since `delta_link` (everything current when None), and the next delta link.

        A record changed again (or deleted) while the answer was being paged may come twice in it; each record
        counts once, as its last event in the answer: its newest row, or its deletion (`key`: the table's id
        column). A delta link Dataverse no longer honours raises DeltaTokenExpired: the caller reads everything
        again and drops what it already has. No $filter/$orderby/$top here: change tracking refuses them.
        """
        headers = {"Prefer": f"odata.track-changes, odata.maxpagesize={self.cfg.page_size}"}
        pages = DeltaLinkPages(
            self.http,
            delta_link or f"/{entity_set}",
            lambda response: self._read_delta_page(response, key),
            params=None if delta_link else {"$select": ",".join(select)},
            headers=headers,
        )
        result = Changes(full=delta_link is None)
        last_event: dict[str, tuple[str, dict | None]] = {}  # id (any case) → (id, its row or None: deleted)
        try:
            for events in pages:
                for record_id, row in events:
                    last_event.pop(record_id.lower(), None)  # re-inserted: the order is the last event's
                    last_event[record_id.lower()] = (record_id, row)
        except RequestFailedError as exc:
            if delta_link is not None and _delta_refused(exc):
                raise DeltaTokenExpired(
                    SYSTEM,
                    f"{entity_set}: the change-tracking token is no longer valid ({exc.server_message}); "
                    "reading the table again",
                    status=exc.status,
                    code=exc.code,
                ) from None
            raise
        # None when the server ignored `Prefer: odata.track-changes` (RFC 7240 lets it): what was read stands,
        # and the next read starts from nothing again.
        result.rows = [row for _, row in last_event.values() if row is not None]
        result.deleted = [record_id for record_id, row in last_event.values() if row is None]
        result.delta_link = pages.delta_link
        return result

    def _read_delta_page(
        self, response: httpx.Response, key: str
    ) -> tuple[list[tuple[str, dict | None]], str | None, str | None]:
        """A delta page's events in order: (id, the row) for a change, (id, None) for a deletion."""
        body = self.parse(response)
        events: list[tuple[str, dict | None]] = []
        for row in page_values(self.http, response, body):
            if (
                "$deletedEntity" in str(row.get("@odata.context", ""))
                or "@removed" in row
                or row.get("reason") in ("deleted", "changed")
            ):
                events.append((_deleted_id(row), None))
            else:
                events.append((str(row.get(key) or ""), row))
        return events, body.get("@odata.nextLink"), body.get("@odata.deltaLink")

    # -- writes ----------------------------------------------------------------------------------

    def patch(self, entity_set: str, record_id: str, values: Mapping[str, Any], *, etag: str | None = None) -> None:
        """Set columns of one row. With `etag`, only if the row is unchanged since (else PreconditionFailed)."""
        headers = {"Content-Type": _JSON, "If-Match": etag or "*"}  # "*": update only, never create (upsert)
        try:
            self.http.request(
                "PATCH",
                f"/{entity_set}({guid_literal(record_id)})",
                content=json_body(values),
                headers=headers,
                idempotent=True,  # setting columns to values: twice is once
            )
        except RequestFailedError as exc:
            if exc.status == 412:
                raise PreconditionFailed(SYSTEM, str(exc), status=412, code=exc.code) from None
            raise

    def metadata(self) -> dict:
        return {
            **self.http.stats.as_metadata("dataverse_http_"),
            "dataverse_tokens_acquired": self.tokens.tokens_acquired,
        }


def _delta_refused(exc: RequestFailedError) -> bool:
    """Whether the server refused the delta link itself (expired token), not the request for another reason:
    Dataverse's 0x80044352, or a 410 Gone (how OData services say a delta link is no longer valid)."""
    if (exc.code or "").lower() in _EXPIRED_DELTA_CODES or exc.status == 410:
        return True
    text = (exc.server_message or "").lower()
    return exc.status == 400 and ("expired" in text or "full sync" in text or "deltatoken" in text)


_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _deleted_id(row: dict) -> str:
    """The id of a record a delta says was removed: Dataverse writes the bare GUID in `id`; OData allows the
    entity's URL there (`…/accounts(<guid>)`), and 4.01 writes `@removed` beside `@id`."""
    named = str(row.get("id") or row.get("@id") or row.get("@odata.id") or "")
    found = _GUID.search(named)
    return found.group(0) if found else named
