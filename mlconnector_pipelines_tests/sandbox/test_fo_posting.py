"""Journals into F&O, exactly once: the posting engine and the F&O target over HTTPS against the sandbox.

Every case ends by comparing with the sandbox's own journals: one header per natural key, each
planned line once, amounts digit for digit. Crashes are simulated at the engine's checkpoints (a
BaseException the engine does not catch, as a killed process would not run its handlers either);
lost answers are the sandbox committing a write and then dropping the connection or answering 504.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest

from mlconnector_pipelines.audit.store import AuditStore, PlanBeingWritten
from mlconnector_pipelines.core.errors import ConfigError, OutcomeUnknown, RequestFailedError
from mlconnector_pipelines.core.posting import SourceRow
from mlconnector_pipelines.engine.journal import LookerRows, build_plan, choose_document
from mlconnector_pipelines.engine.post import (
    CHECKPOINTS,
    PlanChanged,
    PostingEngine,
    PostingRefused,
    VerificationFailed,
)
from mlconnector_pipelines.flows.finance_operations import SPEC
from mlconnector_pipelines.systems.finance_operations.config import FinanceOperationsJournal
from mlconnector_pipelines.systems.finance_operations.resource import FinanceOperationsResource
from mlconnector_pipelines.systems.finance_operations.target import document_key

from ..conftest import FAST_HTTP, make_config

HARD = "123456789012345.678"  # rounds to 123456789012345.68: 17 digits, which no double holds
WEEK = "2026-11-23"
SUNDAY = date(2026, 11, 29)


class SimulatedCrash(BaseException):
    """The process dies here: nothing after this point runs, no handler cleans up."""


def crash_at(point: str):
    def checkpoint(name: str) -> None:
        if name == point:
            raise SimulatedCrash(name)

    return checkpoint


@pytest.fixture
def fo(sandbox, tmp_path):
    sandbox.reset()
    raw = make_config(sandbox, tmp_path).model_dump(mode="json")
    from mlconnector_pipelines.config import parse_config, sandbox_profile

    section = sandbox_profile(sandbox.data_dir, sandbox.url)["finance_operations"]
    section["http"] = dict(FAST_HTTP)
    section["lines_per_batch"] = 4  # several changesets per journal: mid-lines crash points exist
    section["journals"] = []
    raw["finance_operations"] = section
    cfg = parse_config(raw)
    yield cfg
    sandbox.clear_faults()


def mapping(**overrides) -> FinanceOperationsJournal:
    raw = {
        "name": "fees",
        "looker_query": "fees",
        "legal_entity": "usrt",
        "journal_name": "Alloc",
        "account": {"column": "fees.account"},
        "dimensions": {
            "CostCenter": {"column": "fees.cost_center"},
            "BusinessUnit": {"constant": "002"},
        },
        "amount": {"column": "fees.amount"},
        "currency": {"constant": "USD"},
        "text": "Fees {fees.cost_center} wk {partition}",
        "balancing": {"mode": "offset", "account": "220500", "dimensions": {"BusinessUnit": "002"}},
    }
    raw.update(overrides)
    return FinanceOperationsJournal.model_validate(raw)


def looker(*rows: tuple[str, str, str]) -> LookerRows:
    result = []
    for number, (account, cost_center, amount) in enumerate(rows, start=1):
        values = {"fees.account": account, "fees.cost_center": cost_center, "fees.amount": Decimal(amount)}
        result.append((SourceRow("looker/fees", "looker api", "run-looker", WEEK, number, values), values))
    return LookerRows("looker/fees", result)


DEFAULT_ROWS = [
    ("618200", "001", HARD),
    ("618200", "002", "250.10"),
    ("618100", "003", "99.99"),
    ("618200", "004", "-12.34"),
    ("618100", "005", "1000"),
    ("618200", "006", "0.01"),
    ("618100", "007", "75.5"),
    ("618200", "008", "3.333"),
    ("618200", "009", "8"),
]


def plan_for(target, m=None, rows=DEFAULT_ROWS, partition=WEEK, last_day=SUNDAY):
    m = m or mapping()
    built, problems = build_plan(
        SPEC,
        m,
        looker(*rows),
        flow="finance_operations/fees_journal",
        partition=partition,
        partition_last_day=last_day,
        dimensions=SPEC.dimensions(m, target),
    )
    return built, problems


@pytest.fixture
def posting(fo, tmp_path):
    audit = AuditStore.sqlite(tmp_path / "audit.sqlite")
    targets = []

    def engine(run_id: str = "run-1", checkpoint=lambda name: None) -> PostingEngine:
        target = FinanceOperationsResource.from_section(fo.finance_operations, fo.data_dir).journal_target()
        targets.append(target)
        return PostingEngine(target, audit, run_id=run_id, checkpoint=checkpoint)

    yield engine
    for target in targets:
        target.close()
    audit.close()


def dialect(sandbox, **readings) -> None:
    """Switch the F&O sandbox to another reading of the protocol (reset with the sandbox)."""
    sandbox.http.post("/_sandbox/finance_operations/dialect", json=readings).raise_for_status()


def set_week_period(sandbox, status: str, **access) -> None:
    """The status of the week's period (Period 11 of 2026 in usrt) as a person sets it in F&O's Ledger calendar;
    `ledger_access`: its General ledger module access level."""
    sandbox.http.post(
        "/_sandbox/finance_operations/periods",
        json={"legal_entity": "usrt", "year": "2026", "period": "Period 11", "status": status, **access},
    ).raise_for_status()


def validated_then_period_closed(sandbox, engine, plan):
    """A plan recorded and validated; then, before it is written, its period is closed. Its record."""
    record = engine.record(plan)
    engine.validate(plan, record)
    set_week_period(sandbox, "Closed")
    return engine.audit.document(record.id)


def journals(sandbox) -> list[dict]:
    # Exactly as the sandbox holds them: a float would round what the test compares.
    return json.loads(sandbox.http.get("/_sandbox/finance_operations/journals").content, parse_float=Decimal)


def until_saved(sandbox, landed=bool, deadline_seconds: float = 10.0) -> list[dict]:
    """The journals once what was saved late has `landed` (by default: a journal at all), polled, not slept: a
    slow machine only waits longer."""
    ends = time.monotonic() + deadline_seconds
    while not landed(held := journals(sandbox)) and time.monotonic() < ends:
        time.sleep(0.1)
    return held


def assert_posted_once(sandbox, plan) -> dict:
    """One journal carries the plan's key, with each planned line exactly once and exactly as planned."""
    mine = [j for j in journals(sandbox) if j["Description"] == plan.document_key]
    assert len(mine) == 1, [j["JournalBatchNumber"] for j in mine]
    lines = mine[0]["lines"]
    assert sorted(int(Decimal(str(line["LineNumber"]))) for line in lines) == [line.number for line in plan.lines]
    by_number = {int(Decimal(str(line["LineNumber"]))): line for line in lines}
    for planned in plan.lines:
        held = by_number[planned.number]
        assert (
            Decimal(str(held["DebitAmount"])) == planned.debit and Decimal(str(held["CreditAmount"])) == planned.credit
        )
    return mine[0]


@pytest.mark.parametrize("delimiter", ["enum_name", "characters"])
def test_a_journal_lands_once_with_exact_amounts_and_is_recorded_verified(sandbox, posting, delimiter):
    """F&O answers its dimension segment delimiter as the enum member's name (`Hyphen`); another server may answer
    the character itself. Either way the display values are `618200-002-001`."""
    dialect(sandbox, segment_delimiter=delimiter)
    engine = posting()
    plan, problems = plan_for(engine.target)
    assert problems == []
    result = engine.run(plan)
    assert result.outcome == "posted" and result.lines_written == len(plan.lines) == 10  # 9 rows and the offset
    journal = assert_posted_once(sandbox, plan)
    first = next(line for line in journal["lines"] if Decimal(str(line["LineNumber"])) == 1)
    assert str(first["DebitAmount"]) == "123456789012345.68"  # rounded once to cents; a float would say .69
    assert first["AccountDisplayValue"] == "618200-002-001"  # MainAccount-BusinessUnit-CostCenter(-Department blank)
    assert journal["JournalName"] == "Alloc" and journal["dataAreaId"] == "usrt"
    record = result.document
    assert record.state == "verified" and record.document_number == journal["JournalBatchNumber"]
    assert engine.target.metadata()["tokens_acquired"] == 1  # one msal token for the environment's scope
    # The writes: the header, then three changesets (10 lines, 4 per changeset).
    assert engine.target.client.http.stats.by_method["POST"] == 1 + 3


def _post_then_verify(engine, plan, between=lambda number: None):
    """The engine's steps one by one (as the Dagster ops run them), with `between` after the writes."""
    record = engine.record(plan)
    engine.validate(plan, record)
    result = engine.post(plan, engine.audit.document(record.id))
    between(result.number)
    return engine.verify(plan, engine.audit.document(record.id), result)


def test_changesets_applied_out_of_order_land_under_their_planned_line_numbers(sandbox, posting, fo):
    """Two changesets are in flight, so F&O may apply the second first (here the first is held back a
    second). Each line carries its planned number, so each lands under it whatever the order; a line
    left for F&O to number would take the next free one."""
    sandbox.faults(
        {"kind": "delay", "delay_seconds": 1.0, "path_contains": "/data/$batch", "count": 1},
        service="finance_operations",
    )
    engine = posting()
    engine.target.writes_in_flight = 2  # batches_in_flight: 2, for a journal name that numbers vouchers at posting
    plan, _ = plan_for(engine.target)
    assert engine.run(plan).document.state == "verified"
    assert_posted_once(sandbox, plan)  # each number holds its planned amounts


def test_a_line_someone_adds_before_the_read_back_is_named(sandbox, posting):
    engine = posting()
    plan, _ = plan_for(engine.target)

    def someone_adds_a_line(number: str) -> None:
        engine.target.client.create(
            "LedgerJournalLines",
            {"dataAreaId": "usrt", "JournalBatchNumber": number, "LineNumber": 99, "AccountType": "Ledger",
             "AccountDisplayValue": "618200-002-001", "DebitAmount": 1, "CreditAmount": 0, "CurrencyCode": "USD",
             "TransDate": "2026-11-29T12:00:00Z", "Text": "by hand"},
        )  # fmt: skip

    with pytest.raises(VerificationFailed, match=r"lines the plan does not have: \[99\]"):
        _post_then_verify(engine, plan, someone_adds_a_line)


def test_an_identical_rerun_finds_the_journal_and_writes_nothing(sandbox, posting):
    plan, _ = plan_for(posting().target)
    posting().run(plan)
    again = posting("run-2")
    result = again.run(plan)
    assert result.outcome == "already_posted" and result.lines_written == 0
    assert again.target.client.http.stats.by_method.get("POST", 0) == 0
    assert_posted_once(sandbox, plan)


@pytest.mark.parametrize("crash_at", CHECKPOINTS)
def test_a_run_killed_at_any_point_is_finished_by_the_next_without_a_duplicate(sandbox, posting, crash_at):
    seen = []

    def crash(name):
        seen.append(name)
        if name == crash_at:
            raise SimulatedCrash(name)

    plan, _ = plan_for(posting().target)
    with pytest.raises(SimulatedCrash):
        posting("run-crashed", checkpoint=crash).run(plan)
    assert seen[-1] == crash_at
    result = posting("run-after").run(plan)
    assert result.document.state == "verified"
    assert_posted_once(sandbox, plan)


def test_a_journal_left_half_written_whose_plan_then_fails_validation_is_deleted_and_named(sandbox, posting):
    """A run stops between changesets; the period is then put on hold. The next run's validation fails: it said
    'nothing was written' and left the half journal in F&O, where it could be posted. It is deleted and named;
    once the period is open again, the journal is written whole."""
    plan, _ = plan_for(posting().target)
    with pytest.raises(SimulatedCrash):
        posting("run-crashed", checkpoint=crash_at("mid_lines")).run(plan)
    [half] = journals(sandbox)
    assert 0 < len(half["lines"]) < len(plan.lines)  # the case: part of the journal is in F&O

    set_week_period(sandbox, "OnHold")
    with pytest.raises(PostingRefused) as refused:
        posting("run-2").run(plan)
    assert f"{half['JournalBatchNumber']}, which an earlier run began (4 of 10 lines), was deleted" in str(
        refused.value
    )
    assert journals(sandbox) == []
    set_week_period(sandbox, "Open")
    assert posting("run-3").run(plan).document.state == "verified"
    assert_posted_once(sandbox, plan)


def test_an_open_period_that_gives_the_general_ledger_no_access_is_refused_before_any_write(sandbox, posting):
    """A period open by its status but whose General ledger module access level is no access: validation read
    the status only, the header was made, F&O refused the lines, and the journal was then deleted."""
    set_week_period(sandbox, "Open", ledger_access="NoAccess")
    engine = posting()
    plan, _ = plan_for(engine.target)
    writes = sandbox.state("finance_operations")["requests"].get("POST", 0)
    with pytest.raises(PostingRefused) as refused:
        engine.run(plan)
    assert any("gives the general ledger no access (NoAccess)" in p for p in refused.value.problems), refused.value
    assert journals(sandbox) == [] and sandbox.state("finance_operations")["requests"].get("POST", 0) == writes


def test_a_whole_journal_a_stopped_run_left_unverified_is_verified_as_it_stands_when_validation_now_fails(
    sandbox, posting
):
    """A run stops once every line is written; the period is then put on hold. Validating the plan again refused
    what F&O already holds whole, and the record stayed refused: the journal is verified as it stands instead.
    Other figures than the journal's are refused, and the whole journal is left as it is (named, not deleted)."""
    plan, _ = plan_for(posting().target)
    with pytest.raises(SimulatedCrash):
        posting("run-crashed", checkpoint=crash_at("after_lines")).run(plan)
    set_week_period(sandbox, "OnHold")
    [whole] = journals(sandbox)
    number = whole["JournalBatchNumber"]
    changed, _ = plan_for(posting().target, rows=[*DEFAULT_ROWS[:-1], ("618200", "009", "10")])
    with pytest.raises(PostingRefused, match=f"{number} \\(not posted\\), written by an earlier run, is left as it is"):
        posting("run-2").run(changed)
    assert journals(sandbox) == [whole]
    result = posting("run-3").run(plan)
    assert (result.number, result.outcome, result.document.state) == (number, "already_posted", "verified")
    assert_posted_once(sandbox, plan)


@pytest.mark.parametrize("fault", ["commit_then_drop", "commit_then_504", "commit_then_cut"])
@pytest.mark.parametrize("where", ["/data/LedgerJournalHeaders", "/data/$batch"])
def test_a_write_committed_but_answered_with_a_lost_connection_or_504_is_not_written_twice(
    sandbox, posting, fault, where
):
    plan, _ = plan_for(posting().target)
    sandbox.faults({"kind": fault, "path_contains": where, "count": 1}, service="finance_operations")
    engine = posting()
    result = engine.run(plan)
    assert engine.target.client.http.stats.outcome_unknown == 1
    assert sandbox.state("finance_operations")["faults_fired"] == {fault: 1}
    assert result.document.state == "verified"
    # Nothing sent twice: the lost write was settled by a lookup, not by sending it again (the header, then
    # the three changesets of 4, 4 and 2 lines).
    assert engine.target.client.http.stats.by_method["POST"] == 1 + 3
    assert_posted_once(sandbox, plan)


def test_a_header_saved_after_its_504_is_not_created_again_while_f_and_o_may_still_be_saving_it(sandbox, posting):
    """A gateway answers 504 and F&O saves the header a second later: the lookup right after finds nothing.
    A run straight after that creates nothing; once the header has landed, the next run finds and finishes it."""
    plan, _ = plan_for(posting().target)
    sandbox.faults(
        {"kind": "commit_late", "delay_seconds": 2.0, "path_contains": "/data/LedgerJournalHeaders"},
        service="finance_operations",
    )
    with pytest.raises(OutcomeUnknown):
        posting().run(plan)
    assert journals(sandbox) == []  # not saved yet
    with pytest.raises(OutcomeUnknown, match="may still be saving it"):
        posting("run-2").run(plan)
    assert len(until_saved(sandbox)) == 1  # the first create landed late
    result = posting("run-3").run(plan)
    assert result.outcome == "resumed" and result.document.state == "verified"
    assert_posted_once(sandbox, plan)


def test_late_data_after_a_lost_header_create_does_not_lift_the_wait_for_it(sandbox, posting):
    """The header's 504 is followed by late Looker rows: the new plan is recorded, but F&O may still be saving
    the first header under the same key, so nothing is created until it has landed; then it is found and
    takes the new plan's lines (it holds none yet)."""
    plan, _ = plan_for(posting().target)
    changed, _ = plan_for(posting().target, rows=[*DEFAULT_ROWS[:-1], ("618200", "008", "4.444")])
    assert changed.document_key == plan.document_key and changed.digest != plan.digest
    sandbox.faults(
        {"kind": "commit_late", "delay_seconds": 2.0, "path_contains": "/data/LedgerJournalHeaders"},
        service="finance_operations",
    )
    with pytest.raises(OutcomeUnknown):
        posting().run(plan)
    assert journals(sandbox) == []  # not saved yet: run-2 below meets the case
    with pytest.raises(OutcomeUnknown, match="may still be saving it"):
        posting("run-2").run(changed)
    assert len(until_saved(sandbox)) == 1
    result = posting("run-3").run(changed)  # the first header landed, empty: found, and the new lines go in it
    assert result.outcome == "resumed" and result.document.state == "verified"
    assert_posted_once(sandbox, changed)


def test_lines_saved_after_their_answer_was_lost_are_not_sent_again_while_f_and_o_may_still_be_saving_them(
    sandbox, posting
):
    """A changeset's answer is lost (a gateway's 504) and F&O commits it two seconds later: the lookup right
    after finds none of its lines. They were sent again at once, a second copy beside the first should F&O
    take a line number twice. Now nothing more is sent until they have landed (or the settle time passed);
    the next run then finds them and writes only the rest."""
    plan, _ = plan_for(posting().target)
    sandbox.faults(
        {"kind": "commit_late", "delay_seconds": 2.0, "path_contains": "/data/$batch", "count": 1},
        service="finance_operations",
    )
    with pytest.raises(OutcomeUnknown):
        posting().run(plan)
    with pytest.raises(OutcomeUnknown, match="may still be saving it"):
        posting("run-2").run(plan)
    [journal] = until_saved(sandbox, landed=lambda held: len(held[0]["lines"]) >= 4)  # the late changeset: lines 1–4
    assert len(journal["lines"]) == 4, "the late changeset never landed"
    result = posting("run-3").run(plan)
    assert result.outcome == "resumed" and result.lines_written == 6 and result.document.state == "verified"
    assert_posted_once(sandbox, plan)


def test_lines_lost_while_their_lookup_fails_too_are_held_all_the_same(sandbox, posting, fo):
    """A changeset's answer is lost and the lookup that should settle it fails as well (F&O is struggling): the
    hold was recorded only after a lookup that succeeded, so the next run sent the lines again at once."""
    fo.finance_operations.http.outcome_settle_seconds = 0.5
    plan, _ = plan_for(posting().target)
    sandbox.faults({"kind": "status", "status": 504, "path_contains": "/data/$batch", "count": 1},
                   {"kind": "status", "status": 500, "path_contains": "/data/LedgerJournalLines", "count": 1},
                   service="finance_operations")  # fmt: skip
    with pytest.raises(RequestFailedError):
        posting().run(plan)
    sandbox.clear_faults()
    with pytest.raises(OutcomeUnknown, match="may still be saving it"):
        posting("run-2").run(plan)
    time.sleep(0.6)
    assert posting("run-3").run(plan).document.state == "verified"
    assert_posted_once(sandbox, plan)


def test_a_header_whose_create_never_landed_is_created_once_the_settle_time_has_passed(sandbox, posting, fo):
    plan, _ = plan_for(posting().target)
    fo.finance_operations.http.outcome_settle_seconds = 0.5
    sandbox.faults(
        # the run's lookup passes; its POST is answered 504 and never saved
        {"kind": "status", "status": 504, "path_contains": "/data/LedgerJournalHeaders", "skip": 1},
        service="finance_operations",
    )
    with pytest.raises(OutcomeUnknown):
        posting().run(plan)
    with pytest.raises(OutcomeUnknown, match="Nothing is sent again before"):
        posting("run-2").run(plan)
    time.sleep(0.6)
    assert posting("run-3").run(plan).outcome == "posted"
    assert_posted_once(sandbox, plan)


def test_a_batch_throttled_with_retry_after_is_sent_again_and_lands_once(sandbox, posting):
    plan, _ = plan_for(posting().target)
    sandbox.faults(
        {"kind": "status", "status": 429, "retry_after": 0.01, "path_contains": "/data/$batch", "count": 2},
        service="finance_operations",
    )
    engine = posting()
    engine.run(plan)
    assert engine.target.client.http.stats.throttled == 2
    assert_posted_once(sandbox, plan)


def test_an_outage_leaves_the_journal_unfinished_and_replay_finishes_it_once(sandbox, posting, fo):
    from mlconnector_pipelines.replay import replay

    plan, _ = plan_for(posting().target)
    # 503 without Retry-After on a write: F&O may have processed it, so the client does not repeat it.
    sandbox.faults(
        {"kind": "status", "status": 503, "path_contains": "/data/$batch", "count": 50}, service="finance_operations"
    )
    fo.finance_operations.http.outcome_settle_seconds = 0.5
    engine = posting()
    with pytest.raises(OutcomeUnknown):
        engine.run(plan)
    assert len(journals(sandbox)) == 1 and journals(sandbox)[0]["lines"] == []  # the header, no lines
    sandbox.clear_faults()  # the outage ends
    time.sleep(0.6)  # and F&O has had the time to save what it might have been saving
    [dry] = replay(fo, dry_run=True)  # the engine's audit store is the configured one (<data_dir>/audit.sqlite)
    assert dry.action.startswith("would finish (unknown; in Finance and Operations as 00601 with 0 of 10 lines")
    [outcome] = replay(fo)
    assert outcome.ok and outcome.action == "finished as 00601: 10 of 10 lines written now"
    assert replay(fo) == []  # nothing left to replay
    assert_posted_once(sandbox, plan)


def test_a_document_replay_cannot_reach_is_named_and_the_others_are_replayed(sandbox, posting, fo):
    """One document's failure (its lookup refused: F&O struggling, or its system's setup) ended the whole replay,
    the others never listed nor finished."""
    from mlconnector_pipelines.replay import replay

    engine = posting()
    first, _ = plan_for(engine.target)
    second, _ = plan_for(engine.target, partition="2026-11-30", last_day=SUNDAY + timedelta(days=7))
    for planned in (first, second):  # recorded and validated by runs that then stopped
        engine.validate(planned, engine.record(planned))
    sandbox.faults({"kind": "status", "status": 500, "path_contains": "/data/LedgerJournalHeaders", "count": 1},
                   service="finance_operations")  # fmt: skip
    listed = replay(fo, dry_run=True)  # the first one's lookup is refused
    assert [(o.document.document_key, o.ok) for o in listed] == [(first.document_key, False),
                                                                  (second.document_key, True)]  # fmt: skip
    assert listed[0].action.startswith("failed:") and "LedgerJournalHeaders" in listed[0].action
    assert listed[1].action.startswith("would finish")
    sandbox.faults({"kind": "status", "status": 500, "path_contains": "/data/LedgerJournalHeaders", "count": 1},
                   service="finance_operations")  # fmt: skip
    outcomes = replay(fo)
    assert [o.ok for o in outcomes] == [False, True]
    assert_posted_once(sandbox, second)
    [again] = replay(fo)
    assert again.ok and again.document.document_key == first.document_key
    assert_posted_once(sandbox, first)


def test_replay_of_a_misspelt_flow_or_a_store_no_run_wrote_says_so_and_creates_nothing(sandbox, posting, fo):
    """Both said "nothing to replay: every recorded document is verified" (exit 0) over a failed document: a flow
    named without its system, or a data_dir no run used (a relative one read against another folder); a dry run
    created the empty store it then read."""
    from mlconnector_pipelines.replay import replay, trace

    engine = posting()
    planned, _ = plan_for(engine.target)
    engine.validate(planned, engine.record(planned))
    with pytest.raises(ConfigError, match="--flow fees_journal: .*its flows: finance_operations/fees_journal"):
        replay(fo, flow="fees_journal", dry_run=True)
    elsewhere = fo.model_copy(update={"data_dir": fo.data_dir / "elsewhere"})
    for call in (lambda: replay(elsewhere, dry_run=True), lambda: trace(elsewhere, "00601")):
        with pytest.raises(ConfigError, match="no audit store at .*elsewhere.*Is this the connector.yaml"):
            call()
    assert not (fo.data_dir / "elsewhere").exists()
    [listed] = replay(fo, flow="finance_operations/fees_journal", dry_run=True)
    assert listed.document.document_key == planned.document_key


@pytest.mark.parametrize(
    ("rows", "day", "reason"),
    [
        ([("618200", "001", "10"), ("618200", "002", "-7")], SUNDAY, "does not balance"),
        ([("777777", "001", "10")], SUNDAY, "main account 777777 does not exist"),
        ([("999999", "001", "10")], SUNDAY, "is suspended"),
        ([("606200", "001", "10")], SUNDAY, "is not active on 2026-11-29"),
        ([("618200", "013", "10")], SUNDAY, "CostCenter 013 belongs to legal entity GBRT"),
        ([("618200", "099", "10")], SUNDAY, "CostCenter 099 is suspended"),
        ([("618200", "098", "10")], SUNDAY, "CostCenter 098 is blocked for manual entry"),
        ([("618200", "001", "10")], date(2025, 6, 30), "which is Closed for legal entity usrt"),
        ([("618200", "001", "10")], date(2026, 1, 31), "which is OnHold for legal entity usrt"),
    ],
    ids=["unbalanced", "unknown-account", "inactive-account", "expired-account", "other-entity-value",
         "suspended-value", "blocked-value", "closed-period", "on-hold-period"],
)  # fmt: skip
def test_a_plan_that_fails_validation_writes_nothing_and_names_the_row(sandbox, posting, rows, day, reason):
    m = mapping(balancing={"mode": "rows_balance"}) if reason == "does not balance" else mapping()
    engine = posting()
    plan, problems = plan_for(engine.target, m, rows, last_day=day)
    assert problems == []
    with pytest.raises(PostingRefused) as refused:
        engine.run(plan)
    assert reason in str(refused.value)
    if "account" in reason or "CostCenter" in reason or "active" in reason:  # a row's problem, not the journal's
        assert "looker/fees row 1 {fees.account:" in str(refused.value)  # the row, with its Looker values
    assert journals(sandbox) == []
    record = engine.audit.find_document(plan.flow, plan.partition, plan.document_key)
    assert record.state == "refused" and record.document_number is None


def test_a_suspension_for_one_legal_entity_is_refused_there_only(sandbox, posting):
    engine = posting()
    gb, _ = plan_for(engine.target, mapping(legal_entity="gbrt"), [("618300", "013", "5")])
    with pytest.raises(PostingRefused, match="618300 .* is suspended for legal entity gbrt"):
        engine.run(gb)
    us, _ = plan_for(engine.target, mapping(), [("618300", "001", "5")])
    assert engine.run(us).outcome == "posted"


def test_a_delete_answered_404_while_the_journal_is_still_there_is_not_called_done(sandbox, posting):
    """A 404 on the DELETE was taken for "already gone" (a repeated DELETE after a lost answer): a server that
    answers 404 for a key outside the caller's default company left the half journal in F&O while the audit
    store and the message said it was deleted. It is looked up: still there, the person is told to delete it."""
    engine = posting()
    plan, _ = plan_for(engine.target)
    record = validated_then_period_closed(sandbox, engine, plan)
    sandbox.faults({"kind": "status", "status": 404, "path_contains": "LedgerJournalHeaders(", "count": 1},
                   service="finance_operations")  # fmt: skip
    with pytest.raises(PostingRefused) as refused:
        engine.post(plan, record)
    [kept] = journals(sandbox)
    assert f"delete journal {kept['JournalBatchNumber']} in usrt by hand" in str(refused.value), refused.value
    assert "still there" in str(refused.value)
    assert engine.audit.document(record.id).state == "failed"


@pytest.mark.parametrize(
    ("refused_changeset", "delete_answer"),
    [("in_batch", "kept"), ("whole_batch", "kept"), ("in_batch", "commit_then_504")],
    ids=["refusal-in-the-batch-answer", "refusal-as-the-batch-answer", "delete-answered-504-after-commit"],
)
def test_lines_refused_by_f_and_o_after_the_header_leave_no_part_of_the_journal(
    sandbox, posting, refused_changeset, delete_answer
):
    """Validation passed, then the period closed before the lines went in: F&O refuses them; the header goes.

    OData lets a server answer a one-changeset batch's refusal inside the 200 multipart answer (F&O) or as
    the batch request's own error; and the DELETE of the header may commit and its answer be lost, so the
    repeated DELETE finds the journal gone."""
    dialect(sandbox, refused_changeset=refused_changeset)
    if delete_answer != "kept":
        sandbox.faults(
            {"kind": delete_answer, "path_contains": "LedgerJournalHeaders(", "count": 1}, service="finance_operations"
        )
    engine = posting()
    plan, _ = plan_for(engine.target)
    record = validated_then_period_closed(sandbox, engine, plan)
    with pytest.raises(PostingRefused) as refused:
        engine.post(plan, record)
    assert "was deleted, nothing of it stays" in str(refused.value)
    assert "closed" in str(refused.value).lower()  # F&O's own reason
    if refused_changeset == "in_batch":
        assert "looker/fees row 1" in str(refused.value)  # the request F&O named
    else:
        assert "in the changeset of lines 1–4" in str(refused.value)  # F&O named none: the changeset's lines
    assert journals(sandbox) == []
    assert engine.audit.document(record.id).state == "refused"
    if delete_answer != "kept":
        assert sandbox.state("finance_operations")["faults_fired"] == {delete_answer: 1}


@pytest.mark.parametrize("status", [429, 503])
def test_a_changeset_throttled_inside_the_batch_answer_is_sent_again_not_taken_for_a_refusal(sandbox, posting, status):
    """The batch is answered 200 and the changeset's part says 429 or 503: nothing of an atomic changeset was
    applied, so it is sent again after Retry-After; the journal is neither deleted nor doubled."""
    plan, _ = plan_for(posting().target)
    sandbox.faults(
        {"kind": "changeset_status", "status": status, "retry_after": 0.01, "path_contains": "/data/$batch"},
        service="finance_operations",
    )
    engine = posting()
    result = engine.run(plan)
    assert sandbox.state("finance_operations")["faults_fired"] == {"changeset_status": 1}
    stats = engine.target.client.http.stats
    assert stats.retries == 1 and stats.throttled == (1 if status == 429 else 0)
    assert result.outcome == "posted" and result.document.state == "verified"
    assert_posted_once(sandbox, plan)


@pytest.mark.parametrize("applied", [True, False])
def test_a_changeset_answered_504_inside_the_batch_is_settled_by_its_lookup_never_sent_again(
    sandbox, posting, fo, applied
):
    """A changeset's part answered 504 may have been applied before the timeout: sent again, a committed one was
    refused as lines that already exist and the correct journal deleted (or, on a server not checking the line
    key, its lines doubled). The lines are looked up instead: found, the journal is done; not found, they are
    held until the settle time has passed, then written once."""
    fo.finance_operations.http.outcome_settle_seconds = 0.5
    plan, _ = plan_for(posting().target)
    sandbox.faults(
        {"kind": "changeset_status", "status": 504, "path_contains": "/data/$batch",
         "value": "after_commit" if applied else None},
        service="finance_operations",
    )  # fmt: skip
    if applied:
        result = posting().run(plan)
        assert result.outcome == "posted" and result.document.state == "verified"
    else:
        with pytest.raises(OutcomeUnknown):
            posting().run(plan)
        assert len(journals(sandbox)) == 1 and journals(sandbox)[0]["lines"] == []  # kept, not deleted
        time.sleep(0.6)
        assert posting("run-2").run(plan).document.state == "verified"
    assert sandbox.state("finance_operations")["faults_fired"] == {"changeset_status": 1}
    assert_posted_once(sandbox, plan)


def test_the_offset_line_carries_its_own_dimensions_and_a_name_outside_the_format_is_refused(sandbox, posting):
    """The offset line took only dimensions the rows' lines have too: a business unit given for it alone (or a
    misspelt name) was dropped without a word, and the offset was booked without it."""
    engine = posting()
    m = mapping(dimensions={"CostCenter": {"column": "fees.cost_center"}},
                balancing={"mode": "offset", "account": "220500", "dimensions": {"BusinessUnit": "002"}})  # fmt: skip
    plan, problems = plan_for(engine.target, m, rows=[("618200", "001", "10")])
    assert problems == [] and engine.run(plan).outcome == "posted"
    held = {int(Decimal(str(line["LineNumber"]))): line for line in assert_posted_once(sandbox, plan)["lines"]}
    assert held[2]["AccountDisplayValue"] == "220500-002"  # MainAccount-BusinessUnit: the offset's own unit
    misspelt = mapping(balancing={"mode": "offset", "account": "220500", "dimensions": {"Departmnt": "025"}})
    with pytest.raises(ConfigError, match=r"balancing\.dimensions: Departmnt not in the ledger dimension format"):
        plan_for(engine.target, misspelt)


@pytest.mark.parametrize("when", ["before_lease", "while_writing"])
def test_new_figures_recorded_beside_a_run_writing_the_journal_never_pass_for_what_it_wrote(sandbox, posting, when):
    """Run A (a replay) recorded its plan; run B then recorded new figures for the same journal. While A wrote,
    B's plan replaced A's lines in the audit store: A wrote its own and marked B's verified, which then traced
    lines F&O never held. Recorded while A holds the writing lease, B's figures are refused, said so, and judged
    against what A posted when B runs again (a changed plan: refused by default); recorded before A took the
    lease, they are the store's and A stops, writing nothing."""
    old, _ = plan_for(posting().target)
    new, _ = plan_for(posting().target, rows=[("618200", "001", "10"), ("618100", "002", "20")])
    refused = []

    def b_records_new_figures(name: str) -> None:
        if name == "before_header":
            with pytest.raises(PlanBeingWritten, match="run run-a is writing the plan recorded before") as error:
                posting("run-b").record(new)
            refused.append(error.value)

    engine = posting("run-a", checkpoint=b_records_new_figures)
    if when == "before_lease":
        record = engine.record(old)
        engine.validate(old, record)
        posting("run-b").record(new)
        with pytest.raises(PostingRefused, match="another run recorded a new plan"):
            engine.post(old, engine.audit.document(record.id))
        assert journals(sandbox) == []
        assert posting("run-c").run(new).outcome == "posted"
        assert_posted_once(sandbox, new)
        return
    result = engine.run(old)  # B records its figures while A holds the lease, before A's header
    assert refused and result.outcome == "posted" and result.document.state == "verified"
    held = assert_posted_once(sandbox, old)
    stored = engine.audit.plan(result.document)
    assert stored.digest == old.digest and len(stored.lines) == len(held["lines"])  # the store says what F&O holds
    with pytest.raises(PlanChanged):
        posting("run-b").run(new)  # B again, once A has finished
    assert_posted_once(sandbox, old)


def test_batch_answers_whose_status_lines_have_no_reason_phrase_are_read(sandbox, posting):
    """`HTTP/1.1 201` alone: the reason phrase is optional (RFC 9112 §4)."""
    dialect(sandbox, reason_phrase=False)
    engine = posting()
    plan, _ = plan_for(engine.target)
    result = engine.run(plan)
    assert result.outcome == "posted" and result.document.state == "verified"
    assert engine.target.client.http.stats.outcome_unknown == 0  # read as applied, not settled by reading back
    assert_posted_once(sandbox, plan)


@pytest.mark.parametrize("next_link", ["root_relative", "relative"])
def test_next_links_relative_to_the_service_are_followed_like_absolute_ones(sandbox, fo, next_link):
    """OData allows a relative @odata.nextLink (`/data/MainAccounts?…` or `MainAccounts?…`): it is resolved
    against the page it came in, not appended to the client's base URL."""
    section = fo.finance_operations.model_copy(update={"page_size": 7})
    target = FinanceOperationsResource.from_section(section, fo.data_dir).journal_target()
    try:
        absolute = target.client.collection("MainAccounts")
        dialect(sandbox, next_link=next_link)
        before = target.client.http.stats.requests
        assert target.client.collection("MainAccounts") == absolute
        assert len(absolute) > 14 and target.client.http.stats.requests - before == -(-len(absolute) // 7)
    finally:
        target.close()


def test_a_journal_key_holding_the_filter_wildcard_is_refused_before_any_request():
    with pytest.raises(ConfigError, match="wildcard"):
        document_key("fees*", WEEK)


def test_a_changed_plan_is_refused_by_default_and_adjust_posts_only_the_difference(sandbox, posting):
    engine = posting()
    original, _ = plan_for(engine.target)
    engine.run(original)
    late = [*DEFAULT_ROWS[:-1], ("618200", "009", "10"), ("618100", "010", "5")]  # 8 → 10, and a new row
    changed, _ = plan_for(engine.target, rows=late)
    with pytest.raises(PlanChanged) as refusal:
        choose_document(posting("run-2"), SPEC, mapping(), changed)
    message = str(refusal.value)
    assert original.document_key in message and journals(sandbox)[0]["JournalBatchNumber"] in message
    assert "line 9: the target holds 618200 [BusinessUnit=002, CostCenter=009] debit 8.00" in message  # 8 → 10
    adjust = mapping(on_change="adjust")
    decision = choose_document(posting("run-2"), SPEC, adjust, changed)
    assert decision.outcome == "adjustment" and decision.plan.document_key == f"{original.document_key} adj1"
    posting("run-2").run(decision.plan)
    difference = assert_posted_once(sandbox, decision.plan)
    amounts = sorted(
        (line["AccountDisplayValue"], Decimal(str(line["DebitAmount"])), Decimal(str(line["CreditAmount"])))
        for line in difference["lines"]
    )
    assert amounts == [
        ("220500-002", 0, Decimal("7")),  # the offset moves by the total of the differences
        ("618100-002-010", Decimal("5"), 0),
        ("618200-002-009", Decimal("2"), 0),
    ]
    # Posted entries were never edited: the original is as it was.
    assert_posted_once(sandbox, original)
    again = choose_document(posting("run-3"), SPEC, adjust, changed)
    assert again.outcome == "no_change"


@pytest.mark.parametrize("order", ["as posted", "another row order"])
def test_figures_back_to_the_posted_journals_reverse_its_difference_journal(sandbox, posting, order):
    """Posted, then a difference journal for late figures, then the figures went back to the first ones. Compared
    with the original journal alone they looked unchanged, and the difference journal stayed in the ledger: F&O
    held the late figures while Looker said the first. The period's figures are the original and its
    difference journals together: a second difference journal reverses the first."""
    adjust = mapping(on_change="adjust", text="Fees {fees.cost_center}")
    engine = posting()
    original, _ = plan_for(engine.target, adjust)
    engine.run(original)
    late, _ = plan_for(engine.target, adjust, rows=[*DEFAULT_ROWS[:-1], ("618200", "009", "10")])
    posting("run-2").run(choose_document(posting("run-2"), SPEC, adjust, late).plan)
    assert posted_totals(sandbox) == planned_totals(engine.target, late)
    rows = DEFAULT_ROWS if order == "as posted" else list(reversed(DEFAULT_ROWS))
    back, _ = plan_for(engine.target, adjust, rows=rows)

    decision = choose_document(posting("run-3"), SPEC, adjust, back)

    assert decision.outcome == "adjustment" and decision.plan.document_key.endswith("adj2"), decision.note
    posting("run-3").run(decision.plan)
    assert posted_totals(sandbox) == planned_totals(engine.target, original)
    assert choose_document(posting("run-4"), SPEC, adjust, back).outcome == "no_change"


def test_new_figures_for_a_journal_a_person_deleted_are_the_ones_written_and_audited(sandbox, posting):
    """A verified journal deleted in F&O by a person, then new figures: the decision said they would be created,
    but the audit store kept the first plan (a verified record's plan is never replaced), and the Dagster steps,
    which write what the store holds, posted the first figures again. The new plan is recorded first."""
    engine = posting()
    original, _ = plan_for(engine.target)
    engine.run(original)
    [journal] = journals(sandbox)
    engine.target.discard(original, journal["JournalBatchNumber"])  # what a person does in F&O
    late, _ = plan_for(engine.target, rows=[*DEFAULT_ROWS[:-1], ("618200", "009", "10")])

    decision = choose_document(posting("run-2"), SPEC, mapping(), late)

    record = engine.audit.find_document(late.flow, late.partition, late.document_key)
    assert decision.outcome == "new" and "is no longer in" in decision.note
    stored = engine.audit.plan(record)  # what the validate, post and verify steps take
    assert stored.digest == late.digest and record.document_number is None
    posting("run-2").run(stored)
    assert posted_totals(sandbox) == planned_totals(engine.target, late)


def posted_totals(sandbox) -> dict[str, Decimal]:
    """Debit less credit per account and dimensions over every journal in F&O (zeros left out)."""
    totals: dict[str, Decimal] = {}
    for journal in journals(sandbox):
        for line in journal["lines"]:
            net = Decimal(str(line["DebitAmount"])) - Decimal(str(line["CreditAmount"]))
            totals[line["AccountDisplayValue"]] = totals.get(line["AccountDisplayValue"], Decimal(0)) + net
    return {account: net for account, net in totals.items() if net}


def planned_totals(target, plan) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for line in plan.lines:
        account = target.display_value(line.account, line.dimensions)
        totals[account] = totals.get(account, Decimal(0)) + line.amount
    return {account: net for account, net in totals.items() if net}


@pytest.mark.parametrize("balancing", ["offset", "rows_balance"])
def test_late_figures_for_a_journal_a_crashed_run_left_half_written_are_posted_once(sandbox, posting, balancing):
    """A run writes the header and the first changeset and dies; late data then corrects row 1. The half journal
    was taken for the posted one: the difference journal carried the unwritten lines in full (refused as not
    balancing in offset mode), and replay then finished the original from its recorded plan, so its figures
    landed twice. The half journal is finished with its recorded figures first; the difference is taken from it
    whole, and everything posted for the week adds up to the late figures."""
    adjust = mapping(on_change="adjust", balancing={"mode": "offset", "account": "220500"})
    rows = DEFAULT_ROWS
    if balancing == "rows_balance":
        adjust = mapping(on_change="adjust", balancing={"mode": "rows_balance"})
        rows = [("618200", "001", "100"), ("618100", "002", "-100"), ("618200", "003", "50"),
                ("618100", "004", "-50"), ("618200", "005", "30"), ("618100", "006", "-30")]  # fmt: skip
    engine = posting()
    original, _ = plan_for(engine.target, adjust, rows=rows)
    with pytest.raises(SimulatedCrash):
        posting("run-1", checkpoint=crash_at("mid_lines")).run(original)
    [half] = journals(sandbox)
    assert 0 < len(half["lines"]) < len(original.lines)  # the case
    late, _ = plan_for(engine.target, adjust, rows=[(rows[0][0], rows[0][1], "7"), *rows[1:]])
    if balancing == "rows_balance":
        late, _ = plan_for(engine.target, adjust, rows=[("618200", "001", "70"), ("618100", "002", "-70"), *rows[2:]])

    decision = choose_document(posting("run-2"), SPEC, adjust, late)

    assert decision.outcome == "adjustment" and decision.plan.document_key == f"{original.document_key} adj1"
    assert f"({half['JournalBatchNumber']}) was left unfinished by an earlier run with other figures: finished " in (
        decision.note
    )
    assert_posted_once(sandbox, original)  # whole, with the figures it was begun with
    assert engine.audit.find_document(original.flow, original.partition, original.document_key).state == "verified"
    posting("run-2").run(decision.plan)
    for record in engine.audit.unfinished():  # what `mlconnector replay` would still do: nothing
        posting("replay").run(engine.audit.plan(record), adjusts=record.adjusts)
    assert posted_totals(sandbox) == planned_totals(engine.target, late)
    assert len(journals(sandbox)) == 2


def test_a_preview_of_late_figures_for_a_half_written_journal_writes_nothing_and_says_it_would_finish_it(
    sandbox, posting
):
    """In a preview nothing is written: the decision says the half journal would be finished with its recorded
    figures first, and the difference it shows is taken from the journal as it will then be."""
    adjust = mapping(on_change="adjust")
    engine = posting()
    original, _ = plan_for(engine.target, adjust)
    with pytest.raises(SimulatedCrash):
        posting("run-1", checkpoint=crash_at("mid_lines")).run(original)
    before = journals(sandbox)
    late, _ = plan_for(engine.target, adjust, rows=[("618200", "001", "7"), *DEFAULT_ROWS[1:]])

    decision = choose_document(posting("preview"), SPEC, adjust, late, preview=True)

    assert journals(sandbox) == before
    assert "it would be finished with its recorded figures first; then " in decision.note
    assert sorted((line.account, line.amount) for line in decision.plan.lines) == [
        ("220500", Decimal("123456789012338.68")),  # the offset takes the difference back
        ("618200", Decimal("-123456789012338.68")),  # 123456789012345.68 → 7.00
    ]


BALANCED = [("618200", "001", "100"), ("618100", "002", "-100")]
LATE_ROWS = [*BALANCED, ("618200", "003", "40"), ("618100", "004", "-40")]  # late rows, after the others


def test_late_rows_after_the_posted_lines_are_a_change_not_the_rest_of_the_journal(sandbox, posting):
    """rows_balance has no offset line at the end, so late rows that sort after the others leave the posted lines
    a prefix of the new plan, which was taken for a journal a stopped run left half written: the late lines were
    added to the verified journal although on_change is fail, and once a person had posted it `adjust` failed
    ('a posted journal cannot take more lines'). They are differences: refused by default, naming them; with
    adjust, a difference journal."""
    balanced = mapping(balancing={"mode": "rows_balance"})
    engine = posting()
    original, _ = plan_for(engine.target, balanced, rows=BALANCED)
    engine.run(original)
    late, _ = plan_for(engine.target, balanced, rows=LATE_ROWS)
    with pytest.raises(PlanChanged) as refusal:
        choose_document(posting("run-2"), SPEC, balanced, late)
    assert (
        "line 3: in the new plan (618200 [BusinessUnit=002, CostCenter=003] debit 40.00 credit 0 USD), not in"
        in str(refusal.value)
    )
    assert_posted_once(sandbox, original)

    [journal] = journals(sandbox)
    sandbox.http.post(f"/_sandbox/finance_operations/journals/usrt/{journal['JournalBatchNumber']}/post")
    adjust = mapping(balancing={"mode": "rows_balance"}, on_change="adjust")
    decision = choose_document(posting("run-3"), SPEC, adjust, late)
    assert decision.outcome == "adjustment"
    posting("run-3").run(decision.plan)
    assert posted_totals(sandbox) == planned_totals(engine.target, late)
    assert_posted_once(sandbox, original)


def test_the_same_figures_in_another_row_order_are_found_unchanged_under_the_journals_line_numbers(sandbox, posting):
    """Looker may answer a query without sorts (or with ties in its sort) in another row order. Line numbers follow
    the rows, so the same figures were refused as other figures. They are the journal's: unchanged, planned
    under the line numbers the journal holds them at, each line still naming its own Looker row."""
    engine = posting()
    text = mapping(text="Fees {fees.cost_center}")  # a text that does not render the row number
    original, _ = plan_for(engine.target, text)
    engine.run(original)
    reordered, _ = plan_for(engine.target, text, rows=list(reversed(DEFAULT_ROWS)))
    assert reordered.digest != original.digest  # the case

    decision = choose_document(posting("run-2"), SPEC, text, reordered)

    assert decision.outcome == "unchanged" and decision.plan.digest == original.digest
    first = decision.plan.lines[0]
    assert (first.number, first.source.row_number, first.source.values["fees.cost_center"]) == (1, 9, "001")
    again = posting("run-2")
    assert again.run(decision.plan).outcome == "already_posted"
    assert again.target.client.http.stats.by_method.get("POST", 0) == 0
    assert_posted_once(sandbox, original)


def test_the_same_figures_under_other_texts_are_unchanged_and_keep_the_posted_texts(sandbox, posting):
    """A line's text rendered otherwise with the same figures (a text template edited; numbers in texts written as
    Looker wrote them since this release, `7` where `7.000000000` was posted) was refused as other figures under
    the default `on_change: fail`. No figure moved and posted lines are never edited: unchanged, verified under
    the texts the journal holds. A changed amount beside a changed text is still a change."""
    engine = posting()
    original, _ = plan_for(engine.target, mapping(text="Fees {fees.cost_center}"))
    engine.run(original)
    retexted, _ = plan_for(engine.target, mapping(text="Marketplace fees, centre {fees.cost_center}"))

    decision = choose_document(
        posting("run-2"), SPEC, mapping(text="Marketplace fees, centre {fees.cost_center}"), retexted
    )

    assert decision.outcome == "unchanged" and "texts are kept as posted" in decision.note, decision.note
    assert [line.text for line in decision.plan.lines] == [line.text for line in original.lines]
    again = posting("run-2")
    assert again.run(decision.plan).outcome == "already_posted"
    assert again.target.client.http.stats.by_method.get("POST", 0) == 0
    assert_posted_once(sandbox, original)
    moved = [(DEFAULT_ROWS[0][0], DEFAULT_ROWS[0][1], "7"), *DEFAULT_ROWS[1:]]
    changed, _ = plan_for(engine.target, mapping(text="Marketplace fees, centre {fees.cost_center}"), rows=moved)
    with pytest.raises(PlanChanged):
        choose_document(posting("run-3"), SPEC, mapping(text="Marketplace fees, centre {fees.cost_center}"), changed)


def test_an_unpartitioned_journal_is_one_per_posting_date_not_one_adjusted_for_ever(sandbox, posting):
    """A query without partitions (deliveries feed it) gives each period's figures with their own posting date.
    Under one key for the journal, February's delivery was taken for a change to January's journal: refused, or
    with `adjust` posted as the difference, so January's figures were in effect reversed in February."""
    engine = posting()
    monthly = mapping(on_change="adjust", posting_date_column="fees.day", text="Fees {fees.cost_center}")

    def delivered(day: str, amount: str):
        rows = []
        for number, centre in enumerate(("001", "002"), start=1):
            values = {"fees.account": "618200", "fees.cost_center": centre, "fees.amount": Decimal(amount),
                      "fees.day": day}  # fmt: skip
            rows.append((SourceRow("looker/fees", "delivery d", "run-looker", None, number, values), values))
        built, problems = build_plan(SPEC, monthly, LookerRows("looker/fees", rows), flow="finance_operations/fees_journal",
                                     partition="", partition_last_day=None, dimensions=SPEC.dimensions(monthly, engine.target))  # fmt: skip
        assert not problems, problems
        return built

    january = delivered("2026-10-31", "1000.00")
    engine.run(january)
    february = delivered("2026-11-30", "1200.00")
    decision = choose_document(posting("run-2"), SPEC, monthly, february)
    assert decision.outcome == "new" and decision.plan.document_key != january.document_key
    posting("run-2").run(decision.plan)
    assert_posted_once(sandbox, january) and assert_posted_once(sandbox, february)
    assert len(journals(sandbox)) == 2
    again = choose_document(posting("run-3"), SPEC, monthly, delivered("2026-10-31", "1000.00"))
    assert again.outcome == "unchanged"

    # A journal made before journals on an unpartitioned query were keyed by posting date ("MLC fees", no date)
    # may hold a period's figures: a dated journal for that period is not created beside it.
    undated = replace(delivered("2026-09-30", "900.00"), document_key="MLC fees", partition="")
    posting("run-4").run(undated)
    with pytest.raises(PlanChanged, match="carries the key 'MLC fees'"):
        choose_document(posting("run-5"), SPEC, monthly, delivered("2026-09-30", "900.00"))


@pytest.mark.parametrize("verified", [True, False], ids=["verified", "stopped-before-verifying"])
def test_a_journal_whose_lines_f_and_o_deletes_after_posting_is_compared_with_what_was_posted(
    sandbox, posting, verified
):
    """A journal name may delete its lines once the journal is posted (DeleteLinesAfterPosting): the header then
    holds none. Compared with zero lines, any plan looked already posted, late data was never adjusted, and the
    rerun was told to reverse a correct posting. The lines the audit store has as written in it stand in for
    them, also when the run that wrote them stopped before verifying."""
    clearing = mapping(journal_name="AllocClr", on_change="adjust")
    engine = posting()
    plan, _ = plan_for(engine.target, clearing)
    if verified:
        engine.run(plan)
    else:
        with pytest.raises(SimulatedCrash):
            posting("run-crashed", checkpoint=crash_at("after_lines")).run(plan)
    [journal] = journals(sandbox)
    sandbox.http.post(
        f"/_sandbox/finance_operations/journals/usrt/{journal['JournalBatchNumber']}/post"
    ).raise_for_status()
    [posted] = journals(sandbox)
    assert posted["IsPosted"] == "Yes" and posted["lines"] == []  # the case: posted, its lines gone
    assert posting("run-2").run(plan).outcome == "already_posted"
    late = [*DEFAULT_ROWS[:-1], ("618200", "009", "10")]  # 8 → 10
    changed, _ = plan_for(engine.target, clearing, rows=late)
    decision = choose_document(posting("run-3"), SPEC, clearing, changed)
    assert decision.outcome == "adjustment"
    assert sorted((line.account, line.amount) for line in decision.plan.lines) == [("220500", -2), ("618200", 2)]


def test_the_same_batch_number_in_two_legal_entities_stays_apart(sandbox, posting):
    engine = posting()
    us, _ = plan_for(engine.target)
    gb, _ = plan_for(
        engine.target, mapping(legal_entity="gbrt", currency={"constant": "GBP"}), [("618200", "013", "5")]
    )
    a, b = engine.run(us), engine.run(gb)
    assert a.number == b.number == "00601"  # each company's own number sequence
    assert engine.run(us).outcome == engine.run(gb).outcome == "already_posted"
    assert len(journals(sandbox)) == 2


def test_ping_names_the_likely_fix_when_the_app_is_not_registered_in_f_and_o(tmp_path_factory, tmp_path):
    """A valid Entra token of an app missing from F&O's 'Microsoft Entra applications' page: 401 at the first read."""
    from mlconnector_pipelines.config import parse_config, sandbox_profile
    from mlconnector_pipelines.systems.finance_operations.ping import ping

    from ..conftest import start_sandbox

    running, sandbox_dir = start_sandbox(tmp_path_factory, finance_operations={"registered_client_ids": []})
    try:
        raw = sandbox_profile(sandbox_dir, running.url)
        raw.update(data_dir=str(tmp_path), sap_business_one=None, looker=None)
        raw["finance_operations"].update(journals=[], http=dict(FAST_HTTP))
        result = ping(parse_config(raw).finance_operations, tmp_path)
    finally:
        running.stop()
    assert result.auth_ok is True and result.read_ok is False  # the token was issued; F&O refused it
    assert "Authentication failed" in result.detail
    assert "System administration > Setup > Microsoft Entra applications" in result.fix


def test_ping_says_which_legal_entity_is_missing(sandbox, fo, tmp_path):
    from mlconnector_pipelines.systems.finance_operations.ping import ping

    section = fo.finance_operations.model_copy(update={"journals": [mapping(legal_entity="demf")]})
    result = ping(section, tmp_path)
    assert result.auth_ok and result.read_ok is False
    assert "legal entity demf not found (have: gbrt, usrt)" in result.detail


def test_two_runs_posting_the_same_period_at_once_make_one_journal(sandbox, fo, tmp_path):
    """A sensor's run and a person's run of the same partition: the second waits for the first, then finds it."""
    from concurrent.futures import ThreadPoolExecutor

    plan, _ = plan_for(FinanceOperationsResource.from_section(fo.finance_operations, fo.data_dir).journal_target())

    def post(run_id: str) -> str:
        audit = AuditStore.sqlite(tmp_path / "audit.sqlite")
        target = FinanceOperationsResource.from_section(fo.finance_operations, fo.data_dir).journal_target()
        try:
            return PostingEngine(target, audit, run_id=run_id).run(plan).outcome
        finally:
            target.close()
            audit.close()

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(post, ["run-sensor", "run-person"]))
    assert outcomes == ["already_posted", "posted"]
    assert_posted_once(sandbox, plan)


def test_every_row_on_a_bad_account_or_dimension_value_is_named_not_only_the_first(sandbox, posting):
    engine = posting()
    rows = [("777777", "001", "10"), ("618200", "099", "5"), ("777777", "099", "3"), ("618200", "001", "2")]
    plan, _ = plan_for(engine.target, mapping(), rows)
    with pytest.raises(PostingRefused) as refused:
        engine.run(plan)
    named = sorted(
        (int(p.split(" row ", 1)[1].split(" ", 1)[0]), "777777" if "777777 does not exist" in p else "099")
        for p in refused.value.problems
        if "777777 does not exist" in p or "CostCenter 099 is suspended" in p
    )
    assert named == [(1, "777777"), (2, "099"), (3, "099"), (3, "777777")]
    assert journals(sandbox) == []
