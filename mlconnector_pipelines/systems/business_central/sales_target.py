"""Business Central as the target of sales documents: customers kept by number, orders and draft invoices by
`externalDocumentNumber`, invoices posted once.

BC has no idempotency header. Every create is preceded by a lookup of its natural key, and a create
whose answer was lost (OutcomeUnknown) is settled by the same lookup before anything else:
- a customer by its `number` (the product chooses it, so a second POST would be refused as a duplicate);
- a sales document by `externalDocumentNumber`, in `salesOrders` and also in posted `salesInvoices`,
  because BC removes an order once it is fully shipped and invoiced;
- a posting by the invoice's status (a posted invoice is no longer `Draft`).
A document is created with its lines in one request (a deep insert), so BC holds all of it or none.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from ...core.errors import OutcomeUnknown, RecordRefused, RequestFailedError
from ...core.journal_mapping import currency_places
from ...core.posting import LinesRefused, Plan, PlannedLine, Problem, WrittenDocument, WrittenLine
from .client import SYSTEM, BusinessCentralClient

LINE_SETS = {"salesOrders": "salesOrderLines", "salesInvoices": "salesInvoiceLines"}
DOCUMENT_SETS = {"sales_order": "salesOrders", "draft_invoice": "salesInvoices"}
POST_ACTION = "Microsoft.NAV.post"
_ITEM_IN_MESSAGE = re.compile(r"No\.='([^']*)'")


def as_code(value: Any) -> str:
    """A value of one of BC's Code fields (numbers, post codes, external document numbers) as BC keeps it:
    "converted to uppercase and [with] any trailing or leading spaces" removed (Microsoft, Code Data Type).
    What is sent, looked up and compared is this form, so BC's answer matches it."""
    return str(value if value is not None else "").strip().upper()


def decimal_text(value: Any) -> str:
    """A quantity or price as comparable text: 2, 2.0 and 2.00 are all "2"."""
    number = Decimal(str(value or 0))
    return format(number.normalize(), "f") if number else "0"


AMOUNT_PRECISION = Decimal("0.01")  # BC's default amount rounding precision (General Ledger Setup)


def bc_amount(value: Any, precision: Decimal = AMOUNT_PRECISION) -> Decimal:
    """An amount as BC keeps it: a multiple of the currency's amount rounding precision, half away from zero (BC's
    Round(value, precision, '=')). Dataverse money holds four places; BC rounds a line's discount to cents (to
    the yen in a yen document), so a plan carrying 1.0050 never matched what BC holds (1.01) and the deal could
    not be verified, then not rerun."""
    number = Decimal(str(value or 0))
    with localcontext() as exact:  # no digit of a large amount lost in the division
        exact.prec = max(exact.prec, len(number.as_tuple().digits) + 30)
        steps = (number / precision).quantize(Decimal(1), rounding=ROUND_HALF_UP)
        return (steps * precision).quantize(precision)


def line_amount(quantity: Any, unit_price: Any, discount: Any) -> Decimal:
    return Decimal(str(quantity or 0)) * Decimal(str(unit_price or 0)) - Decimal(str(discount or 0))


# The customer fields the product writes: BC's name for each (Customer table, table 18) and the most it holds.
CUSTOMER_FIELDS = {
    "displayName": ("Name", 100),
    "addressLine1": ("Address", 100),
    "addressLine2": ("Address 2", 50),
    "city": ("City", 30),
    "state": ("County", 30),
    "postalCode": ("Post Code", 20),
    "email": ("E-Mail", 80),
    "phoneNumber": ("Phone No.", 30),
    "website": ("Home Page", 80),
}


def customer_field_problems(customer: dict[str, Any]) -> dict[str, str]:
    """Why BC would refuse a customer's field, by field: longer than BC's field holds, or a phone number with a
    letter in it (Phone No.'s OnValidate refuses any). Said before the first write, so nothing is half written."""
    problems = {}
    for field, (name, most) in CUSTOMER_FIELDS.items():
        value = str(customer.get(field) or "")
        if len(value) > most:
            problems[field] = f"{value!r} is {len(value)} characters; BC's {name} holds {most}"
    phone = str(customer.get("phoneNumber") or "")
    if any(ch.isalpha() for ch in phone):
        problems["phoneNumber"] = f"{phone!r} has letters in it, which BC's Phone No. refuses"
    return problems


class BusinessCentralCustomers:
    """BC customers kept equal to Sales accounts, by customer number (engine/records.py's RecordTarget)."""

    system = SYSTEM
    entity = "customer"
    key = "number"
    # Customer."Post Code"'s validation overwrites these from BC's Post Code table when the code is there (the
    # customers API sets postalCode after them): BC's values are kept, not called a refusal (engine/records.py).
    derived_from = {field: ("postalCode",) for field in ("city", "state", "country")}

    def __init__(self, client: BusinessCentralClient, company_id: str):
        self.client, self.company_id = client, company_id
        self.payment_terms: dict[str, str] = {}  # code → id, read when first needed

    def current(self, number: str) -> dict | None:
        found = self.client.find(self.company_id, "customers", "number", number)
        return found[0] if found else None

    def payment_terms_id(self, code: str) -> str:
        if not self.payment_terms:
            terms = self.client.records(self.company_id, "paymentTerms")
            self.payment_terms = {str(t["code"]).upper(): str(t["id"]) for t in terms}
        try:
            return self.payment_terms[code.upper()]
        except KeyError:
            raise RecordRefused(
                SYSTEM, "customer", "", [f"paymentTermsId: payment terms {code!r} do not exist in BC"]
            ) from None

    def upsert(self, record: dict) -> dict:
        """Create the customer, or change only the fields given. A record changed meanwhile (its etag no longer
        matches) is read again and the change sent once more on top of it, so neither side's edit is lost."""
        number = str(record[self.key])
        held = self.current(number)
        if held is None:
            return self._create(record)
        for attempt in (1, 2):
            try:
                return self.client.update(self.company_id, "customers", held["id"], _without(record, self.key),
                                          etag=held["@odata.etag"])  # fmt: skip
            except RequestFailedError as exc:
                if not _changed_meanwhile(exc) or attempt == 2:
                    raise _refused(exc, number) from None
                held = self.current(number)
                if held is None:
                    raise
        raise AssertionError("unreachable")

    def _create(self, record: dict) -> dict:
        try:
            return self.client.create(self.company_id, "customers", record, read=_saved)
        except OutcomeUnknown:
            held = self.current(str(record[self.key]))
            if held is None:  # never processed; a late commit of the first would refuse this one as a duplicate
                return self.client.create(self.company_id, "customers", record, read=_saved)
            return held
        except RequestFailedError as exc:
            if exc.code == "Internal_EntityWithSameKeyExists":  # created a moment ago (another run, or ours)
                held = self.current(str(record[self.key]))
                if held is not None:
                    return self.upsert(record)
            raise _refused(exc, str(record[self.key])) from None

    def close(self) -> None:
        self.client.close()


def _saved(customer: dict) -> dict:
    """The customer BC answered a create with; KeyError when the answer does not hold one."""
    if not customer.get("id"):
        raise KeyError("id")
    return customer


class BusinessCentralSalesDocuments:
    """Sales orders or draft invoices with their lines (core/posting.py's PostingTarget).

    A plan's line: `account` the BC item number, `dimensions` (quantity, unitPrice, discountAmount) as text,
    `debit` the line amount, `text` the description. Its header: customerNumber, externalDocumentNumber, dates.
    """

    system = SYSTEM
    max_lines_per_write = 10_000
    writes_in_flight = 1
    lines_with_header = True  # a deep insert: the document and its lines in one atomic request
    # A Sales document changed after its BC document was made (a line added to an active order): the connector
    # changes no document in BC, and the Sales flow has no difference documents.
    on_other_figures = (
        "The connector does not change documents in Business Central: make the change there by hand, or delete "
        "the BC document (if nothing was posted from it) and run the deal again"
    )

    def __init__(self, client: BusinessCentralClient, company_id: str, document: str):
        self.client, self.company_id = client, company_id
        self.outcome_settle_seconds = client.http.policy.outcome_settle_seconds
        self.entity_set = DOCUMENT_SETS[document]
        self.document = document
        self.post_when_verified = False  # set per run: a confirmed draft invoice is posted after verification
        self.items: dict[str, dict | None] = {}  # item number → item, as read in this run
        self._local_currency: str | None = None  # General Ledger Setup's LCY Code, read when first needed
        self._currencies: list[dict] | None = None  # the company's Currencies, read when first needed

    # -- reads -------------------------------------------------------------------------------------

    def validate(self, plan: Plan) -> list[Problem]:
        """Every item exists and is not blocked (the customer is the sync's step before the document)."""
        problems = []
        items = {number: self._item(number) for number in sorted({line.account for line in plan.lines if line.account})}
        for line in plan.lines:
            item = items.get(line.account)
            if item is None:
                problems.append(Problem(line, f"item {line.account} does not exist in BC company {self.company_id}"))
            elif item.get("blocked"):
                problems.append(Problem(line, f"item {line.account} is blocked in BC"))
        return problems + self._currency_problems(plan)

    def _currency_problems(self, plan: Plan) -> list[Problem]:
        """A document in a currency the company has not set up is refused by BC; say so before writing."""
        currency = plan_currency(plan)
        if not currency or currency == self.local_currency():
            return []
        if self._currency(currency) is not None:
            return []
        return [
            Problem(
                None,
                f"{plan.document_key} is in {currency}, which BC company {self.company_id} has not set up (its local "
                f"currency is {self.local_currency() or 'not set'}): add {currency} under Currencies in BC, with its "
                "exchange rates, and run it again",
            )
        ]

    def _currency(self, code: str) -> dict | None:
        if self._currencies is None:
            self._currencies = self.client.records(self.company_id, "currencies")
        return next((c for c in self._currencies if as_code(c.get("code")) == as_code(code)), None)

    def amount_precision(self, currency: str) -> Decimal:
        """What BC rounds a document's amounts in `currency` to: that currency's Amount Rounding Precision. The
        local currency's is General Ledger Setup's, which API v2.0 does not serve: its ISO 4217 minor unit (the
        cent; the yen for a company keeping its books in yen), as is a currency BC answers none for."""
        code = as_code(currency) or self.local_currency()
        found = self._currency(code) if code and code != self.local_currency() else None
        given = Decimal(str((found or {}).get("amountRoundingPrecision") or 0))
        if given > 0:
            return given
        try:
            return Decimal(1).scaleb(-currency_places(code, {}))
        except ValueError:  # no ISO code (blank LCY Code): BC's default
            return AMOUNT_PRECISION

    def local_currency(self) -> str:
        """The company's local currency (LCY Code): what BC shows for a document in it, whose code it keeps blank."""
        if self._local_currency is None:
            information = self.client.records(self.company_id, "companyInformation")
            self._local_currency = as_code(information[0].get("currencyCode")) if information else ""
        return self._local_currency

    def _item(self, number: str) -> dict | None:
        """One item by number (one request each: `or` in BC filters is not something to lean on)."""
        if number not in self.items:
            found = self.client.find(self.company_id, "items", "number", number)
            self.items[number] = found[0] if found else None
        return self.items[number]

    def find(self, plan: Plan) -> WrittenDocument | None:
        key = as_code(plan.document_key)
        if self.entity_set == "salesOrders":
            orders = self.client.find(self.company_id, "salesOrders", "externalDocumentNumber", key,
                                      expand="salesOrderLines")  # fmt: skip
            if orders:
                return _written(orders[0], "salesOrders", posted=False, currency=self._currency_of(orders[0], plan))
        invoices = self.client.find(self.company_id, "salesInvoices", "externalDocumentNumber", key,
                                    expand="salesInvoiceLines")  # fmt: skip
        if self.entity_set == "salesOrders":
            parts = self._posted_invoices_of_the_order(invoices)
            if parts:  # the order was invoiced (in one part or several) and BC removed it: it lives on in them
                invoiced = _invoiced_order(parts)
                document = _written(invoiced, "salesInvoices", posted=True, currency=self._currency_of(invoiced, plan))
                document.number = str(invoiced["orderNumber"])
                return document
        if not invoices:
            return None
        invoice = sorted(invoices, key=lambda i: not _posted(i))[0]  # a posted one first
        posted = _posted(invoice)
        document = _written(invoice, "salesInvoices", posted=posted, currency=self._currency_of(invoice, plan))
        if self.entity_set == "salesOrders":  # the order was invoiced and BC removed it: it lives on in the invoice
            document.number = str(invoice.get("orderNumber") or invoice["number"])
        return document

    def _posted_invoices_of_the_order(self, invoices: list[dict]) -> list[dict]:
        """Every posted invoice of the order the key's posted invoices came from, by number. BC invoices an order
        shipped in parts once per part, each carrying the order's External Document No. and number
        (`orderNumber`); one whose External Document No. a person changed is found by the order's number."""
        posted = {str(i["id"]): i for i in invoices if _posted(i) and i.get("orderNumber")}
        for order_number in sorted({str(i["orderNumber"]) for i in posted.values()}):
            for invoice in self.client.find(self.company_id, "salesInvoices", "orderNumber", order_number,
                                            expand="salesInvoiceLines"):  # fmt: skip
                if _posted(invoice):
                    posted.setdefault(str(invoice["id"]), invoice)
        return sorted(posted.values(), key=lambda i: str(i["number"]))

    def _currency_of(self, document: dict, plan: Plan) -> str:
        """The document's currency as the plan's lines name it: its code, the local one when BC keeps it blank;
        "" for a plan that names none (recorded before documents carried their currency: not compared)."""
        if not plan_currency(plan):
            return ""
        return as_code(document.get("currencyCode")) or self.local_currency()

    def read_lines(self, plan: Plan, number: str) -> list[WrittenLine]:
        found = self.find(plan)
        return found.lines if found is not None else []

    # -- writes ------------------------------------------------------------------------------------

    def create_document(self, plan: Plan) -> str:
        body = {**plan.header, LINE_SETS[self.entity_set]: [_line_body(line) for line in plan.lines]}
        try:
            return self.client.create(self.company_id, self.entity_set, body, read=lambda saved: str(saved["number"]))
        except RequestFailedError as exc:
            if isinstance(exc, OutcomeUnknown) or exc.status is None or exc.status >= 500 or exc.status == 429:
                raise
            raise _lines_refused(plan.lines, exc) from None

    def create_lines(self, plan: Plan, number: str, lines: Sequence[PlannedLine]) -> None:
        raise NotImplementedError("sales documents are created with their lines (lines_with_header)")

    def discard(self, plan: Plan, number: str) -> None:
        """Nothing to discard: a deep insert BC refused saved nothing."""

    def finish(self, plan: Plan, number: str) -> str | None:
        """Post a draft invoice once, when this run was told it is confirmed; None when there is nothing to do."""
        if self.entity_set != "salesInvoices" or not self.post_when_verified:
            return None
        document = self.find(plan)
        if document is None:
            raise OutcomeUnknown(SYSTEM, f"{plan.document_key} vanished before posting", method="GET", url="")
        if document.posted:
            return f"already posted as {document.detail['number']}"
        try:
            self.client.action(self.company_id, "salesInvoices", document.detail["id"], POST_ACTION)
        except OutcomeUnknown:
            again = self.find(plan)
            if again is not None and again.posted:
                return f"posted as {again.detail['number']}"
            raise  # still a draft: replay looks again before posting (BC may still be posting it)
        posted = self.find(plan)
        return f"posted as {posted.detail['number'] if posted else '?'}"

    def metadata(self) -> dict[str, Any]:
        return self.client.http.stats.as_metadata("business_central_http_")

    def close(self) -> None:
        self.client.close()


def _line_body(line: PlannedLine) -> dict[str, Any]:
    values = dict(line.dimensions)
    return {
        "sequence": line.number * 10000,
        "lineType": "Item",
        "lineObjectNumber": line.account,
        "description": line.text,
        "quantity": Decimal(values["quantity"]),
        "unitPrice": Decimal(values["unitPrice"]),
        "discountAmount": Decimal(values.get("discountAmount", "0")),
    }


def plan_currency(plan: Plan) -> str:
    """The currency a sales document's plan is in (each of its lines names it); "" when it names none."""
    return plan.lines[0].currency if plan.lines else ""


def _written(document: dict, entity_set: str, *, posted: bool, currency: str) -> WrittenDocument:
    raw = sorted(document.get(LINE_SETS[entity_set]) or [], key=lambda r: (r.get("sequence") or 0, str(r.get("id"))))
    lines = [
        WrittenLine(
            number=n,
            account=str(r.get("lineObjectNumber") or ""),
            dimensions=(
                ("quantity", decimal_text(r.get("quantity"))),
                ("unitPrice", decimal_text(r.get("unitPrice"))),
                ("discountAmount", decimal_text(r.get("discountAmount"))),
            ),
            debit=line_amount(r.get("quantity"), r.get("unitPrice"), r.get("discountAmount")),
            credit=Decimal(0),
            currency=currency,
            text=str(r.get("description") or ""),
        )
        for n, r in enumerate(raw, start=1)
    ]
    return WrittenDocument(
        number=str(document["number"]),
        lines=lines,
        posted=posted,
        detail={
            "id": str(document["id"]),
            "number": str(document["number"]),
            "status": document.get("status"),
            "entity_set": entity_set,
        },  # fmt: skip
    )


def _invoiced_order(invoices: list[dict]) -> dict:
    """An order as the invoices it was posted in hold it together: each order line's quantity and discount summed
    over its parts (a posted invoice line keeps its order line's Line No., `sequence`; a part at another price
    stays a line of its own, so it is named, not added up), the invoices' numbers and statuses each once, in
    order ("PS-INV103001, PS-INV103002")."""
    lines: dict[tuple, dict] = {}
    for invoice in invoices:
        for line in invoice.get(LINE_SETS["salesInvoices"]) or []:
            part = (line.get("sequence"), line.get("lineObjectNumber"), decimal_text(line.get("unitPrice")))
            whole = lines.setdefault(part, {**line, "quantity": 0, "discountAmount": 0})
            for name in ("quantity", "discountAmount"):
                whole[name] = Decimal(str(whole[name])) + Decimal(str(line.get(name) or 0))
    statuses = dict.fromkeys(str(i.get("status") or "") for i in invoices)
    return {
        **invoices[0],
        "number": ", ".join(str(i["number"]) for i in invoices),
        "status": ", ".join(statuses),
        LINE_SETS["salesInvoices"]: list(lines.values()),
    }


def _lines_refused(lines: Sequence[PlannedLine], exc: RequestFailedError) -> LinesRefused:
    message = exc.server_message or str(exc)
    named = _ITEM_IN_MESSAGE.search(message)
    line = next((ln for ln in lines if named and ln.account == named.group(1)), None)
    return LinesRefused(line, message)


def _changed_meanwhile(exc: RequestFailedError) -> bool:
    """BC's "Another user has already changed the record": documented as 409, answered 412 by some versions."""
    return exc.code == "Request_EntityChanged" or exc.status in (409, 412)


def _refused(exc: RequestFailedError, number: str) -> RecordRefused:
    return RecordRefused(SYSTEM, "customer", number, [exc.server_message or str(exc)])


def _without(record: dict, key: str) -> dict:
    return {k: v for k, v in record.items() if k != key}


# A sales invoice still in the Sales Header table: a draft, or one waiting for approval. Schema version 2.0
# of the API spells the space of an enum value `_x0020_`.
_UNPOSTED_STATUSES = frozenset({"draft", "in review"})


def _posted(invoice: dict) -> bool:
    return str(invoice.get("status") or "Draft").replace("_x0020_", " ").lower() not in _UNPOSTED_STATUSES
