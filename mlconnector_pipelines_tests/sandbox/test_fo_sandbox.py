"""The Finance and Operations simulator follows F&O's documented OData behaviour: raw HTTPS, no product code.

Tokens come from the Entra simulator for the environment URL; journals go in through
LedgerJournalHeaders / LedgerJournalLines and atomic $batch changesets; every refusal has F&O's
error shape (an AxODataWriteException whose inner message is the Infolog).
"""

from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal

import httpx
import pytest

from mlconnector_pipelines.sandbox.entra import CLIENT_ID, CLIENT_SECRET, TENANT_ID, EntraSettings
from mlconnector_pipelines.sandbox.finance_operations import ENVIRONMENT_URL, FinanceOperationsSettings
from mlconnector_pipelines.sandbox.server import SandboxSettings, start_in_thread

ADMIN = "/_sandbox/finance_operations"
BC_RESOURCE = "https://api.businesscentral.dynamics.com"
WRITE_FAILED = "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException"
LINE_INFOLOG = "Write failed for table row of type 'LedgerJournalLineEntity'. Infolog: Error: "


def token(url: str, ca: str, resource: str = ENVIRONMENT_URL, client_id: str = CLIENT_ID) -> str:
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


@pytest.fixture
def fo(sandbox):
    sandbox.reset()
    ca = str(sandbox.running.certificates.ca_pem)
    headers = {"Authorization": f"Bearer {token(sandbox.url, ca)}", "OData-Version": "4.0"}
    with httpx.Client(base_url=f"{sandbox.url}/data", verify=ca, headers=headers, timeout=30) as client:
        yield client
    sandbox.clear_faults()


def exact(response: httpx.Response):
    return json.loads(response.content, parse_float=Decimal)


def header(fo: httpx.Client, company: str = "usrt", name: str = "GenJrn") -> str:
    created = fo.post("/LedgerJournalHeaders", json={"dataAreaId": company, "JournalName": name})
    assert created.status_code == 201, created.text
    return created.json()["JournalBatchNumber"]


def line(batch: str, account: str, debit="0", credit="0", day="2026-11-30", company="usrt", **extra) -> dict:
    return {
        "dataAreaId": company,
        "JournalBatchNumber": batch,
        "AccountType": "Ledger",
        "AccountDisplayValue": account,
        "DebitAmount": Decimal(debit),
        "CreditAmount": Decimal(credit),
        "CurrencyCode": "USD" if company == "usrt" else "GBP",
        "TransDate": f"{day}T12:00:00Z",
        **extra,
    }


def post_line(fo: httpx.Client, body: dict) -> httpx.Response:
    return fo.post("/LedgerJournalLines", content=_json(body), headers={"Content-Type": "application/json"})


def _json(body: dict) -> bytes:
    """A flat JSON object whose Decimals are written as numbers with every digit."""

    def value(v) -> str:
        return format(v, "f") if isinstance(v, Decimal) else json.dumps(v)

    return ("{" + ",".join(f"{json.dumps(k)}:{value(v)}" for k, v in body.items()) + "}").encode()


def batch_body(groups: list[list[tuple[str, str, dict | None]]]) -> tuple[str, bytes]:
    """A multipart $batch: each group is one changeset of (method, url, body) requests."""
    boundary = f"batch_{uuid.uuid4()}"
    out = []
    for group in groups:
        changeset = f"changeset_{uuid.uuid4()}"
        out.append(f"--{boundary}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n")
        for number, (method, url, body) in enumerate(group, 1):
            payload = _json(body).decode() if body is not None else ""
            out.append(
                f"--{changeset}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
                f"Content-ID: {number}\r\n\r\n{method} {url} HTTP/1.1\r\nContent-Type: application/json\r\n\r\n"
                f"{payload}\r\n"
            )
        out.append(f"--{changeset}--\r\n")
    out.append(f"--{boundary}--\r\n")
    return f"multipart/mixed; boundary={boundary}", "".join(out).encode()


def send_batch(fo: httpx.Client, groups) -> httpx.Response:
    content_type, body = batch_body(groups)
    return fo.post("/$batch", content=body, headers={"Content-Type": content_type})


def statuses(response: httpx.Response) -> list[int]:
    return [int(s) for s in re.findall(r"^HTTP/1\.1 (\d{3})", response.text, re.MULTILINE)]


def journals(sandbox) -> list[dict]:
    return exact(sandbox.http.get(f"{ADMIN}/journals"))


# -- identity and limits ------------------------------------------------------------------------------


def test_a_token_for_the_environment_opens_the_api_and_a_bc_token_does_not(sandbox, fo):
    ledgers = fo.get("/Ledgers")
    assert ledgers.status_code == 200 and ledgers.headers["OData-Version"] == "4.0"
    assert {r["LegalEntityId"] for r in ledgers.json()["value"]} == {"USRT", "GBRT"}
    ca = str(sandbox.running.certificates.ca_pem)
    other = httpx.get(
        f"{sandbox.url}/data/Ledgers",
        headers={"Authorization": f"Bearer {token(sandbox.url, ca, BC_RESOURCE)}"},
        verify=ca,
    )
    assert other.status_code == 401
    assert other.json() == {"Message": "Authorization has been denied for this request."}
    assert httpx.get(f"{sandbox.url}/data/Ledgers", verify=ca).status_code == 401


@pytest.fixture
def small_sandbox(tmp_path):
    """Entra and F&O alone, with settings of the test's choosing."""
    started = []

    def start(entra: EntraSettings | None = None, **fo_settings):
        settings = SandboxSettings(
            entra=entra or EntraSettings(), finance_operations=FinanceOperationsSettings(**fo_settings)
        )
        running = start_in_thread(tmp_path / f"s{len(started)}", settings, services=["entra", "finance_operations"])
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def test_a_valid_token_of_an_app_missing_from_the_entra_applications_page_gets_401(small_sandbox):
    stranger = "0b6f3c1d-2e4a-4f5b-8c7d-9e0f1a2b3c4d"
    running = small_sandbox(EntraSettings(client_id=stranger))
    ca = str(running.certificates.ca_pem)
    answer = httpx.get(
        f"{running.url}/data/Ledgers",
        headers={"Authorization": f"Bearer {token(running.url, ca, client_id=stranger)}"},
        verify=ca,
    )
    assert answer.status_code == 401
    assert answer.json() == {
        "Message": "Authentication failed.",
        "StackTrace": None,
        "ExceptionType": "System.InvalidOperationException",
    }


def test_past_the_rate_window_429_with_retry_after_and_the_documented_text(small_sandbox):
    running = small_sandbox(rate_limit_requests=3, retry_after_seconds=7)
    ca = str(running.certificates.ca_pem)
    headers = {"Authorization": f"Bearer {token(running.url, ca)}"}
    answers = [httpx.get(f"{running.url}/data/Ledgers", headers=headers, verify=ca) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].headers["Retry-After"] == "7"
    assert "Number of requests exeeded the limit of 3 over the time window of 300 seconds." in answers[-1].text


# -- reading ------------------------------------------------------------------------------------------


def test_server_driven_paging_serves_every_row_once_and_rows_added_meanwhile_shift_nothing(sandbox, fo):
    total = int(fo.get("/MainAccounts/$count").text)
    assert total >= 40
    seen, url = [], "/MainAccounts?$count=true"
    while url:
        page = fo.get(url, headers={"Prefer": "odata.maxpagesize=7"})
        assert page.headers["Preference-Applied"] == "odata.maxpagesize=7"
        body = page.json()
        assert body["@odata.context"].endswith("/data/$metadata#MainAccounts") and body["@odata.count"] == total
        assert len(body["value"]) <= 7
        seen += [r["MainAccountId"] for r in body["value"]]
        url = body.get("@odata.nextLink")
        assert url is None or url.startswith(f"{sandbox.url}/data/MainAccounts?")
    assert len(seen) == len(set(seen)) == total

    batch = header(fo)
    for n in range(4):
        assert post_line(fo, line(batch, "110110", debit=str(n + 1))).status_code == 201
    first = fo.get("/LedgerJournalLines?$orderby=DebitAmount desc", headers={"Prefer": "odata.maxpagesize=2"}).json()
    # Rows added while the client pages: one before the cursor (served 4, 3), one after it.
    assert post_line(fo, line(batch, "110110", debit="9")).status_code == 201
    assert post_line(fo, line(batch, "110110", debit="2.5")).status_code == 201
    rest = fo.get(first["@odata.nextLink"]).json()
    served = [r["DebitAmount"] for r in first["value"] + rest["value"]]
    assert served == [4, 3, 2.5, 2, 1]  # an offset would have served 3 again and lost a row


def test_default_company_unless_cross_company(fo):
    assert header(fo, "usrt") == "00601"
    assert header(fo, "gbrt") == "00601"  # each company's own number sequence
    default = fo.get("/LedgerJournalHeaders").json()["value"]
    assert [(r["dataAreaId"], r["JournalBatchNumber"]) for r in default] == [("usrt", "00601")]
    everything = fo.get("/LedgerJournalHeaders", params={"cross-company": "true"}).json()["value"]
    assert {r["dataAreaId"] for r in everything} == {"usrt", "gbrt"}
    filtered = fo.get("/LedgerJournalHeaders", params={"cross-company": "true", "$filter": "dataAreaId eq 'gbrt'"})
    assert [r["dataAreaId"] for r in filtered.json()["value"]] == ["gbrt"]
    assert fo.get("/LedgerJournalHeaders", params={"$filter": "dataAreaId eq 'gbrt'"}).json()["value"] == []
    gb = "/LedgerJournalHeaders(dataAreaId='gbrt',JournalBatchNumber='00601')"
    assert fo.get(gb).status_code == 404
    assert fo.get(gb, params={"cross-company": "true"}).json()["dataAreaId"] == "gbrt"
    assert fo.patch(gb, json={"Description": "UK month end"}).status_code == 204  # a write names its company
    shared = fo.get("/MainAccounts", params={"$top": "1"}).json()["value"][0]
    assert "dataAreaId" not in shared


def test_filter_grammar_wildcards_enums_and_errors(fo):
    accounts = fo.get(
        "/MainAccounts",
        params={
            "$filter": "(MainAccountId eq '606200' or Name eq '*marketplace*') and "
            "IsSuspended eq Microsoft.Dynamics.DataEntities.NoYes'No'",
            "$select": "MainAccountId,Name",
            "$orderby": "MainAccountId desc",
        },
    ).json()
    assert [r["MainAccountId"] for r in accounts["value"]] == [
        "618200",
        "606200",
        "403100",
        "401300",
        "200200",
        "130200",
    ]
    assert set(accounts["value"][0]) == {"@odata.etag", "MainAccountId", "Name"}
    plain = fo.get("/MainAccounts", params={"$filter": "IsSuspended eq 'Yes'"})
    assert plain.status_code == 400 and "incompatible types" in plain.json()["error"]["innererror"]["message"]
    unknown = fo.get("/Nope")
    assert unknown.status_code == 404
    assert unknown.json()["error"]["innererror"]["message"] == "Resource not found for the segment 'Nope'."
    assert fo.get("/LedgerFiscalPeriods").status_code == 404  # newer environments have only V2
    assert 'EntitySet Name="LedgerFiscalPeriodsV2"' in fo.get("/$metadata").text
    on_hold = fo.get(
        "/LedgerFiscalPeriodsV2",
        params={"$filter": "PeriodStatus eq Microsoft.Dynamics.DataEntities.FiscalPeriodStatus'OnHold'"},
    ).json()["value"]
    assert [(r["LegalEntityId"], r["YearName"], r["PeriodName"]) for r in on_hold] == [("USRT", "2026", "Period 1")]
    formats = fo.get(
        "/DimensionIntegrationFormats", params={"$filter": "IsActive eq Microsoft.Dynamics.DataEntities.NoYes'Yes'"}
    )
    assert {r["FinancialDimensionFormat"] for r in formats.json()["value"]} == {
        "MainAccount-BusinessUnit-CostCenter-Department",
        "BusinessUnit-CostCenter-Department",
    }


# -- journals -----------------------------------------------------------------------------------------


def test_headers_are_numbered_by_the_sequence_and_refuse_a_given_number_or_unknown_name(fo):
    assert [header(fo), header(fo)] == ["00601", "00602"]
    given = fo.post("/LedgerJournalHeaders", json={"JournalName": "GenJrn", "JournalBatchNumber": "X1"})
    assert given.status_code == 400
    assert given.json()["error"]["innererror"]["type"] == WRITE_FAILED
    unknown = fo.post("/LedgerJournalHeaders", json={"JournalName": "NoSuchName"}).json()["error"]["innererror"]
    assert unknown["message"].startswith(
        "Write failed for table row of type 'LedgerJournalHeaderEntity'. Infolog: Error:"
    )
    assert "'NoSuchName'" in unknown["message"]
    created = fo.get("/LedgerJournalHeaders(dataAreaId='usrt',JournalBatchNumber='00601')").json()
    assert created["Description"] == "General journal" and created["IsPosted"] == "No"


@pytest.mark.parametrize(
    ("company", "account", "day", "text"),
    [
        ("usrt", "123456-001-001-022", "2026-11-30", "Entity does not exist: main account '123456'"),
        ("usrt", "600100\\-001", "2026-11-30", "Entity does not exist: main account '600100-001'"),  # escaped
        ("usrt", "999999", "2026-11-30", "Suspended value: main account '999999'"),
        ("gbrt", "618300-001", "2026-11-30", "Suspended value: main account '618300'"),
        ("usrt", "606200-001", "2026-03-02", "Inactive value: main account '606200'"),
        ("usrt", "600100-001-013-022", "2026-11-30", "Entity does not exist: value '013' for dimension CostCenter"),
        ("usrt", "600100-001-099-022", "2026-11-30", "Suspended value: value '099'"),
        ("usrt", "600100-001-001-022", "2025-06-15", "period 'Period 6' of fiscal year 2025"),
        ("usrt", "600100-001-001-022", "2026-01-15", "has status OnHold in ledger USRT"),
    ],
)
def test_a_line_that_breaks_a_ledger_rule_is_refused_with_the_infolog(fo, company, account, day, text):
    batch = header(fo, company)
    refused = post_line(fo, line(batch, account, debit="10", day=day, company=company))
    assert refused.status_code == 400
    inner = refused.json()["error"]["innererror"]
    assert inner["type"] == WRITE_FAILED and inner["message"].startswith(LINE_INFOLOG)
    assert text in inner["message"]
    assert refused.json()["error"]["message"] == "An error has occurred."


@pytest.mark.parametrize(
    ("company", "account", "day"),
    [
        ("usrt", "618300-001", "2026-11-30"),  # suspended for GBRT only
        ("gbrt", "600100-001-013-022", "2026-11-30"),  # UK stores belong to gbrt
        ("gbrt", "600100-001-001-022", "2026-01-15"),  # on hold in USRT only
    ],
)
def test_the_same_values_pass_where_they_are_valid(fo, company, account, day):
    batch = header(fo, company)
    answer = post_line(fo, line(batch, account, debit="10", day=day, company=company))
    assert answer.status_code == 201, answer.text


def test_a_reopened_period_takes_an_account_on_its_last_active_day(sandbox, fo):
    batch = header(fo)
    old_lease = line(batch, "606200-001-009-022", debit="1200", day="2025-12-31")
    assert "status Closed" in post_line(fo, old_lease).text
    reopened = {"legal_entity": "usrt", "year": "2025", "period": "Period 12", "status": "Open"}
    assert sandbox.http.post(f"{ADMIN}/periods", json=reopened).status_code == 200
    assert post_line(fo, old_lease).status_code == 201
    assert "Inactive value" in post_line(fo, line(batch, "606200", debit="1", day="2026-02-02")).text


def test_line_rules_of_the_journal_itself(fo):
    batch = header(fo)
    assert post_line(fo, line(batch, "110110", debit="5", credit="5")).status_code == 400
    assert "must be filled in" in post_line(fo, line(batch, "110110", debit="5", CurrencyCode="")).text
    assert "does not allow manual entry" in post_line(fo, line(batch, "140100", debit="5")).text
    assert post_line(fo, line("09999", "110110", debit="5")).status_code == 400
    first = post_line(fo, line(batch, "110110", debit="5", LineNumber=Decimal(1)))
    assert first.status_code == 201 and first.headers["Location"].endswith("LineNumber=1)")
    again = post_line(fo, line(batch, "110110", debit="5", LineNumber=Decimal(1)))
    assert again.status_code == 400 and "already exists" in again.text
    assert (
        fo.get(f"/LedgerJournalLines(dataAreaId='usrt',JournalBatchNumber='{batch}',LineNumber=1.0)").status_code == 200
    )


def test_vouchers_follow_the_series_and_a_new_one_starts_once_the_last_balances(fo):
    batch = header(fo)
    vouchers = []
    for account, debit, credit in (("110110", "100", "0"), ("401100", "0", "100"), ("110110", "7", "0")):
        created = post_line(fo, line(batch, account, debit=debit, credit=credit, day="2026-11-30"))
        vouchers.append(created.json()["Voucher"])
    assert vouchers[0] == vouchers[1] != vouchers[2]
    assert vouchers[0].startswith("GJV")
    totals = fo.get(f"/LedgerJournalHeaders(dataAreaId='usrt',JournalBatchNumber='{batch}')").json()
    assert (totals["JournalTotalDebit"], totals["JournalTotalCredit"]) == (107, 100)


def test_exact_decimals_round_trip(sandbox, fo):
    batch = header(fo)
    amount = Decimal("12345678901.234567891")
    created = post_line(fo, line(batch, "110110-001-001-022", debit=str(amount), day="2026-11-30"))
    assert created.status_code == 201 and b"12345678901.234567891" in created.content
    key = f"/LedgerJournalLines(dataAreaId='usrt',JournalBatchNumber='{batch}',LineNumber=1)"
    assert exact(fo.get(key))["DebitAmount"] == amount
    assert journals(sandbox)[0]["lines"][0]["DebitAmount"] == amount
    totals = exact(fo.get(f"/LedgerJournalHeaders(dataAreaId='usrt',JournalBatchNumber='{batch}')"))
    assert totals["JournalTotalDebit"] == amount
    as_text = fo.get(key, headers={"Accept": "application/json;IEEE754Compatible=true"})
    assert as_text.json()["DebitAmount"] == "12345678901.234567891"
    assert "IEEE754Compatible=true" in as_text.headers["content-type"]


def test_an_unposted_line_can_be_changed_or_deleted_and_the_totals_follow(sandbox, fo):
    batch = header(fo)
    post_line(fo, line(batch, "110110", debit="10", Text="first"))
    post_line(fo, line(batch, "401100", credit="10"))
    key = f"/LedgerJournalLines(dataAreaId='usrt',JournalBatchNumber='{batch}',LineNumber=1)"
    etag = fo.get(key).json()["@odata.etag"]
    assert fo.patch(key, json={"DebitAmount": 12}, headers={"If-Match": 'W/"stale"'}).status_code == 412
    assert fo.patch(key, json={"DebitAmount": 12, "Text": "changed"}, headers={"If-Match": etag}).status_code == 204
    assert "Suspended value" in fo.patch(key, json={"AccountDisplayValue": "999999"}).text
    head = f"/LedgerJournalHeaders(dataAreaId='usrt',JournalBatchNumber='{batch}')"
    expanded = fo.get(head, params={"$expand": "LedgerJournalLine"}).json()
    assert expanded["JournalTotalDebit"] == 12 and [x["Text"] for x in expanded["LedgerJournalLine"]] == ["changed", ""]
    assert fo.delete(key).status_code == 204
    assert [x["LineNumber"] for x in fo.get(f"{head}/LedgerJournalLine").json()["value"]] == [2]
    assert fo.get(head).json()["JournalTotalDebit"] == 0


def test_a_corrupt_fault_changes_the_first_record_of_a_page(sandbox, fo):
    rule = {"kind": "corrupt", "path_contains": "/data/MainAccounts", "field": "Name", "value": 42}
    sandbox.faults(rule, service="finance_operations")
    assert fo.get("/MainAccounts").json()["value"][0]["Name"] == 42
    assert fo.get("/MainAccounts").json()["value"][0]["Name"] == "Bank operating account"


# -- $batch ---------------------------------------------------------------------------------------------


def test_a_changeset_of_good_lines_stores_them_all(sandbox, fo):
    batch = header(fo)
    url = f"{sandbox.url}/data/LedgerJournalLines"
    group = []
    for n in range(50):
        group.append(("POST", url, line(batch, "401100-002-004-025", credit=f"{n}.10", Text=f"sale {n}")))
        group.append(("POST", url, line(batch, "110110-002-004-022", debit=f"{n}.10", Text=f"sale {n}")))
    answer = send_batch(fo, [group])
    assert answer.status_code == 200 and answer.headers["content-type"].startswith(
        "multipart/mixed; boundary=batchresponse_"
    )
    assert "changesetresponse_" in answer.text
    assert statuses(answer) == [201] * 100
    stored = journals(sandbox)[0]
    assert len(stored["lines"]) == 100 and stored["JournalTotalDebit"] == stored["JournalTotalCredit"]
    posted = sandbox.http.post(f"{ADMIN}/journals/usrt/{batch}/post")
    assert posted.status_code == 200 and posted.json()["IsPosted"] == "Yes"


def test_a_changeset_with_one_bad_line_stores_nothing(sandbox, fo):
    batch = header(fo)
    url = f"{sandbox.url}/data/LedgerJournalLines"
    group = [("POST", url, line(batch, "110110", debit="1")) for _ in range(3)]
    group.insert(2, ("POST", url, line(batch, "999999", debit="1")))
    answer = send_batch(fo, [group])
    assert answer.status_code == 200
    assert statuses(answer) == [400]  # the changeset answers with the failing request's error alone
    assert "Content-ID: 3" in answer.text and "Suspended value" in answer.text
    assert journals(sandbox)[0]["lines"] == []
    assert sandbox.state("finance_operations")["lines"] == 0


def test_content_id_references_reach_the_header_created_in_the_same_changeset(sandbox, fo):
    group = [
        ("POST", "LedgerJournalHeaders", {"JournalName": "Accrual", "Description": "Month-end accruals"}),
        ("POST", "$1/LedgerJournalLine", line("", "600100-001-009-022", debit="250", JournalBatchNumber=None)),
        ("POST", "$1/LedgerJournalLine", line("", "220500", credit="250", JournalBatchNumber=None)),
    ]
    answer = send_batch(fo, [group])
    assert statuses(answer) == [201, 201, 201], answer.text
    (stored,) = journals(sandbox)
    assert stored["JournalName"] == "Accrual" and [x["Voucher"] for x in stored["lines"]] == ["ACV000001"] * 2


def test_a_committed_batch_whose_answer_is_lost_at_the_gateway(sandbox, fo):
    batch = header(fo)
    sandbox.faults({"kind": "commit_then_504", "path_contains": "/data/$batch"}, service="finance_operations")
    url = f"{sandbox.url}/data/LedgerJournalLines"
    group = [("POST", url, line(batch, "110110", debit="9")), ("POST", url, line(batch, "401100", credit="9"))]
    answer = send_batch(fo, [group])
    assert answer.status_code == 504
    assert len(journals(sandbox)[0]["lines"]) == 2  # committed all the same
    assert sandbox.state("finance_operations")["faults_fired"] == {"commit_then_504": 1}


def test_a_batch_of_more_than_5000_operations_is_refused(sandbox, fo):
    group = [("POST", "LedgerJournalHeaders", {"JournalName": "GenJrn"})] * 5001
    answer = send_batch(fo, [group])
    assert answer.status_code == 400 and "5000" in answer.text
    assert journals(sandbox) == []


# -- posting and what it freezes --------------------------------------------------------------------------


def test_posting_needs_balanced_vouchers_and_freezes_the_journal(sandbox, fo):
    batch = header(fo)
    assert post_line(fo, line(batch, "110110", debit="10")).status_code == 201
    refused = sandbox.http.post(f"{ADMIN}/journals/usrt/{batch}/post")
    assert refused.status_code == 400 and "do not balance" in refused.json()["infolog"]
    assert post_line(fo, line(batch, "401100", credit="10")).status_code == 201
    assert sandbox.http.post(f"{ADMIN}/journals/usrt/{batch}/post").json()["IsPosted"] == "Yes"
    key = f"/LedgerJournalHeaders(dataAreaId='usrt',JournalBatchNumber='{batch}')"
    assert fo.patch(key, json={"Description": "late edit"}).status_code == 400
    assert fo.delete(key).status_code == 400
    assert "has been posted" in post_line(fo, line(batch, "110110", debit="1")).text
    assert fo.get(key).json()["IsPosted"] == "Yes"


def test_an_unposted_header_can_be_renamed_and_deleted_with_its_lines(sandbox, fo):
    batch = header(fo)
    assert post_line(fo, line(batch, "110110", debit="1")).status_code == 201
    key = f"/LedgerJournalHeaders(dataAreaId='usrt',JournalBatchNumber='{batch}')"
    assert fo.patch(key, json={"Description": "Renamed"}).status_code == 204
    assert fo.get(key).json()["Description"] == "Renamed"
    assert fo.patch(key, json={"Description": "x" * 61}).status_code == 400
    assert fo.delete(key).status_code == 204
    assert sandbox.state("finance_operations")["lines"] == 0 and fo.get(key).status_code == 404


def test_a_period_closed_by_the_admin_refuses_lines(sandbox, fo):
    batch = header(fo)
    closed = sandbox.http.post(
        f"{ADMIN}/periods", json={"legal_entity": "usrt", "year": "2026", "period": "Period 11", "status": "Closed"}
    )
    assert closed.status_code == 200 and closed.json()["PeriodStatus"] == "Closed"
    refused = post_line(fo, line(batch, "110110", debit="1", day="2026-11-02"))
    assert refused.status_code == 400 and "Period 11" in refused.text
    assert post_line(fo, line(batch, "110110", debit="1", day="2026-12-01")).status_code == 201
