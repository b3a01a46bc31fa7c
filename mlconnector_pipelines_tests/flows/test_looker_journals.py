"""Business Central → warehouse → Looker → an F&O general journal, through Dagster, over HTTPS.

The journal asset is the demo's: Looker's weekly marketplace fees per BC sales area, mapped to F&O
cost centres and offset to accrued liabilities. What lands in the F&O sandbox is compared with the
Looker rows and with the sandbox's own journals; `mlconnector trace` walks a line back.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import dagster as dg
import pytest
import yaml
from click.testing import CliRunner

from mlconnector_pipelines.cli import main
from mlconnector_pipelines.config import parse_config, sandbox_profile
from mlconnector_pipelines.definitions import build_definitions
from mlconnector_pipelines.flows.materializations import FIGURES_RUN_TAG
from mlconnector_pipelines.sandbox.finance_operations import FEE_JOURNAL
from mlconnector_pipelines.sandbox.looker import LookerSettings

from ..conftest import FAST_HTTP, SandboxAdmin, run_bc_job, start_sandbox

pytestmark = pytest.mark.slow
WEEK = "2026-03-02"
JOURNAL_JOB = "finance_operations_fee_allocation_journal"
KEY = f"MLC fee_allocation {WEEK}"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("fo-flow")
    running, sandbox_dir = start_sandbox(
        tmp_path_factory, looker=LookerSettings(warehouse=data_dir / "warehouse.duckdb", query_task_seconds=0.2)
    )
    admin = SandboxAdmin(running)
    admin.data_dir = sandbox_dir
    env = type("Env", (), {})()
    env.admin, env.data_dir, env.running = admin, data_dir, running
    env.config = lambda **journal: config(env, **journal)
    assert run_bc_job(env.config(), partition_range=("2026-03-01", "2026-03-07")).success
    yield env
    admin.http.close()
    running.stop()


def config(env, **journal):
    raw = sandbox_profile(env.admin.data_dir, env.admin.url)
    raw.update(data_dir=str(env.data_dir), sap_business_one=None)
    raw["business_central"]["partitions"]["start"] = "2026-03-01"
    raw["business_central"]["http"] = dict(FAST_HTTP)
    raw["looker"]["http"] = {**FAST_HTTP, "requests_per_minute": 6000}
    raw["looker"]["query_task_poll_seconds"] = 0.05
    for query in raw["looker"]["queries"]:
        if query.get("partition"):
            query["partition"]["start"] = "2026-03-01"
    raw["finance_operations"]["http"] = dict(FAST_HTTP)
    raw["finance_operations"]["journals"] = [{**FEE_JOURNAL, **journal}]
    return parse_config(raw)


def run(cfg, job: str, partition: str = WEEK, instance=None, run_config=None) -> dg.ExecuteInProcessResult:
    return (
        build_definitions(cfg)
        .resolve_job_def(job)
        .execute_in_process(
            partition_key=partition,
            instance=instance or dg.DagsterInstance.ephemeral(),
            run_config=run_config,
            raise_on_error=False,
        )
    )


def journals(env, key: str | None = None) -> list[dict]:
    found = json.loads(env.admin.http.get("/_sandbox/finance_operations/journals").content, parse_float=Decimal)
    return [j for j in found if key is None or j["Description"] == key]


def looker_fees(env) -> dict[str, Decimal]:
    import duckdb

    with duckdb.connect(str(env.data_dir / "warehouse.duckdb"), read_only=True) as con:
        rows = con.sql(
            "SELECT fee_allocation_area, fee_allocation_fee_amount FROM looker_fee_allocation "
            "WHERE _window_start = TIMESTAMP '2026-03-02' ORDER BY _row_number"
        ).fetchall()
    return {area: Decimal(fee) for area, fee in rows}


def metadata(result: dg.ExecuteInProcessResult) -> dict:
    [event] = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        e.event_specific_data.check_name: e.event_specific_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def test_the_looker_figures_land_once_as_a_journal_whose_lines_trace_back_to_their_rows(env):
    cfg = env.config()
    assert run(cfg, "looker_fee_allocation").success
    fees = looker_fees(env)
    assert fees and "NORTH" in fees
    result = run(cfg, JOURNAL_JOB)
    assert result.success
    steps = {e.step_key.rsplit("__", 1)[-1] for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
    assert steps == {"plan", "validate", "post", "verify"}  # the four ops, visible in the run
    [journal] = journals(env, KEY)
    meta = metadata(result)
    assert meta["document_number"] == journal["JournalBatchNumber"] and meta["outcome"].startswith("posted as")
    assert checks(result) == {"balanced": True, "posted_matches_plan": True}
    # Each area's fee on its cost centre, rounded once to cents; the offset takes the total.
    cost_centres = FEE_JOURNAL["dimensions"]["CostCenter"]
    posted = {
        line["AccountDisplayValue"]: Decimal(str(line["DebitAmount"])) - Decimal(str(line["CreditAmount"]))
        for line in journal["lines"]
    }
    for area, fee in fees.items():
        centre = cost_centres["map"].get(area, cost_centres["default"])
        assert posted[f"618200-002-{centre}-025"] == fee.quantize(Decimal("0.01"))
    assert sum(posted.values()) == 0 and posted["220500-002"] == -sum(
        f.quantize(Decimal("0.01")) for f in fees.values()
    )
    # `mlconnector trace`: F&O line → planned line → Looker row → the warehouse tables Looker read.
    path = env.data_dir / "connector.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    traced = CliRunner().invoke(main, ["trace", "--config", str(path), f"usrt/{journal['JournalBatchNumber']}/1"])
    assert traced.exit_code == 0, traced.output
    assert f"Finance and Operations usrt {journal['JournalBatchNumber']}: {KEY} (verified)" in traced.output
    assert "← row 1 of looker/fee_allocation (looker api, run " in traced.output
    assert "← which read the warehouse tables of business_central/bc_general_ledger_entries" in traced.output
    # The whole journal: the lineage is built once for it, not once per line (seconds each).
    from mlconnector_pipelines import replay as replay_module

    built = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            replay_module, "asset_graph", lambda c, build=replay_module.asset_graph: built.append(1) or build(c)
        )
        whole = replay_module.trace(cfg, f"usrt/{journal['JournalBatchNumber']}")
    assert sum("← which read the warehouse tables" in line for line in whole) == len(fees) and built == [1]
    # A rerun with the same figures writes nothing and says so.
    again = run(cfg, JOURNAL_JOB)
    assert again.success and metadata(again)["outcome"].startswith(f"already posted as {journal['JournalBatchNumber']}")
    assert len(journals(env, KEY)) == 1


def daily_fees_config(env, day: str):
    """An unpartitioned Looker query of one day's fees (as a delivery carries them), and its journal dated by a column."""
    raw = config(env).model_dump(mode="json")
    fees = next(q for q in raw["looker"]["queries"] if q["name"] == "fee_allocation")
    raw["looker"]["queries"].append(
        {**fees, "name": "daily_fees", "partition": None, "upstream": fees["upstream"],
         "fields": [*fees["fields"], "fee_allocation.posting_date"],
         "filters": {**fees["filters"], "fee_allocation.posting_date": day}}
    )  # fmt: skip
    journal = {**FEE_JOURNAL, "name": "daily_fees", "looker_query": "daily_fees", "on_change": "adjust",
               "posting_date_column": "fee_allocation.posting_date"}  # fmt: skip
    raw["finance_operations"]["journals"] = [journal]
    return parse_config(raw)


def test_an_unpartitioned_query_posts_one_journal_per_posting_date_through_the_four_ops(env):
    """A Looker query without partitions (run on a schedule, or fed by deliveries) feeds a journal dated by a
    column. Each posting date is a journal of its own, found again by a rerun of its figures; under one key for
    the journal, the next day's figures were taken for a change to the first day's journal and adjusted it."""

    for day in ("2026-03-02", "2026-03-03", "2026-03-02"):
        cfg = daily_fees_config(env, day)
        assert run(cfg, "looker_daily_fees", partition=None).success
        result = run(cfg, "finance_operations_daily_fees_journal", partition=None)
        assert result.success, [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    first, second = journals(env, "MLC daily_fees 2026-03-02"), journals(env, "MLC daily_fees 2026-03-03")
    assert len(first) == 1 and len(second) == 1  # each day once; the third run found the first day's journal
    assert metadata(result)["outcome"].startswith(f"already posted as {first[0]['JournalBatchNumber']}")
    assert not [j for j in journals(env) if j["Description"].startswith("MLC daily_fees") and "adj" in j["Description"]]


def test_a_journal_run_for_figures_a_later_materialization_replaced_stops_naming_both_and_posts_nothing(env):
    """Two days' figures of an unpartitioned query materialized before the first day's journal ran: it planned the
    table as it stood, the second day's, so that day's journal was posted by both runs and the first day's never.
    The first run stops, naming both Looker runs; the second posts its day; the first day's figures loaded again
    post theirs."""
    instance = dg.DagsterInstance.ephemeral()
    looker_runs = {}
    for day in ("2026-03-04", "2026-03-05"):
        looker_runs[day] = run(daily_fees_config(env, day), "looker_daily_fees", partition=None, instance=instance)
        assert looker_runs[day].success
    cfg = daily_fees_config(env, "2026-03-05")
    job = build_definitions(cfg).resolve_job_def("finance_operations_daily_fees_journal")

    def journal_for(looker_run):
        return job.execute_in_process(
            instance=instance, tags={FIGURES_RUN_TAG: looker_run.run_id}, raise_on_error=False
        )

    stale = journal_for(looker_runs["2026-03-04"])
    assert not stale.success
    [failure] = [e.step_failure_data.error.to_string() for e in stale.all_events if e.is_step_failure]
    assert looker_runs["2026-03-04"].run_id in failure and looker_runs["2026-03-05"].run_id in failure, failure
    assert journals(env, "MLC daily_fees 2026-03-04") == journals(env, "MLC daily_fees 2026-03-05") == []
    assert journal_for(looker_runs["2026-03-05"]).success
    again = run(daily_fees_config(env, "2026-03-04"), "looker_daily_fees", partition=None, instance=instance)
    # Replaced by figures with no rows at all (a day without fees), which carry no run id in the table.
    empty = run(daily_fees_config(env, "2020-01-01"), "looker_daily_fees", partition=None, instance=instance)
    assert empty.success and metadata(empty)["rows"] == 0
    emptied = journal_for(again)
    [failure] = [e.step_failure_data.error.to_string() for e in emptied.all_events if e.is_step_failure]
    assert again.run_id in failure and empty.run_id in failure, failure
    again = run(daily_fees_config(env, "2026-03-04"), "looker_daily_fees", partition=None, instance=instance)
    assert journal_for(again).success
    assert len(journals(env, "MLC daily_fees 2026-03-04")) == len(journals(env, "MLC daily_fees 2026-03-05")) == 1


def test_late_data_is_refused_by_default_and_adjust_posts_a_difference_journal(env):
    cfg = env.config()
    if not journals(env, KEY):
        assert run(cfg, "looker_fee_allocation").success and run(cfg, JOURNAL_JOB).success
    [company] = [c for c in env.admin.companies() if c["name"] == "CRONUS USA, Inc."]
    template = env.admin.records(company["id"], "generalLedgerEntries")[0]
    env.admin.upsert(
        company["id"],
        "generalLedgerEntries",
        {
            **{k: template[k] for k in ("accountId", "documentType")},
            "id": "",
            "entryNumber": 99_000_001,
            "accountNumber": "40100",
            "postingDate": "2026-03-04",
            "documentNumber": "LATE-1",
            "description": "Late sale",
            "debitAmount": 0,
            "creditAmount": 1000,
        },
        modified_at="2026-03-05T10:00:00.000Z",
    )
    assert run_bc_job(cfg, partition_key="2026-03-05").success
    assert run(cfg, "looker_fee_allocation").success
    refused = run(cfg, JOURNAL_JOB)
    assert not refused.success
    failure = next(
        e for e in refused.all_events if e.event_type_value == "STEP_FAILURE"
    ).event_specific_data.error.to_string()
    [original] = journals(env, KEY)
    assert f"already exists as {original['JournalBatchNumber']}" in failure and "with other figures" in failure
    assert "25.00" in failure or "new plan" in failure
    adjusted = run(env.config(on_change="adjust"), JOURNAL_JOB)
    assert adjusted.success
    [difference] = journals(env, f"{KEY} adj1")
    amounts = sorted(
        Decimal(str(line["DebitAmount"])) - Decimal(str(line["CreditAmount"])) for line in difference["lines"]
    )
    assert amounts == [Decimal("-25"), Decimal("25")]  # 2.5% of the late 1,000 sale, and its offset
    assert journals(env, KEY) == [original]  # posted entries are never edited


def test_figures_gone_to_nothing_are_refused_by_default_and_adjust_reverses_the_posted_journal(env):
    """A week whose Looker figures went to nothing (the sales behind them were reversed) while its journal is posted:
    its plan has no lines, and the run stopped at 'the document has no lines', so even `on_change: adjust` could not
    take the journal back. It is a change like any other: refused naming the journal, or reversed by a difference
    journal."""
    from mlconnector_pipelines.audit.store import open_audit_store
    from mlconnector_pipelines.core.posting import SourceRow
    from mlconnector_pipelines.engine.journal import LookerRows, build_plan
    from mlconnector_pipelines.engine.post import PostingEngine
    from mlconnector_pipelines.flows.finance_operations import SPEC
    from mlconnector_pipelines.systems.finance_operations.resource import FinanceOperationsResource

    week, job = "2026-03-09", "finance_operations_fee_gone_journal"  # a week the warehouse has no sales of
    cfg = env.config(name="fee_gone")
    mapping = cfg.finance_operations.journals[0]
    target = FinanceOperationsResource.from_section(cfg.finance_operations, cfg.data_dir).journal_target()
    audit = open_audit_store(cfg.audit, cfg.data_dir)
    values = {"fee_allocation.area": "NORTH", "fee_allocation.fee_amount": Decimal("12.50")}
    rows = LookerRows(
        "looker/fee_allocation", [(SourceRow("looker/fee_allocation", "looker api", "r", week, 1, values), values)]
    )
    posted, _ = build_plan(SPEC, mapping, rows, flow="finance_operations/fee_gone_journal", partition=week,
                           partition_last_day=date(2026, 3, 15), dimensions=SPEC.dimensions(mapping, target))  # fmt: skip
    PostingEngine(target, audit, run_id="earlier").run(posted)  # as the week's figures were then
    target.close()
    audit.close()
    [original] = journals(env, posted.document_key)
    assert run(cfg, "looker_fee_allocation", partition=week).success  # the week's figures: none now

    refused = run(cfg, job, partition=week)
    assert not refused.success
    failure = next(e for e in refused.all_events if e.event_type_value == "STEP_FAILURE")
    assert f"already exists as {original['JournalBatchNumber']}" in failure.event_specific_data.error.to_string()

    assert run(env.config(name="fee_gone", on_change="adjust"), job, partition=week).success
    [difference] = journals(env, f"{posted.document_key} adj1")
    amounts = sorted(
        (line["AccountDisplayValue"], Decimal(str(line["DebitAmount"])) - Decimal(str(line["CreditAmount"])))
        for line in difference["lines"]
    )
    assert amounts == [("220500-002", Decimal("12.5")), ("618200-002-001-025", Decimal("-12.5"))]
    assert journals(env, posted.document_key) == [original]


def test_approval_required_previews_the_plan_and_writes_nothing(env):
    cfg = env.config(approval="required", name="fee_review")
    instance = dg.DagsterInstance.ephemeral()
    assert run(cfg, "looker_fee_allocation", instance=instance).success
    defs = build_definitions(cfg)
    sensor = defs.resolve_sensor_def("finance_operations_fee_review_journal_on_new_figures")
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        [request] = list(sensor(context))
    graph = "finance_operations__fee_review_journal"
    assert request.partition_key == WEEK
    assert request.run_config["ops"][graph]["ops"][f"{graph}__plan"]["config"] == {"preview": True}
    preview = run(cfg, "finance_operations_fee_review_journal", instance=instance, run_config=request.run_config)
    assert preview.success and preview.get_asset_materialization_events() == []
    assert journals(env, f"MLC fee_review {WEEK}") == []
    [observation] = [e for e in preview.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    shown = observation.event_specific_data.asset_observation.metadata
    assert shown["plan"].value == "preview" and "618200" in shown["lines"].value and shown["balance"].value == "0.00"
    approved = run(cfg, "finance_operations_fee_review_journal", instance=instance)
    assert approved.success and len(journals(env, f"MLC fee_review {WEEK}")) == 1


def test_the_journal_sensor_asks_for_every_period_materialized_since_its_last_tick(env):
    """Two Looker periods materialized between two ticks (a backfill; deliveries queued while the daemon was down):
    Dagster's asset sensor acted on the newest only and moved past the other, whose journal was never posted."""
    cfg = env.config(name="fee_every")
    instance = dg.DagsterInstance.ephemeral()
    defs = build_definitions(cfg)
    sensor = defs.resolve_sensor_def("finance_operations_fee_every_journal_on_new_figures")

    def tick(cursor):
        return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))

    assert run(cfg, "looker_fee_allocation", partition=WEEK, instance=instance).success
    first = tick(None)
    assert [r.partition_key for r in first.run_requests] == [WEEK]
    for week in ("2026-03-09", WEEK):  # a new period, and the first one again
        assert run(cfg, "looker_fee_allocation", partition=week, instance=instance).success
    second = tick(first.cursor)
    assert [r.partition_key for r in second.run_requests] == ["2026-03-09", WEEK]
    looker_runs = [r.run_id for r in instance.get_runs() if r.job_name == "looker_fee_allocation"][::-1]
    assert [r.tags[FIGURES_RUN_TAG] for r in [*first.run_requests, *second.run_requests]] == looker_runs
    assert len({r.run_key for r in [*first.run_requests, *second.run_requests]}) == 3
    assert tick(second.cursor).run_requests == []


def test_a_row_that_cannot_be_mapped_fails_the_run_naming_it_and_writes_nothing(env):
    cfg = env.config(
        name="fee_strict",
        dimensions={
            **FEE_JOURNAL["dimensions"],
            "CostCenter": {"column": "fee_allocation.area", "map": {"NORTH": "001"}},
        },
    )
    assert run(cfg, "looker_fee_allocation").success
    result = run(cfg, "finance_operations_fee_strict_journal")
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = failure.event_specific_data.error.to_string()
    assert "looker/fee_allocation row" in text and "has no entry in the mapping table" in text
    assert journals(env, f"MLC fee_strict {WEEK}") == []


def test_ping_reads_f_and_o_and_checks_the_journals_legal_entities_and_names(env):
    from mlconnector_pipelines.ping import run_pings

    [fo] = [r for r in run_pings(env.config()) if r.system == "Finance and Operations"]
    assert fo.ok, fo.detail
    assert "legal entities usrt and their journal names found" in fo.detail
    [wrong] = [r for r in run_pings(env.config(journal_name="Nope")) if r.system == "Finance and Operations"]
    assert (
        not wrong.ok and "journal name Nope not found in usrt (have: Accrual, Alloc, AllocClr, GenJrn)" in wrong.detail
    )


def test_the_replay_job_of_a_deployment_no_journal_run_has_written_yet_has_nothing_to_do(env, tmp_path):
    """`mlconnector replay` refuses a data_dir no run wrote (the wrong connector.yaml, most likely); the job runs
    with the deployment's own, where no store yet means nothing recorded: it failed there."""
    cfg = env.config().model_copy(update={"data_dir": tmp_path / "new-deployment"})
    result = (
        build_definitions(cfg)
        .resolve_job_def("replay_journals")
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )
    assert result.success
    [step] = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    assert step.event_specific_data.metadata["audit_store"].value == "none yet"
    assert not (tmp_path / "new-deployment" / "audit.sqlite").exists()


def test_the_replay_job_finishes_a_journal_a_crashed_run_left_half_written(env):
    from mlconnector_pipelines.audit.store import open_audit_store
    from mlconnector_pipelines.engine.journal import LookerRows, build_plan
    from mlconnector_pipelines.engine.post import PostingEngine
    from mlconnector_pipelines.flows.finance_operations import SPEC
    from mlconnector_pipelines.systems.finance_operations.resource import FinanceOperationsResource

    cfg = env.config(name="fee_crash")
    mapping = cfg.finance_operations.journals[0]
    resource = FinanceOperationsResource.from_section(cfg.finance_operations, cfg.data_dir)
    target = resource.journal_target()
    audit = open_audit_store(cfg.audit, cfg.data_dir)
    rows = LookerRows("looker/fee_allocation", [])
    from mlconnector_pipelines.core.posting import SourceRow

    for number, (area, fee) in enumerate([("NORTH", "10.00"), ("SOUTH", "20.00"), ("EAST", "30.00")], start=1):
        values = {"fee_allocation.area": area, "fee_allocation.fee_amount": Decimal(fee)}
        rows.rows.append((SourceRow("looker/fee_allocation", "looker api", "r", None, number, values), values))
    plan, _ = build_plan(
        SPEC,
        mapping,
        rows,
        flow="finance_operations/fee_crash_journal",
        partition=WEEK,
        partition_last_day=__import__("datetime").date(2026, 3, 8),
        dimensions=SPEC.dimensions(mapping, target),
    )

    class Crash(BaseException):
        pass

    def crash(point):
        if point == "after_header":
            raise Crash(point)

    with pytest.raises(Crash):
        PostingEngine(target, audit, run_id="run-killed", checkpoint=crash).run(plan)
    target.close()
    audit.close()
    [half] = journals(env, plan.document_key)
    assert half["lines"] == []
    result = build_definitions(cfg).resolve_job_def("replay_journals").execute_in_process(raise_on_error=False)
    assert result.success
    [done] = journals(env, plan.document_key)
    assert done["JournalBatchNumber"] == half["JournalBatchNumber"] and len(done["lines"]) == 4  # 3 rows, offset


def test_the_same_figures_post_and_release_into_acumatica_once(env):
    from mlconnector_pipelines.sandbox.acumatica import FEE_JOURNAL as ACUMATICA_FEES

    cfg = env.config()
    assert run(cfg, "looker_fee_allocation").success
    result = run(cfg, "acumatica_fee_allocation_journal")
    assert result.success, [e.event_specific_data.error.to_string() for e in result.all_events if e.is_step_failure]
    found = json.loads(
        env.admin.http.get("/_sandbox/acumatica/records/JournalTransaction").content, parse_float=Decimal
    )
    [batch] = [b for b in found if b.get("Description") == KEY]
    assert batch["Status"] in ("Posted", "Unposted")  # released (release: true)
    fees = looker_fees(env)
    subaccounts = ACUMATICA_FEES["subaccount"]
    for area, fee in fees.items():
        sub = subaccounts["map"].get(area, subaccounts["default"])
        [line] = [
            line for line in batch["Details"] if line["TransactionDescription"].startswith(f"Marketplace fees {area} ")
        ]
        assert (line["Account"], line["Subaccount"]) == ("65000", sub)
        assert Decimal(str(line["DebitAmount"])) - Decimal(str(line["CreditAmount"])) == fee.quantize(Decimal("0.01"))
    assert metadata(result)["outcome"].startswith(f"posted as {batch['BatchNbr']}")
    again = run(cfg, "acumatica_fee_allocation_journal")
    assert again.success and metadata(again)["outcome"].startswith("already posted")
    assert (
        len(
            [
                b
                for b in json.loads(env.admin.http.get("/_sandbox/acumatica/records/JournalTransaction").content)
                if b.get("Description") == KEY
            ]
        )
        == 1
    )


def test_looker_vendors_are_kept_in_acumatica_by_key_after_an_approved_preview(env):
    records = {
        "name": "us_vendors",
        "looker_query": "us_vendors",
        "entity": "Vendor",
        "key": "VendorID",
        "fields": {"VendorID": "vendors.number", "VendorName": "vendors.name"},
        "approval": "required",
    }
    raw = env.config().model_dump(mode="json")
    raw["looker"]["queries"].append(
        {
            "name": "us_vendors",
            "model": "mlconnector_demo",
            "explore": "vendors",
            "fields": ["vendors.number", "vendors.name"],
            "filters": {"vendors.company_name": "CRONUS USA^, Inc."},
            "upstream": ["business_central/bc_vendors"],
        }
    )
    raw["acumatica"]["reference_records"] = [records]
    cfg = parse_config(raw)
    assert run(cfg, "looker_us_vendors", partition=None).success
    before = json.loads(env.admin.http.get("/_sandbox/acumatica/records/Vendor").content)
    preview = run(
        cfg,
        "acumatica_us_vendors",
        partition=None,
        run_config={"ops": {"acumatica__us_vendors": {"config": {"preview": True}}}},
    )
    assert preview.success and preview.get_asset_materialization_events() == []
    [observation] = [e for e in preview.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    shown = observation.event_specific_data.asset_observation.metadata
    assert shown["insert"].value > 10 and "| insert | VendorID, VendorName |" in shown["changes"].value
    assert json.loads(env.admin.http.get("/_sandbox/acumatica/records/Vendor").content) == before  # nothing written
    approved = run(cfg, "acumatica_us_vendors", partition=None)
    assert approved.success and checks(approved) == {"all_records_accepted": True}
    after = json.loads(env.admin.http.get("/_sandbox/acumatica/records/Vendor").content)
    assert len(after) == len(before) + shown["insert"].value
    again = run(cfg, "acumatica_us_vendors", partition=None)
    assert again.success and metadata(again)["outcome"].startswith("0 inserted, 0 updated")
