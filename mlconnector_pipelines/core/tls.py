"""TLS trust: the system store plus, per system, the customer's extra CA bundle. Never verify=False."""

from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path

import httpx

from .errors import ConfigError, RequestFailedError

# OpenSSL's words for a handshake answered by something that is not TLS (a plain-HTTP port behind an https:// URL),
# as OpenSSL 1.1 to 3.x say it.
_NOT_TLS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL")
NOT_TLS_FIX = (
    "the port does not speak TLS: check the URL's port (is it the server's plain-HTTP port?) and whether the "
    "server offers https at all"
)
NAME_MISMATCH_FIX = (
    "the server's certificate is issued to another name than the URL's host: use the name it was issued to in the "
    "URL (a CA bundle does not change this)"
)
EXPIRED_FIX = "the server's certificate has expired: it must be renewed on the server (no setting here can fix that)"


def untrusted_certificate(error: BaseException | str) -> bool:
    """Whether a connection failed because the server's certificate was not accepted."""
    text = str(error)
    return "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text


def speaks_no_tls(error: BaseException | str) -> bool:
    """Whether the TLS handshake was answered by something that does not speak TLS."""
    text = str(error)
    return any(code in text for code in _NOT_TLS)


def handshake_refused(error: BaseException) -> bool:
    """Whether a connection failed in its TLS handshake for a reason no retry changes; nothing of a request was sent.

    Only while connecting: OpenSSL says the same words when an established session reads bytes that are not TLS,
    after the request went out (its outcome is then unknown, not refused)."""
    return isinstance(error, httpx.ConnectError) and (untrusted_certificate(error) or speaks_no_tls(error))


def tls_fix(error: BaseException | str, *, unknown_issuer: str) -> str | None:
    """The likely fix for a failed TLS handshake, None when the failure was not one.

    `unknown_issuer` is the system's own advice for a certificate whose issuer is not trusted (which of its
    settings takes the CA); a certificate for another name, or an expired one, is fixed elsewhere.
    """
    text = str(error)
    if speaks_no_tls(text):
        return NOT_TLS_FIX
    if not untrusted_certificate(text):
        return None
    if "mismatch" in text:  # OpenSSL: "Hostname mismatch" / "IP address mismatch, certificate is not valid for …"
        return NAME_MISMATCH_FIX
    if "certificate has expired" in text:
        return EXPIRED_FIX
    return unknown_issuer


def ssl_context(ca_bundle: str | Path | None, *, what: str) -> ssl.SSLContext:
    """The system store, plus `ca_bundle` when given.

    One context per bundle as it is on disk now, shared by every client of the process: building one
    reads the whole system store (~20 ms here), and a run opens a client per system and one for its
    tokens. A rewritten bundle (a renewed CA) is a new file state, hence a new context. Callers never
    change a context they are given.
    """
    if not ca_bundle:
        return _context(None, 0, 0)
    path = Path(ca_bundle)
    if not path.is_file():
        hint = " (start the sandbox first: `mlconnector sandbox`)" if "sandbox" in str(path) else ""
        raise ConfigError(f"{what}.ca_bundle: {path} does not exist{hint}")
    state = path.stat()
    return _context(str(path.resolve()), state.st_mtime_ns, state.st_size)


@lru_cache(maxsize=32)
def _context(cafile: str | None, mtime_ns: int, size: int) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if cafile:
        context.load_verify_locations(cafile=cafile)
    return context


def pinned_ssl_context(
    host: str, port: int, sha256: str, *, what: str, system: str, timeout_seconds: float
) -> ssl.SSLContext:
    """Trust exactly the certificate whose SHA-256 fingerprint the customer gave us.

    The server's certificate is fetched once and compared with the pin; it then becomes the only
    trust anchor, so every later connection is verified against it. The name it was issued to is not compared
    with the URL's host: the pin is its identity, and an on-premise server's certificate is often issued to
    the machine's name (CN=B1SERVER) while it is reached by address, which no other setting could then fix.
    A server that cannot be reached for its certificate is `system`'s network failure (host, port), not the pin's.
    """
    import hashlib

    expected = sha256.replace(":", "").lower()
    try:
        pem = ssl.get_server_certificate((host, port), timeout=timeout_seconds)
    except OSError as exc:
        failed = RequestFailedError(
            system,
            f"could not fetch the certificate of {host}:{port} to check {what}.pinned_sha256: "
            f"{type(exc).__name__}: {exc}",
            fix=NOT_TLS_FIX if speaks_no_tls(exc) else None,
        )
        failed.unreachable = True  # no answer at all: the system, not one record (core.errors.about_the_system)
        raise failed from None
    actual = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
    if actual != expected:
        raise ConfigError(
            f"{what}.pinned_sha256: {host}:{port} presents a certificate with SHA-256 {actual}, "
            f"not the pinned {expected}; if the server's certificate was renewed, update the pin"
        )
    context = ssl.create_default_context(cadata=pem)
    # The pinned certificate is the trust anchor even when a CA signed it (an internal or a public CA): without
    # this, OpenSSL looks past it for its issuer and every connection failed, the pin matching or not.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False  # the pin is the identity (still CERT_REQUIRED: only that certificate passes)
    return context
