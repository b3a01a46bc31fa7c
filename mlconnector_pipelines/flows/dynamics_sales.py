"""Dynamics 365 Sales → Business Central in Dagster: one run per Sales record version, a sensor that finds them,
a job that confirms draft invoices, and a schedule that carries posted invoice numbers back to Sales (the Sales
tables in the warehouse are dynamics_sales_tables.py's).

Sales records reach the sensor two ways — Dataverse webhooks stored by `mlconnector ingest`, and change
tracking (a delta link per table, kept in the sensor's cursor) — and both give the same run key, `<table>:<id>:
<versionnumber>`, so one version makes one run. Whatever runs twice anyway (a record re-read after an expired
token, two records of one deal) finds the deal's document in BC by its key and writes nothing again.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import Field

from ..audit.config import AuditConfig
from ..audit.store import open_audit_store
from ..core.errors import ConfigError, ConnectorError, about_the_system
from ..engine.post import PostingRefused
from ..ingest.store import open_delivery_store
from ..systems.business_central.sales_target import as_code
from ..systems.dataverse.client import DeltaTokenExpired
from ..systems.dataverse.config import DataverseConfig, SalesToBusinessCentral
from ..systems.dataverse.resource import DataverseResource
from ..systems.dataverse.sales import BY_SET, TRIGGER_TABLES, DealNotReady, parse_partition, trigger_version
from ..systems.dataverse.to_business_central import FLOW, SalesSync, open_sales_sync
from ..systems.dataverse.webhooks import record_of_delivery
from ..systems.spec import FlowContext
from .dynamics_sales_tables import build_sales_tables

JOB = "sales_to_business_central"
DELIVERY_SOURCE = "dataverse"


class SalesRecordConfig(dg.Config):
    entity_set: str = Field(description="The Sales table: opportunities, quotes or salesorders.")
    record_id: str = Field(description="The record's id (GUID).")
    version: int = Field(0, description="The versionnumber seen (for the run key; the run reads the record anew).")
    confirm: bool = Field(False, description="Post the draft invoice (post_invoices: confirmed).")


class ConfirmConfig(dg.Config):
    deals: list[str] = Field(
        description="Deals whose draft invoices to post: each by its key (the quote's number, or the order's when "
        "it has no quote; BC's External Document No.) or by its BC draft invoice number."
    )


def build_dynamics_sales(cfg: DataverseConfig, ctx: FlowContext) -> dg.Definitions:
    warehouse = build_sales_tables(cfg, ctx.warehouse_kind)
    sync = cfg.sales_to_business_central
    if sync is None or not sync.enabled:
        return warehouse
    bc = getattr(ctx.config, "business_central", None)
    if bc is None or not bc.enabled:  # left out without a word, the deals waited with nothing saying why
        raise ConfigError(
            "dataverse.sales_to_business_central writes into Business Central: configure and enable the "
            "business_central section, or set dataverse.sales_to_business_central.enabled: false"
        )
    audit_cfg = (ctx.config.audit if ctx.config is not None else None) or AuditConfig()
    flow = _SalesFlow(sync, audit_cfg, ctx.data_dir)
    job, confirm_job, numbers_job = flow.jobs()
    return dg.Definitions.merge(warehouse, dg.Definitions(
        jobs=[job, confirm_job, numbers_job],
        sensors=[flow.sensor(job, cfg, ctx)],
        schedules=[
            dg.ScheduleDefinition(
                name="sales_invoice_numbers_schedule",
                job=numbers_job,
                cron_schedule="*/15 * * * *",
                description="Every 15 minutes: BC invoice numbers of invoiced orders onto their Sales documents.",
            )
        ],
    ))  # fmt: skip


class _SalesFlow:
    def __init__(self, sync: SalesToBusinessCentral, audit: AuditConfig, data_dir: Path):
        self.sync, self.audit, self.data_dir = sync, audit, data_dir

    @contextmanager
    def engine(self, context) -> Iterator[SalesSync]:
        engine = open_sales_sync(
            self.sync,
            context.resources.dataverse.client(),
            context.resources.business_central.client(),
            open_audit_store(self.audit, self.data_dir),
            run_id=context.run_id,
            progress=context.log.info,
        )
        try:
            yield engine
        finally:
            context.add_output_metadata(engine.metadata())
            engine.close()

    def jobs(self) -> tuple[dg.JobDefinition, dg.JobDefinition, dg.JobDefinition]:
        return self._sync_job(), self._confirm_job(), self._numbers_job()

    def _sync_job(self) -> dg.JobDefinition:
        flow = self

        @dg.op(
            name="sync_deal",
            description="Reads the deal this Sales record belongs to; makes its BC customer and document exactly "
            "once (each found by its key first), posts a confirmed draft invoice, writes BC's numbers back.",
            required_resource_keys={"dataverse", "business_central"},
            pool="business_central",  # BC's writes share its pool with its loads (dagster.yaml)
            tags={"kind": "dynamics365"},
        )
        def sync_deal(context: dg.OpExecutionContext, config: SalesRecordConfig):
            with flow.engine(context) as engine:
                try:
                    outcome = engine.run(config.entity_set, config.record_id, confirmed=config.confirm)
                except DealNotReady as exc:
                    context.log.info(str(exc))
                    context.add_output_metadata({"outcome": "skipped", "reason": str(exc)})
                    return
                except PostingRefused as exc:
                    raise dg.Failure(
                        description=f"{exc}. Nothing was written. Fix the mapping or BC, then replay.",
                        metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in exc.problems))},
                    ) from None
                context.add_output_metadata(
                    {
                        "deal": outcome.deal,
                        "customer": f"{outcome.customer} ({outcome.customer_action})",
                        "document": outcome.document_number,
                        "outcome": outcome.outcome,
                        "posting": outcome.posting or "-",
                        "written_back": json.dumps(outcome.written_back, default=str),
                    }
                )
                context.log.info(outcome.summary())

        @dg.job(
            name=JOB,
            description="One Sales record version → its deal in BC (customer, sales order or draft invoice), once.",
            tags={"kind": "sales"},
        )
        def sales_to_business_central():
            sync_deal()

        return sales_to_business_central

    def _confirm_job(self) -> dg.JobDefinition:
        flow = self

        @dg.op(
            name="post_confirmed_invoices",
            description="Posts the draft invoices of the deals named (post_invoices: confirmed), each once.",
            required_resource_keys={"dataverse", "business_central"},
            pool="business_central",  # BC's writes share its pool with its loads (dagster.yaml)
        )
        def post_confirmed_invoices(context: dg.OpExecutionContext, config: ConfirmConfig):
            with flow.engine(context) as engine:
                done = {}
                synced = engine.audit.of_flow(FLOW)
                for deal in config.deals:
                    # as BC shows it (its Code fields are upper case, trimmed), or the BC document's own number
                    records = [r for r in synced if as_code(deal) in (as_code(r.document_key), r.document_number)]
                    if not records:
                        raise dg.Failure(
                            description=f"no synced deal {deal}: name it by its key in BC's External Document No. "
                            "(the quote's number, or the order's when it has no quote) or by its BC document number"
                        )
                    entity_set, record_id = parse_partition(records[0].partition)
                    done[deal] = engine.run(entity_set, record_id, confirmed=True).summary()
                context.add_output_metadata({deal: summary for deal, summary in done.items()})

        @dg.job(
            name="post_confirmed_sales_invoices",
            description="A person confirms draft invoices: each named deal's invoice is posted in BC, exactly once.",
            tags={"kind": "sales"},
        )
        def post_confirmed_sales_invoices():
            post_confirmed_invoices()

        return post_confirmed_sales_invoices

    def _numbers_job(self) -> dg.JobDefinition:
        flow = self

        @dg.op(
            name="write_back_invoice_numbers",
            description="For every synced deal not yet invoiced in Sales: if BC has posted its invoice, its number "
            "and status go onto the Sales document.",
            required_resource_keys={"dataverse", "business_central"},
            pool="business_central",  # BC's writes share its pool with its loads (dagster.yaml)
        )
        def write_back_invoice_numbers(context: dg.OpExecutionContext):
            with flow.engine(context) as engine:
                carried, failed = [], []
                for record in engine.audit.of_flow(FLOW, state="verified"):
                    try:
                        done = engine.carry_invoice_number(record)
                    except DealNotReady as exc:
                        context.log.info(f"{record.document_key}: {exc}")
                        continue
                    except ConnectorError as exc:  # this deal's; the others' numbers still go (the run fails after)
                        if about_the_system(exc):  # BC or Sales down or refusing us: the next deal would wait as long
                            context.log.error(
                                f"{record.document_key}: {exc}; the deals after it are left for the next run"
                            )
                            raise
                        context.log.error(f"{record.document_key}: {exc}")
                        failed.append(f"{record.document_key}: {exc}")
                        continue
                    if done:
                        context.log.info(done)
                        carried.append(done)
                metadata = {
                    "invoices_written_back": len(carried),
                    "deals": dg.MetadataValue.md("\n".join(f"- {c}" for c in carried) or "-"),
                    "deals_failed": len(failed),
                }
                if failed:
                    raise dg.Failure(
                        description=f"{len(failed)} deal(s) whose invoice number could not be written back (the next "
                        f"run tries them again; {len(carried)} written back):\n" + "\n".join(failed[:50]),
                        metadata={**metadata, "failed": dg.MetadataValue.md("\n".join(f"- {f}" for f in failed))},
                    )
                context.add_output_metadata(metadata)

        @dg.job(
            name="sales_invoice_numbers_to_sales",
            description="Posted BC invoice numbers onto the Sales orders they came from.",
            tags={"kind": "sales"},
        )
        def sales_invoice_numbers_to_sales():
            write_back_invoice_numbers()

        return sales_invoice_numbers_to_sales

    def sensor(self, job: dg.JobDefinition, cfg: DataverseConfig, ctx: FlowContext) -> dg.SensorDefinition:
        tables = [TRIGGER_TABLES[t] for t in self.sync.triggers]
        ingest = ctx.ingest

        @dg.sensor(
            name="dynamics_sales_changes",
            job=job,
            minimum_interval_seconds=self.sync.poll_seconds,
            default_status=dg.DefaultSensorStatus.STOPPED,
            description="Sales records that start a BC document, from Dataverse webhooks (via `mlconnector ingest`) "
            "and change tracking; one run per record version. An expired change token reads the table again; "
            "versions already run are not run again.",
        )
        def dynamics_sales_changes(context: dg.SensorEvaluationContext):
            cursor = json.loads(context.cursor) if context.cursor else {}
            deltas: dict[str, str] = cursor.get("delta", {})
            seen: dict[str, int] = cursor.get("versions", {})  # the highest versionnumber read, per table
            client = DataverseResource.from_section(cfg, ctx.data_dir).client()
            unread: list[
                str
            ] = []  # what could not be read this tick: tables (tried again next tick), webhooks' records
            try:
                requests: dict[str, dg.RunRequest] = {}
                store = open_delivery_store(ingest, ctx.data_dir, DELIVERY_SOURCE)
                deliveries = store.after(cursor.get("deliveries"))
                for delivery_cursor, delivery in deliveries:
                    entity_set, record_id = record_of_delivery(delivery)
                    try:
                        row = client.get(entity_set, record_id, select=["statecode", "versionnumber"]) if (
                            entity_set in BY_SET) else None  # fmt: skip
                    except ConnectorError as exc:
                        if about_the_system(exc):  # Sales down or refusing us: this delivery is read again next tick
                            raise
                        # This record's alone (one the app user may not read, say): every later deal waited behind
                        # it, tick after tick. Named in the log and the tick; a run of the job for it takes it later.
                        context.log.error(f"webhook {delivery.id}: {entity_set}({record_id}) could not be read, "
                                          f"skipped: {exc}")  # fmt: skip
                        unread.append(f"webhook {delivery.id} ({entity_set}({record_id})): {exc}")
                        row = None
                    if row is not None and int(row.get("statecode") or 0) in BY_SET[entity_set].ready:
                        _add(requests, job, entity_set, record_id, trigger_version(row), f"webhook {delivery.id}")
                    cursor["deliveries"] = delivery_cursor
                for table in tables:
                    # One table's change tracking failing (turned off, say) leaves the webhooks' deals and the
                    # other tables' changes to run: it dropped every run of the tick, tick after tick.
                    try:
                        rows = _changed_rows(client, table, deltas, seen, context.log, self.sync.sync_existing)
                    except ConnectorError as exc:
                        context.log.error(f"{table.entity_set}: changes could not be read: {exc}")
                        unread.append(f"{table.entity_set}: {exc}")
                        continue
                    for row in rows:
                        _add(requests, job, table.entity_set, str(row[table.key]), trigger_version(row),
                             "change tracking")  # fmt: skip
            except ConnectorError as exc:
                return dg.SkipReason(f"Dynamics 365 Sales could not be read: {exc}")
            finally:
                client.close()
            cursor["delta"], cursor["versions"] = deltas, seen
            context.update_cursor(json.dumps(cursor))
            if not requests and unread:
                return dg.SkipReason("Dynamics 365 Sales changes could not be read: " + "; ".join(unread))
            if not requests:
                return dg.SkipReason("no Sales record started or changed a deal")
            return list(requests.values())

        return dynamics_sales_changes


def _changed_rows(client, table, deltas: dict, seen: dict, log, sync_existing: bool) -> list[dict]:
    """Rows of `table` that changed since the last tick and start a document.

    Normally the delta link's answer. With no delta link yet, the whole table: its rows start documents only
    when `sync_existing` (else this read only marks where tracking starts). With an expired one, the whole table
    again, of which only versions newer than any read before count: what changed meanwhile, nothing twice.
    """
    select = [table.key, "statecode", "versionnumber"]
    first, restarted = table.entity_set not in deltas, False
    try:
        changes = client.changes(
            table.entity_set, key=table.key, select=select, delta_link=deltas.get(table.entity_set)
        )
    except DeltaTokenExpired as exc:
        log.warning(str(exc))
        changes, restarted = client.changes(table.entity_set, key=table.key, select=select), True
    deltas[table.entity_set] = changes.delta_link
    newest = seen.get(table.entity_set, 0)
    seen[table.entity_set] = max([newest, *(trigger_version(row) for row in changes.rows)])
    if first and not sync_existing:
        return []
    rows = [r for r in changes.rows if trigger_version(r) > newest] if restarted else changes.rows
    return [r for r in rows if int(r.get("statecode") or 0) in table.ready]


def _add(requests: dict, job, entity_set: str, record_id: str, version: int, via: str) -> None:
    key = f"{entity_set}:{record_id}:{version}"
    requests.setdefault(
        key,
        dg.RunRequest(
            run_key=key,
            job_name=job.name,
            run_config={
                "ops": {"sync_deal": {"config": {"entity_set": entity_set, "record_id": record_id, "version": version}}}
            },  # fmt: skip
            tags={"sales/record": f"{entity_set}({record_id})", "sales/version": str(version), "sales/via": via},
        ),
    )
