"""Microsoft Entra ID client-credentials tokens (msal), shared by BC, F&O and Dataverse.

msal talks through an httpx adapter rather than its default requests session: requests lets
the machine's REQUESTS_CA_BUNDLE silently override `verify=`, and the sandbox (or a customer's
proxy) needs an explicit CA bundle to be honoured.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import msal
from pydantic import Field

from ..core.errors import AuthenticationError, RequestFailedError
from ..core.http import RETRYABLE_STATUSES, HttpPolicy, sign_in
from ..core.redact import redact
from ..core.settings import SecretRef, Strict
from ..core.tls import ssl_context, tls_fix

# What Entra's error codes mean for the person setting this up (a system may say its own, see `for_section`).
_FIXES = {
    "AADSTS7000215": "the client secret is wrong or expired: create a new secret in the app registration",
    "AADSTS7000222": "the client secret has expired: create a new one in the app registration",
    "AADSTS700016": "no app with this client id in the tenant: check client_id and tenant_id",
    "AADSTS90002": "the tenant does not exist: check tenant_id (the Directory ID in Entra)",
    "AADSTS500011": "the app has no permission for this API: add the application permission and grant admin consent",
    "AADSTS1002012": "the scope is malformed: it must be the resource URL followed by /.default",
}


class EntraAppConfig(Strict):
    """An Entra app registration (client credentials), as the `auth:` of every Microsoft system."""

    authority_host: str = Field("https://login.microsoftonline.com", description="Entra ID login host.")
    tenant_id: str = Field(description="Directory (tenant) ID of the customer's Entra tenant.")
    client_id: str = Field(description="Application (client) ID of the app registration.")
    client_secret: SecretRef
    ca_bundle: Path | None = Field(None, description="Extra CA bundle to trust for the login host.")


class _HttpxForMsal:
    """msal's minimal HTTP interface (get/post returning response-like objects) over httpx.

    A throttled or unavailable answer (429, 502–504) or a network fault is sent again here, after Retry-After or
    back-off with jitter: msal itself does not retry (it only replays a throttled answer without asking again
    until its Retry-After has passed), so one blip at Entra, as a token was renewed, ended a run."""

    def __init__(self, client: httpx.Client, policy: HttpPolicy, system: str):
        self._client, self.policy, self._system = client, policy, system
        self.last_status: int | None = None  # of the last answer msal was handed
        self.last_attempts = 0  # the requests that answer took

    def post(self, url, params=None, data=None, headers=None, **kwargs):
        kwargs.pop("timeout", None)
        if isinstance(data, (str, bytes)):
            return self._answer(lambda: self._client.post(url, params=params, content=data, headers=headers))
        return self._answer(lambda: self._client.post(url, params=params, data=data, headers=headers))

    def get(self, url, params=None, headers=None, **kwargs):
        kwargs.pop("timeout", None)
        return self._answer(lambda: self._client.get(url, params=params, headers=headers))

    def _answer(self, send):
        attempts = 0

        def counted():
            nonlocal attempts
            attempts += 1
            return send()

        response = sign_in(counted, self.policy, system=self._system)  # a token request may be repeated
        self.last_status, self.last_attempts = response.status_code, attempts
        return response

    def close(self) -> None:
        self._client.close()


class EntraTokenProvider:
    """One app registration's token for one scope, cached by msal and renewed before expiry.

    Implements the `Authenticator` protocol of core.http.
    """

    def __init__(
        self,
        app: EntraAppConfig,
        *,
        system: str,
        client_secret: str,
        scope: str,
        what: str,
        policy: HttpPolicy,
        fixes: Mapping[str, str] | None = None,
    ):
        """`what` names the config section (e.g. business_central.auth) in trust errors; `policy` is the system's
        (its timeout, attempts and back-off serve its token requests too); `fixes` are the system's own advice for
        Entra error codes, in place of the general one."""
        self.system = system
        self._fixes = {**_FIXES, **(fixes or {})}
        self.scope = scope
        self._secret = client_secret
        self._lock = threading.Lock()
        verify = ssl_context(str(app.ca_bundle) if app.ca_bundle else None, what=what)
        self._http = _HttpxForMsal(httpx.Client(verify=verify, timeout=policy.timeout_seconds), policy, system)
        self.tokens_acquired = 0
        self._client_id = app.client_id
        self._authority_host = app.authority_host.rstrip("/")
        self._tenant_id = app.tenant_id
        self._app: msal.ConfidentialClientApplication | None = None

    @classmethod
    def for_section(
        cls, section, *, system: str, client_secret: str, name: str, fixes: Mapping[str, str] | None = None
    ) -> EntraTokenProvider:
        """The token of a Microsoft system's config section `name` (its `auth`, `scope` and `http` policy)."""
        return cls(
            section.auth,
            system=system,
            client_secret=client_secret,
            scope=section.scope,
            what=f"{name}.auth",
            policy=section.http,
            fixes=fixes,
        )

    def _application(self) -> msal.ConfidentialClientApplication:
        # Built on first use: msal fetches the authority's OpenID configuration when constructed.
        if self._app is None:
            self._app = msal.ConfidentialClientApplication(
                self._client_id,
                client_credential=self._secret,
                authority=f"{self._authority_host}/{self._tenant_id}",
                http_client=self._http,
                # Real Entra passes these checks anyway; a sandbox or sovereign host must skip them.
                validate_authority=self._authority_host == "https://login.microsoftonline.com",
                instance_discovery=False,
            )
        return self._app

    def access_token(self) -> str:
        with self._lock:
            try:
                result = self._application().acquire_token_for_client(scopes=[self.scope])
            except (msal.exceptions.MsalServiceError, httpx.HTTPStatusError):  # msal's raise_for_status on a 5xx
                raise self._unavailable() from None
            except (httpx.HTTPError, ValueError) as exc:
                if isinstance(exc, ValueError) and _tenant_refused(exc):
                    # msal's discovery of the tenant's OpenID configuration was refused: no such tenant.
                    self._app = None
                    raise AuthenticationError(
                        self.system,
                        f"AADSTS90002: Entra ID at {self._authority_host} has no tenant {self._tenant_id!r} (it "
                        "refused the tenant's OpenID configuration)",
                        code="AADSTS90002",
                        fix=self._fixes["AADSTS90002"],
                    ) from None
                fix = tls_fix(
                    exc,
                    unknown_issuer="the login host's TLS certificate is not trusted: set `auth.ca_bundle` to the CA "
                    "that signed it (verification stays on)",
                )
                raise AuthenticationError(
                    self.system,
                    redact(f"could not reach the Entra ID token endpoint: {type(exc).__name__}: {exc}", [self._secret]),
                    fix=fix,
                ) from None
        if "access_token" not in result:
            if self._http.last_status in RETRYABLE_STATUSES:  # throttled or unavailable to the last attempt
                raise self._unavailable(str(result.get("error_description") or result.get("error") or ""))
            message, fix = self._explain(result)
            raise AuthenticationError(self.system, message, code=result.get("error"), fix=fix)
        if result.get("token_source") == "identity_provider":
            self.tokens_acquired += 1
        return result["access_token"]

    def auth_headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self.access_token()}"}

    def invalidate(self, rejected: Mapping[str, str]) -> bool:
        """Forget the refused token so the next call asks Entra again; False if it is already gone."""
        token = (rejected.get("Authorization") or "").removeprefix("Bearer ")
        with self._lock:
            if self._app is None:
                return False
            cache = self._app.token_cache
            refused = [
                item
                for item in cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)
                if item.get("secret") == token
            ]
            for item in refused:
                cache.remove_at(item)
            return bool(refused)

    def close(self) -> None:
        self._http.close()

    def _unavailable(self, said: str = "") -> RequestFailedError:
        """Entra still throttled or unavailable after every attempt: not a credentials problem."""
        said = said.split(" Trace ID:")[0].strip()
        attempts = self._http.last_attempts
        tried = f"to all {attempts} attempts" if attempts > 1 else "(not a status asked again)" if attempts else ""
        return RequestFailedError(
            self.system,
            f"Entra ID's token endpoint ({self._authority_host}) answered HTTP {self._http.last_status} {tried}"
            f"{f': {said}' if said else ''}: it is throttled or unavailable; nothing is wrong with the "
            "credentials. Run it again later",
            status=self._http.last_status,
        )

    def _explain(self, result: Mapping[str, Any]) -> tuple[str, str | None]:
        """(message, likely fix) for Entra's error answer."""
        description = str(result.get("error_description") or result.get("error") or "unknown error")
        first_line = description.split(" Trace ID:")[0]
        codes = [f"AADSTS{c}" for c in result.get("error_codes") or []]
        fix = next((self._fixes[c] for c in codes if c in self._fixes), None)
        message = f"Entra ID refused the token request for scope {self.scope}: {first_line}"
        return redact(message, [self._secret]), fix


def _tenant_refused(exc: ValueError) -> bool:
    """Whether msal failed because Entra refused the tenant's OpenID configuration (400/404, AADSTS90002), not
    because something else answered the discovery (a proxy's sign-in page or its 403), which is no tenant's fault."""
    cause = str(exc.__context__ or "")
    return "authority configuration" in str(exc) and any(
        sign in cause for sign in ("AADSTS90002", "HTTP status: 400", "HTTP status: 404")
    )
