"""A run's steps run in the run's own process, unless the run's config asks for step processes."""

from __future__ import annotations

import os

import dagster as dg
import pytest
import yaml

from ..conftest import make_config
from ..jobs import SPAWN, bc_job_from_env, fresh

pytestmark = pytest.mark.slow


def step_pids(result: dg.ExecutionResult) -> set[int]:
    return {e.pid for e in result.all_events if e.event_type_value == "STEP_START"}


def test_steps_run_in_the_run_process_unless_the_run_asks_for_step_processes(sandbox, tmp_path, monkeypatch):
    raw = make_config(sandbox, tmp_path, entities=["vendors", "customers"]).model_dump(mode="json")
    raw["business_central"]["auth"]["client_secret"] = {"env": "MLCONNECTOR_BC_CLIENT_SECRET"}
    path = tmp_path / "connector.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MLCONNECTOR_CONFIG", str(path))
    monkeypatch.setenv("MLCONNECTOR_BC_CLIENT_SECRET", "sandbox-client-secret")
    (tmp_path / "dagster").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        default = dg.execute_job(fresh(bc_job_from_env), instance=instance, tags={"dagster/partition": "2026-03-04"})
        asked = dg.execute_job(
            fresh(bc_job_from_env), instance=instance, run_config=SPAWN, tags={"dagster/partition": "2026-03-04"}
        )
    assert default.success and asked.success
    assert step_pids(default) == {os.getpid()}  # execute_job runs the run here: its steps too
    pids = step_pids(asked)
    assert len(pids) >= 2 and os.getpid() not in pids  # a process of their own each
