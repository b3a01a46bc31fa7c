"""SAP Business One → warehouse through Dagster, against the Service Layer simulator."""

from datetime import UTC, datetime

import dagster as dg
import duckdb
import pytest

from mlconnector_pipelines.config import parse_config
from mlconnector_pipelines.definitions import build_definitions
from mlconnector_pipelines.flows.sap_business_one import JOB

from ..sandbox.test_sap_b1_client import END, START, in_window, sap  # noqa: F401  (the module's simulator fixture)

pytestmark = pytest.mark.slow
UTC = UTC


def config(sap, tmp_path, **overrides):  # noqa: F811
    return parse_config(
        {
            "profile": "sandbox",
            "data_dir": str(tmp_path),
            "business_central": None,
            "dataverse": None,
            "sap_business_one": {
                "base_url": f"{sap.url}/b1s/v1",
                "ca_bundle": str(sap.running.certificates.ca_pem),
                "page_size": 15,
                "partitions": {"start": START.date().isoformat()},
                "http": {"backoff_base_seconds": 0.01, "backoff_cap_seconds": 0.05},
                **overrides,
            },
        }
    )


def run(cfg, partition_key=None, partition_range=None):
    tags = None
    if partition_range:
        tags = {
            "dagster/asset_partition_range_start": partition_range[0],
            "dagster/asset_partition_range_end": partition_range[1],
        }
    return (
        build_definitions(cfg)
        .resolve_job_def(JOB)
        .execute_in_process(partition_key=partition_key, tags=tags, instance=dg.DagsterInstance.ephemeral())
    )


def query(cfg, sql, *params):
    with duckdb.connect(str(cfg.duckdb_path), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def meta(result, table):
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == table)
    return {k: v.value for k, v in event.materialization.metadata.items()}


COMPANIES = ("SBODEMOUS", "SBODEMOCA")  # the sandbox profile loads both company databases


def test_a_window_lands_with_one_login_per_company_database_for_the_whole_run(sap, tmp_path):  # noqa: F811
    before = sap.stats()
    cfg = config(sap, tmp_path)
    result = run(cfg, "2026-03-03")
    assert result.success
    start, end = datetime(2026, 3, 3, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC)
    after = sap.stats()
    assert after["logins"] - before["logins"] == 2 and after["logouts"] - before["logouts"] == 2
    assert meta(result, "sap_invoices")["logins"] == 2
    for entity, table, key, column in [
        ("Invoices", "sap_invoices", "DocEntry", "doc_entry"),
        ("JournalEntries", "sap_journal_entries", "JdtNum", "jdt_num"),
        ("BusinessPartners", "sap_business_partners", "CardCode", "card_code"),
    ]:
        for company in COMPANIES:
            expected = in_window(sap.records(entity, company), start, end)
            rows = query(cfg, f"SELECT {column} FROM {table} WHERE _company_id = ?", company)
            assert sorted(r[0] for r in rows) == sorted(r[key] for r in expected), (table, company)
    for company in COMPANIES:
        invoices = in_window(sap.records("Invoices", company), start, end)
        assert query(cfg, "SELECT count(*) FROM sap_invoice_lines WHERE _company_id = ?", company)[0][0] == sum(
            len(r["DocumentLines"]) for r in invoices
        )
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_the_same_document_number_in_two_company_databases_lands_twice_with_its_own_lines(sap, tmp_path):  # noqa: F811
    cfg = config(sap, tmp_path)
    assert run(cfg, partition_range=("2026-03-01", "2026-03-07")).success
    us, ca = ({r["DocEntry"]: r for r in sap.records("Invoices", db)} for db in COMPANIES)
    shared = sorted(set(us) & set(ca))
    assert shared  # DocEntry starts at 1 in every company database
    for doc_entry in shared:
        for company, record in (("SBODEMOUS", us[doc_entry]), ("SBODEMOCA", ca[doc_entry])):
            [(total,)] = query(
                cfg, "SELECT doc_total FROM sap_invoices WHERE _company_id = ? AND doc_entry = ?", company, doc_entry
            )
            assert total == record["DocTotal"]
            lines = query(
                cfg,
                "SELECT count(*) FROM sap_invoice_lines WHERE _company_id = ? AND _parent_id = ?",
                company,
                str(doc_entry),
            )[0][0]
            assert lines == len(record["DocumentLines"])


def test_lines_carry_account_and_cost_centre_keys_for_looker(sap, tmp_path):  # noqa: F811
    cfg = config(sap, tmp_path)
    # Dimension tables are windowed like the rest: the whole history, in one run, gives all of them.
    result = run(cfg, partition_range=("2026-03-01", "2026-03-07"))
    assert result.success
    invoices = [
        e.partition for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == "sap_invoices"
    ]
    assert sorted(invoices) == [f"2026-03-0{day}" for day in range(1, 8)]
    assert query(cfg, "SELECT count(*) FROM sap_accounts")[0][0] == sum(
        len(sap.records("ChartOfAccounts", db)) for db in COMPANIES
    )
    # revenue by profit centre (region) and product line, joined on the dimension tables' keys
    rows = query(
        cfg,
        """
        SELECT p.center_name, l.u_product_line, a.name, sum(l.line_total)
        FROM sap_invoice_lines l
        JOIN sap_invoices i ON i.doc_entry::VARCHAR = l._parent_id AND i._company_id = l._company_id
        JOIN sap_profit_centers p ON p.center_code = l.costing_code AND p._company_id = l._company_id
        JOIN sap_accounts a ON a.code = l.account_code AND a._company_id = l._company_id
        GROUP BY ALL""",
    )
    assert {r[0] for r in rows} == {"North region", "South region", "West region"}
    assert {r[2] for r in rows} == {"Sales revenue"} and all(r[3] > 0 for r in rows)
    lines = query(cfg, "SELECT count(*) FROM sap_invoice_lines")[0][0]
    assert (
        sum(
            query(
                cfg,
                "SELECT count(*) FROM sap_invoice_lines l JOIN sap_profit_centers p "
                "ON p.center_code = l.costing_code AND p._company_id = l._company_id",
            )[0]
        )
        == lines
    )
    # the account hierarchy: every postable account hangs under a root account of its company
    assert query(
        cfg,
        "SELECT count(*) FROM sap_accounts c JOIN sap_accounts f ON f.code = c.father_account_key "
        "AND f._company_id = c._company_id",
    )[0][0] == sum(1 for db in COMPANIES for a in sap.records("ChartOfAccounts", db) if a["FatherAccountKey"])
    assert query(cfg, "SELECT typeof(line_total) FROM sap_invoice_lines LIMIT 1")[0][0] == "DECIMAL(38,9)"


def test_session_timeout_mid_run_relogs_once_and_matches_a_clean_run(sap, tmp_path):  # noqa: F811
    clean = config(sap, tmp_path / "clean")
    assert run(clean, "2026-03-05").success
    faulted = config(sap, tmp_path / "faulted")
    before = sap.stats()
    # the session dies on the run's 4th data request (the Invoices pages are behind it)
    sap.faults({"kind": "expire_tokens", "count": 1, "skip": 3, "path_contains": "/b1s/v1/"})
    result = run(faulted, "2026-03-05")
    assert result.success
    renewed = meta(result, "sap_profit_centers")["http_reauthentications"]
    assert renewed >= 1  # both databases' sessions expired; each renews once, when next used
    assert sap.stats()["logins"] - before["logins"] == 2 + renewed
    assert meta(result, "sap_profit_centers")["logins"] == 2 + renewed  # cumulative for the run's sessions
    for table in ("sap_journal_entries", "sap_journal_entry_lines", "sap_invoices", "sap_invoice_lines"):
        columns = "* EXCLUDE (_extracted_at, _run_id)"
        assert query(clean, f"SELECT {columns} FROM {table} ORDER BY ALL") == query(
            faulted, f"SELECT {columns} FROM {table} ORDER BY ALL"
        ), table


def test_a_business_partner_deleted_in_one_company_database_is_ended_there_only(sap, tmp_path):  # noqa: F811
    """SAP B1 has no delete feed: the reconciliation compares keys (paged by key, 15 a page) per database."""
    from ..conftest import check_deletions, reconcile_deletions

    cfg = config(sap, tmp_path)
    assert run(cfg, partition_range=("2026-03-01", "2026-03-07")).success
    in_both = {r["CardCode"] for r in sap.records("BusinessPartners", COMPANIES[0])} & {
        r["CardCode"] for r in sap.records("BusinessPartners", COMPANIES[1])
    }
    loaded = {
        r[0] for r in query(cfg, "SELECT card_code FROM sap_business_partners WHERE _company_id = ?", COMPANIES[0])
    }
    gone = sorted(in_both & loaded)[0]
    assert check_deletions(cfg, "sap_business_one", ["sap_business_partners"])["sap_business_partners"]["passed"]
    sap.admin.delete(f"/_sandbox/sap_business_one/records/BusinessPartners/{gone}", params={"company": COMPANIES[0]})
    try:
        found = check_deletions(cfg, "sap_business_one", ["sap_business_partners"])["sap_business_partners"]
        assert not found["passed"] and found["deleted_at_source"] == 1
        assert found["per_company"][COMPANIES[0]]["keys"] == [gone]
        observed = reconcile_deletions(cfg, "sap_business_one")
        assert observed["sap_business_partners"]["ended"] == 1
        assert "sap_journal_entries" not in observed  # ledger entries are never deleted: not compared
        present = "SELECT _company_id FROM sap_business_partners WHERE card_code = ? ORDER BY 1"
        assert [r[0] for r in query(cfg, present, gone)] == [COMPANIES[1]]
        tombstones = query(
            cfg, "SELECT _company_id FROM sap_business_partners_changes WHERE card_code = ? AND _deleted", gone
        )
        assert tombstones == [(COMPANIES[0],)]
        # Loading the windows again does not bring it back, and a second reconciliation ends nothing more.
        assert run(cfg, partition_range=("2026-03-01", "2026-03-07")).success
        assert [r[0] for r in query(cfg, present, gone)] == [COMPANIES[1]]
        assert reconcile_deletions(cfg, "sap_business_one")["sap_business_partners"]["ended"] == 0
    finally:
        sap.admin.post("/_sandbox/sap_business_one/reset").raise_for_status()


def test_a_read_failing_while_the_previous_entity_commits_keeps_that_entity_and_changes_nothing_else(sap, tmp_path):  # noqa: F811
    """Each entity's swap commits while the next one's pages are read: a failure in the next read must leave
    the committed entity loaded and reported, and the failed one as it was."""
    cfg = config(sap, tmp_path)
    sap.faults({"kind": "status", "status": 400, "count": 1000, "path_contains": "/b1s/v1/PurchaseInvoices"})
    try:
        result = (
            build_definitions(cfg)
            .resolve_job_def(JOB)
            .execute_in_process(
                partition_key="2026-03-03", instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
            )
        )
    finally:
        sap.admin.delete("/_sandbox/sap_business_one/faults").raise_for_status()
    assert not result.success
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert materialized == {"sap_invoices", "sap_invoice_lines"}  # committed before PurchaseInvoices failed
    assert query(cfg, "SELECT count(*) FROM sap_invoices")[0][0] > 0
    with duckdb.connect(str(cfg.duckdb_path), read_only=True) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert "sap_purchase_invoices" not in tables  # nothing of the failed entity
