"""The Entra token provider (msal) and the BC client against the sandbox over HTTPS."""

from datetime import UTC, datetime, timedelta

import pytest

from mlconnector_pipelines.core.errors import AuthenticationError, ConfigError, RequestFailedError
from mlconnector_pipelines.systems.business_central.catalog import BY_ENTITY_SET
from mlconnector_pipelines.systems.business_central.resource import BusinessCentralResource

from ..conftest import HISTORY_END, HISTORY_START, make_config, window_of


def resource(sandbox, tmp_path, **overrides) -> BusinessCentralResource:
    cfg = make_config(sandbox, tmp_path, **overrides)
    # Initialised as Dagster does for a run, which resolves EnvVar secrets.
    return BusinessCentralResource.from_section(cfg.business_central, cfg.data_dir)


def test_token_comes_from_msal_talking_to_the_sandbox_entra(sandbox, tmp_path):
    issued_before = sandbox.stats()["tokens_issued"]
    client = resource(sandbox, tmp_path).client()
    try:
        companies = client.companies()
        client.companies()
        assert {c["name"] for c in companies} == {"CRONUS USA, Inc.", "CRONUS Canada, Inc."}
        # msal asked the sandbox's token endpoint once and served the second call from its cache.
        assert sandbox.stats()["tokens_issued"] == issued_before + 1
        assert client.tokens.tokens_acquired == 1
        assert client.tokens.access_token().startswith("sbx.")
    finally:
        client.close()


def test_a_refused_token_is_dropped_once_and_a_stale_refusal_keeps_its_successor(sandbox, tmp_path):
    tokens = resource(sandbox, tmp_path).client().tokens
    try:
        first = tokens.access_token()
        assert tokens.invalidate({"Authorization": f"Bearer {first}"}) is True
        second = tokens.access_token()
        assert second != first and tokens.tokens_acquired == 2
        # A request refused with the old token, answered after the renewal, must not drop the new one.
        assert tokens.invalidate({"Authorization": f"Bearer {first}"}) is False
        assert tokens.access_token() == second and tokens.tokens_acquired == 2
    finally:
        tokens.close()


def test_two_revocations_close_together_renew_twice_and_lose_no_request(sandbox, tmp_path):
    """Over HTTPS with real msal: A's refusal of t0 reaches it only after B renewed to t1 and t1 was
    revoked too; A must renew again (t2), not give up with "credentials rejected"."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from mlconnector_pipelines.core.http import ThrottledClient

    tokens = resource(sandbox, tmp_path).client().tokens
    held_for_a, b_done = threading.Event(), threading.Event()
    real = httpx.HTTPTransport(verify=str(sandbox.running.certificates.ca_pem))

    class HoldAsRefusal(httpx.BaseTransport):
        """The network as it is, except that A's first refusal arrives late."""

        def handle_request(self, request):
            response = real.handle_request(request)
            if request.headers.get("X-Caller") == "A" and response.status_code == 401 and not held_for_a.is_set():
                held_for_a.set()
                assert b_done.wait(10)
            return response

    http = ThrottledClient("Business Central", base_url=sandbox.url, auth=tokens, transport=HoldAsRefusal())
    path = "/v2.0/8f3c6a2e-0d4b-4c1e-9a57-2b9e5d7c1a00/production/api/v2.0/companies"
    try:
        http.get_json(path)  # t0
        sandbox.expire_tokens()  # first revocation
        with ThreadPoolExecutor(2) as pool:
            a = pool.submit(http.get_json, path, headers={"X-Caller": "A"})
            assert held_for_a.wait(10)
            assert len(http.get_json(path, headers={"X-Caller": "B"})["value"]) == 2  # B renews: t1
            sandbox.expire_tokens()  # second revocation, before A hears of the first
            b_done.set()
            assert len(a.result()["value"]) == 2
        assert http.stats.reauthentications == 2 and tokens.tokens_acquired == 3
    finally:
        http.close()
        tokens.close()


def test_wrong_client_secret_names_the_system_and_the_fix(sandbox, tmp_path, monkeypatch):
    monkeypatch.setenv("MLCONNECTOR_BC_CLIENT_SECRET", "not-the-secret")
    client = resource(sandbox, tmp_path).client()
    with pytest.raises(AuthenticationError) as error:
        client.companies()
    message = str(error.value)
    assert message.startswith("Business Central: Entra ID refused the token request")
    assert "AADSTS7000215" in message and "client secret is wrong" in message
    assert "not-the-secret" not in message


@pytest.mark.parametrize(("status", "retry_after"), [(429, 0), (503, None), (503, 0)])
def test_a_token_endpoint_throttled_or_unavailable_for_a_while_is_asked_again(sandbox, tmp_path, status, retry_after):
    """A token is renewed mid-run (hourly, or after a 401): one throttled or unavailable answer from Entra ended
    the run (msal does not retry: a 503 escaped as msal's own exception, a 429 was called a refused request)."""
    sandbox.faults({"kind": "status", "status": status, "retry_after": retry_after,
                    "path_contains": "/oauth2/v2.0/token", "count": 2}, service="entra")  # fmt: skip
    client = resource(sandbox, tmp_path).client()
    try:
        assert {c["name"] for c in client.companies()} == {"CRONUS USA, Inc.", "CRONUS Canada, Inc."}
        assert client.tokens.tokens_acquired == 1
    finally:
        client.close()
        sandbox.clear_faults()


def test_a_token_endpoint_answering_500_is_said_to_have_been_asked_once(sandbox, tmp_path):
    sandbox.faults({"kind": "status", "status": 500, "path_contains": "/oauth2/v2.0/token", "count": 1},
                   service="entra")  # fmt: skip
    client = resource(sandbox, tmp_path).client()
    try:
        with pytest.raises(RequestFailedError, match=r"answered HTTP 500 \(not a status asked again\)"):
            client.companies()
    finally:
        client.close()
        sandbox.clear_faults()


@pytest.mark.parametrize("status", [429, 503])
def test_a_token_endpoint_unavailable_to_the_last_attempt_is_not_called_a_credentials_problem(
    sandbox, tmp_path, status
):
    sandbox.faults({"kind": "status", "status": status, "path_contains": "/oauth2/v2.0/token", "count": 100},
                   service="entra")  # fmt: skip
    client = resource(sandbox, tmp_path).client()
    try:
        with pytest.raises(RequestFailedError) as failed:
            client.companies()
    finally:
        client.close()
        sandbox.clear_faults()
    assert not isinstance(failed.value, AuthenticationError)
    message = str(failed.value)
    assert f"answered HTTP {status} to all 6 attempts" in message, message
    assert "nothing is wrong with the credentials" in message


def test_unknown_tenant_and_missing_permission_are_explained(sandbox, tmp_path):
    bad_tenant = resource(sandbox, tmp_path, auth={"tenant_id": "11111111-2222-3333-4444-555555555555"}).client()
    with pytest.raises(AuthenticationError, match="AADSTS90002.*check tenant_id"):
        bad_tenant.companies()
    no_permission = resource(sandbox, tmp_path, scope="https://graph.microsoft.com/.default").client()
    with pytest.raises(AuthenticationError, match="AADSTS500011.*add the application permission"):
        no_permission.companies()


def test_unknown_environment_and_company_are_clear(sandbox, tmp_path):
    wrong_env = resource(sandbox, tmp_path, environment="sandbox-typo").client()
    with pytest.raises(RequestFailedError, match="Environment 'sandbox-typo' does not exist") as error:
        wrong_env.companies()
    assert error.value.status == 404
    client = resource(sandbox, tmp_path).client()
    with pytest.raises(ConfigError, match=r"\['CRONUS Mars'\] not found in this environment; available: 'CRONUS USA"):
        client.resolve_companies(["CRONUS Mars"])
    assert [c["name"] for c in client.resolve_companies(["CRONUS Canada, Inc."])] == ["CRONUS Canada, Inc."]


def test_the_company_list_is_read_past_its_first_page(sandbox, tmp_path):
    """A server may page the company list like any collection: every company is found, on every page."""
    client = resource(sandbox, tmp_path, page_size=1).client()
    before = sandbox.stats()["bc_requests"]["requests"]
    try:
        assert {c["name"] for c in client.companies()} == {"CRONUS USA, Inc.", "CRONUS Canada, Inc."}
        assert sandbox.stats()["bc_requests"]["requests"] - before == 2  # one company a page
        assert [c["name"] for c in client.resolve_companies(["CRONUS Canada, Inc."])] == ["CRONUS Canada, Inc."]
    finally:
        client.close()


def test_a_lookup_and_a_set_up_list_are_read_on_every_page_bc_serves_them_in(sandbox, tmp_path):
    """BC pages a filtered lookup and a small set-up list as any collection (its own page size, asked or not):
    reading only the first page missed payment terms and the records a lookup should have found."""
    sandbox.reset()
    company = next(c["id"] for c in sandbox.companies() if c["name"] == "CRONUS USA, Inc.")
    inventory = sorted(i["number"] for i in sandbox.records(company, "items") if i["type"] == "Inventory")
    terms = sorted(t["code"] for t in sandbox.records(company, "paymentTerms"))
    sandbox.http.post("/_sandbox/business_central/dialect", json={"max_page_size": 2}).raise_for_status()
    client = resource(sandbox, tmp_path).client()
    try:
        assert sorted(i["number"] for i in client.find(company, "items", "type", "Inventory")) == inventory
        assert sorted(t["code"] for t in client.records(company, "paymentTerms")) == terms
    finally:
        client.close()
        sandbox.http.post("/_sandbox/business_central/dialect", json={"max_page_size": None}).raise_for_status()
    assert len(inventory) > 2 and len(terms) > 2, "one page holds them all: the case is not exercised"


def test_untrusted_certificate_is_refused_with_a_hint(sandbox, tmp_path):
    """Without the sandbox CA the TLS handshake fails: verification is on."""
    import ssl

    from mlconnector_pipelines.core.http import HttpPolicy, ThrottledClient

    client = ThrottledClient(
        "Business Central", base_url=sandbox.url, verify=ssl.create_default_context(), policy=HttpPolicy(max_attempts=1)
    )
    with pytest.raises(RequestFailedError, match="not trusted: set `ca_bundle`"):
        client.get_json("/_sandbox/health")


def test_records_sharing_a_timestamp_across_pages_arrive_exactly_once(sandbox, tmp_path):
    company = sandbox.companies()[0]
    entity = BY_ENTITY_SET["generalLedgerEntries"]
    expected = sandbox.records(company["id"], "generalLedgerEntries")
    stamps = {}
    for record in expected:
        stamps.setdefault(record["lastModifiedDateTime"], []).append(record)
    shared = [s for s, rs in stamps.items() if len(rs) >= 20]
    assert shared, "the sandbox seeds large batches that share one timestamp"

    client = resource(sandbox, tmp_path, page_size=7).client()
    pages = [page.to_pylist() for page in client.pages(company["id"], entity, HISTORY_START, HISTORY_END)]
    ids = [r["id"] for page in pages for r in page]
    assert len(pages) > len(expected) // 7
    assert all(len(page) <= 7 for page in pages)
    assert sorted(ids) == sorted(r["id"] for r in expected)
    # a batch of >= 20 entries with one timestamp necessarily spans page boundaries at page size 7
    assert len(stamps[shared[0]]) > 7


@pytest.mark.parametrize("page_size", [1, 2, 3, 5, 8])
def test_every_page_size_serves_every_record_once(sandbox, tmp_path, page_size):
    """Whatever is left after a page (one record, none, a full page), the next links serve it all."""
    company = sandbox.companies()[0]
    expected = sandbox.records(company["id"], "vendors")
    client = resource(sandbox, tmp_path, page_size=page_size).client()
    pages = [page.column("id").to_pylist() for page in
             client.pages(company["id"], BY_ENTITY_SET["vendors"], HISTORY_START, HISTORY_END)]  # fmt: skip
    assert sorted(i for page in pages for i in page) == sorted(r["id"] for r in expected)
    assert all(len(page) <= page_size for page in pages)


def test_a_count_answered_with_a_proxy_page_names_the_request_and_what_came_back(sandbox, tmp_path):
    company = sandbox.companies()[0]
    client = resource(sandbox, tmp_path).client()
    sandbox.faults({"kind": "html", "path_contains": "/$count", "count": 1})
    try:
        with pytest.raises(
            RequestFailedError, match=r"vendors/\$count returned a \$count that is not a number.*Sign in"
        ):
            client.count(company["id"], BY_ENTITY_SET["vendors"])
    finally:
        sandbox.clear_faults()
        client.close()


def test_adjacent_half_open_windows_cover_every_record_once(sandbox, tmp_path):
    company = sandbox.companies()[1]
    entity = BY_ENTITY_SET["generalLedgerEntries"]
    expected = sandbox.records(company["id"], "generalLedgerEntries")
    midnight = datetime(2026, 3, 4, tzinfo=UTC)
    on_boundary = [r for r in expected if r["lastModifiedDateTime"] == "2026-03-04T00:00:00.000Z"]
    assert on_boundary, "the sandbox posts a batch exactly at midnight"

    client = resource(sandbox, tmp_path, page_size=50).client()
    seen = []
    day = HISTORY_START
    while day < HISTORY_END:
        for page in client.pages(company["id"], entity, day, day + timedelta(days=1)):
            seen.extend((i, day) for i in page.column("id").to_pylist())
        day += timedelta(days=1)
    assert sorted(i for i, _ in seen) == sorted(r["id"] for r in expected)
    # the midnight batch belongs to the window it opens, not the one it closes
    assert {d for i, d in seen if i in {r["id"] for r in on_boundary}} == {midnight}


def test_lines_and_dimension_sets_come_with_their_parent(sandbox, tmp_path):
    company = sandbox.companies()[0]
    client = resource(sandbox, tmp_path).client()
    invoices = [
        r
        for p in client.pages(company["id"], BY_ENTITY_SET["salesInvoices"], HISTORY_START, HISTORY_END)
        for r in p.to_pylist()
    ]
    own = {r["id"]: r for r in sandbox.records(company["id"], "salesInvoices")}
    assert len(invoices) == len(own)
    for invoice in invoices:
        assert [l["id"] for l in invoice["salesInvoiceLines"]] == [
            l["id"] for l in own[invoice["id"]]["salesInvoiceLines"]
        ]
    entries = next(
        client.pages(company["id"], BY_ENTITY_SET["generalLedgerEntries"], HISTORY_START, HISTORY_END)
    ).to_pylist()
    assert any(e["dimensionSetLines"] for e in entries)
    assert all(l["parentId"] == e["id"] for e in entries for l in e["dimensionSetLines"])


def test_count_matches_the_sandbox(sandbox, tmp_path):
    company = sandbox.companies()[0]
    client = resource(sandbox, tmp_path).client()
    entity = BY_ENTITY_SET["customers"]
    own = sandbox.records(company["id"], "customers")
    assert client.count(company["id"], entity) == len(own)
    start, end = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC)
    assert client.count(company["id"], entity, modified_from=start, modified_before=end) == len(
        window_of(own, start, end)
    )


def test_token_is_renewed_before_it_expires(tmp_path_factory, tmp_path):
    """msal treats a token with under five minutes left as due: it renews early, so no call sees a 401."""
    import time

    from ..conftest import SandboxAdmin, start_sandbox

    running, data_dir = start_sandbox(tmp_path_factory, entra={"token_lifetime_seconds": 305})
    admin = SandboxAdmin(running)
    admin.data_dir = data_dir
    try:
        client = resource(admin, tmp_path).client()
        first = client.tokens.access_token()
        assert client.tokens.access_token() == first  # still more than 5 minutes left: cached
        time.sleep(5.5)  # now under 300 s remain
        client.companies()
        stats = admin.stats()
        assert client.tokens.access_token() != first
        assert stats["tokens_issued"] == 2
        assert stats["bc_requests"].get("401", 0) == 0 and client.http.stats.reauthentications == 0
    finally:
        admin.http.close()
        running.stop()
