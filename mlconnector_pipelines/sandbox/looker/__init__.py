"""Looker API 4.0 (api-notes §7), read-only, whose explores read the sandbox warehouse."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from ..core.declaration import CliOption, Endpoint, SandboxService

CLIENT_ID = "sandboxlookerclientid"
CLIENT_SECRET = "sandbox-looker-client-secret"  # not secrets: they only open the local simulator
DELIVERY_SECRET = "sandbox-delivery-secret"


class Dialect(BaseModel):
    """Readings of the API docs Looker's own server does not take but another may; tests switch them
    (`POST /_sandbox/looker/dialect`), a reset restores Looker's."""

    task_status_case: Literal["lower", "capitalized"] = Field(
        "lower", description="A query task's status as Looker writes it (`complete`) or capitalized (`Complete`)."
    )
    failed_task_status: Literal["error", "failure"] = Field(
        "error", description="The status of a query task whose query failed (Looker's examples also read `failure`)."
    )


class LookerSettings(BaseModel):
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    token_lifetime_seconds: int = Field(3600, ge=1)
    requests_per_minute: int = Field(600, ge=1, description="Past this, per client, the API answers 429.")
    retry_after_on_429: float | None = Field(None, description="Looker's 429 may or may not say when to retry.")
    query_task_seconds: float = Field(1.0, ge=0, description="How long an async query task takes to complete.")
    query_task_ttl_seconds: float = Field(3600, gt=0, description="Results of a task expire after this.")
    query_errors_as_rows: bool = Field(
        False,
        description='A query whose SQL fails is answered 200 with one row [{"looker_error": "…"}], as Looker reports '
        "errors in json results; False answers it 400.",
    )
    warehouse: Path | None = Field(
        None, description="The DuckDB file the explores read; default <data_dir>/warehouse.duckdb."
    )
    timezone: str = Field(
        "UTC",
        description="The instance's application time zone: what a query naming no query_timezone runs in.",
    )
    lock_wait_seconds: float = 60.0
    projects: list[Path] = Field(
        default_factory=list,
        description="LookML project directories loaded at start (their models answer queries beside the "
        "built-in one); POST /_sandbox/looker/projects loads more, and reset returns to these.",
    )


def profile(endpoint: Endpoint) -> dict[str, dict]:
    return {
        "looker": {
            "base_url": endpoint.url,
            "client_id": CLIENT_ID,
            "client_secret": {"env": "MLCONNECTOR_LOOKER_CLIENT_SECRET", "sandbox_default": CLIENT_SECRET},
            "ca_bundle": str(endpoint.ca_bundle),
            "delivery_secret": {"env": "MLCONNECTOR_LOOKER_DELIVERY_SECRET", "sandbox_default": DELIVERY_SECRET},
            "queries": [
                {
                    "name": "gl_daily_summary",
                    "description": "Debits, credits and net movement per company, day and G/L account.",
                    "model": "mlconnector_demo",
                    "explore": "gl_entries",
                    "fields": [
                        "gl_entries.company_name",
                        "gl_entries.posting_date",
                        "gl_entries.account_number",
                        "gl_entries.total_debit",
                        "gl_entries.total_credit",
                        "gl_entries.net_amount",
                        "gl_entries.count",
                    ],
                    "sorts": ["gl_entries.posting_date", "gl_entries.account_number"],
                    "partition": {
                        "field": "gl_entries.posting_date",
                        "cadence": "daily",
                        "start": "2026-10-01",
                        "settle_lag_minutes": 90,
                    },
                    "upstream": ["business_central/bc_general_ledger_entries"],
                },
                {
                    "name": "fee_allocation",
                    "description": "Weekly marketplace fees (2.5% of sales) per sales area of CRONUS USA: what the "
                    "F&O fee journal posts.",
                    "model": "mlconnector_demo",
                    "explore": "fee_allocation",
                    "fields": ["fee_allocation.area", "fee_allocation.sales", "fee_allocation.fee_amount"],
                    "filters": {"fee_allocation.company_name": "CRONUS USA^, Inc."},  # ^, : a comma in a Looker filter
                    "sorts": ["fee_allocation.area"],
                    "partition": {
                        "field": "fee_allocation.posting_date",
                        "cadence": "weekly",
                        "start": "2026-10-05",
                        "settle_lag_minutes": 120,
                    },
                    "upstream": [
                        "business_central/bc_general_ledger_entries",
                        "business_central/bc_general_ledger_entry_dimensions",
                    ],
                },
                {
                    "name": "vendor_balances",
                    "description": "The saved Look 'Vendor balances', every row.",
                    "look_id": "1",
                    "scheduled_plan_id": "101",
                    "upstream": ["business_central/bc_vendors"],
                },
            ],
        }
    }


SERVICE = SandboxService(
    key="looker",
    title="Looker",
    settings=LookerSettings,
    simulator=f"{__package__}.simulator",
    profile=profile,
    cli=(
        CliOption("looker-task-seconds", ("query_task_seconds",), "How long a Looker query task takes.", float),
        CliOption("looker-token-lifetime", ("token_lifetime_seconds",), "Seconds a Looker login token lives."),
        CliOption(
            "warehouse",
            ("warehouse",),
            "DuckDB file the Looker explores read (default: <data-dir>/warehouse.duckdb).",
            Path,
        ),
    ),
)
