"""`mlconnector ping` and the `ping` job against the sandbox, for success and each failure cause."""

import pytest
import trustme
import yaml
from click.testing import CliRunner

from mlconnector_pipelines.cli import main
from mlconnector_pipelines.core.credentials import CredentialStore
from mlconnector_pipelines.definitions import build_definitions
from mlconnector_pipelines.ping import run_pings

from ..conftest import make_config


def ping_one(cfg):
    """The one ERP system configured (the warehouse is checked first, always)."""
    warehouse, result = run_pings(cfg)
    assert warehouse.system == "Warehouse (duckdb)" and warehouse.ok, warehouse.detail
    return result


def test_ping_succeeds_against_the_sandbox(sandbox, tmp_path):
    result = ping_one(make_config(sandbox, tmp_path))
    assert (result.auth_ok, result.read_ok, result.ok) == (True, True, True)
    assert result.detail == (
        "2 companies: CRONUS USA, Inc., CRONUS Canada, Inc.; change notifications: 0 of 18 subscriptions "
        "(run the job business_central_subscriptions, with `mlconnector ingest` reachable)"
    )
    assert result.latency_ms > 0 and result.url.endswith("/production/api/v2.0")


@pytest.mark.parametrize(
    "overrides, auth_ok, read_ok, fix",
    [
        pytest.param(
            {"auth": {"tenant_id": "11111111-2222-3333-4444-555555555555"}},
            False,
            None,
            "check tenant_id",
            id="wrong-tenant",
        ),
        pytest.param(
            {"scope": "https://graph.microsoft.com/.default"},
            False,
            None,
            "add the application permission",
            id="missing-api-permission",
        ),
        pytest.param({"environment": "prod"}, True, False, "must match the environment name", id="unknown-environment"),
        pytest.param(
            {"companies": ["CRONUS Atlantis"]}, True, False, "set business_central.companies", id="unknown-company"
        ),
    ],
)
def test_ping_explains_each_failure(sandbox, tmp_path, overrides, auth_ok, read_ok, fix):
    result = ping_one(make_config(sandbox, tmp_path, **overrides))
    assert (result.auth_ok, result.read_ok, result.ok) == (auth_ok, read_ok, False)
    assert fix in result.fix, result


def test_a_proxy_page_in_place_of_one_systems_answers_is_named_and_the_other_systems_are_still_checked(
    sandbox, tmp_path
):
    """A sign-in page answered 200 where Acumatica's JSON belongs: that system's check says what came back
    from which request, and Business Central's and Dataverse's checks still run and pass."""
    from mlconnector_pipelines.config import parse_config, sandbox_profile

    from ..conftest import FAST_HTTP

    raw = sandbox_profile(sandbox.data_dir, sandbox.url)
    raw.update(data_dir=str(tmp_path), sap_business_one=None, looker=None, finance_operations=None)
    raw["acumatica"]["http"] = dict(FAST_HTTP)
    sandbox.faults({"kind": "html", "path_contains": "/entity/", "count": 50}, service="acumatica")
    try:
        results = {r.system: r for r in run_pings(parse_config(raw))}
    finally:
        sandbox.clear_faults()
    acumatica = results.pop("Acumatica")
    assert acumatica.ok is False and "malformed JSON" in acumatica.detail and "/entity/" in acumatica.detail
    assert "Sign in" in acumatica.detail  # what came back, as received
    assert results and all(r.ok for r in results.values()), results


@pytest.mark.parametrize("body", [{}, {"value": None}, {"value": {"id": "x"}}, [{"id": "x"}]], ids=str)
def test_an_answer_without_a_list_of_records_is_named_not_read_as_no_companies(sandbox, tmp_path, body):
    """`{}` from a misrouted gateway is no company at all, not an environment with none."""
    sandbox.faults({"kind": "json", "value": body, "path_contains": "/companies", "count": 1})
    try:
        result = ping_one(make_config(sandbox, tmp_path))
    finally:
        sandbox.clear_faults()
    assert (result.auth_ok, result.read_ok) == (True, False)
    assert 'without a "value" list of records' in result.detail and "/companies" in result.detail, result


def test_ping_wrong_secret(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("MLCONNECTOR_BC_CLIENT_SECRET", "Wrong-Secret-123")
    result = ping_one(make_config(sandbox, tmp_path))
    assert result.auth_ok is False and "client secret is wrong" in result.fix
    assert "Wrong-Secret-123" not in result.detail + result.fix


def test_ping_untrusted_tls(sandbox, tmp_path):
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    cfg = make_config(sandbox, tmp_path, ca_bundle=str(other_ca), auth={"ca_bundle": str(other_ca)})
    result = ping_one(cfg)
    assert result.auth_ok is False and result.fix.startswith("TLS not trusted"), result


def test_ping_missing_environment_variable(sandbox, tmp_path):
    cfg = make_config(sandbox, tmp_path, auth={"client_secret": {"env": "NOT_SET_ANYWHERE"}})
    result = ping_one(cfg)
    assert result.auth_ok is False and "NOT_SET_ANYWHERE" in result.detail and "export" in result.fix


def test_ping_reads_the_secret_from_the_credential_store(sandbox, tmp_path, monkeypatch):
    monkeypatch.delenv("MLCONNECTOR_CREDENTIALS_KEY", raising=False)
    CredentialStore(tmp_path).set("bc-client-secret", "sandbox-client-secret")
    cfg = make_config(sandbox, tmp_path, auth={"client_secret": {"credential": "bc-client-secret"}})
    assert ping_one(cfg).ok
    missing = make_config(sandbox, tmp_path, auth={"client_secret": {"credential": "nope"}})
    result = ping_one(missing)
    assert not result.ok and "'nope' is not in" in result.detail and "credentials set" in result.fix


def test_cli_ping_exit_codes(sandbox, tmp_path, monkeypatch):
    cfg = make_config(sandbox, tmp_path)
    raw = cfg.model_dump(mode="json")
    raw["business_central"]["auth"]["client_secret"] = {"env": "MLCONNECTOR_BC_CLIENT_SECRET"}
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump(raw))
    raw["business_central"]["environment"] = "prod"
    bad.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MLCONNECTOR_BC_CLIENT_SECRET", "sandbox-client-secret")
    runner = CliRunner()
    ok = runner.invoke(main, ["ping", "--config", str(good)])
    assert ok.exit_code == 0, ok.output
    assert "Business Central" in ok.output and "Warehouse (duckdb)" in ok.output and "2 of 2 system(s) OK" in ok.output
    failed = runner.invoke(main, ["ping", "--config", str(bad)])
    assert failed.exit_code == 1
    assert "Environment 'prod' does not exist" in failed.output and "fix:" in failed.output


def test_ping_job_in_dagster(sandbox, tmp_path):
    job = build_definitions(make_config(sandbox, tmp_path)).resolve_job_def("ping")
    result = job.execute_in_process()
    assert result.success
    [output] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    table = output.event_specific_data.metadata["results"].value
    assert "| Business Central |" in table and "| yes | yes |" in table

    failing = build_definitions(make_config(sandbox, tmp_path, environment="prod")).resolve_job_def("ping")
    result = failing.execute_in_process(raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "not reachable or not authorised: Business Central" in failure.step_failure_data.error.message
    assert "must match the environment name" in failure.step_failure_data.user_failure_data.metadata["results"].value
