"""The BC entities the warehouse flow loads, with the column types the warehouse needs.

Only non-string fields are listed; everything else is text. Fields a customer adds to an API
page are not listed and arrive as new nullable columns typed from their values.
"""

from __future__ import annotations

from ...core.catalog import ChildEntity, Reference, select_entities
from ...core.catalog import SourceEntity as BcEntity
from ...core.types import ColumnType as T

_LINE_TYPES = {
    "sequence": T.INTEGER,
    "quantity": T.DECIMAL,
    "unitPrice": T.DECIMAL,
    "unitCost": T.DECIMAL,
    "discountAmount": T.DECIMAL,
    "discountPercent": T.DECIMAL,
    "discountAppliedBeforeTax": T.BOOLEAN,
    "amountExcludingTax": T.DECIMAL,
    "taxPercent": T.DECIMAL,
    "totalTaxAmount": T.DECIMAL,
    "amountIncludingTax": T.DECIMAL,
    "invoiceDiscountAllocation": T.DECIMAL,
    "netAmount": T.DECIMAL,
    "netTaxAmount": T.DECIMAL,
    "netAmountIncludingTax": T.DECIMAL,
    "expectedReceiptDate": T.DATE,
    "shipmentDate": T.DATE,
    "shippedQuantity": T.DECIMAL,
    "invoicedQuantity": T.DECIMAL,
    "invoiceQuantity": T.DECIMAL,
    "shipQuantity": T.DECIMAL,
}
_DOCUMENT_TYPES = {
    "postingDate": T.DATE,
    "invoiceDate": T.DATE,
    "dueDate": T.DATE,
    "promisedPayDate": T.DATE,
    "orderDate": T.DATE,
    "requestedDeliveryDate": T.DATE,
    "pricesIncludeTax": T.BOOLEAN,
    "discountAmount": T.DECIMAL,
    "discountAppliedBeforeTax": T.BOOLEAN,
    "totalAmountExcludingTax": T.DECIMAL,
    "totalTaxAmount": T.DECIMAL,
    "totalAmountIncludingTax": T.DECIMAL,
    "remainingAmount": T.DECIMAL,
    "partialShipping": T.BOOLEAN,
    "fullyShipped": T.BOOLEAN,
    "lastModifiedDateTime": T.TIMESTAMP,
}
_PARTY_TYPES = {"taxLiable": T.BOOLEAN, "lastModifiedDateTime": T.TIMESTAMP}


_ITEM = Reference("itemId", "items")
_ACCOUNT = Reference("accountId", "accounts")


def _lines(navigation: str, table: str, what: str) -> ChildEntity:
    return ChildEntity(
        navigation,
        table,
        f"Lines of {what}, replaced whenever their document changes.",
        types=_LINE_TYPES,
        references=(_ITEM, _ACCOUNT),  # a line sells an item, or posts to a G/L account
    )


ENTITIES: tuple[BcEntity, ...] = (
    BcEntity(
        "vendors",
        "bc_vendors",
        "Vendors (suppliers) with balance and payment terms.",
        {**_PARTY_TYPES, "balance": T.DECIMAL},
    ),
    BcEntity(
        "customers",
        "bc_customers",
        "Customers with balance due and credit limit.",
        {**_PARTY_TYPES, "balanceDue": T.DECIMAL, "creditLimit": T.DECIMAL},
    ),
    BcEntity(
        "items",
        "bc_items",
        "Items (inventory and service) with prices and cost.",
        {
            "blocked": T.BOOLEAN,
            "inventory": T.DECIMAL,
            "unitPrice": T.DECIMAL,
            "priceIncludesTax": T.BOOLEAN,
            "unitCost": T.DECIMAL,
            "lastModifiedDateTime": T.TIMESTAMP,
        },
    ),
    BcEntity(
        "accounts",
        "bc_accounts",
        "Chart of accounts (G/L accounts) with category and type.",
        {
            "blocked": T.BOOLEAN,
            "directPosting": T.BOOLEAN,
            "netChange": T.DECIMAL,
            "excludeFromConsolidation": T.BOOLEAN,
            "lastModifiedDateTime": T.TIMESTAMP,
        },
    ),
    BcEntity(
        "dimensions", "bc_dimensions", "Dimensions (e.g. DEPARTMENT, PROJECT).", {"lastModifiedDateTime": T.TIMESTAMP}
    ),
    BcEntity(
        "dimensionValues",
        "bc_dimension_values",
        "Values of each dimension.",
        {"lastModifiedDateTime": T.TIMESTAMP},
        references=(Reference("dimensionId", "dimensions"),),
    ),
    BcEntity(
        "generalLedgerEntries",
        "bc_general_ledger_entries",
        "Posted G/L entries (debit/credit per account), the base of every financial report.",
        {
            "entryNumber": T.INTEGER,
            "postingDate": T.DATE,
            "debitAmount": T.DECIMAL,
            "creditAmount": T.DECIMAL,
            "additionalCurrencyDebitAmount": T.DECIMAL,
            "additionalCurrencyCreditAmount": T.DECIMAL,
            "lastModifiedDateTime": T.TIMESTAMP,
        },
        children=(
            ChildEntity(
                "dimensionSetLines",
                "bc_general_ledger_entry_dimensions",
                "Dimension values of each G/L entry (one row per entry and dimension).",
                references=(Reference("valueId", "dimensionValues"),),
            ),
        ),
        references=(_ACCOUNT,),
        deletable=False,  # posted G/L entries are reversed, never deleted
    ),
    BcEntity(
        "purchaseInvoices",
        "bc_purchase_invoices",
        "Purchase invoices (draft and posted).",
        _DOCUMENT_TYPES,
        children=(_lines("purchaseInvoiceLines", "bc_purchase_invoice_lines", "purchase invoices"),),
        references=(Reference("vendorId", "vendors"),),
    ),
    BcEntity(
        "salesInvoices",
        "bc_sales_invoices",
        "Sales invoices (draft and posted).",
        _DOCUMENT_TYPES,
        children=(_lines("salesInvoiceLines", "bc_sales_invoice_lines", "sales invoices"),),
        references=(Reference("customerId", "customers"),),
    ),
    BcEntity(
        "salesOrders",
        "bc_sales_orders",
        "Sales orders.",
        _DOCUMENT_TYPES,
        children=(_lines("salesOrderLines", "bc_sales_order_lines", "sales orders"),),
        references=(Reference("customerId", "customers"),),
    ),
)

BY_ENTITY_SET = {e.entity_set: e for e in ENTITIES}


def select(entity_sets: list[str] | None) -> tuple[BcEntity, ...]:
    return select_entities(ENTITIES, entity_sets, "business_central.entities")
