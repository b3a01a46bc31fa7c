"""SAP Business One Service Layer (api-notes §4), on its own port with a self-signed certificate."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from ..core.declaration import CliOption, Endpoint, SandboxService
from .seed import SapVolumes

COMPANY_DBS = ["SBODEMOUS", "SBODEMOCA"]
USER = "manager"
PASSWORD = "sandbox-b1-password"  # not a secret: it only opens the local simulator


class SapSettings(BaseModel):
    seed: int = 7
    company_dbs: list[str] = Field(
        COMPANY_DBS,
        min_length=1,
        description=("Company databases; each has its own data, and DocEntry/JdtNum start at 1 in each, as in B1."),
    )
    server_timezone: str = Field("UTC", description="The server's zone: UpdateDate/UpdateTime are local time.")
    user: str = USER
    password: str = PASSWORD
    session_timeout_minutes: float = 30.0
    login_delay_seconds: float = Field(2.0, description="Real servers take seconds to log in.")
    honour_maxpagesize: bool = Field(True, description="False: always 20 rows a page, as some servers do.")
    next_link_annotation: Literal["by_version", "odata4"] = Field(
        "by_version",
        description="The next-page link's name: `odata.nextLink` in v1 and `@odata.nextLink` in v2, or the OData 4 "
        "name in both, as a server may write it.",
    )
    update_time_as: Literal["text", "hhmmss"] = Field(
        "text", description='UpdateTime as "14:23:05", or as the number 142305 (how B1 stores UpdateTS).'
    )
    stamped_sets: list[str] | None = Field(
        None,
        description="The entity sets that carry UpdateDate/UpdateTime; None: all of them. SAP's Service Layer "
        "metadata gives them to documents, Items and BusinessPartners only (not JournalEntries, the payments, "
        "ChartOfAccounts or ProfitCenters): a filter on them there is refused, as on a real server.",
    )
    versions: list[Literal["v1", "v2"]] = Field(
        ["v1", "v2"], min_length=1, description="The Service Layer's paths: 9.x serves /b1s/v1 only, 10.0 both."
    )
    history_start: datetime | None = None
    history_end: datetime | None = None
    volumes: SapVolumes = Field(default_factory=SapVolumes)
    live: bool = False
    live_interval_seconds: float = 5.0
    live_late_commit_max_minutes: float = 20.0

    model_config = {"arbitrary_types_allowed": True}


def profile(endpoint: Endpoint) -> dict[str, dict]:
    return {
        "sap_business_one": {
            "base_url": f"{endpoint.url}/b1s/v1",
            "company_db": list(COMPANY_DBS),
            "username": USER,
            "password": {"env": "MLCONNECTOR_SAP_PASSWORD", "sandbox_default": PASSWORD},
            "ca_bundle": str(endpoint.ca_bundle),
            "partitions": {"cadence": "daily", "start": "2026-10-01", "settle_lag_minutes": 30},
        }
    }


SERVICE = SandboxService(
    key="sap_business_one",
    title="SAP Business One Service Layer",
    settings=SapSettings,
    simulator=f"{__package__}.simulator",
    port_offset=50,
    profile=profile,
    cli=(
        CliOption(
            "sap-login-delay",
            ("login_delay_seconds",),
            "Seconds a Service Layer login takes (real servers are slow).",
            float,
        ),
        CliOption(
            "sap-documents",
            ("volumes.documents", "volumes.journal_entries"),
            "SAP B1 documents per document type, and journal entries.",
        ),
    ),
    shared=("seed", "history_start", "history_end", "live"),
)
