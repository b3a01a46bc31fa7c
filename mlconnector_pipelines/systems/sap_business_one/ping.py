"""Can we log in to this Service Layer (trusting its certificate) and read the chart of accounts?"""

from __future__ import annotations

from pathlib import Path

from ...config import SapBusinessOneConfig
from ...core.credentials import CredentialError
from ...core.errors import AuthenticationError, ConfigError, RequestFailedError
from ...core.ping import PingResult, run_check
from .resource import SapBusinessOneResource
from .session import SYSTEM


def ping(cfg: SapBusinessOneConfig, data_dir: Path) -> PingResult:
    def read(client) -> str:
        accounts = client.http.get_json("ChartOfAccounts", params={"$select": "Code", "$top": "1"})["value"]
        trust = "pinned certificate" if cfg.pinned_sha256 else "CA bundle" if cfg.ca_bundle else "system CAs"
        return (f"logged in to {cfg.company_db} (Service Layer {client.version}, TLS: {trust}); "
                "chart of accounts readable" + ("" if accounts else " (but empty)"))

    return run_check(SYSTEM, cfg.base_url,
                     connect=lambda: SapBusinessOneResource.from_config(cfg, data_dir)
                     .process_config_and_initialize().client(),
                     authenticate=lambda client: client.session.auth_headers(),  # logs in
                     read=read, likely_fix=likely_fix)


def likely_fix(exc: Exception) -> str:
    text = str(exc)
    if "not trusted" in text or "CERTIFICATE_VERIFY_FAILED" in text:
        return ("TLS not trusted: set sap_business_one.ca_bundle to the server's certificate (self-signed servers) "
                "or sap_business_one.pinned_sha256 to its fingerprint")
    if "pinned" in text:
        return "update sap_business_one.pinned_sha256 if the certificate was renewed on purpose; otherwise investigate"
    if "likely fix:" in text:
        return text.split("likely fix:", 1)[1].strip()
    if isinstance(exc, CredentialError):
        return "store the password with `mlconnector credentials set <name>` or fix the credentials key"
    if isinstance(exc, ConfigError):
        return "fix connector.yaml as the message says"
    if isinstance(exc, (RequestFailedError, AuthenticationError)) and exc.status in (401, 403):
        return "the user lacks Service Layer access: check its licence and authorizations in SAP B1"
    return "check the host and port (Service Layer listens on 50000 by default) and that the service is running"
