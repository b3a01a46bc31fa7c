"""Who may call: cookie sessions from /entity/auth/login, OAuth 2.0 tokens from /identity/connect/token,
and the licence's limit on API users that both count against (acumatica-facts §2–3).

A cookie session stays open until it signs out or is idle for `session_timeout_minutes`. An OAuth
grant opens one session; refreshing reuses it (one session per grant); it stays open while one of
its access tokens is valid, or until the client signs out with its token. A refresh token is used
once: the answer carries the next one.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field

from . import AcumaticaSettings


class LoginLimit(Exception):
    """Every API user seat of the licence is taken."""


@dataclass
class Session:
    id: str
    kind: str  # cookie | oauth
    user: str
    branch: str
    last_used: float = field(default_factory=time.monotonic)
    closed: bool = False


@dataclass
class Refresh:
    session_id: str
    scope: str
    chain_expires: float


class Licence:
    def __init__(self, settings: AcumaticaSettings):
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        self.sessions: dict[str, Session] = {}
        self.cookies: dict[str, str] = {}  # .ASPXAUTH value -> session id
        self.access: dict[str, tuple[str, float]] = {}  # access token -> (session id, expires at)
        self.refresh: dict[str, Refresh] = {}
        self.counts = {"logins": 0, "logouts": 0, "tokens_issued": 0, "refreshes": 0, "login_limit_refusals": 0}

    # -- counting seats ----------------------------------------------------------------------------

    def alive(self, session: Session, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        if session.closed:
            return False
        if session.kind == "cookie":
            return now - session.last_used < self.settings.session_timeout_minutes * 60
        return any(sid == session.id and expires > now for sid, expires in self.access.values())

    def open_sessions(self) -> dict[str, int]:
        now = time.monotonic()
        self._prune(now)
        live = [s for s in self.sessions.values() if self.alive(s, now)]
        return {kind: sum(1 for s in live if s.kind == kind) for kind in ("cookie", "oauth")}

    def _prune(self, now: float) -> None:
        """Forget expired tokens and dead sessions no refresh token can reopen (a long run grants many)."""
        self.access = {t: v for t, v in self.access.items() if v[1] > now}
        reopenable = {grant.session_id for grant in self.refresh.values() if grant.chain_expires > now}
        self.sessions = {k: s for k, s in self.sessions.items() if k in reopenable or self.alive(s, now)}
        self.cookies = {a: sid for a, sid in self.cookies.items() if sid in self.sessions}

    def _seat(self) -> None:
        if sum(self.open_sessions().values()) >= self.settings.max_api_sessions:
            self.counts["login_limit_refusals"] += 1
            raise LoginLimit

    # -- cookie sessions ---------------------------------------------------------------------------

    def login(self, user: str, branch: str) -> tuple[Session, str]:
        self._seat()
        session = Session(str(uuid.uuid4()), "cookie", user, branch)
        self.sessions[session.id] = session
        auth = secrets.token_hex(32).upper()
        self.cookies[auth] = session.id
        self.counts["logins"] += 1
        return session, auth

    def by_cookie(self, auth: str | None) -> Session | None:
        session = self.sessions.get(self.cookies.get(auth or "", ""))
        if session is None or session.kind != "cookie" or not self.alive(session):
            return None
        session.last_used = time.monotonic()
        return session

    # -- OAuth 2.0 ---------------------------------------------------------------------------------

    def grant(self, user: str, branch: str, scope: str) -> dict:
        self._seat()
        session = Session(str(uuid.uuid4()), "oauth", user, branch)
        self.sessions[session.id] = session
        chain = time.monotonic() + self.settings.refresh_token_lifetime_days * 86400
        return self._tokens(session, scope, chain)

    def renew(self, refresh_token: str) -> dict | None:
        """A refresh: None when the token is unknown, used or past its chain's life."""
        grant = self.refresh.pop(refresh_token, None)
        if grant is None or grant.chain_expires <= time.monotonic():
            return None
        session = self.sessions[grant.session_id]
        if not self.alive(session):
            try:
                self._seat()
            except LoginLimit:
                self.refresh[refresh_token] = grant  # refused before it was used
                raise
            session.closed = False
            self.sessions[session.id] = session  # counting seats pruned it: its refresh token was already taken
        self.counts["refreshes"] += 1
        return self._tokens(session, grant.scope, grant.chain_expires)

    def _tokens(self, session: Session, scope: str, chain_expires: float) -> dict:
        lifetime = self.settings.token_lifetime_seconds
        token = secrets.token_urlsafe(32)
        self.access[token] = (session.id, time.monotonic() + lifetime)
        self.counts["tokens_issued"] += 1
        answer = {"access_token": token, "expires_in": lifetime, "token_type": "Bearer", "scope": scope}
        if "offline_access" in scope.split():
            refresh = secrets.token_urlsafe(32)
            self.refresh[refresh] = Refresh(session.id, scope, chain_expires)
            answer["refresh_token"] = refresh
        return answer

    def by_bearer(self, token: str) -> Session | None:
        found = self.access.get(token)
        if found is None or found[1] <= time.monotonic():
            return None
        session = self.sessions.get(found[0])
        return session if session is not None and not session.closed else None

    # -- signing out -------------------------------------------------------------------------------

    def logout(self, auth: str | None, bearer: str | None) -> None:
        session = None
        if bearer:
            found = self.access.get(bearer)
            session = self.sessions.get(found[0]) if found else None
            if session is not None:
                self.access = {t: v for t, v in self.access.items() if v[0] != session.id}
        elif auth:
            session = self.sessions.get(self.cookies.pop(auth, ""))
        if session is not None and not session.closed:
            session.closed = True
            self.counts["logouts"] += 1

    def expire_all(self) -> None:
        """Every token and session ends now (the `expire_tokens` fault, the admin's tokens/expire)."""
        for session in self.sessions.values():
            session.closed = True
        self.access.clear()
        self.refresh.clear()
        self.cookies.clear()
