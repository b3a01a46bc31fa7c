"""Can we log in to this Service Layer (trusting its certificate) and read the chart of accounts?"""

from __future__ import annotations

from pathlib import Path

from ...core.errors import AuthenticationError, ConfigError, RequestFailedError
from ...core.ping import CONFIG_FIX, PingResult, known_fix, run_check
from ...core.tls import tls_fix
from .config import SapBusinessOneConfig
from .resource import SapBusinessOneResource, SapBusinessOneSession
from .session import SYSTEM


def ping(cfg: SapBusinessOneConfig, data_dir: Path) -> PingResult:
    resource = SapBusinessOneResource.from_section(cfg, data_dir)
    trust = "pinned certificate" if cfg.pinned_sha256 else "CA bundle" if cfg.ca_bundle else "system CAs"

    def read(session: SapBusinessOneSession) -> str:
        empty = []
        for db in cfg.company_dbs:  # each database is its own login
            accounts = session.client(db).http.get_json("ChartOfAccounts", params={"$select": "Code", "$top": "1"})
            if not accounts["value"]:
                empty.append(db)
        unstamped = _sets_without_update_date(session.client(cfg.company_dbs[0]), cfg)
        if unstamped:
            raise ConfigError(
                f"this Service Layer keeps no UpdateDate for {', '.join(unstamped)}: their changes cannot be read "
                "by window; remove them from sap_business_one.entities"
            )
        version = session.client(cfg.company_dbs[0]).version
        return (
            f"logged in to {', '.join(cfg.company_dbs)} (Service Layer {version}, TLS: {trust}); "
            "chart of accounts readable"
            + (f" (but empty in {', '.join(empty)})" if empty else "")
            + "; every configured set can be read by UpdateDate"
        )

    return run_check(
        SYSTEM,
        cfg.base_url,
        connect=resource.session,
        authenticate=lambda session: [
            session.client(db).session.auth_headers()  # logs in
            for db in cfg.company_dbs
        ],
        read=read,
        likely_fix=likely_fix,
    )


def _sets_without_update_date(client, cfg: SapBusinessOneConfig) -> list[str]:
    """The configured sets whose UpdateDate the server refuses in a filter (one light request each)."""
    from .catalog import select
    from .client import refuses_update_date

    refused = []
    for entity in select(cfg.entities):
        try:
            client.http.get_json(
                entity.entity_set,
                params={"$select": entity.key, "$filter": "UpdateDate ge '2000-01-01'", "$top": "1"},
            )
        except RequestFailedError as exc:
            if not refuses_update_date(exc):
                raise
            refused.append(entity.entity_set)
    return refused


def likely_fix(exc: Exception) -> str:
    tls = tls_fix(
        exc,
        unknown_issuer="TLS not trusted: set sap_business_one.ca_bundle to the server's certificate (self-signed "
        "servers) or sap_business_one.pinned_sha256 to its fingerprint",
    )
    if tls:
        return tls
    if isinstance(exc, ConfigError) and "UpdateDate" in str(exc):
        return "remove the sets named from sap_business_one.entities (SAP keeps no UpdateDate for them)"
    if isinstance(exc, ConfigError) and "pinned" in str(exc):
        return "update sap_business_one.pinned_sha256 if the certificate was renewed on purpose; otherwise investigate"
    fix = known_fix(exc)
    if fix:
        return fix
    if isinstance(exc, ConfigError):
        return CONFIG_FIX
    if isinstance(exc, (RequestFailedError, AuthenticationError)) and exc.status in (401, 403):
        return "the user lacks Service Layer access: check its licence and authorizations in SAP B1"
    return "check the host and port (Service Layer listens on 50000 by default) and that the service is running"
