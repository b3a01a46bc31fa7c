"""The entity sets the simulator serves: public names, keys, fields and their OData types.

Types follow F&O's `$metadata` (fo-facts §1-§5): enums travel as strings and are declared by
their short enum name here (`NoYes`); dates are Edm.DateTimeOffset; amounts and the line number
are Edm.Decimal. A field's position here is its position in an answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NAMESPACE = "Microsoft.Dynamics.DataEntities"
S, D, DT, I32 = "Edm.String", "Edm.Decimal", "Edm.DateTimeOffset", "Edm.Int32"

ENUMS: dict[str, tuple[str, ...]] = {
    "NoYes": ("No", "Yes"),
    "DimensionLedgerAccountType": (
        "Blank",
        "ProfitAndLoss",
        "Revenue",
        "Expense",
        "BalanceSheet",
        "Asset",
        "Liability",
        "Equity",
        "Total",
        "Reporting",
        "Common_CN",
    ),
    "LedgerJournalACType": ("Ledger", "Cust", "Vend", "Project", "FixedAssets", "Bank"),
    "LedgerJournalType": ("Daily", "Allocation", "VendInvoiceRegister", "Payment", "CustPayment"),
    "NewVoucher": ("BalanceSheet", "Manually", "OneVoucher"),
    "CurrentOperationsTax": ("Current", "Operations", "Tax", "CurrentOperationsTax"),
    "FiscalPeriodType": ("Opening", "Operating", "Closing"),
    "FiscalPeriodStatus": ("OnHold", "Open", "Closed"),
    # A period's access per module (General ledger here); the members' names are this sandbox's reading.
    "FiscalPeriodAccessLevel": ("All", "NoAccess", "ByUserGroup"),
    "DimensionHierarchyType": (
        "DataEntityLedgerDimensionFormat",
        "DataEntityDefaultDimensionFormat",
        "DataEntityBudgetDimensionFormat",
        "DataEntityBudgetPlanningDimensionFormat",
    ),
}


@dataclass(frozen=True)
class EntitySet:
    name: str  # the public collection, as in URLs
    type_name: str  # the public entity (singular), as in `$metadata` and errors
    keys: tuple[str, ...]
    fields: dict[str, str]  # field -> Edm type, or a short enum name from ENUMS
    writable: bool = False
    navigation: dict[str, str] = field(default_factory=dict)  # navigation property -> entity set

    @property
    def company_scoped(self) -> bool:
        return "dataAreaId" in self.fields

    @property
    def qualified_type(self) -> str:
        return f"{NAMESPACE}.{self.type_name}"

    def edm_type(self, name: str) -> str:
        kind = self.fields[name]
        return kind if kind.startswith("Edm.") else f"{NAMESPACE}.{kind}"

    def filter_types(self) -> dict[str, str]:
        """Field -> qualified type, as $filter checks literals against it."""
        return {name: self.edm_type(name) for name in self.fields}


NO_DATE = "1900-01-01T12:00:00Z"  # how F&O answers an unset date


def entity_sets(fiscal_period_entity: str) -> dict[str, EntitySet]:
    """Every served set by name; the ledger period statuses answer under the configured name only."""
    sets = [
        EntitySet(
            "Ledgers",
            "Ledger",
            ("LegalEntityId",),
            {
                "LegalEntityId": S,
                "Name": S,
                "Description": S,
                "ChartOfAccounts": S,
                "FiscalCalendar": S,
                "AccountingCurrency": S,
                "ReportingCurrency": S,
            },
        ),
        EntitySet(
            "MainAccounts",
            "MainAccount",
            ("ChartOfAccounts", "MainAccountId"),
            {
                "ChartOfAccounts": S,
                "MainAccountId": S,
                "Name": S,
                "MainAccountType": "DimensionLedgerAccountType",
                "MainAccountCategory": S,
                "IsSuspended": "NoYes",
                "ActiveFrom": DT,
                "ActiveTo": DT,
                "DoNotAllowManualEntry": "NoYes",
            },
        ),
        EntitySet(
            "MainAccountLegalEntities",
            "MainAccountLegalEntity",
            ("MainAccountId", "ChartOfAccounts", "LegalEntityId"),
            {
                "MainAccountId": S,
                "ChartOfAccounts": S,
                "LegalEntityId": S,
                "IsSuspended": "NoYes",
                "ActiveFrom": DT,
                "ActiveTo": DT,
                "DoNotAllowManualEntry": "NoYes",
            },
        ),
        EntitySet(
            "DimensionAttributes", "DimensionAttribute", ("DimensionName",), {"DimensionName": S, "ReportColumnName": S}
        ),
        EntitySet(
            "DimensionIntegrationFormats",
            "DimensionIntegrationFormat",
            ("DimensionFormatName", "DimensionFormatType"),
            {
                "DimensionFormatName": S,
                "DimensionFormatType": "DimensionHierarchyType",
                "FinancialDimensionFormat": S,
                "IsActive": "NoYes",
            },
        ),
        EntitySet("DimensionParameters", "DimensionParameter", ("Key",), {"Key": I32, "DimensionSegmentDelimiter": S}),
        EntitySet(
            "FinancialDimensionValues",
            "FinancialDimensionValue",
            ("FinancialDimension", "LegalEntityId", "DimensionValue"),
            {
                "FinancialDimension": S,
                "LegalEntityId": S,
                "DimensionValue": S,
                "Description": S,
                "IsSuspended": "NoYes",
                "ActiveFrom": DT,
                "ActiveTo": DT,
                "IsBlockedForManualEntry": "NoYes",
                "IsTotal": "NoYes",
            },
        ),
        EntitySet(
            "FiscalPeriods",
            "FiscalPeriod",
            ("Calendar", "FiscalYear", "StartDate", "EndDate", "PeriodName"),
            {
                "Calendar": S,
                "FiscalYear": S,
                "StartDate": DT,
                "EndDate": DT,
                "PeriodName": S,
                "Type": "FiscalPeriodType",
                "ShortName": S,
            },
        ),
        EntitySet(
            fiscal_period_entity,
            # The public entity's name is the set's, singular: LedgerFiscalPeriodV2 / LedgerFiscalPeriod.
            fiscal_period_entity.replace("Periods", "Period"),
            ("LedgerName", "Calendar", "YearName", "PeriodName"),
            {
                "LedgerName": S,
                "Calendar": S,
                "YearName": S,
                "PeriodName": S,
                "LegalEntityId": S,
                "PeriodStatus": "FiscalPeriodStatus",
                "LedgerAccessLevel": "FiscalPeriodAccessLevel",
            },
        ),
        EntitySet(
            "JournalNames",
            "JournalName",
            ("dataAreaId", "Name"),
            {
                "dataAreaId": S,
                "Name": S,
                "Description": S,
                "Type": "LedgerJournalType",
                "VoucherSeriesCode": S,
                "NewVoucher": "NewVoucher",
                "PostingLayer": "CurrentOperationsTax",
                "DeleteLinesAfterPosting": "NoYes",
            },
        ),
        EntitySet(
            "LedgerJournalHeaders",
            "LedgerJournalHeader",
            ("dataAreaId", "JournalBatchNumber"),
            {
                "dataAreaId": S,
                "JournalBatchNumber": S,
                "JournalName": S,
                "Description": S,
                "PostingLayer": "CurrentOperationsTax",
                "IsPosted": "NoYes",
                "JournalTotalDebit": D,
                "JournalTotalCredit": D,
            },
            writable=True,
            navigation={"LedgerJournalLine": "LedgerJournalLines"},
        ),
        EntitySet(
            "LedgerJournalLines",
            "LedgerJournalLine",
            ("dataAreaId", "JournalBatchNumber", "LineNumber"),
            {
                "dataAreaId": S,
                "JournalBatchNumber": S,
                "LineNumber": D,
                "AccountType": "LedgerJournalACType",
                "AccountDisplayValue": S,
                "DebitAmount": D,
                "CreditAmount": D,
                "CurrencyCode": S,
                "TransDate": DT,
                "Text": S,
                "Voucher": S,
                "OffsetAccountType": "LedgerJournalACType",
                "OffsetAccountDisplayValue": S,
                "DefaultDimensionDisplayValue": S,
                "Company": S,
                "OffsetCompany": S,
            },
            writable=True,
        ),
    ]
    return {s.name: s for s in sets}
