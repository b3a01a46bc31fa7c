"""The `ingest:` section of connector.yaml: how the delivery receiver stores what it receives."""

from __future__ import annotations

from pydantic import Field

from ..core.settings import SecretRef, Strict


class IngestConfig(Strict):
    store_url: SecretRef | None = Field(
        None,
        description="SQLAlchemy URL of a database for received deliveries (e.g. postgresql+psycopg2://…), "
        "for deployments where the receiver and Dagster share no disk; default: files in data_dir.",
    )
    max_body_mb: int = Field(200, ge=1, le=4096, description="Largest delivery body accepted (413 beyond it).")
    retention_days: int = Field(30, ge=1, description="Stored deliveries older than this are removed.")
    quota_mb: int = Field(
        2048,
        ge=1,
        description="Most space stored deliveries may take; a delivery past it is "
        "refused (507) until old ones age out.",
    )
