"""Looker scheduled-plan deliveries: the receiver over real HTTP, durable storage, and the sensor's runs."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import dagster as dg
import httpx
import orjson
import pytest
import uvicorn

from mlconnector_pipelines.definitions import build_definitions
from mlconnector_pipelines.flows.looker import DELIVERIES_JOB, DELIVERIES_SENSOR
from mlconnector_pipelines.ingest.app import create_app
from mlconnector_pipelines.ingest.store import open_delivery_store
from mlconnector_pipelines.sandbox.looker import DELIVERY_SECRET as SANDBOX_LOOKER_DELIVERY_SECRET

from ..conftest import materialization_metadata
from .test_looker import GL_CHANGE_FIELDS, gl_change_moments, start_looker_env, start_new_york_env

PLAN_ID = "101"  # the sandbox profile's vendor_balances takes this plan
FIELDS = ["vendors.company_name", "vendors.number", "vendors.name", "vendors.total_balance"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = start_looker_env(tmp_path_factory, days=("2026-03-01", "2026-03-02"))
    yield env
    env.admin.http.close()
    env.running.stop()


@contextlib.contextmanager
def serve(app, sock: socket.socket | None = None) -> Iterator[httpx.Client]:
    """An app served by uvicorn on an ephemeral loopback port (or a socket bound before), and a client for it."""
    if sock is None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, access_log=False, log_level="info"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(f"{url}/health").raise_for_status()
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            yield http
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def receiver(env):
    """`mlconnector ingest`'s app as configured by the sandbox profile."""
    with serve(create_app(env.cfg)) as http:
        yield http


def payload(rows: list[dict], plan_id: str = PLAN_ID, **attachment) -> dict:
    return {
        "type": "query",
        "scheduled_plan": {
            "scheduled_plan_id": plan_id,
            "title": "Vendor balances",
            "type": "Look",
            "url": "https://looker.example/looks/1",
            "query_id": "1",
            "query": {"model": "mlconnector_demo", "view": "vendors", "fields": FIELDS},
        },
        "attachment": {
            "data": orjson.dumps(rows).decode(),
            "mimetype": "application/json",
            "extension": "json",
            **attachment,
        },
        "data": None,
        "form_params": {},
    }


def url(secret: str = SANDBOX_LOOKER_DELIVERY_SECRET) -> str:
    return f"/looker/scheduled-plans/{secret}"


def stored(env) -> list[str]:
    return [cursor for cursor, _ in open_delivery_store(env.cfg.ingest, env.cfg.data_dir, "looker").after(None)]


def evaluate_sensor(defs: dg.Definitions, instance: dg.DagsterInstance, cursor: str | None):
    sensor = defs.resolve_sensor_def(DELIVERIES_SENSOR)
    return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))


def run_delivery(cfg, delivery_id: str):
    """The run the deliveries sensor asks for this delivery, executed in process."""
    defs = build_definitions(cfg)
    instance = dg.DagsterInstance.ephemeral()
    [request] = [r for r in evaluate_sensor(defs, instance, cursor=None).run_requests if r.run_key == delivery_id]
    return defs.resolve_job_def(DELIVERIES_JOB).execute_in_process(
        run_config=request.run_config, asset_selection=request.asset_selection, tags=request.tags, instance=instance
    )


def test_a_delivery_starts_exactly_one_run_and_a_repeat_starts_none(env, receiver):
    rows = [
        {
            "vendors.company_name": "CRONUS USA, Inc.",
            "vendors.number": f"V{n:05d}",
            "vendors.name": f"Vendor {n}",
            "vendors.total_balance": 100.5 * n,
        }
        for n in range(1, 8)
    ]
    body = payload(rows)
    first = receiver.post(url(), json=body)
    assert first.status_code == 202 and first.json()["stored"] is True and first.json()["rows"] == 7
    delivery_id = first.json()["delivery_id"]

    defs = build_definitions(env.cfg)
    instance = dg.DagsterInstance.ephemeral()
    # The sensor reads each delivery's head only (a backlog's rows took gigabytes a tick): it asks for the run
    # though the stored rows are, for the moment, unreadable.
    [path] = (env.cfg.data_dir / "ingest" / "looker").glob(f"*-{delivery_id}.json")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) * 2 // 3])
    assert [r.run_key for r in evaluate_sensor(defs, instance, cursor=None).run_requests] == [delivery_id]
    path.write_bytes(whole)
    tick = evaluate_sensor(defs, instance, cursor=None)
    [request] = tick.run_requests
    assert request.run_key == delivery_id  # the daemon starts no second run for a key it has seen

    result = defs.resolve_job_def(DELIVERIES_JOB).execute_in_process(
        run_config=request.run_config, asset_selection=request.asset_selection, tags=request.tags, instance=instance
    )
    assert result.success
    meta = materialization_metadata(result, "vendor_balances")
    assert meta["rows"] == 7 and meta["source"] == f"delivery {delivery_id}"
    assert meta["looker_query_calls"] == 0  # the delivered rows are used; no query quota spent
    assert env.warehouse.query(
        "SELECT count(*), sum(vendors_total_balance), min(_source) FROM looker_vendor_balances"
    ) == [(7, pytest.approx(sum(r["vendors.total_balance"] for r in rows)), f"delivery {delivery_id}")]

    # Looker retries a delivery it thinks failed: same payload, nothing new stored, no new run request.
    again = receiver.post(url(), json=body)
    assert again.status_code == 200 and again.json() == {**first.json(), "stored": False}
    assert len(stored(env)) == 1
    assert evaluate_sensor(defs, instance, cursor=tick.cursor).run_requests == []


def test_a_wrong_secret_is_404_stores_nothing_and_is_not_logged(env, receiver, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    before = stored(env)
    guess = "guessed-secret-3141592653"
    response = receiver.post(url(guess), json=payload([{"vendors.number": "V1"}]))
    assert response.status_code == 404
    assert stored(env) == before
    out, err = capfd.readouterr()
    # The test's own HTTP client logs the URL it calls; every line of the server side must not.
    server_lines = [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert not any(guess in line for line in server_lines)
    assert guess not in out and guess not in err


SECRET = SANDBOX_LOOKER_DELIVERY_SECRET


@pytest.mark.parametrize(
    "near_miss",
    [
        SECRET + "x",
        SECRET[:-1],
        SECRET[:-1] + chr(ord(SECRET[-1]) + 1),
        SECRET.upper(),
        SECRET.capitalize(),
        "guessed-secret-3141592653",
    ],
    ids=["one-added", "one-removed", "last-changed", "upper-case", "first-upper-case", "unrelated"],
)
def test_a_secret_that_is_almost_right_is_404_and_stores_nothing(env, receiver, near_miss):
    assert near_miss != SECRET
    rows = [
        {
            "vendors.company_name": "CRONUS USA, Inc.",
            "vendors.number": "V80001",
            "vendors.name": "Near miss",
            "vendors.total_balance": 1,
        }
    ]  # a delivery the right secret would store
    before = stored(env)
    response = receiver.post(url(near_miss), json=payload(rows))
    assert response.status_code == 404 and response.json() == {"error": "not found"}
    assert stored(env) == before


def test_exact_amounts_are_stored_and_reach_the_warehouse_digit_for_digit(env, receiver):
    # 20 and 18 significant digits: a binary float keeps about 16.
    data = (
        '[{"vendors.company_name": "CRONUS USA, Inc.", "vendors.number": "V90001", "vendors.name": "Exact A",'
        ' "vendors.total_balance": 12345678901.234567891},'
        ' {"vendors.company_name": "CRONUS USA, Inc.", "vendors.number": "V90002", "vendors.name": "Exact B",'
        ' "vendors.total_balance": 1000000000000000.01}]'
    )
    body = {**payload([]), "attachment": {"data": data, "mimetype": "application/json", "extension": "json"}}
    response = receiver.post(url(), json=body)
    assert response.status_code == 202, response.text
    delivery_id = response.json()["delivery_id"]

    delivery = open_delivery_store(env.cfg.ingest, env.cfg.data_dir, "looker").get(delivery_id)
    balances = [row["vendors.total_balance"] for row in delivery.rows]
    assert all(isinstance(b, Decimal) for b in balances)  # get() returns amounts as Decimal
    assert [str(b) for b in balances] == ["12345678901.234567891", "1000000000000000.01"]

    assert run_delivery(env.cfg, delivery_id).success
    assert env.warehouse.query(
        "SELECT vendors_number, vendors_total_balance FROM looker_vendor_balances ORDER BY 1"
    ) == [("V90001", Decimal("12345678901.234567891")), ("V90002", Decimal("1000000000000000.01"))]


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"not json", "not JSON"),
        (orjson.dumps({"scheduled_plan": {"scheduled_plan_id": PLAN_ID}}), "attachment.data is missing"),
        (orjson.dumps({"attachment": {"data": "[]", "mimetype": "application/json"}}), "scheduled_plan_id is missing"),
        (orjson.dumps(payload([], mimetype="application/pdf;base64", extension="pdf")), "binary format"),
        (
            orjson.dumps({**payload([]), "attachment": {"data": '{"a": 1}', "mimetype": "application/json"}}),
            "list of rows",
        ),
        (orjson.dumps(payload([{"vendors.number": "V1", "vendors.secret_column": 1}])), "vendors.secret_column"),
        (
            orjson.dumps(
                {
                    **payload([]),
                    "attachment": {"data": "Company,Vendor No.\nA,V1\n", "mimetype": "text/csv", "extension": "csv"},
                }
            ),
            "2 column(s) but the query selects 4",
        ),
        (
            orjson.dumps({**payload([]), "attachment": {"data": "a,b,c,d\n1,2,3\n", "mimetype": "text/csv"}}),
            "csv line 2 has 3 value(s)",
        ),
        (  # "JSON - Detailed" of a pivoted Look: a measure's cell is {pivot value: {value}}, not {value}
            orjson.dumps(
                {
                    **payload([]),
                    "attachment": {
                        "data": orjson.dumps(
                            {
                                "data": [
                                    {
                                        "vendors.number": {"value": "V1"},
                                        "vendors.total_balance": {"2026-03": {"value": 10.5}},
                                    }
                                ]
                            }
                        ).decode(),
                        "mimetype": "application/json",
                        "extension": "json_detail",
                    },
                }
            ),  # fmt: skip
            "vendors.total_balance hold a value per pivot column",
        ),
        (
            orjson.dumps(
                {
                    **payload([]),
                    "scheduled_plan": {
                        **payload([])["scheduled_plan"],
                        "query": {**payload([])["scheduled_plan"]["query"], "pivots": ["vendors.company_name"]},
                    },
                }
            ),  # fmt: skip
            "pivots on vendors.company_name",
        ),
    ],
)
def test_malformed_payloads_are_400_and_store_nothing(env, receiver, body, reason):
    before = stored(env)
    response = receiver.post(url(), content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400 and reason in response.json()["error"]
    assert stored(env) == before


def test_a_delivery_that_reached_its_plans_row_limit_is_flagged_not_called_whole(env, receiver):
    """A scheduled plan runs its query with its own limit (a Look's 500, Looker's default 5,000 without 'All
    results'): a delivery that reaches it was cut there. The asset's own `limit` is not the one it ran with."""
    rows = [{"vendors.company_name": "CRONUS USA, Inc.", "vendors.number": f"V{n:05d}", "vendors.name": f"V {n}",
             "vendors.total_balance": n} for n in range(1, 4)]  # fmt: skip
    body = payload(rows)
    body["scheduled_plan"]["query"]["limit"] = "3"
    first = receiver.post(url(), json=body)
    assert first.status_code == 202
    result = run_delivery(env.cfg, first.json()["delivery_id"])
    assert result.success
    [check] = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
               and e.event_specific_data.check_name == "not_truncated"]  # fmt: skip
    assert not check.passed and "limit of 3 rows" in check.description and "All results" in check.description


def test_a_plan_no_asset_takes_is_refused_and_nothing_stored(env, receiver):
    before = stored(env)
    response = receiver.post(url(), json=payload([], plan_id="999"))
    assert response.status_code == 422 and "scheduled plan 999" in response.json()["error"]
    assert stored(env) == before


def test_a_csv_delivery_maps_columns_to_the_query_fields_in_order(env, receiver):
    csv_text = (
        "Vendors Company,Vendors Vendor No.,Vendors Vendor Name,Vendors Total Balance\n"
        'CRONUS USA, Inc.,V1,"Fabrikam, Inc.",12.5\n'.replace("CRONUS USA, Inc.", '"CRONUS USA, Inc."')
    )
    body = {**payload([]), "attachment": {"data": csv_text, "mimetype": "text/csv", "extension": "csv"}}
    response = receiver.post(url(), json=body)
    assert response.status_code == 202 and response.json()["rows"] == 1
    delivery = open_delivery_store(env.cfg.ingest, env.cfg.data_dir, "looker").get(response.json()["delivery_id"])
    assert delivery.rows == [
        {
            "vendors.company_name": "CRONUS USA, Inc.",
            "vendors.number": "V1",
            "vendors.name": "Fabrikam, Inc.",
            "vendors.total_balance": "12.5",
        }
    ]


# -- date-times of a delivery: wall-clock text in the zone the plan's query ran in ---------------------------


@pytest.fixture(scope="module")
def zoned_env(tmp_path_factory):
    """Looker in New York (instance zone and `looker.timezone`) with delivered assets over the G/L entries'
    change times: a query (plan 202), the Look naming Kolkata (plan 203) and the Look naming no zone (204)."""
    env = start_new_york_env(
        tmp_path_factory,
        queries=[
            {
                "name": "gl_changes_query_plan",
                "model": "tz",
                "explore": "gl",
                "fields": GL_CHANGE_FIELDS,
                "scheduled_plan_id": "202",
            },
            {"name": "gl_changes_look_91_plan", "look_id": "91", "scheduled_plan_id": "203"},
            {"name": "gl_changes_look_90_plan", "look_id": "90", "scheduled_plan_id": "204"},
        ],
    )
    yield env
    env.admin.http.close()
    env.running.stop()


def looker_answer(env, method: str, path: str, **request) -> str:
    """The sandbox Looker's own json answer, as a scheduled plan's attachment would carry it."""
    http = env.admin.http
    token = http.post(
        "/api/4.0/login", data={"client_id": env.cfg.looker.client_id, "client_secret": "sandbox-looker-client-secret"}
    ).json()["access_token"]
    response = http.request(method, f"/api/4.0/{path}", headers={"Authorization": f"token {token}"}, **request)
    response.raise_for_status()
    return response.text


@pytest.mark.parametrize(
    "asset, plan_id, look_id, plan_zone",
    [
        ("gl_changes_query_plan", "202", None, "Asia/Tokyo"),
        ("gl_changes_query_plan", "202", None, None),
        ("gl_changes_look_91_plan", "203", "91", None),
        ("gl_changes_look_90_plan", "204", "90", None),
    ],
    ids=["query-plan-names-tokyo", "query-plan-names-no-zone", "look-naming-kolkata", "look-naming-no-zone"],
)
def test_date_times_of_a_delivery_land_as_the_sources_utc_moments(zoned_env, asset, plan_id, look_id, plan_zone):
    """A scheduled plan's rows are Looker's date-times as wall-clock text in the zone its query ran in: the
    query_timezone the payload's plan query names, else the Look's own, else the instance's (New York, as
    `looker.timezone` says). Stored, they are the moments the source holds; read in another zone they would
    be hours off."""
    query = {"model": "tz", "view": "gl", "fields": GL_CHANGE_FIELDS}
    if look_id:  # Looker runs the Look as saved; the payload's query names no zone
        data = looker_answer(zoned_env, "GET", f"looks/{look_id}/run/json")
    else:  # Looker runs the plan's query (in its zone, if it names one) and delivers the answer
        query = {**query, "query_timezone": plan_zone} if plan_zone else query
        data = looker_answer(zoned_env, "POST", "queries/run/json", json={**query, "limit": "5000"})
    body = {
        "type": "query",
        "scheduled_plan": {"scheduled_plan_id": plan_id, "title": asset, "type": "Look", "query": query},
        "attachment": {"data": data, "mimetype": "application/json", "extension": "json"},
        "data": None,
        "form_params": {},
    }
    with serve(create_app(zoned_env.cfg)) as receiver:
        response = receiver.post(url(), json=body)
    assert response.status_code == 202, response.text
    delivery_id = response.json()["delivery_id"]
    delivery = open_delivery_store(zoned_env.cfg.ingest, zoned_env.cfg.data_dir, "looker").get(delivery_id)
    assert delivery.detail["query_timezone"] == plan_zone

    result = run_delivery(zoned_env.cfg, delivery_id)
    assert result.success
    meta = materialization_metadata(result, asset)
    assert meta["source"] == f"delivery {delivery_id}" and meta["looker_query_calls"] == 0
    loaded, source = gl_change_moments(zoned_env, f"looker_{asset}")
    assert loaded == source


@pytest.mark.parametrize(
    ("detail", "limit"),
    [
        ({"limit": "500"}, 500),  # the Look's own
        ({"limit": None}, 5000),  # none named: Looker's default
        ({"limit": "-1"}, None),  # All results
        ({}, None),  # stored before the receiver kept the limit: unknown, not a warning
    ],
)
def test_the_limit_a_delivered_result_ran_with(detail, limit):
    from mlconnector_pipelines.flows.looker import delivery_limit

    assert delivery_limit(detail) == limit
