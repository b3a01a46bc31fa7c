"""Dynamics 365 Sales on the Dataverse Web API v9.2 (api-notes §6, docs/vendor-facts/dataverse-facts.md), behind Entra ID.

Served on the shared port under `/api/data/v9.2/`; the token audience is ORG_URL, as a real
organization's own URL is.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from ..core.declaration import CliOption, Endpoint, SandboxService
from ..entra import CLIENT_ID, authority

ORG_URL = "https://mlc-sandbox.crm.dynamics.com"  # the token audience: the organization URL, no slash
API_PATH = "/api/data/v9.2"
ORGANIZATION_NAME = "mlcsandbox"  # RemoteExecutionContext.OrganizationName (the org's unique name)


class DataverseVolumes(BaseModel):
    accounts: int = Field(40, ge=2)
    contacts: int = Field(60, ge=1)
    opportunities: int = Field(50, ge=4)
    quotes: int = Field(30, ge=6)
    direct_orders: int = Field(
        10, ge=1, description="Sales orders entered without a quote (converted ones come extra)."
    )
    invoices: int = Field(10, ge=1)


class DataverseSettings(BaseModel):
    seed: int = 7
    org_url: str = Field(ORG_URL, description="The resource a token must be issued for.")
    organization_name: str = ORGANIZATION_NAME
    application_user_client_ids: list[str] = Field(
        default_factory=lambda: [CLIENT_ID],
        description="Apps that exist as Application Users; a valid token of another app gets 403 (0x80072560).",
    )
    history_start: datetime | None = Field(None, description="Default: 28 days before history_end.")
    history_end: datetime | None = Field(None, description="Default: today 00:00 UTC.")
    volumes: DataverseVolumes = Field(default_factory=DataverseVolumes)
    change_tracking: list[str] = Field(
        default_factory=lambda: [
            "accounts",
            "contacts",
            "opportunities",
            "quotes",
            "quotedetails",
            "salesorders",
            "salesorderdetails",
            "invoices",
            "invoicedetails",
        ],
        description="Entity sets with change tracking enabled; Prefer odata.track-changes on another gets 0x80072491.",
    )
    deleted_entity_id: Literal["guid", "entity_url"] = Field(
        "guid",
        description="How a $deletedEntity row of a delta names the record: Dataverse's bare GUID, or the entity's "
        "URL (`https://…/accounts(<guid>)`), which OData JSON 4.0 §15.3 also allows.",
    )
    expired_delta_status: Literal[400, 410] = Field(
        400,
        description="An expired delta token: Dataverse's 400 0x80044352, or a 410 Gone without that code.",
    )
    amounts_written: Literal["as_stored", "shortest"] = Field(
        "as_stored",
        description="How money and decimals are written: with every stored digit (`100.0000000000`), or as the "
        "shortest JSON number that states them (`100`, `0.5`), as many JSON writers do. Switched at run time by "
        "`POST /_sandbox/dataverse/dialect`.",
    )
    delta_pages: Literal["stable", "live"] = Field(
        "stable",
        description="A delta answer's pages: bounded by the version its first page saw (stable while writes go "
        "on), or each page reading the change log as it is then, so a record changed or deleted while the answer "
        "is paged comes in it again (OData leaves this to the service). Switched by `POST /_sandbox/dataverse/dialect`.",
    )
    links: Literal["absolute", "root_relative"] = Field(
        "absolute",
        description="How @odata.nextLink and @odata.deltaLink are written: absolute URLs, as Dataverse writes them, "
        "or relative to the server's root (`/api/data/v9.2/…`), which OData JSON allows. Switched by "
        "`POST /_sandbox/dataverse/dialect`.",
    )
    volume_discount: Literal["per_line", "per_unit"] = Field(
        "per_line",
        description="How a line's volumediscountamount counts: once for the line, or per unit (extendedamount = "
        "(priceperunit - volumediscountamount) * quantity - manualdiscountamount + tax), as one description in "
        "Microsoft's docs reads. Switched by `POST /_sandbox/dataverse/dialect`.",
    )
    delta_token_lifetime_seconds: float = Field(7 * 86400, gt=0, description="Organization.ExpireChangeTrackingInDays.")
    max_page_size: int = Field(5000, ge=1, description="Rows per page unless Prefer odata.maxpagesize asks fewer.")
    rate_limit_requests: int = Field(6000, ge=1, description="Requests per caller per window (service protection).")
    rate_limit_window_seconds: float = Field(300.0, gt=0)
    retry_after_seconds: int = Field(1, ge=0, description="Retry-After on a 429.")
    webhook_timeout_seconds: float = Field(60.0, gt=0)
    webhook_retry_delay_seconds: float = Field(1.0, ge=0, description="Before the one retry after 502/503/504.")
    live: bool = False
    live_interval_seconds: float = Field(5.0, gt=0)

    def history(self) -> tuple[datetime, datetime]:
        end = self.history_end or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = self.history_start or end - timedelta(days=28)
        return start.astimezone(UTC), end.astimezone(UTC)


def profile(endpoint: Endpoint) -> dict[str, dict]:
    return {
        "dataverse": {
            "auth": authority(endpoint.url, str(endpoint.ca_bundle), "MLCONNECTOR_DATAVERSE_CLIENT_SECRET"),
            "org_url": ORG_URL,  # the token scope's resource
            "api_base_url": endpoint.url,  # where the Web API answers (the real one: ORG_URL itself)
            "ca_bundle": str(endpoint.ca_bundle),
            # The demo: won deals into the BC sandbox's first company. Its services map to BC service items;
            # DV-9001 maps to nothing, so a deal with it is refused, naming the line.
            "sales_to_business_central": {
                "company": "CRONUS USA, Inc.",
                "items": {"map": {"SVC-INSTALL": "1000-S", "SVC-WARRANTY-3Y": "1005-S"}},
            },
        }
    }


SERVICE = SandboxService(
    key="dataverse",
    title="Dynamics 365 Sales (Dataverse)",
    settings=DataverseSettings,
    simulator=f"{__package__}.simulator",
    profile=profile,
    cli=(
        CliOption(
            "dataverse-delta-token-seconds",
            ("delta_token_lifetime_seconds",),
            "Seconds a Dataverse change-tracking delta token lives.",
            type=float,
        ),
    ),
    shared=("seed", "history_start", "history_end", "live"),
)
