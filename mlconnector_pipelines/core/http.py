"""Throttled HTTP: the one retry, back-off, rate-limit and re-auth policy for every system.

Retries (tenacity): 429, 502, 503, 504, connection errors and timeouts. `Retry-After` is
honoured when the server sends it; otherwise exponential back-off with full jitter, capped.
Other 4xx are never retried, nor is a TLS handshake that failed on the server's certificate or
on a port that does not speak TLS (that is configuration, not a passing fault). A 401 renews
the credential it was refused with and retries; a request fails only when a credential it
renewed itself is refused again.

Writes are repeated only when the server provably did not process them: none of these ERPs
has an idempotency key, so a repeated POST is a second journal or customer. GET, HEAD,
OPTIONS and DELETE are safe to repeat, and so is a PUT the caller marks `idempotent` (one
matched by key). A POST or PATCH is repeated after a refused connection, a 429, a 503 with
`Retry-After`, or a 401 (before re-authenticating); after a timeout waiting for the answer, a
dropped response, a 502, 504 or other 503, it raises `OutcomeUnknown` instead, and the caller
finds out by looking the record up by its natural key.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, Protocol, TypeVar

import httpx
import orjson
import tenacity
from pydantic import BaseModel, Field
from pyrate_limiter import Duration, Limiter, Rate, StateBucket, TokenBucket

from .errors import AuthenticationError, OutcomeUnknown, RequestFailedError
from .redact import redact
from .tls import handshake_refused, tls_fix

log = logging.getLogger("mlconnector.http")
T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
SAFE_TO_REPEAT = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
# Failures that happen before a request leaves this process: the server cannot have processed it.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
# Refusals of a credential that another request had already replaced, tolerated per request before
# giving up: each is followed by a retry with the newer credential, never by a renewal of our own.
_MAX_STALE_REFUSALS = 3


class HttpPolicy(BaseModel):
    """Per-system HTTP behaviour; every field has a production-sensible default."""

    timeout_seconds: float = Field(120.0, gt=0, description="Read/connect timeout for one request.")
    max_attempts: int = Field(8, ge=1, le=50, description="Attempts per request, first included.")
    backoff_base_seconds: float = Field(1.0, gt=0, description="First back-off step without Retry-After.")
    backoff_cap_seconds: float = Field(60.0, gt=0, description="Longest back-off step without Retry-After.")
    max_retry_after_seconds: float = Field(
        300.0,
        gt=0,
        description="Longest wait accepted from a server's Retry-After; asked to wait longer, the request fails "
        "at once (retrying early only extends a throttling penalty).",
    )
    outcome_settle_seconds: float = Field(
        600.0,
        ge=0,
        description="After a create's answer was lost and a lookup did not find it: how long the server may "
        "still be saving it (a gateway, or this client's timeout, gave up first). No second create before then.",
    )
    requests_per_minute: int | None = Field(
        None, gt=0, description="Client-side request-rate limit; None leaves pacing to the server."
    )
    requests_burst: int | None = Field(
        None, gt=0, description="Requests allowed back to back before pacing starts; default a tenth of a minute's."
    )
    retry_connection_failures: bool = Field(
        True,
        description="Try again after a connection that could not be made (refused, or a host name that did not "
        "resolve): a restart or a DNS blip passes. `mlconnector ping` turns it off, to answer at once.",
    )


@dataclass
class RequestStats:
    """What one client did; surfaced as materialization metadata. Threads share a client: `add` counts."""

    requests: int = 0
    retries: int = 0
    throttled: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    reauthentications: int = 0
    outcome_unknown: int = 0
    waited_seconds: float = 0.0
    by_method: dict[str, int] = field(default_factory=dict)  # requests sent, per HTTP method
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **amounts: float) -> None:
        with self._lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)

    def sent(self, method: str) -> None:
        with self._lock:
            self.requests += 1
            self.by_method[method] = self.by_method.get(method, 0) + 1

    def as_metadata(self, prefix: str = "") -> dict[str, float | int]:
        figures = {
            f"{prefix}{f.name}": getattr(self, f.name)
            for f in fields(self)
            if not f.name.startswith("_") and f.name != "by_method"
        }
        return {**figures, **{f"{prefix}requests_{method.lower()}": n for method, n in sorted(self.by_method.items())}}


class Authenticator(Protocol):
    """Supplies auth headers and forgets cached credentials when the server says they expired."""

    def auth_headers(self) -> Mapping[str, str]: ...

    def invalidate(self, rejected: Mapping[str, str]) -> bool:
        """Forget the credential a refused request carried (`rejected` are its headers).

        A no-op returning False when that credential was already replaced: requests in flight
        together are refused together, and they must renew it once between them, not once each.
        """
        ...


class _RetryableResponse(Exception):
    def __init__(self, response: httpx.Response):
        self.response = response
        super().__init__(f"HTTP {response.status_code}")


class NotApplied(_RetryableResponse):
    """An answer inside a 2xx response (an OData $batch part) refused its request as throttled or
    unavailable, and nothing of it was applied: `ThrottledClient.repeat` sends it again. `response`
    is that inner answer (its status, headers and body), bound to the request that carried it."""


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Parse Retry-After as seconds or an HTTP date; None when absent or unparseable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class _RetryAfterOrFullJitter(tenacity.wait.wait_base):
    """Server's Retry-After when present, else uniform(0, min(cap, base * 2**n)) (full jitter)."""

    def __init__(self, base: float, cap: float, retry_after_cap: float, rng: random.Random):
        self.base, self.cap, self.retry_after_cap, self.rng = base, cap, retry_after_cap, rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _RetryableResponse):
            hinted = retry_after_seconds(exc.response)
            if hinted is not None:
                return min(hinted, self.retry_after_cap)
        return self.rng.uniform(0, min(self.cap, self.base * 2 ** (retry_state.attempt_number - 1)))


class _ToldToWaitTooLong(tenacity.stop.stop_base):
    """Stop when the server's Retry-After asks for longer than we accept: a retry before then would come
    early, and Microsoft's services extend the penalty of a client that retries early."""

    def __init__(self, cap: float):
        self.cap = cap

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        return isinstance(exc, _RetryableResponse) and (retry_after_seconds(exc.response) or 0.0) > self.cap


def _retrying(
    policy: HttpPolicy,
    retry: tenacity.retry_base,
    *,
    rng: random.Random,
    sleep: Callable[[float], None],
    before_sleep: Callable[[tenacity.RetryCallState], None],
) -> tenacity.Retrying:
    """The house retry: the server's Retry-After, else full jitter; at most `max_attempts`, and none at all when
    told to wait longer than `max_retry_after_seconds`, nor after a failed connection unless the policy says so."""
    if not policy.retry_connection_failures:
        retry = retry & tenacity.retry_if_not_exception_type(httpx.ConnectError)
    return tenacity.Retrying(
        retry=retry,
        wait=_RetryAfterOrFullJitter(
            policy.backoff_base_seconds, policy.backoff_cap_seconds, policy.max_retry_after_seconds, rng
        ),
        stop=tenacity.stop_after_attempt(policy.max_attempts) | _ToldToWaitTooLong(policy.max_retry_after_seconds),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )


def sign_in(
    send: Callable[[], httpx.Response],
    policy: HttpPolicy,
    *,
    system: str,
    only_when_not_processed: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """A sign-in request (a token grant, a login), sent again while the server answers it throttled or unavailable
    (429, 502–504) or the network fails, after its Retry-After or back-off with jitter, as `policy` says: a token
    endpoint's blip ended a run (a token is renewed mid-run). Returns the last answer when the attempts run out,
    for the caller to name; raises the last network error. `only_when_not_processed` repeats only what the
    server provably did not act on (a login that holds a licence seat until it ends)."""

    def once() -> httpx.Response:
        response = send()
        if response.status_code in RETRYABLE_STATUSES:
            raise _RetryableResponse(response)
        return response

    def say(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        reason = f"HTTP {exc.response.status_code}" if isinstance(exc, _RetryableResponse) else type(exc).__name__
        log.warning("%s: sign-in %s, retry %d in %.1fs", system, reason, state.attempt_number, state.upcoming_sleep)

    retrying = _retrying(
        policy,
        tenacity.retry_if_exception(_not_processed if only_when_not_processed else _transient),
        rng=random.Random(),
        sleep=sleep,
        before_sleep=say,
    )
    try:
        return retrying(once)
    except _RetryableResponse as exc:
        return exc.response


def _rate_limiter(policy: HttpPolicy) -> Limiter | None:
    """A token bucket: smooth pacing at the configured rate, with a small burst allowance."""
    if not policy.requests_per_minute:
        return None
    burst = policy.requests_burst or max(1, policy.requests_per_minute // 10)
    rate = Rate(policy.requests_per_minute, Duration.MINUTE, burst=burst)
    return Limiter(StateBucket([rate], algorithm=TokenBucket()))


class ThrottledClient:
    """An httpx client for one external system with the house retry/auth/rate policy.

    `secrets` are masked out of every error this client raises and every line it logs.
    """

    def __init__(
        self,
        system: str,
        *,
        base_url: str = "",
        policy: HttpPolicy | None = None,
        auth: Authenticator | None = None,
        verify: Any = True,
        secrets: Iterable[str | None] = (),
        headers: Mapping[str, str] | None = None,
        error_message: Callable[[httpx.Response], tuple[str, str | None]] | None = None,
        reauthenticate_on: Callable[[httpx.Response], bool] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        self.system = system
        self.policy = policy or HttpPolicy()
        self.auth = auth
        self.stats = RequestStats()
        self._secrets = [s for s in secrets if s]
        self._error_message = error_message or _generic_error_message
        # Which 401s mean "log in again" (all of them unless the system says otherwise).
        self._reauthenticate_on = reauthenticate_on or (lambda response: True)
        self._limiter = _rate_limiter(self.policy)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._http = httpx.Client(
            base_url=base_url,
            verify=verify,
            timeout=httpx.Timeout(self.policy.timeout_seconds),
            headers=dict(headers or {}),
            transport=transport,
            follow_redirects=False,
        )

    # -- public ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        authenticated: bool = True,
        idempotent: bool | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """Send with retries; return a 2xx/3xx response or raise a clear, redacted error.

        `authenticated=False` sends no auth headers and skips re-authentication (a login call itself).
        `idempotent` says whether sending it twice does no more than sending it once: by default
        true for GET, HEAD, OPTIONS and DELETE; a PUT matched by key must say so. A request that
        is not is never repeated when its outcome is unknown (see the module docstring).
        """
        repeatable = method.upper() in SAFE_TO_REPEAT if idempotent is None else idempotent
        return self._checked(
            method,
            url,
            dict(params=params, json=json, data=data, headers=headers, content=content),
            authenticated=authenticated,
            stream=False,
            repeatable=repeatable,
        )

    @contextmanager
    def stream(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Iterator[httpx.Response]:
        """Like `request`, but the 2xx body is read as it arrives (`iter_bytes`); closed on exit."""
        response = self._checked(
            method,
            url,
            dict(params=params, json=None, data=None, headers=headers, content=None),
            authenticated=True,
            stream=True,
            repeatable=method.upper() in SAFE_TO_REPEAT,
        )
        try:
            yield response
        finally:
            response.close()

    def _checked(
        self, method: str, url: str, kwargs: dict, *, authenticated: bool, stream: bool, repeatable: bool
    ) -> httpx.Response:
        auth = self.auth if authenticated else None
        send = partial(self._send_with_retries, method, url, auth, stream, repeatable, **kwargs)
        response = send()
        renewed_here = False
        stale_refusals = 0
        while response.status_code == 401 and auth is not None and self._reauthenticate_on(response):
            # Tokens expire or are revoked early. Concurrent requests refused with one token renew it
            # once between them; a token revoked again after another request renewed it is renewed
            # again. Only a credential this request renewed itself, refused, means it is wrong.
            if renewed_here or stale_refusals >= _MAX_STALE_REFUSALS:
                message, code = self._error_message(response)
                raise AuthenticationError(
                    self.system,
                    self._redact(f"credentials rejected after re-authentication: {message}"),
                    status=401,
                    code=code,
                )
            if auth.invalidate(response.request.headers):
                renewed_here = True
                self.stats.add(reauthentications=1)
                log.info("%s answered 401; re-authenticating", self.system)
            else:
                stale_refusals += 1
            response = send()
        if response.status_code >= 400:
            message, code = self._error_message(response)
            raise RequestFailedError(
                self.system,
                self._redact(f"{method} {_path_of(response.request.url)} failed: {message}"),
                status=response.status_code,
                code=code,
                server_message=self._redact(message),
            )
        return response

    def repeat(self, send: Callable[[], T]) -> T:
        """`send()` again, after the policy's wait (the inner answer's Retry-After, or back-off with
        jitter), each time it raises NotApplied; the attempts and waits are this client's, and so is
        the error when they run out."""
        retrying = self._retrying(tenacity.retry_if_exception_type(NotApplied))
        try:
            return retrying(send)
        except NotApplied as exc:
            request = exc.response.request
            raise self._failed(
                request.method, str(request.url), exc, retrying.statistics.get("attempt_number", 1)
            ) from None

    def get_json(self, url: str, **kwargs: Any) -> Any:
        return self.parse_json(self.request("GET", url, **kwargs))

    def post_json(self, url: str, **kwargs: Any) -> Any:
        return self.parse_json(self.request("POST", url, **kwargs))

    def parse_json(self, response: httpx.Response) -> Any:
        """A 2xx response's JSON body, or an error naming the system and the request."""
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise self.malformed(response, f"malformed JSON: {exc}") from None

    def read_written(self, response: httpx.Response, read: Callable[[httpx.Response], T]) -> T:
        """What a write's 2xx answer says (the record the server saved, the number it gave). The write was
        made; an answer that cannot be read (empty, cut short, not JSON, the number missing) leaves which
        record it made unknown: OutcomeUnknown, which the caller settles by looking its key up."""
        try:
            return read(response)
        except (RequestFailedError, LookupError, TypeError, ValueError, AttributeError) as exc:
            request = response.request
            self.stats.add(outcome_unknown=1)
            raise OutcomeUnknown(
                self.system,
                self._redact(
                    f"{request.method} {_path_of(request.url)} was answered {response.status_code}, so it was "
                    f"saved, but with an answer that does not say what was saved ({exc}); the lookup by its "
                    "key finds it"
                ),
                method=request.method,
                url=str(request.url),
            ) from None

    def malformed(self, response: httpx.Response, problem: str) -> RequestFailedError:
        """The error for a 2xx body the client cannot use: the system, the request, and what came back."""
        received = response.headers.get("content-type") or "no Content-Type"
        start = response.content[:120].decode("utf-8", "replace").strip()
        return RequestFailedError(
            self.system,
            self._redact(
                f"{response.request.method} {_path_of(response.request.url)} returned {problem} "
                f"(received {received}, {len(response.content):,} bytes, starting {start!r})"
            ),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ThrottledClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------

    def _send_with_retries(self, method, url, auth, stream, repeatable, **kwargs) -> httpx.Response:
        retrying = self._retrying(tenacity.retry_if_exception(_transient if repeatable else _not_processed))
        try:
            return retrying(self._send_once, method, url, auth, stream, **kwargs)
        except (_RetryableResponse, httpx.TransportError) as exc:
            # A failed handshake sent nothing: no unknown outcome, a TLS fix.
            if not repeatable and not _not_processed(exc) and not handshake_refused(exc):
                raise self._outcome_unknown(method, url, exc) from None
            raise self._failed(method, url, exc, retrying.statistics.get("attempt_number", 1)) from None

    def _retrying(self, retry: tenacity.retry_base) -> tenacity.Retrying:
        return _retrying(self.policy, retry, rng=self._rng, sleep=self._sleep, before_sleep=self._before_retry)

    def _outcome_unknown(self, method: str, url: str, exc: Exception) -> OutcomeUnknown:
        self.stats.add(outcome_unknown=1)
        if isinstance(exc, _RetryableResponse):
            what = f"HTTP {exc.response.status_code}: {self._error_message(exc.response)[0]}"
        else:
            what = f"{type(exc).__name__}: {exc}"
        return OutcomeUnknown(
            self.system,
            self._redact(
                f"{method} {url}: the server may or may not have processed it ({what}); it was not sent again. "
                "Look the record up by its natural key before writing it again"
            ),
            method=method,
            url=self._redact(url),
        )

    def _failed(self, method: str, url: str, exc: Exception, attempts: int) -> RequestFailedError:
        if isinstance(exc, _RetryableResponse):
            message, code = self._error_message(exc.response)
            hinted = retry_after_seconds(exc.response)
            if hinted is not None and hinted > self.policy.max_retry_after_seconds:
                message += (
                    f" (it asks to wait {hinted:.0f} s before trying again, longer than http.max_retry_after_seconds,"
                    f" {self.policy.max_retry_after_seconds:.0f} s: run it later, or raise that limit)"
                )
            return RequestFailedError(
                self.system,
                self._redact(
                    f"{method} {_path_of(exc.response.request.url)} still failing after "
                    f"{attempts} attempt{'s' if attempts != 1 else ''}: {message}"
                ),
                status=exc.response.status_code,
                code=code,
            )
        message = (
            f"{method} {url} could not be completed after {attempts} "
            f"attempt{'s' if attempts != 1 else ''}: {type(exc).__name__}: {exc}"
        )
        failed = RequestFailedError(self.system, self._redact(message), fix=_tls_fix(exc))
        failed.unreachable = True  # no answer at all: the system, not one record (core.errors.about_the_system)
        return failed

    def _send_once(self, method, url, auth, stream, *, params, json, data, headers, content) -> httpx.Response:
        if self._limiter is not None:
            self._limiter.try_acquire(self.system)
        request_headers = dict(auth.auth_headers()) if auth is not None else {}
        request_headers.update(headers or {})
        self.stats.sent(method.upper())
        request = self._http.build_request(
            method, url, params=params, json=json, data=data, content=content, headers=request_headers
        )
        response = self._http.send(request, stream=stream)
        if not stream:
            # httpx's stream wrapper points back at its response (to time it), so a read response
            # would live until the cyclic GC runs; a loop of large pages that builds few Python
            # objects runs it seldom, and every page body stayed in memory until then.
            response.stream = httpx.ByteStream(response.content)
        if stream and response.status_code >= 300:
            response.read()  # an error body is small and needed for the message; the stream ends here
            response.close()
        if response.status_code in RETRYABLE_STATUSES:
            raise _RetryableResponse(response)
        return response

    def _before_retry(self, retry_state: tenacity.RetryCallState) -> None:
        wait = retry_state.upcoming_sleep
        self.stats.add(retries=1, waited_seconds=wait)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, _RetryableResponse):
            status = exc.response.status_code
            if status == 429:
                self.stats.add(throttled=1)
            else:
                self.stats.add(server_errors=1)
            reason = f"HTTP {status}"
        else:
            self.stats.add(transport_errors=1)
            reason = type(exc).__name__
        log.warning("%s: %s, retry %d in %.1fs", self.system, reason, retry_state.attempt_number, wait)

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: a retryable status or a network fault, but not a TLS handshake that no retry changes."""
    if isinstance(exc, _RetryableResponse):
        return True
    return isinstance(exc, httpx.TransportError) and not handshake_refused(exc)


def _not_processed(exc: BaseException) -> bool:
    """The server provably did not act on the request, so even a write may be sent again."""
    if isinstance(exc, _RetryableResponse):
        status = exc.response.status_code
        return status == 429 or (status == 503 and exc.response.headers.get("Retry-After") is not None)
    return isinstance(exc, _NOT_SENT) and not handshake_refused(exc)


def _path_of(url: httpx.URL) -> str:
    # The path identifies the call; the query may carry filters that are noise in an error.
    return url.path


def _tls_fix(exc: Exception) -> str | None:
    return tls_fix(
        exc,
        unknown_issuer="the server's TLS certificate is not trusted: set `ca_bundle` for this system in "
        "connector.yaml to the CA that signed it (verification stays on)",
    )


def _generic_error_message(response: httpx.Response) -> tuple[str, str | None]:
    """Best-effort (message, code) from an OData-style, `{"message", "errors": [...]}` (Looker) or plain error body."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return (response.text[:300] or response.reason_phrase, None)
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = error.get("message")
            if isinstance(message, dict):  # SAP B1 v1 wraps the text
                message = message.get("value")
            return (str(message or error), str(error.get("code")) if error.get("code") is not None else None)
        if isinstance(error, str):
            return (str(body.get("error_description") or error), error)
        if "message" in body:
            # Validation errors list what was wrong, field by field (Looker's 422).
            errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
            message = str(body["message"] or response.reason_phrase)
            details = [f"{e['field']}: {e.get('message')}" if e.get("field") else str(e.get("message")) for e in errors]
            code = next((str(e["code"]) for e in errors if e.get("code")), None)
            return (f"{message} ({'; '.join(details)})" if details else message, code)
    return (response.text[:300], None)
