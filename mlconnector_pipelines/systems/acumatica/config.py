"""The `acumatica:` section of connector.yaml: the site, how to sign in, what to load and what to post."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ...core.http import HttpPolicy
from ...core.journal_mapping import JournalMapping, ValueSource
from ...core.settings import PartitionConfig, SecretRef, Strict, https_url

_VERSION = re.compile(r"^\d{2}\.\d{3}\.\d{3}$")


class AcumaticaAuth(Strict):
    mode: Literal["oauth", "legacy"] = Field(
        "oauth",
        description="oauth: a Connected Application (password grant, refreshed); legacy: the cookie login "
        "Acumatica is retiring (always signed out, even when a run fails).",
    )
    client_id: str | None = Field(None, description="oauth: the Connected Application's client ID, <GUID>@<Tenant>.")
    client_secret: SecretRef | None = Field(None, description="oauth: the Connected Application's shared secret.")
    username: str = Field(description="The API user (each signed-in user counts against the licence).")
    password: SecretRef
    branch: str | None = Field(None, description="legacy: the branch to sign in to (default: the user's).")
    scope: str = Field("api offline_access", description="oauth: `offline_access` gives refresh tokens.")

    @model_validator(mode="after")
    def _oauth_needs_a_client(self) -> AcumaticaAuth:
        if self.mode == "oauth" and (self.client_id is None or self.client_secret is None):
            raise ValueError("mode: oauth needs client_id and client_secret (a Connected Application)")
        return self


class AcumaticaJournal(JournalMapping):
    """A GL journal transaction posted from a Looker query."""

    branch: ValueSource = Field(description="The branch of each line (BranchID), e.g. {constant: HQ}.")
    subaccount: ValueSource = Field(description="The subaccount of each line (segmented, e.g. 000-000).")
    ledger: str = Field("ACTUAL", description="LedgerID of the batch.")
    header_branch: str | None = Field(None, description="The batch's BranchID; default: the first line's.")
    release: bool = Field(False, description="Release the batch once it is verified (it is then read-only).")

    def looker_fields(self) -> list[str]:
        return super().looker_fields() + self.branch.fields() + self.subaccount.fields()


class ReferenceRecords(Strict):
    """Records of an Acumatica entity kept equal to a Looker result (e.g. approved vendors from a Look)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,29}$", description="The asset is acumatica/<name>.")
    description: str = ""
    looker_query: str = Field(description="The looker.queries entry whose rows are the records.")
    entity: str = Field(description="The Acumatica entity, e.g. Vendor.")
    key: str = Field(description="The entity's key field, matched to update a record (e.g. VendorID).")
    fields: dict[str, str] = Field(description="Acumatica field → Looker field, e.g. {VendorName: vendors.name}.")
    approval: Literal["automatic", "required"] = Field(
        "automatic", description="required: new Looker figures only preview the changes; a person materializes."
    )

    @model_validator(mode="after")
    def _key_is_mapped(self) -> ReferenceRecords:
        if self.key not in self.fields:
            raise ValueError(f"fields must map the key {self.key}")
        return self


class AcumaticaConfig(Strict):
    enabled: bool = True
    base_url: str = Field(
        description="The instance, e.g. https://acme.acumatica.com or https://erp.acme.com/AcumaticaERP (the site's path)."
    )
    endpoint: str = Field("Default", description="The contract-based endpoint's name.")
    version: str = Field(description="The endpoint version the site publishes, exactly, e.g. 24.200.001.")
    tenant: str = Field(description="The tenant (company) name.")
    auth: AcumaticaAuth
    ca_bundle: Path | None = Field(None, description="Extra CA bundle to trust for the site.")
    http: HttpPolicy = HttpPolicy()
    page_size: int = Field(1000, ge=1, le=20000, description="Records per slice of a window ($top guard).")
    entities: list[str] | None = Field(None, description="Entities to load; default all supported.")
    partitions: PartitionConfig
    journals: list[AcumaticaJournal] = Field(default_factory=list)
    reference_records: list[ReferenceRecords] = Field(default_factory=list)

    @field_validator("base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        value = https_url(value)
        if "/entity" in value:
            raise ValueError("give the instance URL without /entity/... (e.g. https://erp.acme.com/AcumaticaERP)")
        return value

    @field_validator("version")
    @classmethod
    def _version_shape(cls, value: str) -> str:
        if not _VERSION.match(value):
            raise ValueError("an endpoint version looks like 24.200.001")
        return value

    @model_validator(mode="after")
    def _unique(self) -> AcumaticaConfig:
        names = [j.name for j in self.journals] + [r.name for r in self.reference_records]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"journals and reference_records: name {', '.join(repeated)} appears more than once")
        return self

    @property
    def endpoint_url(self) -> str:
        return f"{self.base_url}/entity/{self.endpoint}/{self.version}"
