"""`mlconnector ping`: one cheap authenticated read per configured system."""

from __future__ import annotations

import os

from .config import ConnectorConfig, SecretRef
from .core.ping import PingResult


def run_pings(cfg: ConnectorConfig) -> list[PingResult]:
    results: list[PingResult] = []
    if cfg.business_central is not None and cfg.business_central.enabled:
        from .systems.business_central.client import SYSTEM
        from .systems.business_central.ping import ping
        from .systems.business_central.resource import BusinessCentralResource
        bc = cfg.business_central
        missing = _missing_env(bc.auth.client_secret)
        if missing:
            results.append(PingResult(SYSTEM, bc.api_base_url, auth_ok=False, read_ok=None, latency_ms=0.0,
                                      detail=f"environment variable {missing} (the client secret) is not set",
                                      fix=f"export {missing}=<secret value>, or store it with "
                                          "`mlconnector credentials set` and reference it as `credential:`"))
        else:
            resource = BusinessCentralResource.from_config(bc, cfg.data_dir)
            results.append(ping(resource.process_config_and_initialize()))
    if cfg.sap_business_one is not None and cfg.sap_business_one.enabled:
        from .systems.sap_business_one.ping import ping as ping_sap
        results.append(ping_sap(cfg.sap_business_one, cfg.data_dir))
    return results


def _missing_env(ref: SecretRef) -> str | None:
    if ref.env and not os.environ.get(ref.env) and not ref.sandbox_default:
        return ref.env
    return None
