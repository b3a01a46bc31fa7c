"""The Dagster resource that hands steps a Warehouse; backends are imported only when selected."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from .base import Warehouse
from .config import WarehouseConfig


class WarehouseResource(dg.ConfigurableResource):
    """Where extracted data lands: `duckdb` (a file under the data folder, the default), `snowflake` or `bigquery`.

    Holds connector.yaml's `warehouse:` section (JSON; every setting is declared in its model) and the data folder."""

    settings: str = Field(description="connector.yaml's warehouse section as JSON, validated by WarehouseConfig.")
    data_dir: str = Field(description="The data folder: the DuckDB file by default, staging, the credential store.")

    @classmethod
    def from_config(cls, cfg) -> WarehouseResource:
        return cls(settings=cfg.warehouse.model_dump_json(by_alias=True), data_dir=str(cfg.data_dir))

    @property
    def section(self) -> WarehouseConfig:
        return WarehouseConfig.model_validate_json(self.settings)

    @property
    def duckdb_path(self) -> Path:
        return self.section.duckdb_path or Path(self.data_dir) / "warehouse.duckdb"

    def open(self, *, lock_wait_seconds: float | None = None) -> Warehouse:
        """The configured warehouse. `lock_wait_seconds`: how long a DuckDB file locked by another process is waited
        for (by default a step's wait, long enough for another step's swap)."""
        warehouse = self._backend(lock_wait_seconds)
        warehouse.staging_root = Path(self.data_dir) / "staging"
        return warehouse

    def _backend(self, lock_wait_seconds: float | None):
        cfg = self.section
        if cfg.backend == "duckdb":
            from .duckdb_backend import DuckDBWarehouse

            waits = {} if lock_wait_seconds is None else {"lock_timeout_seconds": lock_wait_seconds}
            return DuckDBWarehouse(self.duckdb_path, memory_limit=cfg.duckdb_memory_limit, **waits)
        if cfg.backend == "snowflake":
            from .snowflake_backend import SnowflakeWarehouse

            ref = cfg.snowflake.password or cfg.snowflake.private_key_passphrase
            secret = ref.resolve(Path(self.data_dir), "warehouse.snowflake's secret") if ref else None
            return SnowflakeWarehouse(cfg.snowflake, secret=secret)
        if cfg.backend == "bigquery":
            from .bigquery_backend import BigQueryWarehouse

            return BigQueryWarehouse(cfg.bigquery)
        raise dg.DagsterInvariantViolationError(f"warehouse backend {cfg.backend!r} is not available")

    @property
    def kind(self) -> str:
        return self.section.backend
