"""SAP Business One → warehouse through Dagster, against the Service Layer simulator."""

from datetime import datetime, timezone

import dagster as dg
import duckdb
import pytest

from mlconnector_pipelines.config import parse_config
from mlconnector_pipelines.definitions import build_definitions
from mlconnector_pipelines.flows.sap_business_one import JOB

from .test_sap_b1_client import END, START, in_window, sap  # noqa: F401  (the module's simulator fixture)

pytestmark = pytest.mark.slow
UTC = timezone.utc


def config(sap, tmp_path, **overrides):  # noqa: F811
    return parse_config({
        "profile": "sandbox", "data_dir": str(tmp_path), "business_central": None,
        "sap_business_one": {"base_url": f"{sap.url}/b1s/v1", "ca_bundle": str(sap.running.certificate),
                             "page_size": 15, "partitions": {"start": START.date().isoformat()},
                             "http": {"backoff_base_seconds": 0.01, "backoff_cap_seconds": 0.05}, **overrides},
    })


def run(cfg, partition_key=None, partition_range=None):
    tags = None
    if partition_range:
        tags = {"dagster/asset_partition_range_start": partition_range[0],
                "dagster/asset_partition_range_end": partition_range[1]}
    return build_definitions(cfg).resolve_job_def(JOB).execute_in_process(
        partition_key=partition_key, tags=tags, instance=dg.DagsterInstance.ephemeral())


def query(cfg, sql, *params):
    with duckdb.connect(str(cfg.duckdb_path), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def meta(result, table):
    event = next(e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == table)
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_a_window_lands_with_one_login_for_the_whole_run(sap, tmp_path):  # noqa: F811
    before = sap.stats()
    cfg = config(sap, tmp_path)
    result = run(cfg, "2026-03-03")
    assert result.success
    start, end = datetime(2026, 3, 3, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC)
    after = sap.stats()
    assert after["logins"] - before["logins"] == 1 and after["logouts"] - before["logouts"] == 1
    assert meta(result, "sap_invoices")["logins"] == 1
    for entity, table, key in [("Invoices", "sap_invoices", "DocEntry"), ("JournalEntries", "sap_journal_entries", "JdtNum"),
                               ("BusinessPartners", "sap_business_partners", "CardCode")]:
        expected = in_window(sap.records(entity), start, end)
        rows = query(cfg, f"SELECT {'doc_entry' if key == 'DocEntry' else 'jdt_num' if key == 'JdtNum' else 'card_code'} FROM {table}")
        assert sorted(r[0] for r in rows) == sorted(r[key] for r in expected), table
    invoices = in_window(sap.records("Invoices"), start, end)
    assert query(cfg, "SELECT count(*) FROM sap_invoice_lines")[0][0] == sum(len(r["DocumentLines"]) for r in invoices)
    assert all(e.passed for e in result.get_asset_check_evaluations())


def test_lines_carry_account_and_cost_centre_keys_for_looker(sap, tmp_path):  # noqa: F811
    cfg = config(sap, tmp_path)
    # Dimension tables are windowed like the rest: the whole history, in one run, gives all of them.
    result = run(cfg, partition_range=("2026-03-01", "2026-03-07"))
    assert result.success and meta(result, "sap_invoices")["windows"] == 7
    assert query(cfg, "SELECT count(*) FROM sap_accounts")[0][0] == len(sap.records("ChartOfAccounts"))
    # revenue by profit centre (region) and product line, joined on the dimension tables' keys
    rows = query(cfg, """
        SELECT p.center_name, l.u_product_line, a.name, sum(l.line_total)
        FROM sap_invoice_lines l
        JOIN sap_invoices i ON i.doc_entry::VARCHAR = l._parent_id
        JOIN sap_profit_centers p ON p.center_code = l.costing_code
        JOIN sap_accounts a ON a.code = l.account_code
        GROUP BY ALL""")
    assert {r[0] for r in rows} == {"North region", "South region", "West region"}
    assert {r[2] for r in rows} == {"Sales revenue"} and all(r[3] > 0 for r in rows)
    lines = query(cfg, "SELECT count(*) FROM sap_invoice_lines")[0][0]
    assert sum(query(cfg, "SELECT count(*) FROM sap_invoice_lines l JOIN sap_profit_centers p "
                          "ON p.center_code = l.costing_code")[0]) == lines  # every line has its cost centre
    # the account hierarchy: every postable account hangs under a root account
    assert query(cfg, "SELECT count(*) FROM sap_accounts c JOIN sap_accounts f ON f.code = c.father_account_key")[0][0] \
        == sum(1 for a in sap.records("ChartOfAccounts") if a["FatherAccountKey"])
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
    assert sap.stats()["logins"] - before["logins"] == 2
    assert meta(result, "sap_profit_centers")["logins"] == 2  # cumulative for the run's one session
    assert meta(result, "sap_profit_centers")["http_reauthentications"] == 1
    for table in ("sap_journal_entries", "sap_journal_entry_lines", "sap_invoices", "sap_invoice_lines"):
        columns = "* EXCLUDE (_extracted_at, _run_id)"
        assert query(clean, f"SELECT {columns} FROM {table} ORDER BY ALL") == \
            query(faulted, f"SELECT {columns} FROM {table} ORDER BY ALL"), table
