"""Acumatica ERP's contract-based REST API, the Default endpoint (api-notes §5, docs/vendor-facts/acumatica-facts.md).

Served under a site path on the shared port, as an on-premises instance is (`{url}/AcumaticaERP`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from ..core.declaration import CliOption, Endpoint, SandboxService

# The demo identity. Not secrets: they only open the local simulator.
TENANT = "MLC"
CLIENT_ID = f"6F1B4A2E-3C5D-4E7F-8A9B-0C1D2E3F4A5B@{TENANT}"
CLIENT_SECRET = "sandbox-acumatica-client-secret"
USERNAME = "admin"
PASSWORD = "sandbox-acumatica-password"
VERSION = "24.200.001"
SITE_PATH = "/AcumaticaERP"


class AcumaticaVolumes(BaseModel):
    vendors: int = Field(40, ge=1)
    bills: int = Field(120, ge=1)
    checks: int = Field(60, ge=0, description="AP payments (the Check entity).")
    payments: int = Field(20, ge=0, description="AR payments (the Payment entity).")
    journal_transactions: int = Field(80, ge=1)
    stock_items: int = Field(50, ge=1)


class Dialect(BaseModel):
    """Behaviour the vendor's docs leave open, switched by tests (`POST /_sandbox/acumatica/dialect`) so the
    client is shown to survive both; a reset restores the default."""

    details_in_lists: bool = Field(
        True,
        description="A list GET fills detail collections asked for with $expand; some sites answer them empty "
        "on lists and only fill them for a record read by key.",
    )
    site_utc_offset_hours: float = Field(
        0.0,
        description="The site's time zone. A date sent with an offset is converted to it before its date is "
        "taken (as .NET reads a DateTimeOffset into a local DateTime); one sent without an offset is its date.",
    )
    dates_at_site_offset: bool = Field(
        False,
        description="Date-only fields (a bill's Date, DueDate) are answered as midnight UTC, or as midnight of "
        "the site's time zone with its offset (`site_utc_offset_hours`; `2026-03-01T00:00:00+10:00` east of "
        "UTC), as a site writes its local date-times.",
    )
    action_location: bool = Field(
        True,
        description="A long-running action (a release) is answered 202 with a Location to poll, or 202 without "
        "one (the docs promise the header; a proxy may drop it): the operation still runs and ends on its own.",
    )
    stamp_offsets: bool = Field(
        True,
        description="Date-times carry their offset (`2026-03-02T10:00:00+00:00`, as the docs show them), or "
        "none (`2026-03-02T10:00:00`, the site's wall-clock time, here UTC), as a site may write them.",
    )
    missing_record_status: Literal[500, 404] = Field(
        500,
        description="A record read by a key that matches none: Acumatica's 500 'No entity satisfies the "
        "condition', or the 404 a REST reading of the docs gives.",
    )
    compound_key_reads: bool = Field(
        True,
        description="A record is read by its key values in the path (`JournalTransaction/GL/000081`); off, a "
        "path of more than one key value matches nothing (the docs show only single keys and ids: a site may "
        "read it otherwise) and a record is read by its id.",
    )
    numbered_keys: list[str] = Field(
        default_factory=list,
        description="Entities whose key a numbering sequence fills on insert, as on a site whose segmented key "
        "(e.g. VENDOR, Segmented Keys CS202000) has auto-numbering: the key sent with a new record is ignored and "
        "the next number taken, as for a batch's BatchNbr (acumatica-facts §6). Default: none, keyed as sent.",
    )


class AcumaticaSettings(BaseModel):
    seed: int = 11
    site_path: str = Field(SITE_PATH, description="The instance's virtual directory; '' serves from the root.")
    versions: list[str] = Field(
        default_factory=lambda: ["23.200.001", VERSION],
        min_length=1,
        description="Versions of the Default endpoint the site publishes; any other answers 404.",
    )
    build_version: str = Field("24.212.0013", description="acumaticaBuildVersion in GET /entity.")
    tenant: str = TENANT
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    username: str = USERNAME
    password: str = PASSWORD
    branches: list[str] = Field(default_factory=lambda: ["HQ", "EAST", "WEST"], min_length=1)
    token_lifetime_seconds: int = Field(3600, ge=1, description="expires_in of an access token.")
    refresh_token_lifetime_days: float = Field(30.0, gt=0, description="How long a refresh-token chain lives.")
    session_timeout_minutes: float = Field(10.0, gt=0, description="An idle cookie session closes after this.")
    max_api_sessions: int = Field(3, ge=1, description="The licence's Maximum Number of Web Services API Users.")
    requests_per_minute: int = Field(600, ge=1, description="The licence's API requests per minute; past it: 429.")
    retry_after_seconds: int | None = Field(1, description="Retry-After on a 429; None sends none.")
    action_seconds: float = Field(0.2, ge=0, description="How long a long-running action (a release) takes.")
    hold_batches_on_entry: bool = Field(False, description="GL preference: a batch saved without Hold is on hold.")
    post_on_release: bool = Field(True, description="GL preference: a released batch is Posted, else Unposted.")
    financial_years: list[int] | None = Field(None, description="Default: 2025 through the year after history_end.")
    closed_years: list[int] = Field(default_factory=lambda: [2025])
    closed_periods: list[str] = Field(default_factory=lambda: ["012026"], description="MMYYYY, closed in GL.")
    history_start: datetime | None = Field(None, description="Default: 28 days before history_end.")
    history_end: datetime | None = Field(None, description="Default: today 00:00 UTC.")
    volumes: AcumaticaVolumes = Field(default_factory=AcumaticaVolumes)
    live: bool = False
    live_interval_seconds: float = 5.0
    live_late_commit_max_minutes: float = 20.0

    def history(self) -> tuple[datetime, datetime]:
        end = self.history_end or datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        start = self.history_start or end - timedelta(days=28)
        return start.astimezone(UTC), end.astimezone(UTC)

    def years(self) -> list[int]:
        if self.financial_years:
            return sorted(self.financial_years)
        start, end = self.history()
        return list(range(min(2025, start.year), max(2026, end.year + 1) + 1))


def profile(endpoint: Endpoint) -> dict[str, dict]:
    return {
        "acumatica": {
            "base_url": f"{endpoint.url}{SITE_PATH}",
            "version": VERSION,
            "tenant": TENANT,
            "auth": {
                "mode": "oauth",
                "client_id": CLIENT_ID,
                "client_secret": {"env": "MLCONNECTOR_ACUMATICA_CLIENT_SECRET", "sandbox_default": CLIENT_SECRET},
                "username": USERNAME,
                "password": {"env": "MLCONNECTOR_ACUMATICA_PASSWORD", "sandbox_default": PASSWORD},
            },
            "ca_bundle": str(endpoint.ca_bundle),
            "partitions": {"cadence": "daily", "start": "2026-10-01", "settle_lag_minutes": 30},
            "journals": [FEE_JOURNAL],
        }
    }


# The demo: Looker's weekly marketplace fees per BC sales area (looker.queries fee_allocation), allocated
# to sales subaccounts as bank charges, offset to accrued liabilities, and released.
FEE_JOURNAL = {
    "name": "fee_allocation",
    "description": "Weekly marketplace fees (2.5% of BC sales, from Looker) allocated to sales subaccounts, released.",
    "looker_query": "fee_allocation",
    "account": {"constant": "65000"},
    "subaccount": {
        "column": "fee_allocation.area",
        "map": {"NORTH": "100-000", "EAST": "100-000", "SOUTH": "200-000", "WEST": "200-000", "EXPORT": "300-000"},
        "default": "000-000",
    },
    "branch": {"constant": "HQ"},
    "amount": {"column": "fee_allocation.fee_amount"},
    "currency": {"constant": "USD"},
    "text": "Marketplace fees {fee_allocation.area} wk {partition}",
    "balancing": {
        "mode": "offset",
        "account": "20100",
        "dimensions": {"Subaccount": "000-000", "Branch": "HQ"},
        "text": "Accrued marketplace fees wk {partition}",
    },
    "release": True,
}


SERVICE = SandboxService(
    key="acumatica",
    title="Acumatica",
    settings=AcumaticaSettings,
    simulator=f"{__package__}.simulator",
    profile=profile,
    cli=(CliOption("acumatica-bills", ("volumes.bills",), "Acumatica AP bills (with 1-4 lines each)."),),
    shared=("seed", "history_start", "history_end", "live"),
)
