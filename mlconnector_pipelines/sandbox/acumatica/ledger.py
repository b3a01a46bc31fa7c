"""General ledger rules: accounts, subaccounts, financial periods, GL batches (JournalTransaction) and their release.

A batch off hold must balance; an unbalanced batch can only be saved on hold (GL preference
"Hold Batches on Entry" decides the default). Releasing is a long-running action; a released batch
is Posted (or Unposted when the preference "Automatically Post on Release" is off) and read-only.
Messages follow Acumatica's wording where the docs quote it; the others are written in its style
(acumatica-facts §7).
"""

from __future__ import annotations

import re
from decimal import Decimal

from .models import AcumaticaModel, Context, Problems

RELEASED = ("Posted", "Unposted")
ZERO = Decimal("0.00")
_PERIOD = re.compile(r"^(\d{2})-?(\d{4})$")
ACCOUNT_TYPES = ("Asset", "Liability", "Income", "Expense")


def subaccount_cd(value) -> str:
    """Segmented: `100000` and `100-000` are one subaccount; the API answers with the separator."""
    text = str(value or "").strip()
    digits = text.replace("-", "")
    return f"{digits[:3]}-{digits[3:]}" if len(digits) == 6 and digits.isalnum() else text


def period_id(value) -> str | None:
    """`01-2026` (as a person types it) or `012026` (as the API answers): MMYYYY, or None."""
    match = _PERIOD.match(str(value or "").strip())
    return f"{match.group(1)}{match.group(2)}" if match else None


def period_problem(model: AcumaticaModel, value: str, module: str = "GL") -> str | None:
    """Why a document cannot post to the period, if it cannot."""
    pid = period_id(value)
    if pid is None:
        return f"'{value}' is not a valid financial period. Enter it as MM-YYYY."
    shown = f"{pid[:2]}-{pid[2:]}"
    period = model.period(pid)
    if period is None:
        return f"The {shown} financial period does not exist in the system."
    if period["Status"] == "Inactive":
        return f"The {shown} financial period is inactive."
    if period["Status"] != "Open" or (module != "GL" and period.get(f"ClosedIn{module}")):
        where = "General Ledger" if module == "GL" else f"the {module} module"
        return f"The {shown} financial period is closed in {where}."
    return None


def account_problem(model: AcumaticaModel, value) -> str | None:
    if value in (None, ""):
        return "'Account' cannot be empty."
    account = model.get("Account", str(value))
    if account is None:
        return "'Account' cannot be found in the system."
    if not account.get("Active"):
        return f"The {account['AccountCD']} account is inactive."
    return None


def subaccount_problem(model: AcumaticaModel, value) -> str | None:
    if value in (None, ""):
        return "'Subaccount' cannot be empty."
    sub = model.get("Subaccount", subaccount_cd(value))
    if sub is None:
        return "'Subaccount' cannot be found in the system."
    if not sub.get("Active"):
        return f"The {sub['SubaccountCD']} subaccount is inactive."
    return None


def check_account(model: AcumaticaModel, row: dict, existing, ctx: Context, problems: Problems) -> None:
    row.setdefault("Active", True)
    if row.get("Type") not in ACCOUNT_TYPES:
        problems.fields["Type"] = "'Type' cannot be empty." if not row.get("Type") else _not_in_list(row["Type"])
    if existing is None:
        row["AccountID"] = 1000 + len(model.tables["Account"].rows) + 1


def check_subaccount(model: AcumaticaModel, row: dict, existing, ctx: Context, problems: Problems) -> None:
    row["SubaccountCD"] = subaccount_cd(row.get("SubaccountCD"))
    row.setdefault("Active", True)
    if existing is None:
        row["SubaccountID"] = 500 + len(model.tables["Subaccount"].rows) + 1


def check_journaltransaction(model: AcumaticaModel, batch: dict, existing, ctx: Context, problems: Problems) -> None:
    if existing is not None and existing.get("Status") in RELEASED:
        problems.record.append(f"The {existing['BatchNbr']} batch has been released and cannot be edited.")
        return
    batch["Module"] = batch.get("Module") or "GL"
    if batch["Module"] != "GL":
        problems.fields["Module"] = "Only batches of the GL module can be entered on the Journal Transactions form."
    batch["BranchID"] = batch.get("BranchID") or ctx.branch
    if model.branch(batch["BranchID"]) is None:
        problems.fields["BranchID"] = "'Branch' cannot be found in the system."
    batch["LedgerID"] = batch.get("LedgerID") or "ACTUAL"
    if model.get("Ledger", batch["LedgerID"]) is None:
        problems.fields["LedgerID"] = "'Ledger' cannot be found in the system."
    batch["CurrencyID"] = batch.get("CurrencyID") or "USD"
    if model.get("Currency", batch["CurrencyID"]) is None:
        problems.fields["CurrencyID"] = "'Currency' cannot be found in the system."
    batch["TransactionDate"] = batch.get("TransactionDate") or ctx.business_date
    given = batch.get("PostPeriod")
    batch["PostPeriod"] = period_id(given) or given or f"{batch['TransactionDate']:%m%Y}"
    problem = period_problem(model, batch["PostPeriod"])
    if problem:
        problems.fields["PostPeriod"] = problem
    if batch.get("Hold") is None:
        batch["Hold"] = model.settings.hold_batches_on_entry
    debit, credit = _check_lines(model, batch, problems)
    if not batch["Hold"] and debit != credit:
        problems.record.append("Batch is out of balance, please review.")
    batch["Status"] = "On Hold" if batch["Hold"] else "Balanced"


def _check_lines(model: AcumaticaModel, batch: dict, problems: Problems) -> tuple[Decimal, Decimal]:
    lines = batch.setdefault("Details", [])
    numbers = [line["LineNbr"] for line in lines if isinstance(line.get("LineNbr"), int)]
    next_number = max(numbers, default=0) + 1
    debit = credit = ZERO
    for index, line in enumerate(lines):
        if not isinstance(line.get("LineNbr"), int):
            line["LineNbr"], next_number = next_number, next_number + 1
        line["BranchID"] = line.get("BranchID") or batch["BranchID"]
        if model.branch(line["BranchID"]) is None:
            problems.line(index, "BranchID", "'Branch' cannot be found in the system.")
        for name, check in (("Account", account_problem), ("Subaccount", subaccount_problem)):
            problem = check(model, line.get(name))
            if problem:
                problems.line(index, name, problem)
        if line.get("Subaccount"):
            line["Subaccount"] = subaccount_cd(line["Subaccount"])
        account = model.get("Account", str(line.get("Account") or ""))
        line["Description"] = account["Description"] if account else None
        for name in ("DebitAmount", "CreditAmount"):
            line[name] = line.get(name) if line.get(name) is not None else ZERO
            if line[name] < 0:
                problems.line(index, name, f"'{name}' cannot be negative.")
        debit, credit = debit + line["DebitAmount"], credit + line["CreditAmount"]
    return debit, credit


def release_journaltransaction(model: AcumaticaModel, batch: dict | None, now) -> str | None:
    """The release process: the reason it fails, or None once the batch is released."""
    if batch is None:
        return "No entity satisfies the condition."
    if batch["Status"] in RELEASED:
        return f"The {batch['BatchNbr']} batch has already been released."
    if batch.get("Hold"):
        return f"The {batch['BatchNbr']} batch is on hold and cannot be released."
    lines = batch.get("Details") or []
    if not lines:
        return f"The {batch['BatchNbr']} batch contains no transactions and cannot be released."
    debit = sum((line["DebitAmount"] for line in lines), ZERO)
    credit = sum((line["CreditAmount"] for line in lines), ZERO)
    if debit != credit:
        return "Batch is out of balance, please review."
    problem = period_problem(model, batch["PostPeriod"])
    for line in lines:
        problem = (
            problem or account_problem(model, line.get("Account")) or subaccount_problem(model, line.get("Subaccount"))
        )
    if problem:
        return problem
    status = "Posted" if model.settings.post_on_release else "Unposted"
    model.tables["JournalTransaction"].put({**batch, "Status": status, "LastModifiedDateTime": now})
    return None


def _not_in_list(value) -> str:
    return f"The '{value}' value is not in the list of allowed values."
