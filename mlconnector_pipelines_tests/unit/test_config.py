from pathlib import Path

import pytest

from mlconnector_pipelines.config import load_config, parse_config
from mlconnector_pipelines.core.errors import ConfigError


def test_no_file_means_the_sandbox_profile(monkeypatch, tmp_path):
    monkeypatch.setenv("MLCONNECTOR_DATA_DIR", str(tmp_path))
    cfg = load_config()
    assert cfg.profile == "sandbox"
    assert cfg.business_central.api_base_url.startswith("https://127.0.0.1:")
    assert cfg.business_central.ca_bundle == tmp_path / "sandbox" / "ca.pem"
    assert cfg.duckdb_path == tmp_path / "warehouse.duckdb"


def test_invalid_file_names_the_key_and_the_problem(tmp_path, monkeypatch):
    path = tmp_path / "connector.yaml"
    path.write_text("profile: sandbox\nbusiness_central:\n  page_size: 50000\n")
    monkeypatch.setenv("MLCONNECTOR_CONFIG", str(path))
    with pytest.raises(ConfigError) as error:
        load_config()
    assert "business_central.page_size" in str(error.value)
    assert "20000" in str(error.value)


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"business_central\.pagesize: Extra inputs are not permitted"):
        parse_config({"profile": "sandbox", "business_central": {"pagesize": 10}})


def test_concurrent_companies_stays_within_what_bc_serves_at_once():
    with pytest.raises(
        ConfigError, match=r"business_central\.concurrent_companies: Input should be less than or equal to 5"
    ):
        parse_config({"profile": "sandbox", "business_central": {"concurrent_companies": 8}})


def test_missing_required_key_is_named():
    with pytest.raises(ConfigError, match=r"business_central\.auth\.tenant_id: Field required"):
        parse_config(
            {
                "business_central": {
                    "environment": "production",
                    "partitions": {"start": "2026-01-01"},
                    "auth": {"client_id": "x", "client_secret": {"env": "S"}},
                }
            }
        )


def test_http_api_url_is_refused():
    with pytest.raises(ConfigError, match=r"business_central\.api_base_url: Value error, must be an https:// URL"):
        parse_config({"profile": "sandbox", "business_central": {"api_base_url": "http://bc.example"}})


@pytest.mark.parametrize("path", ["/api/3.1", "/looks/42", "/api/4.0/login"])
def test_a_looker_url_with_a_path_is_refused_here_not_blamed_on_the_credentials_later(path):
    """Looker answers a login sent to a wrong path 404, as it answers a wrong secret: the path is named now.
    The API 4.0 path itself is taken off, as the address written with it means the same instance."""
    looker = {"client_id": "x", "client_secret": {"env": "S"}}
    with pytest.raises(ConfigError, match=r"looker\.base_url: .*without a path.*not \.\.\./"):
        parse_config({"profile": "sandbox", "looker": {**looker, "base_url": f"https://acme.cloud.looker.com{path}"}})
    same = parse_config(
        {"profile": "sandbox", "looker": {**looker, "base_url": "https://acme.cloud.looker.com/api/4.0"}}
    )
    assert same.looker.base_url == "https://acme.cloud.looker.com"


def test_broken_yaml_and_missing_file_are_clear(tmp_path, monkeypatch):
    path = tmp_path / "connector.yaml"
    path.write_text("business_central: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="--config .*nope.yaml does not exist"):
        load_config(tmp_path / "nope.yaml")
    monkeypatch.setenv("MLCONNECTOR_CONFIG", str(tmp_path / "gone.yaml"))
    with pytest.raises(ConfigError, match="MLCONNECTOR_CONFIG points at .*gone.yaml"):
        load_config()
    path.write_text("profile: sandbox\ndata_dir: [a]\n")
    with pytest.raises(ConfigError, match="data_dir: must be a folder's path"):
        load_config(path)


def test_a_relative_data_dir_is_the_config_files_folders_and_a_home_one_is_expanded(tmp_path, monkeypatch):
    """The daemon, the webserver and a shell start in different folders: `data_dir: ./data` read against each
    one's own was several stores for one file (a replay found nothing in a store no run had written)."""
    etc = tmp_path / "etc"
    etc.mkdir()
    path = etc / "connector.yaml"
    path.write_text("profile: sandbox\ndata_dir: ./data\n")
    monkeypatch.chdir(tmp_path)
    assert load_config(path).data_dir == etc / "data"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path.write_text("profile: sandbox\ndata_dir: ~/mlc\n")
    assert load_config(path).data_dir == tmp_path / "home" / "mlc"
    # A deployment whose stores an earlier release kept under the current folder is told, not moved silently.
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "audit.sqlite").write_bytes(b"")
    path.write_text("profile: sandbox\ndata_dir: state\n")
    with pytest.raises(ConfigError, match="state .*holds data: move it to"):
        load_config(path)


def test_the_shipped_example_is_valid(monkeypatch):
    example = Path(__file__).resolve().parents[2] / "connector.example.yaml"
    cfg = load_config(example)
    assert cfg.business_central.environment == "production"
    assert cfg.business_central.auth.client_secret.credential == "bc-client-secret"
    assert cfg.looker.queries[1].look_id == "42" and cfg.looker.delivery_secret.credential == "looker-delivery-secret"
    # The journal posts a query the file declares: the code location builds from it.
    from mlconnector_pipelines.definitions import build_definitions

    assert build_definitions(cfg).resolve_job_def("finance_operations_fee_allocation_journal")
    # Secrets are referenced, never written in the file: every `…secret:` key holds a reference.
    text = example.read_text()
    assert "secret:" not in text.replace("client_secret:", "").replace("delivery_secret:", "")


def test_unknown_entity_is_a_config_error():
    from mlconnector_pipelines.systems.business_central.catalog import select

    with pytest.raises(ConfigError, match="unknown entity set"):
        select(["vendors", "salesInvoiceLine"])


def test_a_secret_reference_names_exactly_one_source():
    with pytest.raises(ConfigError, match=r"business_central\.auth\.client_secret: Value error, give exactly one"):
        parse_config(
            {"profile": "sandbox", "business_central": {"auth": {"client_secret": {"env": "A", "credential": "b"}}}}
        )
    cfg = parse_config({"profile": "sandbox", "business_central": {"auth": {"client_secret": {"credential": "b"}}}})
    assert cfg.business_central.auth.client_secret.env is None  # replaced whole, not merged with the default


def test_a_secret_written_where_its_variable_name_goes_is_refused_without_echoing_it():
    """`client_secret: {env: <the secret>}` was accepted; ping then printed the value ("environment variable … is
    not set", "export …=") and the ping job stored it in run metadata. An Entra secret is never a variable name."""
    secret = "Abc8Q~x1yZ.EXAMPLE_secret-value~42"
    with pytest.raises(ConfigError) as error:
        parse_config({"profile": "sandbox", "business_central": {"auth": {"client_secret": {"env": secret}}}})
    message = str(error.value)
    assert "business_central.auth.client_secret.env: Value error, is not an environment variable's name" in message
    assert "{credential: NAME}" in message and secret not in message
    cfg = parse_config({"profile": "sandbox", "business_central": {"auth": {"client_secret": {"env": "_BC_SECRET2"}}}})
    assert cfg.business_central.auth.client_secret.env == "_BC_SECRET2"
