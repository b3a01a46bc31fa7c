"""The `warehouse:` section of connector.yaml: DuckDB (default), Snowflake or BigQuery."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from ..core.settings import SecretRef, Strict
from . import DUCKDB_DEFAULT_MEMORY_LIMIT


class SnowflakeConfig(Strict):
    account: str = Field(description="Account identifier, e.g. myorg-myaccount.")
    user: str
    password: SecretRef | None = Field(None, description="Password; or use private_key_file (key-pair auth).")
    private_key_file: Path | None = Field(None, description="PEM private key of the user (key-pair auth).")
    private_key_passphrase: SecretRef | None = None
    role: str | None = None
    warehouse: str | None = Field(None, description="The virtual warehouse (compute) to run the loads on.")
    database: str
    schema_name: str = Field("PUBLIC", alias="schema", description="Schema the tables are created in.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_auth(self) -> SnowflakeConfig:
        if (self.password is None) == (self.private_key_file is None):
            raise ValueError("give exactly one of password or private_key_file")
        return self


class BigQueryConfig(Strict):
    project: str = Field(description="Google Cloud project that owns the dataset and runs the jobs.")
    dataset: str = Field(pattern=r"^[A-Za-z0-9_]{1,1024}$", description="Dataset the tables are created in.")
    location: str = Field("US", description="Dataset location, e.g. EU or europe-west3.")
    credentials_file: Path | None = Field(
        None, description="Service-account key file; default: Application Default Credentials."
    )
    api_endpoint: str | None = Field(None, description="Only for a local emulator or fake of the BigQuery API.")


class WarehouseConfig(Strict):
    backend: Literal["duckdb", "snowflake", "bigquery"] = "duckdb"
    duckdb_path: Path | None = Field(None, description="DuckDB file; default <data_dir>/warehouse.duckdb.")
    duckdb_memory_limit: str = Field(
        DUCKDB_DEFAULT_MEMORY_LIMIT,
        pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB)$",
        description=(
            "DuckDB's memory budget per connection; beyond it DuckDB spills to disk. The default keeps a "
            "step of 1M G/L entries under 500 MB; more makes large backfills' swaps faster."
        ),
    )
    snowflake: SnowflakeConfig | None = None
    bigquery: BigQueryConfig | None = None

    @model_validator(mode="after")
    def _backend_settings(self) -> WarehouseConfig:
        if self.backend in ("snowflake", "bigquery") and getattr(self, self.backend) is None:
            raise ValueError(f"backend {self.backend} needs a `{self.backend}:` section")
        return self
