"""Business Central change notifications end to end, over HTTPS against the BC sandbox and a real receiver.

The sandbox holds notices until the test flushes them (as BC gathers them for ~30 s), then POSTs them to
`mlconnector ingest` on loopback, which checked the subscription handshake when it was made. Its two
companies share record ids (a Copy Company), so a deletion in one must leave the other alone.
"""

from __future__ import annotations

import socket
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import pytest

from mlconnector_pipelines.definitions import build_definitions
from mlconnector_pipelines.flows.business_central import JOB
from mlconnector_pipelines.ingest.app import create_app
from mlconnector_pipelines.ingest.store import open_delivery_store
from mlconnector_pipelines.ping import run_pings

from ..conftest import SandboxAdmin, make_config, start_sandbox
from .test_looker_deliveries import serve

pytestmark = pytest.mark.slow
CLIENT_STATE = "bc-client-state-not-a-guess-0123"
ADMIN = "/_sandbox/business_central"
CUSTOMERS = dg.AssetKey(["business_central", "bc_customers"])
VENDORS = dg.AssetKey(["business_central", "bc_vendors"])
LOADED_ENTITIES = 9  # the 10 entity sets the BC flow loads but dimensionValues (no webhooks), per company


@pytest.fixture(scope="module")
def bc(tmp_path_factory):
    # Notices wait for the test's flush (BC gathers them ~30 s); >1,000 at once become one `collection` notice.
    running, data_dir = start_sandbox(tmp_path_factory, notification_delay_seconds=3600, collection_threshold=1000)
    admin = SandboxAdmin(running)
    admin.data_dir = data_dir
    yield admin
    admin.http.close()
    running.stop()


@contextmanager
def receiving(bc, tmp_path, **business_central):
    """A private warehouse and store, and `mlconnector ingest` serving BC's notifications on loopback."""
    bc.reset()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/business-central/notifications"
    cfg = make_config(
        bc,
        tmp_path,
        notifications={
            "notification_url": url,
            "client_state": {"env": "MLC_TEST_UNSET", "sandbox_default": CLIENT_STATE},
        },
        **business_central,
    )
    with serve(create_app(cfg), sock) as receiver:
        yield cfg, receiver


@pytest.fixture
def product(bc, tmp_path):
    with receiving(bc, tmp_path) as served:
        yield served


def run_job(cfg, name: str, **kwargs) -> dg.ExecuteInProcessResult:
    return (
        build_definitions(cfg)
        .resolve_job_def(name)
        .execute_in_process(instance=kwargs.pop("instance", None) or dg.DagsterInstance.ephemeral(), **kwargs)
    )


def subscriptions(bc) -> list[dict]:
    return bc.http.get(f"{ADMIN}/subscriptions").json()["subscriptions"]


def flush(bc) -> list[dict]:
    return bc.http.post(f"{ADMIN}/subscriptions/flush").json()["attempts"]


def tick(cfg, instance, cursor=None):
    defs = build_definitions(cfg)
    sensor = defs.get_sensor_def("business_central_notifications")
    return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))


def launch(cfg, request: dg.RunRequest, instance) -> dg.ExecuteInProcessResult:
    """What the daemon would do with a sensor's request, in process."""
    job = build_definitions(cfg).resolve_job_def(request.job_name)
    return job.execute_in_process(
        partition_key=request.partition_key,
        asset_selection=request.asset_selection,
        run_config=request.run_config or None,
        tags=request.tags,
        instance=instance,
    )


def query(cfg, sql: str, *params):
    with duckdb.connect(str(cfg.duckdb_path), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def test_subscriptions_are_made_renewed_past_two_and_a_half_days_and_made_again_when_bc_deletes_one(bc, product):
    cfg, _ = product
    made = run_job(cfg, "business_central_subscriptions")
    assert made.success
    mine = subscriptions(bc)
    assert len(mine) == 2 * LOADED_ENTITIES and {s["clientState"] for s in mine} == {CLIENT_STATE}
    handshakes = [d for d in bc.http.get(f"{ADMIN}/subscriptions").json()["deliveries"] if d["kind"] == "handshake"]
    assert len(handshakes) == 2 * LOADED_ENTITIES and {d["status"] for d in handshakes} == {200}
    aged, gone = mine[0], mine[1]
    bc.http.post(f"{ADMIN}/subscriptions/{aged['subscriptionId']}/age", json={"seconds": 2.5 * 86_400 + 60})
    aged_expiry = next(s for s in subscriptions(bc) if s["subscriptionId"] == aged["subscriptionId"])[
        "expirationDateTime"
    ]
    bc.http.delete(f"{ADMIN}/subscriptions/{gone['subscriptionId']}").raise_for_status()
    again = run_job(cfg, "business_central_subscriptions")
    figures = again.output_for_node("keep_business_central_subscriptions")
    assert figures == 2 * LOADED_ENTITIES
    metadata = {
        k: v.value
        for e in again.get_step_success_events() + again.all_node_events
        if e.event_type_value == "STEP_OUTPUT"
        for k, v in e.step_output_data.metadata.items()
    }
    assert (metadata["subscriptions_renewed"], metadata["subscriptions_created"]) == (1, 1)
    assert metadata["subscriptions_kept"] == 2 * LOADED_ENTITIES - 2
    now = {s["resource"]: s for s in subscriptions(bc)}
    assert len(now) == 2 * LOADED_ENTITIES and gone["resource"] in now
    renewed = now[aged["resource"]]
    assert renewed["subscriptionId"] == aged["subscriptionId"]
    assert _moment(renewed["expirationDateTime"]) > _moment(aged_expiry)  # three days from now again
    (result,) = [r for r in run_pings(cfg) if r.system == "Business Central"]
    assert f"change notifications: {2 * LOADED_ENTITIES} of {2 * LOADED_ENTITIES} subscriptions" in result.detail


def test_the_receiver_answers_the_handshake_and_refuses_a_wrong_client_state_storing_nothing(product):
    cfg, receiver = product
    answer = receiver.post("/business-central/notifications?validationToken=abc123", content=CLIENT_STATE)
    assert (answer.status_code, answer.text) == (200, "abc123")
    forged = {
        "value": [
            {
                "subscriptionId": "x",
                "clientState": "a guess",
                "resource": "/api/v2.0/companies(c)/customers(r)",
                "changeType": "deleted",
                "lastModifiedDateTime": "2026-12-06T10:00:00Z",
            }
        ]
    }
    assert receiver.post("/business-central/notifications", json=forged).status_code == 401
    assert open_delivery_store(cfg.ingest, cfg.data_dir, "business_central").after(None) == []


def test_a_change_in_bc_is_in_the_warehouse_after_one_sensor_tick_and_a_busy_window_waits(bc, product):
    cfg, _ = product
    assert run_job(cfg, "business_central_subscriptions").success
    company = bc.companies()[0]
    customer = bc.records(company["id"], "customers")[0]
    bc.upsert(company["id"], "customers", {"id": customer["id"], "displayName": "Renamed by a notification test"})
    assert [a["status"] for a in flush(bc) if a["kind"] == "notification"] == [202]
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    instance = dg.DagsterInstance.ephemeral()
    # A run loading today's window is under way: the notice waits for it rather than run beside it.
    busy = instance.create_run_for_job(build_definitions(cfg).resolve_job_def(JOB), tags={"dagster/partition": today})
    # (created and not yet started: in progress, as the sensor sees it)
    waited = tick(cfg, instance)
    assert waited.run_requests == [] and "waiting" in (waited.skip_message or "")
    instance.report_run_canceled(busy)
    data = tick(cfg, instance, waited.cursor)
    (request,) = data.run_requests
    assert request.partition_key == today and CUSTOMERS in request.asset_selection
    assert launch(cfg, request, instance).success
    rows = query(cfg, "SELECT display_name FROM bc_customers WHERE _company_id = ? AND id = ?", company["id"],
                 customer["id"])  # fmt: skip
    assert rows == [("Renamed by a notification test",)]
    assert tick(cfg, instance, data.cursor).run_requests == []  # nothing twice


def test_a_notice_stamped_by_a_bc_clock_ahead_of_ours_runs_the_newest_window_and_jams_nothing(bc, product):
    """BC stamps a notice with its own clock. Two days ahead of ours, the notice's window did not exist yet: the
    tick failed on it, and so did every tick after (the cursor moves only on success), so no notice behind it was
    ever run. The newest window is read instead, and the next tick moves on."""
    cfg, _ = product
    assert run_job(cfg, "business_central_subscriptions").success
    bc.http.post(f"{ADMIN}/dialect", json={"clock_ahead_seconds": 2 * 86400}).raise_for_status()
    company = bc.companies()[0]
    customer = bc.records(company["id"], "customers")[0]
    bc.upsert(company["id"], "customers", {"id": customer["id"], "displayName": "Renamed by a fast BC clock"})
    assert [a["status"] for a in flush(bc) if a["kind"] == "notification"] == [202]
    (stored,) = open_delivery_store(cfg.ingest, cfg.data_dir, "business_central").after(None)
    assert _moment(stored[1].rows[0]["lastModifiedDateTime"]) > datetime.now(UTC) + timedelta(days=1)  # the case
    instance = dg.DagsterInstance.ephemeral()
    data = tick(cfg, instance)
    (request,) = data.run_requests
    assert request.partition_key == datetime.now(UTC).strftime("%Y-%m-%d") and CUSTOMERS in request.asset_selection
    assert launch(cfg, request, instance).success
    assert tick(cfg, instance, data.cursor).run_requests == []


def test_a_notice_from_before_the_first_window_west_of_utc_runs_the_first_window_and_jams_nothing(bc, tmp_path):
    """Windows cut in New York start at `partitions.start` 00:00 there, five hours after it begins in UTC. A notice
    stamped before the first window was moved to UTC midnight, which in New York is the evening before: a window that
    does not exist, so the tick failed, and every tick after it (the cursor moves only on success). The first window
    is read instead, and the next tick moves on."""
    new_york = ZoneInfo("America/New_York")
    first_day = datetime.now(new_york).date().isoformat()
    with receiving(bc, tmp_path, partitions={"timezone": "America/New_York", "start": first_day}) as (cfg, _):
        assert run_job(cfg, "business_central_subscriptions").success
        # BC's clock two days behind ours (a server writing its local time labelled Z is hours behind, too)
        bc.http.post(f"{ADMIN}/dialect", json={"clock_ahead_seconds": -2 * 86400}).raise_for_status()
        company = bc.companies()[0]
        customer = bc.records(company["id"], "customers")[0]
        bc.upsert(company["id"], "customers", {"id": customer["id"], "displayName": "Renamed by a slow BC clock"})
        assert [a["status"] for a in flush(bc) if a["kind"] == "notification"] == [202]
    instance = dg.DagsterInstance.ephemeral()
    data = tick(cfg, instance)
    (request,) = data.run_requests
    assert request.partition_key == first_day and CUSTOMERS in request.asset_selection
    assert launch(cfg, request, instance).success
    assert tick(cfg, instance, data.cursor).run_requests == []


def test_a_window_loaded_from_the_asset_graph_is_busy_too():
    """The UI's Materialize and asset backfills run as Dagster's `__ASSET_JOB`: the sensor looked only for the load
    job's runs, and started a second load of a window already being loaded."""
    import uuid
    from datetime import date

    from dagster._core.storage.dagster_run import DagsterRun

    from mlconnector_pipelines.core.settings import PartitionConfig
    from mlconnector_pipelines.flows.business_central_notifications import _windows_being_loaded
    from mlconnector_pipelines.flows.partitions import partitions_def

    partitions = partitions_def(PartitionConfig(start=date(2026, 11, 1)))
    with dg.instance_for_test() as instance:
        for tags, assets in (
            ({"dagster/partition": "2026-12-06"}, {CUSTOMERS}),
            ({"dagster/asset_partition_range_start": "2026-11-20", "dagster/asset_partition_range_end": "2026-11-21"},
             {VENDORS}),
            ({"dagster/partition": "2026-11-25"}, {dg.AssetKey(["looker", "fee_allocation"])}),  # another system's
        ):  # fmt: skip
            instance.add_run(DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), tags=tags,
                                        asset_selection=frozenset(assets), status=dg.DagsterRunStatus.STARTED))  # fmt: skip
        busy = _windows_being_loaded(instance, JOB, "business_central", partitions)
    assert busy == {"2026-12-06", "2026-11-20", "2026-11-21"}


def test_a_record_deleted_in_one_company_leaves_current_state_there_with_a_tombstone(bc, product):
    cfg, _ = product
    first, second = bc.companies()
    week = {"dagster/asset_partition_range_start": "2026-03-01", "dagster/asset_partition_range_end": "2026-03-07"}
    assert run_job(cfg, JOB, asset_selection=[VENDORS], tags=week).success
    in_both = "SELECT id FROM bc_vendors GROUP BY id HAVING count(DISTINCT _company_id) = 2 ORDER BY id LIMIT 1"
    victim = query(cfg, in_both)[0][0]  # a Copy Company keeps record ids
    assert run_job(cfg, "business_central_subscriptions").success
    bc.http.delete(f"{ADMIN}/companies/{first['id']}/vendors/{victim}").raise_for_status()
    flush(bc)
    instance = dg.DagsterInstance.ephemeral()
    (request,) = tick(cfg, instance).run_requests
    assert request.job_name == "business_central_apply_deletions"
    assert launch(cfg, request, instance).success
    where = "SELECT _company_id FROM bc_vendors WHERE id = ?"
    assert [r[0] for r in query(cfg, where, victim)] == [second["id"]]  # the other company keeps its own
    tombstones = query(cfg, "SELECT _company_id FROM bc_vendors_changes WHERE id = ? AND _deleted", victim)
    assert tombstones == [(first["id"],)]
    # The week read again (the record's old version is still in the change log): it stays ended.
    assert run_job(cfg, JOB, asset_selection=[VENDORS], tags=week).success
    assert [r[0] for r in query(cfg, where, victim)] == [second["id"]]


def test_fifteen_hundred_changes_arrive_as_one_collection_notice_and_land_once(bc, product):
    cfg, _ = product
    assert run_job(cfg, "business_central_subscriptions").success
    company = bc.companies()[0]
    made = [
        bc.upsert(company["id"], "customers", {"number": f"N{n:05d}", "displayName": f"Bulk customer {n}"})["id"]
        for n in range(1500)
    ]
    (notification,) = [a for a in flush(bc) if a["kind"] == "notification"]
    (stored,) = open_delivery_store(cfg.ingest, cfg.data_dir, "business_central").after(None)
    assert [n["changeType"] for n in stored[1].rows] == ["collection"]
    assert "$filter" in stored[1].rows[0]["resource"] or "%24filter" in stored[1].rows[0]["resource"]
    instance = dg.DagsterInstance.ephemeral()
    requests = tick(cfg, instance).run_requests
    assert len(requests) == 1 and requests[0].partition_key == datetime.now(UTC).strftime("%Y-%m-%d")
    assert launch(cfg, requests[0], instance).success
    ids = [r[0] for r in query(cfg, "SELECT id FROM bc_customers WHERE _company_id = ?", company["id"])]
    assert set(made) <= set(ids) and len(ids) == len(set(ids))
    assert notification["status"] == 202


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize("fault", ["commit_then_drop", "commit_then_504"])
def test_a_subscription_made_but_answered_with_a_lost_connection_or_504_is_made_once(bc, product, fault):
    cfg, _ = product
    bc.faults({"kind": fault, "path_contains": "/api/v2.0/subscriptions", "count": 1})
    try:
        assert run_job(cfg, "business_central_subscriptions").success
    finally:
        bc.clear_faults()
    assert bc.state("business_central")["faults_fired"] == {fault: 1}
    made = [s["resource"] for s in subscriptions(bc)]
    assert len(made) == len(set(made)) == 2 * LOADED_ENTITIES  # the lost one found by listing, not sent again
