"""Looker figures → journals in an ERP: one partitioned asset `<system>/<name>_journal` per configured journal.

Each is a graph of four ops you can watch in the run: `plan` (Looker rows → lines; the preview
shown as metadata), `validate` (accounts, dimensions, period, balance; nothing is written when it
fails), `post` (find by natural key, write what is missing) and `verify` (read back, compare). It
is partitioned like its Looker query and downstream of it, so lineage reads ERP → warehouse →
Looker → journal. A new materialization of the Looker asset triggers the journal through a
sensor; with `approval: required` it only previews the plan, and a person materializes the
journal after reading it. The ops hand each other nothing but the audit store's record of the
run's document, so steps may run in separate processes or pods. The engine does the work
(engine/); this module wires it into Dagster.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
from pydantic import Field

from ..audit.config import AuditConfig
from ..audit.store import AuditStore, DocumentRecord, open_audit_store
from ..core.errors import ConfigError
from ..core.journal_mapping import JournalMapping
from ..core.posting import Plan, PostingTarget, Problem
from ..engine.journal import Decision, JournalSpec, LookerRows, build_plan, choose_document, looker_rows, plan_preview
from ..engine.post import PostingEngine, PostingRefused, VerificationFailed, plan_problems
from ..systems.looker.config import LookerConfig, LookerQueryConfig
from .looker import asset_key as looker_asset_key
from .looker import table_name as looker_table
from .materializations import FIGURES_RUN_TAG, on_each_materialization
from .partitions import partitions_def


@dataclass(frozen=True)
class JournalFlow:
    """A system's journal flow: its group (asset prefix, resource key, pool) and how to open its target."""

    spec: JournalSpec
    group: str
    kind: str
    open_target: Callable[[dg.ConfigurableResource], PostingTarget]


class JournalRunConfig(dg.Config):
    preview: bool = Field(
        False, description="Plan and validate only: show the plan, write nothing (what approval: required runs)."
    )


@dataclass(frozen=True)
class _Journal:
    """One configured journal and everything its steps need."""

    flow: JournalFlow
    mapping: JournalMapping
    query: LookerQueryConfig
    data_dir: Path
    audit: AuditConfig

    @property
    def key(self) -> dg.AssetKey:
        return dg.AssetKey([self.flow.group, f"{self.mapping.name}_journal"])

    @property
    def name(self) -> str:  # the flow's name in the audit store and `mlconnector replay --flow`
        return self.key.to_user_string()

    @contextmanager
    def engine(self, context) -> Iterator[PostingEngine]:
        audit = open_audit_store(self.audit, self.data_dir)
        target = self.flow.open_target(getattr(context.resources, self.flow.group))
        try:
            yield PostingEngine(target, audit, run_id=context.run_id, progress=context.log.info)
        finally:
            target.close()
            audit.close()

    def record_of_run(self, audit: AuditStore, context) -> DocumentRecord:
        """The document this run's plan step recorded (steps share no memory, only the audit store)."""
        partition, _ = _partition(context)
        # an unpartitioned journal's documents are its posting dates' (engine/journal.build_plan)
        mine = audit.documents_of_run(self.name, partition or None, context.run_id)
        if not mine:
            raise dg.Failure(f"the plan step of run {context.run_id} recorded no document for {self.name} {partition}")
        return mine[-1]


def _partition(context) -> tuple[str, date | None]:
    if not context.has_partition_key:
        return "", None
    window = context.partition_time_window
    return context.partition_key, (window.end - timedelta(microseconds=1)).date()  # an hour's too


def _problems_md(problems: list[str]) -> dg.MetadataValue:
    return dg.MetadataValue.md("\n".join(f"- {p}" for p in problems[:200]))


# -- the steps ----------------------------------------------------------------------------------------


def _plan_step(journal: _Journal, context, preview: bool):
    partition, last_day = _partition(context)
    store = context.resources.warehouse.open()
    table, upstream = looker_table(journal.query), looker_asset_key(journal.query).to_user_string()
    if not store.table_exists(table):
        raise dg.Failure(f"{table} does not exist yet: materialize {upstream} first")
    window = (context.partition_time_window.start, context.partition_time_window.end) if partition else None
    rows = looker_rows(upstream, store.read_table(table, window), journal.query.fields)
    if not partition:
        _refuse_figures_replaced_since(journal, context, rows, upstream)
    with journal.engine(context) as engine:
        dimensions = journal.flow.spec.dimensions(journal.mapping, engine.target)
        built, problems = build_plan(
            journal.flow.spec,
            journal.mapping,
            rows,
            flow=journal.name,
            partition=partition,
            partition_last_day=last_day,
            dimensions=dimensions,
        )
        problems += plan_problems(built)
        if preview:
            problems += engine.target.validate(built)
        if _figures_gone_from_a_journal(engine, built, problems):
            problems = []  # a change like any other: reversed by a difference journal, or refused naming it
        decision = None
        try:
            if not problems:
                decision = choose_document(engine, journal.flow.spec, journal.mapping, built, preview=preview)
        except PostingRefused as changed:  # figures changed; or a journal left unfinished could not be finished
            raise dg.Failure(
                description=str(changed), metadata={"differences": _problems_md(changed.problems)}
            ) from None
        metadata = _plan_metadata(decision.plan if decision else built, built, decision, problems, len(rows.rows))
        context.log_event(
            dg.AssetObservation(
                asset_key=journal.key,
                partition=partition or None,
                metadata={"plan": "preview" if preview else "to post", **metadata},
            )
        )
        if problems:
            raise dg.Failure(
                description=f"{journal.name} {partition}: {len(problems)} problem(s), nothing was written:\n"
                + "\n".join(p.describe() for p in problems[:50]),
                metadata=metadata,
            )
        if not preview:
            _record_decision(engine, decision)
    if not preview:
        yield dg.Output(None, metadata=metadata)


def _figures_gone_from_a_journal(engine: PostingEngine, plan: Plan, problems: list[Problem]) -> bool:
    """The period's figures went to nothing (no rows, or none with an amount) while a journal is posted for it.
    Its plan has no lines, plan_problems' only problem for it; with nothing under the key it is refused as such."""
    return not plan.lines and len(problems) == 1 and engine.find(plan) is not None


def _refuse_figures_replaced_since(journal: _Journal, context, rows: LookerRows, upstream: str) -> None:
    """A run started for one materialization of an unpartitioned query finds the table replaced whole by a later
    one (two deliveries, or scheduled runs, before the journal ran): planning the later figures posted their
    date's journal twice over and the earlier date's never. It stops instead, naming both runs."""
    started_for = context.run.tags.get(FIGURES_RUN_TAG)
    if not started_for:
        return
    # The table holds its latest materialization's figures: rows or none (an empty one carries no run id).
    latest = context.instance.get_latest_materialization_event(looker_asset_key(journal.query))
    held = [latest.run_id] if latest is not None else sorted({source.run_id for source, _ in rows.rows})
    if not held or started_for in held:
        return
    raise dg.Failure(
        description=f"{journal.name}: this run was started for the figures Looker run {started_for} materialized into "
        f"{upstream}, which run {', '.join(held)} has replaced since; nothing was planned or written. Their journal "
        f"is not posted: re-execute run {started_for} (a delivery's run loads the same delivery again, and its "
        "journal follows; a run that queried Looker gets Looker's figures as they are now). The newer figures' "
        "journal is posted by the run their own materialization starts.",
        metadata={"started_for": started_for, "table_holds": ", ".join(held)},
    )


def _record_decision(engine: PostingEngine, decision: Decision) -> None:
    audit = engine.audit
    if decision.outcome == "no_change":  # the journals posted already add up: verify the latest again
        records = audit.documents_for(decision.plan.flow, decision.plan.partition)
        engine.record(audit.plan(records[-1]))
        return
    original = audit.find_document(decision.plan.flow, decision.plan.partition, decision.adjusts_key or "")
    engine.record(decision.plan, adjusts=original.id if original else None)


def _plan_metadata(shown: Plan, built: Plan, decision: Decision | None, problems: list[Problem], rows: int) -> dict:
    return {
        "document_key": shown.document_key,
        "decision": decision.note if decision else "refused: see problems",
        "company": shown.company,
        **{k: str(v) for k, v in shown.header.items()},
        "looker_rows": rows,
        "lines": len(shown.lines),
        "total_debit": str(shown.total_debit),
        "total_credit": str(shown.total_credit),
        "balance": str(shown.balance),
        "rounding_difference": ", ".join(f"{c} {format(d, 'f')}" for c, d in built.rounding_difference.items()) or "0",
        "plan_digest": shown.digest,
        **{k: dg.MetadataValue.md(v) for k, v in plan_preview(shown, problems).items()},
    }


def _validate_step(journal: _Journal, context):
    with journal.engine(context) as engine:
        record = journal.record_of_run(engine.audit, context)
        stored = engine.audit.plan(record)
        yield dg.AssetCheckResult(
            asset_key=journal.key,
            check_name="balanced",
            passed=stored.balance == 0,
            description=f"debits {stored.total_debit} and credits {stored.total_credit}",
            metadata={"total_debit": str(stored.total_debit), "total_credit": str(stored.total_credit)},
        )
        if record.state != "verified":
            try:
                engine.validate(stored, record)
            except PostingRefused as refused:
                raise dg.Failure(
                    description=str(refused), metadata={"problems": _problems_md(refused.problems)}
                ) from None
        yield dg.Output(None, "validated", metadata={"document_key": stored.document_key, "lines": len(stored.lines)})


def _post_step(journal: _Journal, context):
    with journal.engine(context) as engine:
        record = journal.record_of_run(engine.audit, context)
        try:
            result = engine.post(engine.audit.plan(record), record)
        except PostingRefused as refused:
            raise dg.Failure(description=str(refused), metadata={"problems": _problems_md(refused.problems)}) from None
        metadata = {
            "document_number": result.number,
            "outcome": result.summary(),
            "lines_written": result.lines_written,
            "lookups": engine.lookups,
            **engine.target.metadata(),
        }
    yield dg.Output(None, metadata=metadata)


def _verify_step(journal: _Journal, context):
    with journal.engine(context) as engine:
        record = journal.record_of_run(engine.audit, context)
        stored = engine.audit.plan(record)
        try:
            result = engine.verify(stored, record)
        except VerificationFailed as failed:
            yield dg.AssetCheckResult(
                asset_key=journal.key, check_name="posted_matches_plan", passed=False, description=str(failed)[:2000]
            )
            raise dg.Failure(description=str(failed)) from None
        yield dg.AssetCheckResult(
            asset_key=journal.key,
            check_name="posted_matches_plan",
            passed=True,
            description=f"{result.number}: {len(stored.lines)} lines as planned",
        )
        yield dg.Output(
            None,
            "result",
            metadata={
                "document_number": result.number,
                "document_key": stored.document_key,
                "company": stored.company,
                "outcome": result.summary(),
                "lines": len(stored.lines),
                "lines_written": result.lines_written,
                "total_debit": str(stored.total_debit),
                "total_credit": str(stored.total_credit),
                "plan_digest": stored.digest,
                **({"adjusts": stored.adjusts} if stored.adjusts else {}),
                **engine.target.metadata(),
            },
        )


# -- wiring -------------------------------------------------------------------------------------------


def _journal_asset(journal: _Journal) -> dg.AssetsDefinition:
    flow, query, key = journal.flow, journal.query, journal.key
    prefix = f"{flow.group}__{journal.mapping.name}_journal"
    resources = {flow.group}

    @dg.op(
        name=f"{prefix}__plan",
        ins={"looker": dg.In(dg.Nothing)},
        out=dg.Out(dg.Nothing, is_required=False),  # not yielded by a preview: nothing downstream runs
        required_resource_keys=resources | {"warehouse"},
        pool=flow.group,  # one ERP's writes share its pool with its loads (dagster.yaml)
        description=f"Looker rows of {looker_asset_key(query).to_user_string()} → the journal's lines; shows the plan.",
    )
    def plan(context: dg.OpExecutionContext, config: JournalRunConfig):
        yield from _plan_step(journal, context, config.preview)

    @dg.op(
        name=f"{prefix}__validate",
        ins={"planned": dg.In(dg.Nothing)},
        out={"validated": dg.Out(dg.Nothing), "balanced": dg.Out(is_required=False)},
        required_resource_keys=resources,
        pool=flow.group,
        description="Accounts and dimension values exist and are active, the period is open, debits equal credits.",
    )
    def validate(context: dg.OpExecutionContext):
        yield from _validate_step(journal, context)

    @dg.op(
        name=f"{prefix}__post",
        ins={"validated": dg.In(dg.Nothing)},
        out=dg.Out(dg.Nothing),
        required_resource_keys=resources,
        pool=flow.group,
        description="Finds the journal by its natural key; writes the header and the lines it lacks.",
    )
    def post(context: dg.OpExecutionContext):
        yield from _post_step(journal, context)

    @dg.op(
        name=f"{prefix}__verify",
        ins={"posted": dg.In(dg.Nothing)},
        out={"result": dg.Out(io_manager_key="warehouse_io"), "matches": dg.Out(is_required=False)},
        required_resource_keys=resources,
        pool=flow.group,
        description="Reads the journal back and compares every line with the plan; records it in the audit store.",
    )
    def verify(context: dg.OpExecutionContext):
        yield from _verify_step(journal, context)

    checks = [
        dg.AssetCheckSpec("balanced", asset=key, description="The journal's debits equal its credits."),
        dg.AssetCheckSpec(
            "posted_matches_plan", asset=key, description="Read back from the ERP, every line is the planned one."
        ),
    ]
    check_output = "__".join(key.path)

    @dg.graph_asset(
        name=key.path[-1],
        key_prefix=[flow.group],
        group_name=flow.group,
        kinds={flow.kind, "looker"},
        partitions_def=partitions_def(query.partition) if query.partition else None,
        ins={"looker": dg.AssetIn(key=looker_asset_key(query), dagster_type=dg.Nothing)},
        check_specs=checks,
        description=(journal.mapping.description or f"{flow.spec.system} journal from Looker {query.name}.")
        + f" Posted into {flow.spec.company(journal.mapping)}; approval {journal.mapping.approval}; "
        f"on_change {journal.mapping.on_change}.",
        metadata={
            "looker_query": query.name,
            "approval": journal.mapping.approval,
            "on_change": journal.mapping.on_change,
        },
    )
    def journal_asset(looker):
        validated, balanced = validate(plan(looker))
        result, matches = verify(post(validated))
        return {"result": result, f"{check_output}_balanced": balanced, f"{check_output}_posted_matches_plan": matches}

    return journal_asset


def preview_config(key: dg.AssetKey) -> dict:
    """Run config that makes a journal run only plan and preview (its ops sit inside the asset's graph)."""
    graph = "__".join(key.path)
    return {"ops": {graph: {"ops": {f"{graph}__plan": {"config": {"preview": True}}}}}}


def _sensor(journal: _Journal, job) -> dg.SensorDefinition:
    preview = journal.mapping.approval == "required"
    upstream = looker_asset_key(journal.query)

    return on_each_materialization(
        name=f"{journal.flow.group}_{journal.mapping.name}_journal_on_new_figures",
        asset_key=upstream,
        job=job,
        description=f"New figures in {upstream.to_user_string()} "
        + (
            "preview the journal's plan (approval: required: a person materializes it after reading it)."
            if preview
            else "post the journal."
        ),
        run_config=preview_config(journal.key) if preview else {},
        tags={"mlconnector/journal": journal.mapping.name, "mlconnector/preview": str(preview).lower()},
    )


def build_journals(
    flow: JournalFlow, journals: list[JournalMapping], looker: LookerConfig | None, data_dir: Path, audit: AuditConfig
) -> dg.Definitions:
    if not journals:
        return dg.Definitions()
    if looker is None or not looker.enabled:
        raise ConfigError(f"{flow.group}.journals post Looker queries: configure the looker section")
    queries = {q.name: q for q in looker.queries}
    assets, jobs, sensors = [], [], []
    for mapping in journals:
        query = queries.get(mapping.looker_query)
        if query is None:
            raise ConfigError(
                f"{flow.group}.journals[{mapping.name}].looker_query {mapping.looker_query!r} is not in looker.queries "
                f"(have: {', '.join(queries) or 'none'})"
            )
        if query.partition is None and mapping.posting_date_column is None:
            raise ConfigError(
                f"{flow.group}.journals[{mapping.name}]: Looker query {query.name} is not partitioned, so the posting "
                "date must come from posting_date_column"
            )
        journal = _Journal(flow, mapping, query, data_dir, audit)
        asset = _journal_asset(journal)
        assets.append(asset)
        job = dg.define_asset_job(
            f"{flow.group}_{mapping.name}_journal",
            selection=dg.AssetSelection.assets(asset.key),
            partitions_def=asset.partitions_def,
            description=f"Post the {mapping.name} journal into {flow.spec.system}.",
        )
        jobs.append(job)
        sensors.append(_sensor(journal, job))
    return dg.Definitions(assets=assets, jobs=jobs, sensors=sensors)
