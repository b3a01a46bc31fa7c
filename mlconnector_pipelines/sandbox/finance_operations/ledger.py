"""The ledger's reference rules a journal line must pass: account, dimensions and period.

Built once from the reference rows with O(1) lookups (main accounts by id, dimension values by
(dimension, legal entity, value), operating periods by month), so a changeset of thousands of
lines validates in linear time. Texts follow the Posting FAQ's wording ("Entity does not
exist", "Suspended value", "Inactive value", "Missing value in ledger account"), each naming
the value at fault.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from .entities import NO_DATE


def parse_display_value(text: str, delimiter: str, segments: int) -> list[str]:
    """Split a display value on the delimiter; a backslash escapes the next character.

    Missing trailing segments are blank; segments past the format's are dropped (as the
    integration docs say of `110110-002-04-ABC`)."""
    values, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == delimiter:
            values.append("".join(current))
            current = []
        else:
            current.append(char)
    values.append("".join(current))
    return (values + [""] * segments)[:segments]


def day_of(stamp: str) -> date:
    return date.fromisoformat(stamp[:10])


def _active(row: dict, on: date) -> bool:
    start, end = row.get("ActiveFrom") or NO_DATE, row.get("ActiveTo") or NO_DATE
    if start != NO_DATE and on < day_of(start):
        return False
    return end == NO_DATE or on <= day_of(end)


def _range(row: dict) -> str:
    start, end = row.get("ActiveFrom") or NO_DATE, row.get("ActiveTo") or NO_DATE
    parts = [f"from {start[:10]}"] if start != NO_DATE else []
    parts.append(f"until {end[:10]}" if end != NO_DATE else "without end")
    return "active " + " ".join(parts)


@dataclass
class Period:
    year: str
    name: str
    start: date
    end: date


class LedgerRules:
    """Checks against one chart of accounts, its dimensions and one fiscal calendar."""

    def __init__(
        self,
        accounts: list[dict],
        overrides: list[dict],
        dimension_values: list[dict],
        periods: list[dict],
        ledger_format: list[str],
        default_format: list[str],
        delimiter: str,
    ):
        self.accounts = {r["MainAccountId"].casefold(): r for r in accounts}
        self.overrides = {(r["MainAccountId"].casefold(), r["LegalEntityId"].casefold()): r for r in overrides}
        self.values = {
            (r["FinancialDimension"], r["LegalEntityId"].casefold(), r["DimensionValue"].casefold()): r
            for r in dimension_values
        }
        self.operating = {
            (day_of(p["StartDate"]).year, day_of(p["StartDate"]).month): Period(
                p["FiscalYear"], p["PeriodName"], day_of(p["StartDate"]), day_of(p["EndDate"])
            )
            for p in periods
            if p["Type"] == "Operating"
        }
        self.ledger_format = ledger_format
        self.default_format = default_format
        self.delimiter = delimiter

    # -- ledger accounts ---------------------------------------------------------------------------

    def ledger_account(self, company: str, display: str, on: date, what: str = "ledger account") -> list[str]:
        """Problems of a ledger account display value in `company` on `on`; empty when it is valid."""
        segments = parse_display_value(display, self.delimiter, len(self.ledger_format))
        problems = []
        for dimension, value in zip(self.ledger_format, segments, strict=True):
            if dimension == "MainAccount":
                problems += self.main_account(company, value, on, f"{what} '{display}'")
            elif value:
                problems += self.dimension_value(company, dimension, value, on, f"{what} '{display}'")
        return problems

    def default_dimensions(self, company: str, display: str, on: date) -> list[str]:
        segments = parse_display_value(display, self.delimiter, len(self.default_format))
        problems = []
        for dimension, value in zip(self.default_format, segments, strict=True):
            if value:
                problems += self.dimension_value(company, dimension, value, on, f"default dimensions '{display}'")
        return problems

    def main_account(self, company: str, value: str, on: date, where: str) -> list[str]:
        if not value:
            return [f"Missing value in {where}: MainAccount must be filled in"]
        account = self.accounts.get(value.casefold())
        if account is None:
            return [
                f"Entity does not exist: main account '{value}' in {where} "
                "(MainAccount is not a valid dimension value in the account structure)"
            ]
        override = self.overrides.get((value.casefold(), company.casefold()))
        if account["IsSuspended"] == "Yes":
            return [f"Suspended value: main account '{value}' in {where} is suspended"]
        if override is not None and override["IsSuspended"] == "Yes":
            return [
                f"Suspended value: main account '{value}' in {where} is suspended for legal entity {company.upper()}"
            ]
        for row in (account, override):
            if row is not None and not _active(row, on):
                return [f"Inactive value: main account '{value}' in {where} is not active on {on} ({_range(row)})"]
        if account["DoNotAllowManualEntry"] == "Yes" or (override or {}).get("DoNotAllowManualEntry") == "Yes":
            return [f"Main account '{value}' in {where} does not allow manual entry"]
        return []

    def dimension_value(self, company: str, dimension: str, value: str, on: date, where: str) -> list[str]:
        folded = value.casefold()
        row = self.values.get((dimension, company.casefold(), folded)) or self.values.get((dimension, "", folded))
        if row is None:
            return [f"Entity does not exist: value '{value}' for dimension {dimension} in {where}"]
        if row["IsSuspended"] == "Yes":
            return [f"Suspended value: value '{value}' for dimension {dimension} in {where} is suspended"]
        if not _active(row, on):
            return [f"Inactive value: value '{value}' for dimension {dimension} in {where} is not active on {on}"]
        if row["IsBlockedForManualEntry"] == "Yes":
            return [f"Value '{value}' for dimension {dimension} in {where} is blocked for manual entry"]
        return []

    # -- periods -------------------------------------------------------------------------------------

    def period_of(self, on: date) -> Period | None:
        return self.operating.get((on.year, on.month))

    def period_problem(
        self, company: str, on: date, statuses: dict[tuple[str, str, str], str], access: dict[tuple[str, str, str], str]
    ) -> list[str]:
        """The operating period of `on` must be Open in the company's ledger, with access for the general ledger."""
        period = self.period_of(on)
        if period is None:
            return [f"The date {on} is not in an open period: no period of fiscal calendar 'Fiscal' covers it"]
        key = (company.upper(), period.year, period.name)
        status = statuses.get(key, "Open")
        if status != "Open":
            return [
                f"The date {on} is not in an open period: period '{period.name}' of fiscal year {period.year} "
                f"({period.start} - {period.end}) has status {status} in ledger {company.upper()}"
            ]
        if access.get(key, "All") == "NoAccess":
            return [
                f"The date {on} is not in an open period: period '{period.name}' of fiscal year {period.year} gives "
                f"the general ledger no access in ledger {company.upper()}"
            ]
        return []
