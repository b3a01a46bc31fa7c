"""A deal in Dynamics 365 Sales, read whole: which document carries its lines, its customer, its key in BC.

One deal (opportunity → quote → order) becomes one BC document, whichever of its records is seen
first and however often. Its key — written into BC's `externalDocumentNumber` (35 characters)
and found there before every create — is the quote's number when the deal has a quote (a quote
converted to an order keeps pointing at it through `_quoteid_value`), else the order's number.
A second order made from a quote already in BC through another order is refused, named (see
to_business_central). The lines come from the most advanced document: the order if there is one, else the quote.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ...core.errors import ConnectorError
from .client import DataverseClient, guid_literal

EXTERNAL_NUMBER_LENGTH = 35  # BC's externalDocumentNumber


@dataclass(frozen=True)
class SalesTable:
    entity_set: str
    key: str
    number: str | None  # the human number column (opportunities have none)
    lines: str | None  # the line table
    line_parent: str | None  # the lookup from a line to its header
    ready: frozenset[int]  # statecodes in which the record starts a BC document
    description: str


TRIGGER_TABLES = {
    "won_opportunities": SalesTable(
        "opportunities", "opportunityid", None, None, None, frozenset({1}), "opportunities won"
    ),
    "won_quotes": SalesTable(
        "quotes", "quoteid", "quotenumber", "quotedetails", "_quoteid_value", frozenset({2}), "quotes won"
    ),
    "orders": SalesTable(
        "salesorders",
        "salesorderid",
        "ordernumber",
        "salesorderdetails",
        "_salesorderid_value",
        frozenset({0, 1, 3, 4}),
        "orders (not cancelled)",
    ),  # fmt: skip
}
BY_SET = {t.entity_set: t for t in TRIGGER_TABLES.values()}
QUOTES, ORDERS = TRIGGER_TABLES["won_quotes"], TRIGGER_TABLES["orders"]
ORDER_CANCELLED, ORDER_FULFILLED, ORDER_INVOICED = 2, 3, 4

HEADER_COLUMNS = ["statecode", "versionnumber", "_customerid_value", "_opportunityid_value", "paymenttermscode",
                  "name", "emailaddress", "discountamount", "freightamount", "_transactioncurrencyid_value"]  # fmt: skip
LINE_COLUMNS = ["productnumber", "_productid_value", "productdescription", "productname", "quantity",
                "priceperunit", "manualdiscountamount", "volumediscountamount", "baseamount", "tax",
                "extendedamount", "sequencenumber", "lineitemnumber"]  # fmt: skip
ACCOUNT_COLUMNS = ["accountid", "name", "accountnumber", "emailaddress1", "telephone1", "websiteurl",
                   "address1_line1", "address1_line2", "address1_city", "address1_stateorprovince",
                   "address1_postalcode", "address1_country", "paymenttermscode", "_primarycontactid_value",
                   "statecode", "versionnumber"]  # fmt: skip


class DealNotReady(ConnectorError):
    """The record does not (yet) make a BC document: not won, cancelled, or nothing with lines yet."""


@dataclass(frozen=True)
class SalesLine:
    number: int  # 1-based, in the Sales document's line order
    line_id: str
    product_number: str | None
    product_id: str | None
    description: str
    quantity: Decimal
    unit_price: Decimal
    discount: Decimal
    values: dict[str, Any]  # the line as Sales holds it (for the audit trail)


@dataclass(frozen=True)
class Deal:
    key: str  # BC externalDocumentNumber
    root_id: str  # the Sales record whose number is the key
    root_set: str
    document_set: str  # the Sales record whose lines these are (an order or a quote)
    lines_set: str  # and the table of those lines
    document_id: str
    document_number: str
    document_state: int
    account: dict[str, Any]
    primary_contact: dict[str, Any] | None
    lines: tuple[SalesLine, ...]
    trigger: tuple[str, str, int]  # (entity set, id, versionnumber) of the record that started this read
    # The document's own discount and freight, on top of its lines: not carried into BC (see document_plan)
    header_discount: Decimal = Decimal(0)
    freight: Decimal = Decimal(0)
    # The document's currency (ISO code, as Sales' transactioncurrency names it); None when it names none
    currency: str | None = None

    @property
    def document(self) -> str:
        """The Sales record whose lines these are, as the audit trail names it: `salesorders(<guid>)`."""
        return f"{self.document_set}({self.document_id})"


def line_discount(line: dict) -> Decimal:
    """All a Sales line takes off its price × quantity: the discount a person gave and the price list's volume
    discount. Read from Sales' own amounts (base + tax − extended) where it computed them, which holds however
    it counts the volume discount (once for the line, or per unit as one description in its docs reads);
    else the two discounts as written."""

    def amount(name: str) -> Decimal | None:
        return Decimal(str(line[name])) if line.get(name) is not None else None

    base, extended = amount("baseamount"), amount("extendedamount")
    if base is not None and extended is not None:
        return base + (amount("tax") or Decimal(0)) - extended
    return (amount("manualdiscountamount") or Decimal(0)) + (amount("volumediscountamount") or Decimal(0))


def parse_partition(partition: str) -> tuple[str, str]:
    """`quotes(<guid>)` → ("quotes", "<guid>"): a deal's root record, as the audit store keeps it."""
    entity_set, _, rest = partition.partition("(")
    return entity_set, rest.rstrip(")")


def trigger_version(row: dict[str, Any]) -> int:
    return int(row.get("versionnumber") or 0)


class SalesReader:
    """Reads deals through a DataverseClient; every read is a GET."""

    def __init__(self, client: DataverseClient):
        self.client = client

    def deal(self, entity_set: str, record_id: str) -> Deal:
        table = BY_SET.get(entity_set)
        if table is None:
            raise ConnectorError(f"{entity_set} does not start BC documents (use one of {', '.join(BY_SET)})")
        row = self._get(table, record_id)
        version = trigger_version(row)
        if int(row.get("statecode") or 0) not in table.ready:
            raise DealNotReady(
                f"{entity_set}({record_id}) is not {table.description} (statecode {row.get('statecode')})"
            )
        if table is ORDERS:
            order, quote = row, self._quote_of(row)
        elif table is QUOTES:
            quote, order = row, self._single_order(f"_quoteid_value eq {guid_literal(record_id)}")
        else:  # a won opportunity: its order, else its won quote
            order = self._single_order(f"_opportunityid_value eq {guid_literal(record_id)}")
            quote = self._quote_of(order) if order else self._single_won_quote(record_id)
            if order is None and quote is None:
                raise DealNotReady(
                    f"opportunity {record_id} is won but has no won quote or order yet: nothing to put in BC"
                )
        root, root_table = (quote, QUOTES) if quote is not None else (order, ORDERS)
        document, document_table = (order, ORDERS) if order is not None else (quote, QUOTES)
        key = str(root.get(root_table.number) or "")
        if not key:
            raise ConnectorError(f"{root_table.entity_set}({root[root_table.key]}) has no {root_table.number}")
        if len(key) > EXTERNAL_NUMBER_LENGTH:
            raise ConnectorError(
                f"{root_table.number} {key!r} is longer than BC's externalDocumentNumber ({EXTERNAL_NUMBER_LENGTH})"
            )
        account = self._account(document)
        contact_id = account.get("_primarycontactid_value")
        contact = self.client.get("contacts", contact_id, select=["emailaddress1", "telephone1", "fullname"]) if (
            contact_id and not (account.get("emailaddress1") and account.get("telephone1"))
        ) else None  # fmt: skip
        return Deal(
            key=key,
            root_id=str(root[root_table.key]),
            root_set=root_table.entity_set,
            document_set=document_table.entity_set,
            lines_set=document_table.lines,
            document_id=str(document[document_table.key]),
            document_number=str(document.get(document_table.number) or ""),
            document_state=int(document.get("statecode") or 0),
            account=account,
            primary_contact=contact,
            lines=self._lines(document_table, str(document[document_table.key])),
            trigger=(entity_set, str(record_id), version),
            header_discount=Decimal(str(document.get("discountamount") or 0)),
            freight=Decimal(str(document.get("freightamount") or 0)),
            currency=self._currency(document),
        )

    # -- reads -------------------------------------------------------------------------------------

    def _get(self, table: SalesTable, record_id: str) -> dict:
        columns = [table.key, *HEADER_COLUMNS] + ([table.number] if table.number else [])
        if table is ORDERS:
            columns.append("_quoteid_value")
        if table is TRIGGER_TABLES["won_opportunities"]:
            columns = [c for c in columns if c not in ("_opportunityid_value", "paymenttermscode", "emailaddress",
                                                       "freightamount")]  # fmt: skip
        row = self.client.get(table.entity_set, record_id, select=columns)
        if row is None:
            raise DealNotReady(f"{table.entity_set}({record_id}) no longer exists in Sales")
        return row

    def _quote_of(self, order: dict | None) -> dict | None:
        quote_id = order.get("_quoteid_value") if order else None
        return self._get(QUOTES, quote_id) if quote_id else None

    def _single_order(self, condition: str) -> dict | None:
        orders = self.client.rows(
            ORDERS.entity_set,
            filter=f"{condition} and statecode ne {ORDER_CANCELLED}",
            select=[ORDERS.key, ORDERS.number, "_quoteid_value", *HEADER_COLUMNS],
        )
        if len(orders) > 1:
            raise DealNotReady(
                f"{len(orders)} orders match ({condition}): each becomes its own BC document when it is seen"
            )
        return orders[0] if orders else None

    def _single_won_quote(self, opportunity_id: str) -> dict | None:
        quotes = self.client.rows(
            QUOTES.entity_set,
            filter=f"_opportunityid_value eq {guid_literal(opportunity_id)} and statecode eq 2",
            select=[QUOTES.key, QUOTES.number, *HEADER_COLUMNS],
        )
        if len(quotes) > 1:
            raise DealNotReady(f"opportunity {opportunity_id} has {len(quotes)} won quotes: each is its own document")
        return quotes[0] if quotes else None

    def _currency(self, document: dict) -> str | None:
        """The ISO code of the document's currency: its amounts are in it, whatever the customer's currency."""
        currency_id = document.get("_transactioncurrencyid_value")
        if not currency_id:
            return None
        currency = self.client.get("transactioncurrencies", currency_id, select=["isocurrencycode"])
        code = str((currency or {}).get("isocurrencycode") or "").strip().upper()
        if not code:
            raise ConnectorError(
                f"the currency {currency_id} of the Sales document could not be read (or has no ISO code): its "
                "amounts cannot go to BC without it (give the app user read access to Currency)"
            )
        return code

    def _account(self, document: dict) -> dict:
        """The BC customer's source: the document's account, or the account of the contact it names."""
        customer_id = document.get("_customerid_value")
        if not customer_id:
            raise ConnectorError("the Sales document names no customer")
        account = self.client.get("accounts", customer_id, select=ACCOUNT_COLUMNS)
        if account is not None:
            return account
        contact = self.client.get("contacts", customer_id, select=["fullname", "_parentcustomerid_value"])
        if contact is None:
            raise ConnectorError(
                f"the Sales customer {customer_id} is neither an account nor a contact Sales still holds (deleted, or "
                "not readable by the app user): set the document's customer to an existing account"
            )
        parent = contact.get("_parentcustomerid_value")
        account = self.client.get("accounts", parent, select=ACCOUNT_COLUMNS) if parent else None
        if account is None:
            raise ConnectorError(
                f"the Sales customer {customer_id} is a contact without an account: BC customers are made from "
                "accounts (set the contact's company, or the document's customer to an account)"
            )
        return account

    def _lines(self, table: SalesTable, document_id: str) -> tuple[SalesLine, ...]:
        rows = self.client.rows(
            table.lines,
            filter=f"{table.line_parent} eq {guid_literal(document_id)}",
            select=[f"{table.lines[:-1]}id", *LINE_COLUMNS],
        )
        line_key = f"{table.lines[:-1]}id"  # quotedetailid, salesorderdetailid
        rows.sort(key=lambda r: (r.get("sequencenumber") or 0, r.get("lineitemnumber") or 0, str(r[line_key])))
        numbers = self._product_numbers({str(r["_productid_value"]) for r in rows if r.get("_productid_value")
                                         and not r.get("productnumber")})  # fmt: skip
        return tuple(
            SalesLine(
                number=n,
                line_id=str(r[line_key]),
                product_number=str(r.get("productnumber") or numbers.get(str(r.get("_productid_value"))) or "") or None,
                product_id=(str(r["_productid_value"]) if r.get("_productid_value") else None),
                description=str(r.get("productdescription") or r.get("productname") or ""),
                quantity=Decimal(str(r.get("quantity") or 0)),
                unit_price=Decimal(str(r.get("priceperunit") or 0)),
                discount=line_discount(r),
                values={k: v for k, v in r.items() if not k.startswith("@")},
            )
            for n, r in enumerate(rows, start=1)
        )

    def _product_numbers(self, product_ids: set[str]) -> dict[str, str]:
        """productnumber of catalogue products, for lines that do not carry it themselves."""
        found = {}
        for product_id in sorted(product_ids):
            product = self.client.get("products", product_id, select=["productnumber"])
            if product and product.get("productnumber"):
                found[product_id] = str(product["productnumber"])
        return found
