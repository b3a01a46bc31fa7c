"""The seed: a distribution company (tenant MLC, branches HQ/EAST/WEST), its chart of accounts, subaccounts,
financial calendar, vendors, bills, AP and AR payments, GL batches and stock items.

Deterministic for a seed and a history window. Stamps are shaped on purpose: records share one
LastModifiedDateTime (ties across a page boundary), some fall exactly on 00:00:00.000, and one bill
line is 123456789012345.67, which no binary double holds.
"""

from __future__ import annotations

import random
import uuid
from calendar import monthrange
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from . import AcumaticaSettings
from .wire import CENT

COMPANY = ("MLC", "MLC Distribution")
BRANCH_NAMES = {"HQ": "Headquarters", "EAST": "East Coast", "WEST": "West Coast"}
LEDGER = "ACTUAL"
VENDOR_CLASSES = {"DEFAULT": "Default vendors", "LOCAL": "Local suppliers", "INTL": "International suppliers"}
VENDOR_CLASSES |= {"SERVICES": "Service providers", "UTILITY": "Utilities"}
# Currencies (CM202000): code, description, symbol, decimal precision. Amounts in these are kept to 2 places
# (wire.round_money), so every seeded one has precision 2.
CURRENCIES = [("USD", "US Dollar", "$", 2), ("EUR", "Euro", "€", 2), ("CAD", "Canadian Dollar", "C$", 2)]
CURRENCIES += [("GBP", "Pound Sterling", "£", 2)]
BIG_AMOUNT = Decimal("123456789012345.67")
INACTIVE_ACCOUNT = "19900"
INACTIVE_SUBACCOUNT = "999-999"

# AccountCD, Description, Type, AccountClass; a fifth item: not active
ACCOUNTS: tuple[tuple, ...] = (
    ("10100", "Petty Cash", "Asset", "CASHASSET"),
    ("10200", "Company Checking Account", "Asset", "CASHASSET"),
    ("10300", "Payroll Account", "Asset", "CASHASSET"),
    ("11000", "Accounts Receivable", "Asset", "CURASSET"),
    ("11100", "Allowance for Doubtful Accounts", "Asset", "CURASSET"),
    ("12000", "Inventory", "Asset", "INVENTORY"),
    ("12100", "Goods in Transit", "Asset", "INVENTORY"),
    ("13000", "Prepaid Expenses", "Asset", "CURASSET"),
    ("15000", "Equipment", "Asset", "FIXEDASSET"),
    ("15100", "Accumulated Depreciation", "Asset", "FIXEDASSET"),
    ("16000", "Vehicles", "Asset", "FIXEDASSET"),
    (INACTIVE_ACCOUNT, "Obsolete Clearing", "Asset", "CURASSET", False),
    ("20000", "Accounts Payable", "Liability", "CURLIABILITY"),
    ("20100", "Accrued Liabilities", "Liability", "CURLIABILITY"),
    ("20200", "Accrued Payroll", "Liability", "CURLIABILITY"),
    ("21000", "Sales Tax Payable", "Liability", "CURLIABILITY"),
    ("22000", "Customer Deposits", "Liability", "CURLIABILITY"),
    ("25000", "Long-Term Loan", "Liability", "LTLIABILITY"),
    ("30000", "Owner's Equity", "Liability", "EQUITY"),
    ("31000", "Retained Earnings", "Liability", "EQUITY"),
    ("40000", "Sales Revenue", "Income", "SALES"),
    ("40100", "Wholesale Revenue", "Income", "SALES"),
    ("40200", "Online Revenue", "Income", "SALES"),
    ("41000", "Sales Returns", "Income", "SALES"),
    ("42000", "Freight Income", "Income", "OTHINCOME"),
    ("49000", "Interest Income", "Income", "OTHINCOME"),
    ("50000", "Cost of Goods Sold", "Expense", "COGS"),
    ("50100", "Freight In", "Expense", "COGS"),
    ("51000", "Inventory Adjustments", "Expense", "COGS"),
    ("60000", "Salaries and Wages", "Expense", "PAYROLL"),
    ("60100", "Payroll Taxes", "Expense", "PAYROLL"),
    ("61000", "Rent", "Expense", "OPEXPENSE"),
    ("61100", "Utilities", "Expense", "OPEXPENSE"),
    ("62000", "Office Supplies", "Expense", "OPEXPENSE"),
    ("62100", "Software Subscriptions", "Expense", "OPEXPENSE"),
    ("63000", "Marketing", "Expense", "OPEXPENSE"),
    ("64000", "Travel", "Expense", "OPEXPENSE"),
    ("65000", "Bank Charges", "Expense", "OPEXPENSE"),
    ("66000", "Depreciation", "Expense", "OPEXPENSE"),
    ("67000", "Professional Fees", "Expense", "OPEXPENSE"),
)
EXPENSE_ACCOUNTS = ("50000", "50100", "61000", "61100", "62000", "62100", "63000", "64000", "67000")

# SubaccountCD (segments: department-product line), Description; a third item: not active
SUBACCOUNTS: tuple[tuple, ...] = (
    ("000-000", "Default"),
    ("100-000", "Sales East"),
    ("200-000", "Sales West"),
    ("300-000", "Operations"),
    ("400-000", "Administration"),
    ("100-100", "Sales East - Hardware"),
    ("200-100", "Sales West - Hardware"),
    (INACTIVE_SUBACCOUNT, "Obsolete", False),
)
ACTIVE_SUBACCOUNTS = tuple(s[0] for s in SUBACCOUNTS if len(s) == 2)

_VENDOR_WORDS = ("Acme", "Summit", "Harbor", "Granite", "Blue River", "Keystone", "Pioneer", "Evergreen", "Atlas")
_VENDOR_KINDS = ("Supply", "Logistics", "Industries", "Services", "Trading", "Electric", "Packaging", "Office")
_ITEM_WORDS = ("Router", "Switch", "Cable", "Monitor", "Keyboard", "Dock", "Adapter", "Printer", "Scanner", "Drive")
_ITEM_CLASSES = ("HARDWARE", "ELECTRONIC", "OFFICE", "ACCESSORY")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October")
_MONTHS += ("November", "December")


def period_id(day: date) -> str:
    return f"{day.month:02d}{day.year}"


class Clock:
    """Stamps inside the history window, ties and day boundaries included."""

    def __init__(self, rng: random.Random, start: datetime, end: datetime):
        self.rng, self.start, self.end = rng, start, end
        self.last: datetime | None = None
        self.count = 0

    def stamp(self) -> datetime:
        self.count += 1
        if self.last is not None and self.count % 9 == 0:
            return self.last  # a tie with the record before
        span = max(int((self.end - self.start).total_seconds() * 1000) - 1, 1)
        moment = self.start + timedelta(milliseconds=self.rng.randrange(span))
        if self.count % 13 == 0:
            moment = moment.replace(hour=0, minute=0, second=0, microsecond=0)  # exactly on a day boundary
        self.last = moment
        return moment


def guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def money(rng: random.Random, low: int, high: int) -> Decimal:
    return (Decimal(rng.randrange(low * 100, high * 100)) / 100).quantize(CENT)


def build(settings: AcumaticaSettings) -> dict[str, list[dict]]:
    rng = random.Random(settings.seed)
    start, end = settings.history()
    before = start - timedelta(days=120)
    volumes = settings.volumes
    data: dict[str, list[dict]] = {
        "Account": accounts(rng, before),
        "Subaccount": subaccounts(rng),
        "VendorClass": [
            {"id": guid(rng), "ClassID": k, "Description": v, "CreatedDateTime": before, "LastModifiedDateTime": before}
            for k, v in VENDOR_CLASSES.items()
        ],
        "Ledger": [
            {"id": guid(rng), "LedgerID": LEDGER, "Description": "Actual ledger", "Type": "Actual", "Currency": "USD"}
            | {"ConsolidationSource": False, "LastModifiedDateTime": before}
        ],
        "FinancialPeriod": calendar(rng, settings, before),
        "Currency": [
            {"id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"currency/{code}")), "CurrencyID": code, "Description": name}
            | {"CurrencySymbol": symbol, "DecimalPrecision": places}
            | {"Active": True, "UseForAccounting": True, "CreatedDateTime": before, "LastModifiedDateTime": before}
            for code, name, symbol, places in CURRENCIES
        ],
    }
    clock = Clock(rng, start, end)
    data["Vendor"] = vendors(rng, clock, volumes.vendors, settings.branches, before)
    data["StockItem"] = stock_items(rng, clock, volumes.stock_items, before)
    items = [i["InventoryID"] for i in data["StockItem"]]
    data["Bill"] = bills(rng, clock, volumes.bills, data["Vendor"], items, settings.branches)
    data["Check"] = checks(rng, clock, volumes.checks, data["Bill"])
    data["Payment"] = ar_payments(rng, clock, volumes.payments, settings.branches)
    data["JournalTransaction"] = journals(rng, clock, volumes.journal_transactions, settings.branches)
    return data


def companies_structure(branches: list[str]) -> list[dict]:
    return [
        {
            "id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"branch/{branch}")),
            "CompanyID": COMPANY[0],
            "CompanyName": COMPANY[1],
            "CompanyType": "With Branches Not Requiring Balancing",
            "CompanyStatus": True,
            "BranchID": branch,
            "BranchName": BRANCH_NAMES.get(branch, branch.title()),
            "BranchStatus": True,
            "BranchCountry": "US",
            "BaseCurrencyID": "USD",
        }
        for branch in branches
    ]


def accounts(rng: random.Random, before: datetime) -> list[dict]:
    rows = []
    for number, (cd, description, kind, account_class, *rest) in enumerate(ACCOUNTS, start=1):
        rows.append(
            {
                "id": guid(rng),
                "AccountCD": cd,
                "AccountID": 1000 + number,
                "Description": description,
                "Type": kind,
                "AccountClass": account_class,
                "Active": rest[0] if rest else True,
                "CashAccount": account_class == "CASHASSET",
                "PostOption": "Detail" if kind in ("Asset", "Liability") else "Summary",
                "ChartOfAccountsOrder": number,
                "RequireUnits": False,
                "Secured": False,
                "UseDefaultSubaccount": False,
                "CreatedDateTime": before,
                "LastModifiedDateTime": before + timedelta(minutes=number),
            }
        )
    return rows


def subaccounts(rng: random.Random) -> list[dict]:
    return [
        {
            "id": guid(rng),
            "SubaccountCD": cd,
            "SubaccountID": 500 + number,
            "Description": description,
            "Active": rest[0] if rest else True,
            "Secured": False,
        }
        for number, (cd, description, *rest) in enumerate(SUBACCOUNTS, start=1)
    ]


def period_rows(year: int, status_of) -> list[dict]:
    rows = []
    for month in range(1, 13):
        first = date(year, month, 1)
        last = date(year, month, monthrange(year, month)[1])
        status = status_of(period_id(first))
        closed = status == "Closed"
        rows.append(
            {
                "id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"period/{year}/{month}")),
                "PeriodNbr": f"{month:02d}",
                "FinancialPeriodID": period_id(first),
                "Description": _MONTHS[month - 1],
                "StartDate": first,
                "EndDate": last,
                "LengthInDays": (last - first).days + 1,
                "Status": status,
                "AdjustmentPeriod": False,
            }
            | {f"ClosedIn{module}": closed for module in ("AP", "AR", "CA", "FA", "IN")}
        )
    return rows


def calendar(rng: random.Random, settings: AcumaticaSettings, before: datetime) -> list[dict]:
    closed = set(settings.closed_periods)

    def status_of(period: str) -> str:
        return "Closed" if int(period[2:]) in settings.closed_years or period in closed else "Open"

    return [
        {
            "id": guid(rng),
            "FinancialYear": str(year),
            "StartDate": date(year, 1, 1),
            "NbrOfPeriods": 12,
            "UserDefinedPeriods": False,
            "CreatedDateTime": before,
            "LastModifiedDateTime": before,
            "Details": period_rows(year, status_of),
        }
        for year in settings.years()
    ]


def vendors(rng: random.Random, clock: Clock, count: int, branches: list[str], before: datetime) -> list[dict]:
    rows = []
    for n in range(1, count + 1):
        name = f"{rng.choice(_VENDOR_WORDS)} {rng.choice(_VENDOR_KINDS)} {n:02d}"
        status = "Inactive" if n == count else "On Hold" if n % 11 == 0 else "Active"
        rows.append(
            {
                "id": guid(rng),
                "VendorID": f"V{n:05d}",
                "VendorName": name,
                "LegalName": f"{name} LLC",
                "VendorClass": rng.choice(list(VENDOR_CLASSES)),
                "Status": status,
                "CurrencyID": "USD",
                "Terms": "30D",
                "PaymentMethod": "CHECK",
                "CashAccount": "10200",
                "APAccount": "20000",
                "APSubaccount": "000-000",
                "ReceivingBranch": rng.choice(branches),
                "F1099Vendor": False,
                "ForeignEntity": False,
                "LandedCostVendor": False,
                "CreatedDateTime": before,
                "LastModifiedDateTime": clock.stamp(),
            }
        )
    return rows


def stock_items(rng: random.Random, clock: Clock, count: int, before: datetime) -> list[dict]:
    rows = []
    for n in range(1, count + 1):
        stamp = clock.stamp()
        price = money(rng, 5, 2500)
        rows.append(
            {
                "id": guid(rng),
                "InventoryID": f"{_ITEM_WORDS[n % len(_ITEM_WORDS)].upper()}{n:03d}",
                "Description": f"{_ITEM_WORDS[n % len(_ITEM_WORDS)]} model {n:03d}",
                "ItemClass": rng.choice(_ITEM_CLASSES),
                "ItemStatus": "Inactive" if n % 17 == 0 else "Active",
                "ItemType": "Finished Good",
                "BaseUOM": "EA",
                "SalesUOM": "EA",
                "PurchaseUOM": "EA",
                "ValuationMethod": "Average",
                "DefaultPrice": price,
                "LastCost": (price * Decimal("0.6")).quantize(CENT),
                "DefaultWarehouseID": "WHOLESALE",
                "PostingClass": "STOCKITEM",
                "InventoryAccount": "12000",
                "COGSAccount": "50000",
                "SalesAccount": "40000",
                "CreatedDateTime": before,
                "LastModified": stamp,
                "LastModifiedDateTime": stamp,
            }
        )
    return rows


def _bill_lines(rng: random.Random, items: list[str], branches: list[str], big: bool) -> list[dict]:
    lines = []
    for _ in range(1 if big else rng.randint(1, 4)):
        qty = Decimal(rng.randint(1, 20))
        cost = BIG_AMOUNT if big else money(rng, 3, 900)
        amount = (qty * cost).quantize(CENT)
        lines.append(
            {
                "id": guid(rng),
                "InventoryID": None if big else rng.choice(items),
                "TransactionDescription": "Annual master agreement" if big else "Purchased goods",
                "Qty": Decimal(1) if big else qty,
                "UnitCost": cost,
                "ExtendedCost": BIG_AMOUNT if big else amount,
                "Amount": BIG_AMOUNT if big else amount,
                "UOM": "EA",
                "Account": rng.choice(EXPENSE_ACCOUNTS),
                "Subaccount": rng.choice(ACTIVE_SUBACCOUNTS),
                "Branch": rng.choice(branches),
                "NonBillable": False,
            }
        )
    return lines


def bills(rng: random.Random, clock: Clock, count: int, vendor_rows: list[dict], items, branches) -> list[dict]:
    active = [v["VendorID"] for v in vendor_rows if v["Status"] == "Active"]
    rows = []
    for n in range(1, count + 1):
        stamp = clock.stamp()
        day = stamp.date() - timedelta(days=rng.randint(0, 3))
        lines = _bill_lines(rng, items, branches, big=n == 7)
        amount = sum((line["Amount"] for line in lines), Decimal("0.00"))
        status = rng.choice(("Open", "Open", "Closed", "Balanced", "On Hold"))
        rows.append(
            {
                "id": guid(rng),
                "Type": "Debit Adj." if n % 23 == 0 else "Bill",
                "ReferenceNbr": f"{n:06d}",
                "Vendor": rng.choice(active),
                "VendorRef": f"INV-{rng.randint(10000, 99999)}",
                "Description": f"Purchase {n:06d}",
                "Date": day,
                "DueDate": day + timedelta(days=30),
                "PostPeriod": period_id(day),
                "BranchID": lines[0]["Branch"],
                "CurrencyID": "USD",
                "Terms": "30D",
                "LocationID": "MAIN",
                "Hold": status == "On Hold",
                "Status": status,
                "Amount": amount,
                "Balance": Decimal("0.00") if status == "Closed" else amount,
                "TaxTotal": Decimal("0.00"),
                "ApprovedForPayment": status in ("Open", "Closed"),
                "IsTaxValid": None,
                "LastModifiedDateTime": stamp,
                "Details": lines,
            }
        )
    return rows


def checks(rng: random.Random, clock: Clock, count: int, bill_rows: list[dict]) -> list[dict]:
    paid = [b for b in bill_rows if b["Status"] in ("Open", "Closed") and b["Amount"] < BIG_AMOUNT]
    rows = []
    for n in range(1, count + 1):
        stamp = clock.stamp()
        bill = paid[(n - 1) % len(paid)]
        status = rng.choice(("Closed", "Closed", "Open", "Balanced"))
        rows.append(
            {
                "id": guid(rng),
                "Type": "Payment",
                "ReferenceNbr": f"{n:06d}",
                "Vendor": bill["Vendor"],
                "ApplicationDate": stamp.date(),
                "PaymentMethod": "CHECK",
                "CashAccount": "10200",
                "PaymentRef": f"{10000 + n}",
                "CurrencyID": "USD",
                "Description": f"Payment for bill {bill['ReferenceNbr']}",
                "Hold": False,
                "Status": status,
                "PaymentAmount": bill["Amount"],
                "UnappliedBalance": Decimal("0.00"),
                "LastModifiedDateTime": stamp,
                "Details": [
                    {
                        "id": guid(rng),
                        "DocType": "Bill",
                        "ReferenceNbr": bill["ReferenceNbr"],
                        "AmountPaid": bill["Amount"],
                        "Balance": Decimal("0.00"),
                        "CashDiscountBalance": Decimal("0.00"),
                    }
                ],
            }
        )
    return rows


def ar_payments(rng: random.Random, clock: Clock, count: int, branches: list[str]) -> list[dict]:
    rows = []
    for n in range(1, count + 1):
        stamp = clock.stamp()
        amount = money(rng, 50, 20000)
        rows.append(
            {
                "id": guid(rng),
                "Type": "Payment",
                "ReferenceNbr": f"{n:06d}",
                "CustomerID": f"C{rng.randint(1, 25):05d}",
                "ApplicationDate": stamp.date(),
                "PaymentMethod": "CHECK",
                "CashAccount": "10200",
                "PaymentRef": f"R{20000 + n}",
                "CurrencyID": "USD",
                "BranchID": rng.choice(branches),
                "Hold": False,
                "Status": rng.choice(("Closed", "Open")),
                "PaymentAmount": amount,
                "AppliedToDocuments": amount,
                "AvailableBalance": Decimal("0.00"),
                "LastModifiedDateTime": stamp,
            }
        )
    return rows


def journal_lines(rng: random.Random, branch: str, on_hold_unbalanced: bool) -> list[dict]:
    debits = [money(rng, 10, 9000) for _ in range(rng.randint(1, 3))]
    total = sum(debits, Decimal("0.00"))
    credit = total + (Decimal("1.00") if on_hold_unbalanced else 0)
    amounts = [(d, Decimal("0.00")) for d in debits] + [(Decimal("0.00"), credit)]
    lines = []
    for number, (debit, credit_amount) in enumerate(amounts, start=1):
        account = rng.choice(EXPENSE_ACCOUNTS) if debit else "20100"
        lines.append(
            {
                "id": guid(rng),
                "LineNbr": number,
                "BranchID": branch,
                "Account": account,
                "Description": next(a[1] for a in ACCOUNTS if a[0] == account),
                "Subaccount": rng.choice(ACTIVE_SUBACCOUNTS),
                "DebitAmount": debit,
                "CreditAmount": credit_amount,
                "TransactionDescription": "Accrual" if credit_amount else "Expense allocation",
                "ReferenceNbr": f"REF{rng.randint(1000, 9999)}",
                "Qty": Decimal("0.00"),
                "Project": "X",
                "IsNonPM": True,
                "NonBillable": False,
            }
        )
    return lines


def journals(rng: random.Random, clock: Clock, count: int, branches: list[str]) -> list[dict]:
    rows = []
    for n in range(1, count + 1):
        stamp = clock.stamp()
        day = stamp.date()
        branch = rng.choice(branches)
        status = "On Hold" if n % 15 == 0 else "Balanced" if n % 4 == 0 else "Posted"
        rows.append(
            {
                "id": guid(rng),
                "Module": "GL",
                "BatchNbr": f"{n:06d}",
                "BranchID": branch,
                "LedgerID": LEDGER,
                "TransactionDate": day,
                "PostPeriod": period_id(day),
                "CurrencyID": "USD",
                "Description": f"Month-end accruals {n:03d}",
                "Hold": status == "On Hold",
                "Status": status,
                "CreatedDateTime": stamp,
                "LastModifiedDateTime": stamp,
                "Details": journal_lines(rng, branch, on_hold_unbalanced=n == 15),
            }
        )
    return rows


def now_stamp() -> datetime:
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
