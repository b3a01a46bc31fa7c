"""Looker: the client against the sandbox, the assets end to end over the BC data, the official SDK,
and the sandbox's responses checked against Looker's own OpenAPI spec."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import httpx
import pytest

from mlconnector_pipelines.config import ConnectorConfig, parse_config, sandbox_profile
from mlconnector_pipelines.core.errors import AuthenticationError, ConfigError
from mlconnector_pipelines.definitions import build_definitions
from mlconnector_pipelines.sandbox.business_central.seed import Volumes
from mlconnector_pipelines.sandbox.looker import LookerSettings
from mlconnector_pipelines.sandbox.looker.simulator import LookerSimulator
from mlconnector_pipelines.systems.looker.client import SYNC_ROW_CAP, LookerClient, QuerySpec
from mlconnector_pipelines.warehouse.duckdb_backend import DuckDBWarehouse

from ..conftest import FAST_HTTP, SandboxAdmin, materialization_metadata, run_bc_job, start_sandbox

MODEL = "mlconnector_demo"
DETAIL_FIELDS = [
    "gl_entries.company_name",
    "gl_entries.entry_number",
    "gl_entries.posting_date",
    "gl_entries.debit_amount",
    "gl_entries.credit_amount",
]


def looker_settings(admin: SandboxAdmin, **overrides) -> dict:
    """The sandbox profile's Looker section, pointed at this module's sandbox, with test-speed HTTP."""
    raw = sandbox_profile(admin.data_dir, admin.url)["looker"]
    raw["http"] = {**FAST_HTTP, "requests_per_minute": 6000}
    raw["query_task_poll_seconds"] = 0.05
    raw["queries"][0]["partition"]["start"] = "2026-03-01"
    raw["queries"].append(
        {
            "name": "gl_entry_detail",
            "model": MODEL,
            "explore": "gl_entries",
            "fields": DETAIL_FIELDS,
            "description": "Every G/L entry (no limit).",
        }
    )
    raw.update(overrides)
    return raw


def config_for(env, **looker) -> ConnectorConfig:
    raw = sandbox_profile(env.admin.data_dir, env.admin.url)
    raw.update(
        data_dir=str(env.data_dir),
        sap_business_one=None,
        finance_operations=None,
        acumatica=None,
        looker=looker_settings(env.admin, **looker),
    )
    raw["business_central"]["partitions"]["start"] = "2026-03-01"
    raw["business_central"]["http"] = dict(FAST_HTTP)
    return parse_config(raw)


def start_looker_env(
    tmp_path_factory,
    gl_entries: int = 1500,
    days: tuple[str, str] = ("2026-03-01", "2026-03-07"),
    looker_timezone: str = "UTC",
    **history: datetime,
):
    """A sandbox whose Looker reads a fresh warehouse, loaded with BC data for `days` by the product's own job
    (BC's history: the sandbox's default week, or `history_start` / `history_end`); `looker_timezone` is the
    Looker instance's zone, what a query naming no query_timezone runs in."""
    data_dir = tmp_path_factory.mktemp("looker-warehouse")
    running, sandbox_dir = start_sandbox(
        tmp_path_factory,
        volumes=Volumes(gl_entries=gl_entries),
        looker=LookerSettings(
            warehouse=data_dir / "warehouse.duckdb", query_task_seconds=0.3, timezone=looker_timezone
        ),
        **history,
    )
    admin = SandboxAdmin(running)
    admin.data_dir = sandbox_dir
    env = SimpleNamespace(admin=admin, data_dir=data_dir, running=running)
    env.cfg = config_for(env)
    assert run_bc_job(env.cfg, partition_range=days).success
    env.warehouse = DuckDBWarehouse(env.cfg.duckdb_path)
    return env


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A week of BC data: 13,000 G/L entries, more than Looker's synchronous cap."""
    env = start_looker_env(tmp_path_factory, gl_entries=6500)
    yield env
    env.admin.http.close()
    env.running.stop()


@pytest.fixture
def client(env):
    looker = env.cfg.looker
    c = LookerClient(
        looker.model_copy(update={"query_task_poll_seconds": 0.05}), client_secret="sandbox-looker-client-secret"
    )
    yield c
    c.close()
    env.admin.clear_faults()


def looker_stats(env) -> dict:
    return env.admin.http.get("/_sandbox/looker/state").json()


def run_job(env, name: str, partition_key: str | None = None) -> dg.ExecuteInProcessResult:
    job = build_definitions(env.cfg).resolve_job_def(name)
    return job.execute_in_process(partition_key=partition_key, instance=dg.DagsterInstance.ephemeral())


# -- the assets, end to end --------------------------------------------------------------------------


def test_gl_summary_partition_is_computed_from_the_bc_data_and_typed(env):
    result = run_job(env, "looker_gl_daily_summary", "2026-03-03")
    assert result.success
    meta = materialization_metadata(result, "gl_daily_summary")
    assert meta["filter"] == "2026/03/03 to 2026/03/04"
    # No limit configured: every row, so through a query task (one quota call).
    assert meta["looker_query_calls"] == 1 and meta["looker_query_tasks"] == 1
    assert meta["looker_api_calls"] >= 5  # login, explore metadata, create query, create task, poll, results

    loaded = env.warehouse.query(
        "SELECT gl_entries_company_name, gl_entries_account_number, gl_entries_total_debit, gl_entries_total_credit, "
        "gl_entries_count FROM looker_gl_daily_summary WHERE gl_entries_posting_date = DATE '2026-03-03' ORDER BY 1, 2"
    )
    expected = env.warehouse.query(
        "SELECT _company_name, account_number, sum(debit_amount), sum(credit_amount), count(*) "
        "FROM bc_general_ledger_entries WHERE posting_date = DATE '2026-03-03' GROUP BY ALL ORDER BY 1, 2"
    )
    assert loaded == expected and len(loaded) > 10
    assert {
        r[0] for r in env.warehouse.query("SELECT DISTINCT gl_entries_posting_date FROM looker_gl_daily_summary")
    } == {__import__("datetime").date(2026, 3, 3)}
    types = dict(
        env.warehouse.query(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'looker_gl_daily_summary'"
        )
    )
    assert types["gl_entries_posting_date"] == "DATE"
    assert types["gl_entries_total_debit"].startswith("DECIMAL")
    assert types["gl_entries_count"] == "BIGINT"
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"not_truncated": True, "has_rows": True}

    # Materializing the next window keeps this one; materializing this one again replaces it.
    assert run_job(env, "looker_gl_daily_summary", "2026-03-04").success
    assert run_job(env, "looker_gl_daily_summary", "2026-03-03").success
    per_day = dict(
        env.warehouse.query("SELECT gl_entries_posting_date::VARCHAR, count(*) FROM looker_gl_daily_summary GROUP BY 1")
    )
    assert per_day["2026-03-03"] == len(expected) and set(per_day) == {"2026-03-03", "2026-03-04"}


def test_every_row_arrives_through_a_query_task_past_the_sync_cap(env):
    total = env.warehouse.query("SELECT count(*) FROM bc_general_ledger_entries")[0][0]
    assert total > 12_000
    before = looker_stats(env)
    result = run_job(env, "looker_gl_entry_detail")
    assert result.success
    meta = materialization_metadata(result, "gl_entry_detail")
    assert meta["rows"] == total and meta["looker_query_tasks"] == 1
    assert looker_stats(env)["query_tasks"] == before.get("query_tasks", 0) + 1
    loaded = env.warehouse.query(
        "SELECT count(*), count(DISTINCT (gl_entries_company_name, gl_entries_entry_number)), "
        "sum(gl_entries_debit_amount) FROM looker_gl_entry_detail"
    )[0]
    expected = env.warehouse.query("SELECT count(*), count(*), sum(debit_amount) FROM bc_general_ledger_entries")[0]
    assert loaded == expected


def test_a_query_task_whose_status_is_spelt_capitalized_is_read_when_it_completes(env):
    """Looker's docs tell to fetch the results 'after the status reaches "Complete"'; its server writes `complete`.
    A task answered `Complete` was polled until the task timeout and failed as still running."""
    env.admin.http.post("/_sandbox/looker/dialect", json={"task_status_case": "capitalized"}).raise_for_status()
    try:
        cfg = config_for(env, query_task_timeout_seconds=5)
        job = build_definitions(cfg).resolve_job_def("looker_gl_entry_detail")
        result = job.execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
        answered = env.admin.http.get("/_sandbox/looker/dialect").json()
    finally:
        env.admin.http.post("/_sandbox/looker/dialect", json={"task_status_case": "lower"}).raise_for_status()
    assert answered["task_status_case"] == "capitalized"  # the case: the tasks were answered `Complete`
    assert result.success and materialization_metadata(result, "gl_entry_detail")["looker_query_tasks"] == 1


def test_a_saved_look_is_an_asset_and_feeds_a_downstream_op(env):
    @dg.asset(ins={"balances": dg.AssetIn(key=dg.AssetKey(["looker", "vendor_balances"]))})
    def vendor_review(context, balances) -> dg.MaterializeResult:
        assert list(balances.columns) == [
            "vendors_company_name",
            "vendors_number",
            "vendors_name",
            "vendors_total_balance",
        ]
        return dg.MaterializeResult(
            metadata={"vendors": len(balances), "total": float(balances["vendors_total_balance"].sum())}
        )

    defs = dg.Definitions.merge(build_definitions(env.cfg), dg.Definitions(assets=[vendor_review]))
    job = dg.define_asset_job("review", selection=[dg.AssetKey(["looker", "vendor_balances"]), vendor_review.key])
    defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    result = defs.resolve_job_def("review").execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    vendors, total = env.warehouse.query("SELECT count(*), sum(balance) FROM bc_vendors")[0]
    review = materialization_metadata(result, "vendor_review")
    assert review["vendors"] == vendors and review["total"] == pytest.approx(float(total))


BERLIN_VIEW = """
view: gl {
  sql_table_name: bc_general_ledger_entries ;;
  dimension: company_name { sql: ${TABLE}._company_name ;; }
  dimension: entry_number { type: number sql: ${TABLE}.entry_number ;; }
  dimension_group: modified {
    type: time
    timeframes: [time, date]
    datatype: timestamp
    sql: ${TABLE}.last_modified_date_time ;;
  }
  dimension_group: modified_as_stored {
    type: time
    timeframes: [time]
    datatype: timestamp
    convert_tz: no
    sql: ${TABLE}.last_modified_date_time ;;
  }
}
"""


def load_gl_project(env, tmp_path_factory) -> None:
    """Load the LookML project `tz` (explore `gl`: the G/L entries' change times, BERLIN_VIEW) into the sandbox."""
    project = tmp_path_factory.mktemp("gl-lookml")
    (project / "tz.model.lkml").write_text('connection: "wh"\ninclude: "*.view.lkml"\nexplore: gl {}\n')
    (project / "gl.view.lkml").write_text(BERLIN_VIEW)
    env.admin.http.post("/_sandbox/looker/projects", json={"path": str(project)}).raise_for_status()


@pytest.fixture(scope="module")
def berlin_env(tmp_path_factory):
    """BC data across Berlin's change to summer time (2026-03-29, 01:00 UTC), a LookML project over its G/L
    entries' change times, and a query partitioned by Berlin days on them."""
    env = start_looker_env(
        tmp_path_factory,
        gl_entries=400,
        days=("2026-03-27", "2026-03-30"),
        history_start=datetime(2026, 3, 27, tzinfo=UTC),
        history_end=datetime(2026, 3, 31, tzinfo=UTC),
    )
    load_gl_project(env, tmp_path_factory)
    env.cfg = config_for(
        env,
        queries=[
            {
                "name": "gl_changes_berlin",
                "model": "tz",
                "explore": "gl",
                "fields": [
                    "gl.company_name",
                    "gl.entry_number",
                    "gl.modified_time",
                    "gl.modified_date",
                    "gl.modified_as_stored_time",
                ],  # fmt: skip
                "partition": {
                    "field": "gl.modified_date",
                    "cadence": "daily",
                    "start": "2026-03-27",
                    "timezone": "Europe/Berlin",
                },
            }
        ],
    )
    yield env
    env.admin.http.close()
    env.running.stop()


@pytest.mark.parametrize(
    "day, start, end",
    [
        ("2026-03-28", datetime(2026, 3, 27, 23, tzinfo=UTC), datetime(2026, 3, 28, 23, tzinfo=UTC)),  # CET, +1
        ("2026-03-30", datetime(2026, 3, 29, 22, tzinfo=UTC), datetime(2026, 3, 30, 22, tzinfo=UTC)),  # CEST, +2
    ],
    ids=["winter", "summer"],
)
def test_date_times_of_a_query_run_in_berlin_land_as_the_sources_utc_moments(berlin_env, day, start, end):
    """Looker writes date-times as wall-clock text in the query's zone: the partitions' Europe/Berlin here.
    Stored, they are the moments the source holds (read as UTC they would be an hour or two late); a field
    with convert_tz: no is the database's own value and lands as it is; a date stays the Berlin day."""
    assert run_job(berlin_env, "looker_gl_changes_berlin", day).success
    loaded = berlin_env.warehouse.query(
        "SELECT gl_company_name, gl_entry_number, gl_modified_time, gl_modified_as_stored_time, gl_modified_date "
        f"FROM looker_gl_changes_berlin WHERE _window_start = TIMESTAMPTZ '{start.isoformat()}' ORDER BY 1, 2"
    )
    source = berlin_env.warehouse.query(
        "SELECT _company_name, entry_number, date_trunc('second', last_modified_date_time) "
        "FROM bc_general_ledger_entries WHERE last_modified_date_time >= ? AND last_modified_date_time < ? "
        "ORDER BY 1, 2",
        [start, end],
    )
    assert len(source) > 10
    assert [(c, n, moment) for c, n, moment, _, _ in loaded] == source
    assert [(c, n, as_stored) for c, n, _, as_stored, _ in loaded] == source
    assert {d for *_, d in loaded} == {date.fromisoformat(day)}


NEW_YORK = "America/New_York"
GL_CHANGE_FIELDS = ["gl.company_name", "gl.entry_number", "gl.modified_time"]
# Saved Looks over the G/L entries' change times: one naming no zone, one naming its own.
ZONED_LOOKS = {"90": None, "91": "Asia/Kolkata"}


def save_look(env, look_id: str, query: dict, title: str = "G/L changes") -> None:
    """A saved Look in the sandbox's Looker, as its author would save one in the UI."""
    looker = env.running.services["looker"]
    looker.looks[look_id] = {"title": title, "query_id": looker._store_query(query)["id"]}


def look_query(zone: str | None) -> dict:
    query = {"model": "tz", "view": "gl", "fields": GL_CHANGE_FIELDS, "sorts": ["gl.entry_number"], "limit": "5000"}
    return {**query, "query_timezone": zone} if zone else query


def start_new_york_env(tmp_path_factory, **looker):
    """A Looker instance running in New York (instance zone and `looker.timezone`), over BC data across New
    York's change to summer time (2026-03-08, 07:00 UTC); the `tz` project and the ZONED_LOOKS saved.
    `looker`: the Looker section's settings (queries…)."""
    env = start_looker_env(
        tmp_path_factory,
        gl_entries=300,
        days=("2026-03-07", "2026-03-09"),
        looker_timezone=NEW_YORK,
        history_start=datetime(2026, 3, 7, tzinfo=UTC),
        history_end=datetime(2026, 3, 10, tzinfo=UTC),
    )
    load_gl_project(env, tmp_path_factory)
    for look_id, zone in ZONED_LOOKS.items():
        save_look(env, look_id, look_query(zone))
    env.cfg = config_for(env, timezone=NEW_YORK, **looker)
    return env


def gl_change_moments(env, table: str) -> tuple[list[tuple], list[tuple]]:
    """(What landed in `table`, the source's own rows): (company, entry number, change moment), in order."""
    loaded = env.warehouse.query(
        f"SELECT gl_company_name, gl_entry_number, gl_modified_time FROM {table} ORDER BY 1, 2"
    )
    source = env.warehouse.query(
        "SELECT _company_name, entry_number, date_trunc('second', last_modified_date_time) "
        "FROM bc_general_ledger_entries ORDER BY 1, 2"
    )
    assert len(source) > 10
    # Both sides of New York's change to summer time: a fixed offset would not do.
    assert min(m for *_, m in source) < datetime(2026, 3, 8, 7, tzinfo=UTC) < max(m for *_, m in source)
    return loaded, source


@pytest.fixture(scope="module")
def new_york_env(tmp_path_factory):
    """Each of ZONED_LOOKS as two assets: run as saved (a limit Looker answers in one call), and every row
    (no limit: its query rebuilt and run as a task, sending the zone the product reads it in)."""
    env = start_new_york_env(
        tmp_path_factory,
        queries=[
            {"name": f"gl_changes_look_{look_id}_saved", "look_id": look_id, "limit": 5000} for look_id in ZONED_LOOKS
        ]
        + [{"name": f"gl_changes_look_{look_id}_rebuilt", "look_id": look_id} for look_id in ZONED_LOOKS],
    )
    yield env
    env.admin.http.close()
    env.running.stop()


@pytest.mark.parametrize("run_as", ["saved", "rebuilt"])
@pytest.mark.parametrize("look_id", list(ZONED_LOOKS), ids=["look-names-no-zone", "look-names-kolkata"])
def test_date_times_of_a_saved_look_land_as_the_sources_utc_moments(new_york_env, look_id, run_as):
    """A saved Look runs in the zone its query names, or, naming none, in the instance's (here New York, which
    `looker.timezone` says too): Looker writes its date-times as wall-clock text there. Stored, they are the
    moments the source holds, on both sides of a DST change; read as UTC they would be hours off. Run as
    saved, the Look's own zone decides; rebuilt, the query sends the zone it is read in."""
    name = f"gl_changes_look_{look_id}_{run_as}"
    result = run_job(new_york_env, f"looker_{name}")
    assert result.success
    meta = materialization_metadata(result, name)
    assert meta["source"] == "looker api"
    assert meta["looker_query_tasks"] == (0 if run_as == "saved" else 1)  # as saved: the Look itself ran
    loaded, source = gl_change_moments(new_york_env, f"looker_{name}")
    assert loaded == source


def failed_run_error(cfg: ConnectorConfig, job: str) -> str:
    """Run `job`, which must fail; the failed step's error with its cause, as one text."""
    result = (
        build_definitions(cfg)
        .resolve_job_def(job)
        .execute_in_process(instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)
    )
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error
    return " ".join(e.message for e in (error, error.cause) if e is not None)


def test_unknown_field_is_a_clear_error_naming_the_query(env):
    cfg = config_for(
        env,
        queries=[
            {
                "name": "broken",
                "model": MODEL,
                "explore": "gl_entries",
                "fields": ["gl_entries.account_number", "gl_entries.no_such_field"],
            }
        ],
    )
    error = failed_run_error(cfg, "looker_broken")
    assert "looker.queries[broken]" in error and "gl_entries.no_such_field" in error


def test_a_look_with_a_custom_filter_is_refused_rather_than_rebuilt_without_it(env):
    """Every row of a Look means rebuilding its query without Looker's row cap; a custom filter
    (filter_expression) would be lost on the way and other rows returned: the run says so instead."""
    cfg = config_for(env, queries=[{"name": "large_balances", "look_id": "3"}])
    before = looker_stats(env)
    error = failed_run_error(cfg, "looker_large_balances")
    assert "Look 3 uses filter_expression" in error and "large_balances" in error
    after = looker_stats(env)
    for ran in ("query_runs", "query_tasks"):  # refused before any query ran
        assert after.get(ran, 0) == before.get(ran, 0)


# -- the schedule waits for the data the query reads -----------------------------------------------------


def test_a_period_is_queried_only_once_its_upstream_assets_loaded_its_last_day_after_that_day_closed(tmp_path):
    """BC's daily load and Looker's weekly fee query settle in the same hour: Looker's tick asked for the week before
    BC had loaded its Sunday, and the journal sensor posted the week without it. Now the tick waits, naming what for,
    and the hourly tick after BC's Sunday landed asks for the week. A Sunday re-read while it was still open (a
    change notification's run) is not the whole Sunday."""
    from dagster._core.test_utils import freeze_time

    defs = build_definitions(parse_config(sandbox_profile(tmp_path)))
    schedule = defs.resolve_schedule_def("looker_fee_allocation_schedule")  # weekly, 120 min, upstream BC G/L
    assert schedule.cron_schedule == "0 * * * *"  # tries every hour, not only each Monday
    entries, dimensions = (
        dg.AssetKey(["business_central", table])
        for table in ("bc_general_ledger_entries", "bc_general_ledger_entry_dimensions")
    )

    sunday_closed = datetime(2026, 11, 9, tzinfo=UTC)  # the week of 2 November ends with Sunday the 8th
    with dg.instance_for_test() as instance:

        def loaded(key: dg.AssetKey, day: str, at: datetime) -> None:
            with freeze_time(at):
                instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=day))

        def tick(at: datetime):
            context = dg.build_schedule_context(
                instance, scheduled_execution_time=at, repository_def=defs.get_repository_def()
            )
            return schedule.evaluate_tick(context)

        loaded(entries, "2026-11-08", datetime(2026, 11, 8, 15, tzinfo=UTC))  # re-read while Sunday was open
        loaded(dimensions, "2026-11-08", sunday_closed + timedelta(minutes=31))
        waiting = tick(sunday_closed + timedelta(hours=2))
        assert waiting.run_requests == []
        assert waiting.skip_message == (
            "window 2026-11-02 waits for business_central/bc_general_ledger_entries partition 2026-11-08 to be loaded "
            "after 2026-11-09T00:00:00+00:00"
        )
        loaded(entries, "2026-11-08", sunday_closed + timedelta(minutes=33))  # BC's scheduled load of Sunday
        (request,) = tick(sunday_closed + timedelta(hours=3)).run_requests
        assert request.partition_key == "2026-11-02"


# -- the client: auth, throttling, large results ---------------------------------------------------


def detail_query() -> QuerySpec:
    return QuerySpec(MODEL, "gl_entries", tuple(DETAIL_FIELDS))


def test_token_expiry_mid_run_means_one_relogin_and_complete_results(env, client):
    total = env.warehouse.query("SELECT count(*) FROM bc_general_ledger_entries")[0][0]
    # The sandbox drops every token at the first poll of the query task, answering 401.
    env.admin.faults({"kind": "expire_tokens", "path_contains": "/api/4.0/query_tasks/", "count": 1}, service="looker")
    rows = [row for batch in client.rows(detail_query(), batch_rows=4000) for row in batch]
    assert len(rows) == total
    assert client.login.logins == 2 and client.http.stats.reauthentications == 1


def test_a_token_past_its_lifetime_is_renewed_before_use(env, client):
    client.me()
    unauthorized = looker_stats(env).get("401", 0)
    later = time.monotonic() + 3600
    client.login._clock = lambda: later
    client.me()
    assert client.login.logins == 2 and looker_stats(env).get("401", 0) == unauthorized


def test_a_repeated_401_is_a_clear_error_after_one_retry(env, client):
    env.admin.faults(
        {"kind": "status", "status": 401, "path_contains": "/api/4.0/queries/run", "count": 5}, service="looker"
    )
    with pytest.raises(AuthenticationError, match="rejected after re-authentication"):
        next(client.rows(QuerySpec(MODEL, "vendors", ("vendors.number",), limit=10)))
    assert client.login.logins == 2 and client.http.stats.reauthentications == 1


def test_wrong_client_secret_is_refused_with_a_fix_and_no_secret(env):
    looker = env.cfg.looker
    bad = LookerClient(looker, client_secret="not-the-secret-xyz")
    with pytest.raises(AuthenticationError) as caught:
        bad.me()
    assert "API3" in str(caught.value) and "not-the-secret-xyz" not in str(caught.value)
    bad.close()


def test_a_refused_query_says_which_field_and_why(env, client):
    from mlconnector_pipelines.core.errors import RequestFailedError

    with pytest.raises(RequestFailedError) as caught:
        next(client.rows(QuerySpec(MODEL, "vendors", ("vendors.number", "vendors.nope"), limit=10)))
    assert caught.value.status == 422 and caught.value.code == "invalid"
    assert "fields: Unknown field 'vendors.nope' in explore 'vendors'" in str(caught.value)


@pytest.mark.parametrize("as_rows", [False, True], ids=["error-status", "looker_error-row"])
def test_a_query_that_fails_in_looker_is_an_error_never_an_empty_result(tmp_path_factory, as_rows):
    """Looker reports a query's SQL error as a one-row json result `[{"looker_error": …}]` answered 200 (or
    as a 400): either way the run fails with Looker's message, sync and as a task, and no rows are taken."""
    from mlconnector_pipelines.core.errors import RequestFailedError

    running, sandbox_dir = start_sandbox(
        tmp_path_factory,
        looker=LookerSettings(
            warehouse=tmp_path_factory.mktemp("empty") / "absent.duckdb",
            query_task_seconds=0.05,
            query_errors_as_rows=as_rows,
        ),
    )
    admin = SandboxAdmin(running)
    admin.data_dir = sandbox_dir
    c = LookerClient(
        parse_config({**sandbox_profile(sandbox_dir, running.url), "looker": looker_settings(admin)}).looker,
        client_secret="sandbox-looker-client-secret",
    )
    try:
        for spec in (
            QuerySpec(MODEL, "vendors", ("vendors.company_name", "vendors.count"), limit=10),  # one synchronous call
            QuerySpec(MODEL, "gl_entries", tuple(DETAIL_FIELDS)),  # every row: a query task
        ):
            with pytest.raises(RequestFailedError, match="does not exist yet"):
                list(c.rows(spec))
        assert c.query_tasks == 1
    finally:
        c.close()
        admin.http.close()
        running.stop()


def test_429_backs_off_and_completes(env, client):
    env.admin.faults(
        {"kind": "status", "status": 429, "path_contains": "/api/4.0/queries/run", "count": 2}, service="looker"
    )
    [rows] = list(client.rows(QuerySpec(MODEL, "vendors", ("vendors.company_name", "vendors.count"), limit=10)))
    assert len(rows) == 2 and client.http.stats.throttled == 2


def test_the_sync_cap_and_minus_one(env, client):
    spec = detail_query()
    capped = client.http.request("POST", "queries/run/json", json={**spec.body(), "limit": None}).json()
    assert len(capped) == SYNC_ROW_CAP  # Looker's default: 5,000 rows unless the query says otherwise
    everything = client.http.request("POST", "queries/run/json", json={**spec.body(), "limit": "-1"}).json()
    assert len(everything) == env.warehouse.query("SELECT count(*) FROM bc_general_ledger_entries")[0][0]


def test_filters_sorts_and_limit_are_honoured(env, client):
    spec = QuerySpec(
        MODEL,
        "gl_entries",
        ("gl_entries.account_number", "gl_entries.net_amount"),
        filters={"gl_entries.company_name": "CRONUS USA%", "gl_entries.posting_date": "2026/03/02"},
        sorts=("gl_entries.account_number desc",),
        limit=3,
    )
    [rows] = list(client.rows(spec))
    expected = env.warehouse.query(
        "SELECT account_number, sum(debit_amount - credit_amount) FROM bc_general_ledger_entries "
        "WHERE _company_name LIKE 'CRONUS USA%' AND posting_date = DATE '2026-03-02' "
        "GROUP BY 1 ORDER BY 1 DESC LIMIT 3"
    )
    assert [(r["gl_entries.account_number"], r["gl_entries.net_amount"]) for r in rows] == [
        (a, n) for a, n in expected
    ]  # exactly: both sides are decimals


def test_the_simulator_answers_429_past_its_rate(tmp_path_factory):
    running, _ = start_sandbox(tmp_path_factory, looker=LookerSettings(requests_per_minute=3, retry_after_on_429=7))
    simulator = running.services["looker"]
    try:
        with httpx.Client(base_url=f"{running.url}/api/4.0", verify=str(running.certificates.ca_pem)) as http:
            token = http.post(
                "/login",
                data={"client_id": simulator.settings.client_id, "client_secret": simulator.settings.client_secret},
            ).json()
            http.headers["Authorization"] = f"token {token['access_token']}"
            answers = [http.get("/user") for _ in range(4)]
    finally:
        running.stop()
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].headers["Retry-After"] == "7" and answers[-1].json()["message"] == "Too Many Requests"


def test_ping_checks_login_and_every_configured_field(env):
    from mlconnector_pipelines.ping import run_pings

    cfg = config_for(env)
    [looker] = [r for r in run_pings(cfg) if r.system == "Looker"]
    assert looker.ok, looker.detail
    assert "4 configured queries match" in looker.detail
    calls = looker_stats(env).get("query_runs", 0)
    broken = config_for(env, queries=[{"name": "x", "model": MODEL, "explore": "vendors", "fields": ["vendors.nope"]}])
    [looker] = [r for r in run_pings(broken) if r.system == "Looker"]
    assert looker.auth_ok and not looker.read_ok and "vendors.nope" in looker.detail and "LookML" in looker.fix
    assert looker_stats(env).get("query_runs", 0) == calls  # a ping spends no query quota


def test_config_refuses_an_ambiguous_query():
    base = {"profile": "sandbox", "looker": {"queries": [{"name": "x", "look_id": "1", "model": "m"}]}}
    with pytest.raises(ConfigError, match="either look_id"):
        parse_config(base)
    assert parse_config({"profile": "sandbox"}).looker.http.requests_per_minute == 60


def exact_json(text):
    """JSON as our client reads it: numbers exactly, as Decimal."""
    return json.loads(text, parse_float=Decimal)


# -- the official SDK ----------------------------------------------------------------------------------


def test_looker_sdk_logs_in_and_runs_a_query_a_look_and_a_query_task(env, client, monkeypatch):
    import looker_sdk
    from looker_sdk.sdk.api40 import models

    monkeypatch.setenv("LOOKERSDK_BASE_URL", env.admin.url)
    monkeypatch.setenv("LOOKERSDK_CLIENT_ID", env.cfg.looker.client_id)
    monkeypatch.setenv("LOOKERSDK_CLIENT_SECRET", "sandbox-looker-client-secret")
    monkeypatch.setenv("LOOKERSDK_VERIFY_SSL", "true")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(env.cfg.looker.ca_bundle))  # requests trusts only this
    sdk = looker_sdk.init40()  # settings from the environment above

    assert sdk.me().display_name == "Sandbox API user"
    inline = exact_json(
        sdk.run_inline_query(
            "json",
            models.WriteQuery(
                model=MODEL, view="vendors", fields=["vendors.company_name", "vendors.count"], limit="10"
            ),
        )
    )
    [ours] = list(client.rows(QuerySpec(MODEL, "vendors", ("vendors.company_name", "vendors.count"), limit=10)))
    assert inline == ours

    look = exact_json(sdk.run_look("1", "json"))
    assert look == client.look_rows("1", 500)

    query = sdk.create_query(models.WriteQuery(model=MODEL, view="gl_entries", fields=DETAIL_FIELDS, limit="-1"))
    task = sdk.create_query_task(models.WriteCreateQueryTask(query_id=query.id, result_format=models.ResultFormat.json))
    deadline = time.monotonic() + 30
    while sdk.query_task(task.id).status != "complete":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    rows = exact_json(sdk.query_task_results(task.id))
    assert len(rows) == env.warehouse.query("SELECT count(*) FROM bc_general_ledger_entries")[0][0]


# -- every endpoint the simulator serves, checked against Looker's OpenAPI spec -------------------------


@pytest.fixture(scope="module")
def looker_spec():
    # A copy of shared/specs' Looker OpenAPI spec (MIT, looker-open-source/sdk-codegen) lives with the tests.
    return json.loads((Path(__file__).parents[1] / "specs" / "looker-api-4.0.oas.json").read_text())


def _templates(spec: dict) -> list[tuple[str, re.Pattern]]:
    # Literal segments before parameters, so /queries/run/{f} wins over /queries/{id}.
    paths = sorted(spec["paths"], key=lambda p: p.count("{"))
    return [(p, re.compile("^/api/4.0" + re.sub(r"\{[^}]+\}", "[^/]+", p) + "$")) for p in paths]


def validate_response(spec: dict, response: httpx.Response) -> str:
    """The spec path the response answers; fails unless its status and body are what the spec declares."""
    from openapi_schema_validator import OAS30Validator

    path = response.request.url.path
    template = next((t for t, pattern in _templates(spec) if pattern.match(path)), None)
    assert template, f"{path} is not in Looker's API"
    operation = spec["paths"][template][response.request.method.lower()]
    declared = operation["responses"].get(str(response.status_code))
    if declared is None:
        # Looker's spec lists no 401 anywhere, yet every endpoint answers one without a valid token.
        assert response.status_code == 401, f"{response.request.method} {template} answered {response.status_code}"
        declared = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if response.status_code == 204:
        return template
    media_type = response.headers["content-type"].split(";")[0]
    content = declared.get("content", {})
    media = content.get(media_type) or (content.get("text") if media_type.startswith("text/") else None)
    assert media, f"{template} {response.status_code}: {media_type} not among {sorted(content)}"
    schema = media["schema"]
    if schema.get("type") == "string":  # query results: the raw body is the declared string
        return template
    OAS30Validator({"allOf": [schema], "components": spec["components"]}).validate(response.json())
    return template


def test_every_endpoint_answers_as_the_openapi_spec_declares(env, looker_spec):
    responses: list[httpx.Response] = []
    http = httpx.Client(
        base_url=f"{env.admin.url}/api/4.0",
        verify=str(env.cfg.looker.ca_bundle),
        timeout=30,
        event_hooks={"response": [lambda r: (r.read(), responses.append(r))]},
    )
    secret = "sandbox-looker-client-secret"
    assert http.post("/login", data={"client_id": "nobody", "client_secret": "x"}).status_code == 404
    token = http.post("/login", data={"client_id": env.cfg.looker.client_id, "client_secret": secret}).json()
    assert http.get("/user").status_code == 401
    http.headers["Authorization"] = f"token {token['access_token']}"
    http.get("/user")
    http.get(f"/lookml_models/{MODEL}/explores/gl_entries")
    assert http.get(f"/lookml_models/{MODEL}/explores/nope").status_code == 404
    body = {"model": MODEL, "view": "vendors", "fields": ["vendors.number", "vendors.balance"], "limit": "5"}
    query = http.post("/queries", json=body).json()
    assert http.post("/queries", json={**body, "fields": ["vendors.nope"]}).status_code == 422
    http.get(f"/queries/{query['id']}")
    http.get(f"/queries/{query['id']}/run/json")
    http.get(f"/queries/{query['id']}/run/csv")
    http.post("/queries/run/json", json=body)
    http.post("/queries/run/csv", json=body)
    assert http.post("/queries/run/png", json=body).status_code == 400
    http.get("/looks/1")
    http.get("/looks/1/run/json")
    assert http.get("/looks/999/run/json").status_code == 404
    task = http.post("/query_tasks", json={"query_id": query["id"], "result_format": "json"}).json()
    http.get(f"/query_tasks/{task['id']}")
    assert http.get(f"/query_tasks/{task['id']}/results").status_code == 202
    deadline = time.monotonic() + 10
    while http.get(f"/query_tasks/{task['id']}/results").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert http.get("/query_tasks/unknown/results").status_code == 404
    env.admin.faults({"kind": "status", "status": 429, "path_contains": "/api/4.0/user", "count": 1}, service="looker")
    assert http.get("/user").status_code == 429
    assert http.delete("/logout").status_code == 204
    http.close()

    exercised = {validate_response(looker_spec, r) for r in responses}
    served = {
        re.sub(r"\{[^}]+\}", "{}", r.path.removeprefix("/api/4.0"))
        for r in LookerSimulator(LookerSettings()).routes()
        if r.path.startswith("/api/4.0")
    }
    assert {re.sub(r"\{[^}]+\}", "{}", t) for t in exercised} == served


def test_no_looker_secret_in_anything_a_run_writes(env, tmp_path, monkeypatch):
    good_secret, wrong_secret = "sandbox-looker-client-secret", "Wrong-Looker-Secret-Okapi-7731"
    monkeypatch.setenv("LOOKER_SECRET_UNDER_TEST", wrong_secret)
    wrong = config_for(env, client_secret={"env": "LOOKER_SECRET_UNDER_TEST"})
    (tmp_path / "dagster").mkdir()
    with dg.DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        ok = build_definitions(env.cfg).resolve_job_def("looker_vendor_balances").execute_in_process(instance=instance)
        assert ok.success
        failed = (
            build_definitions(wrong)
            .resolve_job_def("looker_vendor_balances")
            .execute_in_process(instance=instance, raise_on_error=False)
        )
        assert not failed.success
        error = failed.get_step_failure_events()[0].event_specific_data.error
        assert "login refused" in " ".join(e.message for e in (error, error.cause) if e is not None)
    written = [tmp_path, env.cfg.duckdb_path]
    for secret in (good_secret, wrong_secret):
        leaks = [
            p
            for root in written
            for p in ([root] if root.is_file() else root.rglob("*"))
            if p.is_file() and secret.encode() in p.read_bytes()
        ]
        assert leaks == [], f"{secret} found in {leaks}"
