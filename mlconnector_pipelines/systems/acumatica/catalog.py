"""The Acumatica entities the warehouse flow loads (Default endpoint), with the types the warehouse needs.

Every record and detail line carries a GUID `id`, its key here (the entities' own keys are one to
three fields). Amounts are read exactly. `StockItem` stamps its changes in `LastModified` (the other
entities in `LastModifiedDateTime`); `Subaccount` has no stamp at all and is loaded whole (flows).

The fields the contract types as DecimalValue, DateTimeValue or BooleanValue (the published Default
24.200.001 endpoint) are declared here, so a column's type never depends on what the first page held: a
field empty (`{}`) on every record of it, or stamps that happened to be whole seconds (Arrow reads
those as timestamps, the others as text). DateTimeValue fields are moments, except the documents'
business dates (`Date`, `DueDate`, `ApplicationDate`, `TransactionDate`), which are calendar dates that
Acumatica writes as midnight of the site's time zone.
"""

from __future__ import annotations

import pyarrow as pa

from ...core.catalog import ChildEntity, Reference, SourceEntity, select_entities
from ...core.types import DECIMAL_READ_TYPE
from ...core.types import ColumnType as T

MODIFIED = "LastModifiedDateTime"


_ACCOUNT = Reference("Account", "Account", field="AccountCD")  # lines name an account by its CD


def _typed(decimals: str = "", dates: str = "", moments: str = "", flags: str = "") -> dict[str, T]:
    """Field types from the contract's names: DecimalValue, the date-only DateTimeValue fields, the other
    DateTimeValue fields, BooleanValue."""
    kinds = ((decimals, T.DECIMAL), (dates, T.DATE), (moments, T.TIMESTAMP), (flags, T.BOOLEAN))
    return {name: kind for names, kind in kinds for name in names.split()}


def _details(table: str, what: str, types: dict[str, T], references: tuple[Reference, ...] = ()) -> ChildEntity:
    return ChildEntity("Details", table, what, key="id", types=types, references=references)


ENTITIES: tuple[SourceEntity, ...] = (
    SourceEntity(
        "Vendor",
        "acumatica_vendors",
        "Vendors (AP303000): ID, name, class, status, terms, currency.",
        _typed(
            decimals="MaxReceipt MinReceipt ThresholdReceipt",
            moments=f"CreatedDateTime {MODIFIED}",
            flags="EnableCurrencyOverride EnableRateOverride F1099Vendor FATCA ForeignEntity LandedCostVendor "
            "PaySeparately PrintOrders RemittanceAddressOverride RemittanceContactOverride SendOrdersbyEmail "
            "ShippingAddressOverride ShippingContactOverride VendorIsLaborUnion VendorIsTaxAgency",
        ),
        key="id",
        modified_field=MODIFIED,
    ),
    SourceEntity(
        "Bill",
        "acumatica_bills",
        "AP bills (AP301000) with their lines.",
        _typed(
            decimals="Amount Balance TaxTotal",
            dates="Date DueDate",
            moments=MODIFIED,
            flags="ApprovedForPayment Hold IsTaxValid",
        ),
        key="id",
        modified_field=MODIFIED,
        children=(
            _details(
                "acumatica_bill_lines",
                "Lines of AP bills: item, quantity, cost, account, subaccount, branch.",
                _typed(decimals="Qty UnitCost ExtendedCost Amount", flags="CalculateDiscountsOnImport NonBillable"),
                references=(_ACCOUNT,),
            ),
        ),
        references=(Reference("Vendor", "Vendor", field="VendorID"),),
    ),
    SourceEntity(
        "Check",
        "acumatica_checks",
        "AP payments (Check, AP302000) and the documents they pay.",
        _typed(decimals="PaymentAmount UnappliedBalance", dates="ApplicationDate", moments=MODIFIED, flags="Hold"),
        key="id",
        modified_field=MODIFIED,
        children=(
            _details(
                "acumatica_check_applications",
                "Documents each AP payment pays.",
                _typed(decimals="AmountPaid Balance CashDiscountBalance"),
            ),
        ),
    ),
    SourceEntity(
        "Payment",
        "acumatica_payments",
        "AR payments (Payment, AR302000).",
        _typed(
            decimals="PaymentAmount AppliedToDocuments AppliedToOrders AvailableBalance",
            dates="ApplicationDate",
            moments=MODIFIED,
            flags="Hold IsCCPayment IsNewCard SaveCard",
        ),
        key="id",
        modified_field=MODIFIED,
    ),
    SourceEntity(
        "JournalTransaction",
        "acumatica_journal_transactions",
        "GL batches (GL301000) with their lines.",
        _typed(dates="TransactionDate", moments=f"CreatedDateTime {MODIFIED}", flags="Hold"),
        key="id",
        modified_field=MODIFIED,
        children=(
            _details(
                "acumatica_journal_transaction_lines",
                "GL lines: account, subaccount, branch, debit, credit, reference.",
                _typed(decimals="DebitAmount CreditAmount Qty", flags="IsNonPM NonBillable"),
                references=(_ACCOUNT,),
            ),
        ),
    ),
    SourceEntity(
        "Account",
        "acumatica_accounts",
        "The chart of accounts (GL202500).",
        _typed(
            moments=f"CreatedDateTime {MODIFIED}",
            flags="Active CashAccount RequireUnits Secured UseDefaultSubaccount",
        ),
        key="id",
        modified_field=MODIFIED,
    ),
    SourceEntity(
        "StockItem",
        "acumatica_stock_items",
        "Stock items (IN202500).",
        _typed(
            decimals="AverageCost CurrentStdCost CurySpecificMSRP CurySpecificPrice DefaultPrice DimensionVolume "
            "DimensionWeight LastCost LastStdCost Markup MaxCost MinCost MinMarkup MSRP PendingStdCost",
            moments="LastModified LastModifiedDateTime",
            flags="ExportToExternal IsAKit PackSeparately SubjectToCommission UseOnEntry",
        ),
        key="id",
        modified_field="LastModified",
    ),
)


def select(entities: list[str] | None) -> tuple[SourceEntity, ...]:
    return select_entities(ENTITIES, entities, "acumatica.entities")


def written_as_text(entity: SourceEntity) -> tuple[str, ...]:
    """The date-time fields, read as Acumatica wrote them: their offset says which day a date is (Arrow
    would read some as UTC timestamps, the others as text); the modified stamp's spelling is its version."""
    moments = (T.TIMESTAMP, T.DATE)
    return tuple(dict.fromkeys([entity.modified_field, *(f for f, t in entity.types.items() if t in moments)]))


def wrapped_read_fields(entity: SourceEntity) -> list[pa.Field]:
    """The explicit types of a page read into Arrow: each field is `{"value": …}` on the wire."""

    def wrapped(types: dict[str, T], text: tuple[str, ...] = ()) -> list[pa.Field]:
        fields = [pa.field(name, pa.struct([("value", pa.string())])) for name in text]
        fields += [
            pa.field(name, pa.struct([("value", DECIMAL_READ_TYPE)]))
            for name, kind in types.items()
            if kind is T.DECIMAL
        ]
        return fields

    fields = wrapped(entity.types, text=written_as_text(entity))
    for child in entity.children:
        lines = wrapped(child.types)
        if lines:
            fields.append(pa.field(child.navigation, pa.list_(pa.struct(lines))))
    return fields
