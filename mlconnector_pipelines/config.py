"""connector.yaml, validated. With no file the product runs against the local sandbox.

The file's path comes from `MLCONNECTOR_CONFIG`. Secrets are never written in it: a secret
field names an environment variable that holds the value.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .core.errors import ConfigError
from .core.http import HttpPolicy
from .warehouse import DUCKDB_DEFAULT_MEMORY_LIMIT

CONFIG_ENV = "MLCONNECTOR_CONFIG"
DATA_DIR_ENV = "MLCONNECTOR_DATA_DIR"
SANDBOX_URL_ENV = "MLCONNECTOR_SANDBOX_URL"
DEFAULT_SANDBOX_PORT = 47800

# The sandbox's demo identity. Not a secret: it only opens the local simulator.
SANDBOX_TENANT_ID = "8f3c6a2e-0d4b-4c1e-9a57-2b9e5d7c1a00"
SANDBOX_CLIENT_ID = "5d2a9c1e-7b3f-4e8a-b6d0-91c4f2e8a7b3"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret"
SANDBOX_ENVIRONMENT = "production"
SANDBOX_SAP_COMPANY_DBS = ("SBODEMOUS", "SBODEMOCA")
SANDBOX_SAP_USER = "manager"
SANDBOX_SAP_PASSWORD = "sandbox-b1-password"
SANDBOX_SAP_PORT_OFFSET = 50  # the Service Layer listens beside the other simulators, with its own certificate
SANDBOX_LOOKER_CLIENT_ID = "sandboxlookerclientid"
SANDBOX_LOOKER_CLIENT_SECRET = "sandbox-looker-client-secret"
SANDBOX_LOOKER_DELIVERY_SECRET = "sandbox-delivery-secret"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _time_zone(value: str) -> str:
    """An IANA time zone name (Europe/Berlin, UTC)."""
    try:
        ZoneInfo(value)
    except (ValueError, ZoneInfoNotFoundError):
        raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin or UTC)") from None
    return value


def _https_url(value: str) -> str:
    """An API root: https only (credentials travel over it), without a trailing slash."""
    if not value.startswith("https://"):
        raise ValueError("must be an https:// URL")
    return value.rstrip("/")


class SecretRef(_Strict):
    """Where a secret comes from: an environment variable or the encrypted credential store.

    Only this reference lives in connector.yaml, never the value.
    """

    env: str | None = Field(None, description="Environment variable holding the secret.")
    credential: str | None = Field(None, description="Name in the credential store (`mlconnector credentials`).")
    sandbox_default: str | None = Field(
        None, exclude=True, description="Used only by the sandbox profile when the variable is unset."
    )

    def sandbox_value(self) -> str | None:
        """The sandbox's public demo secret, used only while the environment variable is unset."""
        if self.env and self.sandbox_default and not os.environ.get(self.env):
            return self.sandbox_default
        return None

    def resolve(self, data_dir: Path) -> str:
        """The secret's value, when it is needed (a run, a request), never at load time."""
        if self.credential:
            from .core.credentials import CredentialStore
            return CredentialStore(data_dir).get(self.credential)
        value = os.environ.get(self.env or "") or self.sandbox_value()
        if not value:
            raise ConfigError(f"environment variable {self.env} is not set")
        return value

    def missing_env(self) -> str | None:
        """The environment variable this secret needs but that is not set (no sandbox default either)."""
        if self.env and not os.environ.get(self.env) and not self.sandbox_default:
            return self.env
        return None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> "SecretRef":
        if (self.env is None) == (self.credential is None):
            raise ValueError("give exactly one of `env` (an environment variable) or `credential` (a stored name)")
        return self


class PartitionConfig(_Strict):
    cadence: Literal["hourly", "daily", "weekly", "monthly"] = Field("daily", description="Window length.")
    start: date = Field(description="First window to offer in the UI (earliest lastModifiedDateTime to load).")
    settle_lag_minutes: int = Field(
        30, ge=0, le=24 * 60,
        description="A closed window is loaded by the schedule this long after it ends, for late commits.",
    )
    timezone: str = Field("UTC", description=(
        "Where windows are cut: UTC days by default, or e.g. a server's own days (SAP B1 stamps in server time)."))

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _time_zone(value)


class EntraAppConfig(_Strict):
    authority_host: str = Field("https://login.microsoftonline.com", description="Entra ID login host.")
    tenant_id: str = Field(description="Directory (tenant) ID of the customer's Entra tenant.")
    client_id: str = Field(description="Application (client) ID of the app registration.")
    client_secret: SecretRef
    ca_bundle: Path | None = Field(None, description="Extra CA bundle to trust for the login host.")


class BusinessCentralConfig(_Strict):
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
    concurrent_companies: int = Field(2, ge=1, le=5, description=(
        "Companies read at once within a step (BC works on 5 requests per user at a time and queues the rest)."))
    ca_bundle: Path | None = Field(None, description="Extra CA bundle to trust for the API host.")
    http: HttpPolicy = HttpPolicy()
    partitions: PartitionConfig

    @field_validator("api_base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        return _https_url(value)


class SapBusinessOneConfig(_Strict):
    enabled: bool = True
    base_url: str = Field(description="Service Layer root, e.g. https://b1.example.com:50000/b1s/v1 (or /b1s/v2).")
    company_db: str | list[str] = Field(description=(
        "The company database (CompanyDB), e.g. SBODEMOUS, or several: each is a company, with its own "
        "session, loaded into the same tables with the database name as `_company_id`."))
    username: str
    password: SecretRef
    ca_bundle: Path | None = Field(None, description="The server's (self-signed) certificate or its CA.")
    pinned_sha256: str | None = Field(None, pattern=r"^([0-9A-Fa-f]{2}:?){32}$",
                                      description="Alternatively, the SHA-256 fingerprint of the server certificate.")
    page_size: int = Field(500, ge=1, le=5000, description="Prefer: odata.maxpagesize (the server default is 20).")
    server_timezone: str = Field("UTC", description="Time zone of UpdateDate/UpdateTime on the server.")
    entities: list[str] | None = Field(None, description="Entity sets to load; default all supported.")
    http: HttpPolicy = HttpPolicy()
    partitions: PartitionConfig

    @field_validator("server_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return _time_zone(value)

    @field_validator("company_db")
    @classmethod
    def _company_dbs(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        if not names or any(not n for n in names) or len(set(names)) != len(names):
            raise ValueError("give one company database, or a list of distinct ones")
        return value

    @property
    def company_dbs(self) -> list[str]:
        return [self.company_db] if isinstance(self.company_db, str) else list(self.company_db)


class LookerPartitionConfig(PartitionConfig):
    field: str = Field(description="The date field the window filters on, e.g. gl_entries.posting_date.")


class LookerQueryConfig(_Strict):
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
        None, description="Partition the asset by period; each window fills a date filter.")
    upstream: list[str] = Field(default_factory=list,
                                description="Asset keys the query reads (for lineage), e.g. business_central/bc_vendors.")
    scheduled_plan_id: str | None = Field(
        None, description="A Looker schedule delivering this query to `mlconnector ingest` materializes this asset.")

    @model_validator(mode="after")
    def _one_source(self) -> "LookerQueryConfig":
        inline = self.model or self.explore or self.fields
        if bool(self.look_id) == bool(inline):
            raise ValueError("give either look_id, or model + explore + fields")
        if inline and not (self.model and self.explore and self.fields):
            raise ValueError("an inline query needs model, explore and at least one field")
        if self.partition is not None and self.scheduled_plan_id is not None:
            raise ValueError("a delivery carries no period: give scheduled_plan_id only to an unpartitioned query")
        return self


class LookerConfig(_Strict):
    enabled: bool = True
    base_url: str = Field(description="The instance, e.g. https://acme.cloud.looker.com (the API is /api/4.0).")
    client_id: str = Field(description="API3 client id of a user allowed to run these queries.")
    client_secret: SecretRef
    ca_bundle: Path | None = Field(None, description="Extra CA bundle to trust for the Looker host.")
    http: HttpPolicy = HttpPolicy(requests_per_minute=60)
    query_task_poll_seconds: float = Field(2.0, gt=0, description="How often to poll a running query task.")
    query_task_timeout_seconds: float = Field(3600.0, gt=0, description="Longest a query task may run.")
    delivery_secret: SecretRef | None = Field(
        None, description="Secret in the scheduled-plan webhook URL (/looker/scheduled-plans/<secret>).")
    queries: list[LookerQueryConfig] = Field(default_factory=list)

    @field_validator("base_url")
    @classmethod
    def _https(cls, value: str) -> str:
        value = _https_url(value)
        return value[: -len("/api/4.0")] if value.endswith("/api/4.0") else value

    @model_validator(mode="after")
    def _unique(self) -> "LookerConfig":
        for what, values in (("name", [q.name for q in self.queries]),
                             ("scheduled_plan_id", [q.scheduled_plan_id for q in self.queries if q.scheduled_plan_id])):
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"queries: {what} {', '.join(repeated)} appears more than once")
        return self


class SnowflakeConfig(_Strict):
    account: str = Field(description="Account identifier, e.g. myorg-myaccount.")
    user: str
    password: SecretRef | None = Field(None, description="Password; or use private_key_file (key-pair auth).")
    private_key_file: Path | None = Field(None, description="PEM private key of the user (key-pair auth).")
    private_key_passphrase: SecretRef | None = None
    role: str | None = None
    warehouse: str | None = Field(None, description="The virtual warehouse (compute) to run the loads on.")
    database: str
    schema_name: str = Field("PUBLIC", alias="schema", description="Schema the tables are created in.")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_auth(self) -> "SnowflakeConfig":
        if (self.password is None) == (self.private_key_file is None):
            raise ValueError("give exactly one of password or private_key_file")
        return self


class BigQueryConfig(_Strict):
    project: str = Field(description="Google Cloud project that owns the dataset and runs the jobs.")
    dataset: str = Field(pattern=r"^[A-Za-z0-9_]{1,1024}$", description="Dataset the tables are created in.")
    location: str = Field("US", description="Dataset location, e.g. EU or europe-west3.")
    credentials_file: Path | None = Field(
        None, description="Service-account key file; default: Application Default Credentials.")
    api_endpoint: str | None = Field(None, description="Only for a local emulator or fake of the BigQuery API.")


class WarehouseConfig(_Strict):
    backend: Literal["duckdb", "snowflake", "bigquery"] = "duckdb"
    duckdb_path: Path | None = Field(None, description="DuckDB file; default <data_dir>/warehouse.duckdb.")
    duckdb_memory_limit: str = Field(DUCKDB_DEFAULT_MEMORY_LIMIT, pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB)$", description=(
        "DuckDB's memory budget per connection; beyond it DuckDB spills to disk. The default keeps a "
        "step of 1M G/L entries under 500 MB; more makes large backfills' swaps faster."))
    snowflake: SnowflakeConfig | None = None
    bigquery: BigQueryConfig | None = None

    @model_validator(mode="after")
    def _backend_settings(self) -> "WarehouseConfig":
        if self.backend in ("snowflake", "bigquery") and getattr(self, self.backend) is None:
            raise ValueError(f"backend {self.backend} needs a `{self.backend}:` section")
        return self


class IngestConfig(_Strict):
    store_url: SecretRef | None = Field(
        None, description="SQLAlchemy URL of a database for received deliveries (e.g. postgresql+psycopg2://…), "
                          "for deployments where the receiver and Dagster share no disk; default: files in data_dir.")
    max_body_mb: int = Field(200, ge=1, le=4096, description="Largest delivery body accepted (413 beyond it).")
    retention_days: int = Field(30, ge=1, description="Stored deliveries older than this are removed.")
    quota_mb: int = Field(2048, ge=1, description="Most space stored deliveries may take; a delivery past it is "
                                                  "refused (507) until old ones age out.")


class ConnectorConfig(_Strict):
    profile: Literal["sandbox", "custom"] = "custom"
    data_dir: Path
    warehouse: WarehouseConfig = WarehouseConfig()
    business_central: BusinessCentralConfig | None = None
    sap_business_one: SapBusinessOneConfig | None = None
    looker: LookerConfig | None = None
    ingest: IngestConfig = IngestConfig()

    @model_validator(mode="after")
    def _absolute_paths(self) -> "ConnectorConfig":
        if not self.data_dir.is_absolute():
            object.__setattr__(self, "data_dir", self.data_dir.resolve())
        return self

    @property
    def duckdb_path(self) -> Path:
        return self.warehouse.duckdb_path or self.data_dir / "warehouse.duckdb"

    @property
    def sandbox_dir(self) -> Path:
        return self.data_dir / "sandbox"


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or "data").resolve()


def sandbox_url() -> str:
    return os.environ.get(SANDBOX_URL_ENV) or f"https://127.0.0.1:{DEFAULT_SANDBOX_PORT}"


def _sap_url_beside(url: str) -> str:
    host, _, port = url.rpartition(":")
    return f"{host}:{int(port) + SANDBOX_SAP_PORT_OFFSET}" if port.isdigit() else url


def sandbox_profile(data_dir: Path | None = None, url: str | None = None, sap_url: str | None = None) -> dict:
    """The raw settings that point every system at `mlconnector sandbox`."""
    data_dir = (data_dir or default_data_dir()).resolve()
    url = (url or sandbox_url()).rstrip("/")
    ca = data_dir / "sandbox" / "ca.pem"
    return {
        "profile": "sandbox",
        "data_dir": str(data_dir),
        "business_central": {
            "auth": {
                "authority_host": url,
                "tenant_id": SANDBOX_TENANT_ID,
                "client_id": SANDBOX_CLIENT_ID,
                "client_secret": {"env": "MLCONNECTOR_BC_CLIENT_SECRET", "sandbox_default": SANDBOX_CLIENT_SECRET},
                "ca_bundle": str(ca),
            },
            "api_base_url": url,
            "environment": SANDBOX_ENVIRONMENT,
            "ca_bundle": str(ca),
            "partitions": {"cadence": "daily", "start": "2026-10-01", "settle_lag_minutes": 30},
        },
        "sap_business_one": {
            "base_url": f"{sap_url or _sap_url_beside(url)}/b1s/v1",
            "company_db": list(SANDBOX_SAP_COMPANY_DBS),
            "username": SANDBOX_SAP_USER,
            "password": {"env": "MLCONNECTOR_SAP_PASSWORD", "sandbox_default": SANDBOX_SAP_PASSWORD},
            "ca_bundle": str(data_dir / "sandbox" / "sap-b1.pem"),
            "partitions": {"cadence": "daily", "start": "2026-10-01", "settle_lag_minutes": 30},
        },
        "looker": {
            "base_url": url,
            "client_id": SANDBOX_LOOKER_CLIENT_ID,
            "client_secret": {"env": "MLCONNECTOR_LOOKER_CLIENT_SECRET", "sandbox_default": SANDBOX_LOOKER_CLIENT_SECRET},
            "ca_bundle": str(ca),
            "delivery_secret": {"env": "MLCONNECTOR_LOOKER_DELIVERY_SECRET",
                                "sandbox_default": SANDBOX_LOOKER_DELIVERY_SECRET},
            "queries": [
                {"name": "gl_daily_summary",
                 "description": "Debits, credits and net movement per company, day and G/L account.",
                 "model": "mlconnector_demo", "explore": "gl_entries",
                 "fields": ["gl_entries.company_name", "gl_entries.posting_date", "gl_entries.account_number",
                            "gl_entries.total_debit", "gl_entries.total_credit", "gl_entries.net_amount",
                            "gl_entries.count"],
                 "sorts": ["gl_entries.posting_date", "gl_entries.account_number"],
                 "partition": {"field": "gl_entries.posting_date", "cadence": "daily", "start": "2026-10-01",
                               "settle_lag_minutes": 90},
                 "upstream": ["business_central/bc_general_ledger_entries"]},
                {"name": "vendor_balances", "description": "The saved Look 'Vendor balances', every row.",
                 "look_id": "1", "scheduled_plan_id": "101", "upstream": ["business_central/bc_vendors"]},
            ],
        },
    }


# A secret reference names one source; merging would mix the default's source with the file's.
_REPLACED_WHOLE = {"client_secret", "password", "delivery_secret"}


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in _REPLACED_WHOLE:
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_config(raw: dict, *, source: str = "connector.yaml") -> ConnectorConfig:
    """Validate raw settings; a `profile: sandbox` file overrides the sandbox defaults."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of settings")
    if raw.get("profile") == "sandbox":
        raw = _merge(sandbox_profile(Path(raw["data_dir"]) if raw.get("data_dir") else None), raw)
    raw.setdefault("data_dir", str(default_data_dir()))
    try:
        return ConnectorConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{source} is invalid — {problems}") from None


def load_config(path: str | Path | None = None) -> ConnectorConfig:
    """Load `path`, else `$MLCONNECTOR_CONFIG`, else the sandbox profile."""
    path = path or os.environ.get(CONFIG_ENV)
    if not path:
        return parse_config(sandbox_profile(), source="sandbox profile")
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{CONFIG_ENV} points at {path}, which does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_config(raw, source=str(path))
