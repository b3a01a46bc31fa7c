"""`mlconnector ingest` over real HTTP: the body limit, the store's quota and retention, deduplication by
meaning, and the check of a Look's deliveries against the fields Looker says the Look selects."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import orjson
import pytest

from mlconnector_pipelines.config import ConnectorConfig
from mlconnector_pipelines.ingest.app import create_app
from mlconnector_pipelines.ingest.config import IngestConfig
from mlconnector_pipelines.ingest.store import open_delivery_store
from mlconnector_pipelines.sandbox.looker import CLIENT_SECRET as SANDBOX_LOOKER_CLIENT_SECRET

from .test_looker import start_looker_env
from .test_looker_deliveries import FIELDS, payload, serve, url

MB = 1024 * 1024
DAY = 86_400.0
DB_URL_ENV = "MLCONNECTOR_TEST_DELIVERY_DB"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = start_looker_env(tmp_path_factory, days=("2026-03-01", "2026-03-02"))
    yield env
    env.admin.http.close()
    env.running.stop()


@pytest.fixture(params=["files", "sql"])
def store_settings(request, tmp_path, monkeypatch) -> dict:
    """`ingest` settings for each store: files in the data folder, or a (SQLite) database."""
    if request.param == "sql":
        monkeypatch.setenv(DB_URL_ENV, f"sqlite:///{tmp_path / 'deliveries.db'}")
        return {"store_url": {"env": DB_URL_ENV}}
    return {}


def receiver_config(env, data_dir, looker: dict | None = None, **ingest) -> ConnectorConfig:
    """The module's configuration with a private data folder (so a private store) and these settings."""
    update = {"data_dir": data_dir, "ingest": IngestConfig(**ingest)}
    if looker:
        update["looker"] = env.cfg.looker.model_copy(update=looker)
    return env.cfg.model_copy(update=update)


def stored(cfg: ConnectorConfig) -> list[str]:
    return [d.id for _, d in open_delivery_store(cfg.ingest, cfg.data_dir, "looker").after(None)]


def vendors(count: int, name: str = "Vendor", balance: float = 10.25) -> list[dict]:
    return [
        {
            "vendors.company_name": "CRONUS USA, Inc.",
            "vendors.number": f"V{n:06d}",
            "vendors.name": f"{name} {n}",
            "vendors.total_balance": balance * n,
        }
        for n in range(1, count + 1)
    ]


class Clock:
    """The receiver's time, moved by the test."""

    def __init__(self, start: float = 1_800_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


# -- 1. the body limit holds for a chunked upload --------------------------------------------------------


def test_a_chunked_body_past_the_limit_is_413_and_the_receiver_stops_reading(env, tmp_path):
    cfg = receiver_config(env, tmp_path, max_body_mb=1)
    sent = 0

    def chunks():  # no Content-Length: httpx sends it chunked
        nonlocal sent
        yield b'{"type": "query", "padding": "'
        for _ in range(1024):  # 64 MB, were the receiver to read it all
            sent += 64 * 1024
            yield b"x" * (64 * 1024)
        yield b'"}'

    with serve(create_app(cfg)) as http:
        response = http.post(url(), content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "ingest.max_body_mb" in response.json()["error"]
    # Refused once past 1 MB: what else left the client is what the sockets' buffers took meanwhile.
    assert sent < 16 * MB
    assert stored(cfg) == []


def test_a_chunked_delivery_within_the_limit_is_stored(env, tmp_path):
    cfg = receiver_config(env, tmp_path, max_body_mb=1)
    body = orjson.dumps(payload(vendors(50)))

    def chunks():
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    with serve(create_app(cfg)) as http:
        response = http.post(url(), content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 202 and response.json()["rows"] == 50
    assert stored(cfg) == [response.json()["delivery_id"]]


def test_a_declared_length_past_the_limit_is_413_before_the_body_is_read(env, tmp_path):
    cfg = receiver_config(env, tmp_path, max_body_mb=1)
    with serve(create_app(cfg)) as http:
        response = http.post(url(), content=b"x" * (MB + 1), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "1,048,576 bytes" in response.json()["error"]
    assert stored(cfg) == []


# -- 2. the store is bounded: quota and retention, in both stores ---------------------------------------


def test_a_delivery_past_the_quota_is_507_and_nothing_is_stored(env, tmp_path, store_settings):
    cfg = receiver_config(env, tmp_path, quota_mb=1, **store_settings)
    first, second = payload(vendors(5000, "First")), payload(vendors(5000, "Second"))  # about 0.6 MB stored each
    with serve(create_app(cfg)) as http:
        accepted = http.post(url(), json=first)
        assert accepted.status_code == 202
        refused = http.post(url(), json=second)
        assert refused.status_code == 507
        assert "quota_mb = 1 MB" in refused.json()["error"] and "Nothing was stored" in refused.json()["error"]
        assert stored(cfg) == [accepted.json()["delivery_id"]]
        # A repeat of what is stored is still answered as one (the sender must stop retrying it).
        again = http.post(url(), json=first)
        assert again.status_code == 200 and again.json()["stored"] is False


def test_deliveries_past_the_retention_are_removed_on_the_next_put(env, tmp_path, store_settings):
    cfg = receiver_config(env, tmp_path, retention_days=30, **store_settings)
    clock = Clock()
    with serve(create_app(cfg, clock=clock)) as http:
        old = http.post(url(), json=payload(vendors(3, "Old"))).json()["delivery_id"]
        clock.now += 29 * DAY
        recent = http.post(url(), json=payload(vendors(3, "Recent"))).json()["delivery_id"]
        assert stored(cfg) == [old, recent]  # 29 days: both kept
        clock.now += 2 * DAY
        new = http.post(url(), json=payload(vendors(3, "New"))).json()["delivery_id"]
    assert stored(cfg) == [recent, new]  # `old` was 31 days old at this put


def test_room_freed_by_the_retention_lets_a_refused_delivery_in(env, tmp_path, store_settings):
    cfg = receiver_config(env, tmp_path, quota_mb=1, retention_days=1, **store_settings)
    clock = Clock()
    with serve(create_app(cfg, clock=clock)) as http:
        assert http.post(url(), json=payload(vendors(5000, "First"))).status_code == 202
        second = payload(vendors(5000, "Second"))
        assert http.post(url(), json=second).status_code == 507
        clock.now += 1.5 * DAY
        retried = http.post(url(), json=second)
    assert retried.status_code == 202 and stored(cfg) == [retried.json()["delivery_id"]]


# -- 3. a Look's delivery is checked against the Look's fields -------------------------------------------


def without_payload_fields(body: dict) -> dict:
    plan = {k: v for k, v in body["scheduled_plan"].items() if k != "query"}
    return {**body, "scheduled_plan": plan}


@pytest.mark.parametrize("payload_names_fields", [False, True], ids=["fields-from-looker", "fields-in-payload"])
def test_rows_with_fields_the_look_does_not_select_are_400_naming_row_and_fields(env, tmp_path, payload_names_fields):
    cfg = receiver_config(env, tmp_path)
    rows = vendors(3)
    rows[1] = {**rows[1], "vendors.phone_number": "555-0100"}
    body = payload(rows)
    if payload_names_fields:  # the payload claims the extra field; the Look (in Looker) does not select it
        body["scheduled_plan"]["query"]["fields"] = FIELDS + ["vendors.phone_number"]
    else:
        body = without_payload_fields(body)
    with serve(create_app(cfg)) as http:
        response = http.post(url(), json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert "vendors.phone_number" in error and "Look 1" in error
    assert payload_names_fields or "row 2" in error
    assert stored(cfg) == []


def test_a_look_delivery_without_fields_is_checked_against_the_look_and_stored(env, tmp_path):
    cfg = receiver_config(env, tmp_path)
    csv_text = "Company,Vendor No.,Vendor Name,Total Balance\nCRONUS USA,V1,Fabrikam,12.5\n"
    csv_body = without_payload_fields(
        {**payload([]), "attachment": {"data": csv_text, "mimetype": "text/csv", "extension": "csv"}}
    )
    with serve(create_app(cfg)) as http:
        as_json = http.post(url(), json=without_payload_fields(payload(vendors(2))))
        as_csv = http.post(url(), json=csv_body)  # its columns are named by the Look's fields, from Looker
    assert as_json.status_code == 202 and as_csv.status_code == 202, (as_json.text, as_csv.text)
    store = open_delivery_store(cfg.ingest, cfg.data_dir, "looker")
    assert store.get(as_csv.json()["delivery_id"]).rows == [
        dict(zip(FIELDS, ["CRONUS USA", "V1", "Fabrikam", "12.5"], strict=True))
    ]


def test_looker_unreachable_is_503_and_nothing_is_stored(env, tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        cfg = receiver_config(env, tmp_path, looker={"base_url": f"https://127.0.0.1:{closed.getsockname()[1]}"})
        with serve(create_app(cfg)) as http:
            response = http.post(url(), json=payload(vendors(2)))
    finally:
        closed.close()
    assert response.status_code == 503
    assert "Look 1" in response.json()["error"] and "send it again" in response.json()["error"]
    assert stored(cfg) == []


def test_a_failing_looker_is_503_and_the_retried_delivery_is_accepted(env, tmp_path, monkeypatch):
    # The API secret from the environment, as in production (an EnvVar the receiver itself must resolve).
    monkeypatch.setenv("MLCONNECTOR_LOOKER_CLIENT_SECRET", SANDBOX_LOOKER_CLIENT_SECRET)
    cfg = receiver_config(env, tmp_path)
    body = payload(vendors(2))
    env.admin.faults(
        {"kind": "status", "status": 503, "path_contains": "/api/4.0/looks/", "count": 1000}, service="looker"
    )
    try:
        with serve(create_app(cfg)) as http:
            failed = http.post(url(), json=body)
            assert failed.status_code == 503 and stored(cfg) == []
            env.admin.clear_faults()
            retried = http.post(url(), json=body)  # a failure is not cached
    finally:
        env.admin.clear_faults()
    assert retried.status_code == 202 and stored(cfg) == [retried.json()["delivery_id"]]


# -- 4. deduplication by what a delivery means ----------------------------------------------------------

ROWS_AS_SENT = (
    '[{"vendors.company_name": "CRONUS USA, Inc.", "vendors.number": "V1", "vendors.name": "Fabrikam",'
    ' "vendors.total_balance": 1.50}, {"vendors.company_name": "CRONUS USA, Inc.", "vendors.number": "V2",'
    ' "vendors.name": "Contoso", "vendors.total_balance": 100}]'
)
ROWS_RESERIALISED = (
    '[{"vendors.total_balance":1.5,"vendors.name":"Fabrikam","vendors.number":"V1",'
    '"vendors.company_name":"CRONUS USA, Inc."},\n  {"vendors.name":"Contoso",'
    '"vendors.total_balance":1E+2,"vendors.company_name":"CRONUS USA, Inc.","vendors.number":"V2"}]'
)


def json_delivery(data: str) -> dict:
    return {**payload([]), "attachment": {"data": data, "mimetype": "application/json", "extension": "json"}}


def test_the_same_rows_reserialised_are_the_same_delivery_and_a_changed_value_is_not(env, tmp_path):
    cfg = receiver_config(env, tmp_path)
    with serve(create_app(cfg)) as http:
        first = http.post(url(), json=json_delivery(ROWS_AS_SENT))
        assert first.status_code == 202
        # Other key order, whitespace and number spelling, inside an envelope serialised otherwise too.
        envelope = orjson.dumps(json_delivery(ROWS_RESERIALISED), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
        same = http.post(url(), content=envelope, headers={"content-type": "application/json"})
        assert same.status_code == 200 and same.json() == {**first.json(), "stored": False}
        changed = http.post(url(), json=json_delivery(ROWS_AS_SENT.replace("1.50", "1.51")))
        assert changed.status_code == 202 and changed.json()["delivery_id"] != first.json()["delivery_id"]
    assert stored(cfg) == [first.json()["delivery_id"], changed.json()["delivery_id"]]


def test_a_result_that_comes_again_after_another_is_a_delivery_of_its_own(env, tmp_path, store_settings):
    """Monday's result (A), Tuesday's (B), then Monday's rows again on Wednesday: the third was taken for a
    repeat of the first (one digest of the rows, looked for in the whole retention), started no run, and the
    asset kept Tuesday's figures. It is stored, with an id of its own; a retry of it is still a repeat."""
    cfg = receiver_config(env, tmp_path, **store_settings)
    with serve(create_app(cfg)) as http:
        monday = http.post(url(), json=json_delivery(ROWS_AS_SENT)).json()
        tuesday = http.post(url(), json=json_delivery(ROWS_AS_SENT.replace("1.50", "9.99"))).json()
        wednesday = http.post(url(), json=json_delivery(ROWS_AS_SENT))
        retried = http.post(url(), json=json_delivery(ROWS_AS_SENT))
    assert wednesday.status_code == 202 and wednesday.json()["delivery_id"] not in (monday["delivery_id"],
                                                                                   tuesday["delivery_id"])  # fmt: skip
    assert retried.status_code == 200 and retried.json() == {**wednesday.json(), "stored": False}
    assert stored(cfg) == [monday["delivery_id"], tuesday["delivery_id"], wednesday.json()["delivery_id"]]


def test_rows_an_expired_delivery_carried_come_again_as_a_delivery_of_its_own(tmp_path):
    """A monthly result, in a store other deliveries keep putting into: each month finds the last one past the
    retention, and month 3's rows, month 1's again, had month 1's id (the rows' digest): Dagster starts one run
    per run key, so the asset kept month 2's figures."""
    from mlconnector_pipelines.ingest.app import store_unless_repeated
    from mlconnector_pipelines.ingest.identity import delivery_id
    from mlconnector_pipelines.ingest.store import Bounds, Delivery, FileDeliveryStore

    clock = Clock()
    store = FileDeliveryStore(tmp_path, Bounds(retention_days=30), clock=clock)

    def deliver(target: str, rows: list[dict]) -> str:
        received = datetime.fromtimestamp(clock(), UTC).isoformat()
        content = delivery_id(target, "7", ["v.name"], rows)
        stored, _ = store_unless_repeated(store, Delivery(content, "looker", target, received, {}, rows))
        return stored.id

    monthly = []
    for name in ("Foo", "Bar", "Foo"):
        monthly.append(deliver("monthly", [{"v.name": name}]))
        for _ in range(31):  # another asset, delivered daily: its puts expire the monthly one
            clock.now += DAY
            deliver("daily", [{"v.name": f"day {clock.now}"}])
    assert len(set(monthly)) == 3, monthly


def test_a_value_holding_half_a_surrogate_pair_is_400_naming_its_row_and_nothing_is_stored(env, tmp_path):
    """A database string cut inside an emoji: JSON's `\\ud83d` alone parses, then no store could write it, and
    the receiver answered a bare 500 on every retry."""
    cfg = receiver_config(env, tmp_path)
    rows = '[{"vendors.number": "V1", "vendors.name": "Caf\\u00e9"}, {"vendors.number": "V2", "vendors.name": "Caf\\ud83d"}]'
    with serve(create_app(cfg)) as http:
        refused = http.post(url(), json=json_delivery(rows))
        kept = http.post(url(), json=json_delivery(rows.replace("\\ud83d", "\\ud83d\\ude00")))  # a whole pair
    assert refused.status_code == 400 and "row 2: vendors.name" in refused.json()["error"], refused.text
    assert kept.status_code == 202 and stored(cfg) == [kept.json()["delivery_id"]]


@pytest.mark.parametrize("secret", ["Zx9q/4kT+mP2wLr8vN1b==", "a-secret-of-20-chars?x", "spaces in a secret value"])
def test_a_delivery_secret_that_cannot_be_one_url_segment_is_refused_at_start(env, tmp_path, monkeypatch, secret):
    """A base64 secret holding `/` could never match the receiver's URL: every delivery was 404, nothing logged."""
    from mlconnector_pipelines.core.errors import ConfigError
    from mlconnector_pipelines.core.settings import SecretRef
    from mlconnector_pipelines.ingest.app import looker_delivery_secret

    monkeypatch.setenv("MLC_TEST_DELIVERY_SECRET", secret)
    cfg = receiver_config(env, tmp_path)
    looker = cfg.looker.model_copy(update={"delivery_secret": SecretRef(env="MLC_TEST_DELIVERY_SECRET")})
    with pytest.raises(ConfigError, match="one segment of the URL"):
        looker_delivery_secret(cfg.model_copy(update={"looker": looker}))


@pytest.mark.parametrize(
    "webhook, url",
    [
        ({"type": "webhook_key"}, "/dataverse/webhooks?code=DataverseKey0123456"),
        ({"type": "http_query_string", "name": "sig"}, "/dataverse/webhooks?x=1&sig=DataverseKey0123456"),
    ],
    ids=["webhook-key", "query-string"],
)
def test_server_logs_mask_the_dataverse_webhook_key_in_the_query(tmp_path, webhook, url):
    """The receiver's log filter masked Looker's URL secret only: Dataverse's key arrives in the query (`?code=` for
    a WebhookKey, the configured name for HttpQueryString) and stood in any access log line, whoever turns it on."""
    import logging

    from mlconnector_pipelines.config import parse_config, sandbox_profile

    raw = sandbox_profile(tmp_path / "sandbox", "https://127.0.0.1:1")
    raw["data_dir"] = str(tmp_path)
    raw["dataverse"]["webhook"] = {**webhook, "key": {"env": "MLC_TEST_UNSET", "sandbox_default": "x" * 20}}
    create_app(parse_config(raw))
    access_log = logging.getLogger("uvicorn.access")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    access_log.addHandler(handler)
    try:
        for path in (url, "/looker/scheduled-plans/LookerSecret0123456"):
            access_log.warning('%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "POST", path, "1.1", 202)  # uvicorn's shape
    finally:
        access_log.removeHandler(handler)
    dataverse, looker = (r.getMessage() for r in records)
    assert "DataverseKey0123456" not in dataverse and "=<secret>" in dataverse, dataverse
    assert "LookerSecret0123456" not in looker
