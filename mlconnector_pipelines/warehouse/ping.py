"""Can we reach the configured warehouse and run a query there?"""

from __future__ import annotations

from ..core.ping import CONFIG_FIX, PingResult, known_fix, run_check
from .resource import WarehouseResource

SYSTEM = "Warehouse"
# A DuckDB file another process holds (a DuckDB CLI or notebook left open, a step writing) is that row's answer: a
# step waits minutes for the lock, a person waiting for the ping does not.
LOCK_WAIT_SECONDS = 3.0


class _Opened:
    """run_check closes what it connects; a Warehouse opens a connection per call and holds none."""

    def __init__(self, resource: WarehouseResource):
        self.warehouse = resource.open(lock_wait_seconds=LOCK_WAIT_SECONDS)

    def close(self) -> None:
        pass


def title(cfg) -> str:
    """The warehouse's row in the ping table."""
    return f"{SYSTEM} ({cfg.warehouse.backend})"


def where(cfg) -> str:
    """Where the warehouse is, as ping shows it."""
    w = cfg.warehouse
    return {
        "duckdb": str(cfg.duckdb_path),
        "snowflake": w.snowflake and f"{w.snowflake.account}/{w.snowflake.database}.{w.snowflake.schema_name}",
        "bigquery": w.bigquery and f"{w.bigquery.project}.{w.bigquery.dataset}",
    }[w.backend]


def ping(cfg) -> PingResult:
    def read(opened: _Opened) -> str:
        return f"{cfg.warehouse.backend}: queries run"

    return run_check(
        title(cfg),
        where(cfg),
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
