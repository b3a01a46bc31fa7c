"""The Sales tables in the warehouse: current state by Dataverse change tracking (group `dynamics_sales`).

Each run applies what changed and what was deleted since the last; the delta link lives in the asset's
last materialization, so a run that fails keeps the old one and the next run reads those changes again.
A table without change tracking, or an expired token, is read whole and replaces the table.
"""

from datetime import UTC, datetime
from decimal import Decimal

import dagster as dg
import pyarrow as pa

from ..core.errors import RequestFailedError
from ..core.types import DECIMAL_READ_TYPE, exact_decimals
from ..systems.dataverse.client import Changes, DeltaTokenExpired
from ..systems.dataverse.config import DataverseConfig
from ..systems.dataverse.ping import NO_CHANGE_TRACKING
from ..systems.dataverse.tables import TABLES, Table
from ..warehouse.schema import EXTRACTED_AT, RUN_ID, WINDOW_START, ColumnType, TableSpec
from ..warehouse.schema import SOURCE as SOURCE_COLUMN

GROUP = "dynamics_sales"
JOB = "dynamics_sales_to_warehouse"


def build_sales_tables(cfg: DataverseConfig, warehouse_kind: str) -> dg.Definitions:
    tables = [TABLES[name] for name in cfg.warehouse_tables]
    return dg.Definitions(
        assets=[_table_asset(t, warehouse_kind) for t in tables],
        asset_checks=[_unique_ids_check(t) for t in tables],
        jobs=[
            dg.define_asset_job(
                JOB,
                selection=[dg.AssetKey([GROUP, t.entity_set]) for t in tables],
                description="Every Sales table's changes since the last run (change tracking) into the warehouse.",
            )
        ],
    )


def _table_asset(table: Table, warehouse_kind: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=[GROUP, table.entity_set],
        group_name=GROUP,
        kinds={"dynamics365", warehouse_kind},
        pool="dataverse",
        required_resource_keys={"dataverse", "warehouse"},
        description=f"Sales {table.entity_set} as they are now ({table.warehouse_name}): each run applies what "
        "changed and what was deleted since the last (Dataverse change tracking; the delta link is kept in this "
        "asset's materialization). A table without change tracking, or an expired token, is read whole.",
        metadata={"dagster/table_name": table.warehouse_name},
    )
    def sales_table(context: dg.AssetExecutionContext):
        warehouse = context.resources.warehouse.open()
        link = _last_delta_link(context) if warehouse.table_exists(table.warehouse_name) else None
        client = context.resources.dataverse.client()
        try:
            changes, how = _read_changes(client, table, link, context.log)
            figures = client.metadata()
        finally:
            client.close()
        spec = TableSpec(table.warehouse_name, (table.key,), None, dict(table.columns), snapshot=True)
        with warehouse.apply_changes(spec, deleted=changes.deleted, full=changes.full) as load:
            if changes.rows:
                load.write(spec, _frame(table, changes.rows, context.run_id))
        rows = warehouse.row_count(table.warehouse_name)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "read": how,
                "changed": len(changes.rows),
                "deleted": len(changes.deleted),
                "delta_link": dg.MetadataValue.text(changes.delta_link or ""),
                **figures,
            }
        )

    return sales_table


def _unique_ids_check(table: Table) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey([GROUP, table.entity_set]),
        name="one_row_per_id",
        required_resource_keys={"warehouse"},
        description=f"Current state holds each {table.key} once.",
    )
    def one_row_per_id(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        spec = TableSpec(table.warehouse_name, (table.key,), None, dict(table.columns), snapshot=True)
        repeated = context.resources.warehouse.open().duplicate_keys(spec)
        return dg.AssetCheckResult(passed=repeated == 0, metadata={"repeated_ids": repeated})

    return one_row_per_id


def _last_delta_link(context) -> str | None:
    event = context.instance.get_latest_materialization_event(context.asset_key)
    entry = event.asset_materialization.metadata.get("delta_link") if event and event.asset_materialization else None
    return (entry.value or None) if entry is not None else None


def _read_changes(client, table: Table, link: str | None, log) -> tuple[Changes, str]:
    """Changes since `link` (everything, the first time). A refused token or an untracked table: a full read."""
    try:
        changes = client.changes(table.entity_set, key=table.key, select=table.select, delta_link=link)
        if changes.delta_link is None:
            log.warning(
                f"{table.entity_set}: Dataverse answered without a delta link (change tracking off for the table?); "
                "the next run reads it whole"
            )
        return changes, "changes since the last run" if link else "whole table (first read)"
    except DeltaTokenExpired as exc:
        log.warning(str(exc))
        changes = client.changes(table.entity_set, key=table.key, select=table.select)
        return changes, "whole table (the change token had expired)"
    except RequestFailedError as exc:
        if exc.code not in NO_CHANGE_TRACKING:
            raise
        log.info(f"{table.entity_set} has no change tracking: read whole")
        return Changes(rows=client.rows(table.entity_set, select=table.select), full=True), "whole table (untracked)"


def _frame(table: Table, rows: list[dict], run_id: str) -> pa.Table:
    """The rows as a table typed by the column reference, not by the values: JSON writes a whole amount as
    `100` and a fraction as `0.5`, and one column must hold both exactly (pandas would mix ints and Decimals,
    or make a double of integers and nulls)."""
    columns = {}
    for column, kind in table.columns.items():
        values = [row.get(table.web_api_name(column)) for row in rows]
        if kind is ColumnType.DECIMAL:
            columns[column] = pa.array([_exact(v) for v in values], DECIMAL_READ_TYPE)
        elif kind is ColumnType.INTEGER:
            columns[column] = pa.array(values, pa.int64())
        else:
            columns[column] = pa.array(values)
    frame = exact_decimals(pa.table(columns))
    extracted = pa.scalar(datetime.now(UTC), pa.timestamp("us", tz="UTC"))
    for name, value in ((EXTRACTED_AT, extracted), (RUN_ID, pa.scalar(run_id)),
                        (SOURCE_COLUMN, pa.scalar("dataverse change tracking"))):  # fmt: skip
        frame = frame.append_column(name, pa.repeat(value, len(rows)))
    return frame.append_column(WINDOW_START, pa.nulls(len(rows), pa.timestamp("us", tz="UTC")))


def _exact(value) -> Decimal | None:
    """A JSON number (parsed as int or Decimal) as the Decimal it states; never through a binary float."""
    if value is None or isinstance(value, Decimal):
        return value
    return Decimal(value) if isinstance(value, int) else Decimal(str(value))
