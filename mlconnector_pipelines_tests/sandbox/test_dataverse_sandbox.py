"""The Dataverse simulator follows the documented Web API v9.2 behaviour: raw HTTPS, no product code.

Tokens come from the Entra simulator for the organization URL; an app must also be an Application
User. Reads page with `Prefer: odata.maxpagesize` and a paging-cookie `$skiptoken`; change
tracking answers delta links; WinOpportunity and ConvertQuoteToSalesOrder close deals; webhooks
post a RemoteExecutionContext. Every refusal has Dataverse's `{"error": {code, message}}` shape.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from mlconnector_pipelines.sandbox.dataverse import API_PATH, ORG_URL, DataverseSettings
from mlconnector_pipelines.sandbox.entra import CLIENT_ID, CLIENT_SECRET, TENANT_ID, EntraSettings
from mlconnector_pipelines.sandbox.server import SandboxSettings, start_in_thread

ADMIN = "/_sandbox/dataverse"
BC_RESOURCE = "https://api.businesscentral.dynamics.com"


def token(url: str, ca: str, resource: str = ORG_URL, client_id: str = CLIENT_ID) -> str:
    answer = httpx.post(
        f"{url}/{TENANT_ID}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": CLIENT_SECRET,
            "scope": f"{resource}/.default",
        },
        verify=ca,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def start(tmp_path_factory, entra: EntraSettings | None = None, **dataverse):
    settings = SandboxSettings(entra=entra or EntraSettings(), dataverse=DataverseSettings(**dataverse))
    return start_in_thread(tmp_path_factory.mktemp("dataverse"), settings, services=["entra", "dataverse"])


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    sandbox = start(tmp_path_factory, EntraSettings(extra_resources=[BC_RESOURCE]), webhook_retry_delay_seconds=0.05)
    yield sandbox
    sandbox.stop()


@pytest.fixture
def admin(running):
    with httpx.Client(base_url=running.url, verify=str(running.certificates.ca_pem), timeout=30) as client:
        client.post(f"{ADMIN}/reset").raise_for_status()
        yield client
        client.delete(f"{ADMIN}/faults").raise_for_status()


@pytest.fixture
def dv(running, admin):
    ca = str(running.certificates.ca_pem)
    headers = {
        "Authorization": f"Bearer {token(running.url, ca)}",
        "OData-Version": "4.0",
        "Accept": "application/json",
    }
    with httpx.Client(base_url=f"{running.url}{API_PATH}", verify=ca, headers=headers, timeout=30) as client:
        yield client


def exact(response: httpx.Response):
    return json.loads(response.content, parse_float=Decimal)


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


def pages(dv: httpx.Client, url: str, size: int, **headers) -> list[dict]:
    out = []
    while url:
        answer = dv.get(url, headers={"Prefer": f"odata.maxpagesize={size}", **headers})
        assert answer.status_code == 200, answer.text
        body = exact(answer)
        out.append(body)
        url = body.get("@odata.nextLink")
    return out


# -- identity and limits ----------------------------------------------------------------------------------


def test_a_token_for_the_org_opens_the_api_and_a_bc_token_does_not(running, dv):
    who = dv.get("/WhoAmI")
    assert who.status_code == 200 and who.headers["OData-Version"] == "4.0"
    assert set(who.json()) >= {"BusinessUnitId", "UserId", "OrganizationId"}
    assert dv.get("/accounts?$top=1").status_code == 200
    ca = str(running.certificates.ca_pem)
    bc = httpx.get(
        f"{running.url}{API_PATH}/accounts",
        headers={"Authorization": f"Bearer {token(running.url, ca, BC_RESOURCE)}"},
        verify=ca,
    )
    assert bc.status_code == 401 and bc.content == b""
    assert bc.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=https://login.microsoftonline.com/")
    assert f"resource_id={ORG_URL}/" in bc.headers["WWW-Authenticate"]
    assert httpx.get(f"{running.url}{API_PATH}/accounts", verify=ca).status_code == 401


def test_versions_and_resources_answer_404_in_dataverses_shape(running, dv):
    ca = str(running.certificates.ca_pem)
    auth = dict(dv.headers)
    assert httpx.get(f"{running.url}/api/data/v9.1/accounts?$top=1", headers=auth, verify=ca).status_code == 200
    for version in ("v8.0", "v10.0"):
        answer = httpx.get(f"{running.url}/api/data/{version}/accounts", headers=auth, verify=ca)
        assert answer.status_code == 404
        assert answer.json()["error"]["message"].startswith("No HTTP resource was found that matches the request URI")
    assert error_of(dv.get("/Account")) == (404, "0x8006088a", "Resource not found for the segment 'Account'.")
    assert error_of(dv.get("/accounts?$select=Name")) == (
        400,
        "0x0",
        "Could not find a property named 'Name' on type 'Microsoft.Dynamics.CRM.account'.",
    )
    missing = str(uuid.uuid4())
    assert error_of(dv.get(f"/accounts({missing})")) == (
        404,
        "0x80040217",
        f"account With Id = {missing} Does Not Exist",
    )


def test_an_app_that_is_not_an_application_user_gets_403(tmp_path_factory):
    sandbox = start(tmp_path_factory, application_user_client_ids=["0b6f3c1d-2e4a-4f5b-8c7d-9e0f1a2b3c4d"])
    try:
        ca = str(sandbox.certificates.ca_pem)
        answer = httpx.get(
            f"{sandbox.url}{API_PATH}/accounts",
            headers={"Authorization": f"Bearer {token(sandbox.url, ca)}"},
            verify=ca,
        )
        assert error_of(answer) == (403, "0x80072560", "The user is not a member of the organization.")
    finally:
        sandbox.stop()


def test_past_the_rate_limit_429_with_retry_after_and_the_documented_code(tmp_path_factory):
    sandbox = start(tmp_path_factory, rate_limit_requests=3, retry_after_seconds=7)
    try:
        ca = str(sandbox.certificates.ca_pem)
        headers = {"Authorization": f"Bearer {token(sandbox.url, ca)}"}
        answers = [httpx.get(f"{sandbox.url}{API_PATH}/WhoAmI", headers=headers, verify=ca) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[-1].headers["Retry-After"] == "7"
        assert error_of(answers[-1]) == (
            429,
            "0x80072322",
            "Number of requests exceeded the limit of 3 over time window of 300 seconds.",
        )
    finally:
        sandbox.stop()


# -- reading ----------------------------------------------------------------------------------------------


def test_maxpagesize_paging_serves_every_row_once_while_rows_change_between_pages(admin, dv):
    everything = {r["accountid"] for r in dv.get("/accounts?$select=accountid").json()["value"]}
    first = dv.get("/accounts?$select=name&$count=true", headers={"Prefer": "odata.maxpagesize=10"})
    assert first.headers["Preference-Applied"] == "odata.maxpagesize=10"
    body = first.json()
    assert body["@odata.count"] == len(everything) and len(body["value"]) == 10
    assert "$skiptoken=%3Ccookie%20pagenumber=%222%22%20pagingcookie=%22%253ccookie" in body["@odata.nextLink"]
    served = [r["accountid"] for r in body["value"]]
    later = sorted(everything - set(served))
    # Between pages: a row already served and one still to come change, a row is added on each side of the cursor.
    admin.post(
        f"{ADMIN}/faults",
        json={
            "rules": [
                {
                    "kind": "mutate",
                    "path_contains": "/accounts",
                    "mutations": [
                        {"entity": "accounts", "key": served[0], "set": {"name": "Renamed before the cursor"}},
                        {"entity": "accounts", "key": later[-1], "set": {"name": "Renamed after the cursor"}},
                    ],
                }
            ]
        },
    ).raise_for_status()
    before, after = "00000000-0000-4000-8000-000000000001", "ffffffff-ffff-4fff-bfff-ffffffffffff"
    for key in (before, after):
        assert dv.post("/accounts", json={"accountid": key, "name": f"New {key[:4]}"}).status_code == 204
    rest = pages(dv, body["@odata.nextLink"], 10)
    rows = body["value"] + [r for page in rest for r in page["value"]]
    served = [r["accountid"] for r in rows]
    assert len(served) == len(set(served))
    assert set(served) == everything | {after}
    assert {r["accountid"]: r["name"] for r in rows}[later[-1]] == "Renamed after the cursor"


def test_filter_select_orderby_lookups_and_annotations(dv):
    opportunity = dv.get("/opportunities?$filter=statecode eq 0 and _parentaccountid_value ne null&$top=1").json()
    customer = opportunity["value"][0]["_customerid_value"]
    answer = dv.get(
        f"/opportunities?$select=name,_customerid_value,statecode,estimatedvalue&$filter=_customerid_value eq {customer}"
        "&$orderby=name desc&$count=true",
        headers={"Prefer": 'odata.include-annotations="*"'},
    )
    assert answer.headers["Preference-Applied"] == 'odata.include-annotations="*"'
    rows = answer.json()["value"]
    assert rows and all(r["_customerid_value"] == customer for r in rows)
    assert [r["name"] for r in rows] == sorted((r["name"] for r in rows), key=str.casefold, reverse=True)
    first = rows[0]
    assert set(first) >= {"@odata.etag", "name", "_customerid_value", "statecode", "estimatedvalue", "opportunityid"}
    assert first["_customerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "account"
    assert first["_customerid_value@Microsoft.Dynamics.CRM.associatednavigationproperty"] == "customerid_account"
    assert first["statecode@OData.Community.Display.V1.FormattedValue"] in ("Open", "Won", "Lost")
    version = dv.get(f"/opportunities({first['opportunityid']})").json()["versionnumber"]
    assert first["@odata.etag"] == f'W/"{version}"'
    since = dv.get("/accounts?$select=modifiedon&$orderby=modifiedon asc").json()["value"][20]["modifiedon"]
    assert since.endswith("Z") and len(since) == 20
    newer = dv.get(f"/accounts?$select=modifiedon&$filter=modifiedon ge {since}").json()["value"]
    assert newer and all(r["modifiedon"] >= since for r in newer)


def test_expand_lines_of_headers(dv):
    order = dv.get("/salesorders?$select=name&$expand=order_details($select=quantity,priceperunit)&$top=1").json()
    row = order["value"][0]
    lines = dv.get(f"/salesorderdetails?$filter=_salesorderid_value eq {row['salesorderid']}").json()["value"]
    assert {x["salesorderdetailid"] for x in row["order_details"]} == {x["salesorderdetailid"] for x in lines}
    assert row["order_details@odata.nextLink"].endswith(
        f"salesorders({row['salesorderid']})/order_details?$select=quantity,priceperunit"
    )
    assert dv.get(row["order_details@odata.nextLink"]).json()["value"]
    for header, navigation in (("quotes", "quote_details"), ("invoices", "invoice_details")):
        assert navigation in dv.get(f"/{header}?$expand={navigation}&$top=1").json()["value"][0]


# -- change tracking --------------------------------------------------------------------------------------


def test_change_tracking_serves_changes_creations_and_deletions_then_nothing(dv):
    initial = pages(dv, "/accounts?$select=name,telephone1", 15, Prefer="odata.track-changes,odata.maxpagesize=15")
    first = dv.get("/accounts?$select=name,telephone1", headers={"Prefer": "odata.track-changes"})
    assert first.headers["Preference-Applied"] == "odata.track-changes"
    assert all("@odata.deltaLink" not in p for p in initial[:-1]) and "@odata.deltaLink" in initial[-1]
    delta_link = initial[-1]["@odata.deltaLink"]
    assert "$select=name,telephone1&$deltatoken=" in delta_link
    rows = [r for p in initial for r in p["value"]]
    changed, deleted = rows[0]["accountid"], rows[1]["accountid"]
    assert dv.patch(f"/accounts({changed})", json={"telephone1": "+1 555 9999"}).status_code == 204
    created = dv.post("/accounts", json={"name": "Delta Newcomer"})
    assert created.status_code == 204
    created_id = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
    assert dv.delete(f"/accounts({deleted})").status_code == 204

    delta = dv.get(delta_link).json()
    assert delta["@odata.context"].endswith("/$metadata#accounts(name,telephone1)/$delta")
    by_id = {r.get("accountid", r.get("id")): r for r in delta["value"]}
    assert set(by_id) == {changed, created_id, deleted}
    assert by_id[changed]["telephone1"] == "+1 555 9999"
    assert set(by_id[changed]) == {"@odata.etag", "name", "telephone1", "accountid"}
    assert by_id[deleted] == {
        "@odata.context": f"{str(dv.base_url).rstrip('/')}/$metadata#accounts/$deletedEntity",
        "id": deleted,
        "reason": "deleted",
    }
    assert delta["value"][-1]["reason"] == "deleted"  # new and updated rows first, then deletions
    quiet = dv.get(delta["@odata.deltaLink"]).json()
    assert quiet["value"] == [] and "@odata.deltaLink" in quiet

    for n in range(3):  # paging inside a delta answer
        dv.patch(f"/accounts({rows[5 + n]['accountid']})", json={"name": f"Paged {n}"})
    paged = pages(dv, quiet["@odata.deltaLink"], 2)
    assert [len(p["value"]) for p in paged] == [2, 1] and "@odata.deltaLink" in paged[-1]


def test_track_changes_refuses_filter_and_untracked_tables(dv):
    for option in ("$filter=name eq 'x'", "$orderby=name", "$top=5", "$expand=contact_customer_accounts"):
        answer = dv.get(f"/accounts?{option}", headers={"Prefer": "odata.track-changes"})
        name = option.split("=")[0]
        assert error_of(answer) == (
            400,
            "0x80060888",
            f'The "{name}" query parameter isn\'t supported when Change Tracking is enabled.',
        )
    assert error_of(dv.get("/products", headers={"Prefer": "odata.track-changes"})) == (
        400,
        "0x80072491",
        "Entity product isn't enabled for change tracking.",
    )


def test_an_expired_delta_token_is_refused_and_a_new_initial_read_starts_over(admin, dv):
    link = pages(dv, "/contacts?$select=fullname", 5000, Prefer="odata.track-changes")[-1]["@odata.deltaLink"]
    admin.post(f"{ADMIN}/delta-tokens/expire").raise_for_status()
    assert error_of(dv.get(link)) == (
        400,
        "0x80044352",
        "Version stamp associated with the client has expired. Please perform a full sync.",
    )
    fresh = pages(dv, "/contacts?$select=fullname", 5000, Prefer="odata.track-changes")[-1]["@odata.deltaLink"]
    assert dv.get(fresh).status_code == 200


# -- writes and actions -----------------------------------------------------------------------------------


def test_create_update_delete_and_the_refusals_of_a_write(dv):
    account = dv.get("/accounts?$top=1").json()["value"][0]["accountid"]
    created = dv.post(
        "/contacts?$select=fullname,_parentcustomerid_value",
        json={"firstname": "Ada", "lastname": "Byron", "parentcustomerid_account@odata.bind": f"/accounts({account})"},
        headers={"Prefer": "return=representation"},
    )
    assert created.status_code == 201 and created.headers["Preference-Applied"] == "return=representation"
    body = created.json()
    assert body["fullname"] == "Ada Byron" and body["_parentcustomerid_value"] == account
    assert created.headers["OData-EntityId"].endswith(f"/contacts({body['contactid']})")
    invalid = dv.post("/accounts", json={"Name": "x"})
    assert invalid.status_code == 400 and invalid.json()["error"]["code"] == "0x0"
    assert "Invalid property 'Name' was found in entity 'Microsoft.Dynamics.CRM.account'" in invalid.text
    unbound = dv.post("/contacts", json={"parentcustomerid@odata.bind": f"/accounts({account})"})
    assert unbound.status_code == 400 and unbound.json()["error"]["code"] == "0x80048d19"
    assert "An undeclared property 'parentcustomerid'" in unbound.text


def test_patch_with_a_stale_etag_is_refused_with_412(dv):
    account = dv.get("/accounts?$top=1").json()["value"][0]
    etag = account["@odata.etag"]
    key = account["accountid"]
    assert dv.patch(f"/accounts({key})", json={"name": "First"}, headers={"If-Match": etag}).status_code == 204
    stale = dv.patch(f"/accounts({key})", json={"name": "Second"}, headers={"If-Match": etag})
    assert error_of(stale) == (
        412,
        "0x80060882",
        "The version of the existing record doesn't match the RowVersion property provided.",
    )
    assert dv.delete(f"/accounts({key})", headers={"If-Match": etag}).status_code == 412
    assert dv.get(f"/accounts({key})").json()["name"] == "First"
    missing = dv.patch(f"/accounts({uuid.uuid4()})", json={"name": "x"}, headers={"If-Match": "*"})
    assert missing.status_code == 404


def test_win_opportunity_closes_it_as_won(dv):
    open_one = dv.get("/opportunities?$filter=statecode eq 0&$top=1").json()["value"][0]
    key = open_one["opportunityid"]
    body = {"OpportunityClose": {"subject": "Won!", "opportunityid@odata.bind": f"/opportunities({key})"}, "Status": 3}
    assert dv.post("/WinOpportunity", json=body).status_code == 204
    won = exact(dv.get(f"/opportunities({key})"))
    assert (won["statecode"], won["statuscode"]) == (1, 3)
    assert won["actualvalue"] == Decimal(str(open_one["estimatedvalue"])) and won["actualclosedate"]
    assert error_of(dv.post("/WinOpportunity", json=body)) == (400, "0x80040515", "The opportunity is already closed.")
    reopen = dv.patch(f"/opportunities({key})", json={"statecode": 1, "statuscode": 3})
    assert reopen.status_code == 204  # the state it has: nothing to change


def test_convert_quote_to_sales_order_copies_the_lines_and_wins_the_quote(dv):
    quote = exact(dv.get("/quotes?$filter=statecode eq 1&$top=1&$expand=quote_details"))["value"][0]
    answer = dv.post("/ConvertQuoteToSalesOrder", json={"QuoteId": quote["quoteid"], "ColumnSet": {"AllColumns": True}})
    assert answer.status_code == 200, answer.text
    order = exact(answer)
    assert order["@odata.context"].endswith("/$metadata#salesorders/$entity")
    assert order["_quoteid_value"] == quote["quoteid"] and order["totalamount"] == quote["totalamount"]
    lines = exact(dv.get(f"/salesorders({order['salesorderid']})/order_details"))["value"]
    assert sorted((x["_productid_value"], x["quantity"], x["priceperunit"]) for x in lines) == sorted(
        (x["_productid_value"], x["quantity"], x["priceperunit"]) for x in quote["quote_details"]
    )
    assert {x["_quotedetailid_value"] for x in lines} == {x["quotedetailid"] for x in quote["quote_details"]}
    assert dv.get(f"/quotes({quote['quoteid']})").json()["statecode"] == 2
    draft = dv.get("/quotes?$filter=statecode eq 0&$top=1").json()["value"][0]["quoteid"]
    refused = dv.post("/ConvertQuoteToSalesOrder", json={"QuoteId": draft, "ColumnSet": {"Columns": ["name"]}})
    assert error_of(refused)[:2] == (400, "0x80040233")


def test_state_changes_by_patch_follow_the_rules(dv):
    quote = dv.get("/quotes?$filter=statecode eq 0&$top=1").json()["value"][0]["quoteid"]
    assert dv.patch(f"/quotes({quote})", json={"statecode": 1, "statuscode": 2}).status_code == 204
    assert dv.patch(f"/quotes({quote})", json={"name": "Edited"}).json()["error"]["code"] == "0x80040233"
    assert error_of(dv.patch(f"/quotes({quote})", json={"statecode": 1, "statuscode": 5}))[1] == "0x80048408"
    assert error_of(dv.patch(f"/quotes({quote})", json={"statecode": 2}))[1] == "0x80040233"


def test_exact_decimals_round_trip(dv):
    seeded = exact(dv.get("/salesorders?$filter=totalamount eq 1234567890123.4569&$select=totalamount"))["value"]
    assert [r["totalamount"] for r in seeded] == [Decimal("1234567890123.4569")]
    assert float(seeded[0]["totalamount"]) != seeded[0]["totalamount"]  # a double would lose a digit
    created = dv.post(
        "/accounts",
        content=b'{"name": "Exact", "creditlimit": 123456789012.3456}',
        headers={"Content-Type": "application/json", "Prefer": "return=representation"},
    )
    assert created.status_code == 201 and b'"creditlimit":123456789012.3456000000' in created.content
    assert exact(created)["creditlimit"] == Decimal("123456789012.3456")


def test_commit_then_504_on_a_patch_commits_the_change(admin, dv):
    key = dv.get("/accounts?$top=1").json()["value"][0]["accountid"]
    rule = {"kind": "commit_then_504", "path_contains": f"/accounts({key})"}
    admin.post(f"{ADMIN}/faults", json={"rules": [rule]}).raise_for_status()
    assert dv.patch(f"/accounts({key})", json={"name": "Committed anyway"}).status_code == 504
    assert dv.get(f"/accounts({key})").json()["name"] == "Committed anyway"


# -- webhooks ---------------------------------------------------------------------------------------------


class Receiver:
    """A local webhook endpoint: records each POST and answers the statuses queued for its path."""

    def __init__(self):
        self.requests: list[dict] = []
        self.statuses: dict[str, list[int]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                parts = urlsplit(self.path)
                receiver.requests.append(
                    {"path": parts.path, "query": parse_qs(parts.query), "headers": dict(self.headers), "body": body}
                )
                queued = receiver.statuses.get(parts.path) or [200]
                self.send_response(queued.pop(0) if len(queued) > 1 else queued[0])
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, path: str, count: int, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [r for r in self.requests if r["path"] == path]
            if len(got) >= count:
                return got
            time.sleep(0.02)
        return [r for r in self.requests if r["path"] == path]


@pytest.fixture
def receiver():
    hooks = Receiver()
    yield hooks
    hooks.server.shutdown()


def register(dv: httpx.Client, url: str, authtype: int, authvalue: str, message: str, entity: str, **step) -> str:
    message_id = dv.get(f"/sdkmessages?$filter=name eq '{message}'").json()["value"][0]["sdkmessageid"]
    filters = dv.get(
        f"/sdkmessagefilters?$filter=_sdkmessageid_value eq {message_id} and primaryobjecttypecode eq '{entity}'"
    ).json()["value"]
    endpoint = dv.post(
        "/serviceendpoints",
        json={"name": f"hook {message}", "url": url, "contract": 8, "authtype": authtype, "authvalue": authvalue},
        headers={"Prefer": "return=representation"},
    )
    assert endpoint.status_code == 201, endpoint.text
    assert endpoint.json()["authvalue"] is None  # not valid for read
    endpoint_id = endpoint.json()["serviceendpointid"]
    created = dv.post(
        "/sdkmessageprocessingsteps",
        json={
            "name": f"{message} of {entity}",
            "mode": 1,
            "rank": 1,
            "stage": 40,
            "supporteddeployment": 0,
            "sdkmessageid@odata.bind": f"/sdkmessages({message_id})",
            "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filters[0]['sdkmessagefilterid']})",
            "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint_id})",
            **step,
        },
    )
    assert created.status_code == 204, created.text
    return endpoint_id


def test_webhooks_with_each_auth_type_receive_the_remote_execution_context(admin, dv, receiver):
    register(dv, f"{receiver.url}/win", 4, "the-function-key", "Win", "opportunity")
    header = '<settings><setting name="x-api-key" value="k-123" /><setting name="x-tenant" value="mlc" /></settings>'
    register(dv, f"{receiver.url}/phone", 5, header, "Update", "account", filteringattributes="telephone1")
    query = '<settings><setting name="token" value="q-456" /></settings>'
    register(dv, f"{receiver.url}/contact", 6, query, "Create", "contact")

    key = dv.get("/opportunities?$filter=statecode eq 0&$top=1").json()["value"][0]["opportunityid"]
    close = {"OpportunityClose": {"subject": "Won", "opportunityid@odata.bind": f"/opportunities({key})"}, "Status": 3}
    assert dv.post("/WinOpportunity", json=close).status_code == 204
    (win,) = receiver.wait("/win", 1)
    assert win["query"] == {"code": ["the-function-key"]}
    assert win["headers"]["x-ms-dynamics-request-name"] == "Win"
    assert win["headers"]["x-ms-dynamics-entity-name"] == "opportunity"
    assert win["headers"]["x-ms-dynamics-organization"] == "mlc-sandbox.crm.dynamics.com"
    context = json.loads(win["body"])
    assert win["headers"]["x-ms-correlation-request-id"] == context["CorrelationId"]
    assert (context["MessageName"], context["PrimaryEntityName"], context["PrimaryEntityId"]) == (
        "Win",
        "opportunity",
        key,
    )
    inputs = {p["key"]: p["value"] for p in context["InputParameters"]}
    assert inputs["Status"] == {"__type": "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts", "Value": 3}
    assert inputs["OpportunityClose"]["LogicalName"] == "opportunityclose"
    assert context["OperationCreatedOn"].startswith("/Date(") and b"\\/Date(" in win["body"]
    assert {"Depth", "Stage", "UserId", "OrganizationName", "PostEntityImages"} <= set(context)

    account = dv.get("/accounts?$top=1").json()["value"][0]["accountid"]
    dv.patch(f"/accounts({account})", json={"name": "Not a phone change"})
    dv.patch(f"/accounts({account})", json={"telephone1": "+1 555 4242"})
    phones = receiver.wait("/phone", 1)
    assert len(phones) == 1 and phones[0]["headers"]["x-api-key"] == "k-123"
    target = {p["key"]: p["value"] for p in json.loads(phones[0]["body"])["InputParameters"]}["Target"]
    assert {a["key"]: a["value"] for a in target["Attributes"]}["telephone1"] == "+1 555 4242"

    assert dv.post("/contacts", json={"lastname": "Hooked"}).status_code == 204
    (contact,) = receiver.wait("/contact", 1)
    assert contact["query"] == {"token": ["q-456"]}
    shown = [d["url"] for d in admin.get(f"{ADMIN}/deliveries").json()]
    assert shown and not any("the-function-key" in u or "q-456" in u for u in shown)


def test_a_503_is_retried_once_and_a_400_is_not(admin, dv, receiver):
    receiver.statuses = {"/flaky": [503, 200], "/bad": [400]}
    register(dv, f"{receiver.url}/flaky", 4, "k", "Create", "account")
    register(dv, f"{receiver.url}/bad", 4, "k", "Create", "account")
    assert dv.post("/accounts", json={"name": "Hooked twice"}).status_code == 204
    assert len(receiver.wait("/flaky", 2)) == 2
    assert len(receiver.wait("/bad", 1)) == 1
    time.sleep(0.2)
    assert len([r for r in receiver.requests if r["path"] == "/bad"]) == 1
    attempts = admin.get(f"{ADMIN}/deliveries").json()
    flaky = [(d["attempt"], d["status"], d["outcome"]) for d in attempts if d["url"].endswith("/flaky")]
    assert flaky == [(1, 503, "retrying"), (2, 200, "delivered")]
    assert [(d["status"], d["outcome"]) for d in attempts if d["url"].endswith("/bad")] == [(400, "failed")]


# -- the sandbox's own API and live mode ------------------------------------------------------------------


def test_admin_records_and_rep_actions_go_through_the_rules(admin, dv):
    quotes = exact(admin.get(f"{ADMIN}/records/quotes"))
    assert all(isinstance(q["totalamount"], Decimal) for q in quotes)
    assert {q["_customerid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] for q in quotes} <= {"account", "contact"}
    orders_before = len(admin.get(f"{ADMIN}/records/salesorders").json())
    order = admin.post(f"{ADMIN}/actions/convert-quote", json={}).json()
    assert order["_quoteid_value"] and len(admin.get(f"{ADMIN}/records/salesorders").json()) == orders_before + 1
    won = admin.post(f"{ADMIN}/actions/win-opportunity", json={}).json()
    assert (won["statecode"], won["statuscode"]) == (1, 3)
    moved = admin.post(f"{ADMIN}/actions/edit-account", json={}).json()
    assert moved["name"] == "Fabrikam Outdoor Group" and moved["address1_city"] == "Tacoma"
    raw = {"record": {"name": "Raw row", "creditlimit": 5}, "modifiedon": "2026-01-01T00:00:00Z"}
    upserted = admin.post(f"{ADMIN}/records/accounts", json=raw).json()
    assert dv.get(f"/accounts({upserted['accountid']})").json()["modifiedon"] == "2026-01-01T00:00:00Z"


def test_patch_to_a_new_key_creates_and_deleting_a_header_tombstones_its_lines(dv):
    key = str(uuid.uuid4())
    assert dv.patch(f"/accounts({key})", json={"name": "Upserted"}).status_code == 204
    assert dv.get(f"/accounts({key})").json()["name"] == "Upserted"
    assert dv.patch(f"/accounts({key})", json={"name": "x"}, headers={"If-None-Match": "*"}).status_code == 412
    link = pages(dv, "/quotedetails?$select=quantity", 5000, Prefer="odata.track-changes")[-1]["@odata.deltaLink"]
    quote = dv.get("/quotes?$filter=statecode eq 0&$top=1&$expand=quote_details($select=quotedetailid)").json()
    lines = {x["quotedetailid"] for x in quote["value"][0]["quote_details"]}
    assert dv.delete(f"/quotes({quote['value'][0]['quoteid']})").status_code == 204
    gone = dv.get(link).json()["value"]
    assert {x["id"] for x in gone if x.get("reason") == "deleted"} == lines


def test_live_mode_reps_change_records_over_time(tmp_path_factory):
    sandbox = start(tmp_path_factory, live=True, live_interval_seconds=0.05)
    try:
        with httpx.Client(base_url=sandbox.url, verify=str(sandbox.certificates.ca_pem)) as client:
            first = client.get(f"{ADMIN}/state").json()["version"]
            deadline = time.monotonic() + 5
            while client.get(f"{ADMIN}/state").json()["version"] < first + 5 and time.monotonic() < deadline:
                time.sleep(0.05)
            accounts = client.get(f"{ADMIN}/records/accounts").json()
        assert any(a["name"] == "Fabrikam Outdoor Group" for a in accounts)
    finally:
        sandbox.stop()


def test_currencies_are_served_and_a_documents_currency_is_a_bindable_lookup(admin, dv):
    select = "$select=isocurrencycode,currencyname,currencyprecision"
    (euro,) = dv.get(f"/transactioncurrencies?{select}&$filter=isocurrencycode eq 'EUR'").json()["value"]
    assert (euro["isocurrencycode"], euro["currencyname"], euro["currencyprecision"]) == ("EUR", "Euro", 2)
    listed = {c["isocurrencycode"]: c for c in admin.get(f"{ADMIN}/records/transactioncurrencies").json()}
    assert set(listed) == {"USD", "EUR", "JPY"} and listed["JPY"]["currencyprecision"] == 0
    assert listed["EUR"]["transactioncurrencyid"] == euro["transactioncurrencyid"]

    annotated = {"Prefer": 'odata.include-annotations="*"'}
    orders = dv.get("/salesorders?$select=_transactioncurrencyid_value&$filter=statecode eq 0", headers=annotated)
    order, other = orders.json()["value"][:2]
    usd = dv.get(f"/transactioncurrencies({order['_transactioncurrencyid_value']})?{select}").json()
    assert (usd["isocurrencycode"], usd["currencyprecision"]) == ("USD", 2)
    assert order["_transactioncurrencyid_value@OData.Community.Display.V1.FormattedValue"] == "US Dollar"
    assert order["_transactioncurrencyid_value@Microsoft.Dynamics.CRM.lookuplogicalname"] == "transactioncurrency"

    key = order["salesorderid"]
    bind = {"transactioncurrencyid@odata.bind": f"/transactioncurrencies({euro['transactioncurrencyid']})"}
    assert dv.patch(f"/salesorders({key})", json=bind).status_code == 204
    read = dv.get(f"/salesorders({key})?$expand=transactioncurrencyid($select=isocurrencycode)", headers=annotated)
    assert read.json()["_transactioncurrencyid_value"] == euro["transactioncurrencyid"]
    assert read.json()["_transactioncurrencyid_value@OData.Community.Display.V1.FormattedValue"] == "Euro"
    assert read.json()["transactioncurrencyid"]["isocurrencycode"] == "EUR"
    total = exact(read)["totalamount"]  # in euros; its _base twin in the base currency, US dollars
    assert exact(read)["totalamount_base"] == (total / Decimal("0.92")).quantize(Decimal("0.0001"))
    assert read.json()["totalamount@OData.Community.Display.V1.FormattedValue"] == f"€{total:,.2f}"
    raw = {
        "salesorderid": other["salesorderid"],
        "_transactioncurrencyid_value": listed["JPY"]["transactioncurrencyid"],
    }
    admin.post(f"{ADMIN}/records/salesorders", json=raw).raise_for_status()
    yen = dv.get(f"/salesorders({other['salesorderid']})/transactioncurrencyid?{select}").json()
    assert (yen["isocurrencycode"], yen["currencyprecision"]) == ("JPY", 0)

    missing = str(uuid.uuid4())
    refused = dv.patch(
        f"/salesorders({key})", json={"transactioncurrencyid@odata.bind": f"/transactioncurrencies({missing})"}
    )
    assert error_of(refused) == (404, "0x80040217", f"transactioncurrency With Id = {missing} Does Not Exist")
    assert dv.get(f"/salesorders({key})").json()["_transactioncurrencyid_value"] == euro["transactioncurrencyid"]
    assert dv.post("/transactioncurrencies", json={"isocurrencycode": "GBP"}).status_code == 405
