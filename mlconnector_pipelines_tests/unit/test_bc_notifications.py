"""What a Business Central notice says, read from either spelling BC's docs allow; what the receiver refuses."""

from datetime import UTC, datetime

import orjson
import pytest

from mlconnector_pipelines.systems.business_central.notifications import (
    NotificationRejected,
    parse_notice,
    parse_notifications,
)

COMPANY = "5f8e6b2c-0d1e-4c3a-9b7a-1a2b3c4d5e6f"
RECORD = "0b6a1c2d-3e4f-4a5b-8c9d-0e1f2a3b4c5d"
SECRET = "a-client-state-of-our-own"


def notice(**fields) -> dict:
    return {
        "subscriptionId": "sub-1",
        "clientState": SECRET,
        "expirationDateTime": "2026-12-09T10:00:00Z",
        "resource": f"/api/v2.0/companies({COMPANY})/customers({RECORD})",
        "changeType": "updated",
        "lastModifiedDateTime": "2026-12-06T10:15:30.123Z",
        **fields,
    }


def test_a_notice_names_company_entity_record_and_moment_with_or_without_slash_and_quotes():
    for resource in (
        f"/api/v2.0/companies({COMPANY})/customers({RECORD})",
        f"api/v2.0/companies({COMPANY})/customers({RECORD})",
        f"/api/v2.0/companies('{COMPANY}')/customers('{RECORD}')",
    ):
        found = parse_notice(notice(resource=resource))
        assert (found.company_id, found.entity_set, found.record_id, found.change) == (
            COMPANY,
            "customers",
            RECORD,
            "updated",
        )
        assert found.modified_at == datetime(2026, 12, 6, 10, 15, 30, 123000, tzinfo=UTC)


def test_a_collection_notice_gives_the_moment_of_its_filter_encoded_or_not():
    for query in (
        "$filter=lastModifiedDateTime%20gt%202026-12-06T09:00:00Z",
        "$filter=lastModifiedDateTime gt 2026-12-06T09:00:00Z",
        "%24filter=lastModifiedDateTime+gt+2026-12-06T09%3A00%3A00Z",
    ):
        found = parse_notice(
            notice(changeType="collection", resource=f"/api/v2.0/companies({COMPANY})/customers?{query}")
        )
        assert found.record_id is None and found.change == "collection"
        assert found.since == datetime(2026, 12, 6, 9, tzinfo=UTC), query
    # A server writing the moment with an offset: its `+`, raw or encoded, is the offset's, not a space; a `+`
    # before another term is a space (form-encoded); a query encoded twice is read too.
    for query in (
        "$filter=lastModifiedDateTime%20gt%202026-12-06T11:00:00.123+02:00",
        "$filter=lastModifiedDateTime%20gt%202026-12-06T11:00:00.123%2B02:00",
        "%24filter=lastModifiedDateTime+gt+2026-12-06T09%3A00%3A00.123Z+and+lastModifiedDateTime+lt+2026-12-06T10%3A00%3A00Z",
        "%2524filter%3DlastModifiedDateTime%2520gt%25202026-12-06T09%253A00%253A00.123Z",
    ):
        found = parse_notice(
            notice(changeType="collection", resource=f"/api/v2.0/companies({COMPANY})/customers?{query}")
        )
        assert found.since == datetime(2026, 12, 6, 9, 0, 0, 123000, tzinfo=UTC), query
    bare = parse_notice(notice(changeType="collection", resource=f"/api/v2.0/companies({COMPANY})/customers"))
    assert bare.since is None  # the sensor then re-reads the notice's own window


def test_the_receiver_stores_notices_without_the_secret_and_a_retry_is_the_same_delivery():
    body = orjson.dumps({"value": [notice(), notice(changeType="deleted")]})
    delivery = parse_notifications(body, SECRET, "2026-12-06T10:16:00+00:00")
    assert len(delivery.rows) == 2 and all("clientState" not in row for row in delivery.rows)
    again = parse_notifications(body, SECRET, "2026-12-06T10:17:00+00:00")
    assert again.id == delivery.id


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (orjson.dumps({"value": [notice(), notice(clientState="guess")]}), 401, "clientState"),
        (orjson.dumps({"value": [notice(clientState=None)]}), 401, "clientState"),
        (b"{not json", 400, "not JSON"),
        (orjson.dumps({"values": []}), 400, "value"),
        (orjson.dumps({"value": [notice(changeType="renamed")]}), 400, "notice 0: changeType"),
        (orjson.dumps({"value": [notice(resource="/api/v2.0/customers")]}), 400, "names no company"),
    ],
)
def test_the_receiver_refuses_what_did_not_come_from_our_subscriptions_or_cannot_be_read(body, status, reason):
    with pytest.raises(NotificationRejected, match=reason) as refused:
        parse_notifications(body, SECRET, "2026-12-06T10:16:00+00:00")
    assert refused.value.status == status


class ScriptedBc:
    """BC's subscription endpoint as a script: a listing, and a 201 for each create (counted)."""

    base_path = "/v2.0/tenant/production/api/v2.0"

    def __init__(self, listed: list[dict]):
        self.listed, self.created = listed, []
        self.http = self

    def request(self, method: str, path: str, **kwargs):
        import httpx

        if method == "GET":
            return httpx.Response(200, json={"value": self.listed})
        body = orjson.loads(kwargs["content"])
        self.created.append(body["resource"])
        return httpx.Response(201, json={**body, "subscriptionId": f"s{len(self.created)}"})

    def parse(self, response):
        return response.json()


def test_subscriptions_stop_at_bcs_two_hundred_per_environment_and_say_so():
    from datetime import timedelta

    from mlconnector_pipelines.systems.business_central.notifications import Subscriptions, resource_path

    others = [
        {"subscriptionId": f"o{n}", "notificationUrl": "https://elsewhere/hook", "resource": "/x"} for n in range(196)
    ]
    bc = ScriptedBc(others)
    wanted = [
        resource_path(COMPANY, s) for s in ("customers", "vendors", "items", "accounts", "salesOrders", "dimensions")
    ]
    states = Subscriptions(bc, "https://us/hook", SECRET, wanted, timedelta(hours=12)).sync()
    assert [s.action for s in states] == ["created"] * 4 + ["failed"] * 2
    assert bc.created == wanted[:4]  # nothing sent past the limit
    assert "200 subscriptions, BC's limit" in states[-1].error
