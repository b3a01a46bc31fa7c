"""The `looker:` section of connector.yaml: the instance and the queries materialized as assets."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from ...core.http import HttpPolicy
from ...core.settings import PartitionConfig, SecretRef, Strict, https_url, time_zone


class LookerPartitionConfig(PartitionConfig):
    field: str = Field(description="The date field the window filters on, e.g. gl_entries.posting_date.")


class LookerQueryConfig(Strict):
    """One Looker query or saved Look, materialized as the asset `looker/<name>` into table `looker_<name>`."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,55}$", description="Asset name; the table is looker_<name>.")
    description: str = ""
    look_id: str | None = Field(None, description="Run this saved Look (its model, explore and fields).")
    model: str | None = Field(None, description="LookML model (for an inline query).")
    explore: str | None = Field(None, description="Explore in that model.")
    fields: list[str] = Field(default_factory=list, description="Fields as view.field, in result order.")
    filters: dict[str, str] = Field(default_factory=dict, description="Looker filter expressions by field.")
    sorts: list[str] = Field(default_factory=list, description='e.g. ["gl_entries.posting_date desc"].')
    limit: int | None = Field(None, ge=1, description="Row limit; none loads every row (via a query task).")
    partition: LookerPartitionConfig | None = Field(
        None, description="Partition the asset by period; each window fills a date filter."
    )
    upstream: list[str] = Field(
        default_factory=list, description="Asset keys the query reads (for lineage), e.g. business_central/bc_vendors."
    )
    scheduled_plan_id: str | None = Field(
        None, description="A Looker schedule delivering this query to `mlconnector ingest` materializes this asset."
    )

    @model_validator(mode="after")
    def _one_source(self) -> LookerQueryConfig:
        inline = self.model or self.explore or self.fields
        if bool(self.look_id) == bool(inline):
            raise ValueError("give either look_id, or model + explore + fields")
        if inline and not (self.model and self.explore and self.fields):
            raise ValueError("an inline query needs model, explore and at least one field")
        if self.partition is not None and self.scheduled_plan_id is not None:
            raise ValueError("a delivery carries no period: give scheduled_plan_id only to an unpartitioned query")
        return self


class LookerConfig(Strict):
    enabled: bool = True
    base_url: str = Field(description="The instance, e.g. https://acme.cloud.looker.com (the API is /api/4.0).")
    client_id: str = Field(description="API3 client id of a user allowed to run these queries.")
    client_secret: SecretRef
    ca_bundle: Path | None = Field(None, description="Extra CA bundle to trust for the Looker host.")
    http: HttpPolicy = HttpPolicy(requests_per_minute=60)
    query_task_poll_seconds: float = Field(2.0, gt=0, description="How often to poll a running query task.")
    query_task_timeout_seconds: float = Field(3600.0, gt=0, description="Longest a query task may run.")
    delivery_secret: SecretRef | None = Field(
        None, description="Secret in the scheduled-plan webhook URL (/looker/scheduled-plans/<secret>)."
    )
    timezone: str = Field(
        "UTC",
        description="The zone Looker runs a saved Look or a scheduled plan in when its query names none (the API "
        "user's time zone, or the instance's application time zone): their date-times are read as wall-clock "
        "time there.",
    )
    queries: list[LookerQueryConfig] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return time_zone(value)

    @field_validator("base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        value = https_url(value)
        value = value[: -len("/api/4.0")] if value.endswith("/api/4.0") else value
        path = urlsplit(value).path.strip("/")
        if path:  # Looker answers a login to a wrong path 404, as it answers wrong credentials: say it here
            raise ValueError(
                f"give the instance's address without a path (e.g. https://acme.cloud.looker.com, or :19999 on a "
                f"self-hosted one), not .../{path}: the API 4.0 path is added"
                + (" (API 3.1 is not used)" if path.endswith("api/3.1") else "")
            )
        return value

    @model_validator(mode="after")
    def _unique(self) -> LookerConfig:
        for what, values in (
            ("name", [q.name for q in self.queries]),
            ("scheduled_plan_id", [q.scheduled_plan_id for q in self.queries if q.scheduled_plan_id]),
        ):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"queries: {what} {', '.join(repeated)} appears more than once")
        return self
