"""Signing in to Acumatica: OAuth 2.0 (password grant, refresh on expiry) or the legacy cookie login.

Both implement core.http's Authenticator. Every signed-in client holds one of the licence's API
user seats until it signs out (or, for a cookie session, until ten idle minutes pass), so `close()`
always signs out — the resource calls it in a `finally`, so a failed run frees its seat too.
A refresh token is used once: its answer carries the next one (a lost answer means a new grant).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import httpx
import orjson

from ...core.errors import AuthenticationError
from ...core.http import HttpPolicy, sign_in
from ...core.redact import redact
from .config import AcumaticaAuth

SYSTEM = "Acumatica"
LOGIN_LIMIT_FIX = (
    "every signed-in API client holds one of the licence's API user seats: sign out other integrations (a "
    "cookie session left open closes after 10 idle minutes), or raise the licence's Maximum Number of Web "
    "Services API Users"
)


def _error_text(response: httpx.Response) -> str:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        parts = [body.get(k) for k in ("error", "error_description", "exceptionMessage", "message")]
        return "; ".join(str(p) for p in parts if p) or response.text[:300]
    return response.text[:300]


class OAuthTokens:
    """Bearer tokens from `<instance>/identity/connect/token`, renewed by refresh token, else by a new grant."""

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        cfg: AcumaticaAuth,
        *,
        client_secret: str,
        password: str,
        policy: HttpPolicy,
    ):
        self._http = http
        self._policy = policy
        self._url = f"{base_url}/identity/connect/token"
        self._cfg = cfg
        self._secrets = [client_secret, password]
        self._form = {"client_id": cfg.client_id, "client_secret": client_secret}
        self._password = password
        self._lock = threading.Lock()
        self._access: str | None = None
        self._refresh: str | None = None
        self.grants = 0
        self.refreshes = 0

    def auth_headers(self) -> Mapping[str, str]:
        with self._lock:
            if self._access is None:
                self._renew()
            return {"Authorization": f"Bearer {self._access}"}

    def invalidate(self, rejected: Mapping[str, str]) -> bool:
        with self._lock:
            if rejected.get("Authorization") != f"Bearer {self._access}":
                return False  # another request already renewed it
            self._access = None
            return True

    def _renew(self) -> None:
        if self._refresh is not None:
            answer = self._token({"grant_type": "refresh_token", "refresh_token": self._refresh})
            if answer is not None:
                self.refreshes += 1
                return
        self._refresh = None
        answer = self._token(
            {
                "grant_type": "password",
                "username": self._cfg.username,
                "password": self._password,
                "scope": self._cfg.scope,
            }
        )
        if answer is None:
            raise AuthenticationError(SYSTEM, "the token endpoint refused the password grant", status=400)
        self.grants += 1

    def _token(self, form: dict[str, Any]) -> dict | None:
        """The token answer (its tokens kept), None when a refresh token was refused (a grant follows)."""
        try:
            response = sign_in(
                lambda: self._http.post(self._url, data={**self._form, **form}),
                self._policy,
                system=SYSTEM,
                only_when_not_processed=True,  # a grant holds a licence seat: never two for one lost answer
            )
        except httpx.HTTPError as exc:
            if form["grant_type"] == "refresh_token":
                return None  # its answer may be lost with the next refresh token in it: a new grant settles it
            raise AuthenticationError(
                SYSTEM, redact(f"could not reach {self._url}: {type(exc).__name__}: {exc}", self._secrets)
            ) from None
        if response.status_code == 200:
            try:
                body = orjson.loads(response.content)
                self._access = body["access_token"]
            except (orjson.JSONDecodeError, TypeError, KeyError):  # a proxy's sign-in page, answered 200
                start = response.content[:80].decode("utf-8", "replace").strip()
                raise AuthenticationError(
                    SYSTEM,
                    f"{self._url} answered 200 without a token (received "
                    f"{response.headers.get('content-type') or 'no Content-Type'}, starting {start!r})",
                    fix="the URL reaches something other than Acumatica's identity server (a proxy's sign-in page?): "
                    "check acumatica.base_url and the proxy",
                ) from None
            self._refresh = body.get("refresh_token")
            return body
        text = redact(_error_text(response), self._secrets)
        if form["grant_type"] == "refresh_token" and response.status_code in (400, 401) and "Login Limit" not in text:
            return None
        raise AuthenticationError(
            SYSTEM,
            f"the token endpoint refused the {form['grant_type'].replace('_', ' ')} grant: {text}",
            status=response.status_code,
            fix=_fix(response.status_code, text),
        )

    def close(self) -> None:
        """Frees the licence seat the grant holds (a bearer logout ends its session)."""
        with self._lock:
            access, self._access, self._refresh = self._access, None, None
        if access is not None:
            try:
                self._http.post(
                    self._url.replace("/identity/connect/token", "/entity/auth/logout"),
                    headers={"Authorization": f"Bearer {access}"},
                )
            except httpx.HTTPError:
                pass  # the token expires on its own within the hour


class CookieSession:
    """The legacy `/entity/auth/login` session: cookies on every request, signed out on close."""

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        cfg: AcumaticaAuth,
        *,
        tenant: str,
        password: str,
        policy: HttpPolicy,
    ):
        self._http = http
        self._policy = policy
        self._base = base_url
        self._login = {"name": cfg.username, "password": password, "tenant": tenant}
        if cfg.branch:
            self._login["branch"] = cfg.branch
        self._secrets = [password]
        self._lock = threading.Lock()
        self._cookies: str | None = None
        self.logins = 0
        self.logouts = 0

    def auth_headers(self) -> Mapping[str, str]:
        with self._lock:
            if self._cookies is None:
                self._sign_in()
            return {"Cookie": self._cookies}

    def invalidate(self, rejected: Mapping[str, str]) -> bool:
        with self._lock:
            if rejected.get("Cookie") != self._cookies:
                return False
            self._cookies = None
            return True

    def _sign_in(self) -> None:
        try:
            response = sign_in(
                lambda: self._http.post(f"{self._base}/entity/auth/login", json=self._login),
                self._policy,
                system=SYSTEM,
                only_when_not_processed=True,  # a session holds a licence seat: never two for one lost answer
            )
        except httpx.HTTPError as exc:
            raise AuthenticationError(SYSTEM, f"could not reach the login: {type(exc).__name__}: {exc}") from None
        if response.status_code not in (200, 204):
            text = redact(_error_text(response), self._secrets)
            raise AuthenticationError(
                SYSTEM, f"login refused: {text}", status=response.status_code, fix=_fix(response.status_code, text)
            )
        self._cookies = "; ".join(f"{name}={value}" for name, value in response.cookies.items())
        self.logins += 1

    def close(self) -> None:
        with self._lock:
            cookies, self._cookies = self._cookies, None
        if cookies is None:
            return
        try:
            self._http.post(f"{self._base}/entity/auth/logout", headers={"Cookie": cookies})
            self.logouts += 1
        except httpx.HTTPError:
            pass  # the session closes after ten idle minutes


def _fix(status: int, text: str) -> str | None:
    """What a refused sign-in (its status and error text) most likely needs."""
    if status == 404:  # the sign-in endpoint itself is not there: the site's path, not a passing fault
        return (
            "no Acumatica site at this path: check acumatica.base_url including the site's virtual directory "
            "(e.g. https://erp.example.com/AcumaticaERP)"
        )
    lowered = text.lower()
    if "login limit" in lowered:
        return LOGIN_LIMIT_FIX
    if "invalid_client" in lowered:
        return "the client id or secret is wrong: check the Connected Application (SM303010) and acumatica.auth"
    if "invalid_username_or_password" in lowered or "invalid credentials" in lowered:
        return "the user name or password is wrong (acumatica.auth.username / password)"
    if "invalid_scope" in lowered:
        return "the Connected Application must allow the `api` scope"
    return None
