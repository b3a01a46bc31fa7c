"""The Service Layer entities the warehouse flow loads, with the column types the warehouse needs.

Lines come inside their document (no $expand); every record gets `UpdateDateTime` from the
client (UpdateDate + UpdateTime in UTC), the field windows are cut on.
"""

from __future__ import annotations

from ...core.catalog import ChildEntity, Reference, SourceEntity, select_entities
from ...core.types import ColumnType as T
from .client import MODIFIED_AT

_DOCUMENT = {
    "DocEntry": T.INTEGER,
    "DocNum": T.INTEGER,
    "DocDate": T.DATE,
    "DocDueDate": T.DATE,
    "DocTotal": T.DECIMAL,
    # Every amount and rate a document carries is declared: an undeclared number is read as a double, and a
    # page of whole numbers (PaidToDate 0) would type the column as an integer.
    "DocTotalFc": T.DECIMAL,
    "DocTotalSys": T.DECIMAL,
    "VatSum": T.DECIMAL,
    "VatSumSys": T.DECIMAL,
    "PaidToDate": T.DECIMAL,
    "DocRate": T.DECIMAL,
    "DiscountPercent": T.DECIMAL,
    "TotalDiscount": T.DECIMAL,
    "UpdateDate": T.DATE,
    MODIFIED_AT: T.TIMESTAMP,
}
_DOCUMENT_LINES = {
    "LineNum": T.INTEGER,
    "Quantity": T.DECIMAL,
    "Price": T.DECIMAL,
    "UnitPrice": T.DECIMAL,
    "LineTotal": T.DECIMAL,
    "RowTotalFC": T.DECIMAL,
    "RowTotalSC": T.DECIMAL,
    "TaxTotal": T.DECIMAL,
    "DiscountPercent": T.DECIMAL,
}
# A line's G/L account and cost centre (the first dimension's profit centre).
_LINE_REFERENCES = (
    Reference("AccountCode", "ChartOfAccounts", field="Code"),
    Reference("CostingCode", "ProfitCenters", field="CenterCode"),
)


def _document(entity_set: str, table: str, what: str) -> SourceEntity:
    return SourceEntity(
        entity_set,
        table,
        f"{what}. Lines carry item, warehouse, G/L account and cost centre (profit centre).",
        _DOCUMENT,
        key="DocEntry",
        modified_field=MODIFIED_AT,
        children=(
            ChildEntity(
                "DocumentLines",
                f"{table.removesuffix('s')}_lines",
                f"Lines of {what.lower()}.",
                key="LineNum",
                types=_DOCUMENT_LINES,
                references=(Reference("ItemCode", "Items", field="ItemCode"), *_LINE_REFERENCES),
            ),
        ),
        references=(Reference("CardCode", "BusinessPartners", field="CardCode"),),
    )


ENTITIES: tuple[SourceEntity, ...] = (
    _document("Invoices", "sap_invoices", "A/R invoices"),
    _document("PurchaseInvoices", "sap_purchase_invoices", "A/P invoices"),
    _document("PurchaseOrders", "sap_purchase_orders", "Purchase orders"),
    SourceEntity(
        "JournalEntries",
        "sap_journal_entries",
        "Journal entries.",
        {"JdtNum": T.INTEGER, "ReferenceDate": T.DATE, "UpdateDate": T.DATE, MODIFIED_AT: T.TIMESTAMP},
        key="JdtNum",
        modified_field=MODIFIED_AT,
        children=(
            ChildEntity(
                "JournalEntryLines",
                "sap_journal_entry_lines",
                "Journal lines with G/L account, debit, credit and cost centre.",
                key="Line_ID",
                types={
                    "Line_ID": T.INTEGER,
                    "Debit": T.DECIMAL,
                    "Credit": T.DECIMAL,
                    "FCDebit": T.DECIMAL,
                    "FCCredit": T.DECIMAL,
                    "DebitSys": T.DECIMAL,
                    "CreditSys": T.DECIMAL,
                },
                references=_LINE_REFERENCES,
            ),
        ),
        deletable=False,  # a posted journal entry is reversed, never deleted
    ),
    SourceEntity(
        "IncomingPayments",
        "sap_incoming_payments",
        "Incoming (customer) payments.",
        {
            "DocEntry": T.INTEGER,
            "DocNum": T.INTEGER,
            "DocDate": T.DATE,
            "TransferSum": T.DECIMAL,
            "CashSum": T.DECIMAL,
            "UpdateDate": T.DATE,
            MODIFIED_AT: T.TIMESTAMP,
        },
        key="DocEntry",
        modified_field=MODIFIED_AT,
    ),
    SourceEntity(
        "VendorPayments",
        "sap_vendor_payments",
        "Outgoing (vendor) payments.",
        {
            "DocEntry": T.INTEGER,
            "DocNum": T.INTEGER,
            "DocDate": T.DATE,
            "TransferSum": T.DECIMAL,
            "CashSum": T.DECIMAL,
            "UpdateDate": T.DATE,
            MODIFIED_AT: T.TIMESTAMP,
        },
        key="DocEntry",
        modified_field=MODIFIED_AT,
    ),
    SourceEntity(
        "Items",
        "sap_items",
        "Items with product line and stock per warehouse.",
        {
            "ItemsGroupCode": T.INTEGER,
            "QuantityOnStock": T.DECIMAL,
            "AvgStdPrice": T.DECIMAL,
            "UpdateDate": T.DATE,
            MODIFIED_AT: T.TIMESTAMP,
        },
        key="ItemCode",
        modified_field=MODIFIED_AT,
    ),
    SourceEntity(
        "BusinessPartners",
        "sap_business_partners",
        "Customers and suppliers with territory and region.",
        {"Territory": T.INTEGER, "CurrentAccountBalance": T.DECIMAL, "UpdateDate": T.DATE, MODIFIED_AT: T.TIMESTAMP},
        key="CardCode",
        modified_field=MODIFIED_AT,
    ),
    SourceEntity(
        "ChartOfAccounts",
        "sap_accounts",
        "G/L accounts, a dimension for Looker: FatherAccountKey gives the hierarchy.",
        {"Balance": T.DECIMAL, "Levels": T.INTEGER, "UpdateDate": T.DATE, MODIFIED_AT: T.TIMESTAMP},
        key="Code",
        modified_field=MODIFIED_AT,
    ),
    SourceEntity(
        "ProfitCenters",
        "sap_profit_centers",
        "Cost centres (profit centres, here the regions), a dimension for Looker.",
        {"InWhichDimension": T.INTEGER, "EffectiveFrom": T.DATE, "UpdateDate": T.DATE, MODIFIED_AT: T.TIMESTAMP},
        key="CenterCode",
        modified_field=MODIFIED_AT,
    ),
)

BY_ENTITY_SET = {e.entity_set: e for e in ENTITIES}


def select(entity_sets: list[str] | None) -> tuple[SourceEntity, ...]:
    return select_entities(ENTITIES, entity_sets, "sap_business_one.entities")
