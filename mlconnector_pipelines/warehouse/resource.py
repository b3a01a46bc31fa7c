"""The Dagster resource that hands steps a Warehouse; backends are imported only when selected."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from .base import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """Where extracted data lands. `duckdb` is the embedded default (a file under the data folder)."""

    backend: str = "duckdb"
    duckdb_path: str = "data/warehouse.duckdb"
    duckdb_memory_limit: str = "512MB"

    def open(self) -> Warehouse:
        if self.backend == "duckdb":
            from .duckdb_backend import DuckDBWarehouse
            return DuckDBWarehouse(Path(self.duckdb_path), memory_limit=self.duckdb_memory_limit)
        raise dg.DagsterInvariantViolationError(f"warehouse backend {self.backend!r} is not available")

    @property
    def kind(self) -> str:
        return self.backend
