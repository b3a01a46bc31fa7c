"""Looker rows → a journal plan, and which document a run writes for a period (Dagster-free).

A period has one journal. Its natural key names the journal and the partition; a rerun with the
same figures finds it and writes nothing. Late data that moves the figures is either refused
(`on_change: fail`, naming the differences) or posted as a difference journal with its own key
(`on_change: adjust`): posted entries are never edited.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date
from decimal import Decimal
from functools import lru_cache
from typing import Any

import pandas as pd
from pandas.api.types import is_datetime64_any_dtype

from ..audit.store import FINISHED, DocumentRecord
from ..core.errors import ConfigError
from ..core.journal_mapping import JournalMapping, ValueSource, closing_lines, lines_from_rows, posting_date
from ..core.memory import cyclic_gc_paused
from ..core.posting import ZERO, Plan, PostingTarget, Problem, SourceRow, WrittenDocument, WrittenLine, balances
from ..warehouse.schema import DATE_TIME_ZONES, ROW_NUMBER, RUN_ID, SOURCE, WINDOW_START, column_name
from .post import PlanChanged, PostingEngine, as_written, difference_lines, line_amounts


@dataclass(frozen=True)
class JournalSpec:
    """What a target system brings to a journal posted from Looker."""

    system: str
    company: Callable[[JournalMapping], str]
    header: Callable[[JournalMapping, date], dict[str, Any]]  # the header fields the target writes
    document_key: Callable[[str, str, int], str]  # (journal name, partition, adjustment number) → key
    # The line dimensions in the target's order (may read the target, e.g. F&O's integration format).
    dimensions: Callable[[JournalMapping, PostingTarget], list[tuple[str, ValueSource]]]
    text_limit: int = 60


@dataclass(frozen=True)
class LookerRows:
    """A Looker asset's rows for one period, as the warehouse holds them."""

    query: str  # the asset, e.g. looker/fee_allocation
    rows: list[tuple[SourceRow, dict[str, Any]]]


@cyclic_gc_paused()
def looker_rows(query: str, frame: pd.DataFrame, field_names: Sequence[str]) -> LookerRows:
    """Rows in Looker's result order; each keyed by warehouse column and by Looker field name."""
    if ROW_NUMBER in frame.columns:
        frame = frame.sort_values(ROW_NUMBER, kind="stable")
    by_column = {column_name(f): f for f in field_names}
    data_columns = [c for c in frame.columns if not c.startswith("_")]
    field_of = [by_column.get(c, c) for c in data_columns]

    def column(name: str) -> list:
        return frame[name].tolist() if name in frame.columns else [None] * len(frame)

    # Column by column (a list per column is a fraction of the cost of a dict per row).
    zones = [_zones_of(shown_in) for shown_in in column(DATE_TIME_ZONES)]
    data = [
        _as_shown(frame[c], [of_row.get(c) for of_row in zones])
        if is_datetime64_any_dtype(frame[c])
        else [_plain(v) for v in frame[c].tolist()]
        for c in data_columns
    ]
    rows = zip(*data, strict=True) if data else iter([()] * len(frame))
    meta = zip(column(WINDOW_START), column(SOURCE), column(RUN_ID), column(ROW_NUMBER), strict=True)
    result = []
    for position, (plain, (window, origin, run_id, number)) in enumerate(zip(rows, meta, strict=True), start=1):
        values = dict(zip(field_of, plain, strict=True))
        source = SourceRow(
            query=query,
            origin=str(origin or ""),
            run_id=str(run_id or ""),
            window_start=window.isoformat() if window is not None and not pd.isna(window) else None,
            row_number=int(number) if number is not None and not pd.isna(number) else position,
            values=values,
        )
        result.append((source, {**values, **dict(zip(data_columns, plain, strict=True))}))
    return LookerRows(query, result)


@lru_cache(maxsize=64)
def _zones_of(shown_in: str | None) -> dict[str, str]:
    """{column: zone} of a row's date-times (one text per result: read once)."""
    return json.loads(shown_in) if shown_in else {}


def _as_shown(moments: pd.Series, zones: Sequence[str | None]) -> list[str | None]:
    """Date-times as Looker showed them: wall-clock time in the query's zone (UTC for a `convert_tz: no` field,
    landed as written), with its offset, so a posting date is Looker's day, not the UTC day. A warehouse hands
    them back naive (Snowflake's NTZ, UTC) or in its session's zone. Rows loaded before the zones were kept: UTC."""
    if moments.dt.tz is None:
        moments = moments.dt.tz_localize(UTC)
    return [
        None if pd.isna(moment) else moment.tz_convert(zone or UTC).isoformat()
        for moment, zone in zip(moments.tolist(), zones, strict=True)
    ]


def _plain(value: Any) -> Any:
    if value is None or (not isinstance(value, (str, Decimal)) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, Decimal):  # numpy scalars
        return value.item()
    return value


def referenced(mapping: JournalMapping, dimensions: Sequence[tuple[str, ValueSource]]) -> list[str]:
    return mapping.looker_fields() + [f for _, source in dimensions for f in source.fields()]


@cyclic_gc_paused()
def build_plan(
    spec: JournalSpec,
    mapping: JournalMapping,
    rows: LookerRows,
    *,
    flow: str,
    partition: str,
    partition_last_day: date | None,
    dimensions: list[tuple[str, ValueSource]],
) -> tuple[Plan, list[Problem]]:
    """The journal for these rows, and the rows that cannot be mapped (named, with their values)."""
    fields = referenced(mapping, dimensions)
    missing = sorted(
        {f for f in fields if rows.rows and f not in rows.rows[0][1] and column_name(f) not in rows.rows[0][1]}
    )
    if missing:
        have = ", ".join(sorted(k for k in rows.rows[0][1] if "." in k) or sorted(rows.rows[0][1]))
        raise ConfigError(
            f"journal {mapping.name}: Looker field(s) {', '.join(missing)} are not in {rows.query} (have: {have})"
        )
    mapped = [(source, _with_fields(values, fields)) for source, values in rows.rows]
    lines, problems, rounding_by_currency = lines_from_rows(
        mapping, mapped, dimensions=dimensions, partition=partition, text_limit=spec.text_limit
    )
    rows_on: dict[date, list[int]] = {}  # the Looker rows of each posting date
    for source, values in mapped:
        try:
            rows_on.setdefault(posting_date(mapping, values, partition_last_day), []).append(source.row_number)
        except ValueError as exc:
            problems.append(Problem(None, f"{source.query} row {source.row_number}: {exc}"))
    if len(rows_on) > 1:
        problems.append(
            Problem(None, f"the rows carry {len(rows_on)} posting dates ({_rows_by_date(rows_on)}); a journal has one")
        )
    when = min(rows_on) if rows_on else partition_last_day or date.today()
    order = [n for n, _ in dimensions]
    # The offset line's own dimensions too, where the rows' lines have none (the target checked their names).
    order += [n for n in mapping.balancing.dimensions if n not in order]
    lines += closing_lines(mapping, lines, rounding_by_currency, partition=partition, dimension_order=order)
    for currency, owed in balances(lines).items():
        if owed != ZERO and owed == rounding_by_currency.get(currency) and mapping.balancing.mode == "rows_balance":
            problems.append(
                Problem(
                    None,
                    f"the {currency} rows balance, but rounding each line to its precision leaves {owed}: set "
                    "rounding_account (where that difference is booked) or balancing.mode: offset",
                )
            )
    # An unpartitioned journal (its query has no partitions; deliveries feed it) is one per posting date, keyed
    # by it: under one key, each new period's figures were taken for a change to the last period's journal.
    period = partition or when.isoformat()
    plan = Plan(
        flow=flow,
        partition=period,
        document_key=spec.document_key(mapping.name, period, 0),
        system=spec.system,
        company=spec.company(mapping),
        header={**spec.header(mapping, when), "posting_date": when.isoformat()},
        lines=tuple(lines),
        rounding_difference=rounding_by_currency,
    )
    return plan, problems


def _rows_by_date(rows_on: dict[date, list[int]], shown: int = 5) -> str:
    """`2026-03-01: rows 1, 3; 2026-03-02: rows 2, 4, 5, 6, 8, …` for the first few dates: where to look."""

    def first(numbers: list[int]) -> str:
        return ", ".join(map(str, numbers[:shown])) + (", …" if len(numbers) > shown else "")

    return "; ".join(f"{day}: rows {first(rows_on[day])}" for day in sorted(rows_on)[:shown]) + (
        "; …" if len(rows_on) > shown else ""
    )


def _with_fields(values: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    row = dict(values)
    for field in fields:
        if field not in row:
            row[field] = values.get(column_name(field))
    return row


@dataclass(frozen=True)
class Decision:
    """What this run writes for the period."""

    plan: Plan  # the document to write (or to verify again)
    outcome: str  # new | unchanged | adjustment | no_change
    note: str
    adjusts_key: str | None = None
    existing: WrittenDocument | None = None


def choose_document(
    engine: PostingEngine, spec: JournalSpec, mapping: JournalMapping, plan: Plan, *, preview: bool = False
) -> Decision:
    """The original journal if nothing is posted yet or it holds these figures; else refuse or adjust.

    Figures are only ever compared with a whole journal: one an earlier run left unfinished with other figures is
    first finished with its recorded plan, as replay would (in a preview, nothing is written: the decision is
    made against the journal as it will be once finished)."""
    existing = engine.find(plan)
    record = engine.audit.find_document(plan.flow, plan.partition, plan.document_key)
    if existing is None:
        _refuse_beside_an_undated_journal(engine, spec, mapping, plan)
        if record is not None and record.document_number is not None and record.digest != plan.digest:
            # Written once, deleted in the target since (a person): the steps after this one write what the audit
            # store holds, which was still the first plan, not these figures.
            gone = f"{record.document_number} is no longer in {plan.system}"
            if not preview:
                engine.audit.replan_gone(record.id, plan, engine.run_id, gone)
            return Decision(plan, "new", f"{gone}: {plan.document_key} will be created with these figures")
        return Decision(plan, "new", f"no journal {plan.document_key} yet: it will be created")
    unfinished = record is not None and record.state not in FINISHED
    if unfinished and record.digest != plan.digest:
        existing, finished = _finish_earlier_plan(engine, record, existing, preview)
        decision = _decide(engine, spec, mapping, plan, existing, resuming=False)
        return replace(decision, note=f"{finished}; then {decision.note}")
    # Lines missing from the target are this plan's still to write only when a run of this very plan stopped
    # midway; missing from a finished journal (or one with no record), they are new figures.
    resuming = (
        (record is None or unfinished)
        and not existing.posted
        and not getattr(engine.target, "lines_with_header", False)
    )
    return _decide(engine, spec, mapping, plan, existing, resuming=resuming)


def _finish_earlier_plan(
    engine: PostingEngine, record: DocumentRecord, existing: WrittenDocument, preview: bool
) -> tuple[WrittenDocument, str]:
    """The journal once its recorded plan is written whole, and what was (or would be) done for that."""
    recorded = engine.audit.plan(record)
    said = f"{record.document_key} ({existing.number}) was left unfinished by an earlier run with other figures"
    if preview:
        whole = replace(existing, lines=[as_written(line) for line in recorded.lines])
        return whole, f"{said}: it would be finished with its recorded figures first"
    engine.progress(f"{said}: finishing it with its recorded figures first, as replay would")
    engine.run(recorded, adjusts=record.adjusts)
    return engine.find(recorded), f"{said}: finished with its recorded figures first"


def _decide(engine, spec, mapping, plan: Plan, existing: WrittenDocument, *, resuming: bool) -> Decision:
    if mapping.on_change == "adjust" and engine.find(
        replace(plan, document_key=spec.document_key(mapping.name, plan.partition, 1))
    ):
        # The period's figures are the original and its difference journals together: compared with the original
        # alone, figures back to it looked unchanged, and the difference journals stayed in the ledger.
        return _adjustment(engine, spec, mapping, plan, existing)
    try:
        engine._check_same_plan(plan, existing, whole=not resuming)
    except PlanChanged:
        held = _as_held(plan, existing)
        if held is not None:
            plan_as_held, kept = held
            return Decision(
                plan_as_held,
                "unchanged",
                f"{plan.document_key} exists as {existing.number} with these figures; its {kept} are kept as posted",
                existing=existing,
            )
        if mapping.on_change == "fail":
            raise
        return _adjustment(engine, spec, mapping, plan, existing)
    return Decision(
        plan, "unchanged", f"{plan.document_key} exists as {existing.number} with these figures", existing=existing
    )


def _as_held(plan: Plan, existing: WrittenDocument) -> tuple[Plan, str] | None:
    """The plan as the target holds it, when the target books exactly its lines (account, dimensions, amounts,
    currency) under other line numbers or texts; else None. Looker's rows come back reordered from a query without
    sorts, or with ties; a text rendered otherwise (a template edited, numbers written as Looker wrote them since
    an upgrade) changes no figure, and posted lines are never edited. Each line keeps its Looker row."""
    held: dict[tuple, list[WrittenLine]] = {}
    for line in sorted(existing.lines, key=lambda line: line.number):
        held.setdefault(line_amounts(line), []).append(line)
    as_held, moved, retexted = [], False, False
    for line in plan.lines:
        candidates = held.get(line_amounts(line))
        if not candidates:
            return None
        same_text = [c for c in candidates if c.text == line.text]
        written = (same_text or candidates)[0]
        candidates.remove(written)
        moved |= written.number != line.number
        retexted |= written.text != line.text
        as_held.append(replace(line, number=written.number, text=written.text))
    if any(held.values()):
        return None
    kept = " and ".join([*(["line numbers"] if moved else []), *(["texts"] if retexted else [])]) or "lines"
    return replace(plan, lines=tuple(sorted(as_held, key=lambda line: line.number))), kept


def _refuse_beside_an_undated_journal(engine: PostingEngine, spec: JournalSpec, mapping: JournalMapping, plan: Plan):
    """A journal on an unpartitioned query used to be keyed `MLC <journal>` for every period. One under that
    key may hold this posting date's figures, which a journal under the dated key would post a second time:
    nothing is written until a person has renamed it (to this key if it holds them, else to another)."""
    if plan.partition != plan.header.get("posting_date"):
        return
    undated = replace(plan, document_key=spec.document_key(mapping.name, "", 0))
    found = engine.find(undated)
    if found is not None:
        raise PlanChanged(
            f"{plan.system}: journal {found.number} carries the key {undated.document_key!r}, as journals on an "
            f"unpartitioned query did before they were keyed by their posting date; nothing was written",
            [f"if {found.number} holds the figures of {plan.partition}, change its description to "
             f"{plan.document_key!r} (this run then finds it); else change it to anything else, and run again"],
            found,
        )  # fmt: skip


def _adjustment(engine, spec, mapping, plan: Plan, original: WrittenDocument) -> Decision:
    posted: list[list[WrittenLine]] = [original.lines]
    number = 1
    while True:
        key = spec.document_key(mapping.name, plan.partition, number)
        probe = replace(plan, document_key=key)
        found = engine.find(probe)
        if found is None:
            break
        record = engine.audit.find_document(plan.flow, plan.partition, key)
        if record is not None and record.state != "verified":
            stored = engine.audit.plan(record)
            return Decision(
                stored, "adjustment", f"finishing difference journal {key} ({found.number})", plan.document_key, found
            )
        posted.append(found.lines)
        number += 1
    deltas = difference_lines(plan, posted)
    if not deltas:
        return Decision(
            plan, "no_change", f"{plan.document_key} and its difference journals already add up to these figures"
        )
    difference = replace(plan, document_key=key, lines=tuple(deltas), adjusts=plan.document_key, rounding_difference={})
    return Decision(
        difference,
        "adjustment",
        f"{plan.document_key} ({original.number}) holds other figures: difference journal {key} with "
        f"{len(deltas)} line(s)",
        plan.document_key,
        original,
    )


def plan_preview(plan: Plan, problems: Sequence[Problem], limit: int = 40) -> dict[str, str]:
    """Markdown for the UI: the lines, totals per account and per dimension value, the balance."""
    lines = [
        "| # | account | dimensions | debit | credit | text | Looker row |",
        "|---|---|---|---|---|---|---|",
    ]
    for line in plan.lines[:limit]:
        dims = ", ".join(f"{n}={v}" for n, v in line.dimensions)
        row = str(line.source.row_number) if line.source else line.kind
        lines.append(
            f"| {line.number} | {line.account} | {dims} | {line.debit} | {line.credit} | {line.text} | {row} |"
        )
    if len(plan.lines) > limit:
        lines.append(f"| … | {len(plan.lines) - limit} more lines | | | | | |")
    by_account: dict[str, Decimal] = {}
    by_dimension: dict[str, Decimal] = {}
    for line in plan.lines:
        by_account[line.account] = by_account.get(line.account, ZERO) + line.amount
        for name, value in line.dimensions:
            key = f"{name}={value}"
            by_dimension[key] = by_dimension.get(key, ZERO) + line.amount
    totals = ["| account | net (debit − credit) |", "|---|---|"] + [
        f"| {a} | {n} |" for a, n in sorted(by_account.items())
    ]
    dims = ["| dimension value | net |", "|---|---|"] + [f"| {d} | {n} |" for d, n in sorted(by_dimension.items())]
    preview = {
        "lines": "\n".join(lines),
        "totals_by_account": "\n".join(totals),
        "totals_by_dimension": "\n".join(dims),
    }
    if problems:
        preview["problems"] = "\n".join(f"- {p.describe()}" for p in problems[:100])
    return preview
