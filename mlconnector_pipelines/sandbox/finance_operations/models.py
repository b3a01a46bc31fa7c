"""F&O's state and rules, apart from its HTTP answers: reference data, number sequences, journals.

Rows are never changed in place: a write stores a new dict. That makes a snapshot a shallow copy
of a few dicts, which is how a `$batch` changeset is all-or-nothing (snapshot, apply, restore on
the first failure). Lookups are by key; a journal keeps its running totals, voucher balances and
highest line number, so adding a line costs the same in a journal of ten lines or ten thousand.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal

from . import FinanceOperationsSettings, seed
from .entities import EntitySet, entity_sets
from .ledger import LedgerRules, day_of

HEADER_ENTITY = "LedgerJournalHeaderEntity"  # the AOT names the Infolog reports
LINE_ENTITY = "LedgerJournalLineEntity"
TEXT_LIMIT = 60  # Description and Text are 60-character fields
ZERO = Decimal(0)


class WriteFailed(Exception):
    """A write the business logic refused; F&O reports it as an AxODataWriteException with its Infolog."""

    def __init__(self, entity: str, messages: list[str]):
        super().__init__("; ".join(messages))
        self.entity = entity
        self.messages = messages

    @property
    def infolog(self) -> str:
        entries = "; ".join(f"Error: {m}." for m in [*self.messages, "Update has been canceled"])
        return f"Write failed for table row of type '{self.entity}'. Infolog: {entries}"


class NotFound(Exception):
    """No row has the key."""


def fold(value):
    """Keys compare as SQL Server's case-insensitive collation compares them."""
    return value.casefold() if isinstance(value, str) else value


class Table:
    """One entity set's rows by key, in insertion order, each with a version for its ETag."""

    def __init__(self, entity: EntitySet, rows: list[dict] = ()):
        self.entity = entity
        self.rows: dict[tuple, dict] = {}
        self.versions: dict[tuple, int] = {}
        for row in rows:
            self.put(row)

    def key(self, row: dict) -> tuple:
        return tuple(fold(row[name]) for name in self.entity.keys)

    def get(self, key: tuple) -> dict | None:
        return self.rows.get(tuple(fold(v) for v in key))

    def version(self, row: dict) -> int:
        return self.versions.get(self.key(row), 0)

    def put(self, row: dict) -> dict:
        key = self.key(row)
        self.rows[key] = row
        self.versions[key] = self.versions.get(key, 0) + 1
        return row

    def remove(self, row: dict) -> None:
        key = self.key(row)
        del self.rows[key]
        self.versions.pop(key, None)

    def copy(self) -> Table:
        twin = Table(self.entity)
        twin.rows, twin.versions = dict(self.rows), dict(self.versions)
        return twin


@dataclass
class Journal:
    """What a journal keeps beside its rows, so a line's cost does not grow with the journal."""

    company: str
    batch: str
    lines: dict[Decimal, dict] = field(default_factory=dict)  # line number -> row, in creation order
    balances: dict[str, Decimal] = field(default_factory=dict)  # voucher -> debits minus credits
    last_voucher: str | None = None
    max_line: Decimal = ZERO

    def copy(self) -> Journal:
        return replace(self, lines=dict(self.lines), balances=dict(self.balances))


def today_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT12:00:00Z")


class FinanceOperationsModel:
    def __init__(self, settings: FinanceOperationsSettings):
        self.settings = settings
        self.sets = entity_sets(settings.fiscal_period_entity)
        self.reset()

    # -- the seed --------------------------------------------------------------------------------

    def reset(self) -> None:
        s = self.settings
        seeded = {
            "Ledgers": seed.ledgers(),
            "MainAccounts": seed.main_accounts(),
            "MainAccountLegalEntities": seed.main_account_overrides(),
            "DimensionAttributes": seed.dimension_attributes(),
            "DimensionIntegrationFormats": seed.integration_formats(s.ledger_dimension_format),
            "DimensionParameters": seed.dimension_parameters(s.segment_delimiter),
            "FinancialDimensionValues": seed.dimension_values(),
            "FiscalPeriods": seed.fiscal_periods(),
            s.fiscal_period_entity: seed.ledger_period_statuses(),
            "JournalNames": seed.journal_names(),
        }
        self.tables = {name: Table(entity, seeded.get(name, [])) for name, entity in self.sets.items()}
        default_format = next(
            r["FinancialDimensionFormat"].split("-")
            for r in seeded["DimensionIntegrationFormats"]
            if r["DimensionFormatType"] == "DataEntityDefaultDimensionFormat" and r["IsActive"] == "Yes"
        )
        self.rules = LedgerRules(
            seeded["MainAccounts"],
            seeded["MainAccountLegalEntities"],
            seeded["FinancialDimensionValues"],
            seeded["FiscalPeriods"],
            list(s.ledger_dimension_format),
            default_format,
            s.segment_delimiter,
        )
        self.statuses = {(r["LegalEntityId"], r["YearName"], r["PeriodName"]): r["PeriodStatus"] for r in self.periods}
        self.ledger_access = {(r["LegalEntityId"], r["YearName"], r["PeriodName"]): r["LedgerAccessLevel"]
                              for r in self.periods}  # fmt: skip
        self.journals: dict[tuple[str, str], Journal] = {}
        self.batch_numbers = {company: s.batch_number_start for company in seed.COMPANIES}
        self.voucher_numbers: dict[tuple[str, str], int] = {}

    @property
    def headers(self) -> Table:
        return self.tables["LedgerJournalHeaders"]

    @property
    def lines(self) -> Table:
        return self.tables["LedgerJournalLines"]

    @property
    def periods(self) -> list[dict]:
        return list(self.tables[self.settings.fiscal_period_entity].rows.values())

    # -- all or nothing ----------------------------------------------------------------------------

    def snapshot(self) -> tuple:
        journals = {key: journal.copy() for key, journal in self.journals.items()}
        return self.headers.copy(), self.lines.copy(), journals, dict(self.batch_numbers), dict(self.voucher_numbers)

    def restore(self, snapshot: tuple) -> None:
        headers, lines, self.journals, self.batch_numbers, self.voucher_numbers = snapshot
        self.tables["LedgerJournalHeaders"], self.tables["LedgerJournalLines"] = headers, lines

    # -- companies -----------------------------------------------------------------------------------

    def company_of(self, fields: dict, entity: str) -> str:
        company = (fields.get("dataAreaId") or self.settings.default_company).lower()
        if company not in seed.COMPANIES:
            raise WriteFailed(entity, [f"Company '{company}' does not exist"])
        return company

    def journal(self, company: str, batch: str) -> Journal | None:
        return self.journals.get((company.lower(), fold(batch)))

    # -- headers -------------------------------------------------------------------------------------

    def create_header(self, fields: dict) -> dict:
        company = self.company_of(fields, HEADER_ENTITY)
        problems = []
        if fields.get("JournalBatchNumber"):
            problems.append(
                f"Journal batch number '{fields['JournalBatchNumber']}' cannot be used: the number sequence "
                f"'Journal batch number' of {company} does not allow manual numbers or changes to numbers"
            )
        if fields.get("IsPosted") == "Yes":
            problems.append("Field 'IsPosted' cannot be set: journals are posted in Finance and Operations")
        name = fields.get("JournalName")
        journal_name = self.tables["JournalNames"].get((company, name)) if name else None
        if not name:
            problems.append("Field 'Name' must be filled in")
        elif journal_name is None:
            problems.append(f"The value '{name}' in field 'Name' is not found in the related table 'Journal names'")
        description = fields.get("Description") or (journal_name or {}).get("Description", "")
        problems += _too_long("Description", description)
        if problems:
            raise WriteFailed(HEADER_ENTITY, problems)
        batch = f"{self.batch_numbers[company]:05d}"
        self.batch_numbers[company] += 1
        header = {
            "dataAreaId": company,
            "JournalBatchNumber": batch,
            "JournalName": journal_name["Name"],
            "Description": description,
            "PostingLayer": fields.get("PostingLayer") or journal_name["PostingLayer"],
            "IsPosted": "No",
            "JournalTotalDebit": ZERO,
            "JournalTotalCredit": ZERO,
        }
        self.journals[(company, fold(batch))] = Journal(company, batch)
        return self.headers.put(header)

    def header(self, key: tuple) -> dict:
        header = self.headers.get(key)
        if header is None:
            raise NotFound(key)
        return header

    def update_header(self, key: tuple, changes: dict) -> dict:
        header = self.header(key)
        problems = _posted_problems(header, "changed")
        if "IsPosted" in changes and changes["IsPosted"] != header["IsPosted"]:
            problems.append("Field 'IsPosted' cannot be edited: journals are posted in Finance and Operations")
        if "JournalName" in changes and fold(changes["JournalName"]) != fold(header["JournalName"]):
            if self.tables["JournalNames"].get((header["dataAreaId"], changes["JournalName"])) is None:
                problems.append(
                    f"The value '{changes['JournalName']}' in field 'Name' is not found in the related table "
                    "'Journal names'"
                )
        problems += _too_long("Description", changes.get("Description", ""))
        if problems:
            raise WriteFailed(HEADER_ENTITY, problems)
        editable = {k: v for k, v in changes.items() if k in ("JournalName", "PostingLayer") and v is not None}
        if "Description" in changes:
            editable["Description"] = changes["Description"] or ""
        return self.headers.put({**header, **editable})

    def delete_header(self, key: tuple) -> None:
        header = self.header(key)
        problems = _posted_problems(header, "deleted")
        if problems:
            raise WriteFailed(HEADER_ENTITY, problems)
        journal = self.journal(header["dataAreaId"], header["JournalBatchNumber"])
        for line in journal.lines.values():
            self.lines.remove(line)
        del self.journals[(journal.company, fold(journal.batch))]
        self.headers.remove(header)

    # -- lines ---------------------------------------------------------------------------------------

    def create_line(self, fields: dict) -> dict:
        company = self.company_of(fields, LINE_ENTITY)
        batch = fields.get("JournalBatchNumber") or ""
        journal = self.journal(company, batch) if batch else None
        problems = self._journal_problems(company, batch, journal)
        number = _line_number(fields.get("LineNumber"))
        if journal is not None and number is not None and number in journal.lines:
            problems.append(
                f"Cannot create a record in Journal lines (LedgerJournalTrans). Journal batch number, Line number: "
                f"{journal.batch}, {number}. The record already exists"
            )
        line = self._line_row(company, journal, fields)
        problems += self.line_problems(company, line)
        if problems:
            raise WriteFailed(LINE_ENTITY, problems)
        line["LineNumber"] = number if number is not None else journal.max_line + 1
        if not line["Voucher"]:
            line["Voucher"] = self._next_voucher(journal)
        self._add_line(journal, line)
        return line

    def line(self, key: tuple) -> dict:
        line = self.lines.get(key)
        if line is None:
            raise NotFound(key)
        return line

    def update_line(self, key: tuple, changes: dict) -> dict:
        old = self.line(key)
        journal = self.journal(old["dataAreaId"], old["JournalBatchNumber"])
        problems = _posted_problems(self._header_of(journal), "changed")
        new = self._line_row(journal.company, journal, {**old, **changes})
        new["LineNumber"], new["Voucher"] = old["LineNumber"], new["Voucher"] or old["Voucher"]
        problems += self.line_problems(journal.company, new)
        if problems:
            raise WriteFailed(LINE_ENTITY, problems)
        journal.lines[new["LineNumber"]] = new  # in place: the line keeps its position
        for voucher, amount in ((old["Voucher"], -_net(old)), (new["Voucher"], _net(new))):
            journal.balances[voucher] = journal.balances.get(voucher, ZERO) + amount
        self.lines.put(new)
        self._total(journal, new["DebitAmount"] - old["DebitAmount"], new["CreditAmount"] - old["CreditAmount"])
        return new

    def delete_line(self, key: tuple) -> None:
        line = self.line(key)
        journal = self.journal(line["dataAreaId"], line["JournalBatchNumber"])
        problems = _posted_problems(self._header_of(journal), "changed")
        if problems:
            raise WriteFailed(LINE_ENTITY, problems)
        self._remove_line(journal, line)

    def line_problems(self, company: str, line: dict) -> list[str]:
        """Every rule a line's values break (the journal's own state aside)."""
        problems = []
        if line["Company"] and line["Company"].lower() != company:
            problems.append("This entity doesn't support intercompany transactions")
        if not line["CurrencyCode"]:
            problems.append("Field 'Currency' must be filled in")
        elif line["CurrencyCode"].upper() not in seed.CURRENCIES:
            problems.append(
                f"The value '{line['CurrencyCode']}' in field 'Currency' is not found in the related table 'Currency'"
            )
        if line["DebitAmount"] != ZERO and line["CreditAmount"] != ZERO:
            problems.append(
                f"A line cannot have both a debit ({line['DebitAmount']}) and a credit ({line['CreditAmount']}) amount"
            )
        problems += _too_long("Text", line["Text"])
        return problems + self.account_problems(company, line)

    def account_problems(self, company: str, line: dict) -> list[str]:
        """The account, offset account, default dimensions and period on the line's date."""
        on = day_of(line["TransDate"])
        problems = []
        for kind, display, what in (
            (line["AccountType"], line["AccountDisplayValue"], "ledger account"),
            (line["OffsetAccountType"], line["OffsetAccountDisplayValue"], "offset ledger account"),
        ):
            if kind != "Ledger" and display:
                problems.append(
                    f"Account type {kind} is not simulated: the sandbox has no {kind} records (account '{display}')"
                )
            elif display or what == "ledger account":
                problems += self.rules.ledger_account(company, display, on, what)
        if line["DefaultDimensionDisplayValue"]:
            problems += self.rules.default_dimensions(company, line["DefaultDimensionDisplayValue"], on)
        return problems + self.rules.period_problem(company, on, self.statuses, self.ledger_access)

    def _journal_problems(self, company: str, batch: str, journal: Journal | None) -> list[str]:
        if not batch:
            return ["Field 'Journal batch number' must be filled in"]
        if journal is None:
            return [
                f"The value '{batch}' in field 'Journal batch number' is not found in the related table "
                f"'Journal table' of company {company}"
            ]
        return _posted_problems(self._header_of(journal), "changed")

    def _line_row(self, company: str, journal: Journal | None, fields: dict) -> dict:
        offset = fields.get("OffsetAccountDisplayValue") or ""
        return {
            "dataAreaId": company,
            "JournalBatchNumber": journal.batch if journal else fields.get("JournalBatchNumber") or "",
            "LineNumber": None,
            "AccountType": fields.get("AccountType") or "Ledger",
            "AccountDisplayValue": fields.get("AccountDisplayValue") or "",
            "DebitAmount": fields.get("DebitAmount") or ZERO,
            "CreditAmount": fields.get("CreditAmount") or ZERO,
            "CurrencyCode": fields.get("CurrencyCode") or "",
            "TransDate": fields.get("TransDate") or today_stamp(),
            "Text": fields.get("Text") or "",
            "Voucher": fields.get("Voucher") or "",
            "OffsetAccountType": fields.get("OffsetAccountType") or "Ledger",
            "OffsetAccountDisplayValue": offset,
            "DefaultDimensionDisplayValue": fields.get("DefaultDimensionDisplayValue") or "",
            "Company": fields.get("Company") or company.upper(),
            "OffsetCompany": company.upper() if offset else "",
        }

    def _header_of(self, journal: Journal) -> dict:
        return self.headers.get((journal.company, journal.batch))

    def _next_voucher(self, journal: Journal) -> str:
        """The running voucher until it balances, then the next number of the journal name's series."""
        current = journal.last_voucher
        if current is not None and journal.balances.get(current, ZERO) != ZERO:
            return current
        name = self._header_of(journal)["JournalName"]
        _, series, prefix = seed.JOURNAL_NAMES[name]
        key = (journal.company, series)
        number = self.voucher_numbers.get(key, 1)
        self.voucher_numbers[key] = number + 1
        return f"{prefix}{number:06d}"

    def _add_line(self, journal: Journal, line: dict) -> None:
        number = line["LineNumber"]
        journal.lines[number] = line
        journal.max_line = max(journal.max_line, number)
        voucher = line["Voucher"]
        journal.balances[voucher] = journal.balances.get(voucher, ZERO) + _net(line)
        journal.last_voucher = voucher
        self.lines.put(line)
        self._total(journal, line["DebitAmount"], line["CreditAmount"])

    def _remove_line(self, journal: Journal, line: dict) -> None:
        number = line["LineNumber"]
        del journal.lines[number]
        if number == journal.max_line:
            journal.max_line = max(journal.lines, default=ZERO)
        voucher = line["Voucher"]
        journal.balances[voucher] -= _net(line)
        self.lines.remove(line)
        self._total(journal, -line["DebitAmount"], -line["CreditAmount"])

    def _total(self, journal: Journal, debit: Decimal, credit: Decimal) -> None:
        header = self._header_of(journal)
        self.headers.put(
            {
                **header,
                "JournalTotalDebit": header["JournalTotalDebit"] + debit,
                "JournalTotalCredit": header["JournalTotalCredit"] + credit,
            }
        )

    # -- posting (a person in the F&O client; there is no API for it) ----------------------------------

    def post(self, company: str, batch: str) -> dict:
        journal = self.journal(company, batch)
        if journal is None:
            raise NotFound((company, batch))
        header = self._header_of(journal)
        problems = _posted_problems(header, "posted again")
        if not journal.lines:
            problems.append(f"Journal {journal.batch} has no lines to post")
        for line in journal.lines.values():
            problems += [f"Line {line['LineNumber']}: {p}" for p in self.account_problems(journal.company, line)]
        problems += _voucher_problems(journal)
        if problems:
            raise WriteFailed("LedgerJournalTable", problems)
        name = self.tables["JournalNames"].get((journal.company, header["JournalName"])) or {}
        if name.get("DeleteLinesAfterPosting") == "Yes":  # the posted vouchers stay in the ledger, not here
            for line in journal.lines.values():
                self.lines.remove(line)
            journal.lines.clear()
        return self.headers.put({**header, "IsPosted": "Yes"})

    # -- periods (the Ledger calendar page) --------------------------------------------------------

    def set_period_status(
        self, legal_entity: str, year: str, period: str, status: str, ledger_access: str | None = None
    ) -> dict:
        """A period's status, and the general ledger's access to it (an open period may still deny it)."""
        table = self.tables[self.settings.fiscal_period_entity]
        ledger = legal_entity.upper()
        row = table.get((ledger, seed.CALENDAR, str(year), period))
        if row is None:
            raise NotFound((legal_entity, year, period))
        access = ledger_access or row.get("LedgerAccessLevel") or "All"
        self.statuses[(ledger, str(year), row["PeriodName"])] = status
        self.ledger_access[(ledger, str(year), row["PeriodName"])] = access
        return table.put({**row, "PeriodStatus": status, "LedgerAccessLevel": access})

    # -- what tests inspect --------------------------------------------------------------------------

    def dump_journals(self) -> list[dict]:
        result = []
        for header in self.headers.rows.values():
            journal = self.journal(header["dataAreaId"], header["JournalBatchNumber"])
            result.append({**header, "lines": list(journal.lines.values())})
        return result


def _net(line: dict) -> Decimal:
    return line["DebitAmount"] - line["CreditAmount"]


def _line_number(value: Decimal | None) -> Decimal | None:
    """`1.0` and `1` are one line number; it answers as `1`."""
    if value is None:
        return None
    return Decimal(int(value)) if value == value.to_integral_value() else value.normalize()


def _too_long(label: str, value: str) -> list[str]:
    if len(value or "") > TEXT_LIMIT:
        return [f"The value of field '{label}' is {len(value)} characters long; at most {TEXT_LIMIT} are allowed"]
    return []


def _posted_problems(header: dict, verb: str) -> list[str]:
    if header["IsPosted"] == "Yes":
        return [f"Journal {header['JournalBatchNumber']} has been posted and cannot be {verb}"]
    return []


def _voucher_problems(journal: Journal) -> list[str]:
    """Each voucher must balance and have one transaction date (posting-fail-imbalance.md)."""
    dates: dict[str, set[str]] = {}
    for line in journal.lines.values():
        dates.setdefault(line["Voucher"], set()).add(line["TransDate"][:10])
    problems = []
    for voucher, days in dates.items():
        if len(days) > 1:
            problems.append(f"A voucher can have only one transaction date: voucher {voucher} has {sorted(days)}")
        difference = journal.balances.get(voucher, ZERO)
        if difference != ZERO:
            problems.append(
                f"The transactions on voucher {voucher} do not balance as per {min(days)}. "
                f"(accounting currency: {difference:.2f} - reporting currency: {difference:.2f})"
            )
    return problems
