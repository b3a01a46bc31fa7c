"""SAP Business One Service Layer (api-notes §4): sessions, OData v3 (/b1s/v1) and v4 (/b1s/v2)."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..core.exact_json import dumps, json_response
from ..core.faults import FaultBook, FaultRule, retry_after_header
from ..core.odata_filter import FilterError, parse_filter
from ..core.service import SimulatedService
from . import SapSettings
from .models import ServiceLayerModel
from .seed import SapCompanyData, stamp

DEFAULT_PAGE_SIZE = 20
ADMIN = "/_sandbox/sap_business_one"
log = logging.getLogger("mlconnector.sandbox")


@dataclass
class ServiceLayerSimulator(SimulatedService):
    settings: SapSettings
    faults: FaultBook = field(default_factory=FaultBook)
    counts: Counter = field(default_factory=Counter)
    sessions: dict[str, float] = field(default_factory=dict)  # session id -> last use (monotonic)
    session_company: dict[str, str] = field(default_factory=dict)  # session id -> its company database
    logins: int = 0
    logouts: int = 0

    def __post_init__(self) -> None:
        self.model = ServiceLayerModel(self.settings)

    @property
    def companies(self) -> dict[str, SapCompanyData]:
        return self.model.companies

    @property
    def data(self) -> SapCompanyData:
        """The first company database's data (the one a single-company test reads)."""
        return self.companies[self.settings.company_dbs[0]]

    def routes(self) -> list[Route]:
        return [
            Route("/b1s/{version}/Login", self.login, methods=["POST"]),
            Route("/b1s/{version}/Logout", self.logout, methods=["POST"]),
            Route("/b1s/{version}/{entity}", self.guarded(self.collection), methods=["GET"]),
            Route(f"{ADMIN}/sessions/expire", self.expire_sessions, methods=["POST"]),
            Route(f"{ADMIN}/records/{{entity}}", self.records, methods=["GET", "POST"]),
            Route(f"{ADMIN}/records/{{entity}}/{{key}}", self.delete_record, methods=["DELETE"]),
        ]

    def state(self) -> dict:
        return {
            "logins": self.logins,
            "logouts": self.logouts,
            "requests": self.counts["requests"],
            "open_sessions": len(self.sessions),
            "invalid_session_answers": self.counts["401"],
        }

    def reset(self) -> None:
        self.model.reset()
        self.sessions.clear()
        self.session_company.clear()
        self.counts.clear()
        self.logins = self.logouts = 0

    async def live_loop(self) -> None:
        """Change records over time; some journal entries are committed late with a past UpdateTime."""
        rng = random.Random(self.settings.seed + 11)
        while True:
            await asyncio.sleep(self.settings.live_interval_seconds)
            try:
                now = datetime.now(UTC)
                data = self.companies[rng.choice(self.settings.company_dbs)]
                for entity in rng.sample(["Items", "BusinessPartners", "Invoices", "PurchaseOrders"], 2):
                    record = rng.choice(data.entities[entity])
                    if "DocumentStatus" in record:
                        record["DocumentStatus"] = rng.choice(["bost_Open", "bost_Close"])
                    elif "QuantityOnStock" in record:
                        record["QuantityOnStock"] = float(rng.randint(0, 900))
                    else:
                        record["CurrentAccountBalance"] = round(rng.uniform(0, 20000), 2)
                    record["UpdateDate"], record["UpdateTime"] = stamp(now, self.model.zone)
                journals = data.entities["JournalEntries"]
                late = rng.random() < 0.3
                moment = (
                    now - timedelta(minutes=rng.uniform(0.5, self.settings.live_late_commit_max_minutes))
                    if late
                    else now
                )
                amount = round(rng.uniform(50, 5000), 2)
                day, time_of_day = stamp(moment, self.model.zone)
                journals.append(
                    {
                        "JdtNum": max(j["JdtNum"] for j in journals) + 1,
                        "ReferenceDate": day,
                        "Memo": "Live journal" + (" (committed late)" if late else ""),
                        "TransactionCode": "",
                        "UpdateDate": day,
                        "UpdateTime": time_of_day,
                        "JournalEntryLines": [
                            {
                                "Line_ID": 0,
                                "AccountCode": "610000",
                                "Debit": amount,
                                "Credit": 0.0,
                                "CostingCode": "NORTH",
                                "LineMemo": "debit",
                            },
                            {
                                "Line_ID": 1,
                                "AccountCode": "110000",
                                "Debit": 0.0,
                                "Credit": amount,
                                "CostingCode": "NORTH",
                                "LineMemo": "credit",
                            },
                        ],
                    }
                )
            except Exception:  # keep the simulator alive; a bad tick is logged, not fatal
                log.exception("SAP live mode tick failed")

    # -- sessions -----------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        version = request.path_params["version"]
        if version not in self.settings.versions:  # as the web server answers a path it does not serve
            return Response(b"<html><body><h1>404 Not Found</h1></body></html>", 404, media_type="text/html")
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(version, 400, -1000, "Invalid JSON in the request body.")
        await asyncio.sleep(self.settings.login_delay_seconds)
        if body.get("CompanyDB") not in self.companies:
            return _error(
                version, 401, -306, f"Company database '{body.get('CompanyDB')}' does not exist or cannot be connected."
            )
        if body.get("UserName") != self.settings.user or body.get("Password") != self.settings.password:
            return _error(version, 401, -304, "Login failed: invalid user name or password.")
        session = secrets.token_hex(16)
        self.sessions[session] = time.monotonic()
        self.session_company[session] = body["CompanyDB"]
        self.logins += 1
        payload = {
            "SessionId": session,
            "Version": "1000230",
            "SessionTimeout": int(self.settings.session_timeout_minutes),
        }
        if version == "v1":
            payload = {"odata.metadata": f"{_base(request)}/$metadata#B1Sessions/@Element", **payload}
        else:
            payload = {"@odata.context": f"{_base(request)}/$metadata#B1Sessions/$entity", **payload}
        response = JSONResponse(payload)
        response.set_cookie("B1SESSION", session, httponly=True, secure=True, path="/b1s", samesite="none")
        response.set_cookie("ROUTEID", ".node1", secure=True, path="/b1s", samesite="none")
        return response

    async def logout(self, request: Request) -> Response:
        if self.sessions.pop(request.cookies.get("B1SESSION", ""), None) is not None:
            self.logouts += 1
        return Response(status_code=204)

    # -- the pipeline's hooks, in the Service Layer's words -----------------------------------------

    def caller(self, request: Request) -> str | None:
        session = request.cookies.get("B1SESSION", "")
        last = self.sessions.get(session)
        now = time.monotonic()
        if last is None or now - last > self.settings.session_timeout_minutes * 60:
            self.sessions.pop(session, None)
            return None
        self.sessions[session] = now  # each call extends the inactivity timeout
        return session

    def unauthorized(self, request: Request) -> Response:
        return _error(request.path_params["version"], 401, 301, "Invalid session or session already timeout.")

    def failure(self, request: Request, fault: FaultRule) -> Response:
        code = fault.error_code if fault.error_code is not None else -5002
        return _error(request.path_params["version"], fault.status, code, "Injected by the sandbox.", fault.retry_after)

    def expire_credentials(self) -> None:
        self.sessions.clear()

    # -- data ---------------------------------------------------------------------------------

    async def collection(self, request: Request) -> Response:
        version, entity = request.path_params["version"], request.path_params["entity"]
        fault = request.state.fault
        if fault is not None and fault.kind == "mutate":
            self.model.apply(fault.mutations)
        data = self.companies[self.session_company[request.cookies.get("B1SESSION", "")]]
        records = data.entities.get(entity)
        if records is None:
            return _error(version, 404, -2028, f"No matching records found (ODBC -2028): unknown entity '{entity}'.")
        params = request.query_params
        try:
            comparisons = parse_filter(params["$filter"], self.model.field_types[entity]) if "$filter" in params else []
        except FilterError as exc:
            return _error(version, 400, 201, f"Invalid filter: {exc}")
        matched = [r for r in records if all(c.matches(r) for c in comparisons)]
        if "$orderby" in params:
            field_name, _, direction = params["$orderby"].partition(" ")
            if field_name not in self.model.field_types[entity]:
                return _error(version, 400, 201, f"Property '{field_name}' of '{entity}' is invalid.")
            matched.sort(key=lambda r: (r.get(field_name) is None, r.get(field_name)), reverse=direction == "desc")
        skip = int(params.get("$skip", "0"))
        page_size = DEFAULT_PAGE_SIZE
        headers = {}
        match = re.search(r"odata\.maxpagesize=(\d+)", request.headers.get("prefer", ""))
        if match and self.settings.honour_maxpagesize:
            page_size = int(match.group(1))
            headers["Preference-Applied"] = f"odata.maxpagesize={page_size}"
        if "$top" in params:
            matched = matched[: int(params["$top"])]
        page = matched[skip : skip + page_size]
        if "$select" in params:
            wanted = [f.strip() for f in params["$select"].split(",")]
            page = [{k: r.get(k) for k in wanted} for r in page]
        body: dict = {}
        context_key, next_key = (
            ("odata.metadata", "odata.nextLink") if version == "v1" else ("@odata.context", "@odata.nextLink")
        )
        if self.settings.next_link_annotation == "odata4":
            next_key = "@odata.nextLink"
        if self.settings.update_time_as == "hhmmss":
            page = [_hhmmss(r) for r in page]
        body[context_key] = f"{_base(request)}/$metadata#{entity}"
        body["value"] = page
        if len(page) == page_size:  # a full page always links on, even when the next one is empty
            query = {k: v for k, v in params.items() if k != "$skip"}
            query["$skip"] = str(skip + page_size)
            body[next_key] = f"{entity}?{urlencode(query)}"
        return Response(dumps(body), media_type="application/json;odata=minimalmetadata;charset=utf-8", headers=headers)

    # -- admin --------------------------------------------------------------------------------

    async def expire_sessions(self, request: Request) -> JSONResponse:
        expired = len(self.sessions)
        self.sessions.clear()
        return JSONResponse({"expired": expired})

    async def records(self, request: Request) -> Response:
        entity = request.path_params["entity"]
        company = request.query_params.get("company", self.settings.company_dbs[0])
        if company not in self.companies:
            return JSONResponse({"error": f"unknown company database {company}"}, status_code=404)
        records = self.companies[company].entities.get(entity)
        if records is None:
            return JSONResponse({"error": "unknown entity"}, status_code=404)
        if request.method == "POST":
            return json_response(self.model.upsert(company, entity, (await request.json())["record"]))
        return json_response(records)

    async def delete_record(self, request: Request) -> Response:
        company = request.query_params.get("company", self.settings.company_dbs[0])
        entity, key = request.path_params["entity"], request.path_params["key"]
        if company not in self.companies or entity not in self.companies[company].entities:
            return JSONResponse({"error": "unknown company database or entity"}, status_code=404)
        if not self.model.delete(company, entity, key):
            return JSONResponse({"error": f"no {entity} {key} in {company}"}, status_code=404)
        return Response(status_code=204)


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}/b1s/{request.path_params['version']}"


def _error(version: str, status: int, code: int, message: str, retry_after: float | None = None) -> JSONResponse:
    if version == "v1":
        body = {"error": {"code": code, "message": {"lang": "en-us", "value": message}}}
    else:
        body = {"error": {"code": str(code), "message": message, "details": []}}
    return JSONResponse(body, status_code=status, headers=retry_after_header(retry_after))


def build(settings: SapSettings, context) -> ServiceLayerSimulator:
    return ServiceLayerSimulator(settings)


def _hhmmss(record: dict) -> dict:
    """The record with UpdateTime "14:23:05" as the number 142305."""
    value = record.get("UpdateTime")
    if not isinstance(value, str) or not value:
        return record
    return {**record, "UpdateTime": int(value.replace(":", ""))}
