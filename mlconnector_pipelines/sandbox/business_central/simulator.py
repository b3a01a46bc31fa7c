"""Business Central API v2.0 (api-notes §2): companies, company-scoped entity sets, paging, limits, writes.

Reads: entity sets by lastModifiedDateTime windows, $filter, $expand of document lines, paging.
Writes (rules in models.py): POST customers, salesOrders and salesInvoices (with their lines as a
deep insert) and lines under a document; PATCH behind If-Match; the bound actions
salesInvoices({id})/Microsoft.NAV.post and salesOrders({id})/Microsoft.NAV.shipAndInvoice (204);
DELETE of customers, vendors, items, sales orders and draft invoices.
Webhooks (subscriptions.py): `api/v2.0/subscriptions`, not company-scoped, through the same
pipeline (token, rate window, faults); every change to the records becomes a notification.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import json
import logging
import random
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ..core.exact_json import dumps, json_response
from ..core.faults import FaultBook, FaultRule, retry_after_header
from ..core.odata_filter import Comparison, FilterError, parse_filter
from ..core.service import RateWindow, SimulatedService
from ..entra.simulator import EntraSimulator
from . import ENVIRONMENT, RESOURCE, BusinessCentralSettings, Dialect
from .models import DOCUMENTS, LINE_PARENT, LMD, ApiError, BusinessCentralModel, Company, EntityTable, bad_request
from .seed import LINE_ENTITY, dimension_set_lines, iso_ms
from .subscriptions import Subscriptions

ADMIN = "/_sandbox/business_central"
log = logging.getLogger("mlconnector.sandbox")
MAX_PAGE_SIZE = 20_000
_FAILURE_CODES = {
    429: "Application_TooManyRequests",
    503: "Internal_ServiceUnavailable",
    502: "Internal_BadGateway",
    504: "Internal_GatewayTimeout",
}


@dataclass
class BusinessCentralSimulator(SimulatedService):
    settings: BusinessCentralSettings
    entra: EntraSimulator
    tenant_id: str
    environment: str = ENVIRONMENT
    ca_bundle: Path | None = None  # the sandbox CA: an https notification URL behind it is trusted
    faults: FaultBook = field(default_factory=FaultBook)
    counts: collections.Counter = field(default_factory=collections.Counter)
    # committed writes by "METHOD target" ("POST salesOrders", "POST salesInvoices/Microsoft.NAV.post"):
    # counted when the model commits, so a write whose answer a fault lost still counts once
    writes: collections.Counter = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        self.model = BusinessCentralModel(self.settings)
        self.rate = RateWindow(self.settings.rate_limit_requests, self.settings.rate_limit_window_seconds)
        self.subscriptions = Subscriptions(self.model, self.settings, self.ca_bundle)
        self.dialect = Dialect()
        self._fixed_pages: dict[str, list[str]] = {}  # dialect page_ids: token → the ids a read matched first

    @property
    def companies(self) -> dict[str, Company]:
        return self.model.companies

    @property
    def field_types(self) -> dict[str, dict[str, str]]:
        return self.model.field_types

    def routes(self) -> list[Route]:
        return [
            Route(
                "/v2.0/{tenant}/{environment}/api/{version}/{rest:path}",
                self.guarded(self.handle),
                methods=["GET", "POST", "PATCH", "DELETE"],
            ),
            Route(f"{ADMIN}/companies", self._admin_companies),
            Route(f"{ADMIN}/companies/{{company}}/{{entity_set}}", self._admin_records, methods=["GET", "POST"]),
            Route(f"{ADMIN}/companies/{{company}}/{{entity_set}}/{{id}}", self._admin_delete, methods=["DELETE"]),
            Route(f"{ADMIN}/dialect", self._admin_dialect, methods=["GET", "POST"]),
            Route(f"{ADMIN}/subscriptions", self._admin_subscriptions),
            Route(f"{ADMIN}/subscriptions/flush", self._admin_flush, methods=["POST"]),
            Route(f"{ADMIN}/subscriptions/{{id}}/age", self._admin_age, methods=["POST"]),
            Route(f"{ADMIN}/subscriptions/{{id}}", self._admin_remove_subscription, methods=["DELETE"]),
        ]

    def state(self) -> dict:
        return {
            "requests": dict(self.counts),
            "writes": dict(self.writes),
            "companies": [c.data.name for c in self.companies.values()],
            "subscriptions": self.subscriptions.state(),
        }

    def reset(self) -> None:
        self.subscriptions.reset()
        self.model.reset()
        self.counts.clear()
        self.writes.clear()
        self.rate.clear()
        self.dialect = Dialect()
        self.model.clock_ahead = timedelta(0)
        self._fixed_pages.clear()

    # -- the pipeline's hooks, in BC's words ------------------------------------------------------

    def caller(self, request: Request) -> str | None:
        issued = self.entra.validate(request.headers.get("authorization"), RESOURCE)
        if issued is None or issued.tenant_id != request.path_params["tenant"]:
            return None
        return issued.client_id

    def unauthorized(self, request: Request) -> Response:
        tenant = request.path_params["tenant"]
        return _error(
            401,
            "Authentication_InvalidCredentials",
            "The server has rejected the client credentials.",
            headers={
                "WWW-Authenticate": f'Bearer authorization_uri="https://login.microsoftonline.com/{tenant}/oauth2/authorize"'
            },
        )

    def throttled(self, request: Request) -> Response:
        return _error(
            429,
            "Application_TooManyRequests",
            f"Too many requests reached. Maximum ({self.rate.limit}) per {self.rate.window_seconds:g} seconds.",
            headers=retry_after_header(self.settings.retry_after_on_429),
        )

    def failure(self, request: Request, fault: FaultRule) -> Response:
        code = _FAILURE_CODES.get(fault.status, "Internal_ServerError")
        return _error(fault.status, code, "Injected by the sandbox.", headers=retry_after_header(fault.retry_after))

    def expire_credentials(self) -> None:
        self.entra.expire_all()

    # -- the API ----------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        if request.path_params["environment"] != self.environment:
            return _error(
                404,
                "BadRequest_NotFound",
                f"Environment '{request.path_params['environment']}' does not exist in tenant "
                f"'{request.path_params['tenant']}'. Check the environment name in the BC admin center.",
            )
        if request.path_params["version"] != "v2.0":
            return _error(
                404,
                "BadRequest_NotFound",
                f"No HTTP resource was found that matches the request URI (API version "
                f"'{request.path_params['version']}' is not published; use v2.0).",
            )
        rest = request.path_params["rest"]
        if rest == "subscriptions" or rest.startswith("subscriptions("):
            return await self._subscriptions(request, rest)
        if request.method in ("POST", "PATCH"):
            return await self._write(request)
        if request.method == "DELETE":
            return self._delete(request, rest)
        fault = request.state.fault
        try:
            return self._route(request, corrupt=fault if fault is not None and fault.kind == "corrupt" else None)
        except FilterError as exc:
            return _error(400, "BadRequest", str(exc))

    def _route(self, request: Request, corrupt=None) -> Response:
        rest = request.path_params["rest"]
        if rest == "companies":
            return self._company_list(request)
        match = re.fullmatch(r"companies\(([^)]+)\)/(\w+)(?:\(([^)]+)\))?(?:/(\$count|\w+)(?:\(([^)]+)\))?)?", rest)
        if not match:
            return _error(
                404, "BadRequest_NotFound", f"No HTTP resource was found that matches the request URI '{rest}'."
            )
        company_id, entity_set, record_id, tail, tail_id = match.groups()
        company = self.companies.get(company_id.strip("'"))
        if company is None:
            return _error(404, "BadRequest_NotFound", f"The company '{company_id}' does not exist.")
        if entity_set in LINE_ENTITY.values():
            return _error(
                400,
                "BadRequest",
                f"You must specify a document id to get the lines ({entity_set} is read through its parent).",
            )
        table = company.tables.get(entity_set)
        if table is None:
            return _error(404, "BadRequest_NotFound", f"Resource not found for the segment '{entity_set}'.")
        self.counts[entity_set] += 1
        if record_id is None and tail == "$count":
            comparisons = self._filter(request, entity_set)
            return PlainTextResponse(str(sum(1 for _ in table.scan(comparisons, None))))
        if record_id is not None:
            record = table.by_id.get(record_id)
            if record is None:
                return _error(404, "BadRequest_NotFound", f"The {entity_set} record '{record_id}' does not exist.")
            if tail is None:
                expand = self._expand(request, entity_set)
                return self._json(request, self._render(request, company, entity_set, record, expand))
            children = self._children(company, entity_set, record, tail)
            if children is None:
                return _error(404, "BadRequest_NotFound", f"Resource not found for the segment '{tail}'.")
            if tail_id is not None:  # one line of the document: salesOrders({id})/salesOrderLines({lineId})
                line = next((c for c in children if c["id"] == tail_id.strip("'").lower()), None)
                if line is None:
                    return _error(404, "BadRequest_NotFound", f"The {tail} record '{tail_id}' does not exist.")
                return self._json(request, {"@odata.context": self._context(request, f"{tail}/$entity"), **line})
            return self._json(request, self._line_page(request, tail, children))
        return self._collection(request, company, entity_set, table, corrupt)

    def _collection(
        self, request: Request, company: Company, entity_set: str, table: EntityTable, corrupt=None
    ) -> Response:
        params = request.query_params
        comparisons = self._filter(request, entity_set)
        expand = self._expand(request, entity_set)
        page_size, applied = _page_size(request, self.dialect.max_page_size)
        top = int(params["$top"]) if "$top" in params else None
        fixed = self.dialect.page_ids == "fixed_at_first_page"
        by_offset = self.dialect.page_ids in ("offset", "offset_token")
        offset_token = self.dialect.page_ids == "offset_token"
        after = _decode_skiptoken(params["$skiptoken"]) if "$skiptoken" in params and not (fixed or by_offset) else None
        if offset_token:  # rows served before
            already = _offset(params.get("$skiptoken", "o0").removeprefix("o"))
        else:
            already = _offset(params.get("$skip", "0")) if by_offset else int(params.get("$skipcount", "0"))
        limit = page_size if top is None else max(0, min(page_size, top - already))
        if fixed:
            snapshot, matched = self._fixed_ids(table, comparisons, params.get("$skiptoken"), already)
        elif by_offset:
            matched = itertools.islice(table.scan(comparisons, None), already, None)
        else:
            matched = table.scan(comparisons, after)
        page = list(itertools.islice(matched, limit))  # exactly `limit`: the next one is left for `more`
        more = len(page) == limit and limit > 0 and next(matched, None) is not None
        body: dict[str, Any] = {"@odata.context": self._context(request, entity_set)}
        if params.get("$count") == "true":
            body["@odata.count"] = sum(1 for _ in table.scan(comparisons, None))
        select = [s.strip() for s in params["$select"].split(",")] if "$select" in params else None
        body["value"] = [self._render(request, company, entity_set, r, expand, select) for r in page]
        if corrupt is not None and body["value"]:  # a value that does not cast, as a bad extension writes one
            body["value"][0][corrupt.field] = corrupt.value
        if more and (top is None or already + len(page) < top):
            query = {k: v for k, v in params.items() if k not in ("$skiptoken", "$skipcount", "$skip")}
            if offset_token:  # the offset alone says where the next page starts, hidden or not
                query["$skiptoken"] = f"o{already + len(page)}"
            elif by_offset:
                query["$skip"] = str(already + len(page))
            else:
                query["$skiptoken"] = snapshot if fixed else _encode_skiptoken((page[-1][LMD], page[-1]["id"]))
                if top is not None or fixed:
                    query["$skipcount"] = str(already + len(page))
            body["@odata.nextLink"] = (
                f"{request.url.scheme}://{request.url.netloc}{request.url.path}?{urlencode(query)}"
            )
        self.counts["pages"] += 1
        return self._json(request, body, {"Preference-Applied": applied} if applied else None)

    def _fixed_ids(self, table: EntityTable, comparisons: list[Comparison], token: str | None, served: int):
        """Dialect `page_ids: fixed_at_first_page`: the ids the filter matched at the first page (kept under a
        token the next links carry), from the `served`th on, each record as it is now (gone ones skipped)."""
        if token is None:
            token = uuid.uuid4().hex
            self._fixed_pages[token] = [record["id"] for record in table.scan(comparisons, None)]
        ids = self._fixed_pages.get(token)
        if ids is None:
            raise FilterError("The $skiptoken is not valid.")
        return token, (table.by_id[i] for i in ids[served:] if i in table.by_id)

    def _company_list(self, request: Request) -> Response:
        """The environment's companies, paged like any collection (`Prefer: odata.maxpagesize`)."""
        companies = list(self.companies.values())
        size, applied = _page_size(request, self.dialect.max_page_size)
        after = request.query_params.get("$skiptoken")  # the id of the last company served
        ids = [c.data.id for c in companies]
        rest = companies[ids.index(after) + 1 :] if after in ids else companies
        body = {
            "@odata.context": self._context(request, "companies"),
            "value": [self._company_json(c) for c in rest[:size]],
        }
        if len(rest) > size:
            query = urlencode({"$skiptoken": rest[size - 1].data.id})
            body["@odata.nextLink"] = f"{request.url.scheme}://{request.url.netloc}{request.url.path}?{query}"
        return self._json(request, body, {"Preference-Applied": applied} if applied else None)

    def _filter(self, request: Request, entity_set: str) -> list[Comparison]:
        text = request.query_params.get("$filter")
        return parse_filter(text, self.field_types[entity_set]) if text else []

    def _expand(self, request: Request, entity_set: str) -> list[str]:
        expand = [e.strip() for e in request.query_params.get("$expand", "").split(",") if e.strip()]
        allowed = {LINE_ENTITY.get(entity_set), "dimensionSetLines"}
        for name in expand:
            if name not in allowed or (name == "dimensionSetLines" and entity_set != "generalLedgerEntries"):
                raise FilterError(f"Could not find a property named '{name}' on type 'Microsoft.NAV.{entity_set}'.")
        return expand

    def _children(self, company: Company, entity_set: str, record: dict, navigation: str) -> list[dict] | None:
        if navigation == "dimensionSetLines" and entity_set == "generalLedgerEntries":
            return dimension_set_lines(company.data, record["id"])
        if navigation == LINE_ENTITY.get(entity_set):
            # each line with its own etag, as BC serves them (a line's PATCH needs it)
            return [
                {"@odata.etag": self.model.etag(company, line), **line}
                for line in company.data.lines[entity_set].get(record["id"], [])
            ]
        return None

    def _render(
        self,
        request: Request,
        company: Company,
        entity_set: str,
        record: dict,
        expand: list[str],
        select: list[str] | None = None,
    ) -> dict:
        rendered = {"@odata.etag": self.model.etag(company, record)}
        rendered.update(record if select is None else {k: record.get(k) for k in select})
        if self.dialect.local_currency_code == "blank" and rendered.get("currencyCode"):
            if rendered["currencyCode"] == company.local_currency and entity_set != "companyInformation":
                rendered["currencyCode"] = ""
        size = self.dialect.expanded_page_size
        for navigation in expand:
            children = self._children(company, entity_set, record, navigation) or []
            rendered[navigation] = children if size is None else children[:size]
            if size is not None and len(children) > size:  # the rest behind a nested next link
                path = f"{request.url.path.split('/companies(')[0]}/companies({company.data.id})"
                query = urlencode({"$skip": size})
                rendered[f"{navigation}@odata.nextLink"] = (
                    f"{request.url.scheme}://{request.url.netloc}{path}/{entity_set}({record['id']})/{navigation}?{query}"
                )
        return rendered

    def _line_page(self, request: Request, navigation: str, children: list[dict]) -> dict:
        """A document's lines read through it, from `$skip`: all of them, or a page of `expanded_page_size`
        and a next link while more follow."""
        try:
            skip = int(request.query_params.get("$skip", "0"))
        except ValueError:
            raise FilterError("The $skip value is not a valid integer.") from None
        size = self.dialect.expanded_page_size or len(children)
        body: dict[str, Any] = {
            "@odata.context": self._context(request, navigation),
            "value": children[skip : skip + size],
        }
        if skip + size < len(children):
            query = {**request.query_params, "$skip": str(skip + size)}
            body["@odata.nextLink"] = (
                f"{request.url.scheme}://{request.url.netloc}{request.url.path}?{urlencode(query)}"
            )
        return body

    def _company_json(self, company: Company) -> dict:
        d = company.data
        return {
            "id": d.id,
            "systemVersion": "27.0.38460.41280",
            "timestamp": 42,
            "name": d.name,
            "displayName": d.display_name,
            "businessProfileId": "",
            "systemCreatedAt": d.created_at,
            "systemCreatedBy": "00000000-0000-0000-0000-000000000001",
            "systemModifiedAt": d.created_at,
            "systemModifiedBy": "00000000-0000-0000-0000-000000000001",
        }

    @staticmethod
    def _context(request: Request, name: str) -> str:
        base = request.url.path.split("/api/v2.0/")[0]
        return f"{request.url.scheme}://{request.url.netloc}{base}/api/v2.0/$metadata#{name}"

    @staticmethod
    def _json(request: Request, body: Any, headers: dict | None = None) -> Response:
        return Response(
            dumps(body), media_type="application/json; odata.metadata=minimal; odata.streaming=true", headers=headers
        )

    # -- admin: the simulator's own records ---------------------------------------------------

    async def _admin_companies(self, request: Request) -> Response:
        return json_response([{"id": c.data.id, "name": c.data.name} for c in self.companies.values()])

    async def _admin_records(self, request: Request) -> Response:
        company = self.companies.get(request.path_params["company"])
        entity_set = request.path_params["entity_set"]
        if company is None or entity_set not in company.tables:
            return _error(404, "BadRequest_NotFound", "unknown company or entity set")
        if request.method == "POST":
            body = json.loads(await request.body(), parse_float=Decimal)  # a test's amounts, every digit kept
            return json_response(
                self.model.upsert(
                    company.data.id, entity_set, body["record"], body.get("lines"), body.get("lastModifiedDateTime")
                )
            )
        return json_response([self._with_children(company, entity_set, r) for r in company.tables[entity_set].records])

    async def _admin_delete(self, request: Request) -> Response:
        """BC's own user deletes a record (no rules): its lines go with it, subscribers hear `deleted`."""
        company = self.companies.get(request.path_params["company"])
        entity_set = request.path_params["entity_set"]
        if company is None or entity_set not in company.tables:
            return _error(404, "BadRequest_NotFound", "unknown company or entity set")
        try:
            record = self.model.delete(company.data.id, entity_set, request.path_params["id"])
        except ApiError as exc:
            return _error(exc.status, exc.code, exc.message)
        self.writes[f"admin DELETE {entity_set}"] += 1
        return json_response({"deleted": record["id"], "entity_set": entity_set})

    async def _admin_dialect(self, request: Request) -> Response:
        """Switch readings of OData a BC server may take (see `Dialect`); a reset restores BC's."""
        if request.method == "POST":
            try:
                self.dialect = Dialect.model_validate({**self.dialect.model_dump(), **await request.json()})
            except ValueError as exc:
                return json_response({"error": str(exc)}, status_code=400)
            self.model.clock_ahead = timedelta(seconds=self.dialect.clock_ahead_seconds)
        return json_response(self.dialect.model_dump())

    async def _admin_subscriptions(self, request: Request) -> Response:
        return json_response(self.subscriptions.admin_view())

    async def _admin_flush(self, request: Request) -> Response:
        return json_response({"attempts": await self.subscriptions.flush()})

    async def _admin_age(self, request: Request) -> Response:
        body = await request.json()
        try:
            return json_response(self.subscriptions.age(request.path_params["id"], float(body.get("seconds", 0))))
        except ApiError as exc:
            return _error(exc.status, exc.code, exc.message)

    async def _admin_remove_subscription(self, request: Request) -> Response:
        if not self.subscriptions.remove(request.path_params["id"], "deleted by BC (admin API)"):
            return _error(404, "BadRequest_NotFound", f"The subscription '{request.path_params['id']}' does not exist.")
        return Response(status_code=204)

    @staticmethod
    def _with_children(company: Company, entity_set: str, record: dict) -> dict:
        result = dict(record)
        if entity_set in LINE_ENTITY:
            result[LINE_ENTITY[entity_set]] = company.data.lines[entity_set].get(record["id"], [])
        if entity_set == "generalLedgerEntries":
            result["dimensionSetLines"] = dimension_set_lines(company.data, record["id"])
        return result

    # -- live mode ----------------------------------------------------------------------------

    async def live_loop(self) -> None:
        """Create and modify records over time, some committed late with a past timestamp."""
        rng = random.Random(self.settings.seed + 7)
        deletions = random.Random(self.settings.seed + 11)  # apart: the other draws stay as they were
        while True:
            await asyncio.sleep(self.settings.live_interval_seconds)
            try:
                company = rng.choice(list(self.companies.values()))
                now = datetime.now(UTC)
                self._live_delete(company, deletions)
                self._live_ship_an_order(company, rng)
                for _ in range(rng.randint(1, 3)):
                    entity_set = rng.choice(["customers", "vendors", "items", "salesInvoices", "salesOrders"])
                    records = company.tables[entity_set].records
                    if records:
                        victim = rng.choice(records)
                        if victim["id"] in company.created:  # what a client wrote changes only by its rules
                            continue
                        change = {"id": victim["id"]}
                        if "displayName" in victim:
                            change["displayName"] = (
                                victim["displayName"].split(" (rev")[0] + f" (rev {rng.randint(2, 99)})"
                            )
                        if "status" in victim:
                            change["status"] = rng.choice(["Open", "Paid", "Released"])
                        self.model.upsert(company.data.id, entity_set, change)
                late = rng.random() < 0.3
                stamp = (
                    now - timedelta(minutes=rng.uniform(0.5, self.settings.live_late_commit_max_minutes))
                    if late
                    else now
                )
                template = rng.choice(company.tables["generalLedgerEntries"].records)
                for offset, (debit, credit) in enumerate(((125.0, 0.0), (0.0, 125.0))):
                    self.model.upsert(
                        company.data.id,
                        "generalLedgerEntries",
                        {
                            **{k: template[k] for k in ("accountId", "accountNumber", "documentType")},
                            "id": "",
                            "entryNumber": 10_000_000 + rng.randint(0, 9_999_999) + offset,
                            "postingDate": stamp.date().isoformat(),
                            "documentNumber": f"LIVE{rng.randint(0, 99999):05d}",
                            "description": "Live posting" + (" (committed late)" if late else ""),
                            "debitAmount": debit,
                            "creditAmount": credit,
                            "additionalCurrencyDebitAmount": 0.0,
                            "additionalCurrencyCreditAmount": 0.0,
                        },
                        modified_at=iso_ms(stamp),
                    )
            except Exception:  # keep the simulator alive; a bad tick is logged, not fatal
                log.exception("live mode tick failed")

    def _live_delete(self, company: Company, rng: random.Random) -> None:
        """Now and then BC's user deletes a seeded customer or vendor (never one a client created).

        At least half of the seeded records stay, so a long live run keeps data to change."""
        if rng.random() >= self.settings.live_delete_chance:
            return
        entity_set = rng.choice(["customers", "vendors"])
        seeded = [r for r in company.tables[entity_set].records if r["id"] not in company.created]
        if len(seeded) <= getattr(self.settings.volumes, entity_set) // 2:
            return
        victim = rng.choice(seeded)
        self.model.delete(company.data.id, entity_set, victim["id"])
        self.writes[f"live DELETE {entity_set}"] += 1

    def _live_ship_an_order(self, company: Company, rng: random.Random) -> None:
        """Now and then BC's user ships and invoices an order a client created (a draft with lines)."""
        orders = [
            company.tables["salesOrders"].by_id[i]
            for i in sorted(company.created)
            if i in company.tables["salesOrders"].by_id and company.data.lines["salesOrders"].get(i)
        ]
        if orders and rng.random() < 0.3:
            order = rng.choice(orders)
            try:
                self.model.ship_and_invoice(company.data.id, order["id"], None)
                self.writes["live salesOrders/Microsoft.NAV.shipAndInvoice"] += 1
            except ApiError as exc:  # e.g. a line without quantity: BC's user would fix it first
                log.info("live mode left order %s unposted: %s", order["number"], exc.message)

    # -- writes ---------------------------------------------------------------------------------

    async def _write(self, request: Request) -> Response:
        """POST and PATCH: the path names the target, the model applies BC's rules, refusals are ApiErrors."""
        rest = request.path_params["rest"]
        match = _WRITE_PATH.fullmatch(rest)
        if match is None:
            return _error(
                404, "BadRequest_NotFound", f"No HTTP resource was found that matches the request URI '{rest}'."
            )
        company = self.companies.get(match.group(1).strip("'"))
        if company is None:
            return _error(404, "BadRequest_NotFound", f"The company '{match.group(1)}' does not exist.")
        entity_set, record_id, tail, tail_id = (g.strip("'") if g else g for g in match.group(2, 3, 4, 5))
        try:
            if tail is not None and tail.startswith("Microsoft.NAV."):
                return self._action(request, company, entity_set, record_id, tail)
            body = _json_body(await request.body())
            if request.method == "PATCH":
                return self._patch(request, company, entity_set, record_id, tail, tail_id, body)
            return self._post(request, company, entity_set, record_id, tail, tail_id, body)
        except ApiError as exc:
            return _error(exc.status, exc.code, exc.message)

    def _delete(self, request: Request, rest: str) -> Response:
        """DELETE companies({id})/<set>({id}): 204; the model refuses what BC refuses."""
        match = _WRITE_PATH.fullmatch(rest)
        if match is None or match.group(3) is None or match.group(4) is not None:
            target = match.group(4) or match.group(2) if match else rest
            return _error(*_refusal(_not_allowed("DELETE", target)))
        company = self.companies.get(match.group(1).strip("'"))
        if company is None:
            return _error(404, "BadRequest_NotFound", f"The company '{match.group(1)}' does not exist.")
        entity_set, record_id = match.group(2), match.group(3).strip("'")
        try:
            self.model.delete_entity(company.data.id, entity_set, record_id, request.headers.get("if-match"))
        except ApiError as exc:
            return _error(*_refusal(exc))
        self.writes[f"DELETE {entity_set}"] += 1
        return Response(status_code=204)

    async def _subscriptions(self, request: Request, rest: str) -> Response:
        """GET (list or one), POST (create), PATCH (renew), DELETE: api/v2.0/subscriptions[('{id}')]."""
        match = re.fullmatch(r"subscriptions(?:\(([^)]*)\))?", rest)
        if match is None:
            return _error(
                404, "BadRequest_NotFound", f"No HTTP resource was found that matches the request URI '{rest}'."
            )
        key, method = match.group(1), request.method
        self.counts["subscriptions"] += 1
        try:
            if key is None and method == "GET":
                body = {"@odata.context": self._context(request, "subscriptions"), "value": self.subscriptions.list()}
                return self._json(request, body)
            if key is None and method == "POST":
                created = await self.subscriptions.create(_json_body(await request.body()), self._user(request))
                self.writes["POST subscriptions"] += 1
                location = (
                    f"{request.url.scheme}://{request.url.netloc}{request.url.path}('{created['subscriptionId']}')"
                )
                return Response(
                    dumps({"@odata.context": self._context(request, "subscriptions/$entity"), **created}),
                    status_code=201,
                    media_type="application/json; odata.metadata=minimal",
                    headers={"Location": location},
                )
            if key is not None and method == "GET":
                found = self.subscriptions.get(key)
                return self._json(request, {"@odata.context": self._context(request, "subscriptions/$entity"), **found})
            if key is not None and method == "PATCH":
                body = _json_body(await request.body())
                renewed = await self.subscriptions.renew(
                    key, body, request.headers.get("if-match"), self._user(request)
                )
                self.writes["PATCH subscriptions"] += 1
                return self._json(
                    request, {"@odata.context": self._context(request, "subscriptions/$entity"), **renewed}
                )
            if key is not None and method == "DELETE":
                self.subscriptions.delete(key, request.headers.get("if-match"))
                self.writes["DELETE subscriptions"] += 1
                return Response(status_code=204)
            raise _not_allowed(method, "subscriptions")
        except ApiError as exc:
            return _error(*_refusal(exc))

    def _user(self, request: Request) -> str:
        """The BC user of the calling app (its service principal), a GUID of its own."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"bc-user:{self.caller(request)}"))

    def _post(self, request: Request, company: Company, entity_set, record_id, tail, tail_id, body) -> Response:
        company_id = company.data.id
        if record_id is None and tail is None:
            if entity_set == "customers":
                self.counts["created"] += 1
                return self._created(request, company, "customers", self.model.create_customer(company_id, body))
            if entity_set in DOCUMENTS:
                header, lines = self.model.create_document(company_id, entity_set, body)
                return self._created(request, company, entity_set, header, lines)
            if entity_set in LINE_PARENT:  # companies({id})/salesOrderLines with documentId in the body
                line = self.model.create_line(company_id, entity_set, None, body)
                return self._created(request, company, entity_set, line)
        elif record_id is not None and tail == DOCUMENTS.get(entity_set) and tail_id is None:
            line = self.model.create_line(company_id, tail, record_id, body)
            return self._created(request, company, f"{entity_set}/{tail}", line)
        raise _not_allowed("POST", tail or entity_set)

    def _patch(self, request: Request, company: Company, entity_set, record_id, tail, tail_id, body) -> Response:
        company_id, if_match = company.data.id, request.headers.get("if-match")
        if record_id is None:
            raise _not_allowed("PATCH", entity_set)
        if tail is None and entity_set in LINE_PARENT:  # companies({id})/salesOrderLines({lineId})
            line = self.model.patch_line(company_id, entity_set, None, record_id, body, if_match)
            return self._updated(request, company, entity_set, line)
        if tail is None:
            record = self.model.patch_entity(company_id, entity_set, record_id, body, if_match)
            return self._updated(request, company, entity_set, record)
        if tail == DOCUMENTS.get(entity_set) and tail_id is not None:
            line = self.model.patch_line(company_id, tail, record_id, tail_id, body, if_match)
            return self._updated(request, company, f"{entity_set}/{tail}", line)
        raise _not_allowed("PATCH", tail)

    def _action(self, request: Request, company: Company, entity_set, record_id, action: str) -> Response:
        """A bound action: POST only, 204 with no content (as the v2.0 resource docs show)."""
        if request.method != "POST":
            raise _not_allowed(request.method, action)
        if_match = request.headers.get("if-match")
        if entity_set == "salesInvoices" and action == "Microsoft.NAV.post" and record_id:
            self.model.post_invoice(company.data.id, record_id, if_match)
        elif entity_set == "salesOrders" and action == "Microsoft.NAV.shipAndInvoice" and record_id:
            self.model.ship_and_invoice(company.data.id, record_id, if_match)
        else:
            raise ApiError(404, "BadRequest_NotFound", f"The sandbox does not simulate the bound action '{action}'.")
        self.writes[f"POST {entity_set}/{action}"] += 1
        return Response(status_code=204)

    def _created(
        self, request: Request, company: Company, target: str, record: dict, lines: list[dict] | None = None
    ) -> Response:
        """201 with the entity, its etag and Location; a deep insert's lines only when $expand asks for them."""
        self.writes[f"POST {target}"] += 1
        body = self._entity(request, company, target, record)
        line_set = DOCUMENTS.get(target)
        if line_set and line_set in request.query_params.get("$expand", ""):
            body[line_set] = [{"@odata.etag": self.model.etag(company, line), **line} for line in (lines or [])]
        location = f"{request.url.scheme}://{request.url.netloc}{request.url.path}({record['id']})"
        return Response(
            dumps(body),
            status_code=201,
            media_type="application/json; odata.metadata=minimal",
            headers={"Location": location},
        )

    def _updated(self, request: Request, company: Company, target: str, record: dict) -> Response:
        self.writes[f"PATCH {target}"] += 1
        return Response(
            dumps(self._entity(request, company, target, record)), media_type="application/json; odata.metadata=minimal"
        )

    def _entity(self, request: Request, company: Company, target: str, record: dict) -> dict:
        name = target.rsplit("/", 1)[-1]
        return {
            "@odata.context": self._context(request, f"{name}/$entity"),
            "@odata.etag": self.model.etag(company, record),
            **record,
        }


# companies({id})/<set>[({key})][/<navigation or Microsoft.NAV.action>[({key})]]
_WRITE_PATH = re.compile(r"companies\(([^)]+)\)/(\w+)(?:\(([^)]+)\))?(?:/([\w.]+?)(?:\(([^)]+)\))?)?")


def _json_body(raw: bytes) -> dict:
    """A write's JSON body with every number kept exact (Decimal), as BC reads amounts."""
    try:
        body = json.loads(raw or b"{}", parse_float=Decimal, parse_constant=_no_constant)
    except ValueError:
        raise bad_request("Invalid Request Body") from None
    if not isinstance(body, dict):
        raise bad_request("Invalid Request Body")
    return body


def _no_constant(name: str):
    raise ValueError(name)  # NaN and Infinity are no JSON numbers BC accepts


def _not_allowed(method: str, target: str | None) -> ApiError:
    return ApiError(
        405,
        "BadRequest_MethodNotAllowed",
        f"'{method}' requests for '{target}' of EdmType 'Entity' are not allowed within Microsoft Dynamics NAV OData"
        " web services.",
    )


def _offset(text: str) -> int:
    try:
        return max(0, int(text))
    except ValueError:
        raise FilterError("The $skip value is not a valid integer.") from None


def _encode_skiptoken(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode()


def _decode_skiptoken(token: str) -> tuple[str, str]:
    try:
        first, second = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        return (first, second)
    except Exception:
        raise FilterError("The $skiptoken is not valid.") from None


def _refusal(exc: ApiError) -> tuple[int, str, str]:
    return exc.status, exc.code, exc.message


def _error(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    body = {"error": {"code": code, "message": f"{message}  CorrelationId:  {uuid.uuid4()}."}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def build(settings: BusinessCentralSettings, context) -> BusinessCentralSimulator:
    entra = context.services["entra"]
    entra.register_resource(RESOURCE)
    tenant_id = next(iter(entra.apps.values())).tenant_id
    ca_bundle = context.data_dir / "sandbox" / "ca.pem"
    return BusinessCentralSimulator(settings, entra=entra, tenant_id=tenant_id, ca_bundle=ca_bundle)


def _page_size(request: Request, server_most: int | None) -> tuple[int, str | None]:
    """Rows a page holds, and the preference applied: `Prefer: odata.maxpagesize`, at most the server's own
    page size (MAX_PAGE_SIZE unless the dialect sets `max_page_size`), which applies with no preference too."""
    most = server_most or MAX_PAGE_SIZE
    match = re.search(r"odata\.maxpagesize=(\d+)", request.headers.get("prefer", ""))
    if match is None:
        return most, None
    size = max(1, min(int(match.group(1)), most))
    return size, f"odata.maxpagesize={size}"
