"""The seed: two retail legal entities on one shared chart of accounts and one fiscal calendar.

Every row has the entity's fields (entities.py). The data carries the cases a journal poster
meets: an account suspended everywhere, one suspended in one company, one whose active range
ended, one closed to manual entry, a dimension value valid in one company only, a suspended
value, a closed year and a period on hold in one company.
"""

from __future__ import annotations

import calendar

from .entities import NO_DATE

CHART = "Shared"
CALENDAR = "Fiscal"
YEARS = (2025, 2026, 2027)
COMPANIES = {  # dataAreaId -> (name, accounting currency)
    "usrt": ("Contoso Retail USA", "USD"),
    "gbrt": ("Contoso Retail UK", "GBP"),
}
CURRENCIES = ("USD", "GBP", "EUR", "CAD", "AUD", "JPY", "CHF", "SEK", "DKK", "NOK", "PLN", "MXN", "CNY")

# id, name, type, category; then overrides of the defaults (IsSuspended, ActiveTo, DoNotAllowManualEntry)
_ACCOUNTS: tuple[tuple, ...] = (
    ("110110", "Bank operating account", "BalanceSheet", "CASH"),
    ("110120", "Bank payroll account", "Asset", "CASH"),
    ("110130", "Petty cash", "Asset", "CASH"),
    ("110140", "Card settlements in transit", "Asset", "CASH"),
    ("130100", "Accounts receivable", "Asset", "AR"),
    ("130200", "Marketplace receivables", "Asset", "AR"),
    ("132100", "Allowance for doubtful accounts", "Asset", "AR"),
    ("140100", "Inventory", "Asset", "INVENTORY", {"DoNotAllowManualEntry": "Yes"}),
    ("140200", "Inventory in transit", "Asset", "INVENTORY"),
    ("150100", "Prepaid expenses", "Asset", "PREPAID"),
    ("180100", "Furniture and fixtures", "Asset", "FIXEDASSETS"),
    ("180200", "Accumulated depreciation", "Asset", "FIXEDASSETS"),
    ("200100", "Accounts payable", "Liability", "AP"),
    ("200200", "Marketplace payables", "Liability", "AP"),
    ("210100", "Sales tax payable", "Liability", "TAX"),
    ("220100", "Accrued salaries", "Liability", "ACCRUEDLIAB"),
    ("220500", "Accrued liabilities", "Liability", "ACCRUEDLIAB"),
    ("230100", "Deferred revenue", "Liability", "DEFERREDREV"),
    ("250100", "Long-term loan", "Liability", "LTDEBT"),
    ("300100", "Share capital", "Equity", "CAPITAL"),
    ("310100", "Retained earnings", "Equity", "RETAINED"),
    ("401100", "Store sales", "Revenue", "SALES"),
    ("401200", "Online sales", "Revenue", "SALES"),
    ("401300", "Marketplace sales", "Revenue", "SALES"),
    ("402100", "Sales returns", "Revenue", "SALESRETURNS"),
    ("403100", "Marketplace fee income", "Revenue", "OTHERINCOME"),
    ("500100", "Cost of goods sold", "Expense", "COGS"),
    ("500200", "Freight in", "Expense", "COGS"),
    ("510100", "Inventory shrinkage", "Expense", "COGS"),
    ("600100", "Salaries", "Expense", "SALARIES"),
    ("600200", "Payroll taxes", "Expense", "SALARIES"),
    ("601500", "Marketing", "Expense", "MARKETING"),
    ("606100", "Rent", "Expense", "RENT"),
    ("606200", "Rent - old lease", "Expense", "RENT", {"ActiveTo": "2025-12-31T12:00:00Z"}),
    ("607100", "Utilities", "Expense", "UTILITIES"),
    ("610100", "Depreciation", "Expense", "DEPRECIATION"),
    ("615100", "Bank charges", "Expense", "BANKFEES"),
    ("618100", "Sales commissions", "Expense", "COMMISSIONS"),
    ("618200", "Marketplace fees", "Expense", "FEES"),
    ("618300", "Payment processing fees", "Expense", "FEES"),
    ("620100", "Office supplies", "Expense", "OFFICE"),
    ("999999", "Legacy suspense", "BalanceSheet", "SUSPENSE", {"IsSuspended": "Yes"}),
)

# dimension -> [(value, description, legal entity ("" = shared), overrides)]
_DIMENSION_VALUES: dict[str, list[tuple]] = {
    "BusinessUnit": [("001", "Retail", "", {}), ("002", "Online", "", {}), ("003", "Wholesale", "", {})],
    "Department": [
        ("022", "Finance", "", {}),
        ("023", "Marketing", "", {}),
        ("024", "Operations", "", {}),
        ("025", "Sales", "", {}),
        ("026", "IT", "", {}),
    ],
    "CostCenter": [
        ("001", "Stores East", "", {}),
        ("002", "Stores West", "", {}),
        ("003", "Stores Central", "", {}),
        ("004", "Online store", "", {}),
        ("005", "Marketplace", "", {}),
        ("006", "Wholesale", "", {}),
        ("007", "Distribution", "", {}),
        ("008", "Customer service", "", {}),
        ("009", "Head office", "", {}),
        ("010", "Finance shared services", "", {}),
        ("011", "IT services", "", {}),
        ("012", "Marketing services", "", {}),
        ("013", "UK stores", "GBRT", {}),
        ("099", "Closed store", "", {"IsSuspended": "Yes"}),
        ("098", "Allocations only", "", {"IsBlockedForManualEntry": "Yes"}),
    ],
}

# journal name -> (description, voucher series code, voucher prefix)
JOURNAL_NAMES = {
    "GenJrn": ("General journal", "GenJrn_V", "GJV"),
    "Alloc": ("Allocations", "Alloc_V", "ALV"),
    "Accrual": ("Accruals", "Accrual_V", "ACV"),
    "AllocClr": ("Allocations, lines deleted after posting", "AllocClr_V", "ACL"),
}
DELETES_LINES_AFTER_POSTING = {"AllocClr"}


def ledgers() -> list[dict]:
    return [
        {
            "LegalEntityId": company.upper(),
            "Name": company.upper(),
            "Description": name,
            "ChartOfAccounts": CHART,
            "FiscalCalendar": CALENDAR,
            "AccountingCurrency": currency,
            "ReportingCurrency": "USD",
        }
        for company, (name, currency) in COMPANIES.items()
    ]


def main_accounts() -> list[dict]:
    rows = []
    for account_id, name, kind, category, *rest in _ACCOUNTS:
        row = {
            "ChartOfAccounts": CHART,
            "MainAccountId": account_id,
            "Name": name,
            "MainAccountType": kind,
            "MainAccountCategory": category,
            "IsSuspended": "No",
            "ActiveFrom": NO_DATE,
            "ActiveTo": NO_DATE,
            "DoNotAllowManualEntry": "No",
        }
        rows.append(row | (rest[0] if rest else {}))
    return rows


def main_account_overrides() -> list[dict]:
    """Legal-entity overrides: payment processing fees are not used in the UK."""
    return [
        {
            "MainAccountId": "618300",
            "ChartOfAccounts": CHART,
            "LegalEntityId": "GBRT",
            "IsSuspended": "Yes",
            "ActiveFrom": NO_DATE,
            "ActiveTo": NO_DATE,
            "DoNotAllowManualEntry": "No",
        }
    ]


def dimension_attributes() -> list[dict]:
    names = ("MainAccount", "Department", "CostCenter", "BusinessUnit")
    return [{"DimensionName": name, "ReportColumnName": name} for name in names]


def integration_formats(ledger_format: list[str]) -> list[dict]:
    """The active ledger and default formats, and a retired ledger format a client must not pick."""

    def row(name: str, kind: str, names: list[str], active: bool) -> dict:
        return {
            "DimensionFormatName": name,
            "DimensionFormatType": kind,
            "FinancialDimensionFormat": "-".join(names),
            "IsActive": "Yes" if active else "No",
        }

    return [
        row(
            "Ledger format 2019", "DataEntityLedgerDimensionFormat", ["MainAccount", "Department", "CostCenter"], False
        ),
        row("Ledger format", "DataEntityLedgerDimensionFormat", ledger_format, True),
        row("Default format", "DataEntityDefaultDimensionFormat", ["BusinessUnit", "CostCenter", "Department"], True),
    ]


# The DimensionSegmentDelimiter enum's members (F&O answers the member's name, not the characters).
DELIMITER_NAMES = {"-": "Hyphen", ".": "Period", "_": "Underscore", "|": "Bar", "~": "Tilde"}


def dimension_parameters(delimiter: str) -> list[dict]:
    return [{"Key": 0, "DimensionSegmentDelimiter": DELIMITER_NAMES[delimiter]}]


def dimension_values() -> list[dict]:
    rows = []
    for dimension, values in _DIMENSION_VALUES.items():
        for value, description, legal_entity, overrides in values:
            row = {
                "FinancialDimension": dimension,
                "LegalEntityId": legal_entity,
                "DimensionValue": value,
                "Description": description,
                "IsSuspended": "No",
                "ActiveFrom": NO_DATE,
                "ActiveTo": NO_DATE,
                "IsBlockedForManualEntry": "No",
                "IsTotal": "No",
            }
            rows.append(row | overrides)
    return rows


def _stamp(year: int, month: int, day: int) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}T12:00:00Z"


def fiscal_periods() -> list[dict]:
    """Calendar years: an Opening period on 1 January, Period 1..12 by month, a Closing period on 31 December."""
    rows = []
    for year in YEARS:

        def period(name: str, kind: str, start: str, end: str, short: str, year: int = year) -> dict:
            return {
                "Calendar": CALENDAR,
                "FiscalYear": str(year),
                "StartDate": start,
                "EndDate": end,
                "PeriodName": name,
                "Type": kind,
                "ShortName": short,
            }

        rows.append(period("Opening", "Opening", _stamp(year, 1, 1), _stamp(year, 1, 1), "OP"))
        for month in range(1, 13):
            last = calendar.monthrange(year, month)[1]
            rows.append(
                period(f"Period {month}", "Operating", _stamp(year, month, 1), _stamp(year, month, last), f"P{month}")
            )
        rows.append(period("Closing", "Closing", _stamp(year, 12, 31), _stamp(year, 12, 31), "CL"))
    return rows


def ledger_period_statuses() -> list[dict]:
    """2025 is closed; USRT holds 2026 Period 1 (its audit is not done); everything else is open."""
    rows = []
    for company in COMPANIES:
        ledger = company.upper()
        for period in fiscal_periods():
            status = "Closed" if period["FiscalYear"] == "2025" else "Open"
            if ledger == "USRT" and period["FiscalYear"] == "2026" and period["PeriodName"] == "Period 1":
                status = "OnHold"
            rows.append(
                {
                    "LedgerName": ledger,
                    "Calendar": CALENDAR,
                    "YearName": period["FiscalYear"],
                    "PeriodName": period["PeriodName"],
                    "LegalEntityId": ledger,
                    "PeriodStatus": status,
                    "LedgerAccessLevel": "All",
                }
            )
    return rows


def journal_names() -> list[dict]:
    return [
        {
            "dataAreaId": company,
            "Name": name,
            "Description": description,
            "Type": "Daily",
            "VoucherSeriesCode": series,
            "NewVoucher": "BalanceSheet",
            "PostingLayer": "CurrentOperationsTax",
            "DeleteLinesAfterPosting": "Yes" if name in DELETES_LINES_AFTER_POSTING else "No",
        }
        for company in COMPANIES
        for name, (description, series, _prefix) in JOURNAL_NAMES.items()
    ]
