"""Errors a user can act on. Each names the system and says what to do; none carries a secret."""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of every error the product raises on purpose."""


class ConfigError(ConnectorError):
    """connector.yaml (or the environment) is wrong; the message names the key."""


class ExternalSystemError(ConnectorError):
    """An external system refused or failed a request.

    `fix`, when the cause is known, is what the person setting this up should do; it ends the
    message and `mlconnector ping` shows it in its own column.
    """

    def __init__(
        self,
        system: str,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        fix: str | None = None,
        server_message: str | None = None,
    ):
        self.system = system
        self.status = status
        self.code = code
        self.fix = fix
        # What the server itself said, without our context: for callers that re-word the error.
        self.server_message = server_message if server_message is not None else message
        detail = f" (HTTP {status}{', ' + code if code else ''})" if status else ""
        super().__init__(f"{system}: {message}{detail}" + (f" — likely fix: {fix}" if fix else ""))


class AuthenticationError(ExternalSystemError):
    """Credentials were rejected: retrying will not help, fixing configuration will."""


class RequestFailedError(ExternalSystemError):
    """A request failed for good: a non-retryable status, or retries ran out."""


class OutcomeUnknown(RequestFailedError):
    """A write whose answer never came (a timeout, a dropped connection, 502/504): the server may have
    committed it. It is never sent again blindly; look the record up by its natural key."""

    def __init__(self, system: str, message: str, *, method: str, url: str):
        super().__init__(system, message)
        self.method, self.url = method, url


def about_the_system(exc: BaseException) -> bool:
    """Whether an error says the system is unreachable, throttled or refusing our credentials (every record
    after it would meet the same), not that one record is wrong."""
    if isinstance(exc, AuthenticationError):
        return True
    if isinstance(exc, RequestFailedError) and not isinstance(exc, OutcomeUnknown):
        if exc.status is None:  # unreachable, or one answer it could not use (that record's)
            return getattr(exc, "unreachable", False)
        return exc.status >= 500 or exc.status == 429
    return False


class RecordError(ConnectorError):
    """A record the source sent cannot be stored as it is: the message names the record and the value."""


class RecordRefused(ConnectorError):
    """An ERP refused a record it was sent: `errors` are its fields' messages (`Field: message` each)."""

    def __init__(self, system: str, entity: str, key: str, errors: list[str]):
        self.system, self.entity, self.key, self.errors = system, entity, key, errors
        super().__init__(f"{system} refused {entity} {key}: " + "; ".join(errors or ["(no field named)"]))
