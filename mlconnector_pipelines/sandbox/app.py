"""Assembles the simulators (Entra ID, Business Central, Looker) into one ASGI app and exposes the test/admin API under /_sandbox."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from importlib import resources

from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .bc_data import LINE_ENTITY, Volumes, dimension_set_lines, generate_company, share_ids
from .exact_json import json_response
from .business_central import BusinessCentralSimulator, Company
from .entra import AppRegistration, EntraSimulator
from .faults import FaultBook, FaultRule
from .live import live_lifespan
from .looker import LookerSettings, LookerSimulator

log = logging.getLogger("mlconnector.sandbox")

# The demo identity; the product's sandbox profile carries the same values (not secrets).
TENANT_ID = "8f3c6a2e-0d4b-4c1e-9a57-2b9e5d7c1a00"
CLIENT_ID = "5d2a9c1e-7b3f-4e8a-b6d0-91c4f2e8a7b3"
CLIENT_SECRET = "sandbox-client-secret"
ENVIRONMENT = "production"


class SandboxSettings(BaseModel):
    seed: int = 42
    client_secret: str = Field(CLIENT_SECRET, description="The demo app registration's secret.")
    companies: int = Field(2, ge=1, le=10)
    history_start: datetime | None = Field(None, description="Default: 28 days before history_end.")
    history_end: datetime | None = Field(None, description="Default: today 00:00 UTC.")
    volumes: Volumes = Field(default_factory=Volumes)
    token_lifetime_seconds: int = 3599
    rate_limit_requests: int = 6000
    rate_limit_window_seconds: float = 300.0
    retry_after_on_429: float | None = None
    live: bool = False
    live_interval_seconds: float = 5.0
    live_late_commit_max_minutes: float = 20.0
    looker: LookerSettings = Field(default_factory=LookerSettings)

    model_config = {"arbitrary_types_allowed": True}

    def history(self) -> tuple[datetime, datetime]:
        end = self.history_end or datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        start = self.history_start or end - timedelta(days=28)
        return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def bc_field_types() -> dict[str, dict[str, str]]:
    spec = json.loads(resources.files(__package__).joinpath("specs/business-central-api-v2.0.entities.json").read_text())
    return {e["entitySet"]: {f["name"]: f["type"] for f in e["fields"]} for e in spec["entities"]}


@dataclass
class Sandbox:
    settings: SandboxSettings
    entra: EntraSimulator = field(init=False)
    bc: BusinessCentralSimulator = field(init=False)
    looker: LookerSimulator = field(init=False)
    faults: FaultBook = field(default_factory=FaultBook)

    def __post_init__(self) -> None:
        s = self.settings
        self.entra = EntraSimulator(
            apps={CLIENT_ID: AppRegistration(TENANT_ID, CLIENT_ID, s.client_secret,
                                             {"https://api.businesscentral.dynamics.com"})},
            token_lifetime_seconds=s.token_lifetime_seconds,
        )
        start, end = s.history()
        generated = [generate_company(index, seed=s.seed, start=start, end=end, volumes=s.volumes)
                     for index in range(s.companies)]
        if len(generated) > 1:
            share_ids(generated[0], generated[1])  # the second company began as a copy of the first
        companies = {data.id: Company.from_data(data) for data in generated}
        self.bc = BusinessCentralSimulator(
            entra=self.entra, faults=self.faults, tenant_id=TENANT_ID, environment=ENVIRONMENT,
            companies=companies, field_types=bc_field_types(),
            rate_limit_requests=s.rate_limit_requests, rate_limit_window_seconds=s.rate_limit_window_seconds,
            retry_after_on_429=s.retry_after_on_429,
        )
        self.looker = LookerSimulator(s.looker, faults=self.faults)

    def asgi_app(self) -> Starlette:
        admin = [
            Route("/_sandbox/health", self._health),
            Route("/_sandbox/faults", self._faults, methods=["POST", "DELETE"]),
            Route("/_sandbox/tokens/expire", self._expire_tokens, methods=["POST"]),
            Route("/_sandbox/stats", self._stats),
            Route("/_sandbox/bc/companies", self._bc_companies),
            Route("/_sandbox/bc/companies/{company}/{entity_set}", self._bc_records, methods=["GET", "POST"]),
        ]
        return Starlette(routes=admin + self.entra.routes() + self.bc.routes() + self.looker.routes(),
                         lifespan=live_lifespan(self.settings.live, self._live_loop))

    # -- admin endpoints ----------------------------------------------------------------------

    async def _health(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "tenant_id": TENANT_ID, "environment": ENVIRONMENT,
                             "companies": [c.data.name for c in self.bc.companies.values()]})

    async def _faults(self, request: Request) -> JSONResponse:
        if request.method == "DELETE":
            self.faults.clear()
            return JSONResponse({"rules": 0})
        body = await request.json()
        self.faults.add([FaultRule.model_validate(r) for r in body.get("rules", [])])
        return JSONResponse({"rules": len(self.faults.rules)})

    async def _expire_tokens(self, request: Request) -> JSONResponse:
        return JSONResponse({"expired": self.entra.expire_all()})

    async def _stats(self, request: Request) -> JSONResponse:
        return JSONResponse({"bc_requests": dict(self.bc.requests), "tokens_issued": self.entra.tokens_issued,
                             "faults_fired": dict(self.faults.fired)})

    async def _bc_companies(self, request: Request) -> JSONResponse:
        return JSONResponse([{"id": c.data.id, "name": c.data.name} for c in self.bc.companies.values()])

    async def _bc_records(self, request: Request) -> JSONResponse:
        company = self.bc.companies.get(request.path_params["company"])
        entity_set = request.path_params["entity_set"]
        if company is None or entity_set not in company.tables:
            return JSONResponse({"error": "unknown company or entity set"}, status_code=404)
        if request.method == "POST":
            body = await request.json()
            record = self.bc.upsert(company.data.id, entity_set, body["record"], body.get("lines"),
                                    body.get("lastModifiedDateTime"))
            return json_response(record)
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

    async def _live_loop(self) -> None:
        """Create and modify records over time, some committed late with a past timestamp."""
        from .bc_data import iso_ms
        rng = random.Random(self.settings.seed + 7)
        while True:
            await asyncio.sleep(self.settings.live_interval_seconds)
            try:
                company = rng.choice(list(self.bc.companies.values()))
                now = datetime.now(timezone.utc)
                for _ in range(rng.randint(1, 3)):
                    entity_set = rng.choice(["customers", "vendors", "items", "salesInvoices", "salesOrders"])
                    records = company.tables[entity_set].records
                    if records:
                        victim = rng.choice(records)
                        change = {"id": victim["id"]}
                        if "displayName" in victim:
                            change["displayName"] = victim["displayName"].split(" (rev")[0] + f" (rev {rng.randint(2, 99)})"
                        if "status" in victim:
                            change["status"] = rng.choice(["Open", "Paid", "Released"])
                        self.bc.upsert(company.data.id, entity_set, change)
                late = rng.random() < 0.3
                stamp = now - timedelta(minutes=rng.uniform(0.5, self.settings.live_late_commit_max_minutes)) if late else now
                template = rng.choice(company.tables["generalLedgerEntries"].records)
                for offset, (debit, credit) in enumerate(((125.0, 0.0), (0.0, 125.0))):
                    self.bc.upsert(company.data.id, "generalLedgerEntries", {
                        **{k: template[k] for k in ("accountId", "accountNumber", "documentType")},
                        "id": "", "entryNumber": 10_000_000 + rng.randint(0, 9_999_999) + offset,
                        "postingDate": stamp.date().isoformat(), "documentNumber": f"LIVE{rng.randint(0, 99999):05d}",
                        "description": "Live posting" + (" (committed late)" if late else ""),
                        "debitAmount": debit, "creditAmount": credit, "additionalCurrencyDebitAmount": 0.0,
                        "additionalCurrencyCreditAmount": 0.0,
                    }, modified_at=iso_ms(stamp))
            except Exception:  # keep the simulator alive; a bad tick is logged, not fatal
                log.exception("live mode tick failed")
