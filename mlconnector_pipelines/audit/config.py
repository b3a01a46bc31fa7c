"""The `audit:` section of connector.yaml: where the audit store lives."""

from __future__ import annotations

from pydantic import Field

from ..core.settings import SecretRef, Strict


class AuditConfig(Strict):
    store_url: SecretRef | None = Field(
        None,
        description="SQLAlchemy URL of the audit database (e.g. postgresql+psycopg2://…); default: a SQLite file "
        "<data_dir>/audit.sqlite. A deployment whose steps run on several machines needs a shared database.",
    )
