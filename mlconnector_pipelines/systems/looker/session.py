"""Looker's login token: `POST /login` with the API3 client id and secret, cached for its lifetime.

Looker issues no refresh tokens; when a call answers 401 the token is dropped and the next call
logs in again (core.http retries that call once).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

from ...core.errors import AuthenticationError, RequestFailedError
from ...core.http import ThrottledClient

SYSTEM = "Looker"

# Renew this long before the server's expiry, so a token never lapses between check and use.
_EXPIRY_MARGIN_SECONDS = 60


class LookerLogin:
    """Implements core.http's Authenticator with `Authorization: token <access_token>`."""

    def __init__(self, client_id: str, client_secret: str, clock=time.monotonic):
        self._form = {"client_id": client_id, "client_secret": client_secret}
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0
        self.http: ThrottledClient | None = None  # set by the client that owns this login
        self.logins = 0

    def auth_headers(self) -> Mapping[str, str]:
        with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                self._login()
            return {"Authorization": f"token {self._token}"}

    def invalidate(self, rejected: Mapping[str, str]) -> bool:
        with self._lock:
            if self._token is None or rejected.get("Authorization") != f"token {self._token}":
                return False
            self._token = None
            return True

    def _login(self) -> None:
        assert self.http is not None
        try:
            response = self.http.request("POST", "login", data=self._form, authenticated=False, idempotent=True)
        except RequestFailedError as exc:
            if exc.status in (401, 403, 404):  # Looker answers a wrong id or secret with 404
                raise AuthenticationError(
                    SYSTEM,
                    "login refused: the API client id or secret is wrong, or the API user is disabled",
                    status=exc.status,
                    fix="create API3 credentials under Admin > Users > Edit Keys and set looker.client_id and "
                    "the secret it references",
                ) from None
            raise
        body = self.http.parse_json(response)
        if not isinstance(body, dict) or not body.get("access_token"):
            raise self.http.malformed(response, "a login answer without an access_token")
        lifetime = float(body.get("expires_in") or 3600)
        self._token = body["access_token"]
        self._expires_at = self._clock() + max(lifetime - min(_EXPIRY_MARGIN_SECONDS, lifetime / 10), 0.0)
        self.logins += 1
