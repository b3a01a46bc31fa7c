"""Acumatica's HTTP side on the simulator base: sign-in (OAuth 2.0 and cookies), the entity endpoint, the admin API.

The pipeline's hooks answer in Acumatica's words: HttpError bodies ({"message", "exceptionMessage", …});
401 for a missing, unknown or expired credential; 429 past the licence's requests per minute. The
sign-in endpoints run through the pipeline too (faults and the rate window apply to them), with
no credential asked.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from urllib.parse import parse_qsl

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core.faults import FaultBook, FaultRule, retry_after_header
from ..core.service import RateWindow, SimulatedService
from . import AcumaticaSettings, Dialect
from .admin import admin_routes
from .api import ContractApi
from .licence import Licence, LoginLimit
from .models import AcumaticaModel, Context
from .seed import money, now_stamp
from .wire import error_response, json

METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH"]
LOGIN_LIMIT = "API Login Limit"
log = logging.getLogger("mlconnector.sandbox")


@dataclass
class AcumaticaSimulator(SimulatedService):
    settings: AcumaticaSettings
    faults: FaultBook = field(default_factory=FaultBook)
    counts: collections.Counter = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        self.site = self.settings.site_path.rstrip("/")
        self.model = AcumaticaModel(self.settings)
        self.licence = Licence(self.settings)
        self.rate = RateWindow(self.settings.requests_per_minute, 60.0)
        self.api = ContractApi(self.model, self.site, self.settings)
        self.anonymous = {f"{self.site}{p}" for p in ("/identity/connect/token", "/entity/auth/login")}
        self.anonymous |= {f"{self.site}/entity/auth/logout", f"{self.site}/entity"}

    def routes(self) -> list[Route]:
        site = self.site
        return [
            Route(f"{site}/identity/connect/token", self.guarded(self.token), methods=["POST"]),
            Route(f"{site}/identity/.well-known/openid-configuration", self.discovery),
            Route(f"{site}/entity/auth/login", self.guarded(self.login), methods=["POST"]),
            Route(f"{site}/entity/auth/logout", self.guarded(self.logout), methods=["POST"]),
            Route(f"{site}/entity", self.guarded(self.endpoints), methods=["GET"]),
            Route(f"{site}/entity/{{endpoint}}/{{version}}", self.guarded(self.entity), methods=METHODS),
            Route(f"{site}/entity/{{endpoint}}/{{version}}/{{rest:path}}", self.guarded(self.entity), methods=METHODS),
            *admin_routes(self),
        ]

    def state(self) -> dict:
        sessions = self.licence.open_sessions()
        return {
            "requests": dict(self.counts),
            "open_sessions": sessions["cookie"] + sessions["oauth"],
            "sessions": {"legacy": sessions["cookie"], "oauth": sessions["oauth"]},
            **self.licence.counts,
            "records": {name: len(t.rows) for name, t in self.model.tables.items() if not t.entity.inquiry},
        }

    def reset(self) -> None:
        self.model.reset()
        self.api.dialect = Dialect()
        self.licence.reset()
        self.counts.clear()
        self.rate.clear()

    # -- the pipeline's hooks, in Acumatica's words -----------------------------------------------------

    def caller(self, request: Request) -> str | None:
        if request.url.path.rstrip("/") in self.anonymous:
            return self.settings.tenant  # the licence's rate counts the whole site, signed in or not
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            session = self.licence.by_bearer(token.strip())
        else:
            session = self.licence.by_cookie(request.cookies.get(".ASPXAUTH"))
        if session is None:
            return None
        request.state.session = session
        return self.settings.tenant

    def unauthorized(self, request: Request) -> Response:
        bearer = request.headers.get("authorization", "").lower().startswith("bearer")
        headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if bearer else None
        return error_response(401, "You are not logged in.", headers=headers)

    def throttled(self, request: Request) -> Response:
        message = "The number of requests has exceeded the limit imposed by the license."
        return error_response(429, message, headers=retry_after_header(self.settings.retry_after_seconds))

    def failure(self, request: Request, fault: FaultRule) -> Response:
        return error_response(
            fault.status,
            "An error has occurred.",
            "Injected by the sandbox.",
            headers=retry_after_header(fault.retry_after),
        )

    def expire_credentials(self) -> None:
        self.licence.expire_all()

    # -- sign-in -----------------------------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        issuer = f"{request.url.scheme}://{request.url.netloc}{self.site}/identity"
        return json(
            {
                "issuer": issuer,
                "token_endpoint": f"{issuer}/connect/token",
                "authorization_endpoint": f"{issuer}/connect/authorize",
                "grant_types_supported": ["authorization_code", "implicit", "password", "refresh_token"],
                "scopes_supported": ["api", "offline_access", "api:concurrent_access", "openid"],
            }
        )

    async def token(self, request: Request) -> Response:
        self.counts["token"] += 1
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        grant = form.get("grant_type")
        if grant not in ("password", "refresh_token"):
            return _oauth_error("unsupported_grant_type")
        if not self._client_ok(form.get("client_id"), form.get("client_secret")):
            return _oauth_error("invalid_client")
        try:
            if grant == "refresh_token":
                answer = self.licence.renew(form.get("refresh_token", ""))
                return _oauth_error("invalid_grant") if answer is None else _token_answer(answer)
            if (form.get("username"), form.get("password")) != (self.settings.username, self.settings.password):
                return _oauth_error("invalid_grant", "invalid_username_or_password")
            scope = form.get("scope", "api")
            if "api" not in scope.split():
                return _oauth_error("invalid_scope")
            return _token_answer(self.licence.grant(form["username"], self.settings.branches[0], scope))
        except LoginLimit:
            return _oauth_error("invalid_grant", LOGIN_LIMIT)

    def _client_ok(self, client_id: str | None, secret: str | None) -> bool:
        expected_guid, _, expected_tenant = self.settings.client_id.partition("@")
        guid, _, tenant = (client_id or "").partition("@")
        same = guid.lower() == expected_guid.lower() and tenant.lower() == expected_tenant.lower()
        return same and secret == self.settings.client_secret

    async def login(self, request: Request) -> Response:
        self.counts["login"] += 1
        raw = await request.body()
        try:
            if "json" in request.headers.get("content-type", "json"):
                body = orjson.loads(raw or b"{}")
            else:
                body = dict(parse_qsl(raw.decode("utf-8", "replace")))
        except orjson.JSONDecodeError:
            return error_response(400, "The request is invalid.", "The request body is not valid JSON.")
        if not isinstance(body, dict) or not body.get("name"):
            return error_response(400, "The request is invalid.", "The name and password are required.")
        tenant = body.get("tenant") or body.get("company") or self.settings.tenant
        credentials = (body.get("name"), body.get("password"), str(tenant).lower())
        if credentials != (self.settings.username, self.settings.password, self.settings.tenant.lower()):
            return error_response(500, "An error has occurred.", "Invalid credentials. Please try again.")
        branch = self.model.branch(body.get("branch") or self.settings.branches[0])
        if branch is None:
            return error_response(500, "An error has occurred.", f"The '{body.get('branch')}' branch is not found.")
        try:
            session, auth = self.licence.login(body["name"], branch["BranchID"])
        except LoginLimit:
            return error_response(500, "An error has occurred.", LOGIN_LIMIT)
        response = Response(status_code=204)
        for name, value in ((".ASPXAUTH", auth), ("ASP.NET_SessionId", session.id.replace("-", "")[:24])):
            response.set_cookie(name, value, path="/", httponly=True, secure=True, samesite="none")
        response.set_cookie("UserBranch", str(branch["BranchID"]), path="/", secure=True, samesite="none")
        response.set_cookie("Locale", "Culture=en-US&TimeZone=GMTE0000U", path="/", secure=True, samesite="none")
        return response

    async def logout(self, request: Request) -> Response:
        self.counts["logout"] += 1
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        bearer = token.strip() if scheme.lower() == "bearer" else None
        self.licence.logout(request.cookies.get(".ASPXAUTH"), bearer)
        response = Response(status_code=204)
        response.delete_cookie(".ASPXAUTH", path="/")
        return response

    async def endpoints(self, request: Request) -> Response:
        return json(
            {
                "version": {"acumaticaBuildVersion": self.settings.build_version, "databaseVersion": "24.212.0013"},
                "endpoints": [
                    {"name": "Default", "version": v, "href": f"{self.site}/entity/Default/{v}/"}
                    for v in self.settings.versions
                ],
            }
        )

    async def entity(self, request: Request) -> Response:
        rest = request.path_params.get("rest", "").split("/")[0] or "/"
        self.counts[f"{request.method} {rest}"] += 1
        return await self.api.handle(request)

    # -- live mode ---------------------------------------------------------------------------------

    async def live_loop(self) -> None:
        """Keep changing vendors, bills and payments; some saves carry a stamp a little in the past."""
        rng = random.Random(self.settings.seed + 7)
        while True:
            await asyncio.sleep(self.settings.live_interval_seconds)
            try:
                self._live_tick(rng)
            except Exception:  # a bad tick is logged; the simulator keeps serving
                log.exception("Acumatica live mode tick failed")

    def _live_tick(self, rng: random.Random) -> None:
        now = now_stamp()
        late = rng.random() < 0.3
        stamp = now - timedelta(minutes=rng.uniform(0.5, self.settings.live_late_commit_max_minutes)) if late else now
        ctx = Context(stamp, stamp.date(), self.settings.branches[0])
        vendors = [v for v in self.model.rows("Vendor") if v["Status"] == "Active"]
        vendor = rng.choice(vendors)
        self.model.tables["Vendor"].put(
            {**vendor, "Terms": rng.choice(["30D", "15D", "COD"]), "LastModifiedDateTime": stamp}
        )
        amount = money(rng, 10, 5000)
        line = {"TransactionDescription": "Live purchase", "Qty": Decimal(1), "UnitCost": amount, "Account": "62000"}
        bill = {"Vendor": vendor["VendorID"], "Description": "Live bill", "Details": [line]}
        self.model.put("Bill", bill, ctx)
        checks = self.model.rows("Check")
        if checks:
            check = rng.choice(checks)
            status = rng.choice(["Open", "Closed"])
            self.model.tables["Check"].put({**check, "Status": status, "LastModifiedDateTime": stamp})


def _oauth_error(error: str, description: str | None = None) -> Response:
    body = {"error": error} | ({"error_description": description} if description else {})
    return json(body, 400, {"Cache-Control": "no-store", "Pragma": "no-cache"})


def _token_answer(answer: dict) -> Response:
    return json(answer, 200, {"Cache-Control": "no-store", "Pragma": "no-cache"})


def build(settings: AcumaticaSettings, context) -> AcumaticaSimulator:
    return AcumaticaSimulator(settings)
