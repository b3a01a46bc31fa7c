"""Shared fixtures: a sandbox per test module over real HTTPS, and helpers to run the product."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import httpx
import pytest

from mlconnector_pipelines.config import ConnectorConfig, parse_config, sandbox_profile
from mlconnector_pipelines.sandbox.acumatica import AcumaticaSettings
from mlconnector_pipelines.sandbox.business_central import BusinessCentralSettings
from mlconnector_pipelines.sandbox.business_central.seed import Volumes
from mlconnector_pipelines.sandbox.dataverse import DataverseSettings
from mlconnector_pipelines.sandbox.entra import EntraSettings
from mlconnector_pipelines.sandbox.finance_operations import FinanceOperationsSettings
from mlconnector_pipelines.sandbox.looker import LookerSettings
from mlconnector_pipelines.sandbox.server import RunningSandbox, SandboxSettings, start_in_thread

HISTORY_START = datetime(2026, 3, 1, tzinfo=UTC)
HISTORY_END = datetime(2026, 3, 8, tzinfo=UTC)
SHARED_SPECS = Path(__file__).resolve().parents[2] / "shared" / "specs"

# A failing test must not wait minutes on production back-off settings.
FAST_HTTP = {"backoff_base_seconds": 0.01, "backoff_cap_seconds": 0.05, "max_attempts": 6, "timeout_seconds": 20}


class SandboxAdmin:
    """The sandbox's own test API (`/_sandbox/<service>/…`): faults, tokens, state and BC's records."""

    def __init__(self, running: RunningSandbox):
        self.running = running
        self.url = running.url
        self.http = httpx.Client(base_url=running.url, verify=str(running.certificates.ca_pem), timeout=30)

    def faults(self, *rules: dict, service: str = "business_central") -> None:
        self.http.post(f"/_sandbox/{service}/faults", json={"rules": list(rules)}).raise_for_status()

    def clear_faults(self) -> None:
        for service in self.running.services:
            self.http.delete(f"/_sandbox/{service}/faults").raise_for_status()

    def reset(self) -> None:
        for service in self.running.services:
            self.http.post(f"/_sandbox/{service}/reset").raise_for_status()

    def expire_tokens(self) -> None:
        self.http.post("/_sandbox/entra/tokens/expire").raise_for_status()

    def state(self, service: str) -> dict:
        return self.http.get(f"/_sandbox/{service}/state").json()

    def stats(self) -> dict:
        """Entra's tokens issued, BC's requests and the faults fired at BC."""
        bc = self.state("business_central")
        return {
            "tokens_issued": self.state("entra")["tokens_issued"],
            "bc_requests": bc["requests"],
            "faults_fired": bc["faults_fired"],
        }

    def companies(self) -> list[dict]:
        return self.http.get("/_sandbox/business_central/companies").json()

    def records(self, company_id: str, entity_set: str) -> list[dict]:
        """The sandbox's own records, amounts exactly as it holds them (Decimal)."""
        response = self.http.get(f"/_sandbox/business_central/companies/{company_id}/{entity_set}")
        response.raise_for_status()
        return json.loads(response.content, parse_float=Decimal)

    def upsert(
        self,
        company_id: str,
        entity_set: str,
        record: dict,
        modified_at: str | None = None,
        lines: list[dict] | None = None,
    ) -> dict:
        body = {"record": record, "lastModifiedDateTime": modified_at}
        if lines is not None:
            body["lines"] = lines
        response = self.http.post(f"/_sandbox/business_central/companies/{company_id}/{entity_set}", json=body)
        response.raise_for_status()
        return response.json()


def start_sandbox(
    tmp_path_factory,
    entra: dict | None = None,
    looker: LookerSettings | None = None,
    finance_operations: dict | None = None,
    acumatica: dict | None = None,
    dataverse: dict | None = None,
    **business_central,
) -> tuple[RunningSandbox, Path]:
    """Every shared-port service: Entra ID, Business Central (a week of history unless told), Looker, F&O."""
    data_dir = tmp_path_factory.mktemp("sandbox-data")
    bc = {"history_start": HISTORY_START, "history_end": HISTORY_END, "volumes": Volumes(), **business_central}
    settings = SandboxSettings(
        entra=EntraSettings(**(entra or {})),
        business_central=BusinessCentralSettings(**bc),
        looker=looker or LookerSettings(),
        finance_operations=FinanceOperationsSettings(**(finance_operations or {})),
        acumatica=AcumaticaSettings(**(acumatica or {})),
        dataverse=DataverseSettings(**(dataverse or {})),
    )
    running = start_in_thread(data_dir, settings)
    return running, data_dir


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    running, data_dir = start_sandbox(tmp_path_factory)
    admin = SandboxAdmin(running)
    admin.data_dir = data_dir
    yield admin
    admin.http.close()
    running.stop()


def make_config(
    admin: SandboxAdmin,
    data_dir: Path,
    sap: dict | None = None,
    looker: dict | None = None,
    finance_operations: dict | None = None,
    acumatica: dict | None = None,
    dataverse: dict | None = None,
    **business_central,
) -> ConnectorConfig:
    """The sandbox profile pointed at this module's sandbox, with a private warehouse.

    SAP Business One (its simulator runs apart), Looker, F&O, Acumatica and Dataverse are left out unless given
    their settings.
    """
    raw = sandbox_profile(admin.data_dir, admin.url)
    raw["data_dir"] = str(data_dir)
    raw["sap_business_one"] = sap
    raw["looker"] = looker
    raw["finance_operations"] = finance_operations
    raw["acumatica"] = acumatica
    raw["dataverse"] = dataverse
    bc = raw["business_central"]
    bc["partitions"]["start"] = HISTORY_START.date().isoformat()
    bc["http"] = dict(FAST_HTTP)
    for key, value in business_central.items():
        if isinstance(value, dict) and isinstance(bc.get(key), dict):
            bc[key] = {**bc[key], **value}
        else:
            bc[key] = value
    return parse_config(raw)


def run_bc_job(
    cfg: ConnectorConfig,
    partition_key: str | None = None,
    partition_range: tuple[str, str] | None = None,
    instance: dg.DagsterInstance | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    from mlconnector_pipelines.definitions import build_definitions
    from mlconnector_pipelines.flows.business_central import JOB

    job = build_definitions(cfg).resolve_job_def(JOB)
    tags = {}
    if partition_range:
        tags = {
            "dagster/asset_partition_range_start": partition_range[0],
            "dagster/asset_partition_range_end": partition_range[1],
        }
    return job.execute_in_process(
        partition_key=partition_key,
        tags=tags or None,
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=raise_on_error,
    )


def materialization_metadata(result: dg.ExecuteInProcessResult, table: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key.path[-1] == table:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"no materialization of {table}")


def window_of(records: list[dict], start: datetime, end: datetime) -> list[dict]:
    def moment(r):
        return datetime.fromisoformat(r["lastModifiedDateTime"].replace("Z", "+00:00"))

    return [r for r in records if start <= moment(r) < end]


@pytest.fixture(autouse=True)
def _no_stray_config(monkeypatch):
    monkeypatch.delenv("MLCONNECTOR_CONFIG", raising=False)
    monkeypatch.delenv("MLCONNECTOR_BC_CLIENT_SECRET", raising=False)


def check_deletions(cfg: ConnectorConfig, group: str, tables: list[str]) -> dict[str, dict]:
    """Run only the `no_records_deleted_at_source` checks of these tables; their results by table."""
    from mlconnector_pipelines.definitions import build_definitions

    checks = [dg.AssetCheckKey(dg.AssetKey([group, t]), "no_records_deleted_at_source") for t in tables]
    job = dg.define_asset_job("deletion_checks", selection=dg.AssetSelection.checks(*checks))
    defs = dg.Definitions.merge(build_definitions(cfg), dg.Definitions(jobs=[job]))
    result = defs.resolve_job_def("deletion_checks").execute_in_process(instance=dg.DagsterInstance.ephemeral())
    return {
        e.asset_check_evaluation_data.asset_key.path[-1]: {
            "passed": e.asset_check_evaluation_data.passed,
            **{k: v.value for k, v in e.asset_check_evaluation_data.metadata.items()},
        }
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def reconcile_deletions(cfg: ConnectorConfig, group: str) -> dict[str, dict]:
    """Run the group's reconciliation job; the observation it made of each table."""
    from mlconnector_pipelines.definitions import build_definitions

    job = build_definitions(cfg).resolve_job_def(f"{group}_reconcile_deletions")
    result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    return {
        e.asset_observation_data.asset_observation.asset_key.path[-1]: {
            k: v.value for k, v in e.asset_observation_data.asset_observation.metadata.items()
        }
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    }
