"""The Service Layer client against the sandbox's SAP B1 simulator over HTTPS (self-signed)."""

import hashlib
import json
import socket
import ssl
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import httpx
import pytest

from mlconnector_pipelines.core.errors import AuthenticationError, ConfigError, RequestFailedError
from mlconnector_pipelines.core.http import HttpPolicy
from mlconnector_pipelines.sandbox.sap_business_one import SapSettings
from mlconnector_pipelines.sandbox.server import SandboxSettings, start_in_thread
from mlconnector_pipelines.systems.sap_business_one.catalog import BY_ENTITY_SET
from mlconnector_pipelines.systems.sap_business_one.client import MODIFIED_AT, ServiceLayerClient
from mlconnector_pipelines.systems.sap_business_one.config import SapBusinessOneConfig

START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 3, 8, tzinfo=UTC)
FAST = HttpPolicy(backoff_base_seconds=0.01, backoff_cap_seconds=0.05, max_attempts=4, timeout_seconds=20)


class ServiceLayer:
    def __init__(self, running):
        self.running = running
        self.url = running.url
        self.admin = httpx.Client(base_url=running.url, verify=str(running.certificates.ca_pem), timeout=30)

    def stats(self) -> dict:
        return self.admin.get("/_sandbox/sap_business_one/state").json()

    def records(self, entity: str, company: str = "SBODEMOUS") -> list[dict]:
        """The simulator's own records of one company database, amounts exactly (Decimal)."""
        response = self.admin.get(f"/_sandbox/sap_business_one/records/{entity}", params={"company": company})
        response.raise_for_status()
        return json.loads(response.content, parse_float=Decimal)

    def faults(self, *rules):
        self.admin.post("/_sandbox/sap_business_one/faults", json={"rules": list(rules)}).raise_for_status()

    def stop(self):
        self.admin.close()
        self.running.stop()


def start(tmp_path_factory, **settings) -> ServiceLayer:
    defaults = {"history_start": START, "history_end": END, "login_delay_seconds": 0.3}
    settings = SandboxSettings(sap_business_one=SapSettings(**{**defaults, **settings}))
    return ServiceLayer(start_in_thread(tmp_path_factory.mktemp("sap"), settings, services=["sap_business_one"]))


@pytest.fixture(scope="module")
def sap(tmp_path_factory):
    service = start(tmp_path_factory)
    yield service
    service.stop()


def client(
    sap: ServiceLayer,
    version: str = "v1",
    *,
    company_db: str = "SBODEMOUS",
    password: str = "sandbox-b1-password",
    **overrides,
) -> ServiceLayerClient:
    """A client from the section a customer would write; `overrides` replace settings unvalidated (bad ones too)."""
    cfg = SapBusinessOneConfig.model_validate(
        {
            "base_url": f"{sap.url}/b1s/{version}",
            "company_db": [company_db],
            "username": "manager",
            "password": {"env": "UNUSED_IN_THESE_TESTS"},
            "ca_bundle": str(sap.running.certificates.ca_pem),
            "http": FAST,
            "page_size": 7,
            "partitions": {"start": "2026-03-01"},
        }
    )
    return ServiceLayerClient(cfg.model_copy(update=overrides), company_db=company_db, password=password)


def updated_at(record, zone="UTC"):
    """When a record changed, as the product must read it: server-local date and time, in UTC; a record
    without a time of day is placed at the end of its day (the window holding it cannot have closed before)."""
    from zoneinfo import ZoneInfo

    wall = datetime.fromisoformat(f"{record['UpdateDate'][:10]}T{record['UpdateTime'] or '23:59:59'}")
    return max(wall.replace(fold=fold, tzinfo=ZoneInfo(zone)).astimezone(UTC) for fold in (0, 1))


def in_window(records, start, end, zone="UTC"):
    return [r for r in records if start <= updated_at(r, zone) < end]


def extract(c, entity_set, start=START, end=END):
    return [r for page in c.pages(BY_ENTITY_SET[entity_set], start, end) for r in page.to_pylist()]


def test_one_session_serves_a_whole_extract_and_is_closed(sap):
    before = sap.stats()
    with client(sap) as c:
        rows = extract(c, "Invoices") + extract(c, "JournalEntries") + extract(c, "BusinessPartners")
        assert c.session.logins == 1
    after = sap.stats()
    assert after["logins"] - before["logins"] == 1
    assert after["logouts"] - before["logouts"] == 1
    assert after["requests"] - before["requests"] > 20  # many pages of 7
    assert len(rows) == sum(len(sap.records(e)) for e in ("Invoices", "JournalEntries", "BusinessPartners"))


def test_session_timeout_mid_extract_logs_in_once_more_and_loses_nothing(sap):
    sap.faults({"kind": "expire_tokens", "count": 1, "skip": 3, "path_contains": "JournalEntries"})
    with client(sap) as c:
        rows = extract(c, "JournalEntries")
        assert c.session.logins == 2 and c.http.stats.reauthentications == 1
    expected = sap.records("JournalEntries")
    assert sorted(r["JdtNum"] for r in rows) == sorted(r["JdtNum"] for r in expected)
    assert {r["JdtNum"]: len(r["JournalEntryLines"]) for r in rows} == {
        r["JdtNum"]: len(r["JournalEntryLines"]) for r in expected
    }


def test_wrong_password_and_unknown_company_are_clear(sap):
    with pytest.raises(AuthenticationError, match="SAP Business One: login refused.*user name or password is wrong"):
        extract(client(sap, password="nope-wrong"), "Items")
    with pytest.raises(AuthenticationError, match="company database is unknown: check company_db") as error:
        extract(client(sap, company_db="SBOMARS"), "Items")
    assert error.value.code == "-306"


def test_self_signed_certificate_needs_the_customers_trust_setting(sap):
    with pytest.raises(RequestFailedError, match="not trusted: set `ca_bundle`"):
        extract(client(sap, ca_bundle=None), "ProfitCenters")
    assert len(extract(client(sap), "ProfitCenters")) == 3  # with the customer's CA bundle
    der = ssl.PEM_cert_to_DER_cert(sap.running.certificates.ca_pem.read_text())
    pin = ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert len(extract(client(sap, ca_bundle=None, pinned_sha256=pin), "ProfitCenters")) == 3
    with pytest.raises(ConfigError, match="presents a certificate with SHA-256 .* not the pinned"):
        client(sap, ca_bundle=None, pinned_sha256="00" * 32)


def test_v1_and_v2_extract_the_same_rows(sap):
    v1 = extract(client(sap, "v1"), "PurchaseInvoices")
    v2 = extract(client(sap, "v2"), "PurchaseInvoices")
    assert v1 == v2 and len(v1) == len(sap.records("PurchaseInvoices"))


def test_half_day_windows_are_refined_on_update_time(sap):
    c = client(sap, page_size=50)
    seen = []
    moment = START
    while moment < END:
        nxt = moment + timedelta(hours=12)
        rows = extract(c, "Invoices", moment, nxt)
        assert len(rows) == len(in_window(sap.records("Invoices"), moment, nxt))
        assert all(moment.strftime("%Y-%m-%dT%H:%M") <= r[MODIFIED_AT] < nxt.strftime("%Y-%m-%dT%H:%M") for r in rows)
        seen += [r["DocEntry"] for r in rows]
        moment = nxt
    assert sorted(seen) == sorted(r["DocEntry"] for r in sap.records("Invoices"))


def test_unknown_entity_and_bad_url_are_clear(sap):
    from mlconnector_pipelines.core.catalog import SourceEntity

    with pytest.raises(RequestFailedError, match="SAP Business One: GET /b1s/v1/Nope failed: .*-2028") as error:
        list(client(sap).pages(SourceEntity("Nope", "x", "", {}, key="DocEntry"), START, END))
    assert error.value.status == 404
    with pytest.raises(ConfigError, match="expected https://<host>:<port>/b1s/v1 or /b1s/v2"):
        client(sap, base_url=f"{sap.url}/b1s/v3")


@pytest.fixture(scope="module")
def stubborn_sap(tmp_path_factory):
    service = start(tmp_path_factory, honour_maxpagesize=False)
    yield service
    service.stop()


def test_server_ignoring_maxpagesize_still_yields_every_row(stubborn_sap):
    c = client(stubborn_sap, page_size=500)
    before = stubborn_sap.stats()["requests"]
    rows = extract(c, "Items")
    expected = stubborn_sap.records("Items")
    assert sorted(r["ItemCode"] for r in rows) == sorted(r["ItemCode"] for r in expected)
    # 40 items at the default 20 a page: 2 full pages, then the empty page a full last page links to
    assert stubborn_sap.stats()["requests"] - before == len(expected) // 20 + 1


@pytest.mark.parametrize("page_size", [None, 1], ids=["default pages", "pages of one record"])
def test_next_links_named_the_other_way_and_update_times_as_numbers_read_the_same(tmp_path_factory, page_size):
    """A v1 server naming its next link `@odata.nextLink` (OData 4's name), and UpdateTime sent as the number
    HHMMSS (905 is 00:09:05): every record is read, each at its moment, also on a page holding only times
    just after midnight (four digits or fewer, once read as HHMM: 1840 became 18:40)."""
    alt = start(tmp_path_factory, next_link_annotation="odata4", update_time_as="hhmmss")
    try:
        rows = extract(client(alt, "v1", **({"page_size": page_size} if page_size else {})), "Invoices")
        expected = in_window(alt.records("Invoices"), START, END)
        assert any(r["UpdateTime"] and r["UpdateTime"] < "01:00" for r in expected)  # four digits or fewer
        assert len(expected) > 7 * 2  # several pages
        assert sorted(r["DocEntry"] for r in rows) == sorted(r["DocEntry"] for r in expected)
        moments = {r["DocEntry"]: r[MODIFIED_AT] for r in rows}
        assert {r["DocEntry"]: updated_at(r).strftime("%Y-%m-%dT%H:%M:%S.000Z") for r in expected} == moments
    finally:
        alt.stop()


# -- ping ---------------------------------------------------------------------------------------


def sap_ping(sap, tmp_path, **overrides):
    from mlconnector_pipelines.systems.sap_business_one.ping import ping

    settings = {
        "base_url": f"{sap.url}/b1s/v2",
        "company_db": "SBODEMOUS",
        "username": "manager",
        "password": {"env": "SAP_PASSWORD_UNDER_TEST"},
        "ca_bundle": str(sap.running.certificates.ca_pem),
        "http": FAST.model_dump(),
        "partitions": {"start": START.date().isoformat()},
    }
    return ping(SapBusinessOneConfig.model_validate({**settings, **overrides}), tmp_path)


def test_ping_logs_in_reads_and_reports_trust(sap, tmp_path, monkeypatch):
    monkeypatch.setenv("SAP_PASSWORD_UNDER_TEST", "sandbox-b1-password")
    result = sap_ping(sap, tmp_path)
    assert result.ok and "logged in to SBODEMOUS (Service Layer v2, TLS: CA bundle)" in result.detail


def test_sets_the_server_keeps_no_update_date_for_are_named_by_ping_and_by_the_load(
    tmp_path_factory, tmp_path, monkeypatch
):
    """SAP's Service Layer metadata gives UpdateDate to the documents, Items and BusinessPartners only: a filter on
    it for JournalEntries, the payments, ChartOfAccounts or ProfitCenters is refused. The load failed on a bare
    400 without a fix, and ping, reading only the chart of accounts, said all was well."""
    monkeypatch.setenv("SAP_PASSWORD_UNDER_TEST", "sandbox-b1-password")
    stamped = ["Invoices", "PurchaseInvoices", "PurchaseOrders", "Items", "BusinessPartners"]
    real = start(tmp_path_factory, stamped_sets=stamped)
    try:
        refused = sap_ping(real, tmp_path)
        assert not refused.ok
        for entity_set in ("JournalEntries", "IncomingPayments", "VendorPayments", "ChartOfAccounts", "ProfitCenters"):
            assert entity_set in refused.detail, refused
        assert "remove the sets named from sap_business_one.entities" in refused.fix
        assert sap_ping(real, tmp_path, entities=stamped).ok
        with pytest.raises(ConfigError, match="keeps no UpdateDate for JournalEntries.*Remove JournalEntries from"):
            extract(client(real), "JournalEntries")
        assert extract(client(real), "Items")  # the sets that carry it load as before
    finally:
        real.stop()


def test_ping_of_v2_on_a_server_that_serves_only_v1_names_the_path(tmp_path_factory, tmp_path, monkeypatch):
    """SAP Business One 9.x has no /b1s/v2: the login's 404 is the path's fault, not the host's or the port's."""
    monkeypatch.setenv("SAP_PASSWORD_UNDER_TEST", "sandbox-b1-password")
    only_v1 = start(tmp_path_factory, versions=["v1"])
    try:
        result = sap_ping(only_v1, tmp_path)
        assert (result.auth_ok, result.ok) == (False, False)
        assert "login 404" in result.detail and "9.x serves /b1s/v1 only" in result.fix, result
        assert sap_ping(only_v1, tmp_path, base_url=f"{only_v1.url}/b1s/v1").ok
    finally:
        only_v1.stop()


@pytest.mark.parametrize(
    "overrides, auth_ok, fix",
    [
        ({"company_db": "SBOMARS"}, False, "company database is unknown"),
        ({"ca_bundle": None}, False, "TLS not trusted: set sap_business_one.ca_bundle"),
        ({"ca_bundle": None, "pinned_sha256": "AB" * 32}, False, "update sap_business_one.pinned_sha256"),
    ],
)
def test_ping_explains_sap_failures(sap, tmp_path, monkeypatch, overrides, auth_ok, fix):
    monkeypatch.setenv("SAP_PASSWORD_UNDER_TEST", "sandbox-b1-password")
    result = sap_ping(sap, tmp_path, **overrides)
    assert result.auth_ok is auth_ok and not result.ok
    assert fix in result.fix, result


def test_ping_of_a_pinned_server_that_is_down_says_host_and_port_not_connector_yaml(sap, tmp_path, monkeypatch):
    """With pinned_sha256, the certificate is fetched before anything else: a server down or a wrong port there was
    a ConfigError, told "fix connector.yaml as the message says". It is the network's failure, and its fix."""
    monkeypatch.setenv("SAP_PASSWORD_UNDER_TEST", "sandbox-b1-password")
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
    result = sap_ping(
        sap, tmp_path, base_url=f"https://127.0.0.1:{port}/b1s/v2", ca_bundle=None, pinned_sha256="AB" * 32
    )
    assert result.auth_ok is False and f"127.0.0.1:{port}" in result.detail and "refused" in result.detail
    assert result.fix.startswith("check the host and port"), result.fix


def test_ping_wrong_password_is_not_echoed(sap, tmp_path, monkeypatch):
    monkeypatch.setenv("SAP_PASSWORD_UNDER_TEST", "Hunter2-Wrong-Password")
    result = sap_ping(sap, tmp_path)
    assert result.auth_ok is False and "user name or password is wrong" in result.fix
    assert "Hunter2-Wrong-Password" not in result.detail + result.fix


def test_an_idle_session_times_out_and_is_renewed_once(tmp_path_factory):
    service = start(tmp_path_factory, session_timeout_minutes=0.02, login_delay_seconds=0)  # 1.2 s
    try:
        import time

        with client(service) as c:
            assert len(extract(c, "ProfitCenters")) == 3
            time.sleep(1.5)
            assert len(extract(c, "ProfitCenters")) == 3
            assert c.session.logins == 2 and c.http.stats.reauthentications == 1
        assert service.stats()["invalid_session_answers"] == 1
    finally:
        service.stop()


def test_live_mode_changes_records_and_commits_some_late(tmp_path_factory):
    import time

    service = start(
        tmp_path_factory,
        live=True,
        live_interval_seconds=0.05,
        history_end=datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0),
    )
    try:
        started = datetime.now(UTC)
        deadline = time.monotonic() + 20
        while True:
            live = [
                j
                for db in ("SBODEMOUS", "SBODEMOCA")
                for j in service.records("JournalEntries", db)
                if j["Memo"].startswith("Live")
            ]
            late = [j for j in live if j["Memo"].endswith("(committed late)")]
            if late and len(live) >= 5:
                break
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert all(updated_at(j) < started for j in late)
        changed = [
            r
            for db in ("SBODEMOUS", "SBODEMOCA")
            for e in ("Items", "BusinessPartners", "Invoices", "PurchaseOrders")
            for r in service.records(e, db)
            if r["UpdateTime"] and updated_at(r) >= started.replace(microsecond=0)
        ]
        assert changed
    finally:
        service.stop()


# -- the hard cases an independent Service Layer produced ------------------------------------------


def test_records_leaving_and_entering_the_filter_between_pages_never_shift_what_is_read(tmp_path_factory):
    service = start(tmp_path_factory, login_delay_seconds=0)
    try:
        start_, end_ = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC)
        before = in_window(service.records("Invoices"), start_, end_)
        first_page = sorted(r["DocEntry"] for r in before)[:7]
        leaver = first_page[0]  # served on page 1, then its update moves it past the window
        outside = [r["DocEntry"] for r in service.records("Invoices") if r not in before]
        joiner = max(outside)  # not in the window when the extract starts; enters it between pages
        assert leaver < joiner
        service.faults(
            {
                "kind": "mutate",
                "path_contains": "/Invoices",
                "skip": 1,
                "mutations": [
                    {
                        "entity": "Invoices",
                        "key": leaver,
                        "set": {"UpdateDate": "2026-03-20", "UpdateTime": "10:00:00"},
                    },
                    {
                        "entity": "Invoices",
                        "key": joiner,
                        "set": {"UpdateDate": "2026-03-03", "UpdateTime": "10:00:00"},
                    },
                ],
            }
        )
        with client(service, page_size=7) as c:
            read = {r["DocEntry"] for r in extract(c, "Invoices", start_, end_)}
        stayed = {r["DocEntry"] for r in before} - {leaver}
        assert stayed <= read, f"never read: {sorted(stayed - read)}"  # $skip paging loses one of these
        assert joiner in read and leaver in read  # the leaver's old version was read on page 1
    finally:
        service.stop()


@pytest.fixture(scope="module", params=["Europe/Berlin", "America/New_York"])
def zoned_sap(request, tmp_path_factory):
    """A server outside UTC whose history spans its DST change (New York on March 8, Berlin on March 29)."""
    service = start(
        tmp_path_factory,
        server_timezone=request.param,
        login_delay_seconds=0,
        history_start=datetime(2026, 3, 5, tzinfo=UTC),
        history_end=datetime(2026, 3, 31, tzinfo=UTC),
    )
    service.zone = request.param
    yield service
    service.stop()


@pytest.mark.parametrize(
    "entity_set, key", [("Invoices", "DocEntry"), ("JournalEntries", "JdtNum"), ("Items", "ItemCode")]
)
def test_a_server_outside_utc_lands_every_record_in_the_utc_window_of_its_moment(zoned_sap, entity_set, key):
    records = zoned_sap.records(entity_set)
    assert any(r["UpdateTime"] is None for r in records)  # records updated without a time of day
    with client(zoned_sap, page_size=50, server_timezone=zoned_sap.zone) as c:
        day, seen = datetime(2026, 3, 4, tzinfo=UTC), []
        while day < datetime(2026, 4, 1, tzinfo=UTC):
            rows = extract(c, entity_set, day, day + timedelta(days=1))
            expected = in_window(records, day, day + timedelta(days=1), zoned_sap.zone)
            assert sorted(r[key] for r in rows) == sorted(r[key] for r in expected), day
            by_key = {r[key]: r for r in expected}
            for row in rows:
                assert row[MODIFIED_AT] == updated_at(by_key[row[key]], zoned_sap.zone).strftime(
                    "%Y-%m-%dT%H:%M:%S.000Z"
                )
            seen += [r[key] for r in rows]
            day += timedelta(days=1)
    assert sorted(seen) == sorted(r[key] for r in records)  # each record exactly once


def test_records_stamped_exactly_on_a_window_boundary_land_in_the_later_window(sap, zoned_sap):
    """Local midnight on a UTC server, and the local time of UTC midnight on a server outside UTC."""
    for service, zone in ((sap, "UTC"), (zoned_sap, zoned_sap.zone)):
        records = service.records("Invoices")
        on_boundary = [r for r in records if r["UpdateTime"] and updated_at(r, zone).time() == time(0, 0)]
        assert on_boundary, "the simulator stamps records on UTC window boundaries"
        with client(service, page_size=50, server_timezone=zone) as c:
            for record in on_boundary:
                moment = updated_at(record, zone)
                before = {r["DocEntry"] for r in extract(c, "Invoices", moment - timedelta(days=1), moment)}
                after = {r["DocEntry"] for r in extract(c, "Invoices", moment, moment + timedelta(days=1))}
                assert record["DocEntry"] in after and record["DocEntry"] not in before, (zone, record)


def test_a_401_that_is_not_an_expired_session_is_raised_not_relogged(sap):
    sap.faults({"kind": "status", "status": 401, "error_code": -1103, "count": 1, "path_contains": "/ProfitCenters"})
    with client(sap) as c:
        with pytest.raises(RequestFailedError) as error:
            extract(c, "ProfitCenters")
        assert c.session.logins == 1 and c.http.stats.reauthentications == 0
    assert type(error.value) is RequestFailedError and error.value.status == 401 and error.value.code == "-1103"


def test_amounts_a_double_cannot_hold_arrive_exactly(sap):
    with client(sap) as c:
        rows = {r["DocEntry"]: r for r in extract(c, "Invoices")}
        journals = {r["JdtNum"]: r for r in extract(c, "JournalEntries")}
    assert any(r["PaidToDate"] == 0 for r in sap.records("Invoices")[:7])  # a first page of whole numbers
    for record in sap.records("Invoices"):
        assert rows[record["DocEntry"]]["DocTotal"] == record["DocTotal"]
        # amounts beside the total: the tax to six decimals, and what is paid (0 first, decimals later)
        assert (rows[record["DocEntry"]]["VatSum"], rows[record["DocEntry"]]["PaidToDate"]) == (
            record["VatSum"],
            record["PaidToDate"],
        )
        assert [line["Price"] for line in rows[record["DocEntry"]]["DocumentLines"]] == [
            line["Price"] for line in record["DocumentLines"]
        ]
    debits = [line["Debit"] for line in journals[1]["JournalEntryLines"]]
    assert Decimal("12345678901.234567891") in debits and Decimal("0.000000001") in debits


def test_each_company_database_is_its_own_session_and_its_own_records(sap):
    with client(sap, company_db="SBODEMOCA") as c:
        canada = extract(c, "Invoices")
    assert {r["DocEntry"] for r in canada} == {r["DocEntry"] for r in sap.records("Invoices", "SBODEMOCA")}
    us = {r["DocEntry"]: r["DocTotal"] for r in sap.records("Invoices")}
    shared = [r for r in canada if r["DocEntry"] in us]
    assert shared and any(us[r["DocEntry"]] != r["DocTotal"] for r in shared)  # same keys, other documents
