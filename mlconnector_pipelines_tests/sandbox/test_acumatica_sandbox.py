"""The Acumatica simulator follows Acumatica's documented contract-based REST API: raw HTTPS, no product code.

Sign-in by OAuth 2.0 (password and refresh grants) or cookies, with the licence's API-user limit;
wrapped field values; PUT as insert-or-update by key; $filter/$select/$expand/$top/$skip; a GL
batch released by a long-running action (202, then the Location answers 204); validation errors
on the offending fields (422); 429 past the licence's rate; exact amounts.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from mlconnector_pipelines.sandbox.acumatica import (
    CLIENT_ID,
    CLIENT_SECRET,
    PASSWORD,
    TENANT,
    USERNAME,
    VERSION,
    AcumaticaSettings,
    profile,
)
from mlconnector_pipelines.sandbox.core.declaration import Endpoint
from mlconnector_pipelines.sandbox.core.exact_json import dumps
from mlconnector_pipelines.sandbox.server import SandboxSettings, start_in_thread

ADMIN = "/_sandbox/acumatica"
SITE = "/AcumaticaERP"
ENTITY = f"{SITE}/entity/Default/{VERSION}"


def exact(response: httpx.Response):
    return json.loads(response.content, parse_float=Decimal)


def wrap(**fields) -> dict:
    return {name: {"value": value} for name, value in fields.items()}


def token_form(**overrides) -> dict:
    form = {
        "grant_type": "password",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "username": USERNAME,
        "password": PASSWORD,
        "scope": "api offline_access",
    }
    return form | overrides


class Acumatica:
    """A raw HTTPS client of the simulated site, signed in with an OAuth token unless told."""

    def __init__(self, sandbox):
        self.admin = sandbox.http
        self.http = httpx.Client(base_url=sandbox.url, verify=str(sandbox.running.certificates.ca_pem), timeout=30)
        answer = self.http.post(f"{SITE}/identity/connect/token", data=token_form())
        assert answer.status_code == 200, answer.text
        self.tokens = answer.json()
        self.http.headers["Authorization"] = f"Bearer {self.tokens['access_token']}"

    def get(self, path: str, **params) -> httpx.Response:
        return self.http.get(f"{ENTITY}/{path}", params=params)

    def put(self, entity: str, record: dict, **params) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        return self.http.put(f"{ENTITY}/{entity}", content=dumps(record), params=params, headers=headers)

    def release(self, batch: str) -> httpx.Response:
        """Run ReleaseJournalTransaction and poll its Location until the operation ends."""
        started = self.http.post(
            f"{ENTITY}/JournalTransaction/ReleaseJournalTransaction",
            json={"entity": wrap(BatchNbr=batch, Module="GL"), "parameters": {}},
        )
        assert started.status_code == 202, started.text
        for _ in range(100):
            polled = self.http.get(started.headers["Location"])
            if polled.status_code != 202:
                return polled
            time.sleep(0.05)
        raise AssertionError("the release never finished")

    def records(self, entity: str) -> list[dict]:
        return exact(self.admin.get(f"{ADMIN}/records/{entity}"))

    def plant(self, entity: str, record: dict) -> dict:
        return self.admin.post(f"{ADMIN}/records/{entity}", content=dumps({"record": record})).json()

    def state(self) -> dict:
        return self.admin.get(f"{ADMIN}/state").json()


@pytest.fixture
def acu(sandbox):
    sandbox.reset()
    client = Acumatica(sandbox)
    yield client
    client.http.close()
    sandbox.clear_faults()


def batch(*lines: tuple[str, str, str, str], hold: bool = False, **header) -> dict:
    """A JournalTransaction body: lines of (account, subaccount, debit, credit)."""
    details = [
        wrap(Account=a, Subaccount=s, DebitAmount=Decimal(d), CreditAmount=Decimal(c), TransactionDescription="t")
        for a, s, d, c in lines
    ]
    return wrap(Description="Sandbox test batch", Hold=hold, **header) | {"Details": details}


BALANCED = (("61000", "100-000", "250.10", "0"), ("20100", "000-000", "0", "250.10"))


# -- signing in ---------------------------------------------------------------------------------------


def test_oauth_password_grant_and_refresh(acu):
    assert acu.tokens["token_type"] == "Bearer" and acu.tokens["expires_in"] == 3600
    assert acu.tokens["scope"] == "api offline_access" and acu.tokens["refresh_token"]
    assert acu.get("Vendor", **{"$top": "1"}).status_code == 200

    refreshed = acu.http.post(
        f"{SITE}/identity/connect/token",
        data={
            "grant_type": "refresh_token",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "refresh_token": acu.tokens["refresh_token"],
        },
    )
    assert refreshed.status_code == 200, refreshed.text
    pair = refreshed.json()
    assert pair["access_token"] != acu.tokens["access_token"] and pair["refresh_token"] != acu.tokens["refresh_token"]
    again = acu.http.post(
        f"{SITE}/identity/connect/token",
        data=token_form(grant_type="refresh_token") | {"refresh_token": acu.tokens["refresh_token"]},
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"  # a refresh token is used once
    state = acu.state()
    assert state["refreshes"] == 1 and state["sessions"]["oauth"] == 1  # a refresh reuses the grant's session

    wrong_secret = acu.http.post(f"{SITE}/identity/connect/token", data=token_form(client_secret="nope"))
    assert wrong_secret.status_code == 400 and wrong_secret.json()["error"] == "invalid_client"
    wrong_password = acu.http.post(f"{SITE}/identity/connect/token", data=token_form(password="nope"))
    assert wrong_password.status_code == 400 and wrong_password.json()["error"] == "invalid_grant"
    without_offline = acu.http.post(f"{SITE}/identity/connect/token", data=token_form(scope="api"))
    assert "refresh_token" not in without_offline.json()


def test_an_expired_or_unknown_token_is_401(acu):
    acu.admin.post(f"{ADMIN}/tokens/expire").raise_for_status()
    expired = acu.get("Vendor")
    assert expired.status_code == 401 and expired.json()["message"]
    assert "Bearer" in expired.headers["WWW-Authenticate"]
    unknown = acu.http.get(f"{ENTITY}/Vendor", headers={"Authorization": "Bearer not-a-token"})
    assert unknown.status_code == 401
    assert acu.state()["open_sessions"] == 0


def test_cookie_login_logout_and_the_licence_api_user_limit(acu, sandbox):
    acu.http.post(f"{SITE}/entity/auth/logout").raise_for_status()  # the fixture's OAuth session ends
    assert acu.state()["open_sessions"] == 0
    body = {"name": USERNAME, "password": PASSWORD, "tenant": TENANT, "branch": "HQ"}
    clients = [httpx.Client(base_url=sandbox.url, verify=str(sandbox.running.certificates.ca_pem)) for _ in range(4)]
    try:
        for client in clients[:3]:
            signed_in = client.post(f"{SITE}/entity/auth/login", json=body)
            assert signed_in.status_code == 204 and ".ASPXAUTH" in signed_in.cookies
            assert client.get(f"{ENTITY}/Vendor", params={"$top": "1"}).status_code == 200
        assert acu.state()["sessions"] == {"legacy": 3, "oauth": 0}

        refused = clients[3].post(f"{SITE}/entity/auth/login", json=body)
        assert refused.status_code == 500 and refused.json()["exceptionMessage"] == "API Login Limit"
        by_oauth = clients[3].post(f"{SITE}/identity/connect/token", data=token_form())
        assert by_oauth.status_code == 400 and by_oauth.json()["error_description"] == "API Login Limit"

        for client in clients[:3]:
            assert client.post(f"{SITE}/entity/auth/logout").status_code == 204
            assert client.get(f"{ENTITY}/Vendor").status_code == 401
        state = acu.state()
        assert state["open_sessions"] == 0 and state["logins"] == 3 and state["logouts"] == 4
        assert clients[3].post(f"{SITE}/entity/auth/login", json=body).status_code == 204
        bad = clients[2].post(f"{SITE}/entity/auth/login", json=body | {"password": "nope"})
        assert bad.status_code == 500 and "Invalid credentials" in bad.json()["exceptionMessage"]
    finally:
        for client in clients:
            client.close()


# -- the endpoint and its versions ----------------------------------------------------------------------


def test_the_site_lists_its_endpoint_versions_and_any_other_is_404(acu):
    listed = acu.http.get(f"{SITE}/entity").json()
    assert {(e["name"], e["version"]) for e in listed["endpoints"]} == {("Default", "23.200.001"), ("Default", VERSION)}
    assert listed["version"]["acumaticaBuildVersion"]
    assert acu.http.get(f"{SITE}/entity/Default/25.100.001/Vendor").status_code == 404
    assert acu.http.get(f"{SITE}/entity/eCommerce/{VERSION}/Vendor").status_code == 404
    assert acu.get("NoSuchEntity").status_code == 404
    # 23.200.001's StockItem has LastModified only; 24.200.001 added LastModifiedDateTime
    old = acu.http.get(f"{SITE}/entity/Default/23.200.001/StockItem", params={"$top": "1"}).json()[0]
    assert "LastModified" in old and "LastModifiedDateTime" not in old
    refused = acu.http.get(
        f"{SITE}/entity/Default/23.200.001/StockItem",
        params={"$filter": "LastModifiedDateTime gt datetimeoffset'2026-01-01T00:00:00Z'"},
    )
    assert refused.status_code == 400


# -- records ----------------------------------------------------------------------------------------------


def test_an_unwrapped_field_is_400(acu):
    refused = acu.put("Vendor", {"VendorID": "VUNWRAP", "VendorName": {"value": "Plain"}})
    assert refused.status_code == 400
    assert "StringValue" in json.dumps(refused.json()["modelState"])
    assert not [v for v in acu.records("Vendor") if v["VendorID"] == "VUNWRAP"]


def test_put_inserts_then_updates_by_key_and_refuses_an_unknown_vendor_class(acu):
    created = acu.put("Vendor", wrap(VendorID="VNEW01", VendorName="Northwind Parts", VendorClass="LOCAL"))
    assert created.status_code == 200, created.text
    record = created.json()
    assert record["VendorID"]["value"] == "VNEW01" and record["Status"]["value"] == "Active"
    assert {"id", "rowNumber", "note", "custom", "_links"} <= set(record)
    updated = acu.put("Vendor", wrap(VendorID="vnew01", VendorName="Northwind Parts Ltd"))
    assert updated.json()["id"] == record["id"] and updated.json()["VendorName"]["value"] == "Northwind Parts Ltd"
    assert updated.json()["LastModifiedDateTime"]["value"] >= record["LastModifiedDateTime"]["value"]
    assert acu.get("Vendor/VNEW01").json()["id"] == record["id"]
    assert acu.get(f"Vendor/{record['id']}").json()["VendorID"]["value"] == "VNEW01"

    refused = acu.put("Vendor", wrap(VendorID="VNEW02", VendorName="Nobody", VendorClass="NOSUCH"))
    assert refused.status_code == 422
    assert refused.json()["VendorClass"] == {
        "value": "NOSUCH",
        "error": "'Vendor Class' cannot be found in the system.",
    }
    assert refused.json()["error"]
    missing = acu.get("Vendor/VNEW02")
    assert missing.status_code == 500 and missing.json()["exceptionMessage"] == "No entity satisfies the condition."
    assert acu.put("Vendor", wrap(VendorID="VNEW01", VendorName="x"), **{}).status_code == 200
    only_new = acu.http.put(
        f"{ENTITY}/Vendor", json=wrap(VendorID="VNEW01", VendorName="y"), headers={"If-None-Match": "*"}
    )
    assert only_new.status_code == 412


def test_detail_lines_come_back_only_when_expanded(acu):
    bare = acu.get("Bill/Bill/000001").json()
    assert "Details" not in bare and bare["ReferenceNbr"]["value"] == "000001"
    expanded = acu.get("Bill/Bill/000001", **{"$expand": "Details"}).json()
    lines = expanded["Details"]
    assert lines and {"InventoryID", "Qty", "UnitCost", "ExtendedCost", "Account", "Subaccount", "Branch"} <= set(
        lines[0]
    )
    listed = acu.get("Bill", **{"$expand": "Details", "$top": "3"}).json()
    assert all(bill["Details"] for bill in listed)
    selected = acu.get("Bill", **{"$select": "ReferenceNbr,Amount", "$top": "2"}).json()[0]
    assert set(selected) - {"id", "rowNumber", "note", "custom", "_links"} == {"ReferenceNbr", "Amount"}


def test_filter_on_the_modified_stamps_with_datetimeoffset_literals(acu):
    for n, stamp in enumerate(("2031-05-04T10:00:00.000Z", "2031-05-04T10:00:00.000Z", "2031-05-05T00:00:00.000Z")):
        acu.plant(
            "Vendor",
            {"VendorID": f"VF{n}", "VendorName": f"Filter {n}", "Status": "Active"} | {"LastModifiedDateTime": stamp},
        )
    acu.plant("StockItem", {"InventoryID": "FILTERITEM", "LastModified": "2031-05-04T10:00:00.000Z"})

    def ids(entity: str, expression: str) -> set[str]:
        answer = acu.get(entity, **{"$filter": expression, "$select": "VendorID,InventoryID"})
        assert answer.status_code == 200, answer.text
        return {r.get("VendorID", r.get("InventoryID", {})).get("value") for r in answer.json()}

    assert ids("Vendor", "LastModifiedDateTime ge datetimeoffset'2031-05-04T10:00:00.000+00:00'") == {
        "VF0",
        "VF1",
        "VF2",
    }
    assert ids("Vendor", "LastModifiedDateTime gt datetimeoffset'2031-05-04T12:00:00.000+02:00'") == {"VF2"}
    assert ids(
        "Vendor",
        "LastModifiedDateTime lt datetimeoffset'2031-05-05T00:00:00.000+00:00' and "
        "LastModifiedDateTime ge datetimeoffset'2031-05-04T00:00:00Z'",
    ) == {"VF0", "VF1"}
    assert ids("Vendor", "(VendorID eq 'vf0' or VendorID eq 'VF2') and Status eq 'Active'") == {"VF0", "VF2"}
    assert ids("StockItem", "LastModified gt datetimeoffset'2031-05-01T00:00:00Z'") == {"FILTERITEM"}
    # a '+' sent unencoded arrives as a space: the literal is refused, as on a real site
    raw = "LastModifiedDateTime gt datetimeoffset'2031-05-04T10:00:00.000+00:00'"
    encoded_but_plus = quote(raw, safe="$'+:")
    unencoded = acu.http.get(f"{ENTITY}/Vendor?$filter={encoded_but_plus}")
    assert unencoded.status_code == 400
    wrong_type = acu.get("Vendor", **{"$filter": "LastModifiedDateTime gt '2031-05-04'"})
    assert wrong_type.status_code == 400


def test_top_and_skip_cover_every_record_once(acu):
    seen, skip = [], 0
    while True:
        page = acu.get("Vendor", **{"$top": "7", "$skip": str(skip), "$select": "VendorID"}).json()
        seen += [r["id"] for r in page]
        skip += 7
        if len(page) < 7:
            break
    assert len(seen) == len(set(seen)) == len(acu.records("Vendor"))


def test_a_mutate_fault_changes_a_record_between_two_pages(acu, sandbox):
    first = acu.get("Vendor", **{"$top": "5"}).json()
    sandbox.faults(
        {
            "kind": "mutate",
            "path_contains": "/Vendor",
            "mutations": [
                {"entity": "Vendor", "key": "V00002", "set": {"LastModifiedDateTime": "2040-01-01T00:00:00Z"}}
            ],
        },
        service="acumatica",
    )
    second = acu.get("Vendor", **{"$top": "5"}).json()
    moved = next(r for r in second if r["VendorID"]["value"] == "V00002")
    assert moved["LastModifiedDateTime"]["value"] == "2040-01-01T00:00:00+00:00"
    assert [r["id"] for r in first] == [r["id"] for r in second]


# -- GL batches ---------------------------------------------------------------------------------------------


def test_a_balanced_batch_gets_a_number_and_is_released_by_the_action(acu):
    created = acu.put("JournalTransaction", batch(*BALANCED), **{"$expand": "Details"})
    assert created.status_code == 200, created.text
    body = created.json()
    number = body["BatchNbr"]["value"]
    assert number == "000081" and body["Status"]["value"] == "Balanced" and body["Module"]["value"] == "GL"
    assert [line["LineNbr"]["value"] for line in body["Details"]] == [1, 2]
    ignored = acu.put("JournalTransaction", batch(*BALANCED, BatchNbr="777777"))
    assert ignored.json()["BatchNbr"]["value"] == "000082"  # the numbering sequence decides, not the client

    done = acu.release(number)
    assert done.status_code == 204, done.text
    released = acu.get(f"JournalTransaction/GL/{number}").json()
    assert released["Status"]["value"] == "Posted"
    again = acu.put("JournalTransaction", wrap(Module="GL", BatchNbr=number, Description="changed"))
    assert again.status_code == 422 and "released" in again.json()["error"]


def test_an_unbalanced_batch_is_saved_only_on_hold_and_is_not_released(acu):
    unbalanced = (("61000", "100-000", "100.00", "0"), ("20100", "000-000", "0", "99.99"))
    refused = acu.put("JournalTransaction", batch(*unbalanced))
    assert refused.status_code == 422 and "out of balance" in refused.json()["error"]
    held = acu.put("JournalTransaction", batch(*unbalanced, hold=True))
    assert held.status_code == 200 and held.json()["Status"]["value"] == "On Hold"
    failed = acu.release(held.json()["BatchNbr"]["value"])
    assert failed.status_code == 500 and "on hold" in failed.json()["exceptionMessage"]


def test_closed_periods_are_refused(acu):
    january = acu.put("JournalTransaction", batch(*BALANCED, PostPeriod="01-2026"))
    assert january.status_code == 422
    assert "closed" in january.json()["PostPeriod"]["error"]
    saved = acu.put("JournalTransaction", batch(*BALANCED))
    period = saved.json()["PostPeriod"]["value"]
    acu.admin.post(f"{ADMIN}/periods", json={"period": period, "closed": True}).raise_for_status()
    failed = acu.release(saved.json()["BatchNbr"]["value"])
    assert failed.status_code == 500 and "closed" in failed.json()["exceptionMessage"]
    year = acu.get(f"FinancialPeriod/{period[2:]}", **{"$expand": "Details"}).json()
    assert next(p for p in year["Details"] if p["FinancialPeriodID"]["value"] == period)["Status"]["value"] == "Closed"


def test_an_inactive_subaccount_is_refused_on_its_field(acu):
    lines = (("61000", "999999", "10.00", "0"), ("20100", "000-000", "0", "10.00"))
    refused = acu.put("JournalTransaction", batch(*lines))
    assert refused.status_code == 422
    line = refused.json()["Details"][0]
    assert line["Subaccount"]["value"] == "999-999" and "inactive" in line["Subaccount"]["error"]
    assert "error" not in refused.json()["Details"][1]["Subaccount"]
    unknown = acu.put("JournalTransaction", batch(("99999", "000-000", "1", "0"), ("20100", "000-000", "0", "1")))
    assert unknown.json()["Details"][0]["Account"]["error"] == "'Account' cannot be found in the system."


# -- faults, limits, amounts ----------------------------------------------------------------------------------


def test_commit_then_504_on_put_commits(acu, sandbox):
    sandbox.faults({"kind": "commit_then_504", "path_contains": "/Vendor"}, service="acumatica")
    lost = acu.put("Vendor", wrap(VendorID="V504", VendorName="Gateway Timeout Supply"))
    assert lost.status_code == 504
    assert acu.get("Vendor/V504").json()["VendorName"]["value"] == "Gateway Timeout Supply"


def test_429_past_the_licence_rate(tmp_path):
    settings = SandboxSettings(acumatica=AcumaticaSettings(requests_per_minute=3, retry_after_seconds=7))
    running = start_in_thread(tmp_path, settings, services=["acumatica"])
    try:
        with httpx.Client(base_url=running.url, verify=str(running.certificates.ca_pem)) as http:
            token = http.post(f"{SITE}/identity/connect/token", data=token_form()).json()["access_token"]
            answers = [http.get(f"{ENTITY}/Account", headers={"Authorization": f"Bearer {token}"}) for _ in range(3)]
            assert [a.status_code for a in answers] == [200, 200, 429]
            assert answers[-1].headers["Retry-After"] == "7" and answers[-1].json()["message"]
    finally:
        running.stop()


def test_exact_decimals_round_trip(acu):
    big = Decimal("123456789012345.67")
    seeded = acu.get("Bill/Bill/000007", **{"$expand": "Details"})
    assert b'"Amount":{"value":123456789012345.67}' in seeded.content
    line = wrap(TransactionDescription="exact", Qty=Decimal("1"), UnitCost=big, Account="62000")
    created = acu.put("Bill", wrap(Vendor="V00001", Description="Exact amounts") | {"Details": [line]})
    assert created.status_code == 200, created.text
    assert exact(created)["Amount"]["value"] == big
    stored = next(b for b in acu.records("Bill") if b["id"] == created.json()["id"])
    assert stored["Amount"] == big and stored["Details"][0]["ExtendedCost"] == big
    rounded = acu.put(
        "JournalTransaction", batch(("61000", "100-000", "10.005", "0"), ("20100", "000-000", "0", "10.01"))
    )
    assert rounded.status_code == 200, rounded.text  # amounts keep the currency's 2 decimals, half away from zero


# -- reference data and the seed ----------------------------------------------------------------------------


def test_branches_come_from_the_companies_structure_inquiry(acu):
    """The Default endpoint has no Branch entity: CompaniesStructure (CS401000) lists companies and branches."""
    answer = acu.http.put(f"{ENTITY}/CompaniesStructure", params={"$expand": "Results"}, json={})
    assert answer.status_code == 200, answer.text
    branches = {row["BranchID"]["value"]: row["BranchName"]["value"] for row in answer.json()["Results"]}
    assert set(branches) == {"HQ", "EAST", "WEST"}
    assert acu.get("CompaniesStructure").status_code == 405
    assert acu.get("Branch").status_code == 404


def test_the_seed_has_ties_day_boundaries_and_the_documented_calendar(acu):
    stamps = [r["LastModifiedDateTime"] for entity in ("Vendor", "Bill", "Check") for r in acu.records(entity)]
    assert len(stamps) > len(set(stamps))  # records share a stamp
    assert any(stamp.endswith("T00:00:00+00:00") for stamp in stamps)  # some fall exactly on midnight
    years = {y["FinancialYear"]["value"]: y for y in acu.get("FinancialPeriod", **{"$expand": "Details"}).json()}
    statuses = {p["FinancialPeriodID"]["value"]: p["Status"]["value"] for y in years.values() for p in y["Details"]}
    assert {s for p, s in statuses.items() if p.endswith("2025")} == {"Closed"}
    assert statuses["012026"] == "Closed" and statuses["022026"] == "Open"
    accounts, subaccounts = acu.records("Account"), acu.records("Subaccount")
    assert len(accounts) >= 40 and [a["AccountCD"] for a in accounts if not a["Active"]] == ["19900"]
    assert [s["SubaccountCD"] for s in subaccounts if not s["Active"]] == ["999-999"]


def test_profile_points_the_product_at_the_site():
    section = profile(Endpoint("https://127.0.0.1:1", Path("/ca.pem"), Path("/data")))["acumatica"]
    assert section["base_url"] == "https://127.0.0.1:1/AcumaticaERP" and section["version"] == VERSION
    assert section["auth"]["client_id"] == CLIENT_ID and section["tenant"] == TENANT
