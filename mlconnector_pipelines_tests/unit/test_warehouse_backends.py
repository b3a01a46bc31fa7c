"""One behaviour suite for every warehouse backend: DuckDB, Snowflake (through fakesnow) and BigQuery
(the official client against a local fake of its REST API).

Each test runs against each backend: window replacement, a failed load leaving the old window
intact, schema evolution, timezone handling, snapshots, and the Business Central flow end to end.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import dagster as dg
import lkml
import pandas as pd
import pytest

from mlconnector_pipelines.config import parse_config, sandbox_profile
from mlconnector_pipelines.core.errors import RecordError
from mlconnector_pipelines.lookml import build_project
from mlconnector_pipelines.warehouse.base import Deletion, ReplaceScope
from mlconnector_pipelines.warehouse.resource import WarehouseResource
from mlconnector_pipelines.warehouse.schema import ColumnType as T
from mlconnector_pipelines.warehouse.schema import TableSpec

from ..conftest import FAST_HTTP, HISTORY_START, run_bc_job
from ..fakes.bigquery import running_fake_bigquery

UTC = UTC
DAY = datetime(2026, 3, 1, tzinfo=UTC)
NEXT = datetime(2026, 3, 2, tzinfo=UTC)
AFTER = datetime(2026, 3, 3, tzinfo=UTC)
PARENT = TableSpec(
    "docs",
    ("_company_id", "doc_entry"),
    "modified",
    {"doc_entry": T.INTEGER, "modified": T.TIMESTAMP, "amount": T.DECIMAL, "posted": T.DATE},
)
LINES = TableSpec("doc_lines", ("_company_id", "_parent_id", "line_num"), None, {"line_num": T.INTEGER}, parent=PARENT)
BACKENDS = ["duckdb", "snowflake", "bigquery"]


@pytest.fixture(scope="module")
def fake_bigquery():
    with running_fake_bigquery() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def backend_settings(request, tmp_path, monkeypatch, fake_bigquery):
    """connector.yaml `warehouse:` settings for each backend, each with an empty warehouse."""
    if request.param == "duckdb":
        yield {"backend": "duckdb", "duckdb_path": str(tmp_path / "w.duckdb")}
    elif request.param == "snowflake":
        import fakesnow

        monkeypatch.setenv("SNOWFLAKE_TEST_PASSWORD", "fake-password")
        with fakesnow.patch():
            yield {
                "backend": "snowflake",
                "snowflake": {
                    "account": "acme-test",
                    "user": "LOADER",
                    "password": {"env": "SNOWFLAKE_TEST_PASSWORD"},
                    "database": "ANALYTICS",
                    "schema": "ERP",
                    "warehouse": "LOAD_WH",
                },
            }
    else:
        yield {
            "backend": "bigquery",
            "bigquery": {"project": "acme-test", "dataset": f"erp_{tmp_path.name[-8:]}", "api_endpoint": fake_bigquery},
        }


@pytest.fixture
def warehouse(backend_settings, tmp_path):
    cfg = parse_config({"profile": "sandbox", "data_dir": str(tmp_path), "warehouse": backend_settings})
    return WarehouseResource.from_config(cfg).process_config_and_initialize().open()


# Amounts a double cannot hold: 20 and 18 significant digits, and the smallest step DECIMAL(38, 9) keeps.
AMOUNTS = [Decimal("12345678901.234567891"), Decimal("1000000000000000.01"), Decimal("0.000000001")]


def docs(company, entries, modified="2026-03-01T10:00:00.000Z", window=DAY, **extra):
    amounts = [AMOUNTS[i % len(AMOUNTS)] for i in range(len(entries))]
    frame = pd.DataFrame(
        {
            "doc_entry": entries,
            "modified": modified,
            "amount": amounts,
            "posted": [date(2026, 3, 1)] * len(entries),
            **extra,
        }
    )
    frame["_version_id"] = frame["doc_entry"].astype(str) + "@" + modified
    return _meta(frame, company, window)


def lines(company, parent, count, modified="2026-03-01T10:00:00.000Z", window=DAY):
    frame = pd.DataFrame({"line_num": list(range(count))})
    frame["_parent_id"] = str(parent)
    frame["_parent_version_id"] = f"{parent}@{modified}"
    return _meta(frame, company, window)


def _meta(frame, company, window):
    frame["_company_id"] = company
    frame["_company_name"] = company
    frame["_window_start"] = window
    frame["_extracted_at"] = datetime.now(UTC)
    frame["_run_id"] = "run"
    return frame


def table(warehouse, name: str) -> pd.DataFrame:
    return warehouse.read_table(name)


def counts(warehouse, name: str) -> dict:
    frame = table(warehouse, name)
    return frame.groupby("_company_id").size().to_dict() if len(frame) else {}


def test_same_document_key_in_two_companies_keeps_each_companys_lines(warehouse):
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A", "B"), DAY, NEXT)) as load:
        load.write(PARENT, pd.concat([docs("A", [5]), docs("B", [5])]))
        load.write(LINES, pd.concat([lines("A", 5, 2), lines("B", 5, 3)]))
    assert counts(warehouse, "doc_lines") == {"A": 2, "B": 3}
    later = "2026-03-02T15:00:00.000Z"
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), NEXT, AFTER)) as load:
        load.write(PARENT, docs("A", [5], modified=later, window=NEXT))
        load.write(LINES, lines("A", 5, 1, modified=later, window=NEXT))
    assert counts(warehouse, "doc_lines") == {"A": 1, "B": 3}
    assert counts(warehouse, "docs_changes") == {"A": 2, "B": 1}  # every version kept
    assert warehouse.duplicate_keys(PARENT) == 0


def test_current_state_keeps_the_latest_version_whichever_window_is_loaded_last(warehouse):
    later, latest = "2026-03-02T15:00:00.000Z", "2026-03-03T09:00:00.000Z"
    day = ReplaceScope(("A",), DAY, NEXT)
    with warehouse.replace_windows([PARENT, LINES], day) as load:
        load.write(PARENT, docs("A", [1, 2]))
        load.write(LINES, pd.concat([lines("A", 1, 2), lines("A", 2, 1)]))
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), NEXT, AFTER)) as load:
        load.write(PARENT, docs("A", [1], modified=later, window=NEXT))
        load.write(LINES, lines("A", 1, 3, modified=later, window=NEXT))
    # The first window again, still holding document 1's older version: the later one stays current.
    with warehouse.replace_windows([PARENT, LINES], day) as load:
        load.write(PARENT, docs("A", [1, 2]))
        load.write(LINES, pd.concat([lines("A", 1, 2), lines("A", 2, 1)]))
    current = table(warehouse, "docs").set_index(table(warehouse, "docs")["doc_entry"].astype(int))
    assert current["_version_id"].to_dict() == {1: f"1@{later}", 2: "2@2026-03-01T10:00:00.000Z"}
    assert table(warehouse, "doc_lines").groupby("_parent_id").size().to_dict() == {"1": 3, "2": 1}
    # One window serving a document twice (changed while it was read): the newest version wins.
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), AFTER, AFTER + timedelta(days=1))) as load:
        load.write(
            PARENT,
            pd.concat([docs("A", [2], modified=later, window=AFTER), docs("A", [2], modified=latest, window=AFTER)]),
        )
        load.write(
            LINES,
            pd.concat(
                [lines("A", 2, 1, modified=later, window=AFTER), lines("A", 2, 4, modified=latest, window=AFTER)]
            ),
        )
    current = table(warehouse, "docs")
    assert sorted(current["_version_id"]) == [f"1@{later}", f"2@{latest}"]
    assert table(warehouse, "doc_lines").groupby("_parent_id").size().to_dict() == {"1": 3, "2": 4}
    assert warehouse.duplicate_keys(PARENT) == 0
    assert len(table(warehouse, "docs_changes")) == 5  # every version kept


def test_a_window_read_again_with_fewer_columns_leaves_a_later_version_whole(warehouse):
    """Document 1 changed past the first window, which is then read again and brings nothing (or only document 2,
    without the field document 1's later version has): the later version is copied back into current state
    whole. It was copied with this load's columns only: every other field of it, and its lines', became NULL."""
    later = "2026-03-02T15:00:00.000Z"
    day = ReplaceScope(("A",), DAY, NEXT)
    with warehouse.replace_windows([PARENT, LINES], day) as load:
        load.write(PARENT, docs("A", [1]))
        load.write(LINES, lines("A", 1, 2))
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), NEXT, AFTER)) as load:
        load.write(PARENT, docs("A", [1], modified=later, window=NEXT, note=["kept"]))
        load.write(LINES, lines("A", 1, 3, modified=later, window=NEXT))
    for again in ([], [2]):  # nothing in the window any more; only a document without the field
        with warehouse.replace_windows([PARENT, LINES], day) as load:
            if again:
                load.write(PARENT, docs("A", again).drop(columns=["amount"]))
        current = table(warehouse, "docs").set_index(table(warehouse, "docs")["doc_entry"].astype(int))
        assert current.loc[1, "_version_id"] == f"1@{later}"
        assert (current.loc[1, "note"], Decimal(str(current.loc[1, "amount"]))) == ("kept", AMOUNTS[0])
        assert str(current.loc[1, "posted"])[:10] == "2026-03-01"
        held = table(warehouse, "doc_lines")
        assert sorted(held[held["_parent_id"] == "1"]["line_num"].astype(int)) == [0, 1, 2]


@pytest.mark.parametrize("between", ["a_newer_version", "a_deletion"])
def test_what_another_run_commits_between_a_swaps_prepare_and_its_transaction_is_kept(tmp_path, between):
    """On Snowflake and BigQuery two runs may swap one table at once (a schedule beside a backfill): the keys with
    several versions were counted before the transaction, so a newer version committed meanwhile put its key in
    current state twice, and a deletion committed meanwhile was undone. Run here on DuckDB with the SQL those
    warehouses get, the other run's commit placed where their sessions allow it."""
    from mlconnector_pipelines.warehouse import duckdb_backend
    from mlconnector_pipelines.warehouse.duckdb_backend import DuckDBWarehouse
    from mlconnector_pipelines.warehouse.sql_warehouse import SqlDialect

    class InterleavingDialect(SqlDialect):
        one_swap_at_a_time = False

    path = tmp_path / "w.duckdb"
    warehouse, other = DuckDBWarehouse(path), DuckDBWarehouse(path)
    warehouse.dialect = other.dialect = InterleavingDialect()
    day = ReplaceScope(("A",), DAY, NEXT)
    with warehouse.replace_windows([PARENT, LINES], day) as load:
        load.write(PARENT, docs("A", [5, 6]))
    begin, fired = duckdb_backend._DuckDBSession.transaction, []

    def other_run_commits_first(session):
        if not fired:
            fired.append(1)
            if between == "a_newer_version":
                with other.replace_windows([PARENT, LINES], ReplaceScope(("A",), NEXT, AFTER)) as load:
                    load.write(PARENT, docs("A", [5], modified="2026-03-02T10:00:00.000Z", window=NEXT))
            else:  # (DuckDB opens no read-only connection beside an open one: its reads are answered here)
                other.table_exists, other._held = (lambda name: True), (lambda *args: [])
                other.delete_records([PARENT, LINES], {"id": "A", "name": "A"},
                                     [Deletion("5", datetime(2026, 3, 1, 12, tzinfo=UTC), DAY)], "reconcile")  # fmt: skip
        return begin(session)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(duckdb_backend._DuckDBSession, "transaction", other_run_commits_first)
        with warehouse.replace_windows([PARENT, LINES], day) as load:  # the first window read again
            load.write(PARENT, docs("A", [5, 6]))
    assert fired and warehouse.duplicate_keys(PARENT) == 0
    from mlconnector_pipelines.warehouse.bigquery_backend import BigQueryDialect
    from mlconnector_pipelines.warehouse.snowflake_backend import SnowflakeDialect

    assert not SnowflakeDialect.one_swap_at_a_time and not BigQueryDialect.one_swap_at_a_time  # they get this SQL
    held = table(warehouse, "docs").set_index(table(warehouse, "docs")["doc_entry"].astype(int))["_version_id"]
    if between == "a_newer_version":
        assert held.to_dict() == {5: "5@2026-03-02T10:00:00.000Z", 6: "6@2026-03-01T10:00:00.000Z"}
    else:
        assert held.to_dict() == {6: "6@2026-03-01T10:00:00.000Z"}  # 5 stays ended


def test_a_window_of_many_pages_is_loaded_into_bigquery_by_one_load_job(warehouse, backend_settings):
    """A load job per staged file (a page of a company) ran into BigQuery's 1,500 load jobs per table per day on a
    long backfill. The jobs BigQuery lists (jobs.list, read with the official client) show one per stage."""
    if backend_settings["backend"] != "bigquery":
        pytest.skip("BigQuery's load jobs")
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), DAY, NEXT)) as load:
        for page in range(5):
            load.write(PARENT, docs("A", [page * 10 + n for n in range(3)]))
            load.write(LINES, lines("A", page * 10, 2))
    dataset = backend_settings["bigquery"]["dataset"]  # (the fake serves the module's other tests too)
    loads = [j for j in warehouse.client.list_jobs() if j.job_type == "load" and j.destination.dataset_id == dataset]
    assert sorted(job.destination.table_id.rsplit("_", 1)[0] for job in loads) == ["_stage_doc_lines", "_stage_docs"]
    assert len(table(warehouse, "docs")) == 15 and len(table(warehouse, "doc_lines")) == 10


def test_a_document_version_read_twice_in_a_window_keeps_each_line_once(warehouse):
    """A source repeating a record while it pages brings one version of a document twice: the document was kept
    once, but every line of it twice."""
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), DAY, NEXT)) as load:
        for _ in range(2):
            load.write(PARENT, docs("A", [5]))
            load.write(LINES, lines("A", 5, 2))
    assert warehouse.duplicate_keys(PARENT) == warehouse.duplicate_keys(LINES) == 0
    assert sorted(table(warehouse, "doc_lines")["line_num"].astype(int)) == [0, 1]


def test_a_field_that_is_empty_in_the_first_window_is_typed_by_its_first_values(warehouse):
    """A field a customer added, empty everywhere in the first window loaded: made a text column from Arrow's
    null type, it stayed text when amounts came (and on BigQuery every later load failed: NUMERIC beside STRING)."""
    later = "2026-03-02T15:00:00.000Z"
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), DAY, NEXT)) as load:
        load.write(PARENT, docs("A", [1], extra=[None]))
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), NEXT, AFTER)) as load:
        load.write(PARENT, docs("A", [2], modified=later, window=NEXT, extra=[Decimal("12345678901.234567891")]))
    assert warehouse.column_types("docs")["extra"] == T.DECIMAL
    held = table(warehouse, "docs").set_index(table(warehouse, "docs")["doc_entry"].astype(int))["extra"]
    assert pd.isna(held[1]) and Decimal(str(held[2])) == Decimal("12345678901.234567891")


def test_a_column_an_earlier_release_typed_otherwise_keeps_its_type_and_takes_the_new_values(warehouse):
    """A business date an earlier release inferred as a timestamp (Acumatica's `Date`, now declared a DATE) keeps
    its column type: the batch is staged in it. Staged as a DATE, BigQuery refused every later load of the table
    (a DATE cannot be inserted into a TIMESTAMP column), and the fake now refuses it as BigQuery does."""
    from dataclasses import replace as copy

    earlier = copy(PARENT, types={**PARENT.types, "due": T.TIMESTAMP})
    now = copy(PARENT, types={**PARENT.types, "due": T.DATE})
    with warehouse.replace_windows([earlier, LINES], ReplaceScope(("A",), DAY, NEXT)) as load:
        load.write(earlier, docs("A", [1], due=["2026-03-01T00:00:00+00:00"]))
    with warehouse.replace_windows([now, LINES], ReplaceScope(("A",), NEXT, AFTER)) as load:
        load.write(now, docs("A", [2], modified="2026-03-02T10:00:00.000Z", window=NEXT, due=[date(2026, 3, 2)]))
    assert warehouse.column_types("docs")["due"] == T.TIMESTAMP
    held = table(warehouse, "docs").set_index(table(warehouse, "docs")["doc_entry"].astype(int))["due"]
    assert [pd.Timestamp(held[n]).tz_localize(None) if pd.Timestamp(held[n]).tzinfo is None else
            pd.Timestamp(held[n]).tz_convert(None) for n in (1, 2)] == [
        pd.Timestamp("2026-03-01"), pd.Timestamp("2026-03-02")]  # fmt: skip


def test_replacing_a_window_replaces_exactly_its_rows(warehouse):
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A", "B"), DAY, NEXT)) as load:
        load.write(PARENT, pd.concat([docs("A", [1, 2]), docs("B", [1])]))
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), DAY, NEXT)) as load:
        load.write(PARENT, docs("A", [3]))
    current = table(warehouse, "docs").sort_values(["_company_id", "doc_entry"])
    assert list(zip(current["_company_id"], current["doc_entry"].astype(int), strict=True)) == [("A", 3), ("B", 1)]
    assert warehouse.loaded_from(PARENT, "A") == DAY


def test_a_failed_load_leaves_the_old_window_intact(warehouse):
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), DAY, NEXT)) as load:
        load.write(PARENT, docs("A", [1, 2]))
        load.write(LINES, lines("A", 1, 2))
    with pytest.raises(RuntimeError, match="source went away"):
        with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), DAY, NEXT)) as load:
            load.write(PARENT, docs("A", [7]))
            raise RuntimeError("source went away mid-window")
    # A bad value fails the swap itself (the cast), before anything is committed, and is named.
    with pytest.raises(
        RecordError,
        match=r"docs\.amount: 'not a number' is not a valid decimal .*doc_entry 8.* "
        r"company A, window starting 2026-03-01",
    ):
        with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), DAY, NEXT)) as load:
            load.write(PARENT, docs("A", [8], amount=["not a number"]))
    assert sorted(table(warehouse, "docs")["doc_entry"].astype(int)) == [1, 2]
    assert len(table(warehouse, "docs_changes")) == 2 and len(table(warehouse, "doc_lines")) == 2


def test_amounts_a_double_cannot_hold_land_exactly_in_a_decimal_38_9_column(warehouse, backend_settings):
    with warehouse.replace_windows([PARENT], ReplaceScope(("A",), DAY, NEXT)) as load:
        load.write(PARENT, docs("A", [1, 2, 3]))
    current = table(warehouse, "docs").sort_values("doc_entry")
    assert [Decimal(str(v)) for v in current["amount"]] == AMOUNTS
    assert all(isinstance(v, Decimal) for v in current["amount"])  # what downstream steps read is exact too
    assert (
        _amount_column_type(warehouse, backend_settings["backend"])
        == {"duckdb": "DECIMAL(38,9)", "snowflake": "NUMBER(38,9)", "bigquery": "NUMERIC(38,9)"}[
            backend_settings["backend"]
        ]
    )


def _amount_column_type(warehouse, backend: str) -> str:
    if backend == "bigquery":
        field = next(
            f
            for f in warehouse.client.get_table(f"{warehouse.cfg.project}.{warehouse.cfg.dataset}.docs").schema
            if f.name == "amount"
        )
        # Plain NUMERIC is BigQuery's DECIMAL(38, 9), so the API reports no precision for it.
        return (
            f"{field.field_type}({field.precision or 38},{field.scale or 9})"
            if field.field_type == "NUMERIC"
            else field.field_type
        )
    if backend == "snowflake":
        kind, precision, scale = warehouse.query(
            "SELECT data_type, numeric_precision, numeric_scale FROM information_schema.columns "
            "WHERE table_name = 'DOCS' AND column_name = 'AMOUNT'"
        )[0]
        return f"{kind}({precision},{scale})"
    return warehouse.query(
        "SELECT data_type FROM information_schema.columns WHERE table_name = 'docs' AND column_name = 'amount'"
    )[0][0].replace(" ", "")


def test_a_new_source_field_becomes_a_new_column(warehouse):
    with warehouse.replace_windows([PARENT], ReplaceScope(("A",), DAY, NEXT)) as load:
        load.write(PARENT, docs("A", [1]))
    with warehouse.replace_windows([PARENT], ReplaceScope(("A",), NEXT, AFTER)) as load:
        load.write(PARENT, docs("A", [2], modified="2026-03-02T09:00:00.000Z", window=NEXT, region=["EU"]))
    current = table(warehouse, "docs").sort_values("doc_entry")
    assert "region" in current.columns
    assert [None if pd.isna(v) else v for v in current["region"]] == [None, "EU"]


def test_a_new_numeric_field_whose_first_batch_is_whole_keeps_later_fractions(warehouse):
    """Typed from its first batch (whole numbers), a new field would be an integer column, and 12500.5 or
    0.00000015 in a later batch would lose their fractions. An undeclared number is an exact decimal."""
    with warehouse.replace_windows([PARENT], ReplaceScope(("A",), DAY, NEXT)) as load:
        load.write(PARENT, docs("A", [1], credit_limit=[50000]))
        load.write(PARENT, docs("A", [2], credit_limit=[12500.5]))
        load.write(PARENT, docs("A", [3], credit_limit=[0.00000015]))
    current = table(warehouse, "docs").sort_values("doc_entry")
    assert [Decimal(str(v)) for v in current["credit_limit"]] == [Decimal("50000"), Decimal("12500.5"),
                                                                  Decimal("0.00000015")]  # fmt: skip


def test_timestamps_are_stored_in_utc_without_shifting(warehouse):
    # 01:30 at +02:00 is 23:30 UTC the day before: it belongs to the earlier UTC window.
    with warehouse.replace_windows([PARENT], ReplaceScope(("A",), DAY - timedelta(days=1), NEXT)) as load:
        load.write(PARENT, docs("A", [1], modified="2026-03-01T01:30:00.000+02:00", window=DAY - timedelta(days=1)))
        load.write(PARENT, docs("A", [2], modified="2026-03-01T00:00:00.000Z"))
    current = table(warehouse, "docs").sort_values("doc_entry")
    moments = [
        pd.Timestamp(v).tz_localize(UTC) if pd.Timestamp(v).tzinfo is None else pd.Timestamp(v).tz_convert(UTC)
        for v in current["modified"]
    ]
    assert moments == [pd.Timestamp("2026-02-28T23:30:00Z"), pd.Timestamp("2026-03-01T00:00:00Z")]
    assert warehouse.current_count(PARENT, "A", DAY, NEXT) == 1  # the midnight row, exactly at the boundary
    assert [Decimal(str(v)) for v in current["amount"]] == [AMOUNTS[0], AMOUNTS[0]]
    assert [pd.Timestamp(v).date() for v in current["posted"]] == [date(2026, 3, 1)] * 2


def test_a_snapshot_window_is_replaced_whole(warehouse):
    spec = TableSpec("looker_summary", (), None, {"account": T.STRING, "net": T.DECIMAL}, snapshot=True)

    def rows(window, values):
        return pd.DataFrame(
            {
                "account": [a for a, _ in values],
                "net": [n for _, n in values],
                "_window_start": window,
                "_extracted_at": datetime.now(UTC),
                "_run_id": "r",
                "_source": "looker api",
            }
        )

    for window, values in ((DAY, [("1000", 5.0), ("2000", -5.0)]), (NEXT, [("1000", 1.0)]), (DAY, [("3000", 2.5)])):
        with warehouse.replace_snapshot(spec, window) as load:
            load.write(spec, rows(window, values))
    snapshot = table(warehouse, "looker_summary").sort_values("account")
    assert list(snapshot["account"]) == ["1000", "3000"]
    assert len(warehouse.read_table("looker_summary", (DAY, NEXT))) == 1


def test_keys_holding_backslashes_quotes_and_line_breaks_are_deleted_as_they_are(warehouse):
    """Snowflake reads backslash escapes inside quotes: `TOOLS\\DRILL` was deleted as `TOOLSDRILL` (missed, for
    good); BigQuery takes no raw line break in a quoted string. Free-text keys (SAP item codes) hold both."""
    spec = TableSpec("sales_things", ("thingid",), None, {"thingid": T.STRING, "amount": T.DECIMAL}, snapshot=True)
    keys = ["TOOLS\\DRILL", "trailing\\", "it's", "two\nlines", "kept"]
    frame = pd.DataFrame(
        {"thingid": keys, "amount": [Decimal(1)] * len(keys), "_window_start": None,
         "_extracted_at": datetime.now(UTC), "_run_id": "r", "_source": "change tracking"}
    )  # fmt: skip
    with warehouse.apply_changes(spec, deleted=[], full=True) as load:
        load.write(spec, frame)
    with warehouse.apply_changes(spec, deleted=keys[:-1], full=False):
        pass
    assert list(table(warehouse, "sales_things")["thingid"]) == ["kept"]


def test_a_whole_number_beside_a_missing_one_lands_exactly(warehouse):
    """Staged as text for the cloud warehouses, an integer column holding a null went through a float: 5 became
    `5.0` (which BigQuery's CAST to INT64 refuses) and 9007199254740993 became 9007199254740992."""
    spec = TableSpec("sales_things", ("thingid",), None, {"thingid": T.STRING, "base_entry": T.INTEGER}, snapshot=True)
    frame = pd.DataFrame(
        {"thingid": ["a", "b", "c"], "base_entry": pd.array([9007199254740993, None, 5], dtype="Int64"),
         "_window_start": None, "_extracted_at": datetime.now(UTC), "_run_id": "r", "_source": "change tracking"}
    )  # fmt: skip
    with warehouse.apply_changes(spec, deleted=[], full=True) as load:
        load.write(spec, frame)
    d = warehouse.dialect  # read as text: a frame would take the column through a float again
    held = warehouse.query(
        f"SELECT {d.column('thingid')}, CAST({d.column('base_entry')} AS {d.text}) FROM {d.table('sales_things')} "
        f"ORDER BY {d.column('thingid')}"
    )
    assert [v for _, v in held] == ["9007199254740993", None, "5"]


def test_changes_apply_by_key_and_deletions_leave_current_state(warehouse):
    """A change token's answer: changed rows replace theirs, deleted keys go, a full read replaces all."""
    spec = TableSpec("sales_things", ("thingid",), None, {"thingid": T.STRING, "amount": T.DECIMAL}, snapshot=True)

    def rows(values):
        return pd.DataFrame(
            {
                "thingid": [k for k, _ in values],
                "amount": [Decimal(a) for _, a in values],
                "_window_start": None,
                "_extracted_at": datetime.now(UTC),
                "_run_id": "r",
                "_source": "change tracking",
            }
        )

    def state():
        frame = table(warehouse, "sales_things").sort_values("thingid")
        return [(k, str(Decimal(str(a)).normalize())) for k, a in zip(frame["thingid"], frame["amount"], strict=True)]

    with warehouse.apply_changes(spec, deleted=[], full=True) as load:
        load.write(spec, rows([("a", "1.50"), ("b", "2"), ("c", "123456789012.3456")]))
    with warehouse.apply_changes(spec, deleted=["b", "never-there"], full=False) as load:
        load.write(spec, rows([("a", "7.25"), ("d", "4")]))
    assert state() == [("a", "7.25"), ("c", "123456789012.3456"), ("d", "4")]
    with warehouse.apply_changes(spec, deleted=["d"], full=False):
        pass  # only a deletion
    assert [k for k, _ in state()] == ["a", "c"]
    with warehouse.apply_changes(spec, deleted=[], full=True) as load:
        load.write(spec, rows([("z", "1")]))
    assert state() == [("z", "1")]
    with pytest.raises(RuntimeError), warehouse.apply_changes(spec, deleted=["z"], full=False) as load:
        load.write(spec, rows([("y", "1")]))
        raise RuntimeError("the read failed midway")
    assert state() == [("z", "1")]  # nothing applied


def test_a_far_future_or_far_past_moment_lands_as_it_is(warehouse):
    """Sales writes 9999-12-31 for "no end", and old records carry 1601 or 1900: outside pandas' nanosecond
    range (1677–2262), they still land, on every warehouse, as the moments they are."""
    spec = TableSpec("sales_terms", ("termid",), None, {"termid": T.STRING, "effectiveto": T.TIMESTAMP}, snapshot=True)
    stamps = ["9999-12-31T00:00:00Z", "1601-01-01T00:00:00Z", "2026-03-01T10:00:00.1234567Z"]
    frame = pd.DataFrame({"termid": ["a", "b", "c"], "effectiveto": stamps, "_window_start": None,
                          "_extracted_at": datetime.now(UTC), "_run_id": "r", "_source": "change tracking"})  # fmt: skip
    with warehouse.apply_changes(spec, deleted=[], full=True) as load:
        load.write(spec, frame)
    landed = table(warehouse, "sales_terms").sort_values("termid")["effectiveto"]
    assert warehouse.column_types("sales_terms")["effectiveto"] == T.TIMESTAMP  # a moment, not text that looks like one
    moments = [v if isinstance(v, datetime) else datetime.fromisoformat(str(v)) for v in landed]
    moments = [m.replace(tzinfo=UTC) if m.tzinfo is None else m.astimezone(UTC) for m in moments]
    assert [m.isoformat() for m in moments] == [
        "9999-12-31T00:00:00+00:00", "1601-01-01T00:00:00+00:00", "2026-03-01T10:00:00.123456+00:00"
    ]  # fmt: skip


def test_a_deleted_record_leaves_current_state_and_its_tombstone_outranks_any_reload(warehouse):
    """Same key in two companies; a window read before the deletion and committed after it; re-reads of
    the tombstone's window; the deletion applied twice; the key created again later (Acumatica reuses keys)."""
    company_a = {"id": "A", "name": "A"}
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A", "B"), DAY, NEXT)) as load:
        load.write(PARENT, pd.concat([docs("A", [1, 2]), docs("B", [1])]))
        load.write(LINES, pd.concat([lines("A", 1, 2), lines("A", 2, 1), lines("B", 1, 3)]))
    gone = Deletion("1", deleted_at=NEXT + timedelta(hours=3), window_start=NEXT)
    assert warehouse.delete_records([PARENT, LINES], company_a, [gone, Deletion("99", NEXT, NEXT)], "run-d") == ["1"]

    def current():
        frame = table(warehouse, "docs")
        return sorted(zip(frame["_company_id"], frame["doc_entry"].astype(int), strict=True))

    def tombstones():
        frame = table(warehouse, "docs_changes")
        dead = frame[frame["_deleted"].astype("boolean").fillna(False)]
        return sorted(zip(dead["_company_id"], dead["doc_entry"].astype(int), dead["_window_start"], strict=True))

    assert current() == [("A", 2), ("B", 1)]
    assert table(warehouse, "doc_lines").groupby("_company_id").size().to_dict() == {"A": 1, "B": 3}
    assert [(c, k) for c, k, _ in tombstones()] == [("A", 1), ("A", 99)]
    # A window read before the deletion commits after it: the tombstone is newer, the record stays out.
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), DAY, NEXT)) as load:
        load.write(PARENT, docs("A", [1, 2]))
        load.write(LINES, pd.concat([lines("A", 1, 2), lines("A", 2, 1)]))
    assert current() == [("A", 2), ("B", 1)]
    # The tombstone's own window read again (the source no longer returns the record): the tombstone stays.
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), NEXT, AFTER)) as load:
        load.write(PARENT, docs("A", [3], modified="2026-03-02T08:00:00.000Z", window=NEXT))
    assert current() == [("A", 2), ("A", 3), ("B", 1)]
    assert len(tombstones()) == 2
    assert warehouse.delete_records([PARENT, LINES], company_a, [gone], "run-e") == []  # again: nothing more
    assert len(tombstones()) == 2
    assert warehouse.duplicate_keys(PARENT) == 0
    # The key made again after its deletion: the newer version is current.
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), AFTER, AFTER + timedelta(days=1))) as load:
        load.write(PARENT, docs("A", [1], modified="2026-03-03T09:00:00.000Z", window=AFTER))
    assert current() == [("A", 1), ("A", 2), ("A", 3), ("B", 1)]
    assert warehouse.current_keys(PARENT, "A") == {"1", "2", "3"}


# -- the first flow, end to end, on each backend ----------------------------------------------


def test_business_central_flow_end_to_end(sandbox, backend_settings, tmp_path):
    raw = sandbox_profile(sandbox.data_dir, sandbox.url)
    raw.update(
        data_dir=str(tmp_path),
        sap_business_one=None,
        looker=None,
        finance_operations=None,
        acumatica=None,
        warehouse=backend_settings,
    )
    raw["business_central"]["partitions"]["start"] = HISTORY_START.date().isoformat()
    raw["business_central"]["http"] = dict(FAST_HTTP)
    raw["business_central"]["entities"] = ["vendors", "generalLedgerEntries", "salesInvoices"]
    cfg = parse_config(raw)
    result = run_bc_job(cfg, partition_range=("2026-03-01", "2026-03-03"), instance=dg.DagsterInstance.ephemeral())
    assert result.success
    checks = {(c.asset_key.path[-1], c.check_name): c.passed for c in result.get_asset_check_evaluations()}
    assert checks and all(checks.values()), checks
    warehouse = WarehouseResource.from_config(cfg).process_config_and_initialize().open()
    companies = sandbox.companies()
    for entity_set, name in (
        ("generalLedgerEntries", "bc_general_ledger_entries"),
        ("salesInvoices", "bc_sales_invoices"),
    ):
        expected = sum(
            1
            for c in companies
            for r in sandbox.records(c["id"], entity_set)
            if "2026-03-01" <= r["lastModifiedDateTime"][:10] < "2026-03-04"
        )
        assert len(table(warehouse, name)) == expected > 0
    lines = table(warehouse, "bc_sales_invoice_lines")
    assert len(lines) > 0 and lines["_parent_version_id"].notna().all()
    # The LookML for what landed names the tables and columns as this warehouse spells them.
    project = {path: lkml.load(text) for path, text in build_project(cfg, warehouse, "wh").items()}
    (invoices,) = project["views/bc_sales_invoices.view.lkml"]["views"]
    assert (
        invoices["sql_table_name"]
        == {
            "duckdb": '"bc_sales_invoices"',
            "snowflake": '"BC_SALES_INVOICES"',
            "bigquery": f"`{backend_settings.get('bigquery', {}).get('dataset')}.bc_sales_invoices`",
        }[backend_settings["backend"]]
    )
    amount = next(d for d in invoices["dimensions"] if d["name"] == "total_amount_including_tax")
    column = {"snowflake": '"TOTAL_AMOUNT_INCLUDING_TAX"', "bigquery": "`total_amount_including_tax`"}
    assert amount["sql"] == "${TABLE}." + column.get(backend_settings["backend"], '"total_amount_including_tax"')
    assert {m["name"]: m["type"] for m in invoices["measures"]}["total_total_amount_including_tax"] == "sum"


def test_backend_libraries_are_imported_only_when_selected():
    import subprocess
    import sys

    probe = (
        "import sys, mlconnector_pipelines.definitions as d; "
        "d.defs.resolve_job_def('business_central_to_warehouse'); "
        "print(sorted(m for m in sys.modules if m.startswith(('snowflake.connector', 'google.cloud.bigquery'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, "MLCONNECTOR_CONFIG": ""},
    ).stdout
    assert out.strip() == "[]"


def test_ping_reaches_the_warehouse(backend_settings, tmp_path):
    from mlconnector_pipelines.warehouse.ping import ping

    cfg = parse_config({"profile": "sandbox", "data_dir": str(tmp_path), "warehouse": backend_settings})
    result = ping(cfg)
    assert result.ok and "queries run" in result.detail, result.detail


def test_column_types_are_read_back_as_the_warehouse_holds_them(warehouse):
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), DAY, NEXT)) as load:
        load.write(PARENT, docs("A", [1], flag=[True], note=["x"]))
    types = warehouse.column_types("docs")
    assert {k: types[k] for k in ("doc_entry", "amount", "posted", "modified", "flag", "note", "_company_id")} == {
        "doc_entry": T.INTEGER,
        "amount": T.DECIMAL,
        "posted": T.DATE,
        "modified": T.TIMESTAMP,
        "flag": T.BOOLEAN,
        "note": T.STRING,
        "_company_id": T.STRING,
    }
    assert warehouse.column_types("no_such_table") == {}
