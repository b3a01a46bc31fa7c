"""The Sales tables in the warehouse: current state by Dataverse change tracking (group `dynamics_sales`).

Each run applies what changed and what was deleted since the last; the delta link lives in the asset's
last materialization, so a run that fails keeps the old one and the next run reads those changes again.
A table without change tracking, or an expired token, is read whole and replaces the table.
"""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd

from ..core.errors import RequestFailedError
from ..systems.dataverse.client import Changes, DeltaTokenExpired
from ..systems.dataverse.config import DataverseConfig
from ..systems.dataverse.ping import NO_CHANGE_TRACKING
from ..systems.dataverse.tables import TABLES, Table
from ..warehouse.schema import EXTRACTED_AT, RUN_ID, WINDOW_START, TableSpec
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
        changes = client.changes(table.entity_set, select=table.select, delta_link=link)
        if changes.delta_link is None:
            log.warning(
                f"{table.entity_set}: Dataverse answered without a delta link (change tracking off for the table?); "
                "the next run reads it whole"
            )
        return changes, "changes since the last run" if link else "whole table (first read)"
    except DeltaTokenExpired as exc:
        log.warning(str(exc))
        return client.changes(table.entity_set, select=table.select), "whole table (the change token had expired)"
    except RequestFailedError as exc:
        if exc.code not in NO_CHANGE_TRACKING:
            raise
        log.info(f"{table.entity_set} has no change tracking: read whole")
        return Changes(rows=client.rows(table.entity_set, select=table.select), full=True), "whole table (untracked)"


def _frame(table: Table, rows: list[dict], run_id: str) -> pd.DataFrame:
    frame = pd.DataFrame([{c: row.get(table.web_api_name(c)) for c in table.columns} for row in rows])
    frame[WINDOW_START] = None
    frame[EXTRACTED_AT] = datetime.now(UTC)
    frame[RUN_ID] = run_id
    frame[SOURCE_COLUMN] = "dataverse change tracking"
    return frame
