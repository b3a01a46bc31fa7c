"""Deletions for sources without a delete feed: each company's keys against the source's.

Business Central (without change notifications), SAP Business One and Acumatica never say that a
record was deleted; their APIs only stop returning it. Reconciliation reads the warehouse's keys
first, then the source's (a light read of the key alone), and ends every key the warehouse holds
and the source does not list and does not hold (`SourceSession.still_held`: BC's next links are
opaque, and one that resumes at an offset passes over a key when a record is deleted meanwhile):
a tombstone version in the change log, the record and its lines out of current state. Reading the
warehouse first means a record created meanwhile is in the source's answer and is never ended by
mistake; one loaded meanwhile waits for the next run.

The asset check `no_records_deleted_at_source` only counts; the job `<group>_reconcile_deletions`
(on a schedule, `partitions.reconcile_deletions_cron`) applies.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from ..core.catalog import SourceEntity
from ..core.settings import PartitionConfig
from ..core.source import SourceSession
from ..warehouse.base import Deletion, Warehouse
from .partitions import partitions_def

SHOWN_KEYS = 20  # keys listed in the UI per entity and company; the counts are whole
CHECK = "no_records_deleted_at_source"


def deletion_checks(group: str, entities: Sequence[SourceEntity]) -> list[dg.AssetCheckKey]:
    """The checks this module adds: kept out of the load jobs, whose runs (a notice's, a backfill's) must not
    each read every key of the source."""
    return [dg.AssetCheckKey(dg.AssetKey([group, e.table]), CHECK) for e in entities if e.deletable]


@dataclass
class Reconciled:
    """One entity of one company: what the warehouse holds that the source no longer does."""

    entity: SourceEntity
    company: dict
    warehouse_keys: int
    source_keys: int | None  # None: nothing loaded yet, the source was not asked
    missing: list[str]  # keys in current state that the source no longer has
    ended: list[str]  # those this run took out of current state (none when only counting)

    def figures(self) -> dict:
        return {
            "warehouse": self.warehouse_keys,
            "source": self.source_keys,
            "deleted_at_source": len(self.missing),
            "keys": self.missing[:SHOWN_KEYS],
        }


def reconcile(
    session: SourceSession,
    warehouse: Warehouse,
    entity: SourceEntity,
    company: dict,
    *,
    apply: bool,
    run_id: str,
    window_start_of: Callable[[datetime], datetime],
) -> Reconciled:
    from .windowed import table_specs  # here, not at the top: windowed.build_windowed uses this module

    tables = table_specs(entity)
    held = warehouse.current_keys(tables[0], company["id"])
    if not held:
        return Reconciled(entity, company, 0, None, [], [])
    at_source = session.keys(company["id"], entity)
    missing = sorted(held - at_source)
    if missing:  # a key read past is not a deletion
        there = session.still_held(company["id"], entity, missing)
        missing = [key for key in missing if key not in there]
        at_source |= there
    ended: list[str] = []
    if apply and missing:
        seen = datetime.now(UTC)  # the source keeps no deletion time: when we saw it gone
        deletions = [Deletion(key, seen, window_start_of(seen)) for key in missing]
        ended = warehouse.delete_records(tables, company, deletions, run_id)
    return Reconciled(entity, company, len(held), len(at_source), missing, ended)


def window_start_finder(cfg: PartitionConfig) -> Callable[[datetime], datetime]:
    """The start of the partition window holding a moment: where a tombstone of that moment lives."""
    partitions = partitions_def(cfg)

    def start_of(moment: datetime) -> datetime:
        key = partitions.get_partition_key_for_timestamp(moment.timestamp())
        return partitions.time_window_for_partition_key(key).start.astimezone(UTC)

    return start_of


def build_reconciliation(
    *,
    system: str,
    group: str,
    resource_key: str,
    entities: Sequence[SourceEntity],
    partitions_cfg: PartitionConfig,
) -> dg.Definitions:
    """The check that counts deletions at the source, and the scheduled job that applies them."""
    entities = [e for e in entities if e.deletable]
    if not entities:
        return dg.Definitions()
    asset_key = {e.entity_set: dg.AssetKey([group, e.table]) for e in entities}
    start_of = window_start_finder(partitions_cfg)
    resources = {resource_key, "warehouse"}

    def each(context, chosen: Sequence[SourceEntity], apply: bool, run_id: str = ""):
        warehouse = context.resources.warehouse.open()
        session: SourceSession = getattr(context.resources, resource_key).session()
        try:
            companies = session.companies()
            for entity in chosen:
                yield (
                    entity,
                    [
                        reconcile(session, warehouse, entity, c, apply=apply, run_id=run_id, window_start_of=start_of)
                        for c in companies
                    ],
                )
        finally:
            session.close()

    @dg.multi_asset_check(
        name=f"{group}_deleted_at_source",
        pool=group,  # a light read of every key: the system's pool, as its loads
        specs=[
            dg.AssetCheckSpec(
                CHECK,
                asset=asset_key[e.entity_set],
                description=f"Every key in current state still exists in {system} (a light read of the keys, "
                "per company). A failure counts the records deleted there and not yet ended here; the job "
                f"`{group}_reconcile_deletions` ends them.",
            )
            for e in entities
        ],
        can_subset=True,
        required_resource_keys=resources,
    )
    def deleted_at_source(context: dg.AssetCheckExecutionContext):
        selected = {key.asset_key for key in context.selected_asset_check_keys}
        chosen = [e for e in entities if asset_key[e.entity_set] in selected]
        for entity, results in each(context, chosen, apply=False):
            missing = sum(len(r.missing) for r in results)
            yield dg.AssetCheckResult(
                check_name=CHECK,
                asset_key=asset_key[entity.entity_set],
                passed=missing == 0,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"{missing} record(s) in current state no longer exist in {system}."
                if missing
                else f"Every record in current state exists in {system}.",
                metadata={
                    "deleted_at_source": missing,
                    "per_company": dg.MetadataValue.json({r.company["name"]: r.figures() for r in results}),
                },
            )

    @dg.op(
        name=f"reconcile_{group}_deletions",
        required_resource_keys=resources,
        pool=group,
        description=f"End the records deleted in {system}: a tombstone in each change log, the record and its "
        "lines out of current state.",
    )
    def reconcile_op(context: dg.OpExecutionContext):
        ended_total = 0
        for entity, results in each(context, entities, apply=True, run_id=context.run_id):
            ended = sum(len(r.ended) for r in results)
            ended_total += ended
            for r in results:
                if r.missing:
                    context.log.info(
                        f"{entity.entity_set}: {r.company['name']}: {len(r.missing)} record(s) deleted in {system}; "
                        f"ended {len(r.ended)}: {', '.join(r.missing[:SHOWN_KEYS])}"
                    )
            context.log_event(
                dg.AssetObservation(
                    asset_key=asset_key[entity.entity_set],
                    metadata={
                        "deleted_at_source": sum(len(r.missing) for r in results),
                        "ended": ended,
                        "per_company": dg.MetadataValue.json({r.company["name"]: r.figures() for r in results}),
                    },
                )
            )
        context.add_output_metadata({"ended": ended_total})
        return ended_total

    @dg.job(
        name=f"{group}_reconcile_deletions",
        description=f"Compare each company's keys in the warehouse with {system}'s and end the records deleted "
        "there (tombstones in the change logs).",
    )
    def job():
        reconcile_op()

    schedule = dg.ScheduleDefinition(
        name=f"{group}_reconcile_deletions_schedule",
        job=job,
        cron_schedule=partitions_cfg.reconcile_deletions_cron,
        execution_timezone=partitions_cfg.timezone,
        description=f"Ends the records deleted in {system} (see the job).",
    )
    return dg.Definitions(asset_checks=[deleted_at_source], jobs=[job], schedules=[schedule])
