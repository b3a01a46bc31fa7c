"""Looker figures into Acumatica, exactly once: GL journal transactions and reference records, over HTTPS.

Every case ends by comparing with the sandbox's own records: one batch per natural key, each planned
line once, amounts digit for digit; a refused record named with its field, the others landed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from mlconnector_pipelines.audit.store import AuditStore
from mlconnector_pipelines.config import parse_config, sandbox_profile
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
from mlconnector_pipelines.engine.records import KeyAssignedByTarget, RecordsRefused, RecordSync, records_plan
from mlconnector_pipelines.flows.acumatica import journal_flow
from mlconnector_pipelines.systems.acumatica.catalog import ENTITIES
from mlconnector_pipelines.systems.acumatica.config import AcumaticaJournal
from mlconnector_pipelines.systems.acumatica.resource import AcumaticaResource

from ..conftest import FAST_HTTP

WEEK = "2026-11-23"
SUNDAY = date(2026, 11, 29)
VENDORS = next(e for e in ENTITIES if e.entity_set == "Vendor")
HARD = "123456789012345.678"  # rounds to 123456789012345.68: 17 digits, which no double holds


class SimulatedCrash(BaseException):
    pass


@pytest.fixture
def cfg(sandbox, tmp_path):
    sandbox.reset()
    raw = sandbox_profile(sandbox.data_dir, sandbox.url)
    raw.update(data_dir=str(tmp_path), sap_business_one=None, looker=None, finance_operations=None)
    raw["acumatica"]["http"] = dict(FAST_HTTP)
    yield parse_config(raw)
    sandbox.clear_faults()


@pytest.fixture
def resource(cfg):
    return AcumaticaResource.from_section(cfg.acumatica, cfg.data_dir)


@pytest.fixture
def posting(cfg, resource, tmp_path):
    """Engines of successive runs; they share one client (one of the licence's three seats)."""
    audit = AuditStore.sqlite(tmp_path / "audit.sqlite")
    target = resource.journal_target()

    def engine(run_id: str = "run-1", checkpoint=lambda name: None) -> PostingEngine:
        return PostingEngine(target, audit, run_id=run_id, checkpoint=checkpoint)

    yield engine
    target.close()
    audit.close()


def mapping(**overrides) -> AcumaticaJournal:
    raw = {
        "name": "alloc",
        "looker_query": "alloc",
        "account": {"column": "a.account"},
        "subaccount": {"column": "a.sub"},
        "branch": {"constant": "HQ"},
        "amount": {"column": "a.amount"},
        "currency": {"constant": "USD"},
        "text": "Allocation {a.sub} {partition}",
        "balancing": {
            "mode": "offset",
            "account": "20100",
            "dimensions": {"Subaccount": "000-000", "Branch": "HQ"},
            "text": "Accrued allocation {partition}",
        },
    }
    raw.update(overrides)
    return AcumaticaJournal.model_validate(raw)


ROWS = [
    ("61000", "100-000", HARD),
    ("61100", "100-100", "250.10"),
    ("63000", "000-000", "-12.34"),
    ("64000", "100-000", "3.333"),
]


def plan_for(cfg, m=None, rows=ROWS, last_day=SUNDAY, partition=WEEK):
    m = m or mapping()
    spec = journal_flow(cfg.acumatica).spec
    looker = LookerRows("looker/alloc", [])
    for number, (account, sub, amount) in enumerate(rows, start=1):
        values = {"a.account": account, "a.sub": sub, "a.amount": Decimal(amount)}
        looker.rows.append((SourceRow("looker/alloc", "looker api", "run-l", None, number, values), values))
    built, problems = build_plan(
        spec, m, looker, flow="acumatica/alloc_journal", partition=partition, partition_last_day=last_day,
        dimensions=spec.dimensions(m, None),
    )  # fmt: skip
    assert problems == []
    return built


def batches(sandbox, key: str | None = None) -> list[dict]:
    found = json.loads(sandbox.http.get("/_sandbox/acumatica/records/JournalTransaction").content, parse_float=Decimal)
    return [b for b in found if key is None or b.get("Description") == key]


def assert_posted_once(sandbox, plan) -> dict:
    [batch] = batches(sandbox, plan.document_key)
    held = sorted(
        (
            line["ReferenceNbr"],
            Decimal(str(line["DebitAmount"])),
            Decimal(str(line["CreditAmount"])),
            line["Subaccount"],
        )
        for line in batch["Details"]
    )
    planned = sorted(
        (f"MLC{line.number}", line.debit, line.credit, dict(line.dimensions)["Subaccount"]) for line in plan.lines
    )
    assert held == planned
    return batch


@pytest.mark.parametrize("compound_key_reads", [True, False], ids=["by-module-and-number", "by-id-only"])
def test_a_batch_lands_once_with_its_lines_in_one_write_and_exact_amounts(sandbox, cfg, posting, compound_key_reads):
    """The rerun finds the batch by its key and reads it again, also on a site that reads no record by the
    compound key Module/BatchNbr (the docs show single keys and ids): taken for no batch, a second was made."""
    sandbox.http.post("/_sandbox/acumatica/dialect", json={"compound_key_reads": compound_key_reads}).raise_for_status()
    plan = plan_for(cfg)
    engine = posting()
    result = engine.run(plan)
    assert result.outcome == "posted" and result.lines_written == 5
    batch = assert_posted_once(sandbox, plan)
    first = next(line for line in batch["Details"] if line["ReferenceNbr"] == "MLC1")
    assert str(first["DebitAmount"]) == "123456789012345.68"
    assert batch["Status"] == "Balanced" and result.number == batch["BatchNbr"]
    assert engine.target.client.http.stats.by_method["PUT"] == 2  # the batch, and the branches inquiry (a read)
    assert posting("run-2").run(plan).outcome == "already_posted"
    assert len(batches(sandbox, plan.document_key)) == 1


@pytest.mark.parametrize("crash_at", [c for c in CHECKPOINTS if c not in ("mid_lines", "after_lines")])
def test_a_run_killed_at_any_point_is_finished_without_a_duplicate(sandbox, cfg, posting, crash_at):
    def crash(name):
        if name == crash_at:
            raise SimulatedCrash(name)

    plan = plan_for(cfg)
    with pytest.raises(SimulatedCrash):
        posting("run-killed", checkpoint=crash).run(plan)
    assert posting("run-next").run(plan).document.state == "verified"
    assert_posted_once(sandbox, plan)


@pytest.mark.parametrize("details_in_lists", [True, False], ids=["lists-with-details", "lists-without-details"])
@pytest.mark.parametrize("fault", ["commit_then_drop", "commit_then_504", "commit_then_cut"])
def test_a_committed_batch_whose_answer_is_lost_is_not_saved_twice(sandbox, cfg, posting, fault, details_in_lists):
    """The lookup finds the saved batch and its lines, also on a site whose list GETs answer `$expand`ed
    details empty (they come only with a record read by key)."""
    sandbox.http.post("/_sandbox/acumatica/dialect", json={"details_in_lists": details_in_lists}).raise_for_status()
    plan = plan_for(cfg)
    sandbox.faults({"kind": fault, "path_contains": "/JournalTransaction", "count": 1}, service="acumatica")
    engine = posting()
    assert engine.run(plan).document.state == "verified"
    assert engine.target.client.http.stats.outcome_unknown == 1
    assert_posted_once(sandbox, plan)


def test_subaccounts_mapped_without_their_separator_are_saved_verified_and_found_again(sandbox, cfg, posting):
    """`100000` and `100-000` are one subaccount, and Acumatica answers it with the separator: the read-back
    compares as Acumatica does, so the batch verifies and a re-run finds the same batch, not a changed one."""
    plan = plan_for(cfg, rows=[(account, sub.replace("-", ""), amount) for account, sub, amount in ROWS])
    result = posting().run(plan)
    assert result.document.state == "verified"
    [batch] = batches(sandbox, plan.document_key)
    assert {line["Subaccount"] for line in batch["Details"]} == {"100-000", "100-100", "000-000"}
    assert posting("run-2").run(plan).outcome == "already_posted"


def test_a_batch_dated_the_first_of_a_month_keeps_its_date_on_a_site_west_of_utc(sandbox, cfg, posting):
    """The posting date is a date: sent as a UTC moment, a site at UTC-5 would read midnight of 1 December
    as the evening of 30 November, and post into November."""
    sandbox.http.post("/_sandbox/acumatica/dialect", json={"site_utc_offset_hours": -5}).raise_for_status()
    plan = plan_for(cfg, last_day=date(2026, 12, 1), partition="2026-11-30")
    assert posting().run(plan).document.state == "verified"
    [batch] = batches(sandbox, plan.document_key)
    assert (batch["TransactionDate"], batch["PostPeriod"]) == ("2026-12-01", "122026")


def test_a_saved_batch_answered_without_its_number_is_settled_by_the_lookup(sandbox, cfg, posting, monkeypatch):
    """A PUT that saved the batch but answered without its BatchNbr is an unknown outcome, never a batch
    numbered "": the engine finds the batch by its key, reads it back, and saves nothing twice."""
    import msgspec

    from mlconnector_pipelines.systems.acumatica.values import WrappedText

    plan = plan_for(cfg)
    engine = posting()
    put = engine.target.client.put

    def numberless(*args, **kwargs):
        saved = put(*args, **kwargs)
        return msgspec.structs.replace(saved, BatchNbr=WrappedText()) if kwargs.get("as_type") else saved

    monkeypatch.setattr(engine.target.client, "put", numberless)
    result = engine.run(plan)
    assert result.document.state == "verified" and result.number == assert_posted_once(sandbox, plan)["BatchNbr"]
    assert engine.target.client.http.stats.by_method["PUT"] == 2  # the batch once, and the branches inquiry


@pytest.mark.parametrize("fault", ["commit_then_drop", "commit_then_504"])
def test_a_release_whose_answer_is_lost_is_settled_by_the_batchs_status(sandbox, cfg, posting, fault):
    plan = plan_for(cfg, mapping(release=True))
    sandbox.faults({"kind": fault, "path_contains": "/ReleaseJournalTransaction", "count": 1}, service="acumatica")
    engine = posting()
    result = engine.run(plan)
    batch = assert_posted_once(sandbox, plan)
    assert batch["Status"] in ("Posted", "Unposted")
    events = [e["event"] for e in engine.audit.history(result.document.id)]
    assert "finished" in events
    assert sandbox.state("acumatica")["faults_fired"] == {fault: 1}


def test_a_release_accepted_without_a_location_to_poll_is_waited_for_by_the_batchs_status(sandbox, cfg, posting):
    """202 Accepted promises a Location; without one the release still runs, and ends a moment later."""
    sandbox.http.post("/_sandbox/acumatica/dialect", json={"action_location": False}).raise_for_status()
    plan = plan_for(cfg, mapping(release=True))
    result = posting().run(plan)
    assert result.document.state == "verified"
    assert assert_posted_once(sandbox, plan)["Status"] in ("Posted", "Unposted")


@pytest.mark.parametrize(
    ("rows", "day", "reason"),
    [
        ([("61000", "100-000", "10"), ("61100", "100-000", "-7")], SUNDAY, "does not balance"),
        ([("61000", "100-000", "10")], date(2026, 1, 15), "which is Closed in General Ledger"),
        ([("61000", "555-555", "10")], SUNDAY, "subaccount 555-555 does not exist"),
        ([("61000", "999-999", "10")], SUNDAY, "subaccount 999-999 is inactive"),
        ([("19900", "000-000", "10")], SUNDAY, "account 19900 (Obsolete Clearing) is inactive"),
        ([("77777", "000-000", "10")], SUNDAY, "account 77777 does not exist"),
    ],
    ids=[
        "unbalanced",
        "closed-period",
        "unknown-subaccount",
        "inactive-subaccount",
        "inactive-account",
        "unknown-account",
    ],
)
def test_a_plan_that_fails_validation_saves_nothing_and_names_the_row(sandbox, cfg, posting, rows, day, reason):
    m = mapping(balancing={"mode": "rows_balance"}) if reason == "does not balance" else mapping()
    engine = posting()
    with pytest.raises(PostingRefused) as refused:
        engine.run(plan_for(cfg, m, rows, last_day=day))
    assert reason in str(refused.value)
    if "account" in reason:
        assert "looker/alloc row 1 {a.account:" in str(refused.value)
    assert batches(sandbox, f"MLC alloc {WEEK}") == []


def test_a_plan_in_two_currencies_is_refused_before_any_write_naming_the_other_currencys_lines(sandbox, cfg, posting):
    """A batch has one CurrencyID: written, a EUR line would be booked in USD. Validation refuses the plan
    before any write and names each line in another currency than the first."""
    plan = plan_for(cfg)
    lines = tuple(replace(line, currency="EUR") if line.number in (2, 3) else line for line in plan.lines)
    mixed = replace(plan, lines=lines)
    with pytest.raises(PostingRefused) as refused:
        posting().run(mixed)
    assert [p for p in refused.value.problems if "a batch has one currency" in p] and all(
        "this line is EUR" in p for p in refused.value.problems if "one currency" in p
    )
    assert len([p for p in refused.value.problems if "one currency" in p]) == 2
    assert batches(sandbox, plan.document_key) == []


def test_a_changed_plan_is_refused_and_adjust_posts_a_difference_batch(sandbox, cfg, posting):
    original = plan_for(cfg)
    posting().run(original)
    changed = plan_for(cfg, rows=[*ROWS[:-1], ("64000", "100-000", "10")])
    with pytest.raises(PlanChanged, match="line 4"):
        choose_document(posting("run-2"), journal_flow(cfg.acumatica).spec, mapping(), changed)
    decision = choose_document(posting("run-2"), journal_flow(cfg.acumatica).spec, mapping(on_change="adjust"), changed)
    posting("run-2").run(decision.plan)
    difference = assert_posted_once(sandbox, decision.plan)
    assert sorted(Decimal(str(l["DebitAmount"])) - Decimal(str(l["CreditAmount"])) for l in difference["Details"]) == [
        Decimal("-6.67"),
        Decimal("6.67"),
    ]  # 3.33 → 10.00 on 64000 and its offset
    assert_posted_once(sandbox, original)  # never edited


def test_late_rows_after_the_posted_lines_get_a_difference_batch(sandbox, cfg, posting):
    """rows_balance: late rows that sort after the posted ones left the batch's lines a prefix of the new plan,
    taken for a batch still being written: 'unchanged', and the run then failed (a batch takes no more lines)."""
    balanced = mapping(balancing={"mode": "rows_balance"}, on_change="adjust")
    rows = [("61000", "100-000", "100"), ("61100", "100-100", "-100")]
    original = plan_for(cfg, balanced, rows=rows)
    posting().run(original)
    late = plan_for(cfg, balanced, rows=[*rows, ("61000", "000-000", "40"), ("61100", "000-000", "-40")])
    decision = choose_document(posting("run-2"), journal_flow(cfg.acumatica).spec, balanced, late)
    assert decision.outcome == "adjustment"
    posting("run-2").run(decision.plan)
    difference = assert_posted_once(sandbox, decision.plan)
    assert sorted((l["Account"], l["Subaccount"], Decimal(str(l["DebitAmount"])) - Decimal(str(l["CreditAmount"])))
                  for l in difference["Details"]) == [("61000", "000-000", 40), ("61100", "000-000", -40)]  # fmt: skip
    assert_posted_once(sandbox, original)


def close_the_weeks_period(sandbox) -> None:
    sandbox.http.post("/_sandbox/acumatica/periods", json={"period": "112026", "closed": True}).raise_for_status()


@pytest.fixture
def rerun(resource, posting):
    """An engine of a later run with a target of its own (nothing the earlier run read is cached in it)."""
    targets = []

    def engine(run_id: str) -> PostingEngine:
        targets.append(resource.journal_target())
        return PostingEngine(targets[-1], posting().audit, run_id=run_id)

    yield engine
    for target in targets:
        target.close()


def test_a_released_batch_whose_run_died_before_its_record_is_verified_after_its_period_closed(
    sandbox, cfg, posting, rerun
):
    """Run 1 saves, verifies and releases the batch, and dies before the audit store records it. Month end closes
    the period. The rerun validated the plan again: refused, 'not posted … nothing was written', the record and
    its lines refused, although Acumatica holds the released batch. A batch that holds the plan whole is not
    validated again: it is verified as posted (and not released a second time)."""
    plan = plan_for(cfg, mapping(release=True))

    def dies_once_released(message: str) -> None:
        if "released" in message:
            raise SimulatedCrash(message)

    first = posting("run-1")
    first.progress = dies_once_released
    with pytest.raises(SimulatedCrash):
        first.run(plan)
    batch = assert_posted_once(sandbox, plan)
    assert batch["Status"] in ("Posted", "Unposted")  # the case: released
    close_the_weeks_period(sandbox)

    result = rerun("run-2").run(plan)

    assert (result.number, result.outcome, result.document.state) == (batch["BatchNbr"], "already_posted", "verified")
    assert {line.state for line in first.audit.line_records(result.document.id)} == {"verified"}
    assert [b["Status"] for b in batches(sandbox, plan.document_key)] == [batch["Status"]]


def test_other_figures_refused_beside_a_saved_batch_name_it_and_its_status_not_nothing_written(
    sandbox, cfg, posting, rerun
):
    """Run 1 saves the batch and dies; the period closes; the rerun brings other figures. The refusal said
    'nothing was written' of a batch Acumatica holds, ready to be released: it names the batch and its status."""
    plan = plan_for(cfg)
    with pytest.raises(SimulatedCrash):
        posting("run-1", checkpoint=lambda name: _crash_at(name, "after_header")).run(plan)
    [batch] = batches(sandbox, plan.document_key)
    close_the_weeks_period(sandbox)
    changed = plan_for(cfg, rows=[*ROWS[:-1], ("64000", "100-000", "10")])

    with pytest.raises(PostingRefused) as refused:
        rerun("run-2").run(changed)

    message = str(refused.value)
    assert f"{batch['BatchNbr']} (Balanced), written by an earlier run, is left as it is" in message, message
    assert "nothing was written" not in message
    assert batches(sandbox, plan.document_key) == [batch]


def _crash_at(name: str, point: str) -> None:
    if name == point:
        raise SimulatedCrash(name)


def test_a_wrong_endpoint_version_is_a_configuration_error_naming_the_versions_published(sandbox, cfg, tmp_path):
    from mlconnector_pipelines.systems.acumatica.ping import ping

    wrong = cfg.acumatica.model_copy(update={"version": "25.100.001"})
    result = ping(wrong, tmp_path)
    assert not result.ok and "acumatica.version: the site has no Default/25.100.001 endpoint" in result.detail
    assert "the site publishes 23.200.001, 24.200.001" in result.detail
    with pytest.raises(ConfigError, match="25.100.001"):
        AcumaticaResource.from_section(wrong, tmp_path).session()
    client = AcumaticaResource.from_section(wrong, tmp_path).client()
    with pytest.raises(ConfigError, match="the site publishes"):
        client.records("Account")  # a 404 at run time says the same, and is not retried
    assert client.http.stats.retries == 0
    client.close()


def test_a_token_that_expires_mid_run_is_refreshed_once(tmp_path_factory, tmp_path):
    import time

    from ..conftest import start_sandbox

    running, sandbox_dir = start_sandbox(tmp_path_factory, acumatica={"token_lifetime_seconds": 1})
    try:
        raw = sandbox_profile(sandbox_dir, running.url)
        raw.update(data_dir=str(tmp_path), sap_business_one=None, looker=None, finance_operations=None)
        raw["acumatica"]["http"] = dict(FAST_HTTP)
        client = AcumaticaResource.from_section(parse_config(raw).acumatica, tmp_path).client()
        assert client.records("Account", top=1)
        time.sleep(1.2)  # the access token has expired; its refresh token has not
        assert client.records("Account", top=1)
        assert (client.auth.grants, client.auth.refreshes, client.http.stats.reauthentications) == (1, 1, 1)
        client.close()
        admin = running.services["acumatica"].state()
        assert admin["open_sessions"] == 0 and admin["refreshes"] == 1
    finally:
        running.stop()


def test_a_revoked_grant_is_granted_again(sandbox, resource):
    client = resource.client()
    try:
        assert client.records("Account", top=1)
        sandbox.http.post("/_sandbox/acumatica/tokens/expire").raise_for_status()  # tokens and refresh tokens end
        assert client.records("Account", top=1)
        assert (client.auth.grants, client.auth.refreshes) == (2, 0)
    finally:
        client.close()
    assert sandbox.state("acumatica")["open_sessions"] == 0


@pytest.mark.parametrize(("mode", "path"), [("oauth", "/identity/connect/token"), ("legacy", "/entity/auth/login")])
def test_a_sign_in_the_site_throttles_is_asked_again_after_its_retry_after(sandbox, cfg, tmp_path, mode, path):
    """The licence's request rate counts sign-ins too: a token or session renewed mid-run near the limit was
    answered 429, and the run ended with "refused" and a credentials fix where the requests beside it waited."""
    section = cfg.acumatica.model_copy(update={"auth": cfg.acumatica.auth.model_copy(update={"mode": mode})})
    client = AcumaticaResource.from_section(section, tmp_path).client()
    try:
        assert client.records("Account", top=1)
        sandbox.faults({"kind": "expire_tokens", "path_contains": "/Account"},
                       {"kind": "status", "status": 429, "retry_after": 0, "path_contains": path, "count": 2},
                       service="acumatica")  # fmt: skip
        assert client.records("Account", top=1)
        assert client.http.stats.reauthentications == 1
    finally:
        client.close()
    assert sandbox.state("acumatica")["open_sessions"] == 0


def test_a_failed_run_still_signs_its_legacy_session_out(sandbox, cfg, tmp_path):
    legacy = cfg.acumatica.model_copy(update={"auth": cfg.acumatica.auth.model_copy(update={"mode": "legacy"})})
    session = AcumaticaResource.from_section(legacy, tmp_path).session()
    sandbox.faults({"kind": "status", "status": 500, "path_contains": "/Vendor", "count": 50}, service="acumatica")
    try:
        assert session.companies()
        with pytest.raises(RequestFailedError):
            list(session.pages("MLC", VENDORS, datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)))
        assert sandbox.state("acumatica")["sessions"]["legacy"] == 1
    finally:
        session.close()
    assert sandbox.state("acumatica")["sessions"]["legacy"] == 0 and session.client.auth.logouts == 1


def test_an_unwrapped_value_never_leaves_the_client():
    from mlconnector_pipelines.systems.acumatica.values import unwrap, wrap

    sent = wrap(
        {"VendorID": "V1", "Hold": False, "Amount": Decimal("1.10"), "Details": [{"Account": "61000"}], "id": "x"}
    )
    assert sent == {
        "VendorID": {"value": "V1"},
        "Hold": {"value": False},
        "Amount": {"value": Decimal("1.10")},
        "Details": [{"Account": {"value": "61000"}}],
        "id": "x",
    }
    with pytest.raises(TypeError):
        wrap({"MainContact": {"Email": "a@b"}})  # an object is not a value: it is never sent half-wrapped
    answer = {
        "id": "x",
        "VendorID": {"value": "V1"},
        "Status": {"value": "X", "error": "bad"},
        "Terms": {"error": "'Terms' cannot be empty."},  # refused, no value left
        "Empty": {},
        "MainContact": {"id": "c"},  # a linked entity, as it came
        "_links": {"self": "/x"},
        "Details": [{"Account": {"value": "61000"}, "custom": {}}, "kept"],
    }
    assert unwrap(answer) == {
        "id": "x",
        "VendorID": "V1",
        "Status": "X",
        "Status.error": "bad",
        "Terms.error": "'Terms' cannot be empty.",
        "Empty": None,
        "MainContact": {"id": "c"},
        "Details": [{"Account": "61000"}, "kept"],
    }


@pytest.mark.parametrize("missing_record_status", [500, 404], ids=["no-entity-500", "not-found-404"])
def test_reference_records_land_by_key_and_a_refused_one_is_named_and_replayed(
    sandbox, cfg, resource, tmp_path, missing_record_status
):
    """A key that matches no record is Acumatica's 500 "No entity satisfies the condition", or a 404 on a
    site that reads the docs as REST: either way the record is new, and inserted."""
    sandbox.http.post(
        "/_sandbox/acumatica/dialect", json={"missing_record_status": missing_record_status}
    ).raise_for_status()
    rows = [
        ("V00001", "Renamed Supplier One", "SERVICES"),  # an update of one field
        ("V90001", "New Supplier", "LOCAL"),  # an insert
        ("V90002", "Wrong Class Supplier", "NOSUCHCLASS"),  # refused: the class does not exist
        ("V00002", None, None),  # unchanged: nothing sent
    ]
    held = {v["VendorID"]: v for v in json.loads(sandbox.http.get("/_sandbox/acumatica/records/Vendor").content)}
    wanted = []
    for number, (vendor, name, klass) in enumerate(rows, start=1):
        record = {
            "VendorID": vendor,
            "VendorName": name or held[vendor]["VendorName"],
            "VendorClass": klass or held[vendor]["VendorClass"],
        }
        wanted.append((SourceRow("looker/vendors", "looker api", "r", None, number, record), record))
    plan = records_plan(
        flow="acumatica/approved_vendors",
        partition="",
        system="Acumatica",
        company="Vendor",
        entity="Vendor",
        key="VendorID",
        rows=wanted,
    )
    audit = AuditStore.sqlite(tmp_path / "audit.sqlite")
    target = resource.record_target("Vendor", "VendorID")
    with pytest.raises(RecordsRefused) as refused:
        RecordSync(target, audit, run_id="run-1").run(plan)
    result = refused.value.result
    assert result.inserted == ["V90001"] and result.updated == {"V00001": ["VendorName"]}
    assert result.unchanged == ["V00002"] and list(result.refused) == ["V90002"]
    assert "VendorClass" in result.refused["V90002"] and "cannot be found" in result.refused["V90002"]
    assert target.client.http.stats.by_method["PUT"] == 3  # the unchanged vendor was not sent
    now = {v["VendorID"]: v for v in json.loads(sandbox.http.get("/_sandbox/acumatica/records/Vendor").content)}
    assert now["V00001"]["VendorName"] == "Renamed Supplier One" and now["V90001"]["VendorClass"] == "LOCAL"
    assert "V90002" not in now
    lines = {r.line.account: r for r in audit.line_records(result.document.id)}
    assert lines["V90002"].state == "refused" and "VendorClass" in lines["V90002"].error
    # The class is created in Acumatica; replay sends only what is still missing.
    sandbox.http.post(
        "/_sandbox/acumatica/records/VendorClass", json={"record": {"ClassID": "NOSUCHCLASS", "Description": "x"}}
    ).raise_for_status()
    again = RecordSync(resource.record_target("Vendor", "VendorID"), audit, run_id="run-2").run(
        audit.plan(audit.document(result.document.id))
    )
    assert again.inserted == ["V90002"] and sorted(again.unchanged) == ["V00001", "V00002", "V90001"]
    target.close()
    audit.close()


def test_each_new_set_of_reference_records_is_synced_after_a_complete_one(sandbox, cfg, resource, tmp_path):
    """An unpartitioned asset's records were one audit document, which once verified kept its lines: every later
    set was checked against the first one's line numbers, its records called unchanged and never sent (a renamed
    vendor stayed as it was, a new one was never made). Going back to an earlier set sends it again too."""
    held = {v["VendorID"]: v for v in json.loads(sandbox.http.get("/_sandbox/acumatica/records/Vendor").content)}
    klass = held["V00001"]["VendorClass"]
    audit = AuditStore.sqlite(tmp_path / "audit.sqlite")

    def sync(run_id: str, *records: tuple[str, str]):
        rows = [(SourceRow("looker/vendors", "looker api", run_id, None, n, {"VendorID": v, "VendorName": name,
                 "VendorClass": klass}), {"VendorID": v, "VendorName": name, "VendorClass": klass})
                for n, (v, name) in enumerate(records, start=1)]  # fmt: skip
        plan = records_plan(flow="acumatica/approved_vendors", partition="", system="Acumatica", company="Vendor",
                            entity="Vendor", key="VendorID", rows=rows)  # fmt: skip
        return RecordSync(resource.record_target("Vendor", "VendorID"), audit, run_id=run_id).run(plan)

    def names() -> dict[str, str]:
        now = json.loads(sandbox.http.get("/_sandbox/acumatica/records/Vendor").content)
        return {v["VendorID"]: v["VendorName"] for v in now}

    assert sync("run-1", ("V00001", "Name A")).updated == {"V00001": ["VendorName"]}
    second = sync("run-2", ("V00001", "Name B"), ("V90077", "Brand new"))
    assert second.updated == {"V00001": ["VendorName"]} and second.inserted == ["V90077"]
    assert (names()["V00001"], names()["V90077"]) == ("Name B", "Brand new")
    trail = {
        r.line.account: (dict(r.line.dimensions)["VendorName"], r.state) for r in audit.line_records(second.document.id)
    }
    assert trail == {"V00001": ("Name B", "verified"), "V90077": ("Brand new", "verified")}  # what was sent, recorded
    assert sync("run-3", ("V00001", "Name A")).updated == {"V00001": ["VendorName"]}  # the first set again
    assert names()["V00001"] == "Name A"
    audit.close()


def test_a_value_acumatica_cannot_read_refuses_its_record_only(sandbox, cfg, resource, tmp_path):
    """A Looker yes/no written "Yes" into a boolean field is Acumatica's 400 "Error converting value": it aborted
    the whole sync, the records after it never landed, and the audit document stayed planned. The record is
    refused and named, and the others land."""
    klass = json.loads(sandbox.http.get("/_sandbox/acumatica/records/Vendor").content)[0]["VendorClass"]
    wanted = [{"VendorID": "V90066", "VendorName": "Yes-no vendor", "VendorClass": klass, "F1099Vendor": "Yes"},
              {"VendorID": "V90067", "VendorName": "After it", "VendorClass": klass}]  # fmt: skip
    plan = records_plan(flow="acumatica/approved_vendors", partition="", system="Acumatica", company="Vendor",
                        entity="Vendor", key="VendorID",
                        rows=[(SourceRow("looker/vendors", "looker api", "r", None, n, r), r)
                              for n, r in enumerate(wanted, start=1)])  # fmt: skip
    audit = AuditStore.sqlite(tmp_path / "audit.sqlite")
    with pytest.raises(RecordsRefused) as refused:
        RecordSync(resource.record_target("Vendor", "VendorID"), audit, run_id="run-1").run(plan)
    result = refused.value.result
    assert list(result.refused) == ["V90066"] and "Error converting value" in result.refused["V90066"]
    assert result.inserted == ["V90067"] and result.document.state == "failed"
    audit.close()


def test_a_set_of_records_a_later_set_replaced_before_it_finished_is_not_replayed_over_it(
    sandbox, cfg, resource, tmp_path
):
    """Run 1 wants two vendors renamed and is killed after the first; run 2 wants other names and finishes.
    Replay finished run 1's set, putting its old name back over run 2's."""
    from mlconnector_pipelines.replay import _replay_one

    klass = json.loads(sandbox.http.get("/_sandbox/acumatica/records/Vendor").content)[0]["VendorClass"]
    audit = AuditStore.sqlite(tmp_path / "audit.sqlite")

    def plan(*names: str):
        rows = [
            {"VendorID": v, "VendorName": name, "VendorClass": klass}
            for v, name in zip(("V00001", "V00002"), names, strict=True)
        ]
        return records_plan(flow="acumatica/approved_vendors", partition="", system="Acumatica", company="Vendor",
                            entity="Vendor", key="VendorID",
                            rows=[(SourceRow("looker/vendors", "looker api", "r", None, n, r), r)
                                  for n, r in enumerate(rows, start=1)])  # fmt: skip

    target = resource.record_target("Vendor", "VendorID")
    real_upsert, sent = target.upsert, []

    def killed_after_the_first(record):
        if sent:
            raise SimulatedCrash("killed")
        sent.append(record)
        return real_upsert(record)

    target.upsert = killed_after_the_first
    with pytest.raises(SimulatedCrash):
        RecordSync(target, audit, run_id="run-1").run(plan("Old one", "Old two"))
    RecordSync(resource.record_target("Vendor", "VendorID"), audit, run_id="run-2").run(plan("New one", "New two"))
    assert [_replay_one(audit, resource.record_target("Vendor", "VendorID"), r, False, "replay") for r in
            audit.unfinished("acumatica/approved_vendors")] == []  # fmt: skip
    now = {
        v["VendorID"]: v["VendorName"]
        for v in json.loads(sandbox.http.get("/_sandbox/acumatica/records/Vendor").content)
    }
    assert (now["V00001"], now["V00002"]) == ("New one", "New two")
    audit.close()


def test_a_key_acumatica_keeps_upper_case_is_the_same_record_whatever_its_case(sandbox, cfg, resource, tmp_path):
    """Acumatica keeps a new record's key upper case (v90055 is saved as V90055) and finds it in any case: the
    saved key was taken for a refusal ("saved, but VendorID differ") on every run, and replay sent it again."""
    klass = json.loads(sandbox.http.get("/_sandbox/acumatica/records/Vendor").content)[0]["VendorClass"]
    wanted = {"VendorID": "v90055", "VendorName": "Lower case", "VendorClass": klass}
    plan = records_plan(flow="acumatica/approved_vendors", partition="", system="Acumatica", company="Vendor",
                        entity="Vendor", key="VendorID",
                        rows=[(SourceRow("looker/vendors", "looker api", "r", None, 1, wanted), wanted)])  # fmt: skip
    audit = AuditStore.sqlite(tmp_path / "audit.sqlite")
    first = RecordSync(resource.record_target("Vendor", "VendorID"), audit, run_id="run-1").run(plan)
    again = RecordSync(resource.record_target("Vendor", "VendorID"), audit, run_id="run-2").run(plan)
    assert first.inserted == ["v90055"] and again.unchanged == ["v90055"] and again.updated == {}
    held = [v["VendorID"] for v in json.loads(sandbox.http.get("/_sandbox/acumatica/records/Vendor").content)]
    assert "V90055" in held and "v90055" not in held  # the case: Acumatica keeps it upper case
    audit.close()


def vendors(sandbox) -> list[dict]:
    return json.loads(sandbox.http.get("/_sandbox/acumatica/records/Vendor").content)


def vendor_plan(*records: dict):
    rows = [(SourceRow("looker/vendors", "looker api", "r", None, n, r), r) for n, r in enumerate(records, start=1)]
    return records_plan(flow="acumatica/approved_vendors", partition="", system="Acumatica", company="Vendor",
                        entity="Vendor", key="VendorID", rows=rows)  # fmt: skip


def vendor_puts(sandbox) -> int:
    return sandbox.state("acumatica")["requests"].get("PUT Vendor", 0)


def test_a_record_whose_key_acumatica_numbers_is_saved_once_and_the_sync_asks_for_another_key(
    sandbox, cfg, resource, tmp_path
):
    """On a site whose VENDOR segmented key has auto-numbering (Segmented Keys, CS202000), a new vendor takes the
    next number whatever VendorID was sent (acumatica-facts §6). The vendor was called refused ("saved, but
    VendorID differ") and every later run looked NEWV1 up, found nothing and saved another: one vendor per run.
    It is recorded under Acumatica's number and never sent again, by a rerun or by a later set of records, and
    the sync fails with a configuration error naming the record and the number."""
    sandbox.http.post("/_sandbox/acumatica/dialect", json={"numbered_keys": ["Vendor"]}).raise_for_status()
    klass = vendors(sandbox)[0]["VendorClass"]
    wanted = {"VendorID": "NEWV1", "VendorName": "Numbered Supplier", "VendorClass": klass}
    audit = AuditStore.sqlite(tmp_path / "audit.sqlite")
    with pytest.raises(KeyAssignedByTarget) as first:
        RecordSync(resource.record_target("Vendor", "VendorID"), audit, run_id="run-1").run(vendor_plan(wanted))
    [number] = [v["VendorID"] for v in vendors(sandbox) if v["VendorName"] == "Numbered Supplier"]
    assert number != "NEWV1" and isinstance(first.value, ConfigError)
    assert f"NEWV1 was saved as {number}" in str(first.value) and "another natural key" in str(first.value)
    [line] = audit.line_records(first.value.result.document.id)
    assert (line.state, line.target_line) == ("renumbered", number)
    renamed = {"VendorID": "V00001", "VendorName": "Renamed under numbering", "VendorClass": klass}
    preview = RecordSync(resource.record_target("Vendor", "VendorID"), audit, run_id="run-2").preview(
        vendor_plan(renamed, wanted)
    )  # what a person approving the next set sees: no insert of NEWV1
    assert preview == [("V00001", "update", ["VendorName"]), ("NEWV1", f"held as {number}", [])]
    puts = vendor_puts(sandbox)
    for run_id, plan in (("run-2", vendor_plan(wanted)), ("run-3", vendor_plan(renamed, wanted))):
        with pytest.raises(KeyAssignedByTarget, match=f"NEWV1 was saved as {number}") as again:
            RecordSync(resource.record_target("Vendor", "VendorID"), audit, run_id=run_id).run(plan)
    assert again.value.result.updated == {"V00001": ["VendorName"]}  # the other records still land
    assert vendor_puts(sandbox) == puts + 1  # the rename only: NEWV1 was not sent again
    assert [v["VendorID"] for v in vendors(sandbox) if v["VendorName"] == "Numbered Supplier"] == [number]
    audit.close()


@pytest.mark.parametrize("numbered", [False, True], ids=["key-as-sent", "key-numbered"])
def test_an_insert_whose_answer_was_lost_is_looked_up_never_sent_again(sandbox, cfg, resource, tmp_path, numbered):
    """An insert was sent as a PUT safe to repeat, so a lost answer made the client send it again: with a key
    Acumatica numbers, a second vendor. The lookup by key settles it: found, it is the insert; not found (the
    key was not kept), nothing more is sent and the next run looks it up first."""
    sandbox.http.post("/_sandbox/acumatica/dialect", json={"numbered_keys": ["Vendor"] if numbered else []})
    klass = vendors(sandbox)[0]["VendorClass"]
    wanted = {"VendorID": "V90088", "VendorName": "Lost answer supplier", "VendorClass": klass}
    sandbox.faults({"kind": "commit_then_drop", "path_contains": "/Vendor", "count": 1}, service="acumatica")
    audit = AuditStore.sqlite(tmp_path / "audit.sqlite")
    sync = RecordSync(resource.record_target("Vendor", "VendorID"), audit, run_id="run-1")
    if numbered:
        with pytest.raises(OutcomeUnknown, match="it was not sent again"):
            sync.run(vendor_plan(wanted))
    else:
        assert sync.run(vendor_plan(wanted)).inserted == ["V90088"]
    assert vendor_puts(sandbox) == 1
    assert len([v for v in vendors(sandbox) if v["VendorName"] == "Lost answer supplier"]) == 1
    audit.close()


@pytest.mark.parametrize("key", ["AB/01", "AT&T", "A|B", "R:1"])
def test_a_record_whose_key_cannot_go_in_a_url_path_is_found_by_filter(sandbox, cfg, resource, tmp_path, key):
    """A key holding a slash or a vertical bar names two key values in a path (the guide: address such a record
    by its id), and IIS refuses a path with `&` or `:` (400): the record was never found (inserted again on
    every run) or the whole sync stopped. It is looked up with a $filter on the key."""
    target = resource.record_target("Vendor", "VendorID")
    with pytest.raises(RequestFailedError) as in_path:  # the sandbox answers such a path as IIS does
        target.client.record("Vendor", ["AT&T"])
    assert in_path.value.status == 400
    klass = vendors(sandbox)[0]["VendorClass"]
    wanted = {"VendorID": key, "VendorName": f"Supplier {key}", "VendorClass": klass}
    audit = AuditStore.sqlite(tmp_path / "audit.sqlite")
    assert RecordSync(target, audit, run_id="run-1").run(vendor_plan(wanted)).inserted == [key]
    again = RecordSync(resource.record_target("Vendor", "VendorID"), audit, run_id="run-2").run(
        vendor_plan({**wanted, "VendorName": f"Renamed {key}"})
    )
    assert again.updated == {key: ["VendorName"]} and again.inserted == []
    assert [v["VendorName"] for v in vendors(sandbox) if v["VendorID"] == key] == [f"Renamed {key}"]
    audit.close()


def test_one_record_asked_for_twice_differently_writes_nothing_and_names_both_rows():
    from mlconnector_pipelines.engine.records import ConflictingRecords

    def row(number, name):
        record = {"VendorID": "V1", "VendorName": name}
        return SourceRow("looker/vendors", "looker api", "r", None, number, record), record

    same = records_plan(flow="f", partition="", system="Acumatica", company="Vendor", entity="Vendor", key="VendorID",
                        rows=[row(1, "Acme"), row(2, "Acme")])  # fmt: skip
    assert [line.account for line in same.lines] == ["V1"]  # the same record twice is one record
    with pytest.raises(ConflictingRecords, match="rows 1 and 3 differ"):
        records_plan(flow="f", partition="", system="Acumatica", company="Vendor", entity="Vendor", key="VendorID",
                     rows=[row(1, "Acme"), row(2, "Acme"), row(3, "Acme Ltd")])  # fmt: skip


def test_the_read_back_names_a_line_acumatica_saved_otherwise(sandbox, cfg, posting):
    """The read-back is the PUT's own answer: it must still show what Acumatica saved, not what was sent.
    A mapping that assumes 3 decimals for USD sends 3.333; Acumatica keeps USD at 2 and saves 3.33 (on a site
    whose Currency record does not say its precision, so validation cannot refuse the line first)."""
    sandbox.http.post(
        "/_sandbox/acumatica/records/Currency", json={"record": {"CurrencyID": "USD", "DecimalPrecision": None}}
    ).raise_for_status()
    plan = plan_for(cfg, mapping(currency_precision={"USD": 3}))
    engine = posting()
    with pytest.raises(VerificationFailed) as failed:
        engine.run(plan)
    message = str(failed.value)
    assert "line 4: planned line 4: 64000 [Subaccount=100-000, Branch=HQ] debit 3.333 USD" in message
    assert "the target holds 64000 [Subaccount=100-000, Branch=HQ] debit 3.33 credit 0 USD" in message
    assert "line 2:" not in message and "line 3:" not in message  # lines saved as planned are not named
    # the period, accounts, subaccounts, the currency, and the lookup by key: the batch itself was not read again
    assert engine.target.client.http.stats.by_method == {"GET": 5, "PUT": 2}
    record = engine.audit.find_document(plan.flow, plan.partition, plan.document_key)
    assert record is not None and record.state != "verified" and record.document_number


def test_amounts_finer_than_acumaticas_currency_precision_are_refused_before_anything_is_written(sandbox, cfg, posting):
    """Acumatica keeps USD to 2 places (its Currency record, CM202000). A mapping that rounds USD to 3 was saved
    rounded, failed its read-back, and every rerun then found the batch "with other figures". Validation reads
    the currency's precision and names each line with more places; nothing is written."""
    plan = plan_for(cfg, mapping(currency_precision={"USD": 3}))
    engine = posting()
    with pytest.raises(PostingRefused) as refused:
        engine.run(plan)
    named = [line for line in refused.value.problems if "keeps USD amounts to 2 decimal places" in line]
    assert [line.split(" → ")[1].split(":")[0] for line in named] == ["line 1", "line 4", "line 5"]
    assert "currency_precision for USD to 2" in named[0]
    assert batches(sandbox, plan.document_key) == []
    assert "PUT JournalTransaction" not in sandbox.state("acumatica")["requests"]
    assert posting("run-2").run(plan_for(cfg)).document.state == "verified"  # rounded to 2, it posts


@pytest.mark.parametrize("missing_record_status", [500, 404], ids=["no-entity-500", "not-found-404"])
def test_a_currency_acumatica_does_not_have_is_refused_before_anything_is_written(
    sandbox, cfg, posting, missing_record_status
):
    """A currency with no Currency record (CHF on a site that has not set it up) is named on every line; the site
    says so with its 500 "No entity satisfies the condition", or with a 404 on a site reading the docs as REST."""
    sandbox.http.post(
        "/_sandbox/acumatica/dialect", json={"missing_record_status": missing_record_status}
    ).raise_for_status()
    plan = plan_for(cfg, mapping(currency={"constant": "CHF"}))
    with pytest.raises(PostingRefused) as refused:
        posting().run(plan)
    assert any("currency CHF does not exist in Acumatica" in problem for problem in refused.value.problems)
    assert batches(sandbox, plan.document_key) == []


def test_an_offset_dimension_acumatica_has_no_field_for_is_refused_not_dropped(cfg):
    misspelt = mapping(balancing={"mode": "offset", "account": "20100", "dimensions": {"Subacount": "000-000"}})
    with pytest.raises(ConfigError, match=r"balancing\.dimensions: Subacount is neither Subaccount nor Branch"):
        plan_for(cfg, misspelt)
