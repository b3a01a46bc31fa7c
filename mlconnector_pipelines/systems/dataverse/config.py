"""The `dataverse:` section of connector.yaml: a Dynamics 365 Sales organisation, and what it feeds into BC."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ...core.http import HttpPolicy
from ...core.settings import SecretRef, Strict, https_url
from ..entra import EntraAppConfig
from .tables import TABLES

# Which Sales records start a BC document, and in which states (api-notes §6).
Trigger = Literal["won_opportunities", "won_quotes", "orders"]


class ItemMapping(Strict):
    """A Sales product → a BC item number."""

    map: dict[str, str] = Field(
        default_factory=dict, description="Sales productnumber → BC item number, where they differ."
    )
    same_number: bool = Field(
        True, description="A product not in `map` is the BC item with the same number (when that item exists)."
    )


class WriteBack(Strict):
    """Columns of the Sales order (or quote) that receive what BC made of it. Custom columns: create them in
    Sales with your publisher's prefix; leave one out (null) to write nothing there."""

    order_number: str | None = Field("mlc_bcordernumber", description="The BC sales order or draft invoice number.")
    invoice_number: str | None = Field("mlc_bcinvoicenumber", description="The posted BC invoice number.")
    status: str | None = Field("mlc_bcstatus", description="Where the document stands in BC (Draft, Open, Paid…).")


class WebhookAuth(Strict):
    """How Dataverse authenticates its webhook calls to `mlconnector ingest` (the service endpoint's authtype)."""

    type: Literal["webhook_key", "http_header", "http_query_string"] = Field(
        "webhook_key",
        description="webhook_key: Dataverse appends ?code=<key>; http_header / http_query_string: the pair "
        "configured on the service endpoint.",
    )
    name: str = Field("code", description="The header or query parameter that carries the key.")
    key: SecretRef = Field(description="The value Dataverse sends (the service endpoint's authvalue).")


class SalesToBusinessCentral(Strict):
    """Won deals in Sales → BC customers and sales orders (or draft invoices), invoice numbers back to Sales."""

    enabled: bool = True
    company: str = Field(description="The BC company (name or id) the documents go to.")
    triggers: list[Trigger] = Field(
        default_factory=lambda: ["won_opportunities", "won_quotes", "orders"],
        description="Sales records that start a BC document. One deal (opportunity → quote → order) makes one BC "
        "document whichever of them is seen first.",
    )
    document: Literal["sales_order", "draft_invoice"] = Field("sales_order", description="What a deal becomes in BC.")
    post_invoices: Literal["never", "when_fulfilled", "confirmed"] = Field(
        "confirmed",
        description="When a draft invoice is posted: never (people post in BC), when_fulfilled (the Sales order "
        "reaches Fulfilled or Invoiced), or confirmed (a person confirms it in the Dagster UI: job "
        "post_confirmed_sales_invoices).",
    )
    items: ItemMapping = ItemMapping()
    payment_terms: dict[int, str] = Field(
        default_factory=dict, description="Sales paymenttermscode option value → BC payment terms code."
    )
    customers: dict[str, str] = Field(
        default_factory=dict,
        description="Sales account (its id or account number) → an existing BC customer number, for customers "
        "that exist in both systems under different numbers.",
    )
    customer_number_prefix: str = Field(
        "D365-",
        max_length=8,
        description="A Sales account without an account number becomes BC customer <prefix><its id without hyphens>, "
        "cut to the 20 characters BC's customer number holds (D365- and 15 of the id).",
    )
    write_back: WriteBack = WriteBack()
    poll_seconds: int = Field(60, ge=15, description="How often the sensor asks Sales for changes.")
    sync_existing: bool = Field(
        False,
        description="On the sensor's first read, also sync deals already won (else only what changes from then on).",
    )


class DataverseConfig(Strict):
    enabled: bool = True
    auth: EntraAppConfig
    org_url: str = Field(
        description="The organisation, e.g. https://contoso.crm.dynamics.com: the token's audience, exactly."
    )
    api_base_url: str | None = Field(
        None, description="Where requests go when it is not org_url (a proxy, the sandbox)."
    )
    api_version: str = Field("v9.2", pattern=r"^v9\.\d$", description="Web API version in the path.")
    ca_bundle: Path | None = Field(None, description="Extra CA bundle to trust for the API host.")
    http: HttpPolicy = HttpPolicy()
    page_size: int = Field(
        1000, ge=1, le=5000, description="Prefer: odata.maxpagesize (Dataverse pages at most 5,000)."
    )
    warehouse_tables: list[str] = Field(
        default_factory=lambda: list(TABLES),
        description="Sales tables kept in the warehouse as current state (sales_<table>), read by change tracking.",
    )
    webhook: WebhookAuth | None = Field(
        None, description="Receive Dataverse webhooks (Win, quote to order, state changes) in `mlconnector ingest`."
    )
    sales_to_business_central: SalesToBusinessCentral | None = None

    @field_validator("org_url")
    @classmethod
    def _audience(cls, value: str) -> str:
        value = https_url(value)
        if "/api/data" in value:
            raise ValueError("give the organisation URL without /api/data (it is the token audience)")
        return value

    @field_validator("warehouse_tables")
    @classmethod
    def _known_tables(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(TABLES))
        if unknown:
            raise ValueError(f"unknown table(s) {', '.join(unknown)}; known: {', '.join(TABLES)}")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        return https_url(value) if value is not None else None

    @model_validator(mode="after")
    def _writeback_columns(self) -> DataverseConfig:
        sync = self.sales_to_business_central
        if sync is not None and sync.document == "sales_order" and sync.post_invoices == "when_fulfilled":
            raise ValueError("post_invoices: when_fulfilled applies to draft invoices (document: draft_invoice)")
        return self

    @property
    def scope(self) -> str:
        return f"{self.org_url}/.default"

    @property
    def api_url(self) -> str:
        return f"{self.api_base_url or self.org_url}/api/data/{self.api_version}"
