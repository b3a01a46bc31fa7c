"""`mlconnector ping`: one cheap authenticated read per configured system."""

from __future__ import annotations

from .config import ConnectorConfig, SecretRef
from .core.ping import PingResult


def run_pings(cfg: ConnectorConfig) -> list[PingResult]:
    from .warehouse.ping import ping as ping_warehouse

    results: list[PingResult] = [ping_warehouse(cfg)]
    bc, sap = cfg.business_central, cfg.sap_business_one
    if bc is not None and bc.enabled:
        from .systems.business_central.client import SYSTEM
        from .systems.business_central.ping import ping
        from .systems.business_central.resource import BusinessCentralResource
        results.append(_unset_secret(SYSTEM, bc.api_base_url, bc.auth.client_secret, "the client secret") or
                       ping(BusinessCentralResource.from_config(bc, cfg.data_dir).process_config_and_initialize()))
    if sap is not None and sap.enabled:
        from .systems.sap_business_one.ping import ping as ping_sap
        from .systems.sap_business_one.session import SYSTEM as SAP
        results.append(_unset_secret(SAP, sap.base_url, sap.password, "the password") or ping_sap(sap, cfg.data_dir))
    looker = cfg.looker
    if looker is not None and looker.enabled:
        from .systems.looker.ping import ping as ping_looker
        from .systems.looker.session import SYSTEM as LOOKER
        results.append(_unset_secret(LOOKER, looker.base_url, looker.client_secret, "the API3 client secret")
                       or ping_looker(looker, cfg.data_dir))
    return results


def _unset_secret(system: str, url: str, ref: SecretRef, what: str) -> PingResult | None:
    """A failed result when the secret's environment variable is missing (Dagster would refuse to start)."""
    variable = ref.missing_env()
    if variable is None:
        return None
    return PingResult(system, url, auth_ok=False, read_ok=None, latency_ms=0.0,
                      detail=f"environment variable {variable} ({what}) is not set",
                      fix=f"export {variable}=<value>, or store it with `mlconnector credentials set` "
                          "and reference it as `credential:`")
