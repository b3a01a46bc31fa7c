"""Acumatica → warehouse through Dagster, over HTTPS: every record once, whatever the paging meets.

The sandbox stamps records in ties (several share one LastModifiedDateTime, some exactly on a
day's boundary) and answers in key order only; the flow reads slices of a few records so ties
straddle slice boundaries, and a fault moves a record while its window is being read.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import duckdb
import pytest

from mlconnector_pipelines.config import parse_config, sandbox_profile
from mlconnector_pipelines.definitions import build_definitions
from mlconnector_pipelines.systems.acumatica.resource import AcumaticaResource

from ..conftest import FAST_HTTP, SandboxAdmin, start_sandbox

pytestmark = pytest.mark.slow
START, END = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 8, tzinfo=UTC)


@pytest.fixture(scope="module")
def acumatica(tmp_path_factory):
    running, sandbox_dir = start_sandbox(tmp_path_factory, acumatica={"history_start": START, "history_end": END})
    admin = SandboxAdmin(running)
    admin.data_dir = sandbox_dir
    yield admin
    admin.http.close()
    running.stop()


def config(admin, data_dir, **acumatica):
    raw = sandbox_profile(admin.data_dir, admin.url)
    raw.update(
        data_dir=str(data_dir),
        sap_business_one=None,
        looker=None,
        finance_operations=None,
        business_central=None,
        dataverse=None,
    )
    raw["acumatica"].update(http=dict(FAST_HTTP), page_size=5, journals=[], **acumatica)
    raw["acumatica"]["partitions"]["start"] = "2026-03-01"
    return parse_config(raw)


def run(cfg, first: str = "2026-03-01", last: str = "2026-03-07", instance=None) -> dg.ExecuteInProcessResult:
    return (
        build_definitions(cfg)
        .resolve_job_def("acumatica_to_warehouse")
        .execute_in_process(
            instance=instance or dg.DagsterInstance.ephemeral(),
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
            raise_on_error=False,
        )
    )


def held(admin, entity: str) -> list[dict]:
    return json.loads(admin.http.get(f"/_sandbox/acumatica/records/{entity}").content, parse_float=Decimal)


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_every_record_lands_once_though_ties_straddle_slices_and_window_boundaries(acumatica, tmp_path):
    acumatica.reset()
    bills = held(acumatica, "Bill")
    stamps = [moment(b["LastModifiedDateTime"]) for b in bills]
    assert len(stamps) > len(set(stamps)) + 5  # ties the flow must keep together
    assert any(s == s.replace(hour=0, minute=0, second=0, microsecond=0) for s in stamps)  # on a day boundary
    result = run(config(acumatica, tmp_path))
    assert result.success
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        loaded = dict(con.sql("SELECT id, amount FROM acumatica_bills").fetchall())
        lines = con.execute("SELECT count(*), count(DISTINCT id) FROM acumatica_bill_lines").fetchall()[0]
        stock = con.execute("SELECT count(*) FROM acumatica_stock_items").fetchall()[0][0]
    expected = {b["id"]: Decimal(str(b["Amount"])) for b, s in zip(bills, stamps, strict=True) if START <= s < END}
    assert loaded == expected  # every bill of the week once, amounts exact (one has 17 significant digits)
    assert (
        lines[0] == lines[1] == sum(len(b["Details"]) for b, s in zip(bills, stamps, strict=True) if START <= s < END)
    )
    assert stock == sum(1 for i in held(acumatica, "StockItem") if START <= moment(i["LastModified"]) < END)
    checks = {
        (e.event_specific_data.asset_key.path[-1], e.event_specific_data.check_name): e.event_specific_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }
    assert checks[("acumatica_bills", "matches_source_count")] and checks[("acumatica_bills", "no_duplicate_keys")]
    state = acumatica.state("acumatica")
    assert state["open_sessions"] == 0  # the run signed out


def as_served(cfg, entity: str, **query) -> list[dict]:
    """Records as the site serves them (the case a test sets up, checked before the load)."""
    client = AcumaticaResource.from_section(cfg.acumatica, cfg.data_dir).client()
    try:
        return client.records(entity, **query)
    finally:
        client.close()


def test_stamps_written_without_an_offset_land_each_bill_once_in_its_window(acumatica, tmp_path):
    """A site writing `2026-03-02T10:00:00` (no offset): the scan read it as UTC, the load failed on it with
    Arrow's "expected a zone offset". Both read it as UTC; every bill of the week lands once."""
    acumatica.reset()
    acumatica.http.post("/_sandbox/acumatica/dialect", json={"stamp_offsets": False}).raise_for_status()
    try:
        cfg = config(acumatica, tmp_path)
        served = as_served(cfg, "Bill", select=["LastModifiedDateTime"], top=3)
        assert served and all(len(str(r["LastModifiedDateTime"])) <= 23 for r in served), served  # the case
        bills = held(acumatica, "Bill")
        result = run(cfg)
        assert result.success
        with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
            loaded = sorted(r[0] for r in con.sql("SELECT id FROM acumatica_bills").fetchall())
        assert loaded == sorted(b["id"] for b in bills if START <= moment(b["LastModifiedDateTime"]) < END)
    finally:
        acumatica.reset()


def test_a_record_moved_while_its_window_is_read_lands_once_in_its_newer_version(acumatica, tmp_path):
    acumatica.reset()
    bills = sorted(held(acumatica, "Bill"), key=lambda b: moment(b["LastModifiedDateTime"]))
    in_week = [b for b in bills if START <= moment(b["LastModifiedDateTime"]) < END]
    mover = in_week[3]  # read in an early slice; then it changes, later in the same window
    later = (END - timedelta(hours=1)).isoformat(timespec="milliseconds")
    acumatica.faults(
        {
            "kind": "mutate",
            "path_contains": "/entity/Default/24.200.001/Bill",
            "skip": 3,  # the scan and two slices have been read
            "mutations": [
                {"entity": "Bill", "key": mover["id"], "set": {"LastModifiedDateTime": later, "Description": "moved"}}
            ],
        },
        service="acumatica",
    )
    assert run(config(acumatica, tmp_path)).success
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        current = con.sql("SELECT id, description FROM acumatica_bills").fetchall()
        versions = con.sql(
            "SELECT count(*) FROM acumatica_bills_changes WHERE id = ?", params=[mover["id"]]
        ).fetchall()[0][0]
    ids = [row[0] for row in current]
    assert len(ids) == len(set(ids)) == len(in_week)  # once each, none lost
    assert dict(current)[mover["id"]] == "moved"  # current state holds its newer version
    assert versions in (1, 2)  # its old version too, if it was read before it moved
    assert acumatica.state("acumatica")["faults_fired"] == {"mutate": 1}


def test_a_vendor_and_an_unreleased_bill_deleted_in_acumatica_are_ended_by_reconciliation(acumatica, tmp_path):
    """Acumatica has no delete feed: the reconciliation compares ids; a bill leaves with its lines."""
    from ..conftest import check_deletions, reconcile_deletions

    acumatica.reset()
    cfg = config(acumatica, tmp_path)
    assert run(cfg).success
    warehouse = str(tmp_path / "warehouse.duckdb")
    with duckdb.connect(warehouse, read_only=True) as con:
        vendor = con.sql("SELECT id FROM acumatica_vendors ORDER BY id LIMIT 1").fetchall()[0][0]
        bill = con.sql(
            "SELECT b.id FROM acumatica_bills b JOIN acumatica_bill_lines l ON l._parent_id = b.id "
            "WHERE b.status NOT IN ('Closed', 'Open') ORDER BY b.id LIMIT 1"
        ).fetchall()[0][0]
    for entity, record in (("Vendor", vendor), ("Bill", bill)):
        acumatica.http.delete(f"/_sandbox/acumatica/records/{entity}/{record}").raise_for_status()
    found = check_deletions(cfg, "acumatica", ["acumatica_vendors", "acumatica_bills"])
    assert {t: f["deleted_at_source"] for t, f in found.items()} == {"acumatica_vendors": 1, "acumatica_bills": 1}
    assert not found["acumatica_vendors"]["passed"]
    observed = reconcile_deletions(cfg, "acumatica")
    assert observed["acumatica_vendors"]["ended"] == observed["acumatica_bills"]["ended"] == 1
    with duckdb.connect(warehouse, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM acumatica_vendors WHERE id = ?", [vendor]).fetchall() == [(0,)]
        assert con.execute("SELECT count(*) FROM acumatica_bills WHERE id = ?", [bill]).fetchall() == [(0,)]
        assert con.execute("SELECT count(*) FROM acumatica_bill_lines WHERE _parent_id = ?", [bill]).fetchall() == [
            (0,)
        ]
        assert con.execute(
            "SELECT count(*) FROM acumatica_bills_changes WHERE id = ? AND _deleted", [bill]
        ).fetchall() == [(1,)]
    assert all(
        f["passed"] for f in check_deletions(cfg, "acumatica", ["acumatica_vendors", "acumatica_bills"]).values()
    )
    assert acumatica.state("acumatica")["open_sessions"] == 0  # the check and the job signed out


def _column_types(tmp_path, table: str) -> dict[str, str]:
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        return dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?", [table]
            ).fetchall()
        )


def test_a_site_that_answers_lists_without_details_still_has_every_line_loaded(acumatica, tmp_path):
    """Some sites leave `$expand`ed details out of a list answer and fill them only for a record read alone
    (dialect `details_in_lists: false`). The load took that as documents without lines: the bill lines of the
    week went to none, the run passed, and a re-run replaced the lines loaded before by none. Each record so
    answered is read again by its id; a site that fills them costs no request more."""
    acumatica.reset()
    in_week = {
        entity: [r for r in held(acumatica, entity) if START <= moment(r["LastModifiedDateTime"]) < END]
        for entity in ("Bill", "Check", "JournalTransaction")
    }
    tables = {
        "Bill": "acumatica_bill_lines",
        "Check": "acumatica_check_applications",
        "JournalTransaction": "acumatica_journal_transaction_lines",
    }
    expected = {
        tables[e]: sorted(line["id"] for r in records for line in r["Details"]) for e, records in in_week.items()
    }
    assert all(expected.values())

    def loaded() -> dict[str, list[str]]:
        with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
            return {t: sorted(r[0] for r in con.sql(f"SELECT id FROM {t}").fetchall()) for t in expected}

    def read_alone(result, instance) -> tuple[int, int]:
        """(records read again by id, as the run's figures say; GET requests of those entities the site saw)"""
        figures = instance.get_run_by_id(result.run_id).tags
        requests = acumatica.state("acumatica")["requests"]
        return int(figures["mlconnector/details_read_by_id"]), sum(requests.get(f"GET {e}", 0) for e in tables)

    cfg = config(acumatica, tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    result = run(cfg, instance=instance)
    assert result.success and loaded() == expected
    counted, requests = read_alone(result, instance)
    assert counted == 0
    acumatica.http.post("/_sandbox/acumatica/dialect", json={"details_in_lists": False}).raise_for_status()
    try:
        result = run(cfg, instance=instance)  # a re-run over the same week: the lines loaded before must stay
        assert result.success
        assert loaded() == expected
        counted, more_requests = read_alone(result, instance)
        # Each document once at least (one on a slice boundary is in both slices' answers), each counted.
        assert counted >= sum(len(records) for records in in_week.values())
        assert counted == more_requests - 2 * requests
    finally:
        acumatica.reset()


def test_a_field_empty_on_the_first_page_takes_the_type_of_its_first_value(acumatica, tmp_path):
    """Acumatica writes a field without a value as `{}`. One empty on every record of the first slice was
    made a text column for good: the payment card number that came later was stored as text. Undeclared in
    the catalog, the column waits for its first value, which types it."""
    acumatica.reset()
    payments = sorted(
        (p for p in held(acumatica, "Payment") if START <= moment(p["LastModifiedDateTime"]) < END),
        key=lambda p: moment(p["LastModifiedDateTime"]),
    )
    assert len(payments) > 5 and not any(p.get("CardAccountNbr") for p in payments)  # the first slice of 5: none
    last = payments[-1]
    acumatica.http.post(
        "/_sandbox/acumatica/records/Payment",
        json={
            "record": {k: last[k] for k in ("id", "Type", "ReferenceNbr", "LastModifiedDateTime")}
            | {"CardAccountNbr": 4111}
        },
    ).raise_for_status()
    assert run(config(acumatica, tmp_path)).success
    assert _column_types(tmp_path, "acumatica_payments")["card_account_nbr"].startswith("DECIMAL")
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
        card = con.execute("SELECT card_account_nbr FROM acumatica_payments WHERE id = ?", [last["id"]]).fetchall()
    assert card == [(Decimal(4111),)]


def test_the_contracts_amounts_moments_and_flags_have_their_types_whatever_the_first_page_held(acumatica, tmp_path):
    """A column's type came from the first page: an amount no payment of the week had (`AppliedToOrders`,
    `{}` throughout) was text, and `CreatedDateTime` was a timestamp or text depending on whether the first
    stamps were whole seconds. The catalog declares the contract's DecimalValue, DateTimeValue and
    BooleanValue fields."""
    acumatica.reset()
    assert run(config(acumatica, tmp_path)).success
    payments = _column_types(tmp_path, "acumatica_payments")
    batches = _column_types(tmp_path, "acumatica_journal_transactions")
    bills = _column_types(tmp_path, "acumatica_bills")
    assert payments["applied_to_orders"] == payments["payment_amount"] == "DECIMAL(38,9)"
    assert batches["created_date_time"] == batches["last_modified_date_time"] == "TIMESTAMP WITH TIME ZONE"
    assert (bills["date"], bills["due_date"], bills["hold"]) == ("DATE", "DATE", "BOOLEAN")


def test_document_dates_of_a_site_east_of_utc_land_on_the_day_the_site_wrote(acumatica, tmp_path):
    """A site writes its date-times with its own offset: in UTC+10 a bill dated 1 March is
    `2026-03-01T00:00:00+10:00`. Converted to UTC it was loaded as 28 February; a business date is the
    calendar date as written."""
    acumatica.reset()
    dialect = {"site_utc_offset_hours": 10, "dates_at_site_offset": True}
    acumatica.http.post("/_sandbox/acumatica/dialect", json=dialect).raise_for_status()
    try:
        cfg = config(acumatica, tmp_path)
        served = as_served(cfg, "Bill", select=["Date"], top=1)
        assert str(served[0]["Date"]).endswith("T00:00:00+10:00")  # the case
        assert run(cfg).success
        with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as con:
            bills = {
                i: (str(d), str(due))
                for i, d, due in con.sql("SELECT id, date, due_date FROM acumatica_bills").fetchall()
            }
            checks = dict(con.sql("SELECT id, CAST(application_date AS VARCHAR) FROM acumatica_checks").fetchall())
            batches = dict(
                con.sql("SELECT id, CAST(transaction_date AS VARCHAR) FROM acumatica_journal_transactions").fetchall()
            )
        assert bills and bills == {
            b["id"]: (b["Date"], b["DueDate"]) for b in held(acumatica, "Bill") if b["id"] in bills
        }
        assert checks and checks == {
            c["id"]: c["ApplicationDate"] for c in held(acumatica, "Check") if c["id"] in checks
        }
        assert batches and batches == {
            j["id"]: j["TransactionDate"] for j in held(acumatica, "JournalTransaction") if j["id"] in batches
        }
    finally:
        acumatica.reset()
