"""Can we log in to this Business Central and read the configured companies?"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from ...core.errors import AuthenticationError, ConfigError, RequestFailedError
from ...core.ping import CONFIG_FIX, PingResult, known_fix, run_check
from ...core.tls import tls_fix
from .client import SYSTEM
from .config import BusinessCentralConfig
from .resource import BusinessCentralResource


def ping(cfg: BusinessCentralConfig, data_dir: Path) -> PingResult:
    resource = BusinessCentralResource.from_section(cfg, data_dir)

    def read(client) -> str:
        companies = client.resolve_companies(cfg.companies)
        found = f"{len(companies)} compan{'y' if len(companies) == 1 else 'ies'}: " + ", ".join(
            c["name"] for c in companies
        )
        if cfg.notifications is not None:
            found += "; " + subscription_state(client, companies)
        return found

    def subscription_state(client, companies: list[dict]) -> str:
        """How many of the wanted change-notification subscriptions exist, and when the first one lapses."""
        from ...flows.business_central_notifications import subscribed_entities
        from .catalog import select
        from .notifications import Subscriptions

        entities = subscribed_entities(cfg, select(cfg.entities))
        wanted = len(companies) * len(entities)
        subscriptions = Subscriptions(client, cfg.notifications.notification_url, "", [], timedelta(0))
        ours = subscriptions.ours(subscriptions.listed())
        expiries = sorted(s["expirationDateTime"] for s in ours.values() if s.get("expirationDateTime"))
        state = f"change notifications: {len(ours)} of {wanted} subscriptions"
        if expiries:
            state += f", the first expires {expiries[0]}"
        if len(ours) < wanted:
            state += " (run the job business_central_subscriptions, with `mlconnector ingest` reachable)"
        return state

    return run_check(
        SYSTEM,
        f"{cfg.api_base_url}/v2.0/{cfg.auth.tenant_id}/{cfg.environment}/api/v2.0",
        connect=resource.client,
        authenticate=lambda client: client.tokens.access_token(),
        read=read,
        likely_fix=likely_fix,
    )


def likely_fix(exc: Exception) -> str:
    text = str(exc)
    tls = tls_fix(
        exc,
        unknown_issuer="TLS not trusted: set business_central.ca_bundle (or auth.ca_bundle) to the CA that signed the "
        "server",
    )
    if tls:
        return tls
    fix = known_fix(exc)
    if fix:
        return fix
    if isinstance(exc, ConfigError):
        return (
            "set business_central.companies to names or ids from the list above" if "companies" in text else CONFIG_FIX
        )
    if isinstance(exc, RequestFailedError) and "Environment" in text:
        return "business_central.environment must match the environment name in the BC admin center"
    if isinstance(exc, (RequestFailedError, AuthenticationError)) and exc.status in (401, 403):
        return (
            "register the app in Business Central (Microsoft Entra Applications), enable it and give it "
            "permission sets, and grant the API permission with admin consent"
        )
    if "ConnectError" in text or "could not be completed" in text or "could not reach" in text:
        return "the host is not reachable: check the URL, DNS, proxy and firewall (for the sandbox: is it running?)"
    return "see the message; retry later if the service reported a temporary problem"
