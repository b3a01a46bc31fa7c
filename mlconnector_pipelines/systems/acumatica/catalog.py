"""The Acumatica entities the warehouse flow loads (Default endpoint), with the types the warehouse needs.

Every record and detail line carries a GUID `id`, its key here (the entities' own keys are one to
three fields). Amounts are read exactly. `StockItem` stamps its changes in `LastModified` (the other
entities in `LastModifiedDateTime`); `Subaccount` has no stamp at all and is loaded whole (flows).
"""

from __future__ import annotations

import pyarrow as pa

from ...core.catalog import ChildEntity, Reference, SourceEntity, select_entities
from ...core.types import DECIMAL_READ_TYPE
from ...core.types import ColumnType as T

MODIFIED = "LastModifiedDateTime"


_ACCOUNT = Reference("Account", "Account", field="AccountCD")  # lines name an account by its CD


def _details(table: str, what: str, types: dict[str, T], references: tuple[Reference, ...] = ()) -> ChildEntity:
    return ChildEntity("Details", table, what, key="id", types=types, references=references)


ENTITIES: tuple[SourceEntity, ...] = (
    SourceEntity(
        "Vendor",
        "acumatica_vendors",
        "Vendors (AP303000): ID, name, class, status, terms, currency.",
        {MODIFIED: T.TIMESTAMP},
        key="id",
        modified_field=MODIFIED,
    ),
    SourceEntity(
        "Bill",
        "acumatica_bills",
        "AP bills (AP301000) with their lines.",
        {"Amount": T.DECIMAL, "Balance": T.DECIMAL, "TaxTotal": T.DECIMAL, MODIFIED: T.TIMESTAMP},
        key="id",
        modified_field=MODIFIED,
        children=(
            _details(
                "acumatica_bill_lines",
                "Lines of AP bills: item, quantity, cost, account, subaccount, branch.",
                {"Qty": T.DECIMAL, "UnitCost": T.DECIMAL, "ExtendedCost": T.DECIMAL, "Amount": T.DECIMAL},
                references=(_ACCOUNT,),
            ),
        ),
        references=(Reference("Vendor", "Vendor", field="VendorID"),),
    ),
    SourceEntity(
        "Check",
        "acumatica_checks",
        "AP payments (Check, AP302000) and the documents they pay.",
        {"PaymentAmount": T.DECIMAL, MODIFIED: T.TIMESTAMP},
        key="id",
        modified_field=MODIFIED,
        children=(
            _details("acumatica_check_applications", "Documents each AP payment pays.", {"AmountPaid": T.DECIMAL}),
        ),
    ),
    SourceEntity(
        "Payment",
        "acumatica_payments",
        "AR payments (Payment, AR302000).",
        {"PaymentAmount": T.DECIMAL, MODIFIED: T.TIMESTAMP},
        key="id",
        modified_field=MODIFIED,
    ),
    SourceEntity(
        "JournalTransaction",
        "acumatica_journal_transactions",
        "GL batches (GL301000) with their lines.",
        {MODIFIED: T.TIMESTAMP},
        key="id",
        modified_field=MODIFIED,
        children=(
            _details(
                "acumatica_journal_transaction_lines",
                "GL lines: account, subaccount, branch, debit, credit, reference.",
                {"DebitAmount": T.DECIMAL, "CreditAmount": T.DECIMAL, "Qty": T.DECIMAL},
                references=(_ACCOUNT,),
            ),
        ),
    ),
    SourceEntity(
        "Account",
        "acumatica_accounts",
        "The chart of accounts (GL202500).",
        {MODIFIED: T.TIMESTAMP},
        key="id",
        modified_field=MODIFIED,
    ),
    SourceEntity(
        "StockItem",
        "acumatica_stock_items",
        "Stock items (IN202500).",
        {"DefaultPrice": T.DECIMAL, "LastCost": T.DECIMAL, "LastModified": T.TIMESTAMP},
        key="id",
        modified_field="LastModified",
    ),
)


def select(entities: list[str] | None) -> tuple[SourceEntity, ...]:
    return select_entities(ENTITIES, entities, "acumatica.entities")


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

    fields = wrapped(entity.types, text=(entity.modified_field,))
    for child in entity.children:
        lines = wrapped(child.types)
        if lines:
            fields.append(pa.field(child.navigation, pa.list_(pa.struct(lines))))
    return fields
