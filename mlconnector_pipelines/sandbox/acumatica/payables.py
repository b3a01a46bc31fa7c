"""Accounts payable and inventory rules: vendors, vendor classes, bills, AP payments (Check), AR payments, stock items.

A drop-down field takes only the values defined for it; a selector field (vendor class, vendor,
account, subaccount, branch) takes only a record that exists, else "'<Field>' cannot be found in
the system." on that field (the docs' own example, acumatica-facts §7). A released document is read-only.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from .ledger import ZERO, account_problem, period_problem, subaccount_cd, subaccount_problem
from .models import AcumaticaModel, Context, Problems

VENDOR_STATUSES = ("Active", "On Hold", "Hold Payments", "Inactive", "One-Time")
BILL_TYPES = ("Bill", "Credit Adj.", "Debit Adj.", "Prepayment")
CHECK_TYPES = ("Payment", "Prepayment", "Refund", "Voided Payment")
ITEM_STATUSES = ("Active", "Inactive", "No Sales", "No Purchases", "No Request", "Marked for Deletion")
RELEASED_DOCUMENTS = ("Open", "Closed", "Reserved", "Voided", "Printed", "Released")


def not_in_list(value) -> str:
    return f"The '{value}' value is not in the list of allowed values."


def _released(existing: dict | None, problems: Problems, label: str) -> bool:
    if existing is not None and existing.get("Status") in RELEASED_DOCUMENTS:
        problems.record.append(f"The {label} {existing.get('ReferenceNbr')} has been released and cannot be edited.")
        return True
    return False


def _choice(row: dict, name: str, allowed: tuple, default: str, problems: Problems) -> None:
    row[name] = row.get(name) or default
    if row[name] not in allowed:
        problems.fields[name] = not_in_list(row[name])


def _required(row: dict, name: str, label: str, problems: Problems) -> bool:
    if row.get(name) in (None, ""):
        problems.fields[name] = f"'{label}' cannot be empty."
        return False
    return True


def check_vendor(model: AcumaticaModel, row: dict, existing, ctx: Context, problems: Problems) -> None:
    _required(row, "VendorName", "Vendor Name", problems)
    row["VendorClass"] = row.get("VendorClass") or "DEFAULT"
    if model.get("VendorClass", row["VendorClass"]) is None:
        problems.fields["VendorClass"] = "'Vendor Class' cannot be found in the system."
    _choice(row, "Status", VENDOR_STATUSES, "Active", problems)
    defaults = {"CurrencyID": "USD", "Terms": "30D", "PaymentMethod": "CHECK", "CashAccount": "10200"}
    defaults |= {"APAccount": "20000", "APSubaccount": "000-000", "LegalName": row.get("VendorName")}
    for name, value in defaults.items():
        row[name] = row.get(name) or value


def check_vendorclass(model: AcumaticaModel, row: dict, existing, ctx: Context, problems: Problems) -> None:
    row["Description"] = row.get("Description") or row.get("ClassID")


def check_bill(model: AcumaticaModel, bill: dict, existing, ctx: Context, problems: Problems) -> None:
    if _released(existing, problems, "bill"):
        return
    _choice(bill, "Type", BILL_TYPES, "Bill", problems)
    if _required(bill, "Vendor", "Vendor", problems):
        vendor = model.get("Vendor", bill["Vendor"])
        if vendor is None:
            problems.fields["Vendor"] = "'Vendor' cannot be found in the system."
        elif vendor["Status"] == "Inactive":
            problems.fields["Vendor"] = f"The status of the {vendor['VendorID']} vendor is Inactive."
    bill["Date"] = bill.get("Date") or ctx.business_date
    bill["DueDate"] = bill.get("DueDate") or bill["Date"] + timedelta(days=30)
    bill["PostPeriod"] = bill.get("PostPeriod") or f"{bill['Date']:%m%Y}"
    bill["PostPeriod"] = bill["PostPeriod"].replace("-", "")
    problem = period_problem(model, bill["PostPeriod"], "AP")
    if problem:
        problems.fields["PostPeriod"] = problem
    bill["BranchID"] = bill.get("BranchID") or ctx.branch
    if model.branch(bill["BranchID"]) is None:
        problems.fields["BranchID"] = "'Branch' cannot be found in the system."
    for name, value in {"CurrencyID": "USD", "Terms": "30D", "LocationID": "MAIN"}.items():
        bill[name] = bill.get(name) or value
    total = _bill_lines(model, bill, problems)
    bill["Hold"] = bool(bill.get("Hold"))
    bill["Amount"] = bill["Balance"] = total
    bill["TaxTotal"] = ZERO
    bill["Status"] = "On Hold" if bill["Hold"] else "Balanced"


def _bill_lines(model: AcumaticaModel, bill: dict, problems: Problems) -> Decimal:
    total = ZERO
    for index, line in enumerate(bill.setdefault("Details", [])):
        line["Branch"] = line.get("Branch") or bill["BranchID"]
        if model.branch(line["Branch"]) is None:
            problems.line(index, "Branch", "'Branch' cannot be found in the system.")
        line["Account"] = line.get("Account") or "50000"
        line["Subaccount"] = subaccount_cd(line.get("Subaccount") or "000-000")
        for name, check in (("Account", account_problem), ("Subaccount", subaccount_problem)):
            problem = check(model, line[name])
            if problem:
                problems.line(index, name, problem)
        if line.get("InventoryID") and model.get("StockItem", line["InventoryID"]) is None:
            problems.line(index, "InventoryID", "'Inventory ID' cannot be found in the system.")
        if line.get("UnitCost") is not None:
            line["Qty"] = line["Qty"] if line.get("Qty") is not None else Decimal(1)
            line["ExtendedCost"] = (line["Qty"] * line["UnitCost"]).quantize(Decimal("0.01"))
        line["ExtendedCost"] = line.get("ExtendedCost") if line.get("ExtendedCost") is not None else ZERO
        line["Amount"] = line["ExtendedCost"]
        total += line["Amount"]
    return total


def check_check(model: AcumaticaModel, payment: dict, existing, ctx: Context, problems: Problems) -> None:
    if _released(existing, problems, "payment"):
        return
    _choice(payment, "Type", CHECK_TYPES, "Payment", problems)
    vendor = model.get("Vendor", payment["Vendor"]) if _required(payment, "Vendor", "Vendor", problems) else None
    if payment.get("Vendor") and vendor is None:
        problems.fields["Vendor"] = "'Vendor' cannot be found in the system."
    payment["ApplicationDate"] = payment.get("ApplicationDate") or ctx.business_date
    payment["PaymentMethod"] = payment.get("PaymentMethod") or (vendor or {}).get("PaymentMethod") or "CHECK"
    payment["CashAccount"] = payment.get("CashAccount") or "10200"
    payment["CurrencyID"] = payment.get("CurrencyID") or "USD"
    applied = ZERO
    for index, line in enumerate(payment.setdefault("Details", [])):
        line["DocType"] = line.get("DocType") or "Bill"
        bill = model.get("Bill", line["DocType"], line.get("ReferenceNbr") or "")
        if bill is None:
            problems.line(index, "ReferenceNbr", "'Reference Nbr.' cannot be found in the system.")
        line["AmountPaid"] = line.get("AmountPaid") if line.get("AmountPaid") is not None else ZERO
        applied += line["AmountPaid"]
    if payment.get("PaymentAmount") is None:
        payment["PaymentAmount"] = applied
    payment["UnappliedBalance"] = payment["PaymentAmount"] - applied
    payment["Hold"] = bool(payment.get("Hold"))
    payment["Status"] = "On Hold" if payment["Hold"] else "Balanced"


def check_payment(model: AcumaticaModel, payment: dict, existing, ctx: Context, problems: Problems) -> None:
    if _released(existing, problems, "payment"):
        return
    _choice(payment, "Type", CHECK_TYPES, "Payment", problems)
    _required(payment, "CustomerID", "Customer", problems)
    payment["ApplicationDate"] = payment.get("ApplicationDate") or ctx.business_date
    payment["PaymentAmount"] = payment.get("PaymentAmount") or ZERO
    payment["Hold"] = bool(payment.get("Hold"))
    payment["Status"] = "On Hold" if payment["Hold"] else "Balanced"


def check_stockitem(model: AcumaticaModel, item: dict, existing, ctx: Context, problems: Problems) -> None:
    _choice(item, "ItemStatus", ITEM_STATUSES, "Active", problems)
    item["ItemClass"] = item.get("ItemClass") or "HARDWARE"
    for name, value in {"BaseUOM": "EA", "SalesUOM": "EA", "PurchaseUOM": "EA", "ItemType": "Finished Good"}.items():
        item[name] = item.get(name) or value


def check_default(model: AcumaticaModel, row: dict, existing, ctx: Context, problems: Problems) -> None:
    """Entities the simulator stores without rules of their own."""
