"""`mlconnector ping`: one cheap authenticated read per configured system."""

from __future__ import annotations

from .config import ConnectorConfig
from .core.ping import PingResult
from .core.settings import SecretRef
from .systems.registry import enabled_sections


def run_pings(cfg: ConnectorConfig) -> list[PingResult]:
    from .warehouse.ping import ping as ping_warehouse

    results: list[PingResult] = [ping_warehouse(cfg)]
    for spec, section in enabled_sections(cfg):
        unset = next(
            (
                r
                for r in (
                    _unset_secret(spec.title, spec.url(section), ref, what) for ref, what in spec.secrets(section)
                )
                if r is not None
            ),
            None,
        )
        results.append(unset or spec.ping(section, cfg.data_dir))
    return results


def _unset_secret(system: str, url: str, ref: SecretRef, what: str) -> PingResult | None:
    """A failed result when the secret's environment variable is missing."""
    variable = ref.missing_env()
    if variable is None:
        return None
    return PingResult(
        system,
        url,
        auth_ok=False,
        read_ok=None,
        latency_ms=0.0,
        detail=f"environment variable {variable} ({what}) is not set",
        fix=f"export {variable}=<value>, or store it with `mlconnector credentials set` "
        "and reference it as `credential:`",
    )
