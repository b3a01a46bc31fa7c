"""The `finance_operations:` section of connector.yaml: the environment and the journals posted into it."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from ...core.http import HttpPolicy
from ...core.journal_mapping import JournalMapping, ValueSource
from ...core.settings import Strict, https_url
from ..entra import EntraAppConfig


class FinanceOperationsJournal(JournalMapping):
    """A general journal posted from a Looker query into one legal entity."""

    legal_entity: str = Field(description="dataAreaId of the legal entity, e.g. usmf.")
    journal_name: str = Field(description="The journal name (JournalNames), e.g. GenJrn.")
    dimensions: dict[str, ValueSource] = Field(
        default_factory=dict,
        description="Financial dimension name → its value per line (Looker field, constant or mapping); they are "
        "written in the order of the ledger dimension integration format.",
    )

    @field_validator("legal_entity")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()  # F&O answers dataAreaId in lower case

    def looker_fields(self) -> list[str]:
        return super().looker_fields() + [f for source in self.dimensions.values() for f in source.fields()]


class FinanceOperationsConfig(Strict):
    enabled: bool = True
    auth: EntraAppConfig
    environment_url: str = Field(
        description="The environment, e.g. https://contoso.operations.dynamics.com: the token's audience, exactly "
        "(lower case, no trailing slash, no /data)."
    )
    api_base_url: str | None = Field(
        None, description="Where requests go when it is not environment_url (a proxy, or the sandbox)."
    )
    ca_bundle: Path | None = Field(None, description="Extra CA bundle to trust for the API host.")
    http: HttpPolicy = HttpPolicy()
    page_size: int = Field(5000, ge=1, le=10000, description="Prefer: odata.maxpagesize (F&O pages at most 10,000).")
    lines_per_batch: int = Field(
        1000, ge=1, le=5000, description="Journal lines per atomic $batch changeset (F&O takes 5,000 per batch)."
    )
    batches_in_flight: int = Field(
        1,
        ge=1,
        le=8,
        description="Line changesets under way at once. More than one only for journal names that allocate "
        "voucher numbers at posting: F&O gives a line its voucher from the journal's running balance as it "
        "saves it, and changesets saved side by side each see their own, so a journal's vouchers could fail to "
        "balance and the journal not post.",
    )
    ledger_dimension_format: list[str] | None = Field(
        None,
        description="The segments of a ledger account display value in order, e.g. [MainAccount, Department, "
        "CostCenter]; default: the active ledger dimension integration format read from the environment.",
    )
    segment_delimiter: str | None = Field(
        None, description="Between segments of a display value; default: the environment's (usually '-')."
    )
    journals: list[FinanceOperationsJournal] = Field(default_factory=list)

    @field_validator("environment_url")
    @classmethod
    def _audience(cls, value: str) -> str:
        value = https_url(value)
        if value.endswith("/data"):
            raise ValueError("give the environment URL without /data (it is the token audience)")
        if value != value.lower():
            raise ValueError("must be lower case: F&O refuses a token whose audience differs in case")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        return https_url(value) if value is not None else None

    @model_validator(mode="after")
    def _unique_names(self) -> FinanceOperationsConfig:
        names = [j.name for j in self.journals]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"journals: name {', '.join(repeated)} appears more than once")
        return self

    @property
    def scope(self) -> str:
        return f"{self.environment_url}/.default"

    @property
    def api_url(self) -> str:
        return self.api_base_url or self.environment_url
