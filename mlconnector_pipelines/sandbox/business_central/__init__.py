"""Business Central API v2.0 (api-notes §2), behind the Entra ID simulator's tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from ..core.declaration import CliOption, Endpoint, SandboxService
from ..entra import authority
from .seed import Volumes

ENVIRONMENT = "production"
RESOURCE = "https://api.businesscentral.dynamics.com"  # the token audience BC accepts
SANDBOX_CLIENT_STATE = "sandbox-bc-client-state-public-demo"  # public: the sandbox's subscriptions only


class Dialect(BaseModel):
    """Readings of OData 4.0 a BC server may take, switched by tests (`POST /_sandbox/business_central/dialect`)
    so the client is shown to survive them; a reset restores the default."""

    expanded_page_size: int | None = Field(
        None,
        ge=1,
        description="An expanded collection ($expand of a document's lines, of an entry's dimension set lines) "
        "carries at most this many lines inline and `<navigation>@odata.nextLink` for the rest, which the "
        "sandbox serves in pages of the same size (`.../salesInvoices(id)/salesInvoiceLines?$skip=N`). "
        "None: every line inline, as BC sends them.",
    )
    max_page_size: int | None = Field(
        None,
        ge=1,
        description="The server's most records per page (BC's OData `Max Page Size` setting: 20,000 online, an "
        "on-premises server sets its own): every collection, a small set-up list or a filtered lookup too, is "
        "served in pages of at most this many, whatever `odata.maxpagesize` asks, the rest behind "
        "`@odata.nextLink`. None: 20,000.",
    )
    page_ids: Literal["live", "fixed_at_first_page", "offset", "offset_token"] = Field(
        "live",
        description="Which records a paged read serves: each page the filter as it matches then (BC's skip "
        "token resumes after the last key); the records the filter matched at the first page, each served "
        "as it is now, so a record changed while the read goes on comes with a stamp past the window; or "
        "(`offset`) each page the filter as it matches then from an offset, the next link carrying `$skip=N` "
        "as simple OData servers page, so a record that leaves the filter before the offset makes the next "
        "page start one record late; `offset_token` the same offset inside an opaque `$skiptoken`.",
    )
    clock_ahead_seconds: float = Field(
        0,
        description="BC's clock runs this far ahead of true time (a server whose clock is off, or that writes its "
        "local time labelled Z): records, deletions and their notices are stamped with it.",
    )
    local_currency_code: Literal["shown", "blank"] = Field(
        "shown",
        description="A record in the company's local currency answers `currencyCode` as the LCY Code (`shown`, "
        "as the v2.0 API pages translate BC's blank Currency Code) or blank (`blank`, the table's own value).",
    )


class BusinessCentralSettings(BaseModel):
    seed: int = 42
    companies: int = Field(2, ge=1, le=10, description="The second company is a Copy Company of the first (same ids).")
    history_start: datetime | None = Field(None, description="Default: 28 days before history_end.")
    history_end: datetime | None = Field(None, description="Default: today 00:00 UTC.")
    volumes: Volumes = Field(default_factory=Volumes)
    rate_limit_requests: int = 6000
    rate_limit_window_seconds: float = 300.0
    retry_after_on_429: float | None = None
    live: bool = False
    live_interval_seconds: float = 5.0
    live_late_commit_max_minutes: float = 20.0
    live_delete_chance: float = Field(
        0.05, ge=0, le=1, description="Per live tick: the chance BC's user deletes a seeded customer or vendor."
    )
    # Webhook subscriptions (docs/vendor-facts/bc-webhook-facts.md)
    subscription_max: int = Field(200, ge=0, description="Subscriptions per environment; one more is refused.")
    subscription_lifetime_seconds: float = Field(
        3 * 86400, gt=0, description="A subscription expires this long after its creation or renewal."
    )
    handshake_timeout_seconds: float = Field(
        5.0, gt=0, description="The notification URL must answer the validationToken within this."
    )
    notification_delay_seconds: float = Field(
        30.0,
        ge=0,
        description="Changes are collected this long after the first, then sent as one POST per notification URL.",
    )
    collection_threshold: int = Field(
        1000,
        ge=1,
        description="More changes than this for one subscription in one period: one `collection` notice instead.",
    )
    notification_timeout_seconds: float = Field(
        30.0, gt=0, description="How long a notification POST may take before it counts as failed (retried)."
    )
    notification_retry_interval_seconds: float = Field(
        60.0, gt=0, description="After a 408, 429, 5xx or no answer, the next attempt comes this much later."
    )
    notification_retry_window_seconds: float = Field(
        36 * 3600,
        gt=0,
        description="Retries stop this long after the first failed attempt; the subscriptions are then deleted.",
    )

    model_config = {"arbitrary_types_allowed": True}

    def history(self) -> tuple[datetime, datetime]:
        end = self.history_end or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = self.history_start or end - timedelta(days=28)
        return start.astimezone(UTC), end.astimezone(UTC)


def profile(endpoint: Endpoint) -> dict[str, dict]:
    return {
        "business_central": {
            "auth": authority(endpoint.url, str(endpoint.ca_bundle), "MLCONNECTOR_BC_CLIENT_SECRET"),
            "api_base_url": endpoint.url,
            "environment": ENVIRONMENT,
            "ca_bundle": str(endpoint.ca_bundle),
            "partitions": {"cadence": "daily", "start": "2026-10-01", "settle_lag_minutes": 30},
            # `mlconnector ingest` on its default port, as scripts/dev starts it beside the sandbox.
            "notifications": {
                "notification_url": "http://127.0.0.1:47900/business-central/notifications",
                "client_state": {"env": "MLCONNECTOR_BC_CLIENT_STATE", "sandbox_default": SANDBOX_CLIENT_STATE},
            },
        }
    }


SERVICE = SandboxService(
    key="business_central",
    title="Business Central",
    settings=BusinessCentralSettings,
    simulator=f"{__package__}.simulator",
    profile=profile,
    cli=(
        CliOption("companies", ("companies",), "Companies (the second is a copy of the first)."),
        CliOption("gl-entries", ("volumes.gl_entries",), "G/L entries per company."),
    ),
    shared=("seed", "history_start", "history_end", "live"),
)
