"""Dataverse webhook calls (each service-endpoint auth type, what a RemoteExecutionContext reduces to) and BC customer numbers."""

from __future__ import annotations

import orjson
import pytest

from mlconnector_pipelines.core.settings import SecretRef
from mlconnector_pipelines.systems.dataverse.config import WebhookAuth
from mlconnector_pipelines.systems.dataverse.webhooks import (
    WebhookRejected,
    authenticated,
    parse_context,
    record_of_delivery,
)

KEY = "k-0123456789abcdef"
SECRET = SecretRef(env="UNSET_FOR_TESTS", sandbox_default=KEY)


@pytest.mark.parametrize(
    ("auth", "headers", "query", "accepted"),
    [
        (WebhookAuth(type="webhook_key", key=SECRET), {}, {"code": KEY}, True),
        (WebhookAuth(type="webhook_key", key=SECRET), {}, {"code": KEY + "x"}, False),
        (WebhookAuth(type="webhook_key", key=SECRET), {"code": KEY}, {}, False),  # a key must be where it is sent
        (WebhookAuth(type="http_header", name="x-api-key", key=SECRET), {"x-api-key": KEY}, {}, True),
        (WebhookAuth(type="http_header", name="x-api-key", key=SECRET), {}, {"x-api-key": KEY}, False),
        (WebhookAuth(type="http_query_string", name="token", key=SECRET), {}, {"token": KEY}, True),
        (WebhookAuth(type="http_query_string", name="token", key=SECRET), {}, {"code": KEY}, False),
    ],
)
def test_each_auth_type_accepts_only_its_own_key_where_dataverse_puts_it(auth, headers, query, accepted):
    assert authenticated(auth, KEY, headers, query) is accepted


def context(**overrides) -> bytes:
    body = {
        "MessageName": "Win",
        "PrimaryEntityName": "opportunity",
        "PrimaryEntityId": "8d7c2f0e-1111-4a4a-9b9b-000000000001",
        "CorrelationId": "c0ffee00-0000-0000-0000-000000000001",
        "OperationId": "0pe00000-0000-0000-0000-000000000001",
        "InputParameters": [],
        **overrides,
    }
    return orjson.dumps(body)


def test_a_call_and_its_retry_are_one_delivery_and_name_the_record():
    first = parse_context(context(), {"x-ms-dynamics-request-name": "Win"}, "2026-12-06T10:00:00+00:00")
    retry = parse_context(context(), {}, "2026-12-06T10:00:05+00:00")
    other = parse_context(context(OperationId="another"), {}, "2026-12-06T10:00:05+00:00")
    assert first.id == retry.id != other.id
    assert record_of_delivery(first) == ("opportunities", "8d7c2f0e-1111-4a4a-9b9b-000000000001")


def test_a_closing_activity_names_the_record_it_closes():
    closed = {
        "LogicalName": "opportunityclose",
        "Attributes": [
            {
                "key": "opportunityid",
                "value": {"Id": "8d7c2f0e-2222-4a4a-9b9b-000000000002", "LogicalName": "opportunity"},
            }
        ],
    }
    delivery = parse_context(
        context(PrimaryEntityName="opportunityclose", InputParameters=[{"key": "OpportunityClose", "value": closed}]),
        {},
        "2026-12-06T10:00:00+00:00",
    )
    assert record_of_delivery(delivery) == ("opportunities", "8d7c2f0e-2222-4a4a-9b9b-000000000002")


@pytest.mark.parametrize("body", [b"not json", b"[]", orjson.dumps({"MessageName": "Win"})])
def test_what_is_not_a_remote_execution_context_is_refused(body):
    with pytest.raises(WebhookRejected) as refused:
        parse_context(body, {}, "2026-12-06T10:00:00+00:00")
    assert refused.value.status == 400


def test_a_customer_number_comes_from_the_mapping_then_the_account_then_its_id():
    from mlconnector_pipelines.systems.dataverse.config import SalesToBusinessCentral
    from mlconnector_pipelines.systems.dataverse.to_business_central import customer_number

    sync = SalesToBusinessCentral(company="C", customers={"ACME-01": "10000"})
    account_id = "4ef8aa38-9227-4650-8f00-00000000abcd"
    assert customer_number({"accountid": account_id, "accountnumber": "acme-01"}, sync) == "10000"
    assert customer_number({"accountid": account_id, "accountnumber": "c20000"}, sync) == "C20000"
    too_long = "X" * 21  # BC's customer No. holds 20
    assert customer_number({"accountid": account_id, "accountnumber": too_long}, sync) == "D365-4EF8AA389227465"
    assert customer_number({"accountid": account_id, "accountnumber": None}, sync) == "D365-4EF8AA389227465"


@pytest.mark.parametrize(
    ("amount", "precision", "kept"),
    [
        ("1.0050", "0.01", "1.01"),
        ("-1.0050", "0.01", "-1.01"),  # half away from zero, as BC's '=' rounding
        ("150.50", "1", "151"),  # a yen document
        ("1.025", "0.05", "1.05"),  # a currency rounding to five hundredths: a multiple of it, not two places
        ("1.024", "0.05", "1.00"),
        ("12345678901234567.895", "0.01", "12345678901234567.90"),  # more digits than a double holds
    ],
)
def test_an_amount_is_planned_as_bc_rounds_it_in_its_currency(amount, precision, kept):
    from decimal import Decimal

    from mlconnector_pipelines.systems.business_central.sales_target import bc_amount

    assert str(bc_amount(amount, Decimal(precision))) == kept
