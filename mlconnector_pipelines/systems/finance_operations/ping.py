"""Can we get a token for this F&O environment, read its main accounts, and find what the journals need?"""

from __future__ import annotations

from pathlib import Path

from ...core.errors import AuthenticationError, ConfigError, RequestFailedError
from ...core.ping import CONFIG_FIX, PingResult, known_fix, run_check
from ...core.tls import tls_fix
from .client import SYSTEM, literal
from .config import FinanceOperationsConfig
from .resource import FinanceOperationsResource

NOT_REGISTERED = (
    "register the app in F&O: System administration > Setup > Microsoft Entra applications, its client id with a "
    "user that has the roles the journals need"
)


def ping(cfg: FinanceOperationsConfig, data_dir: Path) -> PingResult:
    resource = FinanceOperationsResource.from_section(cfg, data_dir)

    def read(client) -> str:
        account = client.first("MainAccounts", select=["MainAccountId", "ChartOfAccounts"])
        if account is None:
            raise ConfigError("finance_operations: MainAccounts is empty (no chart of accounts?)")
        ledgers = {str(r.get("LegalEntityId") or "").lower() for r in client.collection("Ledgers")}
        wanted = sorted({j.legal_entity for j in cfg.journals})
        missing = [le for le in wanted if le not in ledgers]
        if missing:
            raise ConfigError(
                f"finance_operations.journals: legal entit{'y' if len(missing) == 1 else 'ies'} "
                f"{', '.join(missing)} not found (have: {', '.join(sorted(ledgers))})"
            )
        for legal_entity in wanted:
            names = {
                str(r["Name"])
                for r in client.collection(
                    "JournalNames", filter=f"dataAreaId eq {literal(legal_entity)}", select=["Name"], cross_company=True
                )
            }
            absent = sorted({j.journal_name for j in cfg.journals if j.legal_entity == legal_entity} - names)
            if absent:
                raise ConfigError(
                    f"finance_operations.journals: journal name {', '.join(absent)} not found in {legal_entity} "
                    f"(have: {', '.join(sorted(names)) or 'none'})"
                )
        checked = f"; legal entities {', '.join(wanted)} and their journal names found" if wanted else ""
        return f"main account {account['MainAccountId']} read (chart {account['ChartOfAccounts']}){checked}"

    return run_check(
        SYSTEM,
        f"{cfg.api_url}/data",
        connect=resource.client,
        authenticate=lambda client: client.tokens.access_token(),
        read=read,
        likely_fix=likely_fix,
    )


def likely_fix(exc: Exception) -> str:
    text = str(exc)
    tls = tls_fix(
        exc,
        unknown_issuer="TLS not trusted: set finance_operations.ca_bundle (or auth.ca_bundle) to the CA that signed "
        "the server",
    )
    if tls:
        return tls
    fix = known_fix(exc)
    if fix:
        return fix
    if isinstance(exc, ConfigError):
        return CONFIG_FIX
    if isinstance(exc, (RequestFailedError, AuthenticationError)) and exc.status == 401:
        if "Authentication failed" in text:
            return NOT_REGISTERED
        return (
            "F&O refused the token: finance_operations.environment_url must be exactly the environment's URL (lower "
            f"case, no trailing slash) — it is the token's audience; otherwise {NOT_REGISTERED}"
        )
    if isinstance(exc, RequestFailedError) and exc.status == 403:
        return "the user mapped to the app in Microsoft Entra applications lacks a security role for these entities"
    if isinstance(exc, RequestFailedError) and exc.status == 404:
        return "no F&O data API at this address: check finance_operations.environment_url (the environment host)"
    if "ConnectError" in text or "could not be completed" in text or "could not reach" in text:
        return "the host is not reachable: check environment_url, DNS, proxy and firewall (sandbox: is it running?)"
    return "see the message; retry later if the service reported a temporary problem"
