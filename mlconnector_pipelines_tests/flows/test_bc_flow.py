"""Business Central → warehouse through Dagster, against the sandbox over HTTPS."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import duckdb
import pytest
import yaml

from mlconnector_pipelines.definitions import build_definitions
from mlconnector_pipelines.flows.business_central import JOB

from ..conftest import SandboxAdmin, make_config, materialization_metadata, run_bc_job, start_sandbox, window_of
from ..jobs import SPAWN, bc_job_from_env, fresh

pytestmark = pytest.mark.slow
UTC = UTC
RUN_COLUMNS = ("_extracted_at", "_run_id")


def snapshot(cfg, table: str) -> list[tuple]:
    """Current-state rows without the per-run columns, in a stable order."""
    with duckdb.connect(str(cfg.duckdb_path), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        columns = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY column_name", [table]
            ).fetchall()
            if r[0] not in RUN_COLUMNS
        ]
        select = ", ".join(f'"{c}"' for c in columns)
        return con.execute(f'SELECT {select} FROM "{table}" ORDER BY ALL').fetchall()


def scalar(cfg, sql: str, *params):
    with duckdb.connect(str(cfg.duckdb_path), read_only=True) as con:
        return con.execute(sql, list(params)).fetchone()[0]


def checks(result) -> dict:
    return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}


# -- loading ------------------------------------------------------------------------------------


def test_definitions_load_without_calling_any_api(sandbox, tmp_path):
    before = sandbox.stats()
    defs = build_definitions(make_config(sandbox, tmp_path))
    defs.resolve_job_def(JOB)
    defs.resolve_all_asset_specs()
    assert sandbox.stats() == before
    # and with the API unreachable, loading still succeeds
    unreachable = make_config(
        sandbox, tmp_path, api_base_url="https://127.0.0.1:9", auth={"authority_host": "https://127.0.0.1:9"}
    )
    assert len(build_definitions(unreachable).resolve_all_asset_specs()) == 14


def test_a_window_lands_exactly_as_the_sandbox_has_it(sandbox, tmp_path):
    cfg = make_config(sandbox, tmp_path, page_size=40)
    result = run_bc_job(cfg, partition_key="2026-03-03")
    assert result.success
    start, end = datetime(2026, 3, 3, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC)
    for company in sandbox.companies():
        own = window_of(sandbox.records(company["id"], "generalLedgerEntries"), start, end)
        rows = {
            r[0]: r[1:]
            for r in duckdb.connect(str(cfg.duckdb_path), read_only=True)
            .execute(
                "SELECT id, entry_number, posting_date::VARCHAR, debit_amount, credit_amount, "
                "strftime(last_modified_date_time, '%Y-%m-%dT%H:%M:%S.%gZ') FROM bc_general_ledger_entries "
                "WHERE _company_id = ?",
                [company["id"]],
            )
            .fetchall()
        }
        assert rows == {
            r["id"]: (
                r["entryNumber"],
                r["postingDate"],
                r["debitAmount"],
                r["creditAmount"],
                r["lastModifiedDateTime"],
            )
            for r in own
        }
        dims = scalar(
            cfg, "SELECT count(*) FROM bc_general_ledger_entry_dimensions WHERE _company_id = ?", company["id"]
        )
        assert dims == sum(len(r["dimensionSetLines"]) for r in own)
        invoices = window_of(sandbox.records(company["id"], "salesInvoices"), start, end)
        lines = scalar(cfg, "SELECT count(*) FROM bc_sales_invoice_lines WHERE _company_id = ?", company["id"])
        assert lines == sum(len(r["salesInvoiceLines"]) for r in invoices)
        assert scalar(cfg, "SELECT count(*) FROM bc_sales_invoices WHERE _company_id = ?", company["id"]) == len(
            invoices
        )
    meta = materialization_metadata(result, "bc_general_ledger_entries")
    assert meta["dagster/row_count"] == sum(
        len(window_of(sandbox.records(c["id"], "generalLedgerEntries"), start, end)) for c in sandbox.companies()
    )
    assert meta["http_requests"] >= meta["pages"] > 2
    assert meta["high_water_mark"] < "2026-03-04T00:00:00.000Z" and meta["high_water_mark"] >= "2026-03-03"
    evaluations = checks(result)
    assert len(evaluations) == 20 and all(e.passed for e in evaluations.values())
    # amounts are exact decimals and timestamps are UTC
    assert scalar(cfg, "SELECT typeof(debit_amount) FROM bc_general_ledger_entries LIMIT 1") == "DECIMAL(38,9)"
    assert (
        scalar(cfg, "SELECT typeof(last_modified_date_time) FROM bc_general_ledger_entries LIMIT 1")
        == "TIMESTAMP WITH TIME ZONE"
    )


def test_late_commit_is_picked_up_and_later_versions_win(sandbox, tmp_path):
    cfg = make_config(sandbox, tmp_path, entities=["customers", "generalLedgerEntries"])
    company = sandbox.companies()[0]
    assert run_bc_job(cfg, partition_key="2026-03-05").success

    late = sandbox.upsert(
        company["id"],
        "generalLedgerEntries",
        {
            "entryNumber": 9_000_001,
            "postingDate": "2026-03-05",
            "documentNumber": "LATE0001",
            "documentType": "Invoice",
            "accountId": "00000000-0000-0000-0000-000000000000",
            "accountNumber": "60100",
            "description": "committed late",
            "debitAmount": 10.0,
            "creditAmount": 0.0,
            "additionalCurrencyDebitAmount": 0.0,
            "additionalCurrencyCreditAmount": 0.0,
        },
        modified_at="2026-03-05T10:00:00.000Z",
    )
    absent = "SELECT count(*) FROM bc_general_ledger_entries WHERE id = ?"
    assert scalar(cfg, absent, late["id"]) == 0
    assert run_bc_job(cfg, partition_key="2026-03-05").success
    assert scalar(cfg, absent, late["id"]) == 1

    customer = window_of(
        sandbox.records(company["id"], "customers"), datetime(2026, 3, 5, tzinfo=UTC), datetime(2026, 3, 6, tzinfo=UTC)
    )[0]
    sandbox.upsert(
        company["id"],
        "customers",
        {"id": customer["id"], "displayName": "Renamed Ltd."},
        modified_at="2026-03-06T08:00:00.000Z",
    )
    assert run_bc_job(cfg, partition_key="2026-03-06").success
    assert scalar(cfg, "SELECT count(*) FROM bc_customers WHERE id = ?", customer["id"]) == 1
    assert scalar(cfg, "SELECT display_name FROM bc_customers WHERE id = ?", customer["id"]) == "Renamed Ltd."
    assert scalar(cfg, "SELECT count(*) FROM bc_customers_changes WHERE id = ?", customer["id"]) == 2
    # re-loading the earlier window (where the old version no longer is) keeps the latest version
    assert run_bc_job(cfg, partition_key="2026-03-05").success
    assert scalar(cfg, "SELECT display_name FROM bc_customers WHERE id = ?", customer["id"]) == "Renamed Ltd."


def test_new_source_field_becomes_a_nullable_column(sandbox, tmp_path):
    cfg = make_config(sandbox, tmp_path, entities=["vendors"])
    company = sandbox.companies()[1]
    vendor = sandbox.records(company["id"], "vendors")[0]
    sandbox.upsert(
        company["id"],
        "vendors",
        {"id": vendor["id"], "preferredBankCode": "BOFA-01"},
        modified_at="2026-03-07T09:00:00.000Z",
    )
    assert run_bc_job(cfg, partition_key="2026-03-07").success
    assert scalar(cfg, "SELECT preferred_bank_code FROM bc_vendors WHERE id = ?", vendor["id"]) == "BOFA-01"
    assert (
        scalar(cfg, "SELECT count(*) FROM bc_vendors WHERE preferred_bank_code IS NULL")
        == scalar(cfg, "SELECT count(*) FROM bc_vendors") - 1
    )
    assert (
        scalar(
            cfg,
            "SELECT is_nullable FROM information_schema.columns WHERE column_name = 'preferred_bank_code' "
            "AND table_name = 'bc_vendors'",
        )
        == "YES"
    )


def test_a_new_numeric_field_whose_first_values_are_whole_keeps_the_fractions_that_follow(sandbox, tmp_path):
    """A field the catalog does not know is typed from what it holds: whole numbers on the first page would
    make it an integer column, and 12500.5 on the next page would be stored as 12501. An undeclared number
    lands as an exact decimal."""
    cfg = make_config(sandbox, tmp_path, entities=["vendors"], page_size=1)
    company = sandbox.companies()[1]
    vendors = sandbox.records(company["id"], "vendors")[:3]
    limits = ["50000", "12500.5", "0.1"]  # one page each, in this order (the server's: by modified stamp)
    for minute, (vendor, limit) in enumerate(zip(vendors, limits, strict=True)):
        sandbox.upsert(company["id"], "vendors", {"id": vendor["id"], "creditLimitExtension": json_number(limit)},
                       modified_at=f"2026-03-07T09:0{minute}:00.000Z")  # fmt: skip
    try:
        assert run_bc_job(cfg, partition_key="2026-03-07").success
        landed = [
            Decimal(str(scalar(cfg, "SELECT credit_limit_extension FROM bc_vendors WHERE _company_id = ? AND id = ?",
                               company["id"], vendor["id"])))
            for vendor in vendors
        ]  # fmt: skip
        assert landed == [Decimal(limit) for limit in limits]
    finally:
        sandbox.reset()  # the seed's stamps: later tests load whole weeks of it


def test_a_field_no_catalog_declares_keeps_every_digit_of_its_amount(sandbox, tmp_path):
    """A number no catalog field declares was left to Arrow's type inference, which reads a fraction as a
    binary float: 12345678901234567.89 landed as 12345678901234568. It is read as an exact decimal."""
    cfg = make_config(sandbox, tmp_path, entities=["vendors"])
    company = sandbox.companies()[1]
    vendor = sandbox.records(company["id"], "vendors")[0]
    record = f'{{"id": "{vendor["id"]}", "creditLimitExtension": 12345678901234567.89, "discountRate": 0.000000125}}'
    body = f'{{"record": {record}, "lastModifiedDateTime": "2026-03-07T09:00:00.000Z"}}'  # numbers as written
    sandbox.http.post(f"/_sandbox/business_central/companies/{company['id']}/vendors", content=body,
                      headers={"Content-Type": "application/json"}).raise_for_status()  # fmt: skip
    try:
        assert run_bc_job(cfg, partition_key="2026-03-07").success
        mine = "WHERE _company_id = ? AND id = ?"
        landed = [
            Decimal(str(scalar(cfg, f"SELECT {column} FROM bc_vendors {mine}", company["id"], vendor["id"])))
            for column in ("credit_limit_extension", "discount_rate")
        ]
        assert landed == [Decimal("12345678901234567.89"), Decimal("0.000000125")]
    finally:
        sandbox.reset()


def json_number(text: str) -> int | float:
    """`50000` as a JSON integer, `0.1` as a JSON fraction: the two kinds a server writes."""
    return int(text) if text.isdigit() else float(text)


def test_a_record_changed_while_its_window_is_read_is_loaded_by_the_window_of_its_new_stamp(
    sandbox, tmp_path, monkeypatch
):
    """A server that fixes a read's records at its first page serves a record changed meanwhile with its new
    stamp, past the window being loaded: that row belongs to a later window, which loads it; this window's
    load goes on without it (it used to fail on a row "outside the windows being loaded")."""
    from mlconnector_pipelines.systems.business_central import client as bc_client

    cfg = make_config(sandbox, tmp_path, entities=["vendors"], page_size=1)
    company = sandbox.companies()[1]
    first, moved, last = sandbox.records(company["id"], "vendors")[3:6]
    for minute, vendor in enumerate((first, moved, last)):
        sandbox.upsert(company["id"], "vendors", {"id": vendor["id"]}, modified_at=f"2026-03-08T09:0{minute}:00.000Z")
    read_page = bc_client.read_page_table
    served_past_the_window = []

    def meanwhile_in_bc(client, response, *args, **kwargs):
        page, next_link = read_page(client, response, *args, **kwargs)
        rows = page.select(["id", "lastModifiedDateTime"]).to_pylist() if "id" in page.column_names else []
        served_past_the_window.extend(r["id"] for r in rows if r["lastModifiedDateTime"] >= "2026-03-09")
        if first["id"] in [r["id"] for r in rows]:  # the next page serves `moved`
            sandbox.upsert(company["id"], "vendors", {"id": moved["id"], "displayName": "Changed meanwhile"},
                           modified_at="2026-03-09T10:00:00.000Z")  # fmt: skip
        return page, next_link

    sandbox.http.post("/_sandbox/business_central/dialect", json={"page_ids": "fixed_at_first_page"}).raise_for_status()
    monkeypatch.setattr(bc_client, "read_page_table", meanwhile_in_bc)
    try:
        assert run_bc_job(cfg, partition_key="2026-03-08").success
        assert served_past_the_window == [moved["id"]], "the case was not exercised"
        assert run_bc_job(cfg, partition_key="2026-03-09").success
        mine = "_company_id = ? AND id = ?"
        assert scalar(cfg, f"SELECT display_name FROM bc_vendors WHERE {mine}", company["id"], moved["id"]) == (
            "Changed meanwhile"
        )
        for vendor in (first, moved, last):
            assert scalar(cfg, f"SELECT count(*) FROM bc_vendors WHERE {mine}", company["id"], vendor["id"]) == 1
    finally:
        sandbox.reset()  # the seed's stamps (later tests load whole weeks of it) and BC's own paging


def _six_vendors_on_march_8(sandbox, tmp_path, page_size: int):
    """The second company's vendors 3–8 stamped a minute apart on 2026-03-08 (a window of their own), and a
    config that loads that company's vendors in pages of `page_size`."""
    company = sandbox.companies()[1]
    cfg = make_config(sandbox, tmp_path, entities=["vendors"], page_size=page_size, companies=[company["name"]])
    for minute, vendor in enumerate(sandbox.records(company["id"], "vendors")[3:9]):
        sandbox.upsert(company["id"], "vendors", {"id": vendor["id"]}, modified_at=f"2026-03-08T09:0{minute}:00.000Z")
    return company, cfg


def _vendors_loaded_of(cfg, company: dict) -> dict[str, str]:
    """The company's vendors in the warehouse's current state: id → display name (one row per id is a dict's)."""
    with duckdb.connect(str(cfg.duckdb_path), read_only=True) as con:
        rows = con.execute("SELECT id, display_name FROM bc_vendors WHERE _company_id = ?", [company["id"]]).fetchall()
    assert len(rows) == len({vendor_id for vendor_id, _ in rows})  # each once
    return dict(rows)


@pytest.mark.parametrize(
    ("leaving", "page_size"),
    [(1, 2), (2, 2), (1, 1)],
    ids=["within the overlap", "more than the overlap", "pages of one record"],
)
def test_records_that_leave_their_window_while_it_is_read_by_offset_cost_no_other_record_its_place(
    sandbox, tmp_path, monkeypatch, leaving, page_size
):
    """OData lets a next link resume at an offset (`$skip=N`). A record already read that changes past the
    window meanwhile moves every later record one place up, so the page at the old offset begins one record
    late: that record was never loaded. Every record still in the window is loaded, each once, also when
    more records leave than the overlap the client asks for (pages of 2: an overlap of 1)."""
    from mlconnector_pipelines.core.paginate import link_offset
    from mlconnector_pipelines.systems.business_central import client as bc_client

    company, cfg = _six_vendors_on_march_8(sandbox, tmp_path, page_size)
    read_page = bc_client.read_page_table
    offset_links, moved = [], []

    def meanwhile_in_bc(client, response, *args, **kwargs):
        page, next_link = read_page(client, response, *args, **kwargs)
        offset_links.extend([next_link] if next_link and link_offset(next_link) else [])
        ids = page.column("id").to_pylist() if "id" in page.column_names else []
        if ids and not moved:  # the first page's first records change past the window once they are read
            moved.extend(ids[:leaving])
            for vendor_id in moved:
                sandbox.upsert(company["id"], "vendors", {"id": vendor_id, "displayName": "Changed meanwhile"},
                               modified_at="2026-03-09T10:00:00.000Z")  # fmt: skip
        return page, next_link

    sandbox.http.post("/_sandbox/business_central/dialect", json={"page_ids": "offset"}).raise_for_status()
    monkeypatch.setattr(bc_client, "read_page_table", meanwhile_in_bc)
    try:
        assert run_bc_job(cfg, partition_key="2026-03-08").success
        assert offset_links and len(moved) == leaving, "the case was not exercised"
        window = (datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC))
        still_there = {r["id"] for r in window_of(sandbox.records(company["id"], "vendors"), *window)}
        assert len(still_there) >= 3
        loaded = _vendors_loaded_of(cfg, company)
        assert sorted(loaded) == sorted(still_there | set(moved))  # `moved` as it was when read
        changes = "SELECT count(*) FROM bc_vendors_changes WHERE _company_id = ?"
        assert scalar(cfg, changes, company["id"]) == len(loaded)  # each version logged once, none read twice
        assert run_bc_job(cfg, partition_key="2026-03-09").success
        mine = "_company_id = ? AND id = ?"
        for vendor_id in moved:
            assert scalar(cfg, f"SELECT display_name FROM bc_vendors WHERE {mine}", company["id"], vendor_id) == (
                "Changed meanwhile"
            )
    finally:
        sandbox.reset()  # the seed's stamps (later tests load whole weeks of it) and BC's own paging


def test_records_changed_while_read_by_offset_that_stay_in_the_window_cost_no_other_record_its_place(
    sandbox, tmp_path, monkeypatch
):
    """A record changed while its window is read and still in it moves to the window's end in a server that
    orders by the modified stamp: the records after it move up a place. The overlapped page can then begin
    with that record (its key read, its new version not): it is no proof that nothing lies unread before."""
    from mlconnector_pipelines.systems.business_central import client as bc_client

    company, cfg = _six_vendors_on_march_8(sandbox, tmp_path, page_size=2)
    read_page = bc_client.read_page_table
    read_ids, changed = [], []

    def meanwhile_in_bc(client, response, *args, **kwargs):
        page, next_link = read_page(client, response, *args, **kwargs)
        ids = page.column("id").to_pylist() if "id" in page.column_names else []
        read_ids.extend(vendor_id for vendor_id in ids if vendor_id not in read_ids)
        if len(read_ids) >= 4 and not changed:  # four read: the first three change, later the same day
            changed.extend(read_ids[:3])
            for second, vendor_id in enumerate(changed):
                sandbox.upsert(company["id"], "vendors", {"id": vendor_id, "displayName": "Changed meanwhile"},
                               modified_at=f"2026-03-08T23:00:0{second}.000Z")  # fmt: skip
        return page, next_link

    sandbox.http.post("/_sandbox/business_central/dialect", json={"page_ids": "offset"}).raise_for_status()
    monkeypatch.setattr(bc_client, "read_page_table", meanwhile_in_bc)
    try:
        assert run_bc_job(cfg, partition_key="2026-03-08").success
        assert len(changed) == 3, "the case was not exercised"
        window = (datetime(2026, 3, 8, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC))
        in_window = {r["id"] for r in window_of(sandbox.records(company["id"], "vendors"), *window)}
        loaded = _vendors_loaded_of(cfg, company)
        assert sorted(loaded) == sorted(in_window)
        assert {loaded[vendor_id] for vendor_id in changed} == {"Changed meanwhile"}
    finally:
        sandbox.reset()


def _delete_the_first_key_read(sandbox, monkeypatch, company: dict, paging: str) -> list[str]:
    """BC pages by `paging`; the first vendor key a read lists is deleted once it is read (returned in the list)."""
    from mlconnector_pipelines.core.paginate import link_offset
    from mlconnector_pipelines.systems.business_central import client as bc_client

    read_page = bc_client.read_page_table
    deleted: list[str] = []

    def meanwhile_in_bc(client, response, *args, **kwargs):
        page, next_link = read_page(client, response, *args, **kwargs)
        assert next_link is None or link_offset(next_link) or "skiptoken=o" in next_link, "BC did not page by offset"
        if page.num_rows and not deleted:
            deleted.append(page.column("id")[0].as_py())
            sandbox.http.delete(
                f"/_sandbox/business_central/companies/{company['id']}/vendors/{deleted[0]}"
            ).raise_for_status()
        return page, next_link

    sandbox.http.post("/_sandbox/business_central/dialect", json={"page_ids": paging}).raise_for_status()
    monkeypatch.setattr(bc_client, "read_page_table", meanwhile_in_bc)
    return deleted


def _vendors_loaded(sandbox, tmp_path, company: dict):
    cfg = make_config(sandbox, tmp_path, entities=["vendors"], page_size=2, companies=[company["name"]])
    assert run_bc_job(cfg, partition_range=("2026-03-01", "2026-03-07")).success
    held = scalar(cfg, "SELECT count(*) FROM bc_vendors WHERE _company_id = ?", company["id"])
    assert held == len(sandbox.records(company["id"], "vendors")) >= 5  # every vendor: any skipped key would show
    return cfg, held


@pytest.mark.parametrize(
    ("paging", "asked_one_by_one"),
    [("offset", 100), ("offset_token", 100), ("offset_token", 0)],
    ids=["$skip in the link", "offset in the token, keys asked for", "offset in the token, keys read again"],
)
def test_a_record_deleted_while_keys_are_read_by_offset_makes_no_other_look_deleted(
    sandbox, tmp_path, monkeypatch, paging, asked_one_by_one
):
    """Reconciliation ends what the source no longer lists. A record deleted while the keys are read by offset
    (`$skip=N` next links, or an offset inside an opaque `$skiptoken`) moved every later key one place up, and
    the key at the page's edge went unread, so a live record was taken for deleted and ended in the warehouse.
    A visible offset is read with an overlap; a key still unlisted is asked for (or, many of them, all keys
    read again) before it is ended. Only the deleted record is ended (by the next reconciliation: this one
    read its key before it went)."""
    from mlconnector_pipelines.systems.business_central import client as bc_client

    from ..conftest import reconcile_deletions

    company = sandbox.companies()[1]
    cfg, held = _vendors_loaded(sandbox, tmp_path, company)
    confirmed = []
    held_of = bc_client.BusinessCentralClient.held
    monkeypatch.setattr(bc_client.BusinessCentralClient, "held",
                        lambda self, *a: confirmed.append(a[-1]) or held_of(self, *a))  # fmt: skip
    monkeypatch.setattr(bc_client, "KEYS_ASKED_ONE_BY_ONE", asked_one_by_one)
    read_page = bc_client.read_page_table
    deleted = _delete_the_first_key_read(sandbox, monkeypatch, company, paging)
    try:
        observed = reconcile_deletions(cfg, "business_central")["bc_vendors"]
        assert deleted, "the case was not exercised"
        assert (observed["deleted_at_source"], observed["ended"]) == (0, 0)  # its key was read before it went
        # a visible offset loses no key; one hidden in a token did, and that key was confirmed
        assert [len(keys) for keys in confirmed] == ([] if paging == "offset" else [1])
        monkeypatch.setattr(bc_client, "read_page_table", read_page)
        observed = reconcile_deletions(cfg, "business_central")["bc_vendors"]
        assert (observed["deleted_at_source"], observed["ended"]) == (1, 1)
        assert scalar(cfg, "SELECT count(*) FROM bc_vendors WHERE _company_id = ?", company["id"]) == held - 1
        assert scalar(cfg, "SELECT count(*) FROM bc_vendors WHERE id = ? AND _company_id = ?", deleted[0],
                      company["id"]) == 0  # fmt: skip
    finally:
        sandbox.reset()


def test_a_key_bc_fails_to_answer_for_is_not_taken_for_deleted(sandbox, tmp_path, monkeypatch):
    """A key the key read passed over is asked for; BC answering that with an error (not 404) fails the
    reconciliation, and nothing is ended."""
    import dagster as dg

    from mlconnector_pipelines.definitions import build_definitions

    company = sandbox.companies()[1]
    cfg, held = _vendors_loaded(sandbox, tmp_path, company)
    deleted = _delete_the_first_key_read(sandbox, monkeypatch, company, "offset_token")
    sandbox.faults({"kind": "status", "status": 500, "count": 50, "path_contains": "/vendors("})
    try:
        job = build_definitions(cfg).resolve_job_def("business_central_reconcile_deletions")
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        assert deleted and not result.success
        failures = [str(e.event_specific_data.error) for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert failures and all("HTTP 500" in failure for failure in failures), failures
        assert scalar(cfg, "SELECT count(*) FROM bc_vendors WHERE _company_id = ?", company["id"]) == held
    finally:
        sandbox.reset()


def test_single_run_backfill_loads_every_window_in_one_run(sandbox, tmp_path):
    cfg = make_config(sandbox, tmp_path, entities=["generalLedgerEntries"], page_size=500)
    instance = dg.DagsterInstance.ephemeral()
    result = run_bc_job(cfg, partition_range=("2026-03-01", "2026-03-04"), instance=instance)
    assert result.success
    assert len(instance.get_runs()) == 1
    start, end = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC)
    expected = sum(
        len(window_of(sandbox.records(c["id"], "generalLedgerEntries"), start, end)) for c in sandbox.companies()
    )
    assert scalar(cfg, "SELECT count(*) FROM bc_general_ledger_entries") == expected
    assert scalar(cfg, "SELECT count(DISTINCT _window_start) FROM bc_general_ledger_entries_changes") == 4
    tags = instance.get_run_by_id(result.run_id).tags
    assert (tags["mlconnector/windows"], tags["mlconnector/bc_general_ledger_entries_rows"]) == ("4", str(expected))
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_a_range_run_gives_each_partition_its_own_windows_figures(sandbox, tmp_path):
    cfg = make_config(sandbox, tmp_path, entities=["generalLedgerEntries"], page_size=500)
    instance = dg.DagsterInstance.ephemeral()
    # 2026-03-08 is past the sandbox's history: an empty window inside the range
    result = run_bc_job(cfg, partition_range=("2026-03-06", "2026-03-08"), instance=instance)
    assert result.success
    figures = {
        table: {
            e.partition: {k: v.value for k, v in e.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()
            if e.asset_key.path[-1] == table
        }
        for table in ("bc_general_ledger_entries", "bc_general_ledger_entry_dimensions")
    }
    for day in ("2026-03-06", "2026-03-07", "2026-03-08"):
        start = datetime.fromisoformat(day).replace(tzinfo=UTC)
        end = start + timedelta(days=1)
        own = [
            r
            for c in sandbox.companies()
            for r in window_of(sandbox.records(c["id"], "generalLedgerEntries"), start, end)
        ]
        entries, dimensions = (
            figures["bc_general_ledger_entries"][day],
            figures["bc_general_ledger_entry_dimensions"][day],
        )
        assert entries["dagster/row_count"] == len(own), day
        assert dimensions["dagster/row_count"] == sum(len(r["dimensionSetLines"]) for r in own), day
        latest = max((datetime.fromisoformat(r["lastModifiedDateTime"]) for r in own), default=None)
        assert entries["high_water_mark"] == (latest.isoformat(timespec="microseconds") if latest else "none")
        # the run's figures, not this window's, are in the run's tags; the window's bounds are its key's
        assert set(entries) == {"dagster/row_count", "high_water_mark"}
        assert set(dimensions) == {"dagster/row_count"}
    assert figures["bc_general_ledger_entries"]["2026-03-08"]["dagster/row_count"] == 0
    tags = instance.get_run_by_id(result.run_id).tags
    assert int(tags["mlconnector/http_requests"]) >= int(tags["mlconnector/pages"]) > 0


def test_the_count_check_reports_its_own_requests_and_token_renewals(sandbox, tmp_path):
    cfg = make_config(sandbox, tmp_path, entities=["vendors"])
    # the token is revoked while the check counts: the second company's $count is refused once
    sandbox.faults({"kind": "expire_tokens", "count": 1, "path_contains": "/vendors/$count"})
    try:
        result = run_bc_job(cfg, partition_key="2026-03-03")
    finally:
        sandbox.clear_faults()
    assert result.success
    check = checks(result)[("bc_vendors", "matches_source_count")]
    figures = {k: v.value for k, v in check.metadata.items()}
    assert check.passed
    assert (figures["http_requests"], figures["http_reauthentications"], figures["tokens_acquired"]) == (3, 1, 1)
    load = materialization_metadata(result, "bc_vendors")
    assert load["http_reauthentications"] == 0 and load["tokens_acquired"] == 1


def test_a_count_the_source_refuses_fails_the_step_after_the_load_is_reported(sandbox, tmp_path):
    """The source is counted while the swap commits; its failure is raised only once the swap has committed
    and the load's materialization is reported, so nothing loaded goes unrecorded."""
    cfg = make_config(sandbox, tmp_path, entities=["vendors"])
    sandbox.faults({"kind": "status", "status": 400, "count": 10, "path_contains": "/vendors/$count"})
    try:
        result = run_bc_job(cfg, partition_key="2026-03-03", raise_on_error=False)
    finally:
        sandbox.clear_faults()
    assert not result.success
    expected = sum(
        len(
            window_of(
                sandbox.records(c["id"], "vendors"), datetime(2026, 3, 3, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC)
            )
        )
        for c in sandbox.companies()
    )
    assert expected > 0
    assert materialization_metadata(result, "bc_vendors")["dagster/row_count"] == expected
    assert scalar(cfg, "SELECT count(*) FROM bc_vendors") == expected
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    cause = failure.step_failure_data.error.cause.message
    assert "vendors/$count failed" in cause and "HTTP 400" in cause, cause


def test_count_check_fails_when_a_window_in_the_range_is_missing(sandbox, tmp_path):
    cfg = make_config(sandbox, tmp_path, entities=["generalLedgerEntries"])
    assert run_bc_job(cfg, partition_key="2026-03-01").success
    result = run_bc_job(cfg, partition_key="2026-03-03")
    check = checks(result)[("bc_general_ledger_entries", "matches_source_count")]
    assert not check.passed
    assert check.severity == dg.AssetCheckSeverity.ERROR
    assert "missing from the warehouse" in check.description


def test_schedule_loads_the_window_that_just_settled(sandbox, tmp_path):
    defs = build_definitions(make_config(sandbox, tmp_path))
    schedule = defs.resolve_schedule_def(f"{JOB}_schedule")
    assert schedule.cron_schedule == "30 0 * * *"
    with dg.instance_for_test() as instance:  # the schedule asked for no window before: none to catch up
        context = dg.build_schedule_context(
            instance,
            scheduled_execution_time=datetime(2026, 3, 5, 0, 30, tzinfo=UTC),
            repository_def=defs.get_repository_def(),
        )
        requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == ["2026-03-04"]


# -- faults: every one ends with the same warehouse content as a clean run ---------------------------

FAULT_WINDOW = "2026-03-02"
GL = "bc_general_ledger_entries"
GL_DIMS = "bc_general_ledger_entry_dimensions"


@pytest.fixture(scope="module")
def clean_gl(sandbox, tmp_path_factory):
    cfg = make_config(sandbox, tmp_path_factory.mktemp("clean"), entities=["generalLedgerEntries"], page_size=20)
    assert run_bc_job(cfg, partition_key=FAULT_WINDOW).success
    return snapshot(cfg, GL), snapshot(cfg, GL_DIMS)


@pytest.mark.parametrize(
    "rules, expect",
    [
        pytest.param(
            [{"kind": "status", "status": 429, "retry_after": 1, "count": 2, "skip": 2}],
            {"http_throttled": 2, "min_waited": 2.0},
            id="429-with-retry-after",
        ),
        pytest.param(
            [{"kind": "status", "status": 429, "retry_after": None, "count": 3, "skip": 1}],
            {"http_throttled": 3},
            id="429-without-retry-after",
        ),
        pytest.param(
            [
                {"kind": "status", "status": 503, "retry_after": None, "count": 2, "skip": 1},
                {"kind": "status", "status": 502, "count": 1, "skip": 4},
                {"kind": "status", "status": 504, "count": 1, "skip": 6},
            ],
            {"http_server_errors": 4},
            id="5xx-burst",
        ),
        pytest.param(
            [{"kind": "drop", "count": 2, "skip": 3}], {"http_transport_errors": 2}, id="connection-dropped-mid-page"
        ),
        pytest.param(
            [{"kind": "delay", "delay_seconds": 3, "count": 1, "skip": 2}],
            {"http_transport_errors": 1},
            id="slow-response-times-out",
        ),
        pytest.param(
            [{"kind": "expire_tokens", "count": 1, "skip": 3}],
            {"http_reauthentications": 1, "tokens_acquired": 2},
            id="token-expires-mid-run",
        ),
    ],
)
def test_faults_end_with_clean_run_content(sandbox, tmp_path, clean_gl, rules, expect):
    overrides = {"entities": ["generalLedgerEntries"], "page_size": 20}
    if any(r["kind"] == "delay" for r in rules):
        overrides["http"] = {"timeout_seconds": 1}
    cfg = make_config(sandbox, tmp_path, **overrides)
    for rule in rules:
        rule["path_contains"] = "generalLedgerEntries"
    sandbox.faults(*rules)
    try:
        result = run_bc_job(cfg, partition_key=FAULT_WINDOW)
    finally:
        fired = sandbox.stats()["faults_fired"]
        sandbox.clear_faults()
    assert result.success
    assert (snapshot(cfg, GL), snapshot(cfg, GL_DIMS)) == clean_gl
    meta = materialization_metadata(result, GL)
    for key, value in expect.items():
        if key == "min_waited":
            assert meta["http_waited_seconds"] >= value
        else:
            assert meta[key] == value, (key, meta)
    assert fired, "the fault actually fired"


@pytest.fixture(scope="module")
def strict_sandbox(tmp_path_factory):
    """A sandbox whose own request limit is tiny: 12 requests per 2 s per client, no Retry-After."""
    running, data_dir = start_sandbox(tmp_path_factory, rate_limit_requests=12, rate_limit_window_seconds=2.0)
    admin = SandboxAdmin(running)
    admin.data_dir = data_dir
    yield admin
    admin.http.close()
    running.stop()


def test_the_services_own_rate_limit_is_ridden_out(strict_sandbox, tmp_path):
    cfg = make_config(
        strict_sandbox,
        tmp_path,
        entities=["generalLedgerEntries"],
        page_size=10,
        http={"backoff_base_seconds": 0.25, "backoff_cap_seconds": 2.0, "max_attempts": 25},
    )
    result = run_bc_job(cfg, partition_key=FAULT_WINDOW)
    assert result.success
    meta = materialization_metadata(result, GL)
    assert meta["http_throttled"] > 0
    start, end = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)
    expected = sum(
        len(window_of(strict_sandbox.records(c["id"], "generalLedgerEntries"), start, end))
        for c in strict_sandbox.companies()
    )
    assert scalar(cfg, f"SELECT count(*) FROM {GL}") == expected


def test_persistent_failure_fails_the_run_and_keeps_the_old_window(sandbox, tmp_path):
    cfg = make_config(sandbox, tmp_path, entities=["generalLedgerEntries"], page_size=20, http={"max_attempts": 2})
    assert run_bc_job(cfg, partition_key=FAULT_WINDOW).success
    before = snapshot(cfg, GL)
    sandbox.faults({"kind": "status", "status": 503, "count": 50, "skip": 3, "path_contains": "generalLedgerEntries"})
    try:
        result = run_bc_job(cfg, partition_key=FAULT_WINDOW, raise_on_error=False)
    finally:
        sandbox.clear_faults()
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "Business Central: GET" in failure.step_failure_data.error.to_string()
    assert "still failing after 2 attempts" in failure.step_failure_data.error.to_string()
    assert snapshot(cfg, GL) == before


# -- the real executor: parallel step processes share the DuckDB file -------------------------------


def test_multiprocess_run_with_parallel_steps(sandbox, tmp_path, monkeypatch):
    cfg = make_config(sandbox, tmp_path)
    path = tmp_path / "connector.yaml"
    raw = cfg.model_dump(mode="json")
    raw["business_central"]["auth"]["client_secret"] = {"env": "MLCONNECTOR_BC_CLIENT_SECRET"}
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MLCONNECTOR_CONFIG", str(path))
    monkeypatch.setenv("MLCONNECTOR_BC_CLIENT_SECRET", "sandbox-client-secret")
    (tmp_path / "dagster").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        result = dg.execute_job(
            fresh(bc_job_from_env), instance=instance, run_config=SPAWN, tags={"dagster/partition": "2026-03-04"}
        )
        assert result.success, [e.message for e in result.all_events if e.is_failure]
    start, end = datetime(2026, 3, 4, tzinfo=UTC), datetime(2026, 3, 5, tzinfo=UTC)
    for entity_set, table in [
        ("generalLedgerEntries", GL),
        ("customers", "bc_customers"),
        ("salesOrders", "bc_sales_orders"),
        ("items", "bc_items"),
    ]:
        expected = sum(len(window_of(sandbox.records(c["id"], entity_set), start, end)) for c in sandbox.companies())
        assert scalar(cfg, f"SELECT count(*) FROM {table}") == expected, table
    assert scalar(cfg, "SELECT count(*) FROM information_schema.tables WHERE table_name LIKE 'bc_%'") == 28


def test_live_mode_creates_modifies_and_commits_late(tmp_path_factory):
    """The sandbox's live mode gives incremental runs something real to find."""
    import time

    running, data_dir = start_sandbox(
        tmp_path_factory,
        live=True,
        live_interval_seconds=0.05,
        history_end=datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0),
    )
    admin = SandboxAdmin(running)
    try:
        started = datetime.now(UTC)
        deadline = time.monotonic() + 20
        while True:
            company_ids = [c["id"] for c in admin.companies()]
            entries = [r for cid in company_ids for r in admin.records(cid, "generalLedgerEntries")]
            live = [r for r in entries if r["documentNumber"].startswith("LIVE")]
            late = [r for r in live if r["description"].endswith("(committed late)")]
            modified = [
                r for cid in company_ids for r in admin.records(cid, "customers") if "(rev " in r["displayName"]
            ]
            if late and modified and len(live) >= 6:
                break
            assert time.monotonic() < deadline, (len(live), len(late), len(modified))
            time.sleep(0.2)
        # late commits carry a timestamp from before they became visible
        assert any(datetime.fromisoformat(r["lastModifiedDateTime"].replace("Z", "+00:00")) < started for r in late)
        # a modification stamps the record with the time it happened
        floor = (started - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
        assert all(r["lastModifiedDateTime"] >= floor for r in modified)
    finally:
        admin.http.close()
        running.stop()


# -- hard cases: the same id in two companies, values that do not cast, pages that are not JSON ----------


def test_a_copied_companys_records_keep_their_ids_and_each_company_keeps_its_own(sandbox, tmp_path):
    cfg = make_config(sandbox, tmp_path, entities=["vendors", "salesInvoices", "generalLedgerEntries"])
    assert run_bc_job(cfg, partition_range=("2026-03-01", "2026-03-07")).success
    first, second = sandbox.companies()
    for entity_set, table, amount in (
        ("vendors", "bc_vendors", "balance"),
        ("salesInvoices", "bc_sales_invoices", "totalAmountExcludingTax"),
        ("generalLedgerEntries", "bc_general_ledger_entries", "debitAmount"),
    ):
        theirs = {r["id"]: r for r in sandbox.records(second["id"], entity_set)}
        shared = [r for r in sandbox.records(first["id"], entity_set) if r["id"] in theirs]
        assert shared, entity_set  # BC's Copy Company keeps record ids
        for record in shared:
            for company, own in ((first, record), (second, theirs[record["id"]])):
                [(value,)] = (
                    duckdb.connect(str(cfg.duckdb_path), read_only=True)
                    .execute(
                        f"SELECT {''.join('_' + c.lower() if c.isupper() else c for c in amount)} FROM {table} "
                        "WHERE _company_id = ? AND id = ?",
                        [company["id"], record["id"]],
                    )
                    .fetchall()
                )
                assert value == own[amount], (entity_set, company["name"])
    lines = scalar(cfg, "SELECT count(*) FROM bc_sales_invoice_lines")
    assert lines == sum(
        len(r["salesInvoiceLines"])
        for c in (first, second)
        for r in sandbox.records(c["id"], "salesInvoices")
        if "2026-03-01" <= r["lastModifiedDateTime"][:10] < "2026-03-08"
    )


def test_lines_an_expanded_collection_leaves_behind_a_nested_next_link_all_land(sandbox, tmp_path):
    """BC may page an expanded collection: a record carries its first lines and `<navigation>@odata.nextLink`
    for the rest (OData JSON, "Expanded Navigation Property"). Every line lands, with its document."""
    cfg = make_config(sandbox, tmp_path, entities=["salesInvoices", "generalLedgerEntries"], page_size=7)
    sandbox.http.post("/_sandbox/business_central/dialect", json={"expanded_page_size": 2}).raise_for_status()
    try:
        assert run_bc_job(cfg, partition_range=("2026-03-01", "2026-03-07")).success
    finally:
        sandbox.http.post("/_sandbox/business_central/dialect", json={"expanded_page_size": None}).raise_for_status()
    with duckdb.connect(str(cfg.duckdb_path), read_only=True) as con:
        for entity_set, navigation, table in (
            ("salesInvoices", "salesInvoiceLines", "bc_sales_invoice_lines"),
            ("generalLedgerEntries", "dimensionSetLines", "bc_general_ledger_entry_dimensions"),
        ):
            held = sorted(con.execute(f"SELECT _company_id, _parent_id, id FROM {table}").fetchall())
            own = sorted(
                (company["id"], record["id"], line["id"])
                for company in sandbox.companies()
                for record in sandbox.records(company["id"], entity_set)
                if "2026-03-01" <= record["lastModifiedDateTime"][:10] < "2026-03-08"
                for line in record[navigation]
            )
            assert held == own, entity_set
        invoices = [r for c in sandbox.companies() for r in sandbox.records(c["id"], "salesInvoices")]
        longest = max(len(r["salesInvoiceLines"]) for r in invoices)
        assert longest > 4, "no invoice's lines fill three pages: the case was not exercised"
        columns = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns").fetchall()}
        assert not [c for c in columns if "next_link" in c]  # the nested links are followed, not stored


def test_amounts_a_double_cannot_hold_land_exactly(sandbox, tmp_path):
    cfg = make_config(sandbox, tmp_path, entities=["generalLedgerEntries", "salesInvoices"])
    assert run_bc_job(cfg, partition_range=("2026-03-01", "2026-03-07")).success
    for company in sandbox.companies():
        entries = {
            r["id"]: r
            for r in sandbox.records(company["id"], "generalLedgerEntries")
            if "2026-03-01" <= r["lastModifiedDateTime"][:10] < "2026-03-08"
        }
        loaded = dict(
            duckdb.connect(str(cfg.duckdb_path), read_only=True)
            .execute("SELECT id, debit_amount FROM bc_general_ledger_entries WHERE _company_id = ?", [company["id"]])
            .fetchall()
        )
        assert loaded == {i: r["debitAmount"] for i, r in entries.items()}
        assert Decimal("12345678901.234567891") in loaded.values() and Decimal("0.000000001") in loaded.values()
    prices = {
        r[0]
        for r in duckdb.connect(str(cfg.duckdb_path), read_only=True)
        .execute("SELECT unit_price FROM bc_sales_invoice_lines")
        .fetchall()
    }
    assert Decimal("1234.567891") in prices


@pytest.mark.parametrize(
    "field, value, problem",
    [
        ("postingDate", "not-a-date", r"bc_general_ledger_entries\.posting_date: 'not-a-date' is not a valid date"),
        (
            "debitAmount",
            "12,5",
            r"a page it cannot read: .*'12,5'.* record 1 \(id '[0-9a-f-]{36}'\): debitAmount = '12,5'",
        ),
        ("debitAmount", "", r"a page it cannot read: Empty string.* record 1 \(id '[0-9a-f-]{36}'\): debitAmount = ''"),
    ],
)
def test_a_value_that_does_not_cast_names_the_record_and_loses_nothing(sandbox, tmp_path, field, value, problem):
    cfg = make_config(sandbox, tmp_path, entities=["generalLedgerEntries"], page_size=1)
    assert run_bc_job(cfg, partition_key=FAULT_WINDOW).success
    before = snapshot(cfg, GL)
    sandbox.faults(
        {"kind": "corrupt", "field": field, "value": value, "skip": 1, "path_contains": "generalLedgerEntries"}
    )
    try:
        result = run_bc_job(cfg, partition_key=FAULT_WINDOW, raise_on_error=False)
    finally:
        sandbox.clear_faults()
    assert not result.success
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.to_string()
    assert re.search(problem, error), error
    assert "Business Central" in error and "generalLedgerEntries" in error and FAULT_WINDOW in error
    assert snapshot(cfg, GL) == before  # the window's previous content stays


def test_a_stamp_with_seven_digits_of_a_second_lands_in_its_window(sandbox, tmp_path):
    """.NET writes a DateTimeOffset with seven digits of a second, and OData allows twelve: the last tick of a
    day is still that day's."""
    cfg = make_config(sandbox, tmp_path, entities=["generalLedgerEntries"], page_size=1)
    stamp = f"{FAULT_WINDOW}T23:59:59.9999999Z"
    sandbox.faults(
        {"kind": "corrupt", "field": "lastModifiedDateTime", "value": stamp, "skip": 1,
         "path_contains": "generalLedgerEntries"}
    )  # fmt: skip
    try:
        result = run_bc_job(cfg, partition_key=FAULT_WINDOW, raise_on_error=False)
    finally:
        sandbox.clear_faults()
    assert result.success
    with duckdb.connect(str(cfg.duckdb_path), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        held = con.execute(
            f"SELECT strftime(_window_start, '%Y-%m-%d'), CAST(last_modified_date_time AS VARCHAR) FROM {GL} "
            "WHERE CAST(last_modified_date_time AS VARCHAR) LIKE '%23:59:59.99999%'"
        ).fetchall()
    assert held == [(FAULT_WINDOW, f"{FAULT_WINDOW} 23:59:59.999999+00")]  # the warehouse keeps microseconds


def test_an_html_page_answered_with_200_says_what_came_back(sandbox, tmp_path):
    cfg = make_config(sandbox, tmp_path, entities=["vendors"])
    sandbox.faults({"kind": "html", "count": 1, "path_contains": "/vendors"})
    try:
        result = run_bc_job(cfg, partition_key=FAULT_WINDOW, raise_on_error=False)
    finally:
        sandbox.clear_faults()
    error = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error.to_string()
    assert "returned a page it cannot read" in error and "received text/html" in error
    assert "Sign in to your account" in error and "while reading Business Central vendors of company" in error
