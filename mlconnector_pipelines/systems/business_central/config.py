"""The `business_central:` section of connector.yaml."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from ...core.http import HttpPolicy
from ...core.settings import PartitionConfig, SecretRef, Strict, https_url
from ..entra import EntraAppConfig


class BcNotificationsConfig(Strict):
    """BC change notifications (webhook subscriptions): windows re-read minutes after a change, deletions seen."""

    notification_url: str = Field(
        description="The public URL of `mlconnector ingest`'s `/business-central/notifications` (BC calls it)."
    )
    client_state: SecretRef = Field(
        description="A secret BC sends back in every notification; a notification without it is refused."
    )
    entities: list[str] | None = Field(
        None, description="Entity sets to subscribe to, per company; default every entity the flow loads."
    )
    renew_when_hours_left: float = Field(
        12.0,
        ge=1,
        le=60,
        description="A subscription (BC keeps one 3 days) is renewed once it has less than this left.",
    )
    check_cron: str = Field(
        "0 * * * *",
        description="When `business_central_subscriptions` creates, renews and re-creates subscriptions (cron, UTC).",
    )

    @field_validator("notification_url")
    @classmethod
    def _reachable_url(cls, value: str) -> str:
        # BC calls the URL from Microsoft's cloud: https. Plain http only for a receiver on this machine.
        if value.startswith("http://") and value.split("/")[2].split(":")[0] in ("127.0.0.1", "localhost"):
            return value.rstrip("/")
        return https_url(value)


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
    notifications: BcNotificationsConfig | None = Field(
        None, description="Change notifications: subscriptions, received by `mlconnector ingest`."
    )

    @field_validator("api_base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        return https_url(value)
