"""Reference records kept equal to a Looker result: each record inserted or updated by its key, once.

Unlike a journal, records stand alone: one Acumatica refuses (a vendor class that does not exist)
is named with its field and reason, and the others still land. Each record is read by its key
first, and only the fields that differ are sent (a PUT matched by key: sending it again does what
sending it once did). Every record is a line of one audit document per run's partition, so a
refused one is replayed from the audit store once its data or the ERP is fixed.

A record the ERP saves under a key of its own (a key it numbers itself ignores the one sent) cannot be
found by its key again: each run would save another. It is recorded as written under the ERP's key
(line state `renumbered`), never sent again by any run of the flow, and the sync fails with a
configuration error: such records need another natural key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Protocol

from ..audit.store import FINISHED, AuditStore, DocumentRecord
from ..core.errors import ConfigError, ConnectorError, RecordRefused
from ..core.posting import ZERO, Plan, PlannedLine, SourceRow

RENUMBERED = "renumbered"  # a line's record, saved under a key the target assigned (its target_line)


class RecordTarget(Protocol):
    system: str
    entity: str
    key: str

    def current(self, key: str) -> dict | None:
        """The record as the ERP holds it, or None."""
        ...

    def upsert(self, record: dict) -> dict:
        """Insert or update by key (only the fields given); raises RecordRefused naming fields."""
        ...

    def close(self) -> None: ...


@dataclass
class SyncResult:
    inserted: list[str] = field(default_factory=list)
    updated: dict[str, list[str]] = field(default_factory=dict)  # key → fields changed
    unchanged: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # key → reason
    renumbered: dict[str, str] = field(default_factory=dict)  # key sent → the key the target saved it under
    document: DocumentRecord | None = None

    def summary(self) -> str:
        return (
            f"{len(self.inserted)} inserted, {len(self.updated)} updated, {len(self.unchanged)} unchanged, "
            f"{len(self.refused)} refused" + (f", {len(self.renumbered)} saved under a key of the target's" if
                                              self.renumbered else "")
        )  # fmt: skip


class ConflictingRecords(ConnectorError):
    """The source asks for one record twice with different values: nothing is written until it decides."""

    def __init__(self, entity: str, conflicts: list[str]):
        self.conflicts = conflicts
        super().__init__(
            f"{len(conflicts)} {entity} record(s) appear more than once with different values; nothing was written: "
            + "; ".join(conflicts[:20])
        )


class RecordsRefused(ConnectorError):
    def __init__(self, result: SyncResult, entity: str):
        self.result = result
        super().__init__(
            f"{len(result.refused)} {entity} record(s) refused ({result.summary()}); the rest landed. "
            + "; ".join(f"{key}: {reason}" for key, reason in list(result.refused.items())[:20])
            + " — fix them and replay (`mlconnector replay`)"
        )


class KeyAssignedByTarget(ConfigError):
    """The target numbers the records' key itself: a record sent by it was saved under another key."""

    def __init__(self, result: SyncResult, system: str, entity: str, key: str):
        self.result = result
        saved = "; ".join(f"{sent} was saved as {kept}" for sent, kept in list(result.renumbered.items())[:20])
        super().__init__(
            f"{system} assigns the {entity} {key} itself (a numbering sequence), so the {key} sent is not kept and "
            f"the record cannot be found by it again: {saved}. Each is recorded as written under {system}'s key "
            f"and is not sent again. Key these {entity} records by another natural key, a field {system} saves as "
            f"sent ({result.summary()})"
        )


def records_plan(
    *,
    flow: str,
    partition: str,
    system: str,
    company: str,
    entity: str,
    key: str,
    rows: Sequence[tuple[SourceRow, dict]],
) -> Plan:
    """Desired records as plan lines: `account` the key value, `dimensions` the record's (field, value) pairs."""
    lines: list[PlannedLine] = []
    first_row: dict[str, PlannedLine] = {}
    conflicts = []
    for source, record in rows:
        values = tuple((name, _text(value)) for name, value in record.items() if value is not None)
        line = PlannedLine(
            len(lines) + 1, str(record[key]), values, ZERO, ZERO, "", f"{entity} {record[key]}", source=source
        )
        earlier = first_row.get(line.account.casefold())  # one record, whatever the case of its key
        if earlier is None:
            first_row[line.account.casefold()] = line
            lines.append(line)
        elif earlier.dimensions != line.dimensions:  # the same record asked for twice, differently
            conflicts.append(
                f"{key} {line.account}: {source.query} rows {earlier.source.row_number} and {source.row_number} differ "
                f"({dict(earlier.dimensions)} / {dict(values)})"
            )
    if conflicts:
        raise ConflictingRecords(entity, conflicts)
    plan = Plan(
        flow=flow,
        partition=partition,
        document_key=f"MLC {flow} {partition}".strip(),
        system=system,
        company=company,
        header={"entity": entity, "key": key},
        lines=tuple(lines),
    )
    # Each set of wanted records is an audit document of its own: a verified document keeps its lines, so under
    # one key a changed set was checked against the last one's line numbers, and its changes never sent.
    return replace(plan, document_key=f"{plan.document_key} {plan.digest[:12]}")


def _text(value: Any) -> str:
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _same(held: Any, wanted: str, *, key: bool = False) -> bool:
    """Whether the ERP's value is the wanted one (text from Looker): numbers by value, yes/no by truth, the
    record's key whatever its case (ERPs keep key codes upper case and find them in any case: `v90055` is
    saved as V90055, which was then called a refusal on every run)."""
    if key and isinstance(held, str):
        return held.strip().casefold() == wanted.strip().casefold()
    if held is None:
        return wanted == ""
    if isinstance(held, bool):
        return held == (wanted.strip().lower() in ("true", "yes", "1"))
    if isinstance(held, (int, Decimal)):
        try:
            return Decimal(held) == Decimal(wanted)
        except ArithmeticError:
            return False
    return str(held) == wanted


class RecordSync:
    def __init__(
        self, target: RecordTarget, audit: AuditStore, *, run_id: str, progress: Callable[[str], None] = print
    ):
        self.target, self.audit, self.run_id, self.progress = target, audit, run_id, progress

    def run(self, plan: Plan) -> SyncResult:
        record = self.audit.save_plan(plan, self.run_id)
        # What the target should hold is now this set: an earlier set left unfinished is not replayed over it.
        self.audit.supersede(plan.flow, plan.partition, record.id, self.run_id)
        result = SyncResult()
        renumbered = self._held_under_target_keys(plan.flow)
        # A replay resumes: records an unfinished attempt synced are not read again. A finished document's are:
        # the target may have changed since (another set of records sent in between, or a person's edit).
        done = (
            set()
            if record.state in FINISHED
            else {r.line.number for r in self.audit.line_records(record.id) if r.state == "verified"}
        )
        for line in plan.lines:
            if line.number in done:
                result.unchanged.append(line.account)
                continue
            if line.account.casefold() in renumbered:  # saved before under the target's key: never sent again
                self._renumbered(record, line, renumbered[line.account.casefold()], result, attempt=False)
                continue
            self._sync(record, line, result)
        errors = {**result.refused, **{k: f"saved as {v}" for k, v in result.renumbered.items()}}
        state = "verified" if not errors else "failed"
        self.audit.set_state(record.id, state, run_id=self.run_id, event="synced", detail=result.summary(),
                             error="; ".join(f"{k}: {v}" for k, v in errors.items()) or None)  # fmt: skip
        result.document = self.audit.document(record.id)
        if result.renumbered:
            raise KeyAssignedByTarget(result, self.target.system, self.target.entity, self.target.key)
        if result.refused:
            raise RecordsRefused(result, self.target.entity)
        return result

    def preview(self, plan: Plan) -> list[tuple[str, str, list[str]]]:
        """(key, insert | update | unchanged | held as <target's key>, fields that differ) per record, read without
        writing anything. A record saved before under a key the target assigned is never sent again: a person
        approving the preview was shown an insert the run would not make."""
        renumbered = self._held_under_target_keys(plan.flow)
        changes = []
        for line in plan.lines:
            if line.account.casefold() in renumbered:
                changes.append((line.account, f"held as {renumbered[line.account.casefold()]}", []))
                continue
            held = self.target.current(line.account)
            wanted = dict(line.dimensions)
            changed = [f for f, value in wanted.items() if held is None or not self._same(held, f, value)]
            action = "insert" if held is None else "update" if changed else "unchanged"
            changes.append((line.account, action, changed if held is not None else sorted(wanted)))
        return changes

    def _held_under_target_keys(self, flow: str) -> dict[str, str]:
        """{our key (any case): the key the target assigned} of the flow's records saved under a key of its own."""
        return {key.casefold(): kept for key, kept in self.audit.target_lines(flow, RENUMBERED).items()}

    def _same(self, record: Mapping[str, Any], field: str, wanted: str) -> bool:
        return _same(record.get(field), wanted, key=field == self.target.key)

    def _sync(self, record: DocumentRecord, line: PlannedLine, result: SyncResult) -> None:
        wanted: Mapping[str, str] = dict(line.dimensions)
        key = line.account
        held = self.target.current(key)
        changed = [f for f, value in wanted.items() if held is None or not self._same(held, f, value)]
        if held is not None and not changed:
            result.unchanged.append(key)
            self.audit.lines_written(record.id, [line.number], "verified", attempt=False)
            return
        send = {self.target.key: key, **{f: wanted[f] for f in changed if f != self.target.key}}
        # A field the target derives (BC's city from its post code) goes with its source, so the target derives it
        # again: sent alone (the post code unchanged), BC kept Sales' spelling over the one it had derived.
        for derived in changed:
            for source in getattr(self.target, "derived_from", {}).get(derived, ()):
                if source in wanted:
                    send.setdefault(source, wanted[source])
        try:
            saved = self.target.upsert(send)
        except RecordRefused as refused:
            reason = "; ".join(refused.errors)
            result.refused[key] = reason
            self.audit.refuse_lines(record.id, {line.number: reason})
            self.progress(f"{self.target.entity} {key} refused: {reason}")
            return
        kept = saved.get(self.target.key)
        if held is None and kept not in (None, "") and not self._same(saved, self.target.key, key):
            self._renumbered(record, line, str(kept), result)
            self.audit.event(record.id, self.run_id, "inserted", f"{key}: saved as {kept}, a key the target assigned")
            return
        differs = [f for f in changed if not self._same(saved, f, wanted[f])]
        derived = {f: saved.get(f) for f in differs if self._derived(f, send)}  # the target's own, accepted
        differs = [f for f in differs if f not in derived]
        if differs:
            result.refused[key] = f"saved, but {', '.join(differs)} differ from what was sent"
            self.audit.refuse_lines(record.id, {line.number: result.refused[key]})
            return
        if held is None:
            result.inserted.append(key)
        else:
            result.updated[key] = changed
        self.audit.lines_written(record.id, [line.number], "verified")
        as_derived = "".join(f"; {f} is {value!r} as {self.target.system} derives it" for f, value in derived.items())
        self.audit.event(
            record.id,
            self.run_id,
            "inserted" if held is None else "updated",
            f"{key}: {', '.join(changed)}" + as_derived,
        )

    def _derived(self, field: str, sent: Mapping[str, str]) -> bool:
        """Whether the target fills `field` itself from another field sent with it (`derived_from` of the target:
        BC's post code gives a customer its city, county and country), so its value is the target's to choose."""
        return any(source in sent for source in getattr(self.target, "derived_from", {}).get(field, ()))

    def _renumbered(
        self, record: DocumentRecord, line: PlannedLine, kept: str, result: SyncResult, *, attempt: bool = True
    ) -> None:
        result.renumbered[line.account] = kept
        self.audit.lines_written(record.id, [line.number], RENUMBERED, attempt=attempt, target_line=kept)
        self.progress(f"{self.target.entity} {line.account} is held as {kept}, a key the target assigned")
