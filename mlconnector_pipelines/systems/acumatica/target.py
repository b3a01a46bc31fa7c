"""GL journal transactions in Acumatica as a posting target.

A batch and all its lines go in one PUT (atomic: Acumatica saves the document whole or refuses
it with errors on its fields). The batch number is Acumatica's own (auto-numbered: a number sent
is not kept), so the natural key is the batch Description (`MLC <journal> <partition>`), found
with an exact filter before every create; each line's ReferenceNbr carries its planned number,
which maps read-back lines to planned ones. Validation reads accounts, subaccounts, branches (the
CompaniesStructure inquiry: the Default endpoint has no Branch entity), the financial period and the currency's
decimal precision (the Currency entity, CM202000: an amount with more places would be saved rounded).
Release (`release: true`) runs ReleaseJournalTransaction after the batch is verified; a release
whose answer was lost is settled by reading the batch's status.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date
from typing import Any

import msgspec

from ...core.errors import OutcomeUnknown, RecordRefused, RequestFailedError
from ...core.posting import (
    ZERO,
    LinesRefused,
    Plan,
    PlannedLine,
    Problem,
    WrittenDocument,
    WrittenLine,
    round_to,
)
from .auth import SYSTEM
from .client import AcumaticaClient, text_literal
from .config import AcumaticaConfig
from .values import WrappedAmount, WrappedText

SUBACCOUNT, BRANCH = "Subaccount", "Branch"
RELEASED = ("Posted", "Unposted", "Released")
# How long a release whose answer was lost may still be running before it is asked for again.
RELEASE_SETTLE_SECONDS = 10.0
_LINE_REF = "MLC"  # a line's ReferenceNbr: MLC<planned line number>


class _SavedLine(msgspec.Struct, frozen=True):
    """What the read-back compares of a batch line, as Acumatica answers it (its other fields go unread)."""

    Account: WrappedText = WrappedText()
    Subaccount: WrappedText = WrappedText()
    BranchID: WrappedText = WrappedText()
    DebitAmount: WrappedAmount = WrappedAmount()
    CreditAmount: WrappedAmount = WrappedAmount()
    TransactionDescription: WrappedText = WrappedText()
    ReferenceNbr: WrappedText = WrappedText()


class _SavedBatch(msgspec.Struct, frozen=True):
    """A GL batch with its lines (`$expand=Details`), as the lookup and the read-back read it."""

    id: str = ""  # the record's id, which every answer carries
    BatchNbr: WrappedText = WrappedText()
    Status: WrappedText = WrappedText()
    CurrencyID: WrappedText = WrappedText()
    Details: list[_SavedLine] = []


def document_key(journal: str, partition: str, adjustment: int = 0) -> str:
    return f"MLC {journal} {partition}".strip() + (f" adj{adjustment}" if adjustment else "")


def _day(value: Any) -> str:
    return str(value or "")[:10]


class AcumaticaJournalTarget:
    system = SYSTEM
    max_lines_per_write = 1_000_000  # the lines travel with the batch, in one request
    lines_with_header = True
    writes_in_flight = 1

    def __init__(self, client: AcumaticaClient, cfg: AcumaticaConfig):
        self.client = client
        self.cfg = cfg
        self.outcome_settle_seconds = cfg.http.outcome_settle_seconds
        self._accounts: dict[str, dict] | None = None
        self._subaccounts: dict[str, dict] | None = None
        self._branches: set[str] | None = None
        self._periods: dict[int, list[dict]] = {}
        self._currencies: dict[str, dict | None] = {}  # currency ID → its Currency record (None: there is none)
        self._saved: _SavedBatch | None = None  # the last batch this target saved, as Acumatica answered the PUT

    def close(self) -> None:
        self.client.close()

    def metadata(self) -> dict[str, Any]:
        auth = self.client.auth
        figures = {k: getattr(auth, k) for k in ("grants", "refreshes", "logins", "logouts") if hasattr(auth, k)}
        return {**self.client.http.stats.as_metadata("http_"), **figures}

    # -- validation ----------------------------------------------------------------------------------

    def validate(self, plan: Plan) -> list[Problem]:
        self.client.check_version()
        posting = date.fromisoformat(plan.header["posting_date"])
        problems = self._period_problems(posting)
        accounts, subaccounts, branches = self._reference()
        currency = plan.lines[0].currency if plan.lines else None
        for line in plan.lines:
            if line.currency != currency:  # the batch has one CurrencyID, which every line would be booked in
                problems.append(Problem(line, f"a batch has one currency: this line is {line.currency}, the first "
                                              f"is {currency} (map each currency to a journal of its own)"))  # fmt: skip
            problems += self._precision_problems(line)
            dims = dict(line.dimensions)
            account = accounts.get(line.account.upper())
            if account is None:
                problems.append(Problem(line, f"account {line.account} does not exist"))
            elif account.get("Active") is False:
                problems.append(Problem(line, f"account {line.account} ({account.get('Description', '')}) is inactive"))
            sub = dims.get(SUBACCOUNT)
            record = subaccounts.get(_segmentless(sub)) if sub else None
            if not sub:
                problems.append(Problem(line, "the line has no subaccount (Acumatica requires one on every GL line)"))
            elif record is None:
                problems.append(Problem(line, f"subaccount {sub} does not exist"))
            elif record is not None and record.get("Active") is False:
                problems.append(Problem(line, f"subaccount {sub} is inactive"))
            branch = dims.get(BRANCH)
            if branch and branches and branch.upper() not in branches:
                problems.append(Problem(line, f"branch {branch} does not exist (have: {', '.join(sorted(branches))})"))
        return problems

    def _precision_problems(self, line: PlannedLine) -> list[Problem]:
        """An amount with more places than Acumatica keeps for its currency would be saved rounded: the batch
        would then fail verification, and every rerun find it "with other figures"."""
        if line.currency not in self._currencies:
            self._currencies[line.currency] = self.client.record("Currency", [line.currency])
        currency = self._currencies[line.currency]
        if currency is None:
            return [Problem(line, f"currency {line.currency} does not exist in Acumatica (Currencies, CM202000)")]
        places = currency.get("DecimalPrecision")
        if places is None or all(round_to(amount, int(places)) == amount for amount in (line.debit, line.credit)):
            return []
        return [
            Problem(
                line,
                f"Acumatica keeps {line.currency} amounts to {places} decimal places (Currencies, CM202000): this "
                f"one would be saved rounded and the batch fail its read-back. Set the journal's currency_precision "
                f"for {line.currency} to {places} (or drop it)",
            )
        ]

    def _reference(self) -> tuple[dict[str, dict], dict[str, dict], set[str]]:
        if self._accounts is None:
            self._accounts = {str(a["AccountCD"]).upper(): a for a in self.client.records("Account")}
            self._subaccounts = {_segmentless(s["SubaccountCD"]): s for s in self.client.records("Subaccount")}
            self._branches = self._branch_ids()
        return self._accounts, self._subaccounts, self._branches

    def _branch_ids(self) -> set[str]:
        """Branches from the CompaniesStructure inquiry (an inquiry is read with a PUT that changes nothing)."""
        try:
            answer = self.client.put("CompaniesStructure", {}, expand=["Results"], by_key=True)
        except (RequestFailedError, RecordRefused):
            return set()  # a site without the inquiry: Acumatica itself checks the branch on save
        return {str(r.get("BranchID")).upper() for r in answer.get("Results", []) if r.get("BranchID")}

    def _period_problems(self, posting: date) -> list[Problem]:
        day = posting.isoformat()
        # A financial year need not be the calendar year (July to June; numbered by the year it ends in when it
        # "belongs to next year"): the date's own year first, then the next and the one before. A period whose
        # end date is the posting date counts only if none begins or runs through it (an end date may be the
        # next period's first day): across the years, so 1 July is July's, not June's of the year before.
        touching: list[dict] = []
        for year in (posting.year, posting.year + 1, posting.year - 1):
            if year not in self._periods:
                found = self.client.record("FinancialPeriod", [str(year)], expand=["Details"])
                self._periods[year] = list((found or {}).get("Details", []))
            covering = [p for p in self._periods[year] if _day(p.get("StartDate")) <= day <= _day(p.get("EndDate"))]
            touching += covering
            covering = [p for p in covering if _day(p.get("EndDate")) != day]
            if covering:
                break
        covering = covering or touching
        if not covering:
            return [
                Problem(
                    None, f"no financial period of {posting.year - 1}–{posting.year + 1} covers the posting date {day}"
                )
            ]
        period = covering[0]
        status = str(period.get("Status") or "")
        if status != "Open":
            name = period.get("FinancialPeriodID") or period.get("PeriodNbr")
            return [
                Problem(
                    None,
                    f"the posting date {day} is in financial period {name}, which is {status or 'not open'} in General "
                    "Ledger: open it (Master Financial Calendar, GL201000) or post to an open period",
                )
            ]
        return []

    # -- writing ---------------------------------------------------------------------------------------

    def find(self, plan: Plan) -> WrittenDocument | None:
        # The key's batches by filter, then the one found read again with its lines (`_read`).
        found = self.client.records(
            "JournalTransaction",
            filter=f"Module eq 'GL' and Description eq {text_literal(plan.document_key)}",
            select=["BatchNbr"],
            as_type=_SavedBatch,
        )
        if not found:
            return None
        if len(found) > 1:
            numbers = ", ".join(b.BatchNbr.text for b in found)
            raise RequestFailedError(
                SYSTEM, f"batches {numbers} all carry the key {plan.document_key!r}; delete all but one before posting"
            )
        number = found[0].BatchNbr.text
        batch = self._read(found[0], number)
        if batch is None:  # found by its key a moment ago: never taken for no batch (a second one would be made)
            raise RequestFailedError(
                SYSTEM,
                f"batch {number} carries the key {plan.document_key!r} but could not be read again; nothing more is "
                "written until it is: the next run (or replay) looks it up again",
            )
        return WrittenDocument(
            number=batch.BatchNbr.text,
            lines=self._written(batch, plan),
            posted=batch.Status.text in RELEASED,
            detail={"status": batch.Status.value},
        )

    def create_document(self, plan: Plan) -> str:
        """The batch with all its lines, in one PUT. A refusal names the line it fell on (nothing saved)."""
        header = plan.header
        branches = [dict(line.dimensions).get(BRANCH) for line in plan.lines]
        batch = {
            "Module": "GL",
            "LedgerID": header.get("ledger", "ACTUAL"),
            "BranchID": header.get("branch") or next((b for b in branches if b), None),
            # A date, not a moment: sent with an offset, a site in another time zone would take the day before.
            "TransactionDate": f"{header['posting_date']}T00:00:00",
            "Description": plan.document_key,
            "CurrencyID": plan.lines[0].currency if plan.lines else None,
            "Hold": False,
            "Details": [self._line(line) for line in plan.lines],
        }
        try:
            saved = self.client.put(
                "JournalTransaction",
                {k: v for k, v in batch.items() if v is not None},
                expand=["Details"],
                as_type=_SavedBatch,
            )
        except RecordRefused as refused:
            raise LinesRefused(_refused_line(plan, refused.errors), "; ".join(refused.errors)) from None
        if not saved.BatchNbr.text:  # saved, but not said as what: the engine's lookup by key settles it
            url = f"{self.client.cfg.endpoint_url}/JournalTransaction"
            raise OutcomeUnknown(SYSTEM, f"PUT {url} answered without a BatchNbr", method="PUT", url=url)
        self._saved = saved
        return saved.BatchNbr.text

    @staticmethod
    def _line(line: PlannedLine) -> dict:
        dims = dict(line.dimensions)
        return {
            "BranchID": dims.get(BRANCH),
            "Account": line.account,
            "Subaccount": dims.get(SUBACCOUNT),
            "DebitAmount": line.debit,
            "CreditAmount": line.credit,
            "TransactionDescription": line.text,
            "ReferenceNbr": f"{_LINE_REF}{line.number}",
        }

    def create_lines(self, plan: Plan, number: str, lines: Sequence[PlannedLine]) -> None:
        raise NotImplementedError("the lines travel with the batch (lines_with_header)")

    def read_lines(self, plan: Plan, number: str) -> list[WrittenLine]:
        """The batch's lines as Acumatica holds them. Right after this target saved the batch, that is the
        PUT's answer (Acumatica answers a PUT with the record it saved, its details with `$expand`): the same
        record a GET would return, without sending the 5,000 lines a second time. Otherwise, a GET."""
        saved, self._saved = self._saved, None
        if saved is not None and saved.BatchNbr.text == number:
            return self._written(saved, plan)
        batch = self._batch(number)
        return self._written(batch, plan) if batch is not None else []

    def _batch(self, number: str, *, lines: bool = True) -> _SavedBatch | None:
        """A GL batch by its number, with its lines or without (None when there is none)."""
        found = self.client.records(
            "JournalTransaction",
            filter=f"Module eq 'GL' and BatchNbr eq {text_literal(number)}",
            select=["BatchNbr"],
            as_type=_SavedBatch,
        )
        return self._read(found[0], number, lines=lines) if found else None

    def _read(self, listed: _SavedBatch, number: str, *, lines: bool = True) -> _SavedBatch | None:
        """A batch a list answer named, read again with its lines by its id (the docs read any record by id;
        the compound key Module/BatchNbr in the path is a reading a site may not take), by that key without one.
        A list GET may answer `$expand`ed details empty: some sites fill them only for a record read alone."""
        keys = [listed.id] if listed.id else ["GL", number]
        return self.client.record("JournalTransaction", keys, expand=["Details"] if lines else [], as_type=_SavedBatch)

    def _written(self, batch: _SavedBatch, plan: Plan) -> list[WrittenLine]:
        currency = batch.CurrencyID.text
        spelled = _PlanSpelling(plan)
        written = []
        for position, line in enumerate(batch.Details, start=1):
            reference = line.ReferenceNbr.text
            digits = reference[len(_LINE_REF) :]
            number = int(digits) if reference.startswith(_LINE_REF) and digits.isdigit() else -position
            subaccount = spelled(number, SUBACCOUNT, line.Subaccount.text)
            branch = spelled(number, BRANCH, line.BranchID.text)
            dims = ((SUBACCOUNT, subaccount),) if subaccount else ()
            if branch:
                dims += ((BRANCH, branch),)
            written.append(
                WrittenLine(
                    number=number,
                    account=spelled(number, _ACCOUNT, line.Account.text),
                    dimensions=dims,
                    debit=line.DebitAmount.value or ZERO,
                    credit=line.CreditAmount.value or ZERO,
                    currency=currency,
                    text=line.TransactionDescription.text,
                )
            )
        return sorted(written, key=lambda line: line.number)

    def discard(self, plan: Plan, number: str) -> None:
        raise NotImplementedError("a batch is saved whole or not at all: there is never a partial one to discard")

    def finish(self, plan: Plan, number: str) -> str | None:
        """Release the verified batch when the journal asks for it; the batch's status settles a lost answer."""
        if not plan.header.get("release"):
            return None
        if self._status(number) in RELEASED:
            return "already released"
        try:
            self._release(number)
        except OutcomeUnknown:
            # The release may have started before the answer was lost: let it finish, then look.
            if self._status(number, settle_seconds=RELEASE_SETTLE_SECONDS) in RELEASED:
                return f"released {number} (its answer was lost; the batch's status says so)"
            try:
                self._release(number)
            except RequestFailedError:
                if self._status(number, settle_seconds=RELEASE_SETTLE_SECONDS) not in RELEASED:
                    raise
        # A release accepted (202) without a Location to poll is still running: its batch's status says when
        # it is done (returned at once once released; a refused release waits the settle time, then says so).
        status = self._status(number, settle_seconds=RELEASE_SETTLE_SECONDS)
        if status not in RELEASED:
            raise RequestFailedError(SYSTEM, f"batch {number} is {status} after ReleaseJournalTransaction")
        return f"released {number} ({status})"

    def _release(self, number: str) -> None:
        self.client.action("JournalTransaction", "ReleaseJournalTransaction", {"Module": "GL", "BatchNbr": number})

    def _status(self, number: str, settle_seconds: float = 0.0) -> str:
        """The batch's status; with `settle_seconds`, asked again until it is released or the time is up."""
        deadline = time.monotonic() + settle_seconds
        while True:
            batch = self._batch(number, lines=False)
            status = batch.Status.text if batch is not None else ""
            if status in RELEASED or time.monotonic() >= deadline:
                return status
            time.sleep(0.5)


_ACCOUNT = "Account"


class _PlanSpelling:
    """A line's value as Acumatica answered it, or as the plan spelled it for that line when the two are one
    value to Acumatica: a subaccount with or without its segment separator (`100000` is `100-000`, and
    either may come back), an account or branch ID in another case. Any other value is read as answered,
    so the read-back still sees a real difference."""

    def __init__(self, plan: Plan):
        self._plan = {line.number: {_ACCOUNT: line.account, **dict(line.dimensions)} for line in plan.lines}
        self._read: dict[tuple[str, str, str], str] = {}  # a batch repeats a few values over thousands of lines

    def __call__(self, number: int, name: str, answered: str) -> str:
        planned = self._plan.get(number, {}).get(name)
        if planned is None or planned == answered:
            return answered
        key = (name, answered, planned)
        if key not in self._read:
            self._read[key] = planned if _same(name, answered) == _same(name, planned) else answered
        return self._read[key]


def _same(name: str, value: str) -> str:
    return _segmentless(value) if name == SUBACCOUNT else value.upper()


def _segmentless(value: Any) -> str:
    """A subaccount as Acumatica compares it: its segments without separators (`100-000` = `100000`)."""
    return "".join(ch for ch in str(value or "") if ch.isalnum()).upper()


def _refused_line(plan: Plan, errors: list[str]) -> PlannedLine | None:
    """The line a refusal names (`Details[3].Subaccount: …`), if it names one."""
    for error in errors:
        if error.startswith("Details[") and "]" in error:
            index = error[len("Details[") : error.index("]")]
            if index.isdigit() and 0 < int(index) <= len(plan.lines):
                return plan.lines[int(index) - 1]
    return None


class AcumaticaRecordTarget:
    """Records of one entity (e.g. Vendor) inserted or updated by their natural key (engine/records.py).

    A record is looked up with `$filter=<key> eq '<key>'`, never with the key in the URL path: a key with a
    slash cannot be addressed there (the guide says to use the record's id), and IIS refuses a path holding
    `& : * % ? \\` with 400. An update goes to the id the lookup found (matched by id: sending it twice does
    what sending it once did, so a lost answer may be sent again). An insert is not: a key Acumatica numbers
    itself ignores the one sent, so a second PUT is a second record; its lost answer is settled by a lookup.
    """

    system = SYSTEM

    def __init__(self, client: AcumaticaClient, entity: str, key: str):
        self.client, self.entity, self.key = client, entity, key
        # key (casefolded) → the id of the record the last lookup by it found (None: it found none); a sync looks
        # each record up just before writing it, so the write goes by what that lookup saw.
        self._looked_up: dict[str, str | None] = {}

    def current(self, key: str) -> dict | None:
        found = self.client.records(self.entity, filter=f"{self.key} eq {text_literal(key)}")
        if len(found) > 1:
            raise RequestFailedError(
                SYSTEM, f"{len(found)} {self.entity} records have {self.key} {key!r}: keep one, or key them otherwise"
            )
        held = found[0] if found else None
        self._looked_up[key.casefold()] = str(held["id"]) if held and held.get("id") else None
        return held

    def upsert(self, record: dict) -> dict:
        key = str(record[self.key])
        if key.casefold() not in self._looked_up:
            self.current(key)
        record_id = self._looked_up.pop(key.casefold())
        if record_id is not None:
            changes = {name: value for name, value in record.items() if name != self.key}
            return self.client.put(self.entity, {"id": record_id, **changes}, key=key, by_key=True)
        try:
            return self.client.put(self.entity, record, key=key)
        except OutcomeUnknown as lost:
            saved = self.current(key)
            if saved is None:
                raise OutcomeUnknown(
                    SYSTEM,
                    f"{lost}. No {self.entity} has {self.key} {key!r} now; it was not sent again: the next run (or "
                    f"replay) looks it up first and sends it only if still not found. Where the site numbers "
                    f"{self.entity} keys itself the lookup cannot find it: check for a {self.entity} saved just now "
                    "before running again",
                    method=lost.method,
                    url=lost.url,
                ) from None
            return saved

    def metadata(self) -> dict[str, Any]:
        return self.client.http.stats.as_metadata("http_")

    def close(self) -> None:
        self.client.close()
