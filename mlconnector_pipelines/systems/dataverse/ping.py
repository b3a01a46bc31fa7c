"""Can we get a token for this organisation, are we an Application User there, and can we read what the flow reads?"""

from __future__ import annotations

from pathlib import Path

from ...core.errors import AuthenticationError, ConfigError, RequestFailedError
from ...core.ping import CONFIG_FIX, PingResult, known_fix, run_check
from ...core.tls import tls_fix
from .client import SYSTEM
from .config import DataverseConfig
from .resource import DataverseResource
from .sales import TRIGGER_TABLES

NOT_AN_APPLICATION_USER = (
    "add the app as an Application User in the Power Platform admin center (Environment > Settings > Users + "
    "permissions > Application users) with a security role that reads opportunities, quotes and orders and writes "
    "the write-back columns"
)
# Dataverse's "the table does not have change tracking enabled" (and its decimal form).
NO_CHANGE_TRACKING = {"0x80072491", "-2147015535"}


def ping(cfg: DataverseConfig, data_dir: Path) -> PingResult:
    resource = DataverseResource.from_section(cfg, data_dir)
    sync = cfg.sales_to_business_central

    def read(client) -> str:
        me = client.who_am_i()
        tables = [TRIGGER_TABLES[t] for t in sync.triggers] if sync is not None and sync.enabled else []
        for table in tables:  # the sensor reads them by change tracking: it must be on
            try:
                client.http.request(
                    "GET", f"/{table.entity_set}", params={"$select": table.key},
                    headers={"Prefer": "odata.track-changes, odata.maxpagesize=1"},
                )  # fmt: skip
            except RequestFailedError as exc:
                if exc.code in NO_CHANGE_TRACKING:
                    raise RequestFailedError(
                        SYSTEM,
                        f"change tracking is off for {table.entity_set}",
                        status=exc.status,
                        code=exc.code,
                        fix=f"turn on 'Track changes' for the {table.entity_set} table (Power Apps > Tables > "
                        "Properties > Advanced options)",
                    ) from None
                raise
        checked = f"; change tracking on for {', '.join(t.entity_set for t in tables)}" if tables else ""
        return f"application user {me.get('UserId')} in organisation {me.get('OrganizationId')}{checked}"

    return run_check(
        SYSTEM,
        cfg.api_url,
        connect=resource.client,
        authenticate=lambda client: client.tokens.access_token(),
        read=read,
        likely_fix=likely_fix,
    )


def likely_fix(exc: Exception) -> str:
    tls = tls_fix(
        exc,
        unknown_issuer="TLS not trusted: set dataverse.ca_bundle (or auth.ca_bundle) to the CA that signed the server",
    )
    if tls:
        return tls
    fix = known_fix(exc)
    if fix:
        return fix
    if isinstance(exc, ConfigError):
        return CONFIG_FIX
    if isinstance(exc, (RequestFailedError, AuthenticationError)) and exc.status == 401:
        return (
            "Dataverse refused the token: dataverse.org_url must be exactly the organisation's URL (it is the "
            "token's audience, e.g. https://contoso.crm.dynamics.com)"
        )
    if isinstance(exc, RequestFailedError) and exc.status == 403:
        return NOT_AN_APPLICATION_USER
    if isinstance(exc, RequestFailedError) and exc.status == 404:
        return "no Web API at this address: check dataverse.org_url and api_version (v9.2)"
    text = str(exc)
    if "ConnectError" in text or "could not be completed" in text or "could not reach" in text:
        return "the host is not reachable: check org_url, DNS, proxy and firewall (sandbox: is it running?)"
    return "see the message; retry later if the service reported a temporary problem"
