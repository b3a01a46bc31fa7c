"""A sensor that starts a run for each new materialization of an asset, in order.

Dagster's `asset_sensor` acts on the newest materialization after its cursor and moves past the older
ones: two Looker partitions materialized between two ticks (a backfill, deliveries queued while the
daemon was down) started one journal, and the other period's was never posted. This one walks every
materialization after its cursor. Its first tick, with no cursor yet, takes the newest, as Dagster's does.
"""

from __future__ import annotations

import dagster as dg

BATCH = 100  # materializations taken per tick; the rest on the next
FIGURES_RUN_TAG = "mlconnector/figures_run"  # the run whose materialization started this one


def on_each_materialization(
    *, name: str, asset_key: dg.AssetKey, job, description: str, run_config: dict, tags: dict | None = None
) -> dg.SensorDefinition:
    """A run of `job` per materialization of `asset_key`, of its partition, once (keyed by that run and partition)."""

    @dg.sensor(
        name=name,
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )
    def _sensor(context: dg.SensorEvaluationContext):
        if context.cursor is None:
            found = context.instance.fetch_materializations(asset_key, limit=1, ascending=False)
        else:
            wanted = dg.AssetRecordsFilter(asset_key=asset_key, after_storage_id=int(context.cursor))
            found = context.instance.fetch_materializations(wanted, limit=BATCH, ascending=True)
        for record in found.records:
            event = record.event_log_entry
            partition = event.dagster_event.partition if event.dagster_event else None
            yield dg.RunRequest(
                run_key=f"{event.run_id}:{partition or ''}",  # once per materialization
                partition_key=partition,
                run_config=run_config,
                tags={**(tags or {}), FIGURES_RUN_TAG: event.run_id},
            )
            context.update_cursor(str(record.storage_id))

    return _sensor
