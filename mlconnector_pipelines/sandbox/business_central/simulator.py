"""Business Central API v2.0 (api-notes §2): companies, company-scoped entity sets, paging, limits."""

from __future__ import annotations

import asyncio
import base64
import collections
import logging
import random
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
from . import ENVIRONMENT, RESOURCE, BusinessCentralSettings
from .models import LMD, BusinessCentralModel, Company, EntityTable, KeyExists
from .seed import LINE_ENTITY, dimension_set_lines, iso_ms

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
    faults: FaultBook = field(default_factory=FaultBook)
    counts: collections.Counter = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        self.model = BusinessCentralModel(self.settings)
        self.rate = RateWindow(self.settings.rate_limit_requests, self.settings.rate_limit_window_seconds)

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
                methods=["GET", "POST"],
            ),
            Route(f"{ADMIN}/companies", self._admin_companies),
            Route(f"{ADMIN}/companies/{{company}}/{{entity_set}}", self._admin_records, methods=["GET", "POST"]),
        ]

    def state(self) -> dict:
        return {"requests": dict(self.counts), "companies": [c.data.name for c in self.companies.values()]}

    def reset(self) -> None:
        self.model.reset()
        self.counts.clear()
        self.rate.clear()

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
        if request.method == "POST":
            return await self._create(request)
        fault = request.state.fault
        try:
            return self._route(request, corrupt=fault if fault is not None and fault.kind == "corrupt" else None)
        except FilterError as exc:
            return _error(400, "BadRequest", str(exc))

    def _route(self, request: Request, corrupt=None) -> Response:
        rest = request.path_params["rest"]
        if rest == "companies":
            return self._json(
                request,
                {
                    "@odata.context": self._context(request, "companies"),
                    "value": [self._company_json(c) for c in self.companies.values()],
                },
            )
        match = re.fullmatch(r"companies\(([^)]+)\)/(\w+)(?:\(([^)]+)\))?(?:/(\$count|\w+))?", rest)
        if not match:
            return _error(
                404, "BadRequest_NotFound", f"No HTTP resource was found that matches the request URI '{rest}'."
            )
        company_id, entity_set, record_id, tail = match.groups()
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
                return self._json(request, self._render(company, entity_set, record, self._expand(request, entity_set)))
            children = self._children(company, entity_set, record, tail)
            if children is None:
                return _error(404, "BadRequest_NotFound", f"Resource not found for the segment '{tail}'.")
            return self._json(request, {"@odata.context": self._context(request, tail), "value": children})
        return self._collection(request, company, entity_set, table, corrupt)

    def _collection(
        self, request: Request, company: Company, entity_set: str, table: EntityTable, corrupt=None
    ) -> Response:
        params = request.query_params
        comparisons = self._filter(request, entity_set)
        expand = self._expand(request, entity_set)
        page_size = MAX_PAGE_SIZE
        applied = None
        prefer = request.headers.get("prefer", "")
        match = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        if match:
            page_size = max(1, min(int(match.group(1)), MAX_PAGE_SIZE))
            applied = f"odata.maxpagesize={page_size}"
        top = int(params["$top"]) if "$top" in params else None
        after = _decode_skiptoken(params["$skiptoken"]) if "$skiptoken" in params else None
        already = int(params.get("$skipcount", "0"))  # rows served before, so $top holds across pages
        limit = page_size if top is None else max(0, min(page_size, top - already))
        page = []
        matched = table.scan(comparisons, after)
        for record in matched:
            if len(page) == limit:
                break
            page.append(record)
        more = len(page) == limit and limit > 0 and next(matched, None) is not None
        body: dict[str, Any] = {"@odata.context": self._context(request, entity_set)}
        if params.get("$count") == "true":
            body["@odata.count"] = sum(1 for _ in table.scan(comparisons, None))
        select = [s.strip() for s in params["$select"].split(",")] if "$select" in params else None
        body["value"] = [self._render(company, entity_set, r, expand, select) for r in page]
        if corrupt is not None and body["value"]:  # a value that does not cast, as a bad extension writes one
            body["value"][0][corrupt.field] = corrupt.value
        if more and (top is None or already + len(page) < top):
            last = page[-1]
            query = {k: v for k, v in params.items() if k not in ("$skiptoken", "$skipcount")}
            query["$skiptoken"] = _encode_skiptoken((last[LMD], last["id"]))
            if top is not None:
                query["$skipcount"] = str(already + len(page))
            body["@odata.nextLink"] = (
                f"{request.url.scheme}://{request.url.netloc}{request.url.path}?{urlencode(query)}"
            )
        self.counts["pages"] += 1
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
            return company.data.lines[entity_set].get(record["id"], [])
        return None

    def _render(
        self, company: Company, entity_set: str, record: dict, expand: list[str], select: list[str] | None = None
    ) -> dict:
        rendered = {"@odata.etag": _etag(record)}
        rendered.update(record if select is None else {k: record.get(k) for k in select})
        for navigation in expand:
            rendered[navigation] = self._children(company, entity_set, record, navigation)
        return rendered

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
            body = await request.json()
            return json_response(
                self.model.upsert(
                    company.data.id, entity_set, body["record"], body.get("lines"), body.get("lastModifiedDateTime")
                )
            )
        return json_response([self._with_children(company, entity_set, r) for r in company.tables[entity_set].records])

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
        while True:
            await asyncio.sleep(self.settings.live_interval_seconds)
            try:
                company = rng.choice(list(self.companies.values()))
                now = datetime.now(UTC)
                for _ in range(rng.randint(1, 3)):
                    entity_set = rng.choice(["customers", "vendors", "items", "salesInvoices", "salesOrders"])
                    records = company.tables[entity_set].records
                    if records:
                        victim = rng.choice(records)
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

    # -- writes ---------------------------------------------------------------------------------

    async def _create(self, request: Request) -> Response:
        """POST companies({id})/customers: a new customer, numbered from the series when no number is given."""
        match = re.fullmatch(r"companies\(([^)]+)\)/(\w+)", request.path_params["rest"])
        company = self.companies.get(match.group(1).strip("'")) if match else None
        if match is None or company is None or match.group(2) != "customers":
            return _error(405, "BadRequest_MethodNotAllowed", "'POST' requests for this resource are not supported.")
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "BadRequest", "Invalid Request Body")
        fields = self.field_types["customers"]
        unknown = sorted(set(body) - set(fields))
        if unknown:
            return _error(
                400,
                "BadRequest",
                f"The property '{unknown[0]}' does not exist on type "
                "'Microsoft.NAV.customer'. Make sure to only use property names that are defined by the type.",
            )
        try:
            record = self.model.create_customer(company.data.id, body)
        except KeyExists as exc:
            return _error(400, "Internal_EntityWithSameKeyExists", str(exc))
        self.counts["created"] += 1
        location = f"{request.url.scheme}://{request.url.netloc}{request.url.path}({record['id']})"
        return Response(
            dumps(
                {"@odata.context": self._context(request, "customers/$entity"), "@odata.etag": _etag(record), **record}
            ),
            status_code=201,
            media_type="application/json; odata.metadata=minimal",
            headers={"Location": location},
        )


def _etag(record: dict) -> str:
    return 'W/"' + base64.b64encode(record[LMD].encode()).decode() + '"'


def _encode_skiptoken(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode()


def _decode_skiptoken(token: str) -> tuple[str, str]:
    try:
        first, second = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        return (first, second)
    except Exception:
        raise FilterError("The $skiptoken is not valid.") from None


def _error(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    body = {"error": {"code": code, "message": f"{message}  CorrelationId:  {uuid.uuid4()}."}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def build(settings: BusinessCentralSettings, context) -> BusinessCentralSimulator:
    entra = context.services["entra"]
    entra.register_resource(RESOURCE)
    tenant_id = next(iter(entra.apps.values())).tenant_id
    return BusinessCentralSimulator(settings, entra=entra, tenant_id=tenant_id)
