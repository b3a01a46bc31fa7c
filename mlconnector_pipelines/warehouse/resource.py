"""The Dagster resource that hands steps a Warehouse; backends are imported only when selected."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import dagster as dg
from pydantic import Field

from ..core.secret_resource import SecretResource
from . import DUCKDB_DEFAULT_MEMORY_LIMIT
from .base import Warehouse


class WarehouseResource(SecretResource):
    """Where extracted data lands: `duckdb` (a file under the data folder, the default), `snowflake` or `bigquery`."""

    backend: str = "duckdb"
    duckdb_path: str = "data/warehouse.duckdb"
    duckdb_memory_limit: str = DUCKDB_DEFAULT_MEMORY_LIMIT
    backend_settings: dict = Field(default_factory=dict, description="The backend's section of connector.yaml.")
    staging_dir: Optional[str] = Field(None, description="Where loads stage their batches: <data_dir>/staging.")
    # `secret` (SecretResource): the Snowflake password or key passphrase.

    @classmethod
    def from_config(cls, cfg) -> "WarehouseResource":
        from ..config import ConnectorConfig
        assert isinstance(cfg, ConnectorConfig)
        w = cfg.warehouse
        fields = {"backend": w.backend, "duckdb_path": str(cfg.duckdb_path), "duckdb_memory_limit": w.duckdb_memory_limit,
                  "staging_dir": str(cfg.data_dir / "staging"),
                  **cls.secret_fields(None, cfg.data_dir)}
        if w.backend == "snowflake":
            # References to secrets (a variable's or credential's name) only; the value comes through `secret`.
            fields["backend_settings"] = w.snowflake.model_dump(mode="json", by_alias=True, exclude_none=True)
            fields.update(cls.secret_fields(w.snowflake.password or w.snowflake.private_key_passphrase, cfg.data_dir))
        elif w.backend == "bigquery":
            fields["backend_settings"] = w.bigquery.model_dump(mode="json", exclude_none=True)
        return cls(**fields)

    def open(self) -> Warehouse:
        warehouse = self._backend()
        warehouse.staging_root = Path(self.staging_dir) if self.staging_dir else None
        return warehouse

    def _backend(self):
        if self.backend == "duckdb":
            from .duckdb_backend import DuckDBWarehouse
            return DuckDBWarehouse(Path(self.duckdb_path), memory_limit=self.duckdb_memory_limit)
        if self.backend == "snowflake":
            from ..config import SnowflakeConfig
            from .snowflake_backend import SnowflakeWarehouse
            return SnowflakeWarehouse(SnowflakeConfig.model_validate(self.backend_settings), secret=self.optional_secret())
        if self.backend == "bigquery":
            from ..config import BigQueryConfig
            from .bigquery_backend import BigQueryWarehouse
            return BigQueryWarehouse(BigQueryConfig.model_validate(self.backend_settings))
        raise dg.DagsterInvariantViolationError(f"warehouse backend {self.backend!r} is not available")

    @property
    def kind(self) -> str:
        return self.backend
