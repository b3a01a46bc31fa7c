"""The Looker sandbox answers queries over a LookML project loaded from a directory, as Looker would:
documents joined to their lines (one_to_many) keep the documents' own total (symmetric aggregates
over a composite primary key), timeframes group, filters narrow, and unknown fields are refused."""

from __future__ import annotations

import json
import shutil
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import httpx
import pytest

from mlconnector_pipelines.sandbox.looker import CLIENT_ID, CLIENT_SECRET, LookerSettings
from mlconnector_pipelines.sandbox.looker.lookml_project import LookmlError, load_project

from ..conftest import SandboxAdmin, start_sandbox

MODEL = "sales"
DOCS, LINES = "sales_documents", "sales_document_lines"
COMPANIES = ("11111111-0000-0000-0000-000000000001", "22222222-0000-0000-0000-000000000002")

MODEL_FILE = """
connection: "warehouse"
include: "/views/*.view.lkml"

explore: sales_documents {
  label: "Sales documents"
  description: "Posted sales documents with their lines."
  join: sales_document_lines {
    type: left_outer
    relationship: one_to_many
    sql_on: ${sales_documents.id} = ${sales_document_lines.document_id}
      AND ${sales_documents._company_id} = ${sales_document_lines._company_id} ;;
  }
}

explore: sales_document_lines {
  join: sales_documents {
    type: left_outer
    relationship: many_to_one
    sql_on: ${sales_document_lines.document_id} = ${sales_documents.id}
      AND ${sales_document_lines._company_id} = ${sales_documents._company_id} ;;
  }
}
"""

DOCUMENTS_VIEW = """
view: sales_documents {
  sql_table_name: "bc_sales_documents" ;;

  dimension: pk {
    primary_key: yes
    hidden: yes
    type: string
    sql: ${TABLE}."_company_id" || '|' || ${TABLE}."id" ;;
  }
  dimension: _company_id { type: string hidden: yes sql: ${TABLE}."_company_id" ;; }
  dimension: id { type: string sql: ${TABLE}."id" ;; }
  dimension: customer { type: string sql: ${TABLE}."customer" ;; description: "Sell-to customer" }
  dimension: amount { type: number sql: ${TABLE}."amount" ;; }
  dimension: is_open { type: yesno sql: ${TABLE}."status" = 'Open' ;; }
  dimension_group: posting {
    type: time
    timeframes: [raw, date, week, month, quarter, year]
    datatype: date
    sql: ${TABLE}."posting_date" ;;
  }
  dimension_group: modified {
    type: time
    timeframes: [raw, time, date, month]
    datatype: timestamp
    sql: ${TABLE}."modified_at" ;;
  }
  measure: count { type: count }
  measure: total_amount { type: sum sql: ${amount} ;; }
  measure: open_amount { type: sum sql: ${amount} ;; filters: [is_open: "Yes"] }
  measure: open_share { type: number sql: ${open_amount} / NULLIF(${total_amount}, 0) ;; }
}
"""

LINES_VIEW = """
view: sales_document_lines {
  sql_table_name: bc_sales_document_lines ;;

  dimension: pk {
    primary_key: yes
    hidden: yes
    type: string
    sql: ${TABLE}."_company_id" || '|' || ${TABLE}."document_id" || '|' || CAST(${TABLE}."line_no" AS VARCHAR) ;;
  }
  dimension: _company_id { type: string hidden: yes sql: ${TABLE}."_company_id" ;; }
  dimension: document_id { type: string sql: ${TABLE}."document_id" ;; }
  dimension: item { type: string sql: ${TABLE}."item" ;; }
  measure: count { type: count }
  measure: total_line_amount { type: sum sql: ${TABLE}."line_amount" ;; }
}
"""


def write_project(root: Path, model: str = MODEL, extra_view: str = "") -> Path:
    (root / "views").mkdir(parents=True, exist_ok=True)
    (root / f"{model}.model.lkml").write_text(MODEL_FILE)
    (root / "views" / "sales_documents.view.lkml").write_text(DOCUMENTS_VIEW + extra_view)
    (root / "views" / "sales_document_lines.view.lkml").write_text(LINES_VIEW)
    return root


def write_warehouse(path: Path) -> None:
    """Two companies with the same document numbers (only the composite key tells them apart); 0 to 3
    lines per document; amounts with nine decimals."""
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE bc_sales_documents (_company_id VARCHAR, id VARCHAR, customer VARCHAR, status VARCHAR, "
        "posting_date DATE, modified_at TIMESTAMP, amount DECIMAL(38,9))"
    )
    con.execute(
        "CREATE TABLE bc_sales_document_lines (_company_id VARCHAR, document_id VARCHAR, line_no INTEGER, "
        "item VARCHAR, line_amount DECIMAL(38,9))"
    )
    documents, lines = [], []
    for c, company in enumerate(COMPANIES):
        for k in range(1, 31):
            amount = Decimal(f"{k * 101 + c * 7}.{(k * 123456789 + c) % 10**9:09d}")
            documents.append(
                (
                    company,
                    f"D{k:03}",
                    ("Adatum", "Trey", "Fabrikam")[k % 3],
                    "Open" if (k + c) % 4 == 0 else "Posted",
                    date(2026, 1, 1) + timedelta(days=(k * 7 + c * 3) % 90),
                    datetime(2026, 1, 1, 8) + timedelta(hours=k * 37 + c * 5, minutes=k, seconds=c),
                    amount,
                )
            )
            for i in range((k + c) % 4):
                lines.append(
                    (company, f"D{k:03}", 10000 * (i + 1), ("A-100", "B-200", "C-300")[(k + i) % 3],
                     Decimal(f"{k + i}.000000001"))
                )  # fmt: skip
    con.executemany("INSERT INTO bc_sales_documents VALUES (?, ?, ?, ?, ?, ?, ?)", documents)
    con.executemany("INSERT INTO bc_sales_document_lines VALUES (?, ?, ?, ?, ?)", lines)
    con.close()


class LookerApi:
    def __init__(self, admin: SandboxAdmin):
        self.http = httpx.Client(base_url=f"{admin.url}/api/4.0", verify=str(admin.running.certificates.ca_pem))
        self.login()

    def login(self) -> None:
        token = self.http.post("/login", data={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET})
        self.http.headers["Authorization"] = f"token {token.json()['access_token']}"

    def run(self, fields, view=DOCS, model=MODEL, result_format="json", **query) -> httpx.Response:
        body = {"model": model, "view": view, "fields": list(fields), **query}
        return self.http.post(f"/queries/run/{result_format}", json=body)

    def rows(self, fields, **query) -> list[dict]:
        response = self.run(fields, **query)
        assert response.status_code == 200, response.text
        return json.loads(response.content, parse_float=Decimal)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("lookml")
    warehouse = base / "warehouse.duckdb"
    write_warehouse(warehouse)
    project = write_project(base / "project")
    running, data_dir = start_sandbox(
        tmp_path_factory,
        looker=LookerSettings(warehouse=warehouse, projects=[project], query_task_seconds=0.2),
    )
    admin = SandboxAdmin(running)
    admin.data_dir = data_dir
    api = LookerApi(admin)
    yield type("Env", (), {"admin": admin, "api": api, "warehouse": warehouse, "base": base, "project": project})
    api.http.close()
    admin.http.close()
    running.stop()


def sql(env, text: str) -> list[tuple]:
    con = duckdb.connect(str(env.warehouse), read_only=True)
    try:
        return con.execute(text).fetchall()
    finally:
        con.close()


ON = "d._company_id = l._company_id AND d.id = l.document_id"


# -- symmetric aggregates -------------------------------------------------------------------------


def test_the_document_total_stays_the_documents_total_with_their_lines_joined(env):
    [(truth, documents)] = sql(env, "SELECT sum(amount), count(*) FROM bc_sales_documents")
    [(fanned,)] = sql(env, f"SELECT sum(d.amount) FROM bc_sales_documents d JOIN bc_sales_document_lines l ON {ON}")
    [(line_total, lines)] = sql(env, "SELECT sum(line_amount), count(*) FROM bc_sales_document_lines")
    assert fanned != truth  # the join does fan out: a plain SUM would be wrong

    [row] = env.api.rows([f"{DOCS}.total_amount", f"{DOCS}.count", f"{LINES}.count", f"{LINES}.total_line_amount"])
    assert row == {
        f"{DOCS}.total_amount": truth,
        f"{DOCS}.count": documents,
        f"{LINES}.count": lines,
        f"{LINES}.total_line_amount": line_total,
    }
    assert isinstance(row[f"{DOCS}.total_amount"], Decimal) and row[f"{DOCS}.total_amount"].as_tuple().exponent == -9

    # Grouped by a line's item: each document counts once per item it has (documents without lines: null).
    by_item = env.api.rows([f"{LINES}.item", f"{DOCS}.total_amount", f"{DOCS}.count"])
    expected = sql(
        env,
        "SELECT l.item, sum(d.amount), count(*) FROM bc_sales_documents d LEFT JOIN "
        f"(SELECT DISTINCT _company_id, document_id, item FROM bc_sales_document_lines) l ON {ON} GROUP BY l.item",
    )
    assert {r[f"{LINES}.item"]: (r[f"{DOCS}.total_amount"], r[f"{DOCS}.count"]) for r in by_item} == {
        item: (total, count) for item, total, count in expected
    }

    # From the lines' side (many_to_one), the documents are the repeated rows: still each counted once.
    [from_lines] = env.api.rows([f"{DOCS}.total_amount", f"{LINES}.count"], view=LINES)
    [(with_lines,)] = sql(
        env, f"SELECT sum(d.amount) FROM bc_sales_documents d WHERE EXISTS (SELECT 1 FROM bc_sales_document_lines l "
        f"WHERE {ON})",
    )  # fmt: skip
    assert from_lines == {f"{DOCS}.total_amount": with_lines, f"{LINES}.count": lines}


def test_only_the_joins_a_query_needs_are_made(env):
    # No field of the lines: no join, so documents without lines count (and the SQL has no JOIN).
    [row] = env.api.rows([f"{DOCS}.count"])
    assert row[f"{DOCS}.count"] == 60
    [row] = env.api.rows([f"{LINES}.count"])  # a documents explore counting lines: no document counts as one
    assert row[f"{LINES}.count"] == sql(env, "SELECT count(*) FROM bc_sales_document_lines")[0][0]


# -- timeframes -------------------------------------------------------------------------------------


def test_a_month_timeframe_groups_the_documents_by_month(env):
    rows = env.api.rows(
        [f"{DOCS}.posting_month", f"{DOCS}.total_amount", f"{DOCS}.count", f"{LINES}.count"],
        sorts=[f"{DOCS}.posting_month"],
    )
    expected = sql(
        env,
        "SELECT strftime(d.posting_date, '%Y-%m') AS m, sum(d.amount), count(*) FROM bc_sales_documents d "
        "GROUP BY m ORDER BY m",
    )
    assert [(r[f"{DOCS}.posting_month"], r[f"{DOCS}.total_amount"], r[f"{DOCS}.count"]) for r in rows] == expected
    assert [r[f"{DOCS}.posting_month"] for r in rows] == ["2026-01", "2026-02", "2026-03"]

    [one] = env.api.rows(
        [f"{DOCS}.{f}" for f in ("posting_date", "posting_week", "posting_quarter", "posting_year", "modified_time",
                                 "modified_date", "modified_month")],
        filters={f"{DOCS}.id": "D004", f"{DOCS}._company_id": COMPANIES[0]},
    )  # fmt: skip
    # D004 of the first company: posted 2026-01-29 (a Thursday), modified 2026-01-07 08:04:00 + 148 h.
    assert one == {
        f"{DOCS}.posting_date": "2026-01-29",
        f"{DOCS}.posting_week": "2026-01-26",  # weeks start on Monday
        f"{DOCS}.posting_quarter": "2026-Q1",
        f"{DOCS}.posting_year": 2026,
        f"{DOCS}.modified_time": "2026-01-07 12:04:00",
        f"{DOCS}.modified_date": "2026-01-07",
        f"{DOCS}.modified_month": "2026-01",
    }


# -- filters -----------------------------------------------------------------------------------------


def test_filters_narrow_rows_and_groups(env):
    [row] = env.api.rows(
        [f"{DOCS}.total_amount", f"{DOCS}.count"],
        filters={f"{DOCS}.customer": "Adatum", f"{DOCS}.posting_date": "2026/02/01 to 2026/03/01"},
    )
    [(total, count)] = sql(
        env,
        "SELECT sum(amount), count(*) FROM bc_sales_documents WHERE customer = 'Adatum' "
        "AND posting_date >= DATE '2026-02-01' AND posting_date < DATE '2026-03-01'",
    )
    assert row == {f"{DOCS}.total_amount": total, f"{DOCS}.count": count} and count > 0

    # A filter on a line's field joins the lines: the documents having such a line, each once.
    [row] = env.api.rows([f"{DOCS}.total_amount"], filters={f"{LINES}.item": "A-100"})
    [(total,)] = sql(
        env, f"SELECT sum(d.amount) FROM bc_sales_documents d WHERE EXISTS (SELECT 1 FROM bc_sales_document_lines l "
        f"WHERE {ON} AND l.item = 'A-100')",
    )  # fmt: skip
    assert row[f"{DOCS}.total_amount"] == total

    # yesno filters, a measure's own filters, a number measure over measures, a month and a year filter.
    [row] = env.api.rows([f"{DOCS}.total_amount", f"{DOCS}.open_amount", f"{DOCS}.open_share"])
    [(open_total,)] = sql(env, "SELECT sum(amount) FROM bc_sales_documents WHERE status = 'Open'")
    assert row[f"{DOCS}.open_amount"] == open_total
    assert float(row[f"{DOCS}.open_share"]) == pytest.approx(float(open_total / row[f"{DOCS}.total_amount"]))
    [row] = env.api.rows([f"{DOCS}.total_amount"], filters={f"{DOCS}.is_open": "Yes"})
    assert row[f"{DOCS}.total_amount"] == open_total
    [row] = env.api.rows([f"{DOCS}.count"], filters={f"{DOCS}.posting_month": "2026-02"})
    assert (
        row[f"{DOCS}.count"] == sql(env, "SELECT count(*) FROM bc_sales_documents WHERE month(posting_date) = 2")[0][0]
    )
    [row] = env.api.rows([f"{DOCS}.count"], filters={f"{DOCS}.posting_year": "2026"})
    assert row[f"{DOCS}.count"] == 60
    [row] = env.api.rows([f"{DOCS}.count"], filters={f"{DOCS}.customer": "-Adatum,-Trey"})
    assert row[f"{DOCS}.count"] == 20

    # A filter on a measure filters the groups (HAVING), computed with the symmetric total.
    rows = env.api.rows(
        [f"{DOCS}.customer", f"{DOCS}.total_amount", f"{LINES}.count"],
        filters={f"{DOCS}.total_amount": ">33000"},
        sorts=[f"{DOCS}.customer"],
    )
    expected = sql(
        env,
        "SELECT customer, sum(amount) AS t FROM bc_sales_documents GROUP BY customer HAVING t > 33000 ORDER BY 1",
    )
    assert 0 < len(expected) < 3
    assert [(r[f"{DOCS}.customer"], r[f"{DOCS}.total_amount"]) for r in rows] == expected


# -- refusals, metadata, saved queries ----------------------------------------------------------------


def test_unknown_fields_explores_and_models_are_refused_as_looker_refuses_them(env):
    response = env.api.run([f"{DOCS}.customer", f"{DOCS}.nope"])
    assert response.status_code == 422
    body = response.json()
    assert body["message"] == "Validation Failed"
    assert body["errors"][0]["field"] == "fields"
    assert f"Unknown field '{DOCS}.nope' in explore '{DOCS}'" in body["errors"][0]["message"]

    response = env.api.http.post("/queries", json={"model": MODEL, "view": DOCS, "fields": [f"{DOCS}.nope"]})
    assert response.status_code == 422
    response = env.api.run([f"{DOCS}.count"], filters={f"{LINES}.nope": "x"})
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "filters"

    response = env.api.run([f"{DOCS}.count"], view="nope")
    assert response.status_code == 404
    assert "Explore 'nope' not found in model 'sales'" in response.json()["message"]
    response = env.api.run([f"{DOCS}.count"], model="nope")
    assert response.status_code == 404
    assert "mlconnector_demo, sales" in response.json()["message"]
    assert set(response.json()) == {"message", "documentation_url"}


def test_the_explore_describes_the_projects_fields_and_joins(env):
    from ..flows.test_looker import validate_response

    spec = json.loads((Path(__file__).parents[1] / "specs" / "looker-api-4.0.oas.json").read_text())
    response = env.api.http.get(f"/lookml_models/{MODEL}/explores/{DOCS}")
    assert validate_response(spec, response) == "/lookml_models/{lookml_model_name}/explores/{explore_name}"
    explore = response.json()
    assert explore["label"] == "Sales documents" and explore["connection_name"] == "warehouse"
    assert [(j["name"], j["relationship"]) for j in explore["joins"]] == [(LINES, "one_to_many")]
    dimensions = {f["name"]: f for f in explore["fields"]["dimensions"]}
    assert dimensions[f"{DOCS}.pk"]["primary_key"] and dimensions[f"{DOCS}.pk"]["hidden"]
    month = dimensions[f"{DOCS}.posting_month"]
    assert (month["type"], month["dimension_group"], month["label_short"]) == ("date_month", "posting", "Posting Month")
    assert dimensions[f"{DOCS}.customer"]["description"] == "Sell-to customer"
    assert f"{LINES}.item" in dimensions
    assert {f["name"] for f in explore["fields"]["measures"]} >= {f"{DOCS}.total_amount", f"{LINES}.count"}


def test_a_saved_query_runs_as_csv_and_as_a_query_task(env):
    fields = [f"{DOCS}.posting_month", f"{DOCS}.total_amount"]
    query = env.api.http.post(
        "/queries", json={"model": MODEL, "view": DOCS, "fields": fields, "sorts": [f"{DOCS}.posting_month"]}
    ).json()
    csv = env.api.http.get(f"/queries/{query['id']}/run/csv").text.splitlines()
    assert csv[0] == "Sales Documents Posting Month,Sales Documents Total Amount"
    assert csv[1].startswith("2026-01,") and len(csv) == 4

    task = env.api.http.post("/query_tasks", json={"query_id": query["id"], "result_format": "json"}).json()
    deadline = time.monotonic() + 10
    while (results := env.api.http.get(f"/query_tasks/{task['id']}/results")).status_code == 202:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert results.status_code == 200
    assert [r[f"{DOCS}.posting_month"] for r in results.json()] == ["2026-01", "2026-02", "2026-03"]


# -- loading ------------------------------------------------------------------------------------------


KEYLESS = """
view: documents_without_key {
  sql_table_name: "bc_sales_documents" ;;
  dimension: id { sql: ${TABLE}."id" ;; }
  dimension: _company_id { sql: ${TABLE}."_company_id" ;; }
  measure: total_amount { type: sum sql: ${TABLE}."amount" ;; }
}
"""


def test_a_project_loads_reloads_refuses_its_problems_and_is_dropped_by_a_reset(env):
    other = write_project(env.base / "other", model="sales_copy", extra_view=KEYLESS)
    with (other / "sales_copy.model.lkml").open("a") as model:
        model.write(
            "explore: documents_without_key {\n  join: sales_document_lines {\n    relationship: one_to_many\n"
            "    sql_on: ${documents_without_key.id} = ${sales_document_lines.document_id} ;;\n  }\n}\n"
        )
    loaded = env.admin.http.post("/_sandbox/looker/projects", json={"path": str(other)})
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["models"][0]["name"] == "sales_copy"
    [row] = env.api.rows([f"{DOCS}.count"], model="sales_copy")
    assert row[f"{DOCS}.count"] == 60

    # Without a primary key, a measure whose rows the join repeats is refused; alone it is computed.
    [row] = env.api.rows(["documents_without_key.total_amount"], model="sales_copy", view="documents_without_key")
    assert row["documents_without_key.total_amount"] == sql(env, "SELECT sum(amount) FROM bc_sales_documents")[0][0]
    refused = env.api.run(
        ["documents_without_key.total_amount", f"{LINES}.count"], model="sales_copy", view="documents_without_key"
    )
    assert refused.status_code == 400 and "no primary_key" in refused.json()["message"]

    # A reload reads the files again.
    lines_view = other / "views" / "sales_document_lines.view.lkml"
    lines_view.write_text(LINES_VIEW.replace("measure: count", "measure: lines { type: count }\n  measure: count"))
    assert env.admin.http.post("/_sandbox/looker/projects", json={"path": str(other)}).status_code == 200
    assert env.api.rows([f"{LINES}.lines"], model="sales_copy")[0][f"{LINES}.lines"] > 0

    # A project with problems is refused whole, each problem named with its file; what was loaded stays.
    lines_view.write_text(LINES_VIEW.replace("type: count", "type: running_total"))
    (other / "views" / "broken.view.lkml").write_text("view: broken { dimension: x { sql: 1 ;; }")
    refused = env.admin.http.post("/_sandbox/looker/projects", json={"path": str(other)})
    assert refused.status_code == 400
    problems = "\n".join(refused.json()["errors"])
    assert "broken.view.lkml: cannot parse LookML" in problems
    assert "lines.view.lkml: view 'sales_document_lines': measure 'count' has type running_total" in problems
    assert env.api.rows([f"{LINES}.lines"], model="sales_copy")
    (env.base / "empty").mkdir(exist_ok=True)
    with pytest.raises(LookmlError, match="holds no"):
        load_project(env.base / "empty")
    listed = env.admin.http.get("/_sandbox/looker/projects").json()["projects"]
    assert {m["name"] for p in listed for m in p["models"]} == {"sales", "sales_copy"}

    # A reset drops what the admin API loaded and keeps the settings' projects.
    env.admin.reset()
    env.api.login()
    assert env.api.run([f"{DOCS}.count"], model="sales_copy").status_code == 404
    assert env.api.rows([f"{DOCS}.count"])[0][f"{DOCS}.count"] == 60
    shutil.rmtree(other)
