"""Microsoft Entra ID, client-credentials flow only (api-notes §1)."""

from __future__ import annotations

import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..core.faults import FaultBook, FaultRule, retry_after_header
from ..core.service import SimulatedService


@dataclass
class AppRegistration:
    tenant_id: str
    client_id: str
    client_secret: str
    resources: set[str]  # resources the app holds application permissions for


@dataclass
class IssuedToken:
    tenant_id: str
    client_id: str
    resource: str
    expires_at: float


@dataclass
class EntraSimulator(SimulatedService):
    apps: dict[str, AppRegistration]
    token_lifetime_seconds: int = 3599
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    tokens_issued: int = 0
    faults: FaultBook = field(default_factory=FaultBook)
    counts: Counter = field(default_factory=Counter)

    def register_resource(self, resource: str) -> None:
        """A simulated service that takes Entra tokens: every demo app holds permissions for it."""
        for app in self.apps.values():
            app.resources.add(resource)

    def state(self) -> dict:
        return {
            "requests": dict(self.counts),
            "tokens_issued": self.tokens_issued,
            "tokens_valid": sum(1 for t in self.tokens.values() if t.expires_at > time.time()),
        }

    def reset(self) -> None:
        self.tokens.clear()
        self.counts.clear()
        self.tokens_issued = 0

    def routes(self) -> list[Route]:
        return [
            Route("/{tenant}/v2.0/.well-known/openid-configuration", self.openid_configuration),
            Route("/{tenant}/oauth2/v2.0/token", self.guarded(self.token), methods=["POST"]),
            Route("/_sandbox/entra/tokens/expire", self._expire, methods=["POST"]),
        ]

    async def _expire(self, request: Request) -> JSONResponse:
        return JSONResponse({"expired": self.expire_all()})

    # -- the pipeline's hooks: the token endpoint authenticates in its body, and never throttles here ----

    def caller(self, request: Request) -> str | None:
        return "token endpoint"

    def failure(self, request: Request, fault: FaultRule) -> Response:
        return _error(
            fault.status, "temporarily_unavailable", "AADSTS50196", "Injected by the sandbox.", fault.retry_after
        )

    def expire_credentials(self) -> None:
        self.expire_all()

    # -- token checks used by the resource servers ------------------------------------------

    def validate(self, authorization: str | None, resource: str) -> IssuedToken | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        issued = self.tokens.get(authorization[len("Bearer ") :])
        if issued is None or issued.resource != resource or issued.expires_at <= time.time():
            return None
        return issued

    def expire_all(self) -> int:
        now = time.time()
        for issued in self.tokens.values():
            issued.expires_at = min(issued.expires_at, now)
        return len(self.tokens)

    # -- endpoints ------------------------------------------------------------------------

    async def openid_configuration(self, request: Request) -> JSONResponse:
        tenant = request.path_params["tenant"]
        if tenant not in {a.tenant_id for a in self.apps.values()}:  # as Entra answers msal's discovery
            return _error(
                400,
                "invalid_tenant",
                "AADSTS90002",
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
            )
        base = f"{request.url.scheme}://{request.url.netloc}/{tenant}"
        return JSONResponse(
            {
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "issuer": f"{base}/v2.0",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "private_key_jwt",
                    "client_secret_basic",
                ],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "tenant_region_scope": "EU",
            }
        )

    async def token(self, request: Request) -> JSONResponse:
        tenant = request.path_params["tenant"]
        # Token requests are application/x-www-form-urlencoded; the stdlib parses that.
        form = dict(parse_qsl((await request.body()).decode()))
        client_id = str(form.get("client_id") or "")
        if form.get("grant_type") != "client_credentials":
            return _error(400, "unsupported_grant_type", "AADSTS70003", "The app requested an unsupported grant type.")
        if tenant not in {a.tenant_id for a in self.apps.values()}:
            return _error(
                400,
                "invalid_request",
                "AADSTS90002",
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
            )
        app = self.apps.get(client_id)
        if app is None or app.tenant_id != tenant:
            return _error(
                400,
                "unauthorized_client",
                "AADSTS700016",
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
            )
        if not secrets.compare_digest(str(form.get("client_secret") or ""), app.client_secret):
            return _error(
                401,
                "invalid_client",
                "AADSTS7000215",
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            )
        scope = str(form.get("scope") or "")
        scopes = scope.split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            return _error(
                400,
                "invalid_scope",
                "AADSTS1002012",
                f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
            )
        resource = scopes[0][: -len("/.default")]
        if resource not in app.resources:
            host = urlsplit(resource).netloc or resource
            return _error(
                400,
                "invalid_scope",
                "AADSTS500011",
                f"The resource principal named {host} was not found in the tenant named {tenant}. The app needs API permissions for it and admin consent.",
            )
        token = "sbx." + secrets.token_urlsafe(32)
        self.tokens[token] = IssuedToken(tenant, client_id, resource, time.time() + self.token_lifetime_seconds)
        self.tokens_issued += 1
        return JSONResponse(
            {
                "token_type": "Bearer",
                "expires_in": self.token_lifetime_seconds,
                "ext_expires_in": self.token_lifetime_seconds,
                "access_token": token,
            }
        )


def _error(status: int, error: str, code: str, description: str, retry_after: float | None = None) -> JSONResponse:
    number = int(code.removeprefix("AADSTS"))
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    return JSONResponse(
        status_code=status,
        headers=retry_after_header(retry_after),
        content={
            "error": error,
            "error_description": f"{code}: {description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime())}",
            "error_codes": [number],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": trace,
            "correlation_id": correlation,
        },
    )


def build(settings, context) -> EntraSimulator:
    app = AppRegistration(settings.tenant_id, settings.client_id, settings.client_secret, set(settings.extra_resources))
    return EntraSimulator(apps={settings.client_id: app}, token_lifetime_seconds=settings.token_lifetime_seconds)
