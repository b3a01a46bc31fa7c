"""No secret reaches anything a run writes: event log, compute logs, run config, metadata, warehouse."""

from pathlib import Path

import dagster as dg
import pytest
import yaml

from mlconnector_pipelines.config import sandbox_profile
from mlconnector_pipelines.core.credentials import CredentialStore

from ..conftest import SandboxAdmin, make_config, start_sandbox
from ..jobs import SPAWN, bc_job_from_env, fresh, ping_job_from_env

pytestmark = pytest.mark.slow
GOOD_SECRET = "Zebra-Sandbox-Secret-8472"
WRONG_SECRET = "Wrong-Secret-Kangaroo-5521"


@pytest.fixture(scope="module")
def secret_sandbox(tmp_path_factory):
    running, data_dir = start_sandbox(tmp_path_factory, entra={"client_secret": GOOD_SECRET})
    admin = SandboxAdmin(running)
    admin.data_dir = data_dir
    yield admin
    admin.http.close()
    running.stop()


def write_config(admin, tmp_path: Path, name: str, secret_ref: dict) -> Path:
    fo = sandbox_profile(admin.data_dir, admin.url)["finance_operations"]
    fo["journals"] = []  # F&O is pinged (its token and errors) with the same secret reference
    raw = make_config(admin, tmp_path, finance_operations=fo, entities=["vendors", "generalLedgerEntries"]).model_dump(
        mode="json"
    )
    raw["business_central"]["auth"]["client_secret"] = secret_ref
    raw["finance_operations"]["auth"]["client_secret"] = secret_ref
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_no_secret_in_anything_a_run_writes(secret_sandbox, tmp_path, monkeypatch):
    monkeypatch.delenv("MLCONNECTOR_CREDENTIALS_KEY", raising=False)
    CredentialStore(tmp_path).set("bc-secret", GOOD_SECRET)
    good = write_config(secret_sandbox, tmp_path, "good", {"credential": "bc-secret"})
    wrong = write_config(secret_sandbox, tmp_path, "wrong", {"env": "BC_SECRET_UNDER_TEST"})
    monkeypatch.setenv("BC_SECRET_UNDER_TEST", WRONG_SECRET)
    (tmp_path / "dagster").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        monkeypatch.setenv("MLCONNECTOR_CONFIG", str(good))
        ok = dg.execute_job(
            fresh(bc_job_from_env), instance=instance, run_config=SPAWN, tags={"dagster/partition": "2026-03-02"}
        )
        assert ok.success
        monkeypatch.setenv("MLCONNECTOR_CONFIG", str(wrong))
        failed = dg.execute_job(
            fresh(bc_job_from_env),
            instance=instance,
            run_config=SPAWN,
            tags={"dagster/partition": "2026-03-02"},
            raise_on_error=False,
        )
        assert not failed.success
        failures = [e.step_failure_data.error.to_string() for e in failed.all_events if e.is_step_failure]
        assert failures and all("AADSTS7000215" in f for f in failures)
        pinged = dg.execute_job(fresh(ping_job_from_env), instance=instance, run_config=SPAWN, raise_on_error=False)
        assert not pinged.success
        ping_failure = next(e for e in pinged.all_events if e.is_step_failure).step_failure_data.error.to_string()
        assert "Business Central" in ping_failure and "Finance and Operations" in ping_failure

    # The scan sees what the runs wrote: the event log and compute logs name the run's content...
    assert files_containing(tmp_path / "dagster", b"AADSTS7000215")
    assert files_containing(tmp_path / "dagster", b"generalLedgerEntries")
    assert files_containing(tmp_path, b"CRONUS USA")  # the warehouse
    # ...and no secret appears anywhere, encrypted store included.
    for secret in (GOOD_SECRET, WRONG_SECRET):
        assert files_containing(tmp_path, secret.encode()) == [], secret
