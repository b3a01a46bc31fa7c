"""What a write into an ERP is before it is written: a plan of lines, and the target that writes it.

A plan is deterministic: the same source rows (Looker's, for journals) and the same mapping give
the same lines in the same order, the same amounts (exact decimals), and so the same digest.
Every line names the row it came from; balancing and rounding lines say what they are. The posting engine
(engine/post.py) validates a plan against its target, finds it there by its natural key, writes
what is missing, reads it back and records every step in the audit store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext
from functools import cached_property, lru_cache
from typing import Any, Literal, Protocol

import orjson

LineKind = Literal["row", "offset", "rounding", "adjustment"]
ZERO = Decimal(0)


def canonical_json(value: Any) -> bytes:
    """JSON that is the same bytes for the same value: sorted keys, decimals as exact text."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS, default=_exact)


def _exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def digest_of(value: Any) -> str:
    return json_digest(canonical_json(value))


def json_digest(canonical: bytes) -> str:
    """The digest of a value from its canonical JSON (for a caller that keeps those bytes too)."""
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True)
class SourceRow:
    """The row a planned line came from (a Looker result row, for the journals posted from Looker)."""

    query: str  # the asset whose row it is, e.g. looker/fee_allocation
    origin: str  # how the asset got it, e.g. "looker api" or "delivery <id>"
    run_id: str  # the run that materialized the rows
    window_start: str | None  # the asset partition's window, ISO
    row_number: int  # 1-based, in the result's order
    values: dict[str, Any]  # the row as the source gave it (by its field names)

    @property
    def digest(self) -> str:
        return digest_of(self.values)


def line_content(line: PlannedLine | WrittenLine) -> dict:
    """The fields a planned line and its read-back must agree on: one definition, so the
    comparison in verify cannot drift from what the digest covers."""
    return {
        "number": line.number,
        "account": line.account,
        "dimensions": [list(d) for d in line.dimensions],
        "debit": line.debit,
        "credit": line.credit,
        "currency": line.currency,
        "text": line.text,
    }


@dataclass(frozen=True)
class PlannedLine:
    number: int  # 1-based; also the line's number in the target where the target takes one
    account: str  # the main account / account
    dimensions: tuple[tuple[str, str], ...]  # (name, value) in the target's order; blank values omitted
    debit: Decimal
    credit: Decimal
    currency: str
    text: str
    kind: LineKind = "row"
    source: SourceRow | None = None

    @property
    def amount(self) -> Decimal:
        """Signed: positive is a debit."""
        return self.debit - self.credit

    def content(self) -> dict:
        """What the target must hold for this line (compared on read-back; feeds the digest)."""
        return line_content(self)

    def describe(self) -> str:
        dims = ", ".join(f"{n}={v}" for n, v in self.dimensions)
        side = f"debit {self.debit}" if self.debit else f"credit {self.credit}"
        return f"line {self.number}: {self.account}{' [' + dims + ']' if dims else ''} {side} {self.currency}"


@dataclass(frozen=True)
class Plan:
    """One document to write: a journal with its lines, and where it comes from."""

    flow: str  # the asset that posts it
    partition: str  # its partition key ("" when unpartitioned)
    document_key: str  # the natural key written into the target, found there before every create
    system: str  # the target system's name
    company: str  # legal entity / company / branch
    header: dict[str, Any]  # what the target's header carries: journal name, posting date, description, …
    lines: tuple[PlannedLine, ...]
    # Per currency: the sum of its rounded amounts minus the sum of its unrounded ones, per the mapping.
    rounding_difference: dict[str, Decimal] = field(default_factory=dict)
    adjusts: str | None = None  # a difference document: the natural key of the document it corrects
    must_balance: bool = True  # a journal's debits equal its credits; a sales document's lines need not

    @cached_property  # a plan never changes; its digest is asked for at every step
    def digest(self) -> str:
        return digest_of({"header": self.header, "lines": [line.content() for line in self.lines]})

    @property
    def total_debit(self) -> Decimal:
        with exact_sums():
            return sum((line.debit for line in self.lines), ZERO)

    @property
    def total_credit(self) -> Decimal:
        with exact_sums():
            return sum((line.credit for line in self.lines), ZERO)

    @property
    def balance(self) -> Decimal:
        with exact_sums():
            return self.total_debit - self.total_credit


def exact_sums():
    """A context whose sums keep every digit of amounts past Decimal's default 28 (a debit of 1E+29 + 0.01 and a
    credit of 1E+29 balanced, the cent rounded away): 80 digits hold any ledger's."""
    return localcontext(prec=80)


def balances(lines: Sequence[PlannedLine]) -> dict[str, Decimal]:
    """Debits less credits per currency (each balances on its own), in the order each currency first comes."""
    owed: dict[str, Decimal] = {}
    with exact_sums():
        for line in lines:
            owed[line.currency] = owed.get(line.currency, ZERO) + line.amount
    return owed


@dataclass(frozen=True)
class Problem:
    """Why a plan cannot be written, naming the line and (where it has one) the Looker row."""

    line: PlannedLine | None
    reason: str

    def describe(self) -> str:
        if self.line is None:
            return self.reason
        row = self.line.source
        where = f"{row.query} row {row.row_number} {_short(row.values)}" if row else f"{self.line.kind} line"
        return f"{where} → {self.line.describe()}: {self.reason}"


def _short(values: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {_exact(v) if isinstance(v, Decimal) else v}" for k, v in values.items()) + "}"


class LinesRefused(Exception):
    """The target refused an atomic write of lines (none of them was stored); `line` is the one it named."""

    def __init__(self, line: PlannedLine | None, reason: str):
        self.line, self.reason = line, reason
        super().__init__(reason)


@dataclass(frozen=True)
class WrittenLine:
    """A line as the target holds it, read back."""

    number: int
    account: str
    dimensions: tuple[tuple[str, str], ...]
    debit: Decimal
    credit: Decimal
    currency: str
    text: str

    def content(self) -> dict:
        return line_content(self)


@dataclass
class WrittenDocument:
    """A document found in the target by its natural key."""

    number: str  # the number the target assigned
    lines: list[WrittenLine] = field(default_factory=list)
    posted: bool = False  # posted documents are read-only
    detail: dict[str, Any] = field(default_factory=dict)


class PostingTarget(Protocol):
    """What the engine needs from a system it writes documents into (one implementation per system)."""

    system: str
    max_lines_per_write: int  # lines written atomically by one create_lines call
    writes_in_flight: int  # create_lines calls the engine may have under way at once (thread-safe target)
    # After a create_document whose answer was lost and which `find` did not see: how long the system may
    # still be saving it. The engine creates the document again only after this (HttpPolicy's setting).
    outcome_settle_seconds: float
    # Optional: `lines_with_header = True` for a target that saves a document and its lines in one atomic
    # write (create_document takes them all; create_lines is never called), `finish(plan, number)`
    # for a step after verification (Acumatica's release), returning what it did or None, and
    # `on_other_figures`: what a person does when the target holds the document with other figures
    # (else a journal's: a difference journal, or a reversal).

    def validate(self, plan: Plan) -> list[Problem]:
        """Every reason the target would refuse the plan (accounts, dimensions, period), read without writing."""
        ...

    def find(self, plan: Plan) -> WrittenDocument | None:
        """The document carrying the plan's natural key, with its lines; None if there is none."""
        ...

    def create_document(self, plan: Plan) -> str:
        """Write the header; return its number. May raise OutcomeUnknown: then `find` decides."""
        ...

    def create_lines(self, plan: Plan, number: str, lines: Sequence[PlannedLine]) -> None:
        """Write these lines atomically (all or none). May raise OutcomeUnknown (then `find` decides) or
        LinesRefused (the target's own validation refused one: none was stored)."""
        ...

    def read_lines(self, plan: Plan, number: str) -> list[WrittenLine]: ...

    def discard(self, plan: Plan, number: str) -> None:
        """Delete an unposted document: what the engine does when the target refuses its lines."""
        ...

    def metadata(self) -> dict[str, Any]:
        """Request counts and the like, for the run's metadata."""
        ...

    def close(self) -> None: ...


def round_to(amount: Decimal, places: int) -> Decimal:
    """Half away from zero, as ledgers round (Python's default would round half to even). Exact at any size: the
    default context's 28 digits raised InvalidOperation for a larger amount, and planning crashed unnamed."""
    digits = amount.adjusted() + 1 + places if amount else 0
    if digits <= 28:
        return amount.quantize(_quantum(places), rounding=ROUND_HALF_UP)
    with localcontext() as exact:
        exact.prec = digits + 1
        return amount.quantize(_quantum(places), rounding=ROUND_HALF_UP)


@lru_cache(maxsize=32)
def _quantum(places: int) -> Decimal:
    return Decimal(1).scaleb(-places)
