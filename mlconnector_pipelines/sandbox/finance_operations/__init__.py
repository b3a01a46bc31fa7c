"""Dynamics 365 Finance and Operations, its OData data entities (api-notes §3, fo-facts), behind Entra ID."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from ..core.declaration import Endpoint, SandboxService
from ..entra import CLIENT_ID, authority

ENVIRONMENT_URL = "https://mlc-sandbox.operations.dynamics.com"  # the token audience: lowercase, no slash


class FinanceOperationsSettings(BaseModel):
    environment_url: str = Field(ENVIRONMENT_URL, description="The resource a token must be issued for.")
    registered_client_ids: list[str] = Field(
        default_factory=lambda: [CLIENT_ID],
        description="Apps on F&O's 'Microsoft Entra applications' page; a valid token of another app gets 401.",
    )
    default_company: str = Field("usrt", description="The legal entity OData answers for without cross-company.")
    max_page_size: int = Field(10_000, ge=1, description="Rows per page at most; Prefer odata.maxpagesize lowers it.")
    rate_limit_requests: int = 6000
    rate_limit_window_seconds: float = 300.0
    retry_after_seconds: int = 1
    ledger_dimension_format: list[str] = Field(
        default_factory=lambda: ["MainAccount", "BusinessUnit", "CostCenter", "Department"],
        description="The active ledger dimension format (integration), in segment order.",
    )
    segment_delimiter: Literal["-", ".", "_", "|", "~"] = Field("-", description="DimensionSegmentDelimiter.")
    fiscal_period_entity: str = Field(
        "LedgerFiscalPeriodsV2", description="Where ledger period statuses answer; the other name answers 404."
    )
    batch_number_start: int = Field(601, ge=1, description="Next number of each company's journal batch sequence.")


class Dialect(BaseModel):
    """Readings of the OData 4.0 protocol that F&O does not take but another implementation may; each
    default is F&O's. Tests switch them (`POST /_sandbox/finance_operations/dialect`) so the client is
    shown to survive both readings; a reset restores F&O's."""

    next_link: Literal["absolute", "root_relative", "relative"] = Field(
        "absolute", description="@odata.nextLink as an absolute URL, '/data/…', or relative to the service root."
    )
    reason_phrase: bool = Field(True, description="A $batch answer's status lines carry the reason phrase.")
    segment_delimiter: Literal["enum_name", "characters"] = Field(
        "enum_name",
        description="DimensionParameters answers its DimensionSegmentDelimiter as the enum member's name "
        "(`Hyphen`, as F&O's metadata types it) or as the characters themselves (`-`).",
    )
    refused_changeset: Literal["in_batch", "whole_batch"] = Field(
        "in_batch",
        description="A refused changeset of a one-changeset $batch is answered inside a 200 multipart answer, "
        "or as the $batch request's own error (a JSON 400).",
    )


def profile(endpoint: Endpoint) -> dict[str, dict]:
    return {
        "finance_operations": {
            "auth": authority(endpoint.url, str(endpoint.ca_bundle), "MLCONNECTOR_FO_CLIENT_SECRET"),
            "environment_url": FinanceOperationsSettings().environment_url,
            "api_base_url": endpoint.url,
            "ca_bundle": str(endpoint.ca_bundle),
            "journals": [FEE_JOURNAL],
        }
    }


# The demo: Looker's weekly marketplace fees per BC sales area (looker.queries fee_allocation) posted as an
# allocation journal in usrt, a line per area on its cost centre, offset to accrued liabilities.
FEE_JOURNAL = {
    "name": "fee_allocation",
    "description": "Weekly marketplace fees (2.5% of BC sales, from Looker) allocated to cost centres in usrt.",
    "looker_query": "fee_allocation",
    "legal_entity": "usrt",
    "journal_name": "Alloc",
    "account": {"constant": "618200"},
    "dimensions": {
        "BusinessUnit": {"constant": "002"},
        "CostCenter": {
            "column": "fee_allocation.area",
            "map": {"NORTH": "001", "SOUTH": "002", "EAST": "003", "WEST": "004", "EXPORT": "005"},
            "default": "009",
        },
        "Department": {"constant": "025"},
    },
    "amount": {"column": "fee_allocation.fee_amount"},
    "currency": {"constant": "USD"},
    "text": "Marketplace fees {fee_allocation.area} wk {partition}",
    "balancing": {
        "mode": "offset",
        "account": "220500",
        "dimensions": {"BusinessUnit": "002"},
        "text": "Accrued marketplace fees wk {partition}",
    },
}


SERVICE = SandboxService(
    key="finance_operations",
    title="Finance and Operations",
    settings=FinanceOperationsSettings,
    simulator=f"{__package__}.simulator",
    profile=profile,
)
