"""One Service Layer session, reused for every call, renewed once when the server says it timed out.

Logging in is slow (seconds) and sessions count against licences, so the session is opened on
first use, shared by all requests, and closed with `logout()`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import httpx

from ...core.errors import AuthenticationError, RequestFailedError
from ...core.http import ThrottledClient

SYSTEM = "SAP Business One"
SESSION_EXPIRED = "301"

_LOGIN_FIXES = {
    "-304": "the user name or password is wrong (check the Service Layer user and its password)",
    "-306": "the company database is unknown: check company_db (the CompanyDB, e.g. SBODEMOUS)",
}


def session_expired(response: httpx.Response) -> bool:
    """A 401 whose Service Layer error code is 301 (invalid or timed-out session)."""
    try:
        return str(response.json()["error"]["code"]) == SESSION_EXPIRED
    except (ValueError, KeyError, TypeError):
        return False


def _cookie_header(cookies: Mapping[str, str]) -> str:
    return "; ".join(f"{name}={value}" for name, value in cookies.items())


class ServiceLayerSession:
    """Implements core.http's Authenticator with the B1SESSION/ROUTEID cookies."""

    def __init__(self, login_client: ThrottledClient, *, company_db: str, username: str, password: str):
        self._http = login_client
        self._credentials = {"CompanyDB": company_db, "UserName": username, "Password": password}
        self._cookies: dict[str, str] | None = None
        self._lock = threading.Lock()
        self.logins = 0

    def auth_headers(self) -> Mapping[str, str]:
        with self._lock:
            if self._cookies is None:
                self._cookies = self._login()
            return {"Cookie": _cookie_header(self._cookies)}

    def invalidate(self, rejected: Mapping[str, str]) -> bool:
        with self._lock:
            if self._cookies is None or rejected.get("Cookie") != _cookie_header(self._cookies):
                return False
            self._cookies = None
            return True

    def logout(self) -> None:
        with self._lock:
            if self._cookies is None:
                return
            cookies, self._cookies = self._cookies, None
        try:
            self._http.request("POST", "Logout", headers={"Cookie": _cookie_header(cookies)}, idempotent=True)
        except RequestFailedError:
            pass  # the session times out on its own; failing to log out must not fail the run

    def _login(self) -> dict[str, str]:
        try:
            # A second login after an unknown outcome only opens another session: safe to repeat.
            response = self._http.request("POST", "Login", json=self._credentials, idempotent=True)
        except RequestFailedError as exc:
            if exc.status == 401:
                fix = _LOGIN_FIXES.get(exc.code or "", "check company_db, username and password")
                raise AuthenticationError(
                    SYSTEM, f"login refused: {exc.server_message}", status=401, code=exc.code, fix=fix
                ) from None
            if exc.status == 404:  # the host answers, but not with a Service Layer at this path
                raise AuthenticationError(
                    SYSTEM,
                    "the server answered the login 404: there is no Service Layer at the path of "
                    "sap_business_one.base_url",
                    status=404,
                    fix="check the path of sap_business_one.base_url: SAP Business One 9.x serves /b1s/v1 only, "
                    "10.0 serves /b1s/v1 and /b1s/v2",
                ) from None
            raise
        cookies = {name: response.cookies[name] for name in ("B1SESSION", "ROUTEID") if name in response.cookies}
        if "B1SESSION" not in cookies:
            raise AuthenticationError(SYSTEM, "login answered without a B1SESSION cookie: is this a Service Layer URL?")
        self.logins += 1
        return cookies
