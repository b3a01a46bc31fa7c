"""Acumatica ↔ Looker: Acumatica's finance records into the warehouse; Looker figures into GL journal
transactions (flows/journals.py) and into reference records (a Looker result kept in an entity).

Entities are read in one step per run (one licence seat, signed out at the end even when the run
fails), daily windows on their modified stamp. Subaccounts carry no stamp and are loaded whole.
"""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd
from pydantic import Field

from ..audit.config import AuditConfig
from ..audit.store import open_audit_store
from ..core.errors import ConfigError
from ..engine.journal import JournalSpec, looker_rows
from ..engine.records import RecordsRefused, RecordSync, records_plan
from ..systems.acumatica import catalog
from ..systems.acumatica.auth import SYSTEM
from ..systems.acumatica.config import AcumaticaConfig, AcumaticaJournal, ReferenceRecords
from ..systems.acumatica.resource import snapshot_table
from ..systems.acumatica.target import BRANCH, SUBACCOUNT, document_key
from ..systems.spec import FlowContext
from ..warehouse.schema import EXTRACTED_AT, RUN_ID, WINDOW_START, TableSpec, column_name
from ..warehouse.schema import SOURCE as SOURCE_COLUMN
from .journals import JournalFlow, build_journals
from .looker import asset_key as looker_asset_key
from .looker import table_name as looker_table
from .materializations import on_each_materialization
from .partitions import partitions_def
from .windowed import WindowedSource, build_windowed

GROUP = "acumatica"
SOURCE = WindowedSource(
    system=SYSTEM,
    group=GROUP,
    resource_key=GROUP,
    kind="acumatica",
    job_name="acumatica_to_warehouse",
    one_step=True,
)
JOB = SOURCE.job_name
SUBACCOUNTS = "acumatica_subaccounts"


def journal_flow(cfg: AcumaticaConfig) -> JournalFlow:
    def dimensions(mapping: AcumaticaJournal, target) -> list:
        unknown = sorted(set(mapping.balancing.dimensions) - {SUBACCOUNT, BRANCH})
        if unknown:  # else dropped from the offset line without a word
            raise ConfigError(
                f"acumatica.journals[{mapping.name}].balancing.dimensions: {', '.join(unknown)} is neither "
                f"{SUBACCOUNT} nor {BRANCH}"
            )
        return [(SUBACCOUNT, mapping.subaccount), (BRANCH, mapping.branch)]

    spec = JournalSpec(
        system=SYSTEM,
        company=lambda mapping: cfg.tenant,
        header=lambda mapping, when: {
            "ledger": mapping.ledger,
            "release": mapping.release,
            **({"branch": mapping.header_branch} if mapping.header_branch else {}),
        },
        document_key=document_key,
        dimensions=dimensions,
        text_limit=256,
    )
    return JournalFlow(spec=spec, group=GROUP, kind="acumatica", open_target=lambda resource: resource.journal_target())


def _subaccounts_asset(warehouse_kind: str) -> dg.AssetsDefinition:
    @dg.asset(
        key=[GROUP, SUBACCOUNTS],
        group_name=GROUP,
        kinds={"acumatica", warehouse_kind},
        pool=GROUP,
        required_resource_keys={GROUP, "warehouse"},
        description="Subaccounts (GL203000), replaced whole on each materialization: the entity carries no "
        "modified stamp to window it by.",
        metadata={"dagster/table_name": SUBACCOUNTS},
    )
    def subaccounts(context: dg.AssetExecutionContext):
        client = getattr(context.resources, GROUP).client()
        try:
            client.check_version()
            table = snapshot_table(client, "Subaccount")
            figures = client.http.stats.as_metadata("http_")
        finally:
            client.close()
        frame = table.to_pandas()
        frame.columns = [column_name(c) if not c.startswith("_") else c for c in frame.columns]
        frame[WINDOW_START] = None
        frame[EXTRACTED_AT] = datetime.now(UTC)
        frame[RUN_ID] = context.run_id
        frame[SOURCE_COLUMN] = "acumatica api"
        spec = TableSpec(name=SUBACCOUNTS, key=(), modified_column=None, types={}, snapshot=True)
        with context.resources.warehouse.open().replace_snapshot(spec, None) as load:
            load.write(spec, frame)
        return dg.MaterializeResult(metadata={"dagster/row_count": len(frame), "rows": len(frame), **figures})

    return subaccounts


class RecordsRunConfig(dg.Config):
    preview: bool = Field(False, description="Show what would change (inserts, updates, fields); write nothing.")


def _records_asset(records: ReferenceRecords, query, data_dir, audit_cfg) -> dg.AssetsDefinition:
    key = dg.AssetKey([GROUP, records.name])

    @dg.multi_asset(
        name=f"{GROUP}__{records.name}",
        specs=[
            dg.AssetSpec(
                key,
                group_name=GROUP,
                kinds={"acumatica", "looker"},
                deps=[looker_asset_key(query)],
                description=(records.description or f"{records.entity} records kept equal to Looker {query.name}.")
                + f" Inserted or updated by {records.key}, only the fields that differ; a record Acumatica refuses "
                "is named and replayable, the others still land.",
                metadata={"looker_query": query.name, "entity": records.entity, "approval": records.approval},
                skippable=True,  # a preview writes nothing and materializes nothing
            )
        ],
        check_specs=[
            dg.AssetCheckSpec(
                "all_records_accepted", asset=key, description=f"Acumatica accepted every {records.entity} record."
            )
        ],
        partitions_def=partitions_def(query.partition) if query.partition else None,
        pool=GROUP,
        required_resource_keys={GROUP, "warehouse"},
        can_subset=True,
    )
    def reference_records(context: dg.AssetExecutionContext, config: RecordsRunConfig):
        partition = context.partition_key if context.has_partition_key else ""
        window = (context.partition_time_window.start, context.partition_time_window.end) if partition else None
        store = context.resources.warehouse.open()
        if not store.table_exists(looker_table(query)):
            raise dg.Failure(
                f"{looker_table(query)} does not exist yet: materialize {looker_asset_key(query).to_user_string()}"
            )
        rows = looker_rows(
            looker_asset_key(query).to_user_string(), store.read_table(looker_table(query), window), query.fields
        )
        wanted = []
        for source, values in rows.rows:
            missing = [f for f in records.fields.values() if f not in values and column_name(f) not in values]
            if missing:
                raise ConfigError(
                    f"acumatica.reference_records[{records.name}]: Looker field(s) {missing} not in {query.name}"
                )
            wanted.append((source, {field: _value(values, looker) for field, looker in records.fields.items()}))
        plan = records_plan(
            flow=key.to_user_string(), partition=partition, system=SYSTEM, company=records.entity,
            entity=records.entity, key=records.key, rows=wanted,
        )  # fmt: skip
        target = getattr(context.resources, GROUP).record_target(records.entity, records.key)
        audit = open_audit_store(audit_cfg, data_dir)
        sync = RecordSync(target, audit, run_id=context.run_id, progress=context.log.info)
        try:
            if config.preview:
                changes = sync.preview(plan)
                context.log_event(
                    dg.AssetObservation(asset_key=key, partition=partition or None, metadata=_preview(changes))
                )
                return
            result = sync.run(plan)
        except RecordsRefused as refused:
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name="all_records_accepted",
                passed=False,
                metadata={"refused": dg.MetadataValue.json(refused.result.refused)},
            )
            raise dg.Failure(
                description=str(refused),
                metadata={
                    "refused": dg.MetadataValue.json(refused.result.refused),
                    "inserted": len(refused.result.inserted),
                    "updated": len(refused.result.updated),
                },
            ) from None
        finally:
            figures = target.metadata()
            target.close()
            audit.close()
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                "outcome": result.summary(),
                "inserted": dg.MetadataValue.json(result.inserted),
                "updated": dg.MetadataValue.json(result.updated),
                "unchanged": len(result.unchanged),
                **figures,
            },
        )
        yield dg.AssetCheckResult(asset_key=key, check_name="all_records_accepted", passed=True)

    return reference_records


def _preview(changes: list[tuple[str, str, list[str]]]) -> dict:
    rows = ["| key | change | fields |", "|---|---|---|"] + [
        f"| {key} | {action} | {', '.join(fields)} |" for key, action, fields in changes if action != "unchanged"
    ]
    counts = {action: sum(1 for _, a, _ in changes if a == action) for action in ("insert", "update", "unchanged")}
    counts["held"] = sum(1 for _, a, _ in changes if a.startswith("held as"))  # under a key the site assigned
    return {"plan": "preview", **counts, "changes": dg.MetadataValue.md("\n".join(rows))}


def _records_sensor(records: ReferenceRecords, query, job) -> dg.SensorDefinition:
    preview = records.approval == "required"

    op = "__".join([GROUP, records.name])
    return on_each_materialization(
        name=f"acumatica_{records.name}_on_new_figures",
        asset_key=looker_asset_key(query),
        job=job,
        description=f"New figures in {looker_asset_key(query).to_user_string()} "
        + ("preview the changes (approval: required)." if preview else f"update the {records.entity} records."),
        run_config={"ops": {op: {"config": {"preview": True}}}} if preview else {},
    )


def _value(values: dict, looker_field: str):
    value = values.get(looker_field, values.get(column_name(looker_field)))
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def build_acumatica(cfg: AcumaticaConfig, ctx: FlowContext) -> dg.Definitions:
    subaccounts = _subaccounts_asset(ctx.warehouse_kind)
    reload_subaccounts = dg.define_asset_job(
        "acumatica_subaccounts",
        selection=dg.AssetSelection.assets(subaccounts),
        description="Reload subaccounts whole.",
    )
    parts = [
        build_windowed(SOURCE, catalog.select(cfg.entities), cfg.partitions, ctx.warehouse_kind),
        dg.Definitions(
            assets=[subaccounts],
            jobs=[reload_subaccounts],
            schedules=[
                dg.ScheduleDefinition(
                    name="acumatica_subaccounts_daily",
                    job=reload_subaccounts,
                    cron_schedule="15 0 * * *",
                    description="Subaccounts carry no modified stamp: reloaded whole once a day.",
                )
            ],
        ),
    ]
    looker = getattr(ctx.config, "looker", None) if ctx.config is not None else None
    audit = ctx.config.audit if ctx.config is not None else AuditConfig()
    if cfg.journals:
        parts.append(build_journals(journal_flow(cfg), list(cfg.journals), looker, ctx.data_dir, audit))
    if cfg.reference_records:
        if looker is None or not looker.enabled:
            raise ConfigError("acumatica.reference_records come from Looker queries: configure the looker section")
        queries = {q.name: q for q in looker.queries}
        assets, jobs, sensors = [], [], []
        for records in cfg.reference_records:
            if records.looker_query not in queries:
                raise ConfigError(
                    f"acumatica.reference_records[{records.name}].looker_query {records.looker_query!r} is not in "
                    f"looker.queries (have: {', '.join(queries) or 'none'})"
                )
            asset = _records_asset(records, queries[records.looker_query], ctx.data_dir, audit)
            job = dg.define_asset_job(
                f"acumatica_{records.name}",
                selection=dg.AssetSelection.assets(asset),
                partitions_def=asset.partitions_def,
                description=f"Keep the {records.entity} records equal to Looker {records.looker_query}.",
            )
            assets.append(asset)
            jobs.append(job)
            sensors.append(_records_sensor(records, queries[records.looker_query], job))
        parts.append(dg.Definitions(assets=assets, jobs=jobs, sensors=sensors))
    return dg.Definitions.merge(*parts)
