"""Business Central webhooks in the sandbox, over HTTPS with raw httpx, as a subscriber sees them.

`api/v2.0/subscriptions`: the validation handshake on create and renew, renewal behind If-Match, the
subscription limit, expiry; notifications for created, updated and deleted records (API, admin
API), aggregated into one POST per notification URL after a delay, a `collection` notice past the
threshold, retries after 5xx, a subscription deleted after any other refusal; deleting records.
Facts and sources: docs/vendor-facts/bc-webhook-facts.md. The receiver is a plain-http server in
a thread, as a test's local receiver may be.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from mlconnector_pipelines_tests.conftest import SandboxAdmin, start_sandbox
from mlconnector_pipelines_tests.sandbox.test_bc_write_side import Bc as BcApi

ADMIN = "/_sandbox/business_central"
DELAY = 0.5  # notification_delay_seconds here (30 s in BC)
THRESHOLD = 5  # collection_threshold here (1,000 in BC)
RETRY_WINDOW = 0.5  # notification_retry_window_seconds here (36 hours in BC)


class Receiver:
    """A notification URL per path: answers handshakes as told and notifications with queued statuses."""

    def __init__(self):
        self.requests: list[dict] = []
        self.handshake: dict[str, str] = {}  # path -> echo | wrong | slow | fail
        self.statuses: dict[str, list[int]] = {}  # path -> statuses for notifications (the last repeats)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                parts = urlsplit(self.path)
                token = parse_qs(parts.query).get("validationToken", [None])[0]
                receiver.requests.append(
                    {"path": parts.path, "token": token, "body": body, "headers": dict(self.headers), "at": time.time()}
                )
                if token is not None:
                    mode = receiver.handshake.get(parts.path, "echo")
                    if mode == "slow":
                        time.sleep(1.0)
                    answer = b"not the token" if mode == "wrong" else token.encode()
                    self.send_response(500 if mode == "fail" else 200)
                    self.send_header("Content-Type", "text/plain")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                queued = receiver.statuses.get(parts.path) or [200]
                self.send_response(queued.pop(0) if len(queued) > 1 else queued[0])
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handshakes(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path and r["token"] is not None]

    def notifications(self, path: str) -> list[dict]:
        """The JSON bodies POSTed to `path` (not the handshakes)."""
        return [json.loads(r["body"]) for r in self.requests if r["path"] == path and r["token"] is None]

    def wait(self, path: str, count: int, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.notifications(path)) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.notifications(path)


class Bc(BcApi):
    """BC's API with an app token (test_bc_write_side), and subscription resources by company."""

    def resource(self, entity_set: str, index: int = 0) -> str:
        return f"/api/v2.0/companies({self.companies[index]})/{entity_set}"

    def subscribe(self, url: str, entity_set: str = "customers", state: str = "s3cret", **extra) -> httpx.Response:
        body = {"notificationUrl": url, "resource": self.resource(entity_set), "clientState": state, **extra}
        return self.http.post("/subscriptions", json=body)


@pytest.fixture(scope="module")
def admin(tmp_path_factory):
    running, data_dir = start_sandbox(
        tmp_path_factory,
        notification_delay_seconds=DELAY,
        collection_threshold=THRESHOLD,
        handshake_timeout_seconds=0.5,
        notification_retry_interval_seconds=0.2,
        notification_retry_window_seconds=RETRY_WINDOW,
    )
    sandbox = SandboxAdmin(running)
    yield sandbox
    sandbox.http.close()
    running.stop()


@pytest.fixture(scope="module")
def receiver():
    hooks = Receiver()
    yield hooks
    hooks.server.shutdown()


@pytest.fixture
def bc(admin):
    admin.reset()
    client = Bc(admin)
    yield client
    client.http.close()
    admin.clear_faults()


def error(response: httpx.Response, status: int) -> tuple[str, str]:
    assert response.status_code == status, response.text
    found = response.json()["error"]
    return found["code"], found["message"]


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def subscriptions_view(admin: SandboxAdmin) -> dict:
    return admin.http.get(f"{ADMIN}/subscriptions").json()


def customer_ids(admin: SandboxAdmin, company: str, count: int) -> list[str]:
    return [r["id"] for r in admin.records(company, "customers")[:count]]


# -- subscriptions: handshake, create, list, renew, delete, limit, expiry ------------------------------


def test_create_runs_the_handshake_and_answers_the_subscription(bc, receiver):
    created = bc.subscribe(f"{receiver.url}/hook-create")
    assert created.status_code == 201, created.text
    sub = created.json()
    assert created.headers["Location"].endswith(f"/subscriptions('{sub['subscriptionId']}')")
    assert sub["notificationUrl"] == f"{receiver.url}/hook-create"
    assert sub["resource"] == bc.resource("customers") and sub["clientState"] == "s3cret"
    assert len(sub["subscriptionId"]) == 32 and sub["@odata.etag"].startswith('W/"')
    for name in ("userId", "lastModifiedDateTime", "systemCreatedAt", "systemCreatedBy", "systemModifiedAt"):
        assert sub[name], name
    left = moment(sub["expirationDateTime"]) - datetime.now(UTC)
    assert timedelta(days=3) - timedelta(minutes=1) < left <= timedelta(days=3)
    [handshake] = receiver.handshakes("/hook-create")
    assert handshake["body"] == b"s3cret"  # the client state rides along (an older Microsoft doc)
    listed = bc.http.get("/subscriptions").json()["value"]
    assert [s["subscriptionId"] for s in listed] == [sub["subscriptionId"]]
    one = bc.http.get(f"/subscriptions('{sub['subscriptionId']}')")
    assert one.status_code == 200 and one.json()["@odata.etag"] == sub["@odata.etag"]


@pytest.mark.parametrize("mode", ["wrong", "slow", "fail"])
def test_a_failed_handshake_creates_nothing(bc, receiver, mode):
    receiver.handshake[f"/hook-{mode}"] = mode
    code, message = error(bc.subscribe(f"{receiver.url}/hook-{mode}"), 400)
    assert code == "BadRequest" and "validationToken" in message
    assert bc.http.get("/subscriptions").json()["value"] == []
    assert receiver.handshakes(f"/hook-{mode}")


def test_an_unreachable_url_or_a_resource_without_webhooks_is_refused(bc, receiver):
    with_closed_port = bc.subscribe("http://127.0.0.1:9/hook")
    assert error(with_closed_port, 400)[0] == "BadRequest"
    for resource in (
        bc.resource("salesInvoiceLines"),
        bc.resource("dimensionValues"),
        "/api/v2.0/companies(00000000-0000-0000-0000-000000000001)/customers",
        "/api/v1.0/companies(x)/customers",
    ):
        answer = bc.http.post("/subscriptions", json={"notificationUrl": f"{receiver.url}/h", "resource": resource})
        assert error(answer, 404)[0] == "BadRequest_NotFound", resource
    relative = bc.http.post(
        "/subscriptions",
        json={"notificationUrl": f"{receiver.url}/h", "resource": f"companies({bc.companies[0]})/vendors"},
    )
    assert relative.status_code == 201 and relative.json()["clientState"] == ""


def test_renew_needs_the_current_etag_repeats_the_handshake_and_moves_the_expiry(bc, admin, receiver):
    sub = bc.subscribe(f"{receiver.url}/hook-renew").json()
    path = f"/subscriptions('{sub['subscriptionId']}')"
    aged = admin.http.post(f"{ADMIN}/subscriptions/{sub['subscriptionId']}/age", json={"seconds": 2.5 * 86400})
    assert aged.json()["expired"] is False
    old_expiry = moment(bc.http.get(path).json()["expirationDateTime"])
    assert old_expiry - datetime.now(UTC) < timedelta(hours=13)
    assert error(bc.http.patch(path, json={}), 400)[0] == "BadRequest_InvalidToken"
    assert error(bc.http.patch(path, json={}, headers={"If-Match": 'W/"JzE7MTsn"'}), 409)[0] == "Request_EntityChanged"
    renewed = bc.http.patch(path, json={"clientState": "new"}, headers={"If-Match": sub["@odata.etag"]})
    assert renewed.status_code == 200, renewed.text
    assert moment(renewed.json()["expirationDateTime"]) - datetime.now(UTC) > timedelta(days=3) - timedelta(minutes=1)
    assert renewed.json()["clientState"] == "new" and renewed.json()["@odata.etag"] != sub["@odata.etag"]
    assert len(receiver.handshakes("/hook-renew")) == 2
    # a renewal whose handshake fails leaves the subscription as it was
    receiver.handshake["/hook-renew"] = "wrong"
    refused = bc.http.patch(path, json={}, headers={"If-Match": renewed.json()["@odata.etag"]})
    assert error(refused, 400)[0] == "BadRequest"
    assert bc.http.get(path).json()["expirationDateTime"] == renewed.json()["expirationDateTime"]


def test_delete_checks_a_sent_etag_and_an_expired_subscription_vanishes(bc, admin, receiver):
    first = bc.subscribe(f"{receiver.url}/hook-del").json()
    second = bc.subscribe(f"{receiver.url}/hook-del").json()
    path = f"/subscriptions('{first['subscriptionId']}')"
    assert error(bc.http.delete(path, headers={"If-Match": 'W/"JzE7MTsn"'}), 409)[0] == "Request_EntityChanged"
    assert bc.http.delete(path, headers={"If-Match": first["@odata.etag"]}).status_code == 204
    assert error(bc.http.get(path), 404)[0] == "BadRequest_NotFound"
    admin.http.post(f"{ADMIN}/subscriptions/{second['subscriptionId']}/age", json={"seconds": 3 * 86400})
    assert bc.http.get("/subscriptions").json()["value"] == []
    deleted = subscriptions_view(admin)["deleted"]
    assert [(d["subscriptionId"], d["reason"]) for d in deleted] == [(second["subscriptionId"], "expired")]


def test_the_201st_subscription_is_refused(bc, admin, receiver):
    for index in range(200):
        assert bc.subscribe(f"{receiver.url}/hook-many", state=str(index)).status_code == 201, index
    code, message = error(bc.subscribe(f"{receiver.url}/hook-many"), 400)
    assert code == "BadRequest" and "200" in message
    assert admin.state("business_central")["subscriptions"]["active"] == 200
    some = bc.http.get("/subscriptions").json()["value"][0]
    admin.http.delete(f"{ADMIN}/subscriptions/{some['subscriptionId']}").raise_for_status()
    assert bc.subscribe(f"{receiver.url}/hook-many").status_code == 201


def test_requests_go_through_the_pipeline(bc, admin, receiver):
    admin.faults({"kind": "status", "status": 429, "path_contains": "/subscriptions"})
    assert error(bc.subscribe(f"{receiver.url}/hook-fault"), 429)[0] == "Application_TooManyRequests"
    assert bc.http.get("/subscriptions", headers={"Authorization": "Bearer nope"}).status_code == 401


# -- notifications ----------------------------------------------------------------------------------


def test_api_changes_arrive_as_one_post_after_the_delay(bc, receiver):
    sub = bc.subscribe(f"{receiver.url}/hook-api").json()
    started = time.time()
    created = bc.http.post(f"/companies({bc.companies[0]})/customers", json={"displayName": "Webhook Ltd"}).json()
    customer = f"/companies({bc.companies[0]})/customers({created['id']})"
    patched = bc.http.patch(
        customer, json={"displayName": "Webhook Ltd."}, headers={"If-Match": created["@odata.etag"]}
    )
    assert patched.status_code == 200
    assert bc.http.delete(customer, headers={"If-Match": patched.json()["@odata.etag"]}).status_code == 204
    [post] = receiver.wait("/hook-api", 1)
    arrived = next(r["at"] for r in receiver.requests if r["path"] == "/hook-api" and r["token"] is None)
    assert arrived - started >= DELAY * 0.9  # waited for more changes, as BC does
    assert [n["changeType"] for n in post["value"]] == ["created", "updated", "deleted"]
    for notice in post["value"]:
        assert list(notice) == [
            "subscriptionId",
            "clientState",
            "expirationDateTime",
            "resource",
            "changeType",
            "lastModifiedDateTime",
        ]
        assert notice["subscriptionId"] == sub["subscriptionId"] and notice["clientState"] == "s3cret"
        assert notice["expirationDateTime"] == sub["expirationDateTime"]
        assert notice["resource"] == f"{bc.resource('customers')}({created['id']})"
    assert post["value"][0]["lastModifiedDateTime"] == created["lastModifiedDateTime"]
    assert post["value"][1]["lastModifiedDateTime"] == patched.json()["lastModifiedDateTime"]
    assert moment(post["value"][2]["lastModifiedDateTime"]) >= moment(patched.json()["lastModifiedDateTime"])
    time.sleep(DELAY + 0.2)
    assert len(receiver.notifications("/hook-api")) == 1  # nothing more


def test_admin_changes_are_notified_and_updates_of_one_record_merge(bc, admin, receiver):
    bc.subscribe(f"{receiver.url}/hook-admin", entity_set="vendors")
    company = bc.companies[0]
    vendor = admin.records(company, "vendors")[0]
    for name in ("One", "Two", "Three"):
        admin.upsert(company, "vendors", {"id": vendor["id"], "displayName": name})
    new = admin.upsert(company, "vendors", {"displayName": "Brand new"})
    gone = admin.http.delete(f"{ADMIN}/companies/{company}/vendors/{new['id']}")
    assert gone.status_code == 200
    admin.upsert(company, "customers", {"displayName": "not subscribed"})
    admin.upsert(bc.companies[1], "vendors", {"id": vendor["id"], "displayName": "the other company"})
    flushed = admin.http.post(f"{ADMIN}/subscriptions/flush").json()["attempts"]
    assert [a["outcome"] for a in flushed] == ["delivered"]
    [post] = receiver.wait("/hook-admin", 1)
    assert [(n["changeType"], n["resource"].rsplit("(", 1)[1]) for n in post["value"]] == [
        ("updated", f"{vendor['id']})"),
        ("created", f"{new['id']})"),
        ("deleted", f"{new['id']})"),
    ]
    current = next(r for r in admin.records(company, "vendors") if r["id"] == vendor["id"])
    assert post["value"][0]["lastModifiedDateTime"] == current["lastModifiedDateTime"]  # the last update's time
    assert admin.state("business_central")["subscriptions"]["pending_notices"] == 0


def test_a_line_change_notifies_its_document_and_two_subscriptions_share_one_post(bc, receiver):
    orders = bc.subscribe(f"{receiver.url}/hook-docs", entity_set="salesOrders").json()
    customers = bc.subscribe(f"{receiver.url}/hook-docs", entity_set="customers").json()
    company = f"/companies({bc.companies[0]})"
    order = bc.http.get(f"{company}/salesOrders", params={"$filter": "status eq 'Draft'", "$top": 1}).json()["value"][0]
    line = bc.http.post(
        f"{company}/salesOrders({order['id']})/salesOrderLines",
        json={"lineType": "Item", "lineObjectNumber": "1000-S", "quantity": 1},
    )
    assert line.status_code == 201, line.text
    bc.http.post(f"{company}/customers", json={"displayName": "Shared Post Inc"})
    [post] = receiver.wait("/hook-docs", 1)
    assert {(n["subscriptionId"], n["changeType"]) for n in post["value"]} == {
        (orders["subscriptionId"], "updated"),
        (customers["subscriptionId"], "created"),
    }
    assert f"{bc.resource('salesOrders')}({order['id']})" in [n["resource"] for n in post["value"]]


def test_more_changes_than_the_threshold_become_one_collection_notice(bc, admin, receiver):
    bc.subscribe(f"{receiver.url}/hook-many-changes")
    company = bc.companies[0]
    changed = [
        admin.upsert(company, "customers", {"id": i, "phoneNumber": "555"}) for i in customer_ids(admin, company, 7)
    ]
    admin.http.post(f"{ADMIN}/subscriptions/flush")
    [post] = receiver.wait("/hook-many-changes", 1)
    [notice] = post["value"]
    assert notice["changeType"] == "collection"
    base, query = notice["resource"].split("?", 1)
    assert base == bc.resource("customers")
    # BC's filter: lastModifiedDateTime gt (the first change - 50 ms), the blank as %20
    since = min(moment(r["lastModifiedDateTime"]) for r in changed) - timedelta(milliseconds=50)
    assert query == f"$filter=lastModifiedDateTime%20gt%20{stamp(since)}"
    assert notice["lastModifiedDateTime"] == max(r["lastModifiedDateTime"] for r in changed)
    # the subscriber reads the collection with that filter and finds every changed record
    filter_ = unquote(query.removeprefix("$filter="))
    found = bc.http.get(f"/companies({company})/customers", params={"$filter": filter_}).json()["value"]
    assert {r["id"] for r in changed} <= {r["id"] for r in found}


def test_a_collection_with_a_deletion_carries_no_filter(bc, admin, receiver):
    bc.subscribe(f"{receiver.url}/hook-collection-delete")
    company = bc.companies[0]
    ids = customer_ids(admin, company, 6)
    for customer_id in ids[:5]:
        admin.upsert(company, "customers", {"id": customer_id, "phoneNumber": "556"})
    admin.http.delete(f"{ADMIN}/companies/{company}/customers/{ids[5]}").raise_for_status()
    admin.http.post(f"{ADMIN}/subscriptions/flush")
    [post] = receiver.wait("/hook-collection-delete", 1)
    assert [(n["changeType"], n["resource"]) for n in post["value"]] == [("collection", bc.resource("customers"))]


def test_a_5xx_answer_is_retried_with_the_same_notices(bc, admin, receiver):
    receiver.statuses["/hook-retry"] = [503, 200]
    sub = bc.subscribe(f"{receiver.url}/hook-retry").json()
    company = bc.companies[0]
    [customer_id] = customer_ids(admin, company, 1)
    admin.upsert(company, "customers", {"id": customer_id, "phoneNumber": "557"})
    posts = receiver.wait("/hook-retry", 2)
    assert len(posts) == 2 and posts[0] == posts[1]
    # The sender records an attempt once its answer is in: the receiver can see the POST a moment before.
    deadline = time.monotonic() + 5
    while True:
        [listed] = subscriptions_view(admin)["subscriptions"]
        if len([a for a in listed["attempts"] if a["kind"] == "notification"]) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert [(a["status"], a["outcome"]) for a in listed["attempts"] if a["kind"] == "notification"] == [
        (503, "retrying"),
        (200, "delivered"),
    ]
    assert listed["subscriptionId"] == sub["subscriptionId"] and listed["pendingNotices"] == 0


def test_retries_end_after_the_window_and_the_subscription_goes(bc, admin, receiver):
    receiver.statuses["/hook-down"] = [503]
    sub = bc.subscribe(f"{receiver.url}/hook-down").json()
    company = bc.companies[0]
    [customer_id] = customer_ids(admin, company, 1)
    admin.upsert(company, "customers", {"id": customer_id, "phoneNumber": "560"})
    deadline = time.monotonic() + 5
    while bc.http.get("/subscriptions").json()["value"] and time.monotonic() < deadline:
        time.sleep(0.05)
    view = subscriptions_view(admin)
    attempts = [a for a in view["deliveries"] if a["kind"] == "notification"]
    assert len(attempts) >= 3 and {a["status"] for a in attempts} == {503}
    assert [a["outcome"] for a in attempts][-1] == "given up"
    assert [(d["subscriptionId"], d["reason"]) for d in view["deleted"]] == [
        (sub["subscriptionId"], "notification retries exhausted")
    ]


def test_a_400_answer_deletes_the_subscription(bc, admin, receiver):
    receiver.statuses["/hook-refuse"] = [400]
    sub = bc.subscribe(f"{receiver.url}/hook-refuse").json()
    company = bc.companies[0]
    [customer_id] = customer_ids(admin, company, 1)
    admin.upsert(company, "customers", {"id": customer_id, "phoneNumber": "558"})
    assert len(receiver.wait("/hook-refuse", 1)) == 1
    deadline = time.monotonic() + 3
    while bc.http.get("/subscriptions").json()["value"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert bc.http.get("/subscriptions").json()["value"] == []
    [deleted] = subscriptions_view(admin)["deleted"]
    assert deleted["subscriptionId"] == sub["subscriptionId"] and "400" in deleted["reason"]
    admin.upsert(company, "customers", {"id": customer_id, "phoneNumber": "559"})
    time.sleep(DELAY + 0.2)
    assert len(receiver.notifications("/hook-refuse")) == 1  # no more notices


# -- deleting records ---------------------------------------------------------------------------------


def test_deletes_follow_bcs_rules(bc, admin):
    company = f"/companies({bc.companies[0]})"
    invoices = bc.http.get(f"{company}/salesInvoices").json()["value"]
    posted = next(i for i in invoices if i["status"] in ("Open", "Paid"))
    draft = next(i for i in invoices if i["status"] == "Draft")
    code, message = error(bc.http.delete(f"{company}/salesInvoices({posted['id']})"), 400)
    assert code == "Application_FieldValidationException" and "Allow Document Deletion Before" in message
    assert bc.http.get(f"{company}/salesInvoices({posted['id']})").status_code == 200
    assert bc.http.delete(f"{company}/salesInvoices({draft['id']})").status_code == 204
    assert error(bc.http.get(f"{company}/salesInvoices({draft['id']})"), 404)[0] == "BadRequest_NotFound"
    assert error(bc.http.get(f"{company}/salesInvoices({draft['id']})/salesInvoiceLines"), 404)
    account = bc.http.get(f"{company}/accounts").json()["value"][0]
    assert error(bc.http.delete(f"{company}/accounts({account['id']})"), 405)[0] == "BadRequest_MethodNotAllowed"
    item = bc.http.get(f"{company}/items").json()["value"][0]
    stale = bc.http.delete(f"{company}/items({item['id']})", headers={"If-Match": 'W/"JzE7MTsn"'})
    assert error(stale, 409)[0] == "Request_EntityChanged"
    assert (
        bc.http.delete(f"{company}/items({item['id']})", headers={"If-Match": item["@odata.etag"]}).status_code == 204
    )
    assert admin.state("business_central")["writes"]["DELETE salesInvoices"] == 1


def test_the_live_mode_deletes_seeded_records_and_subscribers_hear_it(tmp_path_factory, receiver):
    running, _ = start_sandbox(
        tmp_path_factory, live=True, live_interval_seconds=0.05, live_delete_chance=1.0, notification_delay_seconds=0.2
    )
    admin = SandboxAdmin(running)
    bc = Bc(admin)
    try:
        mine = bc.http.post(f"/companies({bc.companies[0]})/customers", json={"displayName": "Kept Ltd"}).json()
        for entity_set in ("customers", "vendors"):
            assert bc.subscribe(f"{receiver.url}/hook-live", entity_set=entity_set).status_code == 201
        deadline = time.monotonic() + 10
        while True:
            notices = [n for post in receiver.notifications("/hook-live") for n in post["value"]]
            deleted = [n for n in notices if n["changeType"] == "deleted"]
            if deleted:
                break
            assert time.monotonic() < deadline, notices
            time.sleep(0.05)
        entity_set, record_id = deleted[0]["resource"].rsplit("/", 1)[1].rstrip(")").split("(")
        assert record_id not in {r["id"] for r in admin.records(bc.companies[0], entity_set)}
        assert mine["id"] in {r["id"] for r in admin.records(bc.companies[0], "customers")}
        writes = admin.state("business_central")["writes"]
        assert writes.get("live DELETE customers", 0) + writes.get("live DELETE vendors", 0) >= 1
    finally:
        bc.http.close()
        admin.http.close()
        running.stop()
