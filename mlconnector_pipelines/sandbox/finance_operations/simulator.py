"""F&O's HTTP side on the simulator base: /data/ behind Entra ID tokens, and the admin API.

The pipeline's hooks answer in F&O's words: a bad token and an app missing from the 'Microsoft
Entra applications' page are both 401, with different bodies (fo-facts §10); past the rate
window a 429 with Retry-After and the documented text (fo-facts §9).
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field, replace
from decimal import Decimal

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..core.exact_json import dumps, json_response
from ..core.faults import FaultBook, FaultRule, retry_after_header
from ..core.service import RateWindow, SimulatedService
from ..entra.simulator import EntraSimulator
from . import Dialect, FinanceOperationsSettings
from .batch import BatchRunner
from .entities import ENUMS
from .models import FinanceOperationsModel, NotFound, WriteFailed
from .odata import ODataRequest, ODataResponse, ODataService, error_response

ADMIN = "/_sandbox/finance_operations"
NOT_REGISTERED = {
    "Message": "Authentication failed.",
    "StackTrace": None,
    "ExceptionType": "System.InvalidOperationException",
}
_FAILURE_TEXT = {
    429: "This request could not be processed at this time due to system experiencing high resource utilization.",
    503: "The service is unavailable.",
}


@dataclass
class FinanceOperationsSimulator(SimulatedService):
    settings: FinanceOperationsSettings
    entra: EntraSimulator
    tenant_id: str
    faults: FaultBook = field(default_factory=FaultBook)
    counts: collections.Counter = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        self.model = FinanceOperationsModel(self.settings)
        self.service = ODataService(self.model, self.settings)
        self.batches = BatchRunner(self.service, self.model, self.counts)
        self.rate = RateWindow(self.settings.rate_limit_requests, self.settings.rate_limit_window_seconds)
        self.registered = set(self.settings.registered_client_ids)

    def routes(self) -> list[Route]:
        methods = ["GET", "POST", "PATCH", "PUT", "MERGE", "DELETE"]
        return [
            Route("/data/$batch", self.guarded(self.batch), methods=["POST"]),
            Route("/data", self.guarded(self.handle), methods=methods),
            Route("/data/{rest:path}", self.guarded(self.handle), methods=methods),
            Route(f"{ADMIN}/journals", self._admin_journals),
            Route(f"{ADMIN}/journals/{{company}}/{{batch}}/post", self._admin_post, methods=["POST"]),
            Route(f"{ADMIN}/periods", self._admin_period, methods=["POST"]),
            Route(f"{ADMIN}/dialect", self._admin_dialect, methods=["GET", "POST"]),
        ]

    def state(self) -> dict:
        return {
            "requests": dict(self.counts),
            "journals": len(self.model.headers.rows),
            "lines": len(self.model.lines.rows),
        }

    def reset(self) -> None:
        self.model.reset()
        self.counts.clear()
        self.rate.clear()
        self.service.dialect = Dialect()

    # -- the pipeline's hooks, in F&O's words -----------------------------------------------------------

    def caller(self, request: Request) -> str | None:
        issued = self.entra.validate(request.headers.get("authorization"), self.settings.environment_url)
        if issued is None or issued.tenant_id != self.tenant_id:
            return None
        if issued.client_id not in self.registered:
            request.state.unregistered = True
            return None
        return issued.client_id

    def unauthorized(self, request: Request) -> Response:
        if getattr(request.state, "unregistered", False):
            return Response(orjson.dumps(NOT_REGISTERED), status_code=401, media_type="application/json")
        return Response(
            orjson.dumps({"Message": "Authorization has been denied for this request."}),
            status_code=401,
            media_type="application/json",
            headers={
                "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/'
                f'{self.tenant_id}/oauth2/authorize", error="invalid_token"'
            },
        )

    def throttled(self, request: Request) -> Response:
        message = (
            f"Number of requests exeeded the limit of {self.rate.limit} over the time window of "
            f"{self.rate.window_seconds:g} seconds."
        )
        return self._answer(
            error_response(429, message, message=message),
            {"Retry-After": str(self.settings.retry_after_seconds)},
        )

    def failure(self, request: Request, fault: FaultRule) -> Response:
        text = _FAILURE_TEXT.get(fault.status, "Injected by the sandbox.")
        return self._answer(error_response(fault.status, text, message=text), retry_after_header(fault.retry_after))

    def expire_credentials(self) -> None:
        self.entra.expire_all()

    # -- the API ---------------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        odata = await self._odata_request(request, request.path_params.get("rest", ""))
        self.counts[f"{odata.method} {odata.path.partition('(')[0].partition('/')[0] or '/'}"] += 1
        answer = self.service.execute(odata)
        fault = request.state.fault
        if fault is not None and fault.kind == "corrupt" and answer.status == 200:
            answer = corrupted(answer, fault)
        return self._answer(answer)

    async def batch(self, request: Request) -> Response:
        self.counts["$batch"] += 1
        return self._answer(self.batches.run(await self._odata_request(request, "$batch"), request.state.fault))

    async def _odata_request(self, request: Request, path: str) -> ODataRequest:
        root = f"{request.url.scheme}://{request.url.netloc}/data"
        headers = {k.lower(): v for k, v in request.headers.items()}
        return ODataRequest(request.method, path, dict(request.query_params), headers, await request.body(), root)

    @staticmethod
    def _answer(answer: ODataResponse, extra: dict | None = None) -> Response:
        return Response(
            answer.body,
            status_code=answer.status,
            headers={**answer.headers, **(extra or {})},
            media_type=answer.media_type,
        )

    # -- admin: what a person does in the F&O client, and what tests inspect ----------------------------

    async def _admin_journals(self, request: Request) -> Response:
        return json_response(self.model.dump_journals())

    async def _admin_post(self, request: Request) -> Response:
        """A person posts the journal in the F&O client: Microsoft documents no API for it (fo-facts §6)."""
        company, batch = request.path_params["company"], request.path_params["batch"]
        try:
            header = self.model.post(company, batch)
        except NotFound:
            return json_response({"error": f"no journal {batch} in company {company}"}, status_code=404)
        except WriteFailed as exc:
            return json_response({"IsPosted": "No", "infolog": exc.infolog, "messages": exc.messages}, 400)
        self.counts["posted"] += 1
        return json_response(header)

    async def _admin_dialect(self, request: Request) -> Response:
        """Switch readings of the protocol F&O does not take (see `Dialect`); a reset restores F&O's."""
        if request.method == "POST":
            try:
                self.service.dialect = Dialect.model_validate(
                    {**self.service.dialect.model_dump(), **await request.json()}
                )
            except ValueError as exc:
                return json_response({"error": str(exc)}, status_code=400)
        return json_response(self.service.dialect.model_dump())

    async def _admin_period(self, request: Request) -> Response:
        body = await request.json()
        status = body.get("status")
        if status not in ENUMS["FiscalPeriodStatus"]:
            return json_response({"error": f"status must be one of {list(ENUMS['FiscalPeriodStatus'])}"}, 400)
        access = body.get("ledger_access")
        if access is not None and access not in ENUMS["FiscalPeriodAccessLevel"]:
            return json_response(
                {"error": f"ledger_access must be one of {list(ENUMS['FiscalPeriodAccessLevel'])}"}, 400
            )
        try:
            row = self.model.set_period_status(body["legal_entity"], body["year"], body["period"], status, access)
        except (NotFound, KeyError) as exc:
            return json_response({"error": f"no such period: {exc}"}, status_code=404)
        return json_response(row)


def corrupted(answer: ODataResponse, fault: FaultRule) -> ODataResponse:
    """The page's first record with `fault.field` set to `fault.value`, as a faulty extension would write it."""
    try:
        body = json.loads(answer.body, parse_float=Decimal)
    except ValueError:
        return answer
    if isinstance(body, dict) and body.get("value"):
        body["value"][0][fault.field] = fault.value
        return replace(answer, body=dumps(body))
    return answer


def build(settings: FinanceOperationsSettings, context) -> FinanceOperationsSimulator:
    entra = context.services["entra"]
    entra.register_resource(settings.environment_url)
    tenant_id = next(iter(entra.apps.values())).tenant_id
    return FinanceOperationsSimulator(settings, entra=entra, tenant_id=tenant_id)
