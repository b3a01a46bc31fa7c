"""The Business Central simulator's write side, over HTTPS with raw httpx, as a client of BC API v2.0 sees it.

PATCH behind If-Match (a stale etag: 409 Request_EntityChanged), sales orders and draft invoices
created with their lines in one request (deep insert: all or nothing), Microsoft.NAV.post and
Microsoft.NAV.shipAndInvoice, lookups by $filter, per-company number series, and writes whose
answer a gateway lost (committed once). Facts and sources: docs/vendor-facts/bc-write-facts.md.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal

import httpx
import pytest

from mlconnector_pipelines.sandbox.core.exact_json import dumps
from mlconnector_pipelines.sandbox.entra import CLIENT_ID, CLIENT_SECRET, TENANT_ID

RESOURCE = "https://api.businesscentral.dynamics.com"
CENT = Decimal("0.01")
JSON = {"Content-Type": "application/json"}


class Bc:
    """BC API v2.0 under the sandbox: `company(n)` is the path of the n-th company's entity sets."""

    def __init__(self, sandbox):
        ca = str(sandbox.running.certificates.ca_pem)
        token = httpx.post(
            f"{sandbox.url}/{TENANT_ID}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "scope": f"{RESOURCE}/.default",
            },
            verify=ca,
        ).json()["access_token"]
        self.http = httpx.Client(
            base_url=f"{sandbox.url}/v2.0/{TENANT_ID}/production/api/v2.0",
            headers={"Authorization": f"Bearer {token}"},
            verify=ca,
            timeout=30,
        )
        self.companies = [c["id"] for c in self.http.get("/companies").json()["value"]]

    def company(self, index: int = 0) -> str:
        return f"/companies({self.companies[index]})"

    def post(self, path: str, payload: dict | None = None, **kwargs) -> httpx.Response:
        """A JSON body with its amounts written digit for digit (Decimal), as the product sends them."""
        if payload is None:
            return self.http.post(path, **kwargs)
        return self.http.post(path, content=dumps(payload), headers=JSON | kwargs.pop("headers", {}), **kwargs)

    def patch(self, path: str, payload: dict, **kwargs) -> httpx.Response:
        return self.http.patch(path, content=dumps(payload), headers=JSON | kwargs.pop("headers", {}), **kwargs)

    def one(self, path: str, filter_: str) -> dict:
        found = body(self.http.get(path, params={"$filter": filter_}))["value"]
        assert len(found) == 1, (path, filter_, found)
        return found[0]


def body(response: httpx.Response) -> dict:
    """A BC answer with its amounts exact (Decimal), as a careful client reads them."""
    return json.loads(response.content, parse_float=Decimal)


def error(response: httpx.Response, status: int) -> tuple[str, str]:
    assert response.status_code == status, response.text
    found = response.json()["error"]
    return found["code"], found["message"]


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@pytest.fixture
def bc(sandbox):
    sandbox.reset()  # the module's server, back to its seed
    client = Bc(sandbox)
    yield client
    client.http.close()
    sandbox.clear_faults()


def new_order(bc: Bc, external: str, index: int = 0, customer: str = "C10010", **extra) -> httpx.Response:
    return bc.post(
        f"{bc.company(index)}/salesOrders",
        params={"$expand": "salesOrderLines"},
        payload={
            "customerNumber": customer,
            "externalDocumentNumber": external,
            "orderDate": "2026-03-05",
            "salesOrderLines": [
                {"lineType": "Item", "lineObjectNumber": "1000-S", "quantity": 3, "unitPrice": Decimal("1234.56789")},
                {"lineType": "Item", "lineObjectNumber": "1001-S", "quantity": 2, "discountPercent": 10},
            ],
            **extra,
        },
    )


def test_patch_needs_the_current_etag_and_every_change_gets_a_new_one(bc):
    customers = f"{bc.company()}/customers"
    customer = bc.one(customers, "number eq 'C10010'")
    renamed = bc.patch(
        f"{customers}({customer['id']})",
        payload={"displayName": "O'Brien Ltd", "email": "ap@obrien.example"},
        headers={"If-Match": customer["@odata.etag"]},
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["displayName"] == "O'Brien Ltd" and renamed.json()["@odata.etag"] != customer["@odata.etag"]
    # the old etag is stale now
    code, message = error(
        bc.patch(
            f"{customers}({customer['id']})",
            payload={"displayName": "Lost"},
            headers={"If-Match": customer["@odata.etag"]},
        ),
        409,
    )
    assert code == "Request_EntityChanged" and message.startswith("Another user has already changed the record.")
    code, _ = error(bc.patch(f"{customers}({customer['id']})", {"displayName": "No token"}), 400)
    assert code == "BadRequest_InvalidToken"
    # two changes within one millisecond still give two etags
    etags = {renamed.json()["@odata.etag"]}
    for n in range(3):
        answer = bc.patch(
            f"{customers}({customer['id']})", payload={"phoneNumber": f"555-{n}"}, headers={"If-Match": "*"}
        )
        assert answer.status_code == 200
        etags.add(answer.json()["@odata.etag"])
    assert len(etags) == 4
    code, message = error(bc.patch(f"{customers}({customer['id']})", {"nickname": "x"}, headers={"If-Match": "*"}), 400)
    assert code == "BadRequest" and "'nickname' does not exist on type 'Microsoft.NAV.customer'" in message
    # the product looks customers up by these, a quote doubled inside the literal
    assert bc.one(customers, "displayName eq 'O''Brien Ltd'")["id"] == customer["id"]
    assert bc.one(customers, "email eq 'ap@obrien.example'")["id"] == customer["id"]


def test_deep_insert_creates_the_order_and_its_lines_with_exact_totals(bc):
    company = bc.company()
    customer = bc.one(f"{company}/customers", "number eq 'C10010'")
    item = bc.one(f"{company}/items", "number eq '1001-S'")
    created = new_order(bc, "D365-SO-0001")
    assert created.status_code == 201, created.text
    order = body(created)
    assert order["number"] == "S-ORD101001" and order["status"] == "Draft"
    assert order["customerId"] == customer["id"] and order["customerName"] == customer["displayName"]
    assert order["paymentTermsId"] == customer["paymentTermsId"]  # the customer's terms, as BC copies them
    assert created.headers["Location"].endswith(f"/salesOrders({order['id']})")
    lines = order["salesOrderLines"]
    assert [(x["sequence"], x["lineObjectNumber"]) for x in lines] == [(10000, "1000-S"), (20000, "1001-S")]
    first, second = lines
    assert first["amountExcludingTax"] == Decimal("3703.70")  # 3 × 1234.56789, rounded to the cent
    gross = money(2 * item["unitPrice"])
    assert second["unitPrice"] == item["unitPrice"] and second["amountExcludingTax"] == gross - money(gross / 10)
    rate = Decimal(8) if customer["taxLiable"] else Decimal(0)
    net = first["amountExcludingTax"] + second["amountExcludingTax"]
    tax = sum(money(x["amountExcludingTax"] * rate / 100) for x in lines)
    assert order["totalAmountExcludingTax"] == net and order["totalTaxAmount"] == tax
    assert order["totalAmountIncludingTax"] == net + tax
    # read back: the same document, lines and all
    again = body(bc.http.get(f"{company}/salesOrders({order['id']})", params={"$expand": "salesOrderLines"}))
    assert again["totalAmountIncludingTax"] == order["totalAmountIncludingTax"] and len(again["salesOrderLines"]) == 2
    # one more line under the order: the totals follow
    added = bc.post(
        f"{company}/salesOrders({order['id']})/salesOrderLines", payload={"itemId": item["id"], "quantity": 1}
    )
    assert added.status_code == 201, added.text
    assert body(added)["sequence"] == 30000 and body(added)["lineType"] == "Item"
    after = bc.one(f"{company}/salesOrders", "externalDocumentNumber eq 'D365-SO-0001'")
    assert after["totalAmountExcludingTax"] == net + body(added)["amountExcludingTax"]
    assert body(new_order(bc, "D365-SO-0002"))["number"] == "S-ORD101002"
    # a number the client supplies must be free
    code, message = error(new_order(bc, "D365-SO-0003", number="S-ORD101001"), 400)
    assert code == "Internal_EntityWithSameKeyExists" and "No.='S-ORD101001'" in message


def test_a_refused_line_leaves_no_order_behind(bc):
    company = bc.company()
    before = body(bc.http.get(f"{company}/salesOrders/$count"))
    refused = bc.post(
        f"{company}/salesOrders",
        payload={
            "customerNumber": "C10010",
            "externalDocumentNumber": "D365-SO-BAD",
            "salesOrderLines": [
                {"lineType": "Item", "lineObjectNumber": "1000-S", "quantity": 1},
                {"lineType": "Item", "lineObjectNumber": "NO-SUCH-ITEM", "quantity": 1},
            ],
        },
    )
    code, message = error(refused, 400)
    assert code == "Application_DialogException" and message.startswith("Item does not exist.")
    assert body(bc.http.get(f"{company}/salesOrders/$count")) == before
    assert (
        body(bc.http.get(f"{company}/salesOrders", params={"$filter": "externalDocumentNumber eq 'D365-SO-BAD'"}))[
            "value"
        ]
        == []
    )
    code, message = error(bc.post(f"{company}/salesOrders", {"customerNumber": "NOBODY"}), 400)
    assert (code, message.split("  ")[0]) == ("Application_DialogException", "The sell-to customer cannot be found.")
    code, message = error(bc.post(f"{company}/salesOrders", {"externalDocumentNumber": "X"}), 400)
    assert message.startswith('A "customerNumber" or a "customerId" must be provided.')
    # nothing refused consumed a number
    assert body(new_order(bc, "D365-SO-GOOD"))["number"] == "S-ORD101001"


def test_posting_a_draft_invoice_keeps_its_id_gives_the_posted_number_and_locks_it(bc):
    company = bc.company()
    invoices = f"{company}/salesInvoices"
    created = bc.post(
        invoices,
        payload={
            "customerNumber": "C10020",
            "externalDocumentNumber": "D365-INV-1",
            "invoiceDate": "2026-03-05",
            "salesInvoiceLines": [{"lineType": "Item", "lineObjectNumber": "1002-S", "quantity": 4}],
        },
    )
    assert created.status_code == 201, created.text
    draft = body(created)
    assert (draft["number"], draft["status"]) == ("S-INV102001", "Draft")
    terms = body(bc.http.get(f"{company}/paymentTerms({draft['paymentTermsId']})"))
    assert terms["code"] in {"10 DAYS", "14 DAYS", "1M(8D)", "21 DAYS", "30 DAYS", "60 DAYS", "7 DAYS", "CM", "COD"}
    posted = bc.post(f"{invoices}({draft['id']})/Microsoft.NAV.post")
    assert posted.status_code == 204 and posted.content == b""
    invoice = body(bc.http.get(f"{invoices}({draft['id']})"))  # the id stays
    assert (invoice["number"], invoice["status"]) == ("PS-INV103001", "Open")
    assert invoice["remainingAmount"] == invoice["totalAmountIncludingTax"] == draft["totalAmountIncludingTax"]
    assert bc.one(invoices, "externalDocumentNumber eq 'D365-INV-1'")["id"] == draft["id"]
    # a posted invoice is read-only
    code, message = error(
        bc.patch(f"{invoices}({draft['id']})", {"externalDocumentNumber": "X"}, headers={"If-Match": "*"}),
        400,
    )
    assert message.startswith("The invoice has been posted and can no longer be modified.")
    code, message = error(bc.post(f"{invoices}({draft['id']})/salesInvoiceLines", {"lineObjectNumber": "1000-S"}), 400)
    assert message.startswith("The invoice has been posted and can no longer be modified.")
    code, message = error(bc.post(f"{invoices}({draft['id']})/Microsoft.NAV.post"), 400)
    assert (code, message.split("  ")[0]) == (
        "Application_DialogException",
        "The action can be applied to a draft invoice only.",
    )
    # a draft without lines cannot be posted
    empty = body(bc.post(invoices, {"customerNumber": "C10020"}))
    assert empty["number"] == "S-INV102002"
    code, message = error(bc.post(f"{invoices}({empty['id']})/Microsoft.NAV.post"), 400)
    assert message.startswith("Please add at least one line item to the invoice.")


def test_ship_and_invoice_turns_the_order_into_a_posted_invoice(bc):
    company = bc.company()
    order = body(new_order(bc, "D365-SO-0007"))
    shipped = bc.post(f"{company}/salesOrders({order['id']})/Microsoft.NAV.shipAndInvoice")
    assert shipped.status_code == 204, shipped.text
    assert error(bc.http.get(f"{company}/salesOrders({order['id']})"), 404)[0] == "BadRequest_NotFound"
    invoice = bc.one(f"{company}/salesInvoices", "externalDocumentNumber eq 'D365-SO-0007'")
    assert (invoice["status"], invoice["number"]) == ("Open", "PS-INV103001")
    assert (invoice["orderId"], invoice["orderNumber"]) == (order["id"], order["number"])
    assert invoice["customerId"] == order["customerId"] and invoice["id"] != order["id"]
    for total in ("totalAmountExcludingTax", "totalTaxAmount", "totalAmountIncludingTax"):
        assert invoice[total] == order[total]
    lines = body(bc.http.get(f"{company}/salesInvoices({invoice['id']})/salesInvoiceLines"))["value"]
    assert [(x["lineObjectNumber"], x["quantity"], x["amountExcludingTax"]) for x in lines] == [
        (x["lineObjectNumber"], x["quantity"], x["amountExcludingTax"]) for x in order["salesOrderLines"]
    ]
    assert all(x["documentId"] == invoice["id"] for x in lines)


@pytest.mark.parametrize("target", ["salesOrders", "Microsoft.NAV.post"])
def test_a_write_whose_answer_a_gateway_lost_was_committed_once(sandbox, bc, target):
    company = bc.company()
    draft = None
    if target == "Microsoft.NAV.post":
        draft = body(
            bc.post(
                f"{company}/salesInvoices",
                payload={
                    "customerNumber": "C10020",
                    "salesInvoiceLines": [{"lineObjectNumber": "1000-S", "lineType": "Item", "quantity": 1}],
                },
            )
        )
    sandbox.faults({"kind": "commit_then_504", "path_contains": f"/{target}", "count": 1})
    if draft is None:
        lost = new_order(bc, "D365-SO-LOST")
        assert lost.status_code == 504
        assert bc.one(f"{company}/salesOrders", "externalDocumentNumber eq 'D365-SO-LOST'")["number"] == "S-ORD101001"
        key = "POST salesOrders"
    else:
        lost = bc.post(f"{company}/salesInvoices({draft['id']})/Microsoft.NAV.post")
        assert lost.status_code == 504
        invoice = body(bc.http.get(f"{company}/salesInvoices({draft['id']})"))
        assert (invoice["status"], invoice["number"]) == ("Open", "PS-INV103001")
        # sending it again is refused by BC's own rule, so a blind retry cannot post twice
        assert error(bc.post(f"{company}/salesInvoices({draft['id']})/Microsoft.NAV.post"), 400)[1].startswith(
            "The action can be applied to a draft invoice only."
        )
        key = "POST salesInvoices/Microsoft.NAV.post"
    state = sandbox.state("business_central")
    assert state["faults_fired"] == {"commit_then_504": 1} and state["writes"][key] == 1


def test_the_copied_company_keeps_its_own_number_series(bc):
    assert len(bc.companies) == 2
    assert body(new_order(bc, "A-1"))["number"] == "S-ORD101001"
    assert body(new_order(bc, "A-2"))["number"] == "S-ORD101002"
    other = new_order(bc, "B-1", index=1)
    assert other.status_code == 201, other.text
    assert body(other)["number"] == "S-ORD101001"
    # a lookup in one company never sees the other's documents
    found = body(bc.http.get(f"{bc.company(1)}/salesOrders", params={"$filter": "externalDocumentNumber eq 'A-1'"}))
    assert found["value"] == []
    codes = {t["code"] for t in body(bc.http.get(f"{bc.company(1)}/paymentTerms"))["value"]}
    assert {"14 DAYS", "30 DAYS", "CM"} <= codes


def test_a_draft_order_and_each_of_its_lines_are_patched_behind_their_own_etags(bc):
    orders = f"{bc.company()}/salesOrders"
    order = body(new_order(bc, "D365-SO-0042"))
    patched = bc.patch(
        f"{orders}({order['id']})",
        {"externalDocumentNumber": "D365-SO-0042b"},
        headers={"If-Match": order["@odata.etag"]},
    )
    # externalDocumentNumber is a Code field: BC keeps it upper case
    assert patched.status_code == 200 and body(patched)["externalDocumentNumber"] == "D365-SO-0042B"
    stale = bc.patch(
        f"{orders}({order['id']})", {"externalDocumentNumber": "late"}, headers={"If-Match": order["@odata.etag"]}
    )
    assert error(stale, 409)[0] == "Request_EntityChanged"
    line = body(bc.http.get(f"{orders}({order['id']})/salesOrderLines({order['salesOrderLines'][0]['id']})"))
    changed = bc.patch(
        f"{orders}({order['id']})/salesOrderLines({line['id']})",
        {"quantity": 5},
        headers={"If-Match": line["@odata.etag"]},
    )
    assert changed.status_code == 200, changed.text
    assert body(changed)["amountExcludingTax"] == money(5 * line["unitPrice"]) and body(changed)["shipQuantity"] == 5
    after = bc.one(orders, "externalDocumentNumber eq 'D365-SO-0042B'")
    assert (
        after["totalAmountExcludingTax"]
        == body(patched)["totalAmountExcludingTax"] - line["amountExcludingTax"] + body(changed)["amountExcludingTax"]
    )
    again = bc.patch(
        f"{orders}({order['id']})/salesOrderLines({line['id']})",
        {"quantity": 6},
        headers={"If-Match": line["@odata.etag"]},
    )
    assert error(again, 409)[0] == "Request_EntityChanged"
    assert (
        bc.http.get(f"{bc.company()}/paymentTerms", params={"$filter": "code eq 'CM'"}).json()["value"][0][
            "dueDateCalculation"
        ]
        == "CM"
    )
