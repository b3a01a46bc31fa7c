"""Dataverse's HTTP side on the simulator base: `/api/data/<version>/` behind Entra ID, and the admin API.

The pipeline's hooks answer in Dataverse's words: no or a wrong token is 401 with a
`WWW-Authenticate` challenge; a valid token of an app that is no Application User is 403 with
0x80072560; past the service protection limit a 429 with `Retry-After` and 0x80072322.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core.exact_json import dumps
from ..core.faults import FaultBook, FaultRule, retry_after_header
from ..core.service import RateWindow, SimulatedService
from ..entra.simulator import EntraSimulator
from . import DataverseSettings
from .admin import DIALECT, admin_routes
from .api import Call, DataverseApi
from .errors import DataverseError
from .models import DataverseModel
from .render import parse_prefer
from .reps import ACTIONS
from .tables import TABLES
from .webhooks import WebhookSender
from .wire import json_response

log = logging.getLogger("mlconnector.sandbox")
METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]
NOT_APPLICATION_USER = {"error": {"code": "0x80072560", "message": "The user is not a member of the organization."}}


@dataclass
class DataverseSimulator(SimulatedService):
    settings: DataverseSettings
    entra: EntraSimulator
    tenant_id: str
    ca_bundle: Path | None = None
    faults: FaultBook = field(default_factory=FaultBook)
    counts: collections.Counter = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        ids = random.Random(self.settings.seed + 3)
        organization_id, business_unit_id = (str(uuid.UUID(int=ids.getrandbits(128), version=4)) for _ in range(2))
        self.model = DataverseModel(self.settings)
        self.api = DataverseApi(self.model, self.settings, organization_id, business_unit_id)
        org = {
            "organization_id": organization_id,
            "organization_name": self.settings.organization_name,
            "business_unit_id": business_unit_id,
            "user_id": self.model.reference.app_user,
        }
        self.webhooks = WebhookSender(self.model, self.settings, org, self.ca_bundle)
        self.rate = RateWindow(self.settings.rate_limit_requests, self.settings.rate_limit_window_seconds)
        self.application_users = set(self.settings.application_user_client_ids)
        self.configured_dialect = self.settings.model_dump(include=set(DIALECT))

    def routes(self) -> list[Route]:
        return [
            Route("/api/data/{version}", self.guarded(self.handle), methods=METHODS),
            Route("/api/data/{version}/{rest:path}", self.guarded(self.handle), methods=METHODS),
            *admin_routes(self),
        ]

    def state(self) -> dict:
        return {
            "requests": dict(self.counts),
            "records": {name: len(rows) for name, rows in self.model.tables.items()},
            "version": self.model.version,
            "deliveries": self.webhooks.state(),
        }

    def reset(self) -> None:
        for name, value in self.configured_dialect.items():
            setattr(self.settings, name, value)
        self.webhooks.reset()
        self.model.reset()
        self.counts.clear()
        self.rate.clear()

    # -- the pipeline's hooks, in Dataverse's words ------------------------------------------------------------

    def caller(self, request: Request) -> str | None:
        issued = self.entra.validate(request.headers.get("authorization"), self.settings.org_url)
        if issued is None or issued.tenant_id != self.tenant_id:
            return None
        if issued.client_id not in self.application_users:
            request.state.not_application_user = True
            return None
        return issued.client_id

    def unauthorized(self, request: Request) -> Response:
        if getattr(request.state, "not_application_user", False):
            return json_response(NOT_APPLICATION_USER, 403)
        challenge = (
            f"Bearer authorization_uri=https://login.microsoftonline.com/{self.tenant_id}/oauth2/authorize, "
            f"resource_id={self.settings.org_url}/"
        )
        return Response(status_code=401, headers={"WWW-Authenticate": challenge})

    def throttled(self, request: Request) -> Response:
        return self._throttled(self.settings.retry_after_seconds, None)

    def _throttled(self, retry_after: float | None, code: int | None) -> Response:
        message = (
            f"Number of requests exceeded the limit of {self.rate.limit} over time window of "
            f"{self.rate.window_seconds:g} seconds."
        )
        error = DataverseError(429, _hex(code) if code is not None else "0x80072322", message)
        return json_response(error.body(), 429, retry_after_header(retry_after))

    def failure(self, request: Request, fault: FaultRule) -> Response:
        if fault.status == 429:
            return self._throttled(fault.retry_after, fault.error_code)
        code = _hex(fault.error_code) if fault.error_code is not None else "0x80040216"
        body = {"error": {"code": code, "message": "An unexpected error occurred (injected by the sandbox)."}}
        return json_response(body, fault.status, retry_after_header(fault.retry_after))

    def expire_credentials(self) -> None:
        self.entra.expire_all()

    # -- the Web API -----------------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        version, rest = request.path_params["version"], request.path_params.get("rest", "")
        fault = request.state.fault
        if fault is not None and fault.kind == "mutate":
            for mutation in fault.mutations:
                self.model.upsert_raw(mutation.entity, {TABLES[mutation.entity].key: mutation.key, **mutation.set})
        call = Call(
            method=request.method,
            version=version,
            path=rest,
            params=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            prefer=parse_prefer(request.headers.getlist("prefer")),
            body=await request.body(),
            base=f"{request.url.scheme}://{request.url.netloc}/api/data/{version}",
            url=str(request.url),
        )
        self.counts[f"{request.method} {rest.split('(')[0].split('/')[0] or '/'}"] += 1
        response = self.api.execute(call)
        if request.method != "GET" and response.status_code < 300:
            self.counts["writes"] += 1
        if fault is not None and fault.kind == "corrupt" and response.status_code == 200:
            response = _corrupted(response, fault)
        return response

    async def live_loop(self) -> None:
        """Reps at work: every few seconds one wins an opportunity, converts a quote or edits an account."""
        rng = random.Random(self.settings.seed + 17)
        first = True
        while True:
            await asyncio.sleep(self.settings.live_interval_seconds)
            name = "edit-account" if first else rng.choice(sorted(ACTIONS))
            first = False
            try:
                ACTIONS[name](self.model, rng)
            except DataverseError as exc:
                log.info("dataverse live mode: %s skipped (%s)", name, exc.message)


def _hex(code: int) -> str:
    return f"0x{code & 0xFFFFFFFF:08x}"


def _corrupted(response: Response, fault: FaultRule) -> Response:
    """The page's first record with `fault.field` set to `fault.value`, as a faulty plug-in would leave it."""
    try:
        body = json.loads(bytes(response.body), parse_float=Decimal)
    except ValueError:
        return response
    if isinstance(body, dict) and body.get("value"):
        body["value"][0][fault.field] = fault.value
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return Response(dumps(body), status_code=response.status_code, headers=headers)
    return response


def build(settings: DataverseSettings, context) -> DataverseSimulator:
    entra = context.services["entra"]
    entra.register_resource(settings.org_url)
    tenant_id = next(iter(entra.apps.values())).tenant_id
    ca_bundle = context.data_dir / "sandbox" / "ca.pem"
    return DataverseSimulator(settings, entra=entra, tenant_id=tenant_id, ca_bundle=ca_bundle)
