"""Dagster on PostgreSQL instance storage (deploy/dagster-postgres.yaml), as a deployment runs it.

A real `dagster-daemon` process runs against a real PostgreSQL server: it dequeues the runs of a
backfill, evaluates the delivery sensor and launches its run, and every other process (the CLI,
this test) sees the same runs, schedule state, sensor ticks and backfills through PostgreSQL.
`scripts/with-postgres` starts the server (Debian's packages); `.ci/run` runs this module with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import orjson
import pytest
import yaml

from mlconnector_pipelines.config import sandbox_profile
from mlconnector_pipelines.flows.looker import DELIVERIES_SENSOR
from mlconnector_pipelines.ingest.looker import parse_delivery
from mlconnector_pipelines.ingest.store import open_delivery_store
from mlconnector_pipelines.sandbox.looker import LookerSettings

from ..conftest import FAST_HTTP, SandboxAdmin, start_sandbox

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.skipif(
        not os.environ.get("DAGSTER_PG_HOST"),
        reason="needs PostgreSQL: run `scripts/with-postgres scripts/test -m postgres` (.ci/run does)",
    ),
]
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """DAGSTER_HOME with the PostgreSQL dagster.yaml, a connector.yaml on a test sandbox, and a running daemon."""
    home = tmp_path_factory.mktemp("dagster-home")
    shutil.copy(REPO / "deploy" / "dagster-postgres.yaml", home / "dagster.yaml")
    data_dir = tmp_path_factory.mktemp("data")
    running, sandbox_dir = start_sandbox(
        tmp_path_factory, looker=LookerSettings(warehouse=data_dir / "warehouse.duckdb")
    )
    admin = SandboxAdmin(running)
    raw = sandbox_profile(sandbox_dir, running.url)
    raw.update(data_dir=str(data_dir), sap_business_one=None)
    raw["business_central"].update(http=dict(FAST_HTTP), entities=["vendors", "accounts"])
    raw["business_central"]["partitions"]["start"] = "2026-03-01"
    raw["looker"]["http"] = {**FAST_HTTP, "requests_per_minute": 6000}
    raw["looker"]["query_task_poll_seconds"] = 0.1
    raw["looker"]["queries"][0]["partition"]["start"] = "2026-03-01"
    # Deliveries in PostgreSQL too: the receiver and the daemon share no disk in a deployment.
    raw["ingest"] = {"store_url": {"env": "MLCONNECTOR_DELIVERY_STORE_URL"}}
    config = data_dir / "connector.yaml"
    config.write_text(yaml.safe_dump(raw))
    store_url = (
        "postgresql+psycopg2://{DAGSTER_PG_USERNAME}:{DAGSTER_PG_PASSWORD}@{DAGSTER_PG_HOST}:"
        "{DAGSTER_PG_PORT}/{DAGSTER_PG_DB}"
    ).format(**os.environ)
    patch = pytest.MonkeyPatch()
    patch.setenv("MLCONNECTOR_DELIVERY_STORE_URL", store_url)
    env = {**os.environ, "DAGSTER_HOME": str(home), "MLCONNECTOR_CONFIG": str(config)}
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(home / "daemon.log").open("w"),
    )
    try:
        yield {"home": home, "env": env, "data_dir": data_dir, "config": config, "admin": admin}
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        admin.http.close()
        running.stop()
        patch.undo()


def instance(deployment) -> dg.DagsterInstance:
    """A fresh handle on the shared instance: whatever it sees was read from PostgreSQL."""
    from dagster._core.instance.ref import InstanceRef

    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(deployment["home"])))


def cli(deployment, *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "dagster"), *args, "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        env=deployment["env"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def wait_for_runs(deployment, count: int, tags: dict | None = None, timeout: float = 180) -> list[dg.DagsterRun]:
    deadline = time.monotonic() + timeout
    while True:
        runs = instance(deployment).get_runs(filters=dg.RunsFilter(tags=tags or {}))
        if len(runs) >= count and all(r.is_finished for r in runs):
            return runs
        if time.monotonic() > deadline:
            log = (deployment["home"] / "daemon.log").read_text()[-3000:]
            pytest.fail(f"{len(runs)} run(s) {[r.status for r in runs]} after {timeout:g}s; daemon log:\n{log}")
        time.sleep(1)


def test_the_instance_stores_everything_in_postgres(deployment):
    storage = instance(deployment)
    assert type(storage.run_storage).__name__ == "PostgresRunStorage"
    # dagster-postgres's event log, writing a backfill's asset events in batches (instance_storage.py)
    assert type(storage.event_log_storage).__name__ == "BatchedPostgresEventLogStorage"
    assert "PostgresEventLogStorage" in [base.__name__ for base in type(storage.event_log_storage).__mro__]
    assert type(storage.schedule_storage).__name__ == "PostgresScheduleStorage"


def test_a_backfill_runs_through_the_daemon(deployment):
    cli(
        deployment,
        "job",
        "backfill",
        "-j",
        "business_central_to_warehouse",
        "--from",
        "2026-03-01",
        "--to",
        "2026-03-02",
        "--noprompt",
    )
    assert len(instance(deployment).get_backfills()) == 1
    runs = wait_for_runs(deployment, 2, tags={"dagster/backfill": instance(deployment).get_backfills()[0].backfill_id})
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    vendors = dg.AssetKey(["business_central", "bc_vendors"])
    assert {"2026-03-01", "2026-03-02"} <= instance(deployment).get_materialized_partitions(vendors)


def test_a_delivery_becomes_one_run_through_the_sensor(deployment):
    body = orjson.dumps(
        {
            "type": "query",
            "scheduled_plan": {"scheduled_plan_id": "101", "title": "Vendor balances"},
            "attachment": {
                "mimetype": "application/json",
                "data": orjson.dumps(
                    [
                        {
                            "vendors.company_name": "CRONUS USA, Inc.",
                            "vendors.number": "V1",
                            "vendors.name": "A",
                            "vendors.total_balance": 5.5,
                        }
                    ]
                ).decode(),
            },
        }
    )
    from mlconnector_pipelines.config import load_config

    cfg = load_config(deployment["config"])
    delivery = parse_delivery(body, {q.scheduled_plan_id: q for q in cfg.looker.queries if q.scheduled_plan_id})
    store = open_delivery_store(cfg.ingest, cfg.data_dir, "looker")
    assert type(store).__name__ == "SqlDeliveryStore"
    assert store.put(delivery) and not store.put(delivery)  # a repeat is recognised, not stored twice
    assert [d.id for _, d in store.after(None)] == [delivery.id]
    [run] = wait_for_runs(deployment, 1, tags={"mlconnector/delivery": delivery.id}, timeout=120)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    ticks = instance(deployment).get_ticks(
        next(
            s.instigator_origin_id for s in instance(deployment).all_instigator_state() if s.name == DELIVERIES_SENSOR
        ),
        next(s.selector_id for s in instance(deployment).all_instigator_state() if s.name == DELIVERIES_SENSOR),
    )
    assert any(delivery.id in (t.run_keys or []) for t in ticks)


def test_schedule_state_is_shared_through_postgres(deployment):
    cli(deployment, "schedule", "start", "business_central_to_warehouse_schedule")
    states = {s.name: s.status for s in instance(deployment).all_instigator_state()}
    assert states["business_central_to_warehouse_schedule"].value == "RUNNING"
    assert "business_central_to_warehouse_schedule" in cli(deployment, "schedule", "list", "--running")
