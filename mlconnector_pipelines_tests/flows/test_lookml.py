"""`mlconnector lookml` over what the Business Central flow loaded: every file parses, views are typed from the
warehouse, explores join lines and references on the company too, and the Looker sandbox loads the project
and answers a query over it with the warehouse's own totals."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import lkml
import pytest
from click.testing import CliRunner

from mlconnector_pipelines.cli import main
from mlconnector_pipelines.lookml import build_project
from mlconnector_pipelines.systems.looker.client import LookerClient, QuerySpec
from mlconnector_pipelines.warehouse.resource import WarehouseResource

from .test_looker import start_looker_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """BC data for two days, in the warehouse the Looker sandbox reads."""
    env = start_looker_env(tmp_path_factory, gl_entries=300, days=("2026-03-01", "2026-03-02"))
    yield env
    env.admin.http.close()
    env.running.stop()


@pytest.fixture(scope="module")
def loaded(env):
    return env.cfg


def parsed(cfg) -> dict[str, dict]:
    warehouse = WarehouseResource.from_config(cfg).process_config_and_initialize().open()
    return {path: lkml.load(text) for path, text in build_project(cfg, warehouse, "wh").items()}


def test_views_are_typed_from_the_warehouse_with_a_company_wide_key_times_and_sums(loaded):
    project = parsed(loaded)
    assert len([p for p in project if p.startswith("views/")]) == 14  # 10 entities, 4 kinds of lines
    (entries,) = project["views/bc_general_ledger_entries.view.lkml"]["views"]
    dimensions = {d["name"]: d for d in entries["dimensions"]}
    key = dimensions["primary_key"]
    assert key["primary_key"] == "yes" and '"_company_id"' in key["sql"] and '"id"' in key["sql"]
    assert (dimensions["entry_number"]["type"], dimensions["company_id"]["hidden"]) == ("number", "yes")
    assert dimensions["company_name"].get("hidden") is None
    groups = {g["name"]: g for g in entries["dimension_groups"]}
    assert groups["posting"]["datatype"] == "date" and "month" in groups["posting"]["timeframes"]
    assert groups["last_modified"]["datatype"] == "timestamp" and "time" in groups["last_modified"]["timeframes"]
    measures = {m["name"]: m for m in entries["measures"]}
    assert measures["total_debit_amount"] == {"name": "total_debit_amount", "type": "sum", "sql": "${debit_amount}"}
    assert "G/L entries" in measures["count"]["description"]  # the catalog's words
    # BC's dimension lines carry a `parentId` of their own: it does not take the name the explores join on.
    (dims,) = project["views/bc_general_ledger_entry_dimensions.view.lkml"]["views"]
    columns = {d["name"]: d["sql"] for d in dims["dimensions"]}
    assert (columns["parent_id"], columns["parent_id_in_source"]) == ('${TABLE}."_parent_id"', '${TABLE}."parent_id"')
    # A line's key is its document's company and key, and its own.
    (lines,) = project["views/bc_sales_invoice_lines.view.lkml"]["views"]
    line_key = next(d for d in lines["dimensions"] if d["name"] == "primary_key")["sql"]
    assert all(f'"{c}"' in line_key for c in ("_company_id", "_parent_id", "id"))


def test_explores_join_lines_and_what_they_refer_to_within_one_company(loaded):
    model = parsed(loaded)["mlconnector.model.lkml"]
    assert model["connection"] == "wh" and model["includes"] == ["/views/*.view.lkml"]
    explores = {e["name"]: e for e in model["explores"]}
    joins = {j["name"]: j for j in explores["bc_general_ledger_entries"]["joins"]}
    assert joins["bc_general_ledger_entry_dimensions"]["relationship"] == "one_to_many"
    assert joins["bc_accounts"]["relationship"] == "many_to_one"
    values = joins["bc_dimension_values"]["sql_on"]  # reached through the entry's dimension lines
    assert "${bc_general_ledger_entry_dimensions.value_id} = ${bc_dimension_values.id}" in values
    assert "${bc_general_ledger_entry_dimensions.company_id} = ${bc_dimension_values.company_id}" in values
    invoice = {j["name"]: j for j in explores["bc_sales_invoices"]["joins"]}
    assert set(invoice) == {"bc_sales_invoice_lines", "bc_customers", "bc_items", "bc_accounts"}
    assert (
        "AND ${bc_sales_invoice_lines.company_id} = ${bc_sales_invoices.company_id}"
        in (invoice["bc_sales_invoice_lines"]["sql_on"])
    )


def test_the_command_writes_the_project_and_removes_views_of_tables_no_longer_loaded(loaded, tmp_path, monkeypatch):
    out = tmp_path / "project"
    (out / "views").mkdir(parents=True)
    (out / "views" / "bc_gone.view.lkml").write_text("view: bc_gone {}")
    config = tmp_path / "connector.yaml"
    config.write_text(loaded.model_dump_json())
    result = CliRunner().invoke(main, ["lookml", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 14 views" in result.output
    assert not (out / "views" / "bc_gone.view.lkml").exists()
    for path in out.rglob("*.lkml"):
        lkml.load(path.read_text())  # every file parses


def test_looker_loads_the_project_and_its_totals_equal_the_warehouses_even_across_a_fanned_out_join(env, tmp_path):
    out = tmp_path / "project"
    result = CliRunner().invoke(main, ["lookml", "--out", str(out)], env={"MLCONNECTOR_CONFIG": str(_config(env))})
    assert result.exit_code == 0, result.output
    loaded = env.admin.http.post("/_sandbox/looker/projects", json={"path": str(out)})
    assert loaded.status_code == 200, loaded.text
    client = LookerClient(env.cfg.looker, client_secret="sandbox-looker-client-secret")
    try:
        # Invoices with their lines joined: each invoice's amount is counted once per invoice, not per line.
        (total,) = list(
            client.rows(
                QuerySpec(
                    "mlconnector",
                    "bc_sales_invoices",
                    ("bc_sales_invoices.total_total_amount_including_tax", "bc_sales_invoice_lines.count"),
                )
            )
        )[0]
        by_month = [
            row
            for batch in client.rows(
                QuerySpec(
                    "mlconnector",
                    "bc_general_ledger_entries",
                    ("bc_general_ledger_entries.company_name", "bc_general_ledger_entries.total_debit_amount"),
                    filters={"bc_accounts.number": "-NONE"},  # forces the join to the accounts
                )
            )
            for row in batch
        ]
    finally:
        client.close()
    expected_total, lines = env.warehouse.query(
        "SELECT (SELECT sum(total_amount_including_tax) FROM bc_sales_invoices), "
        "(SELECT count(*) FROM bc_sales_invoice_lines)"
    )[0]
    assert Decimal(str(total["bc_sales_invoices.total_total_amount_including_tax"])) == expected_total
    assert total["bc_sales_invoice_lines.count"] == lines > 0
    debits = dict(
        env.warehouse.query("SELECT _company_name, sum(debit_amount) FROM bc_general_ledger_entries GROUP BY 1")
    )
    assert {r["bc_general_ledger_entries.company_name"]: Decimal(str(r["bc_general_ledger_entries.total_debit_amount"]))
            for r in by_month} == debits  # fmt: skip


def _config(env) -> Path:
    path = env.data_dir / "connector.json.yaml"
    path.write_text(env.cfg.model_dump_json())
    return path
