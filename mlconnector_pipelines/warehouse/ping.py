"""Can we reach the configured warehouse and run a query there?"""

from __future__ import annotations

from ..core.ping import CONFIG_FIX, PingResult, known_fix, run_check
from .resource import WarehouseResource

SYSTEM = "Warehouse"


class _Opened:
    """run_check closes what it connects; a Warehouse opens a connection per call and holds none."""

    def __init__(self, resource: WarehouseResource):
        self.warehouse = resource.open()

    def close(self) -> None:
        pass


def ping(cfg) -> PingResult:
    w = cfg.warehouse
    where = {
        "duckdb": str(cfg.duckdb_path),
        "snowflake": w.snowflake and f"{w.snowflake.account}/{w.snowflake.database}.{w.snowflake.schema_name}",
        "bigquery": w.bigquery and f"{w.bigquery.project}.{w.bigquery.dataset}",
    }[w.backend]

    def read(opened: _Opened) -> str:
        return f"{w.backend}: queries run"

    return run_check(
        f"{SYSTEM} ({w.backend})",
        where,
        connect=lambda: _Opened(WarehouseResource.from_config(cfg)),
        authenticate=lambda opened: opened.warehouse.query("SELECT 1"),
        read=read,
        likely_fix=likely_fix,
    )


def likely_fix(exc: Exception) -> str:
    fix = known_fix(exc)
    if fix:
        return fix
    text = str(exc).lower()
    if "password" in text or "authenticat" in text or "credential" in text:
        return "check the warehouse user and its secret (warehouse.snowflake / warehouse.bigquery in connector.yaml)"
    if "permission" in text or "denied" in text or "not authorized" in text:
        return "grant the user CREATE TABLE and INSERT/DELETE on the configured schema or dataset"
    return CONFIG_FIX
