"""The `business_central:` section of connector.yaml."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from ...core.http import HttpPolicy
from ...core.settings import PartitionConfig, Strict, https_url
from ..entra import EntraAppConfig


class BusinessCentralConfig(Strict):
    enabled: bool = True
    auth: EntraAppConfig
    api_base_url: str = Field("https://api.businesscentral.dynamics.com", description="BC API host.")
    environment: str = Field(description="BC environment name, part of every URL (e.g. production).")
    scope: str = "https://api.businesscentral.dynamics.com/.default"
    companies: list[str] = Field(
        default_factory=list, description="Company names or ids to load; empty loads every company."
    )
    entities: list[str] | None = Field(None, description="Entity sets to load; default all supported.")
    page_size: int = Field(5000, ge=1, le=20000, description="Prefer: odata.maxpagesize (BC allows 20,000).")
    concurrent_companies: int = Field(
        2,
        ge=1,
        le=5,
        description=(
            "Companies read at once within a step (BC works on 5 requests per user at a time and queues the rest)."
        ),
    )
    ca_bundle: Path | None = Field(None, description="Extra CA bundle to trust for the API host.")
    http: HttpPolicy = HttpPolicy()
    partitions: PartitionConfig

    @field_validator("api_base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        return https_url(value)
