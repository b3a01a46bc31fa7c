"""The Service Layer entities the warehouse flow loads."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SapEntity:
    entity_set: str
    table: str
    key: str
    lines: str | None = None  # lines come inside the document (no $expand needed)
    description: str = ""


ENTITIES: tuple[SapEntity, ...] = (
    SapEntity("Invoices", "sap_invoices", "DocEntry", "DocumentLines", "A/R invoices with lines."),
    SapEntity("PurchaseInvoices", "sap_purchase_invoices", "DocEntry", "DocumentLines", "A/P invoices with lines."),
    SapEntity("PurchaseOrders", "sap_purchase_orders", "DocEntry", "DocumentLines", "Purchase orders with lines."),
    SapEntity("JournalEntries", "sap_journal_entries", "JdtNum", "JournalEntryLines", "Journal entries with lines."),
    SapEntity("IncomingPayments", "sap_incoming_payments", "DocEntry", None, "Incoming (customer) payments."),
    SapEntity("VendorPayments", "sap_vendor_payments", "DocEntry", None, "Outgoing (vendor) payments."),
    SapEntity("Items", "sap_items", "ItemCode", None, "Items."),
    SapEntity("BusinessPartners", "sap_business_partners", "CardCode", None, "Customers and suppliers."),
    SapEntity("ChartOfAccounts", "sap_accounts", "Code", None, "G/L accounts with their parent account."),
    SapEntity("ProfitCenters", "sap_profit_centers", "CenterCode", None, "Cost centres (profit centres)."),
)

BY_ENTITY_SET = {e.entity_set: e for e in ENTITIES}
