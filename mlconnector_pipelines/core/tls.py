"""TLS trust: the system store plus, per system, the customer's extra CA bundle. Never verify=False."""

from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path

from .errors import ConfigError


def untrusted_certificate(error: BaseException | str) -> bool:
    """Whether a connection failed because the server's certificate chain is not trusted."""
    text = str(error)
    return "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text


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


def pinned_ssl_context(host: str, port: int, sha256: str, *, what: str) -> ssl.SSLContext:
    """Trust exactly the certificate whose SHA-256 fingerprint the customer gave us.

    The server's certificate is fetched once and compared with the pin; it then becomes the only
    trust anchor, so every later connection is verified against it. The name it was issued to is not compared
    with the URL's host: the pin is its identity, and an on-premise server's certificate is often issued to
    the machine's name (CN=B1SERVER) while it is reached by address, which no other setting could then fix.
    """
    import hashlib

    expected = sha256.replace(":", "").lower()
    try:
        pem = ssl.get_server_certificate((host, port), timeout=30)
    except OSError as exc:
        raise ConfigError(f"{what}: could not fetch the certificate of {host}:{port} to check the pin: {exc}") from None
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
