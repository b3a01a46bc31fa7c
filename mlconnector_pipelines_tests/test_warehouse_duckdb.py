"""DuckDB backend behaviour not already covered end to end by the flow tests."""

from datetime import datetime, timezone

import pandas as pd

from mlconnector_pipelines.warehouse.base import ReplaceScope
from mlconnector_pipelines.warehouse.duckdb_backend import DuckDBWarehouse
from mlconnector_pipelines.warehouse.schema import ColumnType as T
from mlconnector_pipelines.warehouse.schema import TableSpec

UTC = timezone.utc
DAY = datetime(2026, 3, 1, tzinfo=UTC)
NEXT = datetime(2026, 3, 2, tzinfo=UTC)
PARENT = TableSpec("docs", ("_company_id", "doc_entry"), "modified", {"doc_entry": T.INTEGER, "modified": T.TIMESTAMP})
LINES = TableSpec("doc_lines", ("_company_id", "_parent_id", "line_num"), None, {"line_num": T.INTEGER}, parent=PARENT)


def docs(company, entries, modified="2026-03-01T10:00:00.000Z", window=DAY):
    frame = pd.DataFrame({"doc_entry": entries, "modified": modified})
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


def test_same_document_key_in_two_companies_keeps_each_companys_lines(tmp_path):
    """Company A's old version of document 5 shares its version id with B's current one: A's old lines must go."""
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A", "B"), DAY, NEXT)) as load:
        load.write(PARENT, pd.concat([docs("A", [5]), docs("B", [5])]))
        load.write(LINES, pd.concat([lines("A", 5, 2), lines("B", 5, 3)]))
    assert dict(warehouse.query("SELECT _company_id, count(*) FROM doc_lines GROUP BY 1")) == {"A": 2, "B": 3}
    # A changes document 5 the next day (new window); its old version stays in A's change log
    later = "2026-03-02T15:00:00.000Z"
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), NEXT, datetime(2026, 3, 3, tzinfo=UTC))) as load:
        load.write(PARENT, docs("A", [5], modified=later, window=NEXT))
        load.write(LINES, lines("A", 5, 1, modified=later, window=NEXT))
    assert dict(warehouse.query("SELECT _company_id, count(*) FROM doc_lines GROUP BY 1")) == {"A": 1, "B": 3}


def test_reloading_one_company_leaves_the_other_alone(tmp_path):
    warehouse = DuckDBWarehouse(tmp_path / "w.duckdb")
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A", "B"), DAY, NEXT)) as load:
        load.write(PARENT, pd.concat([docs("A", [1, 2]), docs("B", [1])]))
    with warehouse.replace_windows([PARENT, LINES], ReplaceScope(("A",), DAY, NEXT)) as load:
        load.write(PARENT, docs("A", [3]))
    rows = warehouse.query("SELECT _company_id, doc_entry FROM docs ORDER BY ALL")
    assert rows == [("A", 3), ("B", 1)]
