"""Can we sign in to this Acumatica site, read an account, and is the endpoint version one it publishes?"""

from __future__ import annotations

from pathlib import Path

from ...core.errors import AuthenticationError, ConfigError, RequestFailedError
from ...core.ping import CONFIG_FIX, PingResult, known_fix, run_check
from ...core.tls import tls_fix
from .auth import SYSTEM
from .config import AcumaticaConfig
from .resource import AcumaticaResource


def ping(cfg: AcumaticaConfig, data_dir: Path) -> PingResult:
    resource = AcumaticaResource.from_section(cfg, data_dir)

    def read(client) -> str:
        client.check_version()
        accounts = client.records("Account", top=1, select=["AccountCD"])
        if not accounts:
            raise ConfigError("acumatica: the Account list is empty (no chart of accounts?)")
        return f"{cfg.endpoint}/{cfg.version} published; account {accounts[0]['AccountCD']} read as {cfg.auth.username}"

    return run_check(
        SYSTEM,
        cfg.endpoint_url,
        connect=resource.client,
        authenticate=lambda client: client.auth.auth_headers(),
        read=read,
        likely_fix=likely_fix,
    )


def likely_fix(exc: Exception) -> str:
    tls = tls_fix(
        exc,
        unknown_issuer="TLS not trusted: set acumatica.ca_bundle to the CA that signed the site's certificate",
    )
    if tls:
        return tls
    fix = known_fix(exc)
    if fix:
        return fix
    if isinstance(exc, ConfigError):
        return CONFIG_FIX
    if isinstance(exc, (RequestFailedError, AuthenticationError)) and exc.status in (401, 403):
        return "the user lacks access to the API or to these forms: check its roles and the Connected Application"
    text = str(exc)
    if "ConnectError" in text or "could not be completed" in text or "could not reach" in text:
        return "the site is not reachable: check acumatica.base_url (with the site's path), DNS, proxy and firewall"
    return "see the message; retry later if the site reported a temporary problem"
