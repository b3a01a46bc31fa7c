"""The `sap_business_one:` section of connector.yaml."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from ...core.http import HttpPolicy
from ...core.settings import PartitionConfig, SecretRef, Strict, time_zone


class SapBusinessOneConfig(Strict):
    enabled: bool = True
    base_url: str = Field(description="Service Layer root, e.g. https://b1.example.com:50000/b1s/v1 (or /b1s/v2).")
    company_db: str | list[str] = Field(
        description=(
            "The company database (CompanyDB), e.g. SBODEMOUS, or several: each is a company, with its own "
            "session, loaded into the same tables with the database name as `_company_id`."
        )
    )
    username: str
    password: SecretRef
    ca_bundle: Path | None = Field(None, description="The server's (self-signed) certificate or its CA.")
    pinned_sha256: str | None = Field(
        None,
        pattern=r"^([0-9A-Fa-f]{2}:?){32}$",
        description="Alternatively, the SHA-256 fingerprint of the server certificate.",
    )
    page_size: int = Field(500, ge=1, le=5000, description="Prefer: odata.maxpagesize (the server default is 20).")
    server_timezone: str = Field("UTC", description="Time zone of UpdateDate/UpdateTime on the server.")
    entities: list[str] | None = Field(None, description="Entity sets to load; default all supported.")
    http: HttpPolicy = HttpPolicy()
    partitions: PartitionConfig

    @field_validator("server_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return time_zone(value)

    @field_validator("company_db")
    @classmethod
    def _company_dbs(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        if not names or any(not n for n in names) or len(set(names)) != len(names):
            raise ValueError("give one company database, or a list of distinct ones")
        return value

    @property
    def company_dbs(self) -> list[str]:
        return [self.company_db] if isinstance(self.company_db, str) else list(self.company_db)
