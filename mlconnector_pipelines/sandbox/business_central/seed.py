"""Deterministic, realistic Business Central data (fields per the BC API v2.0 entity spec).

Timestamps are shaped on purpose: a posted document writes all its G/L entries with one
lastModifiedDateTime, and each day opens with a posting batch stamped exactly at midnight,
so rows that share a timestamp straddle page and window boundaries as they do in real tenants.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

BLANK = "_x0020_"  # schemaversion 2.0 encodes the blank enum member " " like this
# Amounts a binary double cannot hold (17+ significant digits, 9 decimals), posted as one balanced
# document per company, so a client that parses amounts as floats loses digits on real data shapes.
HARD_AMOUNTS = (
    Decimal("12345678901.234567891"),
    Decimal("1000000000000000.01"),
    Decimal("0.000000001"),
    Decimal("1234.567891"),
)
SIX_DECIMAL_PRICE = Decimal("1234.567891")


def guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def iso_ms(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Volumes:
    vendors: int = 25
    customers: int = 40
    items: int = 30
    gl_entries: int = 1500
    purchase_invoices: int = 60
    sales_invoices: int = 80
    sales_orders: int = 40


@dataclass
class CompanyData:
    id: str
    name: str
    display_name: str
    created_at: str
    # entity set -> list of records (each a dict of spec fields)
    entities: dict[str, list[dict]] = field(default_factory=dict)
    # entity set -> parent id -> line records (the contained lines navigation)
    lines: dict[str, dict[str, list[dict]]] = field(default_factory=dict)
    # G/L entry id -> [(dimension index, value index)] for the dimensionSetLines navigation
    gl_dimension_sets: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    _dimension_lookup: list[list[tuple[dict, dict]]] | None = None

    def dimension_lookup(self) -> list[list[tuple[dict, dict]]]:
        """[dimension index][value index] -> (dimension, value); built once, used per expanded entry."""
        if self._dimension_lookup is None:
            values = self.entities["dimensionValues"]
            self._dimension_lookup = [
                [(dim, v) for v in values if v["dimensionId"] == dim["id"]] for dim in self.entities["dimensions"]
            ]
        return self._dimension_lookup


CHART = [
    # number, name, category, subCategory, accountType
    ("10000", "BALANCE SHEET", "Assets", "", "Heading"),
    ("10100", "Checking account", "Assets", "Cash", "Posting"),
    ("10200", "Saving account", "Assets", "Cash", "Posting"),
    ("10400", "Accounts Receivable", "Assets", "Accounts Receivable", "Posting"),
    ("12200", "Inventory", "Assets", "Inventory", "Posting"),
    ("12900", "Prepaid expenses", "Assets", "Prepaid Expenses", "Posting"),
    ("13100", "Equipment", "Assets", "Equipment", "Posting"),
    ("19990", "Total Assets", "Assets", "", "End-Total"),
    ("20100", "Accounts Payable", "Liabilities", "Current Liabilities", "Posting"),
    ("20300", "Sales tax payable", "Liabilities", "Current Liabilities", "Posting"),
    ("20600", "Accrued payroll", "Liabilities", "Payroll Liabilities", "Posting"),
    ("29990", "Total Liabilities", "Liabilities", "", "End-Total"),
    ("30100", "Common stock", "Equity", "Common Stock", "Posting"),
    ("30300", "Retained earnings", "Equity", "Retained Earnings", "Posting"),
    ("40000", "INCOME STATEMENT", "Income", "", "Heading"),
    ("40100", "Income, Services", "Income", "Income, Services", "Posting"),
    ("40200", "Income, Product Sales", "Income", "Income, Product Sales", "Posting"),
    ("40300", "Sales Discounts", "Income", "Income, Product Sales", "Posting"),
    ("40400", "Interest income", "Income", "Interest Income", "Posting"),
    ("50100", "Cost of materials", "Cost of Goods Sold", "Cost of Goods", "Posting"),
    ("50200", "Cost of labor", "Cost of Goods Sold", "Cost of Labor", "Posting"),
    ("50300", "Freight in", "Cost of Goods Sold", "Cost of Goods", "Posting"),
    ("60100", "Rent expense", "Expense", "Rent Expense", "Posting"),
    ("60200", "Utilities", "Expense", "Utilities Expense", "Posting"),
    ("60300", "Travel expense", "Expense", "Travel Expense", "Posting"),
    ("60400", "Software subscriptions", "Expense", "Other Expenses", "Posting"),
    ("60500", "Marketing", "Expense", "Advertising Expense", "Posting"),
    ("60600", "Salaries", "Expense", "Payroll Expense", "Posting"),
    ("60700", "Bank fees", "Expense", "Other Expenses", "Posting"),
    ("69990", "Total Expenses", "Expense", "", "End-Total"),
]

DIMENSIONS = [
    ("DEPARTMENT", "Department", ["ADM", "PROD", "SALES", "FIN", "IT"]),
    ("PROJECT", "Project", ["TOYOTA", "VW", "MERCEDES", "INTERNAL"]),
    ("AREA", "Area", ["NORTH", "SOUTH", "EAST", "WEST", "EXPORT"]),
]

CITIES = [
    ("Atlanta", "GA", "30301", "US"),
    ("Chicago", "IL", "60601", "US"),
    ("Miami", "FL", "33101", "US"),
    ("Seattle", "WA", "98101", "US"),
    ("Toronto", "ON", "M5H 2N2", "CA"),
    ("Vancouver", "BC", "V5K 0A1", "CA"),
    ("Denver", "CO", "80201", "US"),
    ("Boston", "MA", "02101", "US"),
]
NAMES = [
    "Adatum",
    "Trey Research",
    "Alpine Ski House",
    "Relecloud",
    "Coho Winery",
    "Fabrikam",
    "Litware",
    "Wide World Importers",
    "Northwind Traders",
    "Contoso",
    "Tailspin Toys",
    "Woodgrove Bank",
    "Proseware",
    "Lucerne Publishing",
    "Graphic Design Institute",
    "School of Fine Art",
    "Margie's Travel",
]
PRODUCTS = [
    "ATHENS Desk",
    "PARIS Guest Chair",
    "ROME Guest Chair",
    "TOKYO Guest Chair",
    "MEXICO Swivel Chair",
    "MUNICH Swivel Chair",
    "AMSTERDAM Lamp",
    "BERLIN Guest Chair",
    "LONDON Swivel Chair",
    "SYDNEY Swivel Chair",
]


class _Clock:
    """Spreads modification timestamps over the history and shapes shared-timestamp batches."""

    def __init__(self, rng: random.Random, start: datetime, end: datetime):
        self.rng, self.start, self.end = rng, start, end
        self.span_ms = int((end - start).total_seconds() * 1000)

    def random_moment(self) -> datetime:
        return self.start + timedelta(milliseconds=self.rng.randrange(self.span_ms))

    def midnights(self) -> list[datetime]:
        day = self.start.replace(hour=0, minute=0, second=0, microsecond=0)
        if day < self.start:
            day += timedelta(days=1)
        result = []
        while day < self.end:
            result.append(day)
            day += timedelta(days=1)
        return result


def generate_company(index: int, *, seed: int, start: datetime, end: datetime, volumes: Volumes) -> CompanyData:
    rng = random.Random(seed * 1000 + index)
    clock = _Clock(rng, start, end)
    names = [
        ("CRONUS USA, Inc.", "CRONUS USA, Inc."),
        ("CRONUS Canada, Inc.", "CRONUS Canada, Inc."),
        ("CRONUS UK Ltd.", "CRONUS UK Ltd."),
    ]
    name, display = names[index % len(names)] if index < len(names) else (f"CRONUS {index}", f"CRONUS {index}")
    company = CompanyData(id=guid(rng), name=name, display_name=display, created_at=iso_ms(start - timedelta(days=400)))
    currency = "CAD" if "Canada" in name else "USD"

    accounts = []
    for number, account_name, category, sub, kind in CHART:
        accounts.append(
            {
                "id": guid(rng),
                "number": number,
                "displayName": account_name,
                "category": category,
                "subCategory": sub,
                "blocked": False,
                "accountType": kind,
                "directPosting": kind == "Posting",
                "netChange": 0.0,
                "consolidationTranslationMethod": "Average Rate (Manual)" if kind == "Posting" else "",
                "consolidationDebitAccount": "",
                "consolidationCreditAccount": "",
                "excludeFromConsolidation": False,
                "lastModifiedDateTime": iso_ms(clock.random_moment()),
            }
        )
    posting_accounts = [a for a in accounts if a["accountType"] == "Posting"]
    company.entities["accounts"] = accounts

    dimensions, dimension_values = [], []
    for code, display_name, values in DIMENSIONS:
        dim = {
            "id": guid(rng),
            "code": code,
            "displayName": display_name,
            "consolidationCode": "",
            "lastModifiedDateTime": iso_ms(clock.random_moment()),
        }
        dimensions.append(dim)
        for value in values:
            dimension_values.append(
                {
                    "id": guid(rng),
                    "code": value,
                    "dimensionId": dim["id"],
                    "displayName": value.title(),
                    "consolidationCode": "",
                    "lastModifiedDateTime": iso_ms(clock.random_moment()),
                }
            )
    company.entities["dimensions"] = dimensions
    company.entities["dimensionValues"] = dimension_values

    def party(number_prefix: str, i: int) -> dict:
        city, state, postal, country = rng.choice(CITIES)
        base = rng.choice(NAMES)
        return {
            "id": guid(rng),
            "number": f"{number_prefix}{10000 + i * 10}",
            "displayName": f"{base} {['Corp', 'Ltd.', 'Inc.', 'LLC', 'Group'][i % 5]} {i}",
            "addressLine1": f"{rng.randint(1, 999)} {rng.choice(['Main', 'Oak', 'Pine', 'Lake'])} Street",
            "addressLine2": "",
            "city": city,
            "state": state,
            "country": country,
            "postalCode": postal,
            "phoneNumber": f"+1 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
            "email": f"ap{i}@{base.lower().replace(' ', '').replace(chr(39), '')}.example",
            "website": "",
            "taxRegistrationNumber": "",
            "currencyId": "00000000-0000-0000-0000-000000000000",
            "currencyCode": currency,
            "paymentTermsId": guid(rng),
            "paymentMethodId": guid(rng),
            "taxLiable": rng.random() < 0.6,
        }

    vendors = []
    for i in range(volumes.vendors):
        v = party("V", i)
        v.update(
            {
                "irs1099Code": "",
                "blocked": BLANK,
                "balance": round(rng.uniform(0, 50000), 2),
                "lastModifiedDateTime": iso_ms(clock.random_moment()),
            }
        )
        vendors.append(v)
    company.entities["vendors"] = vendors

    customers = []
    for i in range(volumes.customers):
        c = party("C", i)
        c.update(
            {
                "type": "Company" if i % 7 else "Person",
                "salespersonCode": rng.choice(["JO", "PS", "BD"]),
                "balanceDue": round(rng.uniform(0, 80000), 2),
                "creditLimit": float(rng.choice([0, 10000, 50000])),
                "taxAreaId": guid(rng),
                "taxAreaDisplayName": "",
                "shipmentMethodId": guid(rng),
                "blocked": BLANK,
                "lastModifiedDateTime": iso_ms(clock.random_moment()),
            }
        )
        # field order as in the spec
        customers.append({k: c[k] for k in CUSTOMER_FIELDS})
    company.entities["customers"] = customers

    items = []
    for i in range(volumes.items):
        cost = round(rng.uniform(5, 900), 2)
        items.append(
            {
                "id": guid(rng),
                "number": f"{1000 + i}-S",
                "displayName": f"{rng.choice(PRODUCTS)} {i}",
                "displayName2": "",
                "type": "Inventory" if i % 5 else "Service",
                "itemCategoryId": guid(rng),
                "itemCategoryCode": rng.choice(["CHAIR", "DESK", "LAMP"]),
                "blocked": False,
                "gtin": "",
                "inventory": float(rng.randint(0, 500)),
                "unitPrice": round(cost * 1.4, 2),
                "priceIncludesTax": False,
                "unitCost": cost,
                "taxGroupId": guid(rng),
                "taxGroupCode": "FURNITURE",
                "baseUnitOfMeasureId": guid(rng),
                "baseUnitOfMeasureCode": "PCS",
                "generalProductPostingGroupId": guid(rng),
                "generalProductPostingGroupCode": "RETAIL",
                "inventoryPostingGroupId": guid(rng),
                "inventoryPostingGroupCode": "RESALE",
                "lastModifiedDateTime": iso_ms(clock.random_moment()),
            }
        )
    company.entities["items"] = items

    company.entities["generalLedgerEntries"] = _gl_entries(rng, clock, volumes.gl_entries, posting_accounts, company)

    company.entities["purchaseInvoices"], company.lines["purchaseInvoices"] = _documents(
        rng, clock, volumes.purchase_invoices, "purchaseInvoices", vendors, items, posting_accounts, currency
    )
    company.entities["salesInvoices"], company.lines["salesInvoices"] = _documents(
        rng, clock, volumes.sales_invoices, "salesInvoices", customers, items, posting_accounts, currency
    )
    company.entities["salesOrders"], company.lines["salesOrders"] = _documents(
        rng, clock, volumes.sales_orders, "salesOrders", customers, items, posting_accounts, currency
    )
    # After every draw of `rng`, from a generator of their own: adding payment terms left every other
    # seeded value as it was before they existed.
    terms = payment_terms(random.Random(f"{seed}-{index}-paymentTerms"), start)
    company.entities["paymentTerms"] = terms
    for i, party_record in enumerate(customers + vendors):
        party_record["paymentTermsId"] = terms[TERMS_BY_PARTY[i % len(TERMS_BY_PARTY)]]["id"]
    money = random.Random(f"{seed}-{index}-currencies")  # likewise
    company.entities["currencies"] = currencies(money, start, local=currency)
    company.entities["companyInformation"] = [company_information(money, company, start, local=currency)]
    return company


# The companies' Post Code table (Post Codes page): code, city, county (the API's `state`), country/region.
# A customer's post code found here gives it the table's city, county and country (models.py).
POST_CODES = (
    ("02108", "Boston", "MA", "US"),
    ("30303", "Atlanta", "GA", "US"),
    ("33101", "Miami", "FL", "US"),
    ("60601", "Chicago", "IL", "US"),
    ("73301", "Austin", "TX", "US"),
    ("80202", "Denver", "CO", "US"),
    ("97201", "Portland", "OR", "US"),
    ("98101", "Seattle", "WA", "US"),
)


# Currencies a company has set up besides its local one (BC's Currencies table never holds the LCY):
# code, name, symbol, amount decimal places, amount rounding precision (CRONUS's).
CURRENCIES = (
    ("CAD", "Canadian dollar", "$", "2:2", "0.01"),
    ("EUR", "Euro", "€", "2:2", "0.01"),
    ("GBP", "British pound", "£", "2:2", "0.01"),
    ("JPY", "Japanese yen", "¥", "0:0", "1"),
    ("USD", "US dollar", "$", "2:2", "0.01"),
)


def currencies(rng: random.Random, start: datetime, *, local: str) -> list[dict]:
    stamp = iso_ms(start - timedelta(days=365))
    return [
        {
            "id": guid(rng),
            "code": code,
            "displayName": name,
            "symbol": symbol,
            "amountDecimalPlaces": places,
            "amountRoundingPrecision": Decimal(precision),
            "lastModifiedDateTime": stamp,
        }
        for code, name, symbol, places, precision in CURRENCIES
        if code != local
    ]


def company_information(rng: random.Random, company: CompanyData, start: datetime, *, local: str) -> dict:
    """The company's one companyInformation record; `currencyCode` is General Ledger Setup's LCY Code."""
    return {
        "id": guid(rng),
        "displayName": company.display_name,
        "currencyCode": local,
        "currentFiscalYearStartDate": f"{start.year}-01-01",
        "lastModifiedDateTime": iso_ms(start - timedelta(days=365)),
    }


# CRONUS's payment terms (code, name, due date formula, discount date formula, discount %). The docs'
# example of GET paymentTerms shows "10 DAYS" / "Net 10 days" / "10D"; the others follow CRONUS.
PAYMENT_TERMS = (
    ("10 DAYS", "Net 10 days", "10D", "", 0),
    ("14 DAYS", "Net 14 days", "14D", "", 0),
    ("1M(8D)", "1 Month/2% 8 days", "1M", "8D", 2),
    ("21 DAYS", "Net 21 days", "21D", "", 0),
    ("30 DAYS", "Net 30 days", "30D", "", 0),
    ("60 DAYS", "Net 60 days", "60D", "", 0),
    ("7 DAYS", "Net 7 days", "7D", "", 0),
    ("CM", "Current Month", "CM", "", 0),
    ("COD", "Cash on delivery", "0D", "", 0),
)
# Which terms the n-th customer (then vendor) gets: mostly 30 DAYS, as CRONUS's customers have.
TERMS_BY_PARTY = (4, 4, 1, 7, 4, 2, 0, 4, 8, 5)


def payment_terms(rng: random.Random, start: datetime) -> list[dict]:
    stamp = iso_ms(start - timedelta(days=365))  # set up with the company, long before the history
    return [
        {
            "id": guid(rng),
            "code": code,
            "displayName": name,
            "dueDateCalculation": due,
            "discountDateCalculation": discount_date,
            "discountPercent": Decimal(percent),
            "calculateDiscountOnCreditMemos": False,
            "lastModifiedDateTime": stamp,
        }
        for code, name, due, discount_date, percent in PAYMENT_TERMS
    ]


CUSTOMER_FIELDS = [
    "id",
    "number",
    "displayName",
    "type",
    "addressLine1",
    "addressLine2",
    "city",
    "state",
    "country",
    "postalCode",
    "phoneNumber",
    "email",
    "website",
    "salespersonCode",
    "balanceDue",
    "creditLimit",
    "taxLiable",
    "taxAreaId",
    "taxAreaDisplayName",
    "taxRegistrationNumber",
    "currencyId",
    "currencyCode",
    "paymentTermsId",
    "shipmentMethodId",
    "paymentMethodId",
    "blocked",
    "lastModifiedDateTime",
]


def _gl_entries(rng, clock: _Clock, count: int, accounts: list[dict], company: CompanyData) -> list[dict]:
    """Balanced postings: each document writes 2–6 entries with one timestamp."""
    midnights = clock.midnights()
    entries: list[dict] = []
    number = 0
    document = 0
    value_counts = [len(values) for _, _, values in DIMENSIONS]
    while len(entries) < count:
        document += 1
        # One batch a day lands exactly on midnight and one is large: both stress boundaries.
        if document <= len(midnights):
            moment, size = midnights[document - 1], 6
        elif document % 89 == 5:
            moment, size = clock.random_moment(), 25
        else:
            moment, size = clock.random_moment(), rng.randint(2, 6)
        size = min(size, count - len(entries))
        if size < 2:
            size = 1
        stamp = iso_ms(moment)
        posting_date = moment.date().isoformat()
        doc_type = rng.choice(["Invoice", "Payment", "Invoice", BLANK, "Credit_x0020_Memo"])
        doc_no = f"G{document:08d}"
        amounts = [round(rng.uniform(10, 5000), 2) for _ in range(max(1, size - 1))]
        lines = [(a, 0.0) for a in amounts]
        if size > 1:
            lines.append((0.0, round(sum(amounts), 2)))
        if document == len(midnights) + 1:  # the first ordinary posting: the amounts no double holds
            lines, size = (
                [(a, Decimal(0)) for a in HARD_AMOUNTS] + [(Decimal(0), sum(HARD_AMOUNTS))],
                len(HARD_AMOUNTS) + 1,
            )
        for debit, credit in lines[:size]:
            number += 1
            account = accounts[rng.randrange(len(accounts))]
            entry_id = guid(rng)
            entries.append(
                {
                    "id": entry_id,
                    "entryNumber": number,
                    "postingDate": posting_date,
                    "documentNumber": doc_no,
                    "documentType": doc_type,
                    "accountId": account["id"],
                    "accountNumber": account["number"],
                    "description": f"{DOCUMENT_TYPE_TEXT[doc_type]} {doc_no}",
                    "debitAmount": debit,
                    "creditAmount": credit,
                    "additionalCurrencyDebitAmount": 0.0,
                    "additionalCurrencyCreditAmount": 0.0,
                    "lastModifiedDateTime": stamp,
                }
            )
            company.gl_dimension_sets[entry_id] = tuple(
                (d, (number * (d + 3)) % value_counts[d]) for d in range(len(DIMENSIONS)) if (number + d) % 4
            )
    return entries


DOCUMENT_TYPE_TEXT = {
    "Invoice": "Invoice",
    "Payment": "Payment",
    BLANK: "General journal",
    "Credit_x0020_Memo": "Credit memo",
}

LINE_ENTITY = {
    "purchaseInvoices": "purchaseInvoiceLines",
    "salesInvoices": "salesInvoiceLines",
    "salesOrders": "salesOrderLines",
}


def _documents(
    rng,
    clock: _Clock,
    count: int,
    entity_set: str,
    parties: list[dict],
    items: list[dict],
    accounts: list[dict],
    currency: str,
) -> tuple[list[dict], dict[str, list[dict]]]:
    headers: list[dict] = []
    lines_by_doc: dict[str, list[dict]] = {}
    prefix = {"purchaseInvoices": "PI", "salesInvoices": "SI", "salesOrders": "SO"}[entity_set]
    for i in range(count):
        moment = clock.random_moment()
        party = parties[rng.randrange(len(parties))] if parties else None
        doc_id = guid(rng)
        doc_date = (moment - timedelta(days=rng.randint(0, 5))).date()
        lines = []
        for seq in range(1, rng.randint(1, 5) + 1):
            item = items[rng.randrange(len(items))] if items else None
            qty = float(rng.randint(1, 20))
            price = item["unitPrice"] if item else 100.0
            net = round(qty * price, 2)
            tax = round(net * 0.08, 2)
            if i == 0 and seq == 1:  # a six-decimal unit price, as BC allows: exact products, no rounding
                qty, price = Decimal(3), SIX_DECIMAL_PRICE
                net = qty * price
                tax = net * Decimal("0.08")
            line = {
                "id": guid(rng),
                "documentId": doc_id,
                "sequence": seq * 10000,
                "itemId": item["id"] if item else None,
                "accountId": "00000000-0000-0000-0000-000000000000",
                "lineType": "Item",
                "lineObjectNumber": item["number"] if item else "",
                "description": item["displayName"] if item else "Service",
                "description2": "",
                "unitOfMeasureId": guid(rng),
                "unitOfMeasureCode": "PCS",
            }
            if entity_set == "purchaseInvoices":
                line.update({"unitCost": item["unitCost"] if item else 80.0, "quantity": qty})
            else:
                line.update({"quantity": qty, "unitPrice": price})
            line.update(
                {
                    "discountAmount": 0.0,
                    "discountPercent": 0.0,
                    "discountAppliedBeforeTax": False,
                    "amountExcludingTax": net,
                    "taxCode": "FURNITURE",
                    "taxPercent": 8.0,
                    "totalTaxAmount": tax,
                    "amountIncludingTax": round(net + tax, 2),
                    "invoiceDiscountAllocation": 0.0,
                    "netAmount": net,
                    "netTaxAmount": tax,
                    "netAmountIncludingTax": round(net + tax, 2),
                }
            )
            if entity_set == "purchaseInvoices":
                line["expectedReceiptDate"] = (doc_date + timedelta(days=7)).isoformat()
            else:
                line["shipmentDate"] = (doc_date + timedelta(days=3)).isoformat()
            if entity_set == "salesOrders":
                line.update(
                    {"shippedQuantity": 0.0, "invoicedQuantity": 0.0, "invoiceQuantity": qty, "shipQuantity": qty}
                )
            line.update(
                {
                    "itemVariantId": "00000000-0000-0000-0000-000000000000",
                    "locationId": "00000000-0000-0000-0000-000000000000",
                }
            )
            lines.append(line)
        lines_by_doc[doc_id] = lines
        if i == 0:  # the document with the exact line: exact totals too
            total_ex = sum(Decimal(str(line["netAmount"])) for line in lines)
            total_tax = sum(Decimal(str(line["netTaxAmount"])) for line in lines)
        else:
            total_ex = round(sum(line["netAmount"] for line in lines), 2)
            total_tax = round(sum(line["netTaxAmount"] for line in lines), 2)
        headers.append(
            _document_header(
                entity_set, rng, i, prefix, doc_id, doc_date, party, currency, total_ex, total_tax, iso_ms(moment)
            )
        )
    return headers, lines_by_doc


def _document_header(entity_set, rng, i, prefix, doc_id, doc_date: date, party, currency, total_ex, total_tax, stamp):
    p = party or {}
    addr = {
        "AddressLine1": p.get("addressLine1", ""),
        "AddressLine2": "",
        "City": p.get("city", ""),
        "Country": p.get("country", ""),
        "State": p.get("state", ""),
        "PostCode": p.get("postalCode", ""),
    }
    due = (doc_date + timedelta(days=30)).isoformat()
    if entity_set == "purchaseInvoices":
        record = {
            "id": doc_id,
            "number": f"{prefix}{100000 + i}",
            "postingDate": doc_date.isoformat(),
            "invoiceDate": doc_date.isoformat(),
            "dueDate": due,
            "vendorInvoiceNumber": f"VINV-{rng.randint(1000, 99999)}",
            "vendorId": p.get("id"),
            "vendorNumber": p.get("number"),
            "vendorName": p.get("displayName"),
            "payToName": p.get("displayName"),
            "payToContact": "",
            "payToVendorId": p.get("id"),
            "payToVendorNumber": p.get("number"),
            "shipToName": "",
            "shipToContact": "",
        }
        for role in ("buyFrom", "shipTo", "payTo"):
            for suffix, value in addr.items():
                record[f"{role}{suffix}"] = value if role != "shipTo" else ""
        record.update(
            {
                "shortcutDimension1Code": rng.choice(["ADM", "PROD", "SALES"]),
                "shortcutDimension2Code": "",
                "currencyId": "00000000-0000-0000-0000-000000000000",
                "currencyCode": currency,
                "orderId": None,
                "orderNumber": "",
                "purchaser": "",
                "pricesIncludeTax": False,
                "discountAmount": 0.0,
                "discountAppliedBeforeTax": False,
                "totalAmountExcludingTax": total_ex,
                "totalTaxAmount": total_tax,
                "totalAmountIncludingTax": round(total_ex + total_tax, 2),
                "status": rng.choice(["Draft", "Open", "Paid"]),
                "lastModifiedDateTime": stamp,
            }
        )
        return record
    record = {"id": doc_id, "number": f"{prefix}{100000 + i}", "externalDocumentNumber": ""}
    if entity_set == "salesInvoices":
        record.update(
            {
                "invoiceDate": doc_date.isoformat(),
                "postingDate": doc_date.isoformat(),
                "dueDate": due,
                "promisedPayDate": None,
                "customerPurchaseOrderReference": "",
            }
        )
    else:
        record.update({"orderDate": doc_date.isoformat(), "postingDate": doc_date.isoformat()})
    record.update(
        {
            "customerId": p.get("id"),
            "customerNumber": p.get("number"),
            "customerName": p.get("displayName"),
            "billToName": p.get("displayName"),
            "billToCustomerId": p.get("id"),
            "billToCustomerNumber": p.get("number"),
            "shipToName": p.get("displayName"),
            "shipToContact": "",
        }
    )
    for role in ("sellTo", "billTo", "shipTo"):
        for suffix, value in addr.items():
            record[f"{role}{suffix}"] = value
    if entity_set == "salesInvoices":
        record.update(
            {
                "currencyId": "00000000-0000-0000-0000-000000000000",
                "shortcutDimension1Code": rng.choice(["SALES", "ADM"]),
                "shortcutDimension2Code": "",
                "currencyCode": currency,
                "orderId": None,
                "orderNumber": "",
                "paymentTermsId": None,
                "shipmentMethodId": None,
                "salesperson": rng.choice(["JO", "PS", "BD"]),
                "disputeStatusId": None,
                "disputeStatus": "",
                "pricesIncludeTax": False,
                "remainingAmount": round(total_ex + total_tax, 2),
                "discountAmount": 0.0,
                "discountAppliedBeforeTax": False,
                "totalAmountExcludingTax": total_ex,
                "totalTaxAmount": total_tax,
                "totalAmountIncludingTax": round(total_ex + total_tax, 2),
                "status": rng.choice(["Draft", "Open", "Paid"]),
                "lastModifiedDateTime": stamp,
                "phoneNumber": p.get("phoneNumber", ""),
                "email": p.get("email", ""),
            }
        )
    else:
        record.update(
            {
                "shortcutDimension1Code": rng.choice(["SALES", "ADM"]),
                "shortcutDimension2Code": "",
                "currencyId": "00000000-0000-0000-0000-000000000000",
                "currencyCode": currency,
                "pricesIncludeTax": False,
                "paymentTermsId": None,
                "shipmentMethodId": None,
                "salesperson": rng.choice(["JO", "PS", "BD"]),
                "partialShipping": True,
                "requestedDeliveryDate": None,
                "discountAmount": 0.0,
                "discountAppliedBeforeTax": False,
                "totalAmountExcludingTax": total_ex,
                "totalTaxAmount": total_tax,
                "totalAmountIncludingTax": round(total_ex + total_tax, 2),
                "fullyShipped": False,
                "status": rng.choice(["Draft", "Open", "Released"]),
                "lastModifiedDateTime": stamp,
                "phoneNumber": p.get("phoneNumber", ""),
                "email": p.get("email", ""),
            }
        )
    return record


def dimension_set_lines(company: CompanyData, entry_id: str) -> list[dict]:
    """The dimensionSetLines navigation of one G/L entry."""
    lookup = company.dimension_lookup()
    result = []
    for dim_index, value_index in company.gl_dimension_sets.get(entry_id, ()):
        dim, value = lookup[dim_index][value_index]
        result.append(
            {
                "id": dim["id"],
                "code": dim["code"],
                "consolidationCode": "",
                "parentId": entry_id,
                "parentType": "General_x0020_Ledger_x0020_Entry",
                "displayName": dim["displayName"],
                "valueId": value["id"],
                "valueCode": value["code"],
                "valueConsolidationCode": "",
                "valueDisplayName": value["displayName"],
            }
        )
    return result


def share_ids(source: CompanyData, target: CompanyData, per_entity: int = 3) -> None:
    """BC's Copy Company keeps record ids: give some of `target`'s records the ids of `source`'s.

    Their contents stay the target's own, so a warehouse keyed without the company merges them.
    """
    for entity_set in ("vendors", "salesInvoices", "generalLedgerEntries"):
        for own, theirs in zip(
            target.entities[entity_set][:per_entity], source.entities[entity_set][:per_entity], strict=False
        ):
            old, new = own["id"], theirs["id"]
            own["id"] = new
            if entity_set in target.lines:
                lines = target.lines[entity_set].pop(old, [])
                for line in lines:
                    line["documentId"] = new
                target.lines[entity_set][new] = lines
            if old in target.gl_dimension_sets:
                target.gl_dimension_sets[new] = target.gl_dimension_sets.pop(old)
