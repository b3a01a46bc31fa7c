"""The Dataverse client over HTTPS against the sandbox: tokens per scope (real msal), ping, paging, change tracking."""

from __future__ import annotations

import pytest

from mlconnector_pipelines.config import parse_config, sandbox_profile
from mlconnector_pipelines.core.errors import RequestFailedError
from mlconnector_pipelines.systems.business_central.resource import BusinessCentralResource
from mlconnector_pipelines.systems.dataverse.client import DeltaTokenExpired
from mlconnector_pipelines.systems.dataverse.ping import ping
from mlconnector_pipelines.systems.dataverse.resource import DataverseResource

from ..conftest import FAST_HTTP


@pytest.fixture
def cfg(sandbox, tmp_path):
    sandbox.reset()
    raw = sandbox_profile(sandbox.data_dir, sandbox.url)
    raw["data_dir"] = str(tmp_path)
    for key in ("sap_business_one", "looker", "finance_operations", "acumatica"):
        raw[key] = None
    raw["dataverse"]["http"] = dict(FAST_HTTP)
    raw["dataverse"]["page_size"] = 7  # many pages
    yield parse_config(raw)
    sandbox.clear_faults()


def dataverse(cfg):
    return DataverseResource.from_section(cfg.dataverse, cfg.data_dir).client()


def test_each_token_is_refused_by_the_other_system(cfg, sandbox):
    """msal asks Entra for one token per scope; Dataverse refuses BC's and BC refuses Dataverse's."""
    sales = dataverse(cfg)
    bc = BusinessCentralResource.from_section(cfg.business_central, cfg.data_dir).client()
    try:
        sales_token, bc_token = sales.tokens.access_token(), bc.tokens.access_token()
        assert sales_token != bc_token
        assert sales.who_am_i()["UserId"]
        assert bc.companies()
        raw = sales.http._http  # the same TLS and base URL, a foreign token
        refused = raw.get("/WhoAmI", headers={"Authorization": f"Bearer {bc_token}"})
        assert refused.status_code == 401
        refused = bc.http._http.get(f"{bc.base_path}/companies", headers={"Authorization": f"Bearer {sales_token}"})
        assert refused.status_code == 401
    finally:
        sales.close()
        bc.close()


def test_ping_names_what_is_wrong(cfg, sandbox):
    result = ping(cfg.dataverse, cfg.data_dir)
    assert result.ok, result.detail
    assert "application user" in result.detail
    other_app = cfg.dataverse.model_copy(
        update={"auth": cfg.dataverse.auth.model_copy(update={"client_id": "00000000-0000-0000-0000-00000000beef"})}
    )
    refused = ping(other_app, cfg.data_dir)
    assert not refused.ok


def test_an_app_that_is_not_an_application_user_is_told_how_to_add_it(sandbox, tmp_path_factory):
    from ..conftest import SandboxAdmin, start_sandbox

    running, data_dir = start_sandbox(tmp_path_factory, dataverse={"application_user_client_ids": []})
    admin = SandboxAdmin(running)
    admin.data_dir = data_dir
    try:
        raw = sandbox_profile(data_dir, running.url)
        raw["data_dir"] = str(tmp_path_factory.mktemp("cfg"))
        for key in ("sap_business_one", "looker", "finance_operations", "acumatica"):
            raw[key] = None
        result = ping(parse_config(raw).dataverse, data_dir)
        assert result.auth_ok and not result.read_ok
        assert "Application User" in result.fix
    finally:
        admin.http.close()
        running.stop()


def test_rows_follow_every_page_once(cfg, sandbox):
    client = dataverse(cfg)
    try:
        rows = client.rows("accounts", select=["accountid", "name"])
        held = sandbox.http.get("/_sandbox/dataverse/records/accounts").json()
        assert sorted(r["accountid"] for r in rows) == sorted(r["accountid"] for r in held)
        assert len(rows) > 7 * 3  # several pages were followed
    finally:
        client.close()


def _changes_deletions_then_expiry(client, sandbox) -> None:
    first = client.changes("accounts", key="accountid", select=["accountid", "name", "versionnumber"])
    assert first.full and first.delta_link and len(first.rows) > 7
    edited = sandbox.http.post("/_sandbox/dataverse/actions/edit-account", json={}).json()
    victim = (
        first.rows[0]["accountid"] if first.rows[0]["accountid"] != edited["accountid"] else first.rows[1]["accountid"]
    )
    deleted = client.http.request("DELETE", f"/accounts({victim})")
    assert deleted.status_code == 204
    second = client.changes(
        "accounts", key="accountid", select=["accountid", "name", "versionnumber"], delta_link=first.delta_link
    )
    assert [r["accountid"] for r in second.rows] == [edited["accountid"]]
    assert second.deleted == [victim]
    third = client.changes("accounts", key="accountid", select=["accountid"], delta_link=second.delta_link)
    assert third.rows == [] and third.deleted == []
    sandbox.http.post("/_sandbox/dataverse/delta-tokens/expire").raise_for_status()
    with pytest.raises(DeltaTokenExpired):
        client.changes("accounts", key="accountid", select=["accountid"], delta_link=third.delta_link)


def test_change_tracking_sees_changes_and_deletions_then_an_expired_token_is_named(cfg, sandbox):
    client = dataverse(cfg)
    try:
        _changes_deletions_then_expiry(client, sandbox)
    finally:
        client.close()


def test_next_and_delta_links_written_relative_to_the_server_root_are_followed(cfg, sandbox):
    """OData JSON allows relative links. Change tracking sent them as paths under the client's base URL, which
    doubled it (`/api/data/v9.2/api/data/v9.2/…`: 404), on the next page and on the next read's delta link."""
    sandbox.http.post("/_sandbox/dataverse/dialect", json={"links": "root_relative"}).raise_for_status()
    client = dataverse(cfg)
    try:
        first = client.http.get_json(
            "/accounts", params={"$select": "accountid"}, headers={"Prefer": "odata.maxpagesize=2"}
        )
        assert first["@odata.nextLink"].startswith("/api/")  # the case
        assert len(client.rows("accounts", select=["accountid"])) > 7  # several pages
        _changes_deletions_then_expiry(client, sandbox)
    finally:
        client.close()
        sandbox.http.post("/_sandbox/dataverse/dialect", json={"links": "absolute"}).raise_for_status()


def test_deletions_named_by_url_and_an_expiry_answered_410_are_read_the_same(tmp_path_factory):
    """OData lets a $deletedEntity row name the record by its URL, and a service say 410 Gone for a delta link
    it no longer honours: the deleted id is still the record's, and the expiry still starts a full read."""
    from ..conftest import SandboxAdmin, start_sandbox

    running, data_dir = start_sandbox(
        tmp_path_factory, dataverse={"deleted_entity_id": "entity_url", "expired_delta_status": 410}
    )
    admin = SandboxAdmin(running)
    admin.data_dir = data_dir
    raw = sandbox_profile(data_dir, running.url)
    raw["data_dir"] = str(tmp_path_factory.mktemp("cfg"))
    for key in ("sap_business_one", "looker", "finance_operations", "acumatica"):
        raw[key] = None
    raw["dataverse"]["http"] = dict(FAST_HTTP)
    raw["dataverse"]["page_size"] = 7
    client = dataverse(parse_config(raw))
    try:
        _changes_deletions_then_expiry(client, admin)
    finally:
        client.close()
        admin.http.close()
        running.stop()


def test_a_table_without_change_tracking_is_an_error_not_an_empty_answer(cfg):
    client = dataverse(cfg)
    try:
        with pytest.raises(RequestFailedError) as refused:
            client.changes("products", key="productid", select=["productid"])
        assert refused.value.code == "0x80072491"
    finally:
        client.close()
