"""Loads an upstream asset's warehouse table as a DataFrame, so downstream ops take it as an input.

The assets write their tables themselves (in batches, atomically) and return no value; this IO
manager only reads. A partitioned input is the rows of the partitions the step asks for.
"""

import dagster as dg
import pandas as pd

from .resource import WarehouseResource
from .schema import validate_identifier

TABLE_METADATA = "dagster/table_name"


class WarehouseTableIOManager(dg.ConfigurableIOManager):
    warehouse: dg.ResourceDependency[WarehouseResource]

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if obj is not None:
            raise dg.DagsterInvariantViolationError(
                f"{context.asset_key.to_user_string()} returned a value; its table is written by the asset itself"
            )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        table = (upstream.definition_metadata or {}).get(TABLE_METADATA) if upstream is not None else None
        if table is None:
            raise dg.DagsterInvariantViolationError(
                f"{context.asset_key.to_user_string()} names no warehouse table ({TABLE_METADATA} metadata)"
            )
        table = validate_identifier(str(table))
        store = self.warehouse.open()
        if not store.table_exists(table):
            raise dg.DagsterInvariantViolationError(
                f"table {table} does not exist yet: materialize {context.asset_key.to_user_string()} first"
            )
        window = None
        if context.has_asset_partitions:
            window = (context.asset_partitions_time_window.start, context.asset_partitions_time_window.end)
        frame = store.read_table(table, window)
        # House bookkeeping columns stay in the warehouse; downstream code sees the data.
        return frame.drop(columns=[c for c in frame.columns if c.startswith("_")])
