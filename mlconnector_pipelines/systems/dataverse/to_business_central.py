"""A Sales deal into Business Central, exactly once: the customer, the document with its lines, the posting, the
numbers written back to Sales (Dagster-free; flows/dynamics_sales.py runs it).

Order of work, so that a bad deal writes nothing and a crash anywhere is finished by running it again:
1. read the deal (systems/dataverse/sales.py) and plan the document: each Sales line → a BC item;
2. validate: every product maps to an item that exists and is not blocked — else nothing is written, the line
   is named, and the audit store keeps the refusal for replay once the mapping is fixed;
3. the customer, kept by number (created, or only its changed fields sent);
4. the document through the posting engine: found by `externalDocumentNumber` first, created with its lines in
   one request, read back, compared, and — for a confirmed draft invoice — posted once;
5. BC's numbers written back to the Sales document (PATCH: setting columns to values twice is doing it once).
   The document is finished only then: `write_back_pending` is recorded before it is verified and closed by
   `written_back` (or `write_back_refused`), so a write-back that failed or never ran is replay's to finish —
   the document is found verified in BC and only the PATCH is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ...audit.store import AuditStore, DocumentRecord
from ...core.errors import RequestFailedError
from ...core.posting import ZERO, Plan, PlannedLine, Problem, SourceRow
from ...engine.post import PostingEngine, PostingRefused, PostingResult, plan_problems
from ...engine.records import RecordSync, records_plan
from ..business_central.client import SYSTEM as BC
from ..business_central.client import BusinessCentralClient
from ..business_central.sales_target import (
    AMOUNT_PRECISION,
    CUSTOMER_FIELDS,
    BusinessCentralCustomers,
    BusinessCentralSalesDocuments,
    as_code,
    bc_amount,
    customer_field_problems,
    decimal_text,
    line_amount,
)
from .client import DataverseClient, guid_literal
from .config import SalesToBusinessCentral
from .sales import ORDER_FULFILLED, ORDER_INVOICED, ORDERS, Deal, SalesReader, parse_partition

FLOW = "dataverse/sales_to_business_central"
CUSTOMER_FLOW = "dataverse/sales_customers"
POST_CONFIRMED = "post_confirmed"  # the audit event of a confirmed draft invoice
CUSTOMER_NUMBER_LENGTH = 20  # BC's customer No.
TEXT_LENGTH = 100  # BC's line description


@dataclass
class SyncOutcome:
    trigger: tuple[str, str, int]
    deal: str | None = None  # the deal's key (BC externalDocumentNumber)
    customer: str | None = None
    customer_action: str | None = None  # created | updated | unchanged
    document_number: str | None = None
    outcome: str | None = None  # the posting engine's: posted | already_posted | resumed
    posting: str | None = None  # what finishing did (the invoice posted) or None
    written_back: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # why nothing was done (not won, cancelled…)

    def summary(self) -> str:
        if self.skipped:
            return f"skipped: {self.skipped}"
        parts = [f"customer {self.customer} {self.customer_action}", f"{self.document_number} {self.outcome}"]
        if self.posting:
            parts.append(self.posting)
        if self.written_back.get("refused"):
            parts.append(f"Sales refused the write-back ({self.written_back['refused']})")
        elif self.written_back:
            parts.append(f"written back to Sales {self.written_back.get('written_to', '')}".rstrip())
        return f"{self.deal}: " + ", ".join(parts)


def mapped_customer(account: dict[str, Any], sync: SalesToBusinessCentral) -> str | None:
    """The BC customer `customers` maps the account to (by its id or its account number), if any."""
    for known in (str(account["accountid"]).lower(), str(account.get("accountnumber") or "")):
        mapped = next((number for key, number in sync.customers.items() if key.lower() == known.lower()), None)
        if known and mapped:
            return as_code(mapped)
    return None


def customer_number(account: dict[str, Any], sync: SalesToBusinessCentral) -> str:
    """The customer `customers` maps the account to; else the account's own number when it fits BC; else a
    number made from its id (stable, so a rerun finds the customer it made)."""
    mapped = mapped_customer(account, sync)
    if mapped:
        return mapped
    own = as_code(account.get("accountnumber"))
    if own and len(own) <= CUSTOMER_NUMBER_LENGTH:
        return own
    compact = str(account["accountid"]).replace("-", "")
    return as_code(sync.customer_number_prefix + compact)[:CUSTOMER_NUMBER_LENGTH]


def same_name(one: Any, other: Any) -> bool:
    """Two spellings of one party's name, whatever their case, spaces and punctuation ("Contoso Ltd" and
    "CONTOSO, LTD.")."""

    def letters(name: Any) -> str:
        return "".join(ch for ch in str(name or "").casefold() if ch.isalnum())

    return letters(one) == letters(other)


# BC customer field ← the Sales account's column; email and phone are the primary contact's when the account has none
ACCOUNT_COLUMNS = {
    "displayName": "name",
    "addressLine1": "address1_line1",
    "addressLine2": "address1_line2",
    "city": "address1_city",
    "state": "address1_stateorprovince",
    "postalCode": "address1_postalcode",
    "email": "emailaddress1",
    "phoneNumber": "telephone1",
    "website": "websiteurl",
}
FROM_CONTACT_TOO = frozenset({"email", "phoneNumber"})


def sales_value(deal: Deal, field: str) -> tuple[Any, str]:
    """A BC customer field's value in Sales, and where it is there (the record and its column)."""
    account, contact, column = deal.account, deal.primary_contact or {}, ACCOUNT_COLUMNS[field]
    if field in FROM_CONTACT_TOO and not account.get(column) and contact.get(column):
        return contact[column], f"Sales contact {contact.get('fullname')!r} ({contact.get('contactid')}) {column}"
    return account.get(column), f"Sales account {account.get('name')!r} ({account['accountid']}) {column}"


def customer_fields(deal: Deal, sync: SalesToBusinessCentral, terms: Callable[[str], str]) -> dict[str, Any]:
    """The BC customer as Sales says it should be (only fields Sales holds; BC keeps the rest). The name is cut to
    what BC's Name holds (still the customer's name); a field cut would be wrong data, so those are refused
    before writing (SalesSync._refuse_customer_fields_bc_cannot_hold)."""
    account = deal.account
    fields: dict[str, Any] = {"number": customer_number(account, sync)}
    fields |= {field: sales_value(deal, field)[0] for field in ACCOUNT_COLUMNS}
    fields["displayName"] = str(fields["displayName"] or "")[: CUSTOMER_FIELDS["displayName"][1]]
    fields["postalCode"] = as_code(fields["postalCode"])
    country = str(account.get("address1_country") or "")
    if 0 < len(country) <= 3:  # BC takes a country/region code; a country's name is left to people
        fields["country"] = country.upper()
    code = sync.payment_terms.get(int(account["paymenttermscode"])) if account.get("paymenttermscode") else None
    if code:
        fields["paymentTermsId"] = terms(code)
    return {k: v for k, v in fields.items() if v not in (None, "")}


def document_plan(
    deal: Deal,
    sync: SalesToBusinessCentral,
    *,
    company_id: str,
    customer: str,
    run_id: str,
    precision: Decimal = AMOUNT_PRECISION,
) -> tuple[Plan, list[Problem]]:
    """The BC document a deal becomes, and every line whose product maps to no item. `precision` is what BC
    rounds the document's amounts to in its currency."""
    lines, problems = [], []
    for sales_line in deal.lines:
        item = _item(sales_line.product_number, sync)
        item = as_code(item) if item else None
        discount = bc_amount(sales_line.discount, precision)  # as BC will hold it (Sales keeps four places)
        line = PlannedLine(
            number=sales_line.number,
            account=item or "",
            dimensions=(
                ("quantity", decimal_text(sales_line.quantity)),
                ("unitPrice", decimal_text(sales_line.unit_price)),
                ("discountAmount", decimal_text(discount)),
            ),
            debit=line_amount(sales_line.quantity, sales_line.unit_price, discount),
            credit=ZERO,
            currency=deal.currency or "",
            text=sales_line.description[:TEXT_LENGTH],
            source=SourceRow(
                query=f"dynamics_sales/{deal.lines_set}",  # the Sales lines' asset: trace walks on from it
                origin=f"{deal.document} {deal.document_number}",
                run_id=run_id,
                window_start=None,
                row_number=sales_line.number,
                values=sales_line.values,
            ),
        )
        lines.append(line)
        if item is None:
            which = sales_line.product_number or f"(write-in, no product) {sales_line.description!r}"
            problems.append(
                Problem(line, f"product {which} maps to no BC item: add it to sales_to_business_central.items.map")
            )
        if line.debit < ZERO:
            problems.append(Problem(line, f"the line amount is negative ({line.debit}): the discount exceeds it"))
    where = f"{deal.document} {deal.document_number}".strip()
    for amount, what in ((deal.header_discount, "a discount on the whole document"), (deal.freight, "freight")):
        if amount:  # BC's total would be higher than Sales' (or lower): refused, named, nothing written
            problems.append(
                Problem(None, f"{where} carries {what} ({amount.normalize():f}), which is not carried into BC: remove it in "
                              "Sales (give it on the lines) or enter the document in BC by hand")
            )  # fmt: skip
    plan = Plan(
        flow=FLOW,
        partition=f"{deal.root_set}({deal.root_id})",  # the deal's root record (parse_partition): a rerun starts there
        document_key=deal.key,
        system=BC,
        company=company_id,
        # The document's own currency, sent: BC would otherwise take the customer's and keep Sales' figures
        header={"customerNumber": customer, "externalDocumentNumber": as_code(deal.key)}
        | ({"currencyCode": deal.currency} if deal.currency else {}),
        lines=tuple(lines),
        must_balance=False,
    )
    return plan, problems


def _item(product_number: str | None, sync: SalesToBusinessCentral) -> str | None:
    if not product_number:
        return None
    if product_number in sync.items.map:
        return sync.items.map[product_number]
    return product_number if sync.items.same_number else None


def open_sales_sync(
    sync: SalesToBusinessCentral,
    dataverse: DataverseClient,
    bc: BusinessCentralClient,
    audit: AuditStore,
    *,
    run_id: str,
    progress: Callable[[str], None] = print,
) -> SalesSync:
    """A SalesSync into the configured BC company; it owns the clients and the audit store (close it)."""
    company = bc.resolve_companies([sync.company])[0]["id"]
    customers = BusinessCentralCustomers(bc, company)
    documents = BusinessCentralSalesDocuments(bc, company, sync.document)
    return SalesSync(sync, dataverse, customers, documents, audit, run_id=run_id, progress=progress)


class SalesSync:
    def __init__(
        self,
        sync: SalesToBusinessCentral,
        dataverse: DataverseClient,
        customers: BusinessCentralCustomers,
        documents: BusinessCentralSalesDocuments,
        audit: AuditStore,
        *,
        run_id: str,
        progress: Callable[[str], None] = print,
        checkpoint: Callable[[str], None] = lambda name: None,
    ):
        self.sync, self.dataverse, self.customers, self.documents = sync, dataverse, customers, documents
        self.audit, self.run_id, self.progress, self.checkpoint = audit, run_id, progress, checkpoint
        self.reader = SalesReader(dataverse)

    def close(self) -> None:
        self.audit.close()
        self.documents.close()  # the customers' client is the same one
        self.dataverse.close()

    def metadata(self) -> dict[str, Any]:
        return {**self.dataverse.metadata(), **self.documents.metadata()}

    def run(self, entity_set: str, record_id: str, *, confirmed: bool = False) -> SyncOutcome:
        """Everything for the deal this Sales record belongs to. Raises PostingRefused (nothing written) for a
        deal that cannot go to BC as it is, and DealNotReady when the record does not start a document."""
        deal = self.reader.deal(entity_set, record_id)
        outcome = SyncOutcome(trigger=deal.trigger, deal=deal.key)
        number = customer_number(deal.account, self.sync)
        plan, mapping_problems = document_plan(
            deal,
            self.sync,
            company_id=self.documents.company_id,
            customer=number,
            run_id=self.run_id,
            precision=self.documents.amount_precision(deal.currency or ""),
        )
        engine = PostingEngine(self.documents, self.audit, run_id=self.run_id, checkpoint=self.checkpoint,
                               progress=self.progress)  # fmt: skip
        record = engine.record(plan)
        try:
            self._refuse_a_second_order(deal, record)
            self._refuse_taking_over_another_customer(deal, number)
            self._refuse_customer_fields_bc_cannot_hold(deal)
        except PostingRefused as refused:  # kept with the deal, for the person who fixes it and for replay
            if record.document_number is None:  # nothing of it in BC yet: refused until fixed
                self.audit.set_state(record.id, "refused", run_id=self.run_id, error="\n".join(refused.problems),
                                     event="refused", detail=str(refused))  # fmt: skip
            else:  # the deal is in BC (another order's): its state stays; the refusal is in its history
                self.audit.event(record.id, self.run_id, "refused", "\n".join(refused.problems))
            raise
        if record.state != "verified":  # validate before the first write (a verified deal is only looked up)
            engine.validate(plan, record, mapping_problems + plan_problems(plan) + self.documents.validate(plan))
            record = self.audit.document(record.id)
        outcome.customer, outcome.customer_action = number, self._customer(deal)
        self.checkpoint("after_customer")
        # A confirmation is kept with the plan it confirmed: a replay after a posting whose answer was lost (or a
        # run stopped before it) posts what a person confirmed, instead of calling the draft a finished deal; a
        # plan changed since (Sales changed) needs confirming again. It stays open until the posting is done.
        confirmation = f"a person confirmed the draft invoice of plan {plan.digest[:16]}"
        earlier = any(
            e["event"] == POST_CONFIRMED and e["detail"] == confirmation for e in self.audit.history(record.id)
        )
        if confirmed and not earlier and self._post_now(deal, True):
            self.audit.event(record.id, self.run_id, POST_CONFIRMED, confirmation)
        self.documents.post_when_verified = self._post_now(deal, confirmed or earlier)
        posted = engine.post(plan, record)
        writes_back = self._writes_back()
        if writes_back:  # before `verified`: a run that stops after it leaves the write-back open for replay
            self.audit.event(record.id, self.run_id, "write_back_pending", deal.document)
        result: PostingResult = engine.verify(plan, record, posted)
        outcome.document_number, outcome.outcome = result.number, result.outcome
        finished = [e for e in self.audit.history(record.id) if e["event"] == "finished" and e["run_id"] == self.run_id]
        outcome.posting = finished[-1]["detail"] if finished else None
        self.checkpoint("before_write_back")
        outcome.written_back = self.write_back(deal.document_set, deal.document_id, plan)  # raises: left open
        if writes_back:
            event = "write_back_refused" if "refused" in outcome.written_back else "written_back"
            self.audit.event(
                record.id, self.run_id, event, _describe(outcome.written_back) or "already on the Sales document"
            )
        return outcome

    def _refuse_a_second_order(self, deal: Deal, record: DocumentRecord) -> None:
        """A quote converted into a second order: both carry the quote's number, the deal's key. When BC already
        holds the document written from the other order, this one would be taken for it (already posted) and
        given its BC number in Sales: it is refused and named instead, and nothing is written."""
        if record.document_number is None or deal.document_set != ORDERS.entity_set:
            return
        mine = deal.document
        written_from = {
            line.source.origin.split(" ", 1)[0] for line in self.audit.plan(record).lines if line.source is not None
        }
        others = sorted(o for o in written_from if o.startswith(f"{ORDERS.entity_set}(") and o != mine)
        if others:
            problem = (
                f"order {deal.document_number} ({mine}) was made from quote {deal.key}, which is in BC as "
                f"{record.document_number} from {', '.join(others)}: a second order of one quote is not written "
                "(enter it in BC by hand, or make it from a quote of its own)"
            )
            raise PostingRefused(f"{BC}: {deal.key} was not written for order {deal.document_number}", [problem])

    def _refuse_taking_over_another_customer(self, deal: Deal, number: str) -> None:
        """BC numbers its own customers too: a Sales account numbered like an unrelated BC customer (10000, say)
        had that customer's name and address overwritten with its own, and the deal written to it. A BC customer
        found by the account's number is taken for the account only under the account's name, once synced from
        this account, or when `customers` maps the account to it; else nothing is written and both are named."""
        account = deal.account
        if mapped_customer(account, self.sync) or number != as_code(account.get("accountnumber")):
            return  # mapped by a person, or a number made from the account's id
        held = self.customers.current(number)
        if held is None or same_name(held.get("displayName"), account.get("name")):
            return
        if self.audit.verified_line_for(CUSTOMER_FLOW, f"accounts({account['accountid']}) ", number):
            return  # this account's customer, renamed in BC or in Sales since
        problem = (
            f"Sales account {account.get('name')!r} ({account['accountid']}) has account number {number}, the number "
            f"of BC customer {held.get('displayName')!r}, which no run made from it: map the account under "
            f"sales_to_business_central.customers (to {number} if they are one customer, else to its BC customer), "
            "or change its account number"
        )
        raise PostingRefused(
            f"{BC}: {deal.key} was not written: its customer is another BC customer's number", [problem]
        )

    def _refuse_customer_fields_bc_cannot_hold(self, deal: Deal) -> None:
        """A Sales value BC's customer field cannot hold (too long, a phone number with letters) is named with its
        Sales record and column before anything is written: BC refused it with the customer written half."""
        fields = customer_fields(deal, self.sync, terms=lambda code: code)  # the terms' id is not checked here
        problems = [
            f"{sales_value(deal, field)[1]}: {reason} — shorten or correct it in Sales, then replay"
            for field, reason in customer_field_problems(fields).items()
        ]
        if problems:
            raise PostingRefused(f"{BC}: {deal.key} was not written: its customer's fields do not fit BC", problems)

    def _customer(self, deal: Deal) -> str:
        fields = customer_fields(deal, self.sync, self.customers.payment_terms_id)
        source = SourceRow(
            query="dynamics_sales/accounts",
            origin=f"accounts({deal.account['accountid']})",
            run_id=self.run_id,
            window_start=None,
            row_number=1,
            values={k: v for k, v in deal.account.items() if not k.startswith("@")},
        )
        plan = records_plan(
            # One audit document per account version: a new version is compared with BC again.
            flow=CUSTOMER_FLOW, partition=f"accounts({deal.account['accountid']}) v{deal.account.get('versionnumber')}",
            system=BC,
            company=self.documents.company_id, entity="customer", key="number", rows=[(source, fields)],
        )  # fmt: skip
        synced = self.audit.find_document(plan.flow, plan.partition, plan.document_key)
        if synced is not None and synced.state == "verified":
            return "unchanged"  # this account version is in BC: only what changes in Sales is sent, not BC's edits
        result = RecordSync(self.customers, self.audit, run_id=self.run_id, progress=self.progress).run(plan)
        return "created" if result.inserted else "updated" if result.updated else "unchanged"

    def _post_now(self, deal: Deal, confirmed: bool) -> bool:
        if self.sync.document != "draft_invoice" or self.sync.post_invoices == "never":
            return False
        if self.sync.post_invoices == "confirmed":
            return confirmed
        return deal.document_set == ORDERS.entity_set and deal.document_state in (ORDER_FULFILLED, ORDER_INVOICED)

    def write_back(self, entity_set: str, record_id: str, plan: Plan) -> dict[str, Any]:
        """BC's numbers and status onto the Sales document, where they differ from what it holds.

        Sales keeps a closed order read-only (fulfilled, invoiced): then they go onto the order's active Sales
        invoice if it has one. What Sales refuses is returned under "refused", not raised: BC's side is done.
        """
        values = self._write_back_values(plan)
        if not values:
            return {}
        targets = [(entity_set, record_id)]
        if entity_set == ORDERS.entity_set:
            targets += [("invoices", str(i["invoiceid"])) for i in self.dataverse.rows(
                "invoices", filter=f"_salesorderid_value eq {guid_literal(record_id)} and statecode eq 0",
                select=["invoiceid"])]  # fmt: skip
        refusals = []
        for target_set, target_id in targets:
            held = self.dataverse.get(target_set, target_id, select=list(values)) or {}
            changes = {k: v for k, v in values.items() if held.get(k) != v}
            if not changes:
                return {}
            try:
                self.dataverse.patch(target_set, target_id, changes)
            except RequestFailedError as exc:
                if exc.status is None or exc.status >= 500 or exc.status in (401, 403, 429):
                    raise
                refusals.append(f"{target_set}({target_id}): {exc.server_message}")
                continue
            return {**changes, "written_to": f"{target_set}({target_id})"}
        self.progress(f"BC's numbers could not be written back to Sales: {'; '.join(refusals)}")
        return {"refused": "; ".join(refusals)}

    def carry_invoice_number(self, record: DocumentRecord) -> str | None:
        """For a synced deal: once BC has posted its invoice (an order shipped and invoiced there, or a draft
        invoice posted), its number goes onto the Sales document, once. None while BC has not invoiced it."""
        done = {"invoice_written_back", "invoice_write_back_refused"}
        if any(e["event"] in done for e in self.audit.history(record.id)):
            return None
        plan = self.audit.plan(record)
        found = self.documents.find(plan)
        if found is None or found.detail.get("entity_set") != "salesInvoices" or not found.posted:
            return None
        deal = self.reader.deal(*parse_partition(record.partition))
        result = self.write_back(deal.document_set, deal.document_id, plan)
        event = "invoice_write_back_refused" if "refused" in result else "invoice_written_back"
        detail = _describe(result) or "already on the Sales document"
        self.audit.event(record.id, self.run_id, event, detail)
        return f"{record.document_key}: {detail}"

    def _writes_back(self) -> bool:
        columns = self.sync.write_back
        return bool(columns.order_number or columns.invoice_number or columns.status)

    def _write_back_values(self, plan: Plan) -> dict[str, Any]:
        columns = self.sync.write_back
        if not self._writes_back():
            return {}
        found = self.documents.find(plan)
        if found is None:
            return {}
        values: dict[str, Any] = {}
        if columns.order_number:
            values[columns.order_number] = found.number
        if columns.invoice_number and found.detail.get("entity_set") == "salesInvoices" and found.posted:
            values[columns.invoice_number] = found.detail["number"]
        if columns.status:
            values[columns.status] = str(found.detail.get("status") or "")
        return values


def _describe(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())
