"""`mlconnector ping` and the `ping` job against the sandbox, for success and each failure cause."""

import http.server
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
from datetime import UTC, datetime

import pytest
import trustme
import yaml
from click.testing import CliRunner

from mlconnector_pipelines.cli import main
from mlconnector_pipelines.config import ConnectorConfig, parse_config, sandbox_profile
from mlconnector_pipelines.core.credentials import CredentialStore
from mlconnector_pipelines.core.tls import EXPIRED_FIX, NAME_MISMATCH_FIX, NOT_TLS_FIX
from mlconnector_pipelines.definitions import build_definitions
from mlconnector_pipelines.ping import run_pings

from ..conftest import FAST_HTTP, make_config


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
    assert ok.output.startswith(("Warehouse (duckdb): ok (", "Business Central: ok ("))  # each as it is in
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


# -- a ping answers soon, whatever the network does ------------------------------------------------------------


class SilentServer:
    """Accepts TCP connections and never answers: a firewall or proxy that swallows requests."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.accepted.append(self.socket.accept()[0])
            except OSError:  # closed
                return

    def close(self):
        self.socket.close()
        for connection in self.accepted:
            connection.close()


def closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as listening:
        return listening.getsockname()[1]


def answered_within(seconds: float, ask, *, release=lambda: None):
    """What `ask()` returned, failing the test when it had not returned after `seconds` (it may hang for minutes).
    `release` then ends what held it up, so that a late answer ends before the interpreter does."""
    answer = {}
    asking = threading.Thread(target=lambda: answer.setdefault("value", ask()), daemon=True)
    asking.start()
    asking.join(seconds)
    answered = "value" in answer
    release()
    asking.join(seconds)
    assert answered, f"no answer after {seconds} s"
    return answer["value"]


def only(sandbox, tmp_path, system: str, **settings) -> ConnectorConfig:
    """The sandbox profile with one ERP system, its settings overridden."""
    raw = sandbox_profile(sandbox.data_dir, sandbox.url)
    raw["data_dir"] = str(tmp_path)
    for key in ("business_central", "sap_business_one", "looker", "finance_operations", "acumatica", "dataverse"):
        if key != system:
            raw[key] = None
    raw[system] = {**raw[system], "http": dict(FAST_HTTP), **settings}
    return parse_config(raw)


def test_a_system_that_never_answers_is_named_at_the_deadline_while_the_others_answer(sandbox, tmp_path):
    """A host that accepts the connection and stays silent kept the ping for attempts × timeout (16 minutes with
    the production policy), checking one system after another and printing nothing before the end. Now the checks
    run side by side, each row is handed on as it finishes, and at the deadline the silent one is named with the
    network fix."""
    silent = SilentServer()
    raw = sandbox_profile(sandbox.data_dir, sandbox.url)
    raw.update(data_dir=str(tmp_path), sap_business_one=None, looker=None, finance_operations=None, acumatica=None)
    raw["business_central"]["api_base_url"] = f"https://127.0.0.1:{silent.port}"
    raw["dataverse"]["http"] = dict(FAST_HTTP)
    as_they_came = []
    try:
        results = answered_within(
            30,
            lambda: run_pings(parse_config(raw), deadline_seconds=3, on_result=as_they_came.append),
            release=silent.close,
        )
    finally:
        silent.close()
    assert [r.system for r in results] == ["Warehouse (duckdb)", "Business Central", "Dynamics 365 Sales"]
    warehouse, bc, dataverse = results
    assert warehouse.ok and dataverse.ok, results
    assert (bc.ok, bc.detail) == (False, "timed out: no answer within the ping's 3 s")
    assert "host and port" in bc.fix and "firewall" in bc.fix
    assert as_they_came[-1] is bc and set(map(id, as_they_came)) == set(map(id, results))


def test_a_refused_port_is_the_answer_at_once_not_retried(sandbox, tmp_path):
    """Nothing listens at the URL's port: one attempt, the refusal and the network fix (the production policy tried
    again and again with back-off, 93 s with its defaults)."""
    port = closed_port()
    cfg = make_config(sandbox, tmp_path, api_base_url=f"https://127.0.0.1:{port}")
    _, bc = answered_within(30, lambda: run_pings(cfg, deadline_seconds=20))
    assert bc.system == "Business Central" and bc.auth_ok is True and bc.read_ok is False
    assert "after 1 attempt:" in bc.detail and "Connection refused" in bc.detail, bc.detail
    assert bc.fix.startswith("the host is not reachable") and "firewall" in bc.fix


def test_the_ping_job_checks_with_the_pings_policy(sandbox, tmp_path):
    """The Dagster job is the same ping: a refused port is its answer after one attempt."""
    cfg = make_config(sandbox, tmp_path, api_base_url=f"https://127.0.0.1:{closed_port()}")
    result = build_definitions(cfg).resolve_job_def("ping").execute_in_process(raise_on_error=False)
    failure = next(e for e in result.all_events if e.is_step_failure)
    table = failure.step_failure_data.user_failure_data.metadata["results"].value
    assert "after 1 attempt:" in table and "the host is not reachable" in table


def test_a_warehouse_file_another_process_holds_is_that_rows_answer(sandbox, tmp_path):
    """A DuckDB session left open on the warehouse (the DuckDB CLI, a notebook) held the whole ping for the step's
    lock wait, ten minutes, before any system was checked."""
    cfg = make_config(sandbox, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time\n"
         f"con = duckdb.connect({str(cfg.duckdb_path)!r}); print('locked', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip

    def release():
        holder.kill()
        holder.wait()

    try:
        assert holder.stdout.readline().strip() == "locked"
        warehouse, bc = answered_within(30, lambda: run_pings(cfg), release=release)
    finally:
        release()
    assert not warehouse.ok and "locked by another process" in warehouse.detail, warehouse.detail
    assert f"PID {holder.pid}" in warehouse.detail
    assert warehouse.fix.startswith("close the other DuckDB session on the file")
    assert bc.ok


# -- each failure's likely fix ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "system, setting, url",
    [
        ("finance_operations", "environment_url", "https://mlc-sandbox-typo.operations.dynamics.com"),
        ("dataverse", "org_url", "https://mlc-sandbox-typo.crm.dynamics.com"),
    ],
)
def test_a_resource_entra_does_not_know_is_blamed_on_the_url_that_names_it(sandbox, tmp_path, system, setting, url):
    """F&O's and Dataverse's token scope is built from their URL and needs no API permission in Entra, so
    AADSTS500011 (resource principal not found) means the URL is wrong; it was answered "add the application
    permission and grant admin consent", which holds for Business Central only."""
    _, result = run_pings(only(sandbox, tmp_path, system, **{setting: url}))
    assert result.auth_ok is False and "AADSTS500011" in result.detail
    assert f"check {system}.{setting}" in result.fix and "same tenant" in result.fix, result.fix
    assert "consent" not in result.fix


@pytest.mark.parametrize("mode", ["oauth", "legacy"])
def test_an_acumatica_site_path_that_is_not_there_names_base_url(sandbox, tmp_path, mode):
    """An on-premise site lives under its virtual directory (https://erp.example.com/AcumaticaERP): a base_url
    without it, or mistyped, has its sign-in answered 404, which was told "retry later"."""
    auth = {"mode": "legacy", "client_id": None, "client_secret": None} if mode == "legacy" else {}
    raw_auth = {**sandbox_profile(sandbox.data_dir, sandbox.url)["acumatica"]["auth"], **auth}
    cfg = only(sandbox, tmp_path, "acumatica", base_url=f"{sandbox.url}/AcumaticaERPX", auth=raw_auth)
    _, result = run_pings(cfg)
    assert result.auth_ok is False and "HTTP 404" in result.detail, result.detail
    assert result.fix.startswith("no Acumatica site at this path: check acumatica.base_url"), result.fix


class _PlainHttp(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_a_port_that_speaks_plain_http_is_named_not_retried_as_an_outage(sandbox, tmp_path):
    """A https:// URL on a server's plain-HTTP port fails its handshake (WRONG_VERSION_NUMBER): that was retried
    like a network fault and told "the host is not reachable"."""
    server = socketserver.TCPServer(("127.0.0.1", 0), _PlainHttp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        _, result = run_pings(
            make_config(sandbox, tmp_path, api_base_url=f"https://127.0.0.1:{server.server_address[1]}")
        )
    finally:
        server.shutdown()
        server.server_close()
    assert "after 1 attempt:" in result.detail, result.detail
    assert result.fix == NOT_TLS_FIX


@pytest.fixture(scope="module")
def private_ca():
    return trustme.CA()


def _served_with(certificate, tmp_path) -> socketserver.TCPServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate.configure_cert(context)
    server = socketserver.TCPServer(("127.0.0.1", 0), _PlainHttp)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.parametrize(
    "issued, fix",
    [
        (dict(identities=["erp.example.com"]), NAME_MISMATCH_FIX),
        (dict(identities=["127.0.0.1"], not_after=datetime(2020, 1, 1, tzinfo=UTC)), EXPIRED_FIX),
    ],
    ids=["issued-to-another-name", "expired"],
)
def test_a_certificate_the_ca_bundle_cannot_fix_is_told_apart(sandbox, tmp_path, private_ca, issued, fix):
    """Every failed verification was told "set ca_bundle to the CA that signed the server", also when the bundle is
    right and the certificate names another host, or has expired."""
    identities = issued.pop("identities")
    server = _served_with(private_ca.issue_cert(*identities, **issued), tmp_path)
    bundle = tmp_path / "ca.pem"
    private_ca.cert_pem.write_to_path(str(bundle))
    try:
        cfg = make_config(
            sandbox, tmp_path, api_base_url=f"https://127.0.0.1:{server.server_address[1]}", ca_bundle=str(bundle)
        )
        _, result = run_pings(cfg)
    finally:
        server.shutdown()
        server.server_close()
    assert "CERTIFICATE_VERIFY_FAILED" in result.detail and result.fix == fix, result
