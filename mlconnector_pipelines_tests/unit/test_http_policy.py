"""The retry/back-off/re-auth policy, with a scripted transport and a recorded clock.

These are unit tests of core.http's decisions; the same behaviours are exercised over real
HTTP against the sandbox in test_bc_flow.py.
"""

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC
from decimal import Decimal

import httpx
import pyarrow as pa
import pytest

from mlconnector_pipelines.core.errors import AuthenticationError, OutcomeUnknown, RequestFailedError
from mlconnector_pipelines.core.http import HttpPolicy, ThrottledClient
from mlconnector_pipelines.core.odata import datetime_literal, half_open_window_filter, iterate_record_tables
from mlconnector_pipelines.core.tls import NOT_TLS_FIX


def scripted(*responses):
    """A transport that answers with the given (status, headers) in order and records requests."""
    seen = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        status, headers = item
        return httpx.Response(
            status,
            headers=headers,
            json={"value": [], "error": {"code": "X", "message": "nope"}} if status >= 400 else {"value": [1]},
        )

    return httpx.MockTransport(handler), seen


def client(transport, sleeps, **policy):
    return ThrottledClient(
        "Test",
        base_url="https://api.test",
        transport=transport,
        sleep=sleeps.append,
        policy=HttpPolicy(**{"backoff_base_seconds": 1.0, "backoff_cap_seconds": 8.0, **policy}),
        rng=random.Random(1),
    )


def test_retry_after_is_honoured_when_present():
    transport, seen = scripted((429, {"Retry-After": "7"}), (503, {"Retry-After": "2"}), (200, {}))
    sleeps = []
    c = client(transport, sleeps)
    assert c.get_json("/x") == {"value": [1]}
    assert sleeps == [7.0, 2.0]
    assert (c.stats.requests, c.stats.retries, c.stats.throttled, c.stats.server_errors) == (3, 2, 1, 1)


def test_a_retry_after_longer_than_accepted_fails_at_once_instead_of_retrying_early():
    transport, seen = scripted((429, {"Retry-After": "900"}), (200, {}))
    sleeps = []
    with pytest.raises(RequestFailedError, match="asks to wait 900 s before trying again"):
        client(transport, sleeps, max_retry_after_seconds=300).get_json("/x")
    assert len(seen) == 1 and sleeps == []


def test_without_retry_after_backoff_is_full_jitter_and_capped():
    transport, _ = scripted(*[(429, {})] * 6, (200, {}))
    sleeps = []
    c = client(transport, sleeps, max_attempts=8)
    c.get_json("/x")
    ceilings = [min(8.0, 1.0 * 2**n) for n in range(6)]
    assert all(0 <= s <= ceiling for s, ceiling in zip(sleeps, ceilings, strict=True))
    assert len(set(sleeps)) == len(sleeps), "jittered waits differ"
    assert max(sleeps) <= 8.0


@pytest.mark.parametrize("status", [400, 403, 404, 422])
def test_client_errors_are_not_retried(status):
    transport, seen = scripted((status, {}))
    with pytest.raises(RequestFailedError) as error:
        client(transport, []).get_json("/companies")
    assert len(seen) == 1
    assert error.value.status == status and "Test: GET /companies failed: nope" in str(error.value)


def test_connection_errors_and_timeouts_are_retried():
    transport, seen = scripted(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), (200, {}))
    sleeps = []
    c = client(transport, sleeps)
    assert c.get_json("/x") == {"value": [1]}
    assert c.stats.transport_errors == 2 and len(sleeps) == 2


def test_a_policy_without_connection_retries_answers_a_failed_connection_at_once_and_still_retries_a_timeout():
    """`mlconnector ping`'s policy: a refused connection (or a name that does not resolve) is the answer; a timeout,
    which may pass, is tried again within its attempts."""
    transport, seen = scripted(httpx.ConnectError("[Errno 111] Connection refused"), (200, {}))
    with pytest.raises(RequestFailedError, match="after 1 attempt: ConnectError") as error:
        client(transport, [], retry_connection_failures=False).get_json("/x")
    assert len(seen) == 1 and error.value.unreachable
    transport, seen = scripted(httpx.ReadTimeout("slow"), (200, {}))
    assert client(transport, [], retry_connection_failures=False).get_json("/x") == {"value": [1]} and len(seen) == 2


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_port_that_does_not_speak_tls_fails_at_once_with_the_fix(method):
    """A plain-HTTP port behind an https:// URL is configuration, not a passing fault: it was retried max_attempts
    times with back-off and then told "host not reachable". Nothing of a POST left (no unknown outcome)."""
    failure = httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    transport, seen = scripted(failure, (200, {}))
    sleeps = []
    with pytest.raises(RequestFailedError) as error:
        client(transport, sleeps).request(method, "/x", json={"n": 1} if method == "POST" else None)
    assert len(seen) == 1 and sleeps == [] and not isinstance(error.value, OutcomeUnknown)
    assert error.value.fix == NOT_TLS_FIX


def test_retries_run_out_with_a_clear_error():
    transport, seen = scripted(*[(503, {})] * 3)
    with pytest.raises(RequestFailedError, match="still failing after 3 attempts"):
        client(transport, [], max_attempts=3).get_json("/x")
    assert len(seen) == 3


class CountingAuth:
    """Hands out t0, t1, ...: each accepted invalidation of the current token moves to the next."""

    def __init__(self):
        self.invalidations = 0
        self._lock = threading.Lock()

    def auth_headers(self):
        return {"Authorization": f"Bearer t{self.invalidations}"}

    def invalidate(self, rejected):
        with self._lock:
            if rejected["Authorization"] != f"Bearer t{self.invalidations}":
                return False
            self.invalidations += 1
            return True


def test_401_reauthenticates_once_then_succeeds():
    transport, seen = scripted((401, {}), (200, {}))
    auth = CountingAuth()
    c = ThrottledClient("Test", base_url="https://api.test", transport=transport, auth=auth, sleep=lambda s: None)
    assert c.get_json("/x") == {"value": [1]}
    assert auth.invalidations == 1
    assert [r.headers["Authorization"] for r in seen] == ["Bearer t0", "Bearer t1"]


def test_repeated_401_is_an_authentication_error():
    transport, seen = scripted((401, {}), (401, {}))
    c = ThrottledClient("Test", base_url="https://api.test", transport=transport, auth=CountingAuth())
    with pytest.raises(AuthenticationError, match="Test: credentials rejected after re-authentication"):
        c.get_json("/x")
    assert len(seen) == 2


def test_requests_refused_together_renew_the_token_once_between_them():
    both_sent = threading.Barrier(2, timeout=5)

    def handler(request):
        if request.headers["Authorization"] == "Bearer t0":
            both_sent.wait()  # both requests carry t0 before either is refused
            return httpx.Response(401, json={"error": {"code": "Expired", "message": "token expired"}})
        return httpx.Response(200, json={"value": [request.headers["Authorization"]]})

    auth = CountingAuth()
    c = ThrottledClient("Test", base_url="https://api.test", transport=httpx.MockTransport(handler), auth=auth)
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda path: c.get_json(path), ["/a", "/b"]))
    assert answers == [{"value": ["Bearer t1"]}] * 2
    assert auth.invalidations == 1 and c.stats.reauthentications == 1


def test_a_token_revoked_again_after_another_request_renewed_it_is_renewed_again():
    """Two revocations close together: A's refusal of t0 arrives after B renewed to t1 and t1 was revoked too."""
    revoked = {"Bearer t0"}
    a_in_flight, b_finished = threading.Event(), threading.Event()

    def handler(request):
        token = request.headers["Authorization"]
        if request.url.path == "/a" and token == "Bearer t0":
            a_in_flight.set()
            assert b_finished.wait(5)  # the answer to A reaches it only after both revocations
            return httpx.Response(401, json={"error": {"code": "Expired", "message": "token revoked"}})
        if token in revoked:
            return httpx.Response(401, json={"error": {"code": "Expired", "message": "token revoked"}})
        if request.url.path == "/b":
            revoked.add(token)  # the second revocation, right after B's renewed token served it
            b_finished.set()
        return httpx.Response(200, json={"value": [token]})

    auth = CountingAuth()
    c = ThrottledClient("Test", base_url="https://api.test", transport=httpx.MockTransport(handler), auth=auth)
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(c.get_json, "/a")
        assert a_in_flight.wait(5)
        b = pool.submit(c.get_json, "/b")
        assert b.result() == {"value": ["Bearer t1"]}
        assert a.result() == {"value": ["Bearer t2"]}
    assert auth.invalidations == 2 and c.stats.reauthentications == 2


def test_a_401_the_system_does_not_call_expiry_is_raised_as_it_is():
    transport, seen = scripted((401, {}))
    auth = CountingAuth()
    c = ThrottledClient(
        "Test", base_url="https://api.test", transport=transport, auth=auth, reauthenticate_on=lambda response: False
    )
    with pytest.raises(RequestFailedError) as error:
        c.get_json("/x")
    assert type(error.value) is RequestFailedError and error.value.status == 401
    assert "Test: GET /x failed: nope" in str(error.value)
    assert len(seen) == 1 and auth.invalidations == 0 and c.stats.reauthentications == 0


def test_an_untrusted_certificate_fails_at_once_with_the_fix():
    failure = httpx.ConnectError(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate (_ssl.c:1006)"
    )
    transport, seen = scripted(failure, (200, {}))
    sleeps = []
    with pytest.raises(RequestFailedError) as error:
        client(transport, sleeps).get_json("/x")
    assert len(seen) == 1 and sleeps == []
    assert "after 1 attempt:" in str(error.value) and "ca_bundle" in error.value.fix


def test_a_write_whose_handshake_refused_the_certificate_was_not_sent():
    """Nothing of a POST leaves before the handshake: it is the trust fix, not an unknown outcome (whose audit
    event and lookup said the server may have saved it)."""
    failure = httpx.ConnectError(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate"
    )
    transport, seen = scripted(failure, (201, {}))
    with pytest.raises(RequestFailedError) as error:
        client(transport, []).request("POST", "/records", json={"n": 1})
    assert not isinstance(error.value, OutcomeUnknown) and "ca_bundle" in error.value.fix
    assert len(seen) == 1


@pytest.mark.parametrize(
    "words", ["[SSL: WRONG_VERSION_NUMBER] wrong version number", "[SSL: CERTIFICATE_VERIFY_FAILED]"]
)
def test_tls_words_on_reading_an_answer_are_an_unknown_outcome_not_a_refused_handshake(words):
    """OpenSSL says WRONG_VERSION_NUMBER (and the like) also when an established session reads bytes that are
    not TLS, after the POST went out: that was taken for a refused handshake, a plain failure with no unknown
    outcome recorded and no settle hold, so a re-run could create the document again. Only a connect error is
    a refused handshake; a GET failing so on its read is tried again."""
    transport, seen = scripted(httpx.ReadError(words), (201, {}))
    with pytest.raises(OutcomeUnknown):
        client(transport, []).request("POST", "/records", json={"n": 1})
    assert len(seen) == 1
    transport, seen = scripted(httpx.ReadError(words), (200, {}))
    client(transport, []).get_json("/x")
    assert len(seen) == 2


SECRET = "s3cr3t-value"


def _echoing_secret(status):
    return lambda request: httpx.Response(status, json={"error": {"code": "Bad", "message": f"secret {SECRET} echoed"}})


@pytest.mark.parametrize("case", ["4xx", "retries exhausted", "transport error", "malformed body", "repeated 401"])
def test_every_error_the_client_raises_masks_its_secrets(case):
    """The secret is in the request URL and in what the server or the network said."""
    handler = {
        "4xx": _echoing_secret(400),
        "retries exhausted": _echoing_secret(503),
        "transport error": lambda request: (_ for _ in ()).throw(httpx.ConnectError(f"refused for {request.url}")),
        "malformed body": lambda request: httpx.Response(
            200, content=f"<html>{SECRET}</html>".encode(), headers={"Content-Type": "text/html"}
        ),
        "repeated 401": _echoing_secret(401),
    }[case]
    c = ThrottledClient(
        "Test",
        base_url="https://api.test",
        transport=httpx.MockTransport(handler),
        secrets=[SECRET],
        auth=CountingAuth(),
        sleep=lambda s: None,
        policy=HttpPolicy(max_attempts=2),
    )
    with pytest.raises(RequestFailedError if case != "repeated 401" else AuthenticationError) as error:
        c.get_json(f"/x/{SECRET}?key={SECRET}")
    assert SECRET not in str(error.value) and "***" in str(error.value)
    assert SECRET not in repr(error.value.args) and SECRET not in (error.value.server_message or "")


def test_an_html_page_answered_with_200_says_what_was_received():
    page = b"<!DOCTYPE html><html><head><title>Sign in to your account</title></head></html>"
    c = ThrottledClient(
        "Test",
        base_url="https://api.test",
        transport=httpx.MockTransport(
            lambda r: httpx.Response(200, content=page, headers={"Content-Type": "text/html; charset=utf-8"})
        ),
    )
    with pytest.raises(RequestFailedError) as error:
        list(iterate_record_tables(c, "/entries"))
    message = str(error.value)
    assert "Test: GET /entries returned a page it cannot read" in message
    assert "received text/html; charset=utf-8" in message and "<!DOCTYPE html>" in message


def test_malformed_json_is_a_clear_error():
    c = ThrottledClient(
        "Test",
        base_url="https://api.test",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=b"{not json")),
    )
    with pytest.raises(RequestFailedError, match="malformed JSON"):
        c.get_json("/x")


def test_record_tables_follow_next_links_and_keep_modified_stamps_as_sent():
    bodies = {
        "/x": b'{"value":[{"id":"a","m":"2026-01-01T00:00:00Z","amount":1,"lines":[{"k":"1"}]}],'
        b'"@odata.nextLink":"https://api.test/x?page=2"}',
        "/x?page=2": b'{\n  "value": [\n    {"id": "b", "m": "2026-01-01T00:00:01.5Z", "amount": 2.5, "lines": []}\n  ]\n}',
    }
    seen = []

    def handler(request):
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, content=bodies[request.url.raw_path.decode()])

    c = ThrottledClient("Test", base_url="https://api.test", transport=httpx.MockTransport(handler))
    pages = list(iterate_record_tables(c, "/x", read_fields=[pa.field("m", pa.string())]))
    assert seen == ["/x", "/x?page=2"]
    assert [p.to_pylist() for p in pages] == [
        [{"m": "2026-01-01T00:00:00Z", "id": "a", "amount": 1, "lines": [{"k": "1"}]}],
        [{"m": "2026-01-01T00:00:01.5Z", "id": "b", "amount": 2.5, "lines": []}],
    ]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"{not json", "Missing a name for object member"),
        (b'{"value":[{"amount":1},{"amount":"one"}]}', r"/value/\[\]/amount\) changed from number to string"),
        (b'{"@odata.context":"x"}', '"value" is missing'),
    ],
)
def test_an_unreadable_page_names_the_system_the_request_and_the_problem(body, problem):
    c = ThrottledClient(
        "Test", base_url="https://api.test", transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body))
    )
    with pytest.raises(RequestFailedError, match=f"Test: GET /entries returned a page it cannot read: .*{problem}"):
        list(iterate_record_tables(c, "/entries"))


def test_a_read_response_is_freed_as_soon_as_it_is_dropped():
    """Page bodies must not pile up waiting for the cyclic GC (it seldom runs in an Arrow-heavy loop)."""
    import gc
    import weakref

    c = ThrottledClient(
        "Test",
        base_url="https://api.test",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=b'{"value":[]}')),
    )
    gc.disable()
    try:
        response = c.request("GET", "/x")
        assert response.json() == {"value": []}
        dropped = weakref.ref(response)
        del response
        assert dropped() is None
    finally:
        gc.enable()


def test_rate_limiter_paces_requests():
    import time

    transport, seen = scripted(*[(200, {})] * 6)
    c = ThrottledClient(
        "Test",
        base_url="https://api.test",
        transport=transport,
        policy=HttpPolicy(requests_per_minute=600, requests_burst=1),
    )  # one per 100 ms
    started = time.monotonic()
    for _ in range(6):
        c.get_json("/x")
    elapsed = time.monotonic() - started
    assert elapsed >= 0.45, f"6 requests at 10/s took only {elapsed:.2f}s"


def test_no_rate_limit_means_no_pacing():
    import time

    transport, seen = scripted(*[(200, {})] * 6)
    c = ThrottledClient("Test", base_url="https://api.test", transport=transport)
    started = time.monotonic()
    for _ in range(6):
        c.get_json("/x")
    assert time.monotonic() - started < 0.3


def test_odata_literals_are_bc_style():
    from datetime import datetime, timedelta, timezone

    moment = datetime(2024, 8, 18, 22, 5, 51, 603000, tzinfo=timezone(timedelta(hours=2)))
    assert datetime_literal(moment) == "2024-08-18T20:05:51.603Z"
    start = datetime(2024, 8, 18, tzinfo=UTC)
    assert half_open_window_filter("lastModifiedDateTime", start, start + timedelta(days=1)) == (
        "lastModifiedDateTime ge 2024-08-18T00:00:00.000Z and lastModifiedDateTime lt 2024-08-19T00:00:00.000Z"
    )
    with pytest.raises(ValueError):
        datetime_literal(datetime(2024, 1, 1))


# -- writes: never repeated when the server may have processed them -------------------------------


@pytest.mark.parametrize(
    "outcome",
    [
        httpx.ReadTimeout("no answer"),
        httpx.RemoteProtocolError("peer closed connection without response"),
        httpx.ReadError("connection reset"),
        (502, {}),
        (504, {}),
        (503, {}),
    ],
    ids=["read timeout", "dropped response", "reset while reading", "502", "504", "503 without Retry-After"],
)
def test_a_write_whose_outcome_is_unknown_is_not_sent_again(outcome):
    transport, seen = scripted(outcome, (201, {}))
    c = client(transport, [])
    with pytest.raises(OutcomeUnknown) as error:
        c.request("POST", "/journals", json={"description": "ML-2026-W09"})
    assert len(seen) == 1
    assert (
        error.value.method == "POST"
        and "POST /journals: the server may or may not have processed it" in str(error.value)
        and "natural key" in str(error.value)
    )
    assert c.stats.outcome_unknown == 1 and c.stats.retries == 0


@pytest.mark.parametrize(
    "refusal",
    [
        (429, {}),
        (429, {"Retry-After": "1"}),
        (503, {"Retry-After": "2"}),
        httpx.ConnectError("connection refused"),
        httpx.ConnectTimeout("no TCP handshake"),
    ],
    ids=["429", "429 with Retry-After", "503 with Retry-After", "refused connection", "connect timeout"],
)
def test_a_write_the_server_provably_did_not_process_is_sent_again(refusal):
    transport, seen = scripted(refusal, (201, {}))
    sleeps = []
    c = client(transport, sleeps)
    assert c.request("POST", "/journals", json={"description": "ML-2026-W09"}).status_code == 201
    assert len(seen) == 2 and len(sleeps) == 1


def test_a_write_refused_with_401_is_sent_again_after_re_authenticating():
    transport, seen = scripted((401, {}), (201, {}))
    auth = CountingAuth()
    c = ThrottledClient("Test", base_url="https://api.test", transport=transport, auth=auth)
    assert c.request("PATCH", "/customers(1)", json={"name": "x"}).status_code == 201
    assert [r.headers["Authorization"] for r in seen] == ["Bearer t0", "Bearer t1"]


def test_reads_and_key_matched_puts_are_repeated_after_a_timeout():
    transport, seen = scripted(httpx.ReadTimeout("slow"), (200, {}), httpx.ReadTimeout("slow"), (200, {}))
    c = client(transport, [])
    assert c.request("GET", "/x").status_code == 200
    assert c.request("PUT", "/Vendor", json={"VendorID": {"value": "V1"}}, idempotent=True).status_code == 200
    assert len(seen) == 4


def test_requests_are_counted_per_method():
    transport, _ = scripted((200, {}), (200, {}), (201, {}), (204, {}))
    c = client(transport, [])
    c.get_json("/a")
    c.get_json("/b")
    c.request("POST", "/c", json={})
    c.request("PATCH", "/d", json={})
    figures = c.stats.as_metadata("http_")
    assert (
        figures["http_requests"],
        figures["http_requests_get"],
        figures["http_requests_post"],
        figures["http_requests_patch"],
    ) == (4, 2, 1, 1)


def test_a_fraction_no_field_declares_is_exact_where_it_lands_as_a_column_and_left_as_read_deeper():
    """Records' and declared lines' fractions (also wrapped in `{"value": …}`) are read as exact decimals, as
    the warehouse rounds those columns; a fraction inside a nested object or list, which lands as one JSON
    column, is left as read (an exact decimal there reached the warehouses' JSON writers, which refuse it)."""
    from mlconnector_pipelines.core.odata import page_table
    from mlconnector_pipelines.core.types import DECIMAL_READ_TYPE

    body = (
        b'{"value":[{"balance":12345678901234567.89,"rate":{"value":0.07},"installments":[{"total":1.5}],'
        b'"terms":{"share":0.25},"lines":[{"cost":0.1,"taxes":[{"rate":0.07}]}]}]}'
    )
    lines = pa.field("lines", pa.list_(pa.struct([pa.field("amount", DECIMAL_READ_TYPE)])))
    records, _ = page_table(body, [lines])
    [record] = records.to_pylist()
    assert record["balance"] == Decimal("12345678901234567.89") and record["rate"]["value"] == Decimal("0.07")
    assert record["lines"][0]["cost"] == Decimal("0.1")
    assert records.schema.field("installments").type == pa.list_(pa.struct([("total", pa.float64())]))
    assert records.schema.field("terms").type == pa.struct([("share", pa.float64())])
    assert record["lines"][0]["taxes"] == [{"rate": 0.07}]


def test_a_declared_amount_stays_exact_on_a_page_whose_other_numbers_no_decimal_can_hold():
    """An undeclared number no exact decimal holds (1e-45) leaves the page as Arrow inferred it; the amounts a
    catalog declares are exact all the same (the SAP invoice's VatSum among them)."""
    from mlconnector_pipelines.core.odata import page_table
    from mlconnector_pipelines.systems.sap_business_one.catalog import BY_ENTITY_SET

    body = b'{"value":[{"DocEntry":1,"DocTotal":12345678901234567.89,"VatSum":98765432109876543.21,"Odd":1e-45}]}'
    records, _ = page_table(body, BY_ENTITY_SET["Invoices"].read_fields(text_fields=("UpdateDate",)))
    [record] = records.to_pylist()
    assert (record["DocTotal"], record["VatSum"]) == (Decimal("12345678901234567.89"), Decimal("98765432109876543.21"))
    assert records.schema.field("Odd").type == pa.float64()  # the case: the page fell back to inference


def test_an_error_says_the_system_is_unreachable_only_when_no_answer_came():
    """A loop over records stops on an error about the system (every record after it would meet it) and goes on
    past one about a record: an answer it could not use (malformed) is that record's, though it has no status."""
    from mlconnector_pipelines.core.errors import about_the_system

    transport, _ = scripted(*[httpx.ConnectError("connection refused")] * 2)
    with pytest.raises(RequestFailedError) as unreachable:
        client(transport, [], max_attempts=2).get_json("/x")
    malformed, _ = scripted((200, {}))
    c = client(malformed, [])
    odd = c.malformed(c.request("GET", "/x"), "a body of another shape")
    assert about_the_system(unreachable.value) and not about_the_system(odd)
