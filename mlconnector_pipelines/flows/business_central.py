"""Business Central → warehouse: one partitioned multi-asset per BC entity (with its lines), and, when
configured, change notifications that re-read windows minutes after a change and end deleted records."""

import dagster as dg

from ..systems.business_central import catalog
from ..systems.business_central.config import BusinessCentralConfig
from ..systems.spec import FlowContext
from .windowed import WindowedSource, build_windowed

SOURCE = WindowedSource(
    system="Business Central",
    group="business_central",
    resource_key="business_central",
    kind="businesscentral",
    job_name="business_central_to_warehouse",
)
JOB = SOURCE.job_name


def build_business_central(cfg: BusinessCentralConfig, ctx: FlowContext) -> dg.Definitions:
    entities = catalog.select(cfg.entities)
    loads = build_windowed(SOURCE, entities, cfg.partitions, ctx.warehouse_kind)
    if cfg.notifications is None:
        return loads
    from .business_central_notifications import build_notifications

    jobs = {job.name: job for job in loads.jobs}
    notifications = build_notifications(
        SOURCE,
        cfg,
        entities,
        jobs[JOB],
        jobs.get(f"{SOURCE.group}_reconcile_deletions"),  # none when no loaded entity is ever deleted
        data_dir=ctx.data_dir,
        ingest=ctx.ingest,
    )
    return dg.Definitions.merge(loads, notifications)
