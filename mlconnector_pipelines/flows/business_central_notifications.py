"""Business Central change notifications in Dagster: subscriptions kept alive, notices turned into runs.

- Job `business_central_subscriptions` (on `notifications.check_cron`): creates, renews and re-creates
  one subscription per company and entity set; its metadata lists each with its expiry.
- Sensor `business_central_notifications`: notices stored by `mlconnector ingest` become re-reads of the
  windows they name (`lastModifiedDateTime` → partition; a `collection` notice → every window from its
  filter's moment on), batched into one run per window for the entities named. A window already being
  loaded waits for that run to end, so no two runs load it at once. `deleted` notices become one run of
  `business_central_apply_deletions`, which ends the records (tombstones; see flows/reconcile.py). A
  collection notice without a filter (BC's way when deletions are among its changes) also starts
  `business_central_reconcile_deletions`, which finds them by comparing keys.
"""

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import dagster as dg

from ..core.catalog import SourceEntity
from ..core.errors import ConfigError
from ..core.settings import PartitionConfig
from ..ingest.config import IngestConfig
from ..ingest.store import open_delivery_store
from ..systems.business_central.config import BusinessCentralConfig
from ..systems.business_central.notifications import (
    SOURCE,
    WEBHOOK_ENTITY_SETS,
    Notice,
    Subscriptions,
    parse_moment,
    parse_notice,
    readable_resource,
    resource_path,
)
from ..warehouse.base import Deletion
from .partitions import partitions_def
from .reconcile import window_start_finder
from .windowed import WindowedSource, table_specs

# BC leaves the filter off a collection notice when deletions are among its changes (it cannot name them):
# the windows of this span before the notice are re-read, and the keys reconciled to find the deletions.
COLLECTION_WITHOUT_FILTER = timedelta(hours=1)
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


class DeletionsConfig(dg.Config):
    # Each: {"company_id", "entity_set", "id", "deleted_at"} from a `deleted` notice.
    deletions: list[dict[str, str]]


def subscribed_entities(cfg: BusinessCentralConfig, loaded: list[SourceEntity]) -> list[SourceEntity]:
    """The configured entity sets, else every loaded one BC sends notifications for."""
    wanted = cfg.notifications.entities
    by_set = {e.entity_set: e for e in loaded if e.entity_set in WEBHOOK_ENTITY_SETS}
    if wanted is None:
        return list(by_set.values())
    unknown = [w for w in wanted if w not in by_set]
    if unknown:
        raise ConfigError(
            f"business_central.notifications.entities: {unknown} cannot be subscribed to (not loaded, or BC sends "
            f"no notifications for them); these can: {sorted(by_set)}"
        )
    return [by_set[w] for w in wanted]


def build_notifications(
    source: WindowedSource,
    cfg: BusinessCentralConfig,
    loaded: list[SourceEntity],
    load_job,
    reconcile_job,
    *,
    data_dir,
    ingest: IngestConfig,
) -> dg.Definitions:
    entities = subscribed_entities(cfg, loaded)
    by_set = {e.entity_set: e for e in entities}
    notifications = cfg.notifications

    @dg.op(
        name="keep_business_central_subscriptions",
        required_resource_keys={source.resource_key},
        pool=source.group,
        description="One subscription per company and entity set: created when missing (BC deletes one whose "
        "receiver answered wrong), renewed before its 3-day expiry, removed when no longer configured.",
    )
    def keep_subscriptions(context: dg.OpExecutionContext):
        resource = getattr(context.resources, source.resource_key)
        client = resource.client()
        try:
            companies = client.resolve_companies(cfg.companies)
            subscriptions = Subscriptions(
                client,
                notifications.notification_url,
                resource.secret(notifications.client_state, "business_central.notifications.client_state"),
                [resource_path(c["id"], e.entity_set) for c in companies for e in entities],
                timedelta(hours=notifications.renew_when_hours_left),
            )
            states = subscriptions.sync()
        finally:
            client.close()
        names = {c["id"].lower(): c["name"] for c in companies}
        table = "| resource | state | expires | note |\n|---|---|---|---|\n" + "\n".join(
            f"| {readable_resource(s.resource, names)} | {s.action} | {s.expires or ''} | {s.error or ''} |"
            for s in states
        )
        counts = defaultdict(int)
        for s in states:
            counts[s.action] += 1
        expiries = [s.expires for s in states if s.expires]
        context.add_output_metadata(
            {
                "subscriptions": dg.MetadataValue.md(table),
                **{f"subscriptions_{action}": n for action, n in counts.items()},
                "earliest_expiry": min(expiries, default="none"),
            }
        )
        failed = [s for s in states if s.action == "failed"]
        if failed:
            raise dg.Failure(
                f"{len(failed)} subscription(s) could not be made or renewed: "
                + "; ".join(f"{readable_resource(s.resource, names)}: {s.error}" for s in failed),
                metadata={"subscriptions": dg.MetadataValue.md(table)},
            )
        return len(states)

    @dg.job(
        name="business_central_subscriptions",
        description="Keep BC's change-notification subscriptions alive (see the op).",
    )
    def subscriptions_job():
        keep_subscriptions()

    subscriptions_schedule = dg.ScheduleDefinition(
        name="business_central_subscriptions_schedule",
        job=subscriptions_job,
        cron_schedule=notifications.check_cron,
        execution_timezone="UTC",
        description="Renews BC subscriptions well before their 3-day expiry and re-creates any BC deleted.",
    )

    start_of = window_start_finder(cfg.partitions)

    @dg.op(
        name="apply_business_central_deletions",
        required_resource_keys={source.resource_key, "warehouse"},
        pool=source.group,
        description="End the records BC said were deleted: a tombstone in the change log, the record and its "
        "lines out of current state.",
    )
    def apply_deletions(context: dg.OpExecutionContext, config: DeletionsConfig):
        warehouse = context.resources.warehouse.open()
        client = getattr(context.resources, source.resource_key).client()
        try:
            names = {c["id"].lower(): c for c in client.companies()}
        finally:
            client.close()
        grouped: dict[tuple[str, str], list[Deletion]] = defaultdict(list)
        for d in config.deletions:
            moment = parse_moment(d["deleted_at"])
            grouped[(d["company_id"].lower(), d["entity_set"])].append(Deletion(d["id"], moment, start_of(moment)))
        ended = 0
        for (company_id, entity_set), deletions in grouped.items():
            company = names.get(company_id, {"id": company_id, "name": company_id})
            tables = table_specs(by_set[entity_set])
            gone = warehouse.delete_records(tables, company, deletions, context.run_id)
            ended += len(gone)
            context.log.info(
                f"{entity_set}: {company['name']}: {len(deletions)} deleted in BC, {len(gone)} ended in current state"
            )
            context.log_event(
                dg.AssetObservation(
                    asset_key=dg.AssetKey([source.group, tables[0].name]),
                    metadata={"deleted_in_bc": len(deletions), "ended": len(gone), "company": company["name"]},
                )
            )
        context.add_output_metadata({"ended": ended})
        return ended

    @dg.job(
        name="business_central_apply_deletions",
        description="End records BC's `deleted` notices named (started by the notifications sensor).",
    )
    def deletions_job():
        apply_deletions()

    sensor = _notifications_sensor(
        source, cfg.partitions, by_set, data_dir, ingest, load_job, deletions_job, reconcile_job
    )
    return dg.Definitions(jobs=[subscriptions_job, deletions_job], schedules=[subscriptions_schedule], sensors=[sensor])


def _notifications_sensor(
    source: WindowedSource,
    partitions_cfg: PartitionConfig,
    by_set: dict[str, SourceEntity],
    data_dir,
    ingest: IngestConfig,
    load_job,
    deletions_job,
    reconcile_job,
) -> dg.SensorDefinition:
    partitions = partitions_def(partitions_cfg)

    def keys_of(moment: datetime) -> list[str]:
        # Before the first window (`start` in the partitions' zone, not UTC: west of UTC its midnight comes later)
        # there is no window to name: the first one is read.
        if moment < partitions.start:
            moment = partitions.start
        newest = partitions.get_last_partition_window()  # the window still open
        if newest is not None and moment >= newest.end:
            # Stamped by a BC clock ahead of ours: its window does not exist yet (the tick failed on it, and on
            # every tick after, so no later notice was run). The newest one is read now; the scheduled load
            # reads the record's own once it exists.
            return [partitions.get_last_partition_key()]
        return [partitions.get_partition_key_for_timestamp(moment.timestamp())]

    def windows_of(notice: Notice) -> list[str]:
        """The window of the notice's moment; for a collection, every window from its filter's moment on
        (without one, BC's changes of the last aggregation period: the hour before the notice's moment)."""
        if notice.change != "collection":
            return keys_of(notice.modified_at)
        since = notice.since or notice.modified_at - COLLECTION_WITHOUT_FILTER
        first, last = keys_of(since)[0], keys_of(max(notice.modified_at, datetime.now(UTC)))[0]
        return partitions.get_partition_keys_in_range(dg.PartitionKeyRange(first, last))

    @dg.sensor(
        name="business_central_notifications",
        jobs=[job for job in (load_job, deletions_job, reconcile_job) if job is not None],
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="BC change notifications (stored by `mlconnector ingest`) → one re-read per window they name, "
        "for the entities named; `deleted` notices → business_central_apply_deletions. A window being loaded "
        "waits for that run.",
    )
    def business_central_notifications(context: dg.SensorEvaluationContext):
        cursor = json.loads(context.cursor) if context.cursor else {}
        waiting: dict[str, list[str]] = cursor.get("waiting", {})  # partition -> entity sets still to re-read
        store = open_delivery_store(ingest, data_dir, SOURCE)
        deliveries = store.after(cursor.get("deliveries"))
        deletions, unnamed_deletions = _collect((d for _, d in deliveries), by_set, waiting, windows_of)
        if deliveries:
            cursor["deliveries"] = deliveries[-1][0]
        busy = _windows_being_loaded(context.instance, source.job_name, source.group, partitions)
        requests = []
        for key in sorted(waiting):
            if key in busy:
                continue  # re-read once the run loading it ends (it may have read before the change)
            entity_sets = waiting.pop(key)
            selection = [dg.AssetKey([source.group, t.name]) for s in entity_sets for t in table_specs(by_set[s])]
            requests.append(
                dg.RunRequest(
                    run_key=f"notified:{key}:{','.join(entity_sets)}:{cursor.get('deliveries')}",
                    job_name=load_job.name,
                    partition_key=key,
                    asset_selection=selection,
                    tags={"mlconnector/trigger": "business central notification"},
                )
            )
        if unnamed_deletions and reconcile_job is not None:
            requests.append(dg.RunRequest(run_key=f"reconcile:{cursor.get('deliveries')}", job_name=reconcile_job.name))
        if deletions:
            requests.append(
                dg.RunRequest(
                    run_key=f"deleted:{cursor.get('deliveries')}",
                    job_name=deletions_job.name,
                    run_config={"ops": {"apply_business_central_deletions": {"config": {"deletions": deletions}}}},
                )
            )
        cursor["waiting"] = waiting
        context.update_cursor(json.dumps(cursor))
        if not requests:
            why = f"waiting for runs loading {sorted(waiting)}" if waiting else "no new notifications"
            return dg.SkipReason(why)
        return requests

    return business_central_notifications


def _collect(deliveries, by_set: dict, waiting: dict[str, list[str]], windows_of) -> tuple[list[dict], bool]:
    """Notices → windows to re-read per entity set (added to `waiting`), the deletions to apply, and whether a
    collection notice stood for deletions it could not name."""
    deletions, unnamed = [], False
    for delivery in deliveries:
        for row in delivery.rows:
            notice = parse_notice(row)
            if notice.entity_set not in by_set:
                continue  # an entity the flow does not load
            if notice.change == "deleted":
                deletions.append(
                    {
                        "company_id": notice.company_id,
                        "entity_set": notice.entity_set,
                        "id": notice.record_id or "",
                        "deleted_at": notice.modified_at.isoformat(),
                    }
                )
                continue
            unnamed = unnamed or (notice.change == "collection" and notice.since is None)
            for key in windows_of(notice):
                waiting[key] = sorted({*waiting.get(key, []), notice.entity_set})
    return deletions, unnamed


def _windows_being_loaded(instance: dg.DagsterInstance, job_name: str, group: str, partitions) -> set[str]:
    """Partitions a queued or running run that loads the system's assets covers (one partition, or a backfill's
    range): a run of the load job, or one launched from the asset graph (the UI's Materialize, an asset
    backfill: Dagster's `__ASSET_JOB`), which a filter on the job's name passed over."""
    busy: set[str] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS)):
        if run.job_name != job_name and not any(key.path[0] == group for key in run.asset_selection or ()):
            continue
        tags = run.tags
        if "dagster/partition" in tags:
            busy.add(tags["dagster/partition"])
        start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
        if start and end:
            busy.update(partitions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end)))
    return busy
