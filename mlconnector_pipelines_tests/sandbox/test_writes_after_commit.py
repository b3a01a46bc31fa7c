"""A write the server committed but whose answer was lost is never sent again: over HTTPS, with msal.

The sandbox commits the customer, then drops the connection or answers 504 (a gateway timing
out). The client must raise OutcomeUnknown naming the request, and the record must exist once;
the caller resolves it by looking the natural key up. A 429 before the commit is retried.
"""

import pytest

from mlconnector_pipelines.core.errors import OutcomeUnknown, RequestFailedError
from mlconnector_pipelines.systems.business_central.resource import BusinessCentralResource

from ..conftest import make_config


@pytest.fixture
def bc(sandbox, tmp_path):
    sandbox.reset()  # the module's server, back to its seed: faster than a server per case
    cfg = make_config(sandbox, tmp_path)
    client = BusinessCentralResource.from_section(cfg.business_central, cfg.data_dir).client()
    company = client.companies()[0]["id"]
    yield client, company
    client.close()
    sandbox.clear_faults()


@pytest.mark.parametrize("fault", ["commit_then_drop", "commit_then_504", "commit_then_cut"])
def test_a_committed_write_whose_answer_is_lost_is_not_sent_again(sandbox, bc, fault):
    client, company = bc
    sandbox.faults({"kind": fault, "path_contains": "/customers", "count": 1})
    posts_before = client.http.stats.by_method.get("POST", 0)
    with pytest.raises(OutcomeUnknown) as caught:
        client.create(company, "customers", {"number": "C-AFTER-COMMIT", "displayName": "Committed Once Ltd"})
    assert caught.value.method == "POST" and caught.value.url.endswith("/customers")
    assert client.http.stats.by_method["POST"] - posts_before == 1  # sent once, never repeated
    assert sandbox.state("business_central")["faults_fired"] == {fault: 1}
    # The write happened: the natural key finds exactly one record.
    found = client.find(company, "customers", "number", "C-AFTER-COMMIT")
    assert [c["displayName"] for c in found] == ["Committed Once Ltd"]
    # Sending it again (what a blind retry would do) is refused by BC's own key check.
    with pytest.raises(RequestFailedError) as again:
        client.create(company, "customers", {"number": "C-AFTER-COMMIT", "displayName": "Committed Once Ltd"})
    assert again.value.code == "Internal_EntityWithSameKeyExists"


def test_a_write_refused_with_429_before_the_commit_is_sent_again_and_lands_once(sandbox, bc):
    client, company = bc
    sandbox.faults({"kind": "status", "status": 429, "retry_after": 0.01, "path_contains": "/customers", "count": 1})
    created = client.create(company, "customers", {"number": "C-THROTTLED", "displayName": "Throttled Ltd"})
    assert created["number"] == "C-THROTTLED"
    assert client.http.stats.by_method["POST"] == 2
    assert len(client.find(company, "customers", "number", "C-THROTTLED")) == 1


def test_reset_returns_the_seed_and_forgets_what_was_written(sandbox, bc):
    client, company = bc
    client.create(company, "customers", {"number": "C-TRANSIENT", "displayName": "Transient Ltd"})
    assert client.find(company, "customers", "number", "C-TRANSIENT")
    sandbox.reset()
    assert client.find(company, "customers", "number", "C-TRANSIENT") == []


def test_a_token_for_another_resource_is_refused(sandbox_with_second_resource, tmp_path):
    """Entra issues tokens for any registered resource; BC refuses one issued for another."""
    import httpx

    from mlconnector_pipelines.sandbox.entra import CLIENT_ID, CLIENT_SECRET, TENANT_ID

    admin = sandbox_with_second_resource
    ca = str(admin.running.certificates.ca_pem)
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    tokens = {}
    for resource in ("https://api.businesscentral.dynamics.com", OTHER_RESOURCE):
        answer = httpx.post(
            f"{admin.url}/{TENANT_ID}/oauth2/v2.0/token", data={**form, "scope": f"{resource}/.default"}, verify=ca
        )
        assert answer.status_code == 200, answer.text
        tokens[resource] = answer.json()["access_token"]
    companies = f"{admin.url}/v2.0/{TENANT_ID}/production/api/v2.0/companies"
    ok = httpx.get(
        companies, headers={"Authorization": f"Bearer {tokens['https://api.businesscentral.dynamics.com']}"}, verify=ca
    )
    refused = httpx.get(companies, headers={"Authorization": f"Bearer {tokens[OTHER_RESOURCE]}"}, verify=ca)
    assert ok.status_code == 200 and refused.status_code == 401
    assert refused.json()["error"]["code"] == "Authentication_InvalidCredentials"
    unregistered = httpx.post(
        f"{admin.url}/{TENANT_ID}/oauth2/v2.0/token",
        data={**form, "scope": "https://nobody.example.com/.default"},
        verify=ca,
    )
    assert unregistered.status_code == 400 and "AADSTS500011" in unregistered.text


OTHER_RESOURCE = "https://contoso.operations.dynamics.com"


@pytest.fixture(scope="module")
def sandbox_with_second_resource(tmp_path_factory):
    from ..conftest import SandboxAdmin, start_sandbox

    running, data_dir = start_sandbox(tmp_path_factory, entra={"extra_resources": [OTHER_RESOURCE]})
    admin = SandboxAdmin(running)
    yield admin
    admin.http.close()
    running.stop()
