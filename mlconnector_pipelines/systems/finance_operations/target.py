"""General journals in F&O as a posting target: LedgerJournalHeaders and LedgerJournalLines.

The natural key is the header's Description (`MLC <journal> <partition>`), found with an exact
`eq` filter in the legal entity before every create. Lines carry the plan's line numbers as
LineNumber (part of the line's key), so the lines a journal holds say which remain to write.
Header first (F&O assigns JournalBatchNumber from its number sequence), then lines in atomic
`$batch` changesets.

Validation reads, without writing: the legal entity's ledger (chart of accounts, fiscal calendar),
its journal names, main accounts and their legal-entity overrides (suspended, active dates, manual
entry blocked), financial dimension values (shared or of this legal entity, suspended, active
dates), and the period's status for the legal entity. Reference data is read once per target.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from ...core.errors import ConfigError, RequestFailedError
from ...core.posting import LinesRefused, Plan, PlannedLine, Problem, WrittenDocument, WrittenLine
from .client import SYSTEM, BatchRequest, ChangesetFailed, FinanceOperationsClient, key_segment, literal
from .config import FinanceOperationsConfig

MAIN_ACCOUNT = "MainAccount"
LEDGER_FORMAT_TYPE = "DataEntityLedgerDimensionFormat"
_UNSET_DATES = ("1900-01-01", "")  # how F&O writes an empty date
# What a read-back compares; nothing else of a line is fetched.
_LINE_FIELDS = ("LineNumber", "AccountDisplayValue", "DebitAmount", "CreditAmount", "CurrencyCode", "Text")
# Newer environments publish the ledger calendar periods as V2; older ones under the first name.
FISCAL_PERIOD_ENTITIES = ("LedgerFiscalPeriodsV2", "LedgerFiscalPeriods")


def document_key(journal: str, partition: str, adjustment: int = 0) -> str:
    """The header Description that identifies the journal of one period (≤ 60 characters, as F&O allows)."""
    key = f"MLC {journal} {partition}".strip() + (f" adj{adjustment}" if adjustment else "")
    if "*" in key:  # F&O reads `*` in an `eq` filter as a wildcard: the lookup could match other journals
        raise ConfigError(f"journal key {key!r} holds '*', which F&O's filters read as a wildcard; rename the journal")
    if len(key) > 60:
        raise ConfigError(f"journal key {key!r} is longer than the 60 characters F&O keeps in a Description")
    return key


# DimensionParameters.DimensionSegmentDelimiter is an enum in F&O's metadata: its member's name is answered.
_DELIMITERS = {"hyphen": "-", "hypen": "-", "period": ".", "dot": ".", "underscore": "_", "bar": "|", "tilde": "~"}


def segment_delimiter(value: Any) -> str:
    """The characters between a display value's segments, from DimensionParameters' answer: an enum member's name
    (`Hyphen`, `DoubleBar`…, as F&O answers it) or the characters themselves (as another server may)."""
    text = str(value or "").strip()
    if not text:
        return "-"
    name = text.rsplit("'", 2)[-2] if text.endswith("'") else text.rsplit(".", 1)[-1]  # a qualified literal too
    doubled = name.lower().startswith("double")
    character = _DELIMITERS.get(name.lower().removeprefix("double"))
    if character is not None:
        return character * 2 if doubled else character
    if not any(ch.isalnum() for ch in text):
        return text
    raise ConfigError(
        f"finance_operations: the environment's dimension segment delimiter is {text!r}, which the product does not "
        "know: set finance_operations.segment_delimiter to its characters"
    )


def _split_escaped(text: str, delimiter: str) -> list[str]:
    """Segments of a display value whose values may hold the delimiter (one or two characters), each character of
    it escaped with a backslash."""
    segments, current, index = [], [], 0
    while index < len(text):
        if text[index] == "\\" and index + 1 < len(text):
            current.append(text[index + 1])
            index += 2
        elif text.startswith(delimiter, index):
            segments.append("".join(current))
            current = []
            index += len(delimiter)
        else:
            current.append(text[index])
            index += 1
    segments.append("".join(current))
    return segments


def _day(value: Any) -> str:
    return str(value or "")[:10]


def _active(record: dict, on: date) -> bool:
    start, end = _day(record.get("ActiveFrom")), _day(record.get("ActiveTo"))
    day = on.isoformat()
    return (start in _UNSET_DATES or start <= day) and (end in _UNSET_DATES or day <= end)


def _no_access(level: str) -> bool:
    """A module access level that denies it: `NoAccess` (or an enum's qualified name ending so), `None`."""
    name = level.rsplit("'", 2)[-2] if level.count("'") >= 2 else level.rsplit(".", 1)[-1]
    return "".join(ch for ch in name.casefold() if ch.isalpha()) in ("noaccess", "none", "nousers")


def _yes(value: Any) -> bool:
    return str(value).lower() in ("yes", "true", "1")


@dataclass
class Ledger:
    legal_entity: str
    chart_of_accounts: str
    fiscal_calendar: str


@dataclass
class _Reference:
    """What validation reads, once per target."""

    ledgers: dict[str, Ledger] = field(default_factory=dict)  # by legal entity, lower case
    journal_names: dict[str, set[str]] = field(default_factory=dict)  # legal entity → names
    accounts: dict[str, dict[str, dict]] = field(default_factory=dict)  # chart → account → record
    overrides: dict[str, dict[tuple[str, str], dict]] = field(default_factory=dict)  # chart → (account, LE)
    dimension_values: dict[str, dict[str, list[dict]]] = field(default_factory=dict)  # dimension → value → rows
    periods: dict[str, list[dict]] = field(default_factory=dict)  # calendar → FiscalPeriods rows
    period_status: dict[tuple[str, str, str, str], tuple[str, str]] = field(
        default_factory=dict
    )  # (LE, cal, year, period)


class FinanceOperationsJournalTarget:
    system = SYSTEM

    def __init__(self, client: FinanceOperationsClient, cfg: FinanceOperationsConfig):
        self.client = client
        self.cfg = cfg
        self.max_lines_per_write = cfg.lines_per_batch
        self.writes_in_flight = cfg.batches_in_flight
        self.outcome_settle_seconds = cfg.http.outcome_settle_seconds
        self._format: list[str] | None = cfg.ledger_dimension_format
        self._delimiter: str | None = cfg.segment_delimiter
        self._ref = _Reference()

    def close(self) -> None:
        self.client.close()

    def metadata(self) -> dict[str, Any]:
        return {**self.client.http.stats.as_metadata("http_"), "tokens_acquired": self.client.tokens.tokens_acquired}

    # -- the ledger account display value --------------------------------------------------------

    def ledger_format(self) -> list[str]:
        """Segment names of a ledger account display value, MainAccount included, in order."""
        if self._format is None:
            # Read whole and picked here: a handful of rows, and no enum literal for a server to misread.
            formats = [
                f
                for f in self.client.collection("DimensionIntegrationFormats")
                if str(f.get("DimensionFormatType")).endswith(LEDGER_FORMAT_TYPE)
            ]
            active = [f for f in formats if _yes(f.get("IsActive"))] or formats
            if not active:
                raise ConfigError(
                    "finance_operations: the environment has no ledger dimension integration format (General ledger "
                    "> Chart of accounts > Dimensions > Financial dimension configuration for integrating "
                    "applications); set one there, or give finance_operations.ledger_dimension_format"
                )
            text = str(active[0]["FinancialDimensionFormat"])
            between = self.delimiter() if self.delimiter() in text else "-"  # the format spelt with the delimiter
            self._format = [s.strip() for s in text.split(between) if s.strip()]
        if MAIN_ACCOUNT not in self._format:
            raise ConfigError(f"finance_operations: the ledger dimension format {self._format} has no MainAccount")
        return self._format

    def delimiter(self) -> str:
        if self._delimiter is None:
            try:
                parameters = self.client.first("DimensionParameters")
            except RequestFailedError as exc:
                if exc.status != 404:
                    raise
                parameters = None
            self._delimiter = segment_delimiter((parameters or {}).get("DimensionSegmentDelimiter"))
        return self._delimiter

    def display_value(self, account: str, dimensions: Sequence[tuple[str, str]], escaped: bool = True) -> str:
        """`605140-001-02`: segments in the format's order, each delimiter character inside a value escaped with a
        backslash (so `A-` before `--` cannot run into it), trailing blanks dropped."""
        values = dict(dimensions)
        delimiter = self.delimiter()
        segments = [
            "".join(
                "\\" + ch if escaped and ch in delimiter else ch
                for ch in (account if name == MAIN_ACCOUNT else values.get(name, ""))
            )
            for name in self.ledger_format()
        ]
        while segments and segments[-1] == "":
            segments.pop()
        return delimiter.join(segments)

    def read_display_value(self, text: str, planned: PlannedLine | None) -> tuple[str, tuple[tuple[str, str], ...]]:
        """A written line's account and dimensions: its planned line's when the text is what that line renders to,
        escaped or not (a server need not escape a delimiter inside a value when it answers: `618200-A-1-001`
        split on it read BusinessUnit `A`, CostCenter `1`, and failed a correct journal); else read from the text."""
        if planned is not None and text in (
            self.display_value(planned.account, planned.dimensions),
            self.display_value(planned.account, planned.dimensions, escaped=False),
        ):
            return planned.account, tuple((name, value) for name, value in planned.dimensions if value)
        return self.parse_display_value(text)

    def parse_display_value(self, text: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        delimiter = self.delimiter()
        segments = _split_escaped(text, delimiter) if "\\" in text else text.split(delimiter)
        names = self.ledger_format()
        by_name = dict(zip(names, segments + [""] * (len(names) - len(segments)), strict=False))
        dims = tuple((n, by_name[n]) for n in names if n != MAIN_ACCOUNT and by_name.get(n))
        return by_name.get(MAIN_ACCOUNT, ""), dims

    # -- validation --------------------------------------------------------------------------------

    def validate(self, plan: Plan) -> list[Problem]:
        legal_entity = plan.company
        ledger = self._ledger(legal_entity)
        if ledger is None:
            known = ", ".join(sorted(self._ref.ledgers)) or "none"
            return [Problem(None, f"legal entity {legal_entity!r} has no ledger in this environment (have: {known})")]
        self._prefetch(plan, ledger)
        problems: list[Problem] = []
        journal_name = plan.header["journal_name"]
        if journal_name not in self._journal_names(legal_entity):
            have = ", ".join(sorted(self._journal_names(legal_entity))) or "none"
            problems.append(
                Problem(None, f"journal name {journal_name!r} does not exist in {legal_entity} (have: {have})")
            )
        posting = date.fromisoformat(plan.header["posting_date"])
        problems += self._period_problems(ledger, posting)
        format_names = self.ledger_format()
        accounts = self._accounts(ledger.chart_of_accounts)
        overrides = self._overrides(ledger.chart_of_accounts)
        # A journal repeats a few accounts and dimension values over thousands of lines: each is judged once.
        account_reasons: dict[str, str | None] = {}
        dimension_reasons: dict[tuple[str, str], str | None] = {}
        for line in plan.lines:
            if line.account not in account_reasons:
                account_reasons[line.account] = self._account_reason(line.account, accounts, overrides, ledger, posting)
            if account_reasons[line.account]:
                problems.append(Problem(line, account_reasons[line.account]))
            for name, value in line.dimensions:
                if (name, value) not in dimension_reasons:
                    dimension_reasons[name, value] = (
                        self._dimension_problem(name, value, legal_entity, posting)
                        if name in format_names
                        else f"dimension {name} is not a segment of the ledger format {'-'.join(format_names)}"
                    )
                if dimension_reasons[name, value]:
                    problems.append(Problem(line, dimension_reasons[name, value]))
        return problems

    def _prefetch(self, plan: Plan, ledger: Ledger) -> None:
        """Read the reference data validation needs at once (each is one small request; none waits for another)."""
        posting = date.fromisoformat(plan.header["posting_date"])
        reads = [
            lambda: self._journal_names(ledger.legal_entity),
            lambda: self._accounts(ledger.chart_of_accounts),
            lambda: self._overrides(ledger.chart_of_accounts),
            lambda: self._period_problems(ledger, posting),
            self.ledger_format,
            *(
                lambda name=name: self._dimension_values(name)
                for name in {n for line in plan.lines for n, _ in line.dimensions}
            ),
        ]
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="fo-reference") as pool:
            for read in [pool.submit(read) for read in reads]:
                read.result()

    def _ledger(self, legal_entity: str) -> Ledger | None:
        if not self._ref.ledgers:
            for row in self.client.collection("Ledgers"):
                key = str(row.get("LegalEntityId") or "").lower()
                self._ref.ledgers[key] = Ledger(key, str(row.get("ChartOfAccounts")), str(row.get("FiscalCalendar")))
        return self._ref.ledgers.get(legal_entity.lower())

    def _journal_names(self, legal_entity: str) -> set[str]:
        if legal_entity not in self._ref.journal_names:
            rows = self.client.collection(
                "JournalNames", filter=f"dataAreaId eq {literal(legal_entity)}", select=["Name"], cross_company=True
            )
            self._ref.journal_names[legal_entity] = {str(r["Name"]) for r in rows}
        return self._ref.journal_names[legal_entity]

    def _accounts(self, chart: str) -> dict[str, dict]:
        if chart not in self._ref.accounts:
            rows = self.client.collection("MainAccounts", filter=f"ChartOfAccounts eq {literal(chart)}")
            self._ref.accounts[chart] = {str(r["MainAccountId"]): r for r in rows}
        return self._ref.accounts[chart]

    def _overrides(self, chart: str) -> dict[tuple[str, str], dict]:
        if chart not in self._ref.overrides:
            try:
                rows = self.client.collection("MainAccountLegalEntities", filter=f"ChartOfAccounts eq {literal(chart)}")
            except RequestFailedError as exc:
                if exc.status != 404:  # an environment without the entity has no overrides to apply
                    raise
                rows = []
            self._ref.overrides[chart] = {
                (str(r["MainAccountId"]), str(r.get("LegalEntityId") or "").lower()): r for r in rows
            }
        return self._ref.overrides[chart]

    @staticmethod
    def _account_reason(account_id: str, accounts, overrides, ledger: Ledger, posting: date) -> str | None:
        """Why no journal line can post to this main account in the ledger's legal entity on `posting`, if so."""
        account = accounts.get(account_id)
        if account is None:
            return f"main account {account_id} does not exist in chart of accounts {ledger.chart_of_accounts}"
        name = f"main account {account_id} ({account.get('Name', '')})"
        if _yes(account.get("IsSuspended")):
            return f"{name} is suspended"
        if not _active(account, posting):
            return (
                f"{name} is not active on {posting} (active {_day(account.get('ActiveFrom'))} to "
                f"{_day(account.get('ActiveTo'))})"
            )
        if _yes(account.get("DoNotAllowManualEntry")):
            return f"{name} does not allow manual entry (journals cannot post to it)"
        override = overrides.get((account_id, ledger.legal_entity))
        if override is not None:
            if _yes(override.get("IsSuspended")):
                return f"{name} is suspended for legal entity {ledger.legal_entity}"
            if not _active(override, posting):
                return f"{name} is not active for legal entity {ledger.legal_entity} on {posting}"
            if _yes(override.get("DoNotAllowManualEntry")):
                return f"{name} does not allow manual entry in {ledger.legal_entity}"
        return None

    def _dimension_problem(self, dimension: str, value: str, legal_entity: str, posting: date) -> str | None:
        rows = self._dimension_values(dimension).get(value, [])
        mine = [r for r in rows if str(r.get("LegalEntityId") or "").lower() in ("", legal_entity)]
        if not mine:
            others = sorted({str(r.get("LegalEntityId")) for r in rows})
            if others:
                return f"{dimension} {value} belongs to legal entity {', '.join(others)}, not {legal_entity}"
            return (
                f"{dimension} {value} is not among the environment's financial dimension values "
                "(FinancialDimensionValues); add it in F&O or map the Looker value to an existing one"
            )
        # A value of this legal entity overrides the shared one.
        record = next((r for r in mine if str(r.get("LegalEntityId") or "")), mine[0])
        if _yes(record.get("IsSuspended")):
            return f"{dimension} {value} is suspended"
        if not _active(record, posting):
            return f"{dimension} {value} is not active on {posting}"
        if _yes(record.get("IsTotal")):
            return f"{dimension} {value} is a total value; post to a value under it"
        if _yes(record.get("IsBlockedForManualEntry")):  # journal lines are entries F&O checks it for
            return f"{dimension} {value} is blocked for manual entry"
        return None

    def _dimension_values(self, dimension: str) -> dict[str, list[dict]]:
        if dimension not in self._ref.dimension_values:
            rows = self.client.collection(
                "FinancialDimensionValues", filter=f"FinancialDimension eq {literal(dimension)}"
            )
            by_value: dict[str, list[dict]] = {}
            for row in rows:
                by_value.setdefault(str(row["DimensionValue"]), []).append(row)
            self._ref.dimension_values[dimension] = by_value
        return self._ref.dimension_values[dimension]

    def _period_problems(self, ledger: Ledger, posting: date) -> list[Problem]:
        calendar = ledger.fiscal_calendar
        if calendar not in self._ref.periods:
            self._ref.periods[calendar] = self.client.collection(
                "FiscalPeriods", filter=f"Calendar eq {literal(calendar)}"
            )
        day = posting.isoformat()
        covering = [
            p
            for p in self._ref.periods[calendar]
            if _day(p.get("StartDate")) <= day <= _day(p.get("EndDate"))
            and str(p.get("Type", "Operating")) == "Operating"
        ]
        if not covering:
            return [Problem(None, f"no operating fiscal period of calendar {calendar} covers the posting date {day}")]
        period = covering[0]
        year, name = str(period.get("FiscalYear")), str(period.get("PeriodName"))
        found = self._period_status(ledger, calendar, year, name)
        if found is None:
            return [Problem(None, f"the status of period {name} {year} for {ledger.legal_entity} could not be read")]
        status, ledger_access = found
        if status.lower() != "open":
            return [
                Problem(
                    None,
                    f"the posting date {day} is in period {name} of {year}, which is {status} for legal entity "
                    f"{ledger.legal_entity}: open the period in F&O (Ledger calendar) or post to an open period",
                )
            ]
        if _no_access(ledger_access):  # open, but closed to the general ledger (its module access level)
            return [
                Problem(
                    None,
                    f"the posting date {day} is in period {name} of {year}, which is open but gives the general "
                    f"ledger no access ({ledger_access}) for legal entity {ledger.legal_entity}: set its General "
                    "ledger module access level in F&O (Ledger calendar) or post to another period",
                )
            ]
        return []

    def _period_status(self, ledger: Ledger, calendar: str, year: str, period: str) -> tuple[str, str] | None:
        """(status, the general ledger's access level: "" where the entity has none) of a ledger's period."""
        key = (ledger.legal_entity, calendar, year, period)
        if key not in self._ref.period_status:
            query = (
                f"Calendar eq {literal(calendar)} and YearName eq {literal(year)} and PeriodName eq {literal(period)}"
            )
            for entity in FISCAL_PERIOD_ENTITIES:
                try:
                    rows = self.client.collection(entity, filter=query)
                except RequestFailedError as exc:
                    if exc.status == 404:
                        continue
                    raise
                for row in rows:
                    legal_entity = str(row.get("LegalEntityId") or row.get("LedgerName") or "").lower()
                    self._ref.period_status[(legal_entity, calendar, year, period)] = (
                        str(row.get("PeriodStatus")),
                        str(row.get("LedgerAccessLevel") or ""),
                    )
                break
        return self._ref.period_status.get(key)

    # -- writing -------------------------------------------------------------------------------------

    def find(self, plan: Plan) -> WrittenDocument | None:
        headers = self.client.collection(
            "LedgerJournalHeaders",
            filter=f"dataAreaId eq {literal(plan.company)} and Description eq {literal(plan.document_key)}",
            cross_company=True,
        )
        if not headers:
            return None
        if len(headers) > 1:
            numbers = ", ".join(str(h["JournalBatchNumber"]) for h in headers)
            raise RequestFailedError(
                SYSTEM,
                f"journals {numbers} in {plan.company} all carry the key {plan.document_key!r}; delete all but one "
                "(keep the complete one) before posting again",
            )
        header = headers[0]
        number = str(header["JournalBatchNumber"])
        return WrittenDocument(
            number=number,
            lines=self.read_lines(plan, number),
            posted=_yes(header.get("IsPosted")),
            detail={"journal_name": header.get("JournalName")},
        )

    def create_document(self, plan: Plan) -> str:
        return self.client.create(
            "LedgerJournalHeaders",
            {"dataAreaId": plan.company, "JournalName": plan.header["journal_name"], "Description": plan.document_key},
            read=lambda created: str(created["JournalBatchNumber"]),
        )

    def create_lines(self, plan: Plan, number: str, lines: Sequence[PlannedLine]) -> None:
        trans_date = f"{plan.header['posting_date']}T12:00:00Z"
        try:
            self._send_lines(plan, number, lines, trans_date)
        except ChangesetFailed as exc:
            if exc.index is not None and exc.index < len(lines):
                raise LinesRefused(lines[exc.index], exc.server_message) from exc
            # Refused without naming its request: the changeset's lines are as near as F&O lets us get.
            span = f"lines {lines[0].number}–{lines[-1].number}" if lines else "no lines"
            raise LinesRefused(None, f"{exc.server_message} (in the changeset of {span})") from exc

    def _send_lines(self, plan: Plan, number: str, lines: Sequence[PlannedLine], trans_date: str) -> None:
        self.client.changeset(
            [
                BatchRequest(
                    "POST",
                    "LedgerJournalLines",
                    {
                        "dataAreaId": plan.company,
                        "JournalBatchNumber": number,
                        "LineNumber": line.number,
                        "AccountType": "Ledger",
                        "AccountDisplayValue": self.display_value(line.account, line.dimensions),
                        "DebitAmount": line.debit,
                        "CreditAmount": line.credit,
                        "CurrencyCode": line.currency,
                        "TransDate": trans_date,
                        "Text": line.text,
                    },
                )
                for line in lines
            ]
        )

    def read_lines(self, plan: Plan, number: str) -> list[WrittenLine]:
        rows = self.client.collection(
            "LedgerJournalLines",
            filter=f"dataAreaId eq {literal(plan.company)} and JournalBatchNumber eq {literal(number)}",
            select=_LINE_FIELDS,
            orderby="LineNumber",  # pages of a stable order, whatever way the server cuts them
            cross_company=True,
        )
        written = []
        planned = {line.number: line for line in plan.lines}
        parsed: dict[tuple, tuple[str, tuple[tuple[str, str], ...]]] = {}  # a journal repeats a few display values
        for row in rows:
            text = str(row.get("AccountDisplayValue") or "")
            line = planned.get(int(Decimal(str(row["LineNumber"]))))
            seen = (text, line.account, line.dimensions) if line is not None else (text,)
            if seen not in parsed:
                parsed[seen] = self.read_display_value(text, line)
            account, dims = parsed[seen]
            written.append(
                WrittenLine(
                    number=int(Decimal(str(row["LineNumber"]))),
                    account=account,
                    dimensions=dims,
                    debit=Decimal(str(row.get("DebitAmount") or 0)),
                    credit=Decimal(str(row.get("CreditAmount") or 0)),
                    currency=str(row.get("CurrencyCode") or ""),
                    text=str(row.get("Text") or ""),
                )
            )
        return sorted(written, key=lambda line: line.number)

    def discard(self, plan: Plan, number: str) -> None:
        """Delete an unposted journal (and its lines): what is left when F&O refused lines after the header."""
        try:
            self.client.delete("LedgerJournalHeaders" + key_segment(dataAreaId=plan.company, JournalBatchNumber=number))
        except RequestFailedError as exc:
            if exc.status != 404:
                raise
            # Gone (a DELETE repeated after a lost answer), or not found under the caller's default company: said
            # deleted only once a lookup across companies no longer finds it.
            found = self.find(plan)
            if found is not None and found.number == number:
                raise RequestFailedError(
                    SYSTEM,
                    f"DELETE of journal {number} in {plan.company} answered 404, but the journal is still there",
                    status=404,
                ) from None
