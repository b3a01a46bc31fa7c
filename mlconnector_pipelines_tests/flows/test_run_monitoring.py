"""Runs killed mid-step (kill -9: an out-of-memory kill, a lost node) must not block every later run.

A real `dagster-daemon` runs the shipped instance configuration (dagster.yaml on SQLite, and
deploy/dagster-postgres.yaml when PostgreSQL is available, as in .ci/run). Three BC runs take
the pool's three slots and hang on a slow sandbox; their processes are killed; a fourth run
must still finish. Without run monitoring's slot freeing it waits for ever.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import psutil
import pytest
import yaml

from mlconnector_pipelines.config import sandbox_profile

from ..conftest import FAST_HTTP, SandboxAdmin, start_sandbox

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
JOB = "business_central_to_warehouse"
INSTANCE_FILES = [
    pytest.param("dagster.yaml", id="sqlite"),
    pytest.param(
        "deploy/dagster-postgres.yaml",
        id="postgres",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(not os.environ.get("DAGSTER_PG_HOST"), reason="needs PostgreSQL (.ci/run)"),
        ],
    ),
]


def _instance_yaml(shipped: Path) -> dict:
    settings = yaml.safe_load(shipped.read_text())
    monitoring = settings["run_monitoring"]
    assert monitoring["enabled"] is True and monitoring["free_slots_after_run_end_seconds"] > 0
    assert settings["concurrency"]["pools"]["default_limit"] == 3
    # The shipped intervals (30 s) are for production; the mechanism is the same at 2 s.
    monitoring.update(poll_interval_seconds=2, free_slots_after_run_end_seconds=2)
    return settings


TEST_TAG = "mlconnector-test/run-monitoring"
RUN = uuid.uuid4().hex  # PostgreSQL instance storage is shared with other test modules


def _runs(home: Path) -> list[dg.DagsterRun]:
    """This test's runs, oldest first."""
    from dagster._core.instance.ref import InstanceRef

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        return list(reversed(instance.get_runs(filters=dg.RunsFilter(tags={TEST_TAG: RUN}))))


def _wait(what, predicate, home: Path, timeout: float = 150.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            log = (home / "daemon.log").read_text()[-4000:]
            pytest.fail(
                f"{what} not reached after {timeout:g}s: {[(r.run_id[:8], r.status) for r in _runs(home)]}"
                f"\ndaemon log:\n{log}"
            )
        time.sleep(0.5)


@pytest.mark.parametrize("instance_file", INSTANCE_FILES)
def test_three_killed_runs_do_not_block_the_fourth(instance_file, tmp_path_factory):
    home = tmp_path_factory.mktemp("dagster-home")
    (home / "dagster.yaml").write_text(yaml.safe_dump(_instance_yaml(REPO / instance_file)))
    running, sandbox_dir = start_sandbox(tmp_path_factory)
    admin = SandboxAdmin(running)
    data_dir = tmp_path_factory.mktemp("data")
    raw = sandbox_profile(sandbox_dir, running.url)
    raw.update(data_dir=str(data_dir), sap_business_one=None, looker=None, finance_operations=None, acumatica=None)
    raw["business_central"].update(http=dict(FAST_HTTP, timeout_seconds=300), entities=["vendors"])
    raw["business_central"]["partitions"]["start"] = "2026-03-01"
    config = data_dir / "connector.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "DAGSTER_HOME": str(home), "MLCONNECTOR_CONFIG": str(config)}
    # Every vendors page hangs for minutes: the three runs hold the pool's three slots meanwhile.
    admin.faults({"kind": "delay", "delay_seconds": 240, "count": 100, "path_contains": "/vendors"})
    assert _runs(home) == []  # creates the instance's storage before two processes race to
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(home / "daemon.log").open("w"),
    )
    try:
        for _ in range(4):
            _launch(env)
        # each run reads both sandbox companies at once: two hanging requests a run
        _wait(
            "three runs in their step and a fourth waiting for the pool",
            lambda: (
                len(_runs(home)) == 4
                and all(r.status == dg.DagsterRunStatus.STARTED for r in _runs(home))
                and admin.stats()["faults_fired"].get("delay", 0) >= 6
                and _says_it_waits_for_the_pool(home, _runs(home)[3])
            ),
            home,
            # Four run workers and the daemon each load the code location: on a busy 2-core CI machine the
            # fourth run was seen still queued after 150 s (2 runs in 8), then starting.
            timeout=300,
        )
        holders = _runs(home)[:3]
        _kill(home, holders)
        _wait(
            "the killed runs marked failed",
            lambda: [r.status for r in _runs(home)[:3]] == [dg.DagsterRunStatus.FAILURE] * 3,
            home,
        )
        admin.clear_faults()
        fourth = _wait(
            "the fourth run finished", lambda: next((r for r in _runs(home)[3:] if r.is_finished), None), home
        )
        assert fourth.status == dg.DagsterRunStatus.SUCCESS
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        admin.http.close()
        running.stop()


def _launch(env: dict) -> None:
    done = subprocess.run(
        [
            str(BIN / "dagster"),
            "job",
            "launch",
            "-j",
            JOB,
            "-w",
            str(REPO / "workspace.yaml"),
            "--tags",
            json.dumps({"dagster/partition": "2026-03-03", TEST_TAG: RUN}),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _events(home: Path, run: dg.DagsterRun):
    from dagster._core.instance.ref import InstanceRef

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        return [e.dagster_event for e in instance.all_logs(run.run_id) if e.dagster_event is not None]


def _says_it_waits_for_the_pool(home: Path, run: dg.DagsterRun) -> bool:
    return any("blocked by limit for pool business_central" in (e.message or "") for e in _events(home, run))


def _kill(home: Path, runs: list[dg.DagsterRun]) -> None:
    """kill -9 each run's processes (its run worker and step processes, by the pids its events name)."""
    pids = {
        int(e.engine_event_data.metadata["pid"].value)
        for run in runs
        for e in _events(home, run)
        if e.is_engine_event and e.engine_event_data and "pid" in (e.engine_event_data.metadata or {})
    }
    victims = [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)]
    assert len(victims) >= 3, pids
    for process in victims:
        process.kill()
    psutil.wait_procs(victims, timeout=10)
