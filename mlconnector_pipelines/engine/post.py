"""The posting engine: plan → validate → find → create → read back → record, for every target.

No ERP here has an idempotency key, so exactly-once rests on the natural key: the document is
looked up by it before every create, and it is what settles a write whose answer was lost
(OutcomeUnknown). Lines carry their planned number into the target where it takes one (F&O's
LineNumber), so the lines a document already holds tell which remain to write; lines whose write lost
its answer and which the lookup does not find are not sent again while the target may still be saving
them (a second copy is never counted on being refused). A crash at any point leaves the audit store
and the target in a state the next run (or replay) finishes: it finds the document, writes only what
is missing, and verifies the whole.

Validation happens before the first write. A plan that fails it writes nothing, and the error
names every bad line with the source row it came from.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import tenacity

from ..audit.store import FINISHED, AuditStore, DocumentRecord, LeaseHeld, writing_lease
from ..core.errors import ConnectorError, OutcomeUnknown
from ..core.memory import cyclic_gc_paused
from ..core.posting import (
    ZERO,
    LinesRefused,
    Plan,
    PlannedLine,
    PostingTarget,
    Problem,
    WrittenDocument,
    WrittenLine,
    balances,
)

log = logging.getLogger("mlconnector.post")

# Named points of the engine a test can stop a run at (see `checkpoint`): a crash there must be
# finished by the next run or by replay without a duplicate.
CHECKPOINTS = ("before_header", "after_header", "mid_lines", "after_lines", "before_record")
# How long a run holds its partition between two writes; a killed run's lease runs out after this.
LEASE_SECONDS = 300.0


class PostingRefused(ConnectorError):
    """The plan fails validation (or the target holds a different document under its key); nothing was written."""

    def __init__(self, summary: str, problems: list[str]):
        self.problems = problems
        shown = problems[:50]
        more = f"\n  … and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
        super().__init__(summary + ("\n  " + "\n  ".join(shown) if shown else "") + more)


class PlanChanged(PostingRefused):
    """A document for this period is already in the target with other figures."""

    def __init__(self, summary: str, problems: list[str], existing: WrittenDocument):
        super().__init__(summary, problems)
        self.existing = existing


class VerificationFailed(ConnectorError):
    """What the target holds after writing differs from the plan."""


@dataclass
class PostingResult:
    document_key: str
    number: str
    outcome: str  # posted | resumed | already_posted
    lines_written: int
    lines_total: int
    document: DocumentRecord
    figures: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        if self.outcome == "already_posted":
            return f"already posted as {self.number} ({self.lines_total} lines); nothing written"
        verb = "finished" if self.outcome == "resumed" else "posted"
        return f"{verb} as {self.number}: {self.lines_written} of {self.lines_total} lines written now"


def plan_problems(plan: Plan) -> list[Problem]:
    """What is wrong with a plan whatever its target: empty, unbalanced, a line with no amount or both sides."""
    problems: list[Problem] = []
    if not plan.lines:
        problems.append(Problem(None, "the document has no lines (the source was empty for it)"))
    for line in plan.lines:
        if line.debit < ZERO or line.credit < ZERO:
            problems.append(Problem(line, "debit and credit must not be negative"))
        elif line.debit and line.credit:
            problems.append(Problem(line, "a line is either a debit or a credit, not both"))
    if plan.must_balance:
        # Each currency balances on its own: a debit in USD is not offset by a credit in EUR.
        for currency, owed in balances(plan.lines).items():
            if owed != ZERO:
                debit = sum((x.debit for x in plan.lines if x.currency == currency), ZERO)
                credit = sum((x.credit for x in plan.lines if x.currency == currency), ZERO)
                named = f" in {currency}" if currency else ""
                problems.append(
                    Problem(
                        None,
                        f"debits {debit} and credits {credit}{named} differ by {owed}: the journal does "
                        "not balance (configure an offset account, or fix the source figures)",
                    )
                )
    return problems


JOURNAL_OTHER_FIGURES = "Post the difference with `on_change: adjust`, or reverse it in the ERP first"
LINES_UNKNOWN = "lines_outcome_unknown"  # the audit event of a write of lines whose answer was lost, not found


class PostingEngine:
    def __init__(
        self,
        target: PostingTarget,
        audit: AuditStore,
        *,
        run_id: str,
        checkpoint: Callable[[str], None] = lambda name: None,
        progress: Callable[[str], None] = log.info,
    ):
        self.target = target
        self.audit = audit
        self.run_id = run_id
        self.checkpoint = checkpoint
        self.progress = progress
        self.lookups = 0

    # -- the steps, each usable alone (the Dagster ops call them one by one) ------------------------

    @cyclic_gc_paused()
    def record(self, plan: Plan, adjusts: int | None = None) -> DocumentRecord:
        return self.audit.save_plan(plan, self.run_id, adjusts=adjusts)

    @cyclic_gc_paused()
    def problems(self, plan: Plan) -> list[Problem]:
        """Every reason the plan cannot be written: its own (balance, empty) and the target's (reads only)."""
        return plan_problems(plan) + self.target.validate(plan)

    @cyclic_gc_paused()
    def validate(self, plan: Plan, record: DocumentRecord, problems: list[Problem] | None = None) -> None:
        """Raise PostingRefused naming every bad line; nothing is written either way. A document an earlier run
        wrote whole with these figures is not validated again (a period closed since it was saved refused what
        the target holds, and the refusal called it missing): it goes on to be verified as posted."""
        problems = self.problems(plan) if problems is None else problems
        if not problems:
            if record.state in ("planned", "refused"):
                self.audit.set_state(record.id, "validated", run_id=self.run_id, line_state="validated")
            return
        if record.document_number is None:
            self._refuse(plan, record, problems, "nothing was written")
        with self._writing_lease(plan):  # no run writes the document while it is looked up (and deleted)
            found = self.find(plan)
            if found is not None and not self._differences(plan, found, whole=True):
                self.audit.event(
                    record.id, self.run_id, "found_whole", f"{found.number}: {len(problems)} problem(s) not applied"
                )
                self.progress(
                    f"{plan.document_key}: {_named(found)} already holds these figures whole: it is verified as "
                    f"posted, not validated again (now: {problems[0].describe()})"
                )
                return
            self._refuse(plan, record, problems, self._discard_unfinished(plan, record, found))

    def _refuse(self, plan: Plan, record: DocumentRecord, problems: list[Problem], left: str) -> None:
        """Record the refusal and raise it; `left` says what the target holds of the document."""
        reasons = {p.line.number: p.reason for p in problems if p.line is not None}
        self.audit.refuse_lines(record.id, reasons)
        text = [p.describe() for p in problems]
        self.audit.set_state(
            record.id,
            "refused",
            run_id=self.run_id,
            error="\n".join(text[:200]),
            event="validation_failed",
            detail=f"{len(problems)} problem(s)",
        )
        raise PostingRefused(
            f"{plan.system}: {plan.document_key} was not posted: {len(problems)} problem(s); {left}", text
        )

    @cyclic_gc_paused()
    def post(self, plan: Plan, record: DocumentRecord) -> PostingResult:
        """Find the document by its key; write what is missing. Validation must have passed.

        One run at a time writes a flow's partition: two runs that both found nothing would both create it.
        """
        with self._writing_lease(plan):
            self._refuse_a_plan_replaced_meanwhile(plan, record)
            return self._post(plan, record)

    def _refuse_a_plan_replaced_meanwhile(self, plan: Plan, record: DocumentRecord) -> None:
        """Another run recorded new figures for the document after this one recorded its plan (a replay beside a
        scheduled run): this run's plan is no longer the audit store's, and writing or verifying it would mark
        the other plan's lines verified while the target holds this one's. Nothing is written; the next run
        writes the newest plan."""
        stored = self.audit.document(record.id)
        # Only a plan the store still replaces can differ so: a written or finished document's stays as it was,
        # and a different plan for it is the target's lookup's to judge (already posted, or changed).
        replaceable = stored.state not in FINISHED and stored.document_number is None
        if replaceable and stored.digest != plan.digest:
            raise PostingRefused(
                f"{plan.system}: {plan.document_key}: another run recorded a new plan for it (digest "
                f"{stored.digest[:12]}, this run's {plan.digest[:12]}) since this run planned it; nothing was "
                "written by this run. Run it again: it writes the newest plan",
                [f"plan {plan.digest[:12]} replaced by {stored.digest[:12]} in the audit store"],
            )

    def _discard_unfinished(self, plan: Plan, record: DocumentRecord, found: WrittenDocument | None) -> str:
        """What a refused plan leaves in the target. A journal an earlier run began and left half written
        (stopped between its changesets) is deleted, as one the target refused a line of is, so that no half of
        it stays to be posted (said to hold nothing, it held part of the journal); a whole one is left, named with
        its status (a target that saves a document whole holds no other kind)."""
        if found is None:
            return "nothing was written"
        whole = found.posted or len(found.lines) >= len(plan.lines) or getattr(self.target, "lines_with_header", False)
        if whole:  # a person may post or fix it
            return f"{_named(found)}, written by an earlier run, is left as it is"
        try:
            self.target.discard(plan, found.number)
        except Exception as exc:  # the problems stay the refusal's; the half journal is named
            return f"{found.number}, which an earlier run began, could not be deleted ({exc}): delete it by hand"
        self.audit.event(record.id, self.run_id, "discarded", f"{found.number}: {len(found.lines)} line(s) deleted")
        return (
            f"{found.number}, which an earlier run began ({len(found.lines)} of {len(plan.lines)} lines), was deleted"
        )

    @contextmanager
    def _writing_lease(self, plan: Plan) -> Iterator[None]:
        """This run alone writes (or deletes) the plan's document meanwhile."""
        lease = writing_lease(plan)
        self._wait_for_lease(lease)
        try:
            yield
        finally:
            self.audit.release_lease(lease, self.run_id)

    def _wait_for_lease(self, lease: str) -> None:
        """Another run writing this partition finishes first; then this one finds what it wrote."""

        def say(state: tenacity.RetryCallState) -> None:
            self.progress(f"waiting: {state.outcome.exception()}")

        for attempt in tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(LeaseHeld),
            wait=tenacity.wait_fixed(1.0),
            stop=tenacity.stop_after_delay(LEASE_SECONDS + 30),
            before_sleep=say,
            reraise=True,
        ):
            with attempt:
                self.audit.take_lease(lease, self.run_id, LEASE_SECONDS)

    def _post(self, plan: Plan, record: DocumentRecord) -> PostingResult:
        existing = self.find(plan)
        resumed = existing is not None
        carried = 0  # lines written with the header, by a target that saves a document whole
        if existing is None and record.document_number is not None and record.digest != plan.digest:
            # The document written under the recorded plan is gone from the target, and this plan is written in
            # its place: recorded first, so the audit store holds the lines the new document will.
            gone = f"{record.document_number} is no longer in {plan.system}"
            record = self.audit.replan_gone(record.id, plan, self.run_id, gone)
        if existing is None:
            self._hold_while_unsettled(plan, record)
            self.checkpoint("before_header")
            number = self._create_document(plan, record)
            if number is None:  # the lost create did happen: the lookup found it
                existing = self.find(plan)
            elif getattr(self.target, "lines_with_header", False):
                self.audit.lines_written(record.id, _every_line(plan, record), "created")
                carried = len(plan.lines)
        if existing is not None:
            number = existing.number
            # A target that saves a document whole never holds half of it: a line it lacks is a change, not the
            # rest of the document (create_lines, which it has not, was called).
            self._check_same_plan(plan, existing, whole=getattr(self.target, "lines_with_header", False))
            if existing.posted and len(existing.lines) < len(plan.lines):
                raise VerificationFailed(
                    f"{plan.system}: {plan.document_key} is posted as {number} with {len(existing.lines)} of "
                    f"{len(plan.lines)} lines; a posted journal cannot take more lines. Reverse it in "
                    f"{plan.system} and post a correction"
                )
            if record.document_number is None:
                self.audit.set_state(
                    record.id, "writing", run_id=self.run_id, document_number=number, event="found_in_target"
                )
            self.audit.lines_written(record.id, [line.number for line in existing.lines], "created", attempt=False)
        self.checkpoint("after_header")
        present = {line.number for line in existing.lines} if existing is not None else set()
        missing = [] if carried else [line for line in plan.lines if line.number not in present]
        self._hold_while_lines_unsettled(plan, record, {line.number for line in missing})
        written = carried + self._write_lines(plan, record, number, missing)
        self.checkpoint("after_lines")
        outcome = ("already_posted" if not written else "resumed") if resumed else "posted"
        self.audit.event(record.id, self.run_id, "written", f"{outcome}: {written} of {len(plan.lines)} lines written")
        return PostingResult(
            plan.document_key, number, outcome, written, len(plan.lines), self.audit.document(record.id)
        )

    @cyclic_gc_paused()
    def verify(self, plan: Plan, record: DocumentRecord, result: PostingResult | None = None) -> PostingResult:
        """Read the document back and compare every line with the plan; record it verified."""
        number = result.number if result is not None else record.document_number
        if number is None:
            raise VerificationFailed(f"{plan.system}: {plan.document_key} has not been written yet")
        held = self.target.read_lines(plan, number)
        if not held:  # posted, and its lines deleted after posting: those it was verified with
            found = self.find(plan)
            held = found.lines if found is not None and found.posted and found.number == number else held
        self._verify(plan, number, held)
        self.checkpoint("before_record")
        self.audit.lines_written(record.id, _every_line(plan, record), "verified", attempt=False)
        if result is None:  # verified in a step of its own: what this run's post step did is in the history
            result = self._written_in_run(plan, record, number)
        written, outcome = result.lines_written, result.outcome
        finishing = getattr(self.target, "finish", None)
        finished = finishing(plan, number) if finishing is not None else None
        if finished:
            self.audit.event(record.id, self.run_id, "finished", finished)
            self.progress(f"{plan.document_key} ({number}): {finished}")
        self.audit.set_state(
            record.id,
            "verified",
            run_id=self.run_id,
            document_number=number,
            event=outcome,
            detail=f"{number}: {len(plan.lines)} lines verified, {written} written in this run",
        )
        return PostingResult(
            plan.document_key, number, outcome, written, len(plan.lines), self.audit.document(record.id)
        )

    @cyclic_gc_paused()
    def run(self, plan: Plan, adjusts: int | None = None) -> PostingResult:
        """Every step in one call (replay, and the tests of the engine alone)."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="validate") as pool:
            # The target's reference reads and the audit store's record of the plan need nothing of each other.
            checked = pool.submit(self.problems, plan)
            record = self.record(plan, adjusts)
            problems = checked.result()
        if record.state == "verified" and record.digest == plan.digest:
            return self.verify(plan, record, self.post(plan, record))
        self.validate(plan, record, problems)
        record = self.audit.document(record.id)
        return self.verify(plan, record, self.post(plan, record))

    # -- internals ------------------------------------------------------------------------------------

    def _written_in_run(self, plan: Plan, record: DocumentRecord, number: str) -> PostingResult:
        mine = [e for e in self.audit.history(record.id) if e["run_id"] == self.run_id and e["event"] == "written"]
        outcome, written = "already_posted", 0
        if mine:
            outcome, _, rest = str(mine[-1]["detail"]).partition(": ")
            written = int(rest.split(" ", 1)[0])
        return PostingResult(plan.document_key, number, outcome, written, len(plan.lines), record)

    def find(self, plan: Plan) -> WrittenDocument | None:
        """The target's document for the plan's key. A posted one whose lines the target no longer holds (an F&O
        journal name that deletes them after posting) comes with the lines the audit store verified in it:
        compared with zero lines, any plan looked already posted, and a late change was never adjusted."""
        self.lookups += 1
        found = self.target.find(plan)
        if found is None or not found.posted or found.lines:
            return found
        return replace(found, lines=self._verified_lines(plan, found.number) or found.lines)

    def _verified_lines(self, plan: Plan, number: str) -> list[WrittenLine]:
        """The lines the audit store has as written in this document (each created or verified)."""
        for record in reversed(self.audit.by_number(number, plan.company)):
            entries = self.audit.line_records(record.id) if record.system == plan.system else []
            if entries and all(entry.state in ("created", "verified") for entry in entries):
                return [as_written(entry.line) for entry in entries]
        return []

    def _hold_while_unsettled(self, plan: Plan, record: DocumentRecord) -> None:
        """No second create while the first may still be saving: a create whose answer was lost and which the
        lookup did not find (a gateway, or this client's timeout, gave up before the server did) is created
        again only once the target's settle time has passed since then, and only if still not found. A new plan
        for the document (late data) does not lift this: its key is the same, and so is the header in flight."""
        if record.document_number is not None:
            return
        lost = [event["at"] for event in self.audit.history(record.id) if event["event"] == "outcome_unknown"]
        self._raise_until_settled(plan, lost)

    def _hold_while_lines_unsettled(self, plan: Plan, record: DocumentRecord, missing: set[int]) -> None:
        """The same for lines: none is sent while lines whose write lost its answer are still missing and may
        still be saving (their event names them: `lines <first>–<last>`)."""
        lost = []
        for event in self.audit.history(record.id):
            if event["event"] == LINES_UNKNOWN:
                first, _, last = str(event["detail"]).removeprefix("lines ").partition("–")
                if missing & set(range(int(first), int(last) + 1)):
                    lost.append(event["at"])
        self._raise_until_settled(plan, lost)

    def _raise_until_settled(self, plan: Plan, lost: list[datetime]) -> None:
        settled = lost[-1] + timedelta(seconds=self.target.outcome_settle_seconds) if lost else None
        if settled is not None and datetime.now(UTC) < settled:
            raise OutcomeUnknown(
                plan.system,
                f"{plan.document_key}: the write sent at {lost[-1]:%Y-%m-%d %H:%M:%S} UTC lost its answer and is not "
                f"found yet; {plan.system} may still be saving it. Nothing is sent again before "
                f"{settled:%H:%M:%S} UTC: replay then (it looks the key up again first)",
                method="POST",
                url="",
            )

    def _create_document(self, plan: Plan, record: DocumentRecord) -> str | None:
        """The header's number; None when the create's outcome was lost but the lookup found it."""
        self.audit.set_state(record.id, "writing", run_id=self.run_id, event="creating_header", count_attempt=True)
        try:
            number = self.target.create_document(plan)
        except LinesRefused as refused:  # refused whole: nothing was saved
            problem = Problem(refused.line, f"{plan.system} refused it: {refused.reason}")
            if refused.line is not None:
                self.audit.refuse_lines(record.id, {refused.line.number: problem.reason})
            self.audit.set_state(
                record.id, "refused", run_id=self.run_id, error=problem.describe(), event="refused_by_target"
            )
            raise PostingRefused(
                f"{plan.system}: {plan.document_key} was refused; nothing was saved", [problem.describe()]
            ) from None
        except OutcomeUnknown as exc:
            self.audit.event(record.id, self.run_id, "outcome_unknown", str(exc))
            if self.find(plan) is not None:
                return None
            self.audit.set_state(record.id, "unknown", run_id=self.run_id, error=str(exc))
            raise
        self.audit.set_state(record.id, "writing", run_id=self.run_id, document_number=number, event="header_created")
        self.progress(f"{plan.document_key}: header created as {number}")
        return number

    def _write_lines(self, plan: Plan, record: DocumentRecord, number: str, missing: list[PlannedLine]) -> int:
        """Missing lines in atomic chunks, up to `writes_in_flight` at once (the next is sent while the
        target still works on the last); each chunk is settled, recorded and checkpointed in order."""
        size = self.target.max_lines_per_write
        chunks = [missing[start : start + size] for start in range(0, len(missing), size)]
        in_flight = max(1, getattr(self.target, "writes_in_flight", 1))
        pending: deque = deque()
        written = 0
        with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="post") as pool:
            queued = iter(chunks)

            def send_more() -> None:
                for chunk in queued:
                    pending.append((chunk, pool.submit(self.target.create_lines, plan, number, chunk)))
                    if len(pending) >= in_flight:
                        return

            send_more()
            while pending:
                chunk, sent = pending.popleft()
                try:
                    self._settle(plan, record, number, chunk, sent)
                except BaseException as exc:
                    for _, other in pending:  # what is already sent lands or not; nothing more is sent
                        other.cancel()
                    wait([other for _, other in pending])
                    for other_chunk, other in pending:  # lost too: held like this one until found or settled
                        if not other.cancelled() and isinstance(other.exception(), OutcomeUnknown):
                            self._lines_lost(record, other_chunk)
                    if isinstance(exc, LinesRefused):  # only once nothing of the document is still in flight
                        self._discard(plan, record, number, exc)
                    raise
                self.audit.lines_written(record.id, [line.number for line in chunk], "created")
                self.audit.take_lease(writing_lease(plan), self.run_id, LEASE_SECONDS)  # still writing
                written += len(chunk)
                self.progress(
                    f"{plan.document_key} ({number}): {written + len(plan.lines) - len(missing)} "
                    f"of {len(plan.lines)} lines written"
                )
                if written < len(missing):
                    self.checkpoint("mid_lines")
                send_more()
        return written

    def _settle(self, plan: Plan, record: DocumentRecord, number: str, chunk: list[PlannedLine], sent: Future) -> None:
        """The outcome of one chunk's write: done, resolved by a lookup, refused (LinesRefused: the caller
        discards the document), or failed."""
        try:
            sent.result()
        except OutcomeUnknown as exc:
            # Recorded before the lookup, which may fail or be cut short too: until these lines are found, or the
            # settle time has passed, no later run sends them again.
            self._lines_lost(record, chunk)
            self.audit.event(record.id, self.run_id, "outcome_unknown", str(exc))
            # Did the changeset land? It is atomic: its lines are all there or none are.
            held = {line.number for line in self.target.read_lines(plan, number)}
            if all(line.number in held for line in chunk):
                return
            if any(line.number in held for line in chunk):
                raise VerificationFailed(
                    f"{plan.system}: {number} holds part of an atomic write; see the journal in {plan.system}"
                ) from exc
            # Not found: the target may still be saving it (a gateway, or this client's timeout, gave up before
            # the server did). It is not sent again now — a second copy could land beside the first — but by a
            # later run or replay once the settle time has passed, which looks the lines up again first.
            self.audit.set_state(record.id, "unknown", run_id=self.run_id, error=str(exc))
            raise
        except LinesRefused:
            raise
        except Exception as exc:
            self.audit.set_state(record.id, "failed", run_id=self.run_id, error=str(exc), event="lines_failed")
            raise

    def _lines_lost(self, record: DocumentRecord, chunk: list[PlannedLine]) -> None:
        self.audit.event(record.id, self.run_id, LINES_UNKNOWN, f"lines {chunk[0].number}–{chunk[-1].number}")

    def _discard(self, plan: Plan, record: DocumentRecord, number: str, refusal: LinesRefused) -> None:
        """The target refused a line validation could not foresee: remove the unposted document, so that
        none of it stays (never half a journal), and name the line."""
        problem = Problem(refusal.line, f"{plan.system} refused it: {refusal.reason}")
        try:
            self.target.discard(plan, number)
        except Exception as exc:
            message = (
                f"{plan.system} refused a line of {number} ({problem.describe()}), and deleting the unposted "
                f"journal failed ({exc}): delete journal {number} in {plan.company} by hand before posting again"
            )
            self.audit.set_state(record.id, "failed", run_id=self.run_id, error=message, event="discard_failed")
            raise PostingRefused(message, [problem.describe()]) from exc
        if refusal.line is not None:
            self.audit.refuse_lines(record.id, {refusal.line.number: problem.reason})
        self.audit.set_state(
            record.id,
            "refused",
            run_id=self.run_id,
            error=problem.describe(),
            event="refused_by_target",
            detail=f"{number} deleted: no part of it stays",
        )
        raise PostingRefused(
            f"{plan.system}: {plan.document_key} was refused while writing; journal {number} was deleted, nothing "
            "of it stays",
            [problem.describe()],
        )

    def _check_same_plan(self, plan: Plan, existing: WrittenDocument, *, whole: bool = False) -> None:
        """The lines the target holds are the plan's: all of them with `whole`, else a prefix of them too (a
        run stopped midway: the rest is written now)."""
        differences = self._differences(plan, existing, whole=whole)
        if differences:
            advice = getattr(self.target, "on_other_figures", JOURNAL_OTHER_FIGURES)
            raise PlanChanged(
                f"{plan.system}: {plan.document_key} ({plan.partition or 'this document'}) already exists as "
                f"{existing.number} with other figures; nothing was written. {advice}",
                differences,
                existing,
            )

    @staticmethod
    def _differences(plan: Plan, existing: WrittenDocument, *, whole: bool) -> list[str]:
        planned = {line.number: line for line in plan.lines}
        differences = [
            _difference(planned.get(line.number), line)
            for line in existing.lines
            if planned.get(line.number) is None or not same_line(planned[line.number], line)
        ]
        if whole:
            held = {line.number for line in existing.lines}
            differences += [
                f"line {line.number}: in the new plan ({_describe(as_written(line))}), not in the target"
                for line in plan.lines
                if line.number not in held
            ]
        return differences

    def _verify(self, plan: Plan, number: str, held: list[WrittenLine]) -> None:
        by_number = {line.number: line for line in held}
        problems = [
            f"line {line.number}: planned {line.describe()}, the target holds {_describe(by_number.get(line.number))}"
            for line in plan.lines
            if line.number not in by_number or not same_line(line, by_number[line.number])
        ]
        extra = sorted(set(by_number) - {line.number for line in plan.lines})
        if extra:
            problems.append(f"lines the plan does not have: {extra[:20]}")
        if len(by_number) < len(held):
            twice = sorted(n for n, count in Counter(line.number for line in held).items() if count > 1)
            problems.append(f"line numbers the target holds more than once: {twice[:20]}")
        if problems:
            raise VerificationFailed(
                f"{plan.system}: {number} differs from the plan after writing:\n  " + "\n  ".join(problems[:50])
            )


def _every_line(plan: Plan, record: DocumentRecord) -> list[int] | None:
    """The plan's line numbers for the audit store; None (all its lines, in one statement) when the store
    holds this very plan, which it may not: a document written under an earlier plan keeps that one's lines."""
    return None if record.digest == plan.digest else [line.number for line in plan.lines]


def same_line(planned: PlannedLine, written: WrittenLine) -> bool:
    return line_figures(planned) == line_figures(written)


def line_amounts(line: PlannedLine | WrittenLine) -> tuple:
    """What a line books, whatever its number and text: account, dimensions, amounts, currency (in any case)."""
    return (line.account, tuple(line.dimensions), line.debit, line.credit, line.currency.upper())


def line_figures(line: PlannedLine | WrittenLine) -> tuple:
    """What a line holds, whatever its number: what it books, and its text."""
    return (*line_amounts(line), line.text)


def as_written(line: PlannedLine) -> WrittenLine:
    """A planned line as the target holds it once written."""
    return WrittenLine(line.number, line.account, line.dimensions, line.debit, line.credit, line.currency, line.text)


def _named(found: WrittenDocument) -> str:
    """A document found in the target, with its status there (Acumatica's: Balanced, Released, …)."""
    status = found.detail.get("status") or ("posted" if found.posted else "not posted")
    return f"{found.number} ({status})"


def _describe(line: WrittenLine | None) -> str:
    if line is None:
        return "nothing"
    dims = ", ".join(f"{n}={v}" for n, v in line.dimensions)
    return f"{line.account}{' [' + dims + ']' if dims else ''} debit {line.debit} credit {line.credit} {line.currency}"


def _difference(planned: PlannedLine | None, written: WrittenLine) -> str:
    if planned is None:
        return f"line {written.number}: in the target ({_describe(written)}), not in the new plan"
    return f"line {written.number}: the target holds {_describe(written)}, the new plan {planned.describe()}"


def difference_lines(plan: Plan, posted: list[list[WrittenLine]]) -> list[PlannedLine]:
    """What must be posted so that everything posted for the period adds up to the plan: deltas per
    (account, dimensions, currency), each a line of its own, in a stable order."""
    totals: dict[tuple, Decimal] = {}
    texts: dict[tuple, str] = {}
    for line in plan.lines:
        key = (line.account, tuple(line.dimensions), line.currency.upper())
        totals[key] = totals.get(key, ZERO) + line.amount
        texts.setdefault(key, line.text)
    for document in posted:
        for line in document:
            key = (line.account, tuple(line.dimensions), line.currency.upper())
            totals[key] = totals.get(key, ZERO) - (line.debit - line.credit)
            texts.setdefault(key, line.text)
    deltas = []
    for number, (key, amount) in enumerate(
        sorted(((k, a) for k, a in totals.items() if a != ZERO), key=lambda item: repr(item[0])), start=1
    ):
        account, dimensions, currency = key
        deltas.append(
            PlannedLine(
                number=number,
                account=account,
                dimensions=dimensions,
                debit=amount if amount > 0 else ZERO,
                credit=-amount if amount < 0 else ZERO,
                currency=currency,
                text=_adjustment_text(texts[key]),
                kind="adjustment",
            )
        )
    return deltas


def _adjustment_text(text: str) -> str:
    return ("Adj: " + text)[:60]
