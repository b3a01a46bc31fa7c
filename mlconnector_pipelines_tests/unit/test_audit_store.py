"""The audit store on SQLite (the default) and on a real PostgreSQL server (deployments; .ci/run starts one)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from mlconnector_pipelines.audit.schema import metadata
from mlconnector_pipelines.audit.store import AuditStore
from mlconnector_pipelines.core.posting import Plan, PlannedLine, SourceRow

HARD = Decimal("12345678901.234567891")  # 20 significant digits: no double holds it


def _postgres_url() -> str | None:
    if not os.environ.get("DAGSTER_PG_HOST"):
        return None
    return (
        f"postgresql+psycopg2://{os.environ['DAGSTER_PG_USERNAME']}:{os.environ['DAGSTER_PG_PASSWORD']}"
        f"@{os.environ['DAGSTER_PG_HOST']}:{os.environ['DAGSTER_PG_PORT']}/{os.environ['DAGSTER_PG_DB']}"
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        audit = AuditStore.sqlite(tmp_path / "audit.sqlite")
        yield audit
        audit.close()
        return
    with postgres_database("audit") as url:
        audit = AuditStore(url)
        yield audit
        audit.close()


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """The URL of a database of its own on the test PostgreSQL server, dropped afterwards (skips without one)."""
    base = _postgres_url()
    if base is None:
        pytest.skip("needs PostgreSQL: run through scripts/with-postgres (.ci/run does)")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def plan(key: str = "MLC fees 2026-11-23", amount: Decimal = HARD, partition: str = "2026-11-23") -> Plan:
    row = SourceRow(
        "looker/fees",
        "looker api",
        "run-1",
        "2026-11-23T00:00:00+00:00",
        1,
        {"fees.area": "NORTH", "fees.amount": amount},
    )
    return Plan(
        flow="finance_operations/fees_journal",
        partition=partition,
        document_key=key,
        system="Finance and Operations",
        company="usrt",
        header={"journal_name": "Alloc", "posting_date": "2026-11-29"},
        lines=(
            PlannedLine(1, "618200", (("CostCenter", "001"),), amount, Decimal(0), "USD", "fees NORTH", source=row),
            PlannedLine(2, "220500", (), Decimal(0), amount, "USD", "offset", kind="offset"),
        ),
    )


def test_the_schema_is_at_the_newest_migration_and_matches_the_tables_the_code_declares(store):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    assert store.schema_version() == AuditStore.newest_version() == "0004"
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": "mlconnector_audit_version"})
        differences = [d for d in compare_metadata(context, metadata) if d[0] != "remove_table"]
    assert differences == []


def test_a_plan_is_stored_exactly_and_rebuilds_to_the_same_plan(store):
    planned = plan()
    record = store.save_plan(planned, "run-1")
    assert record.state == "planned" and record.digest == planned.digest
    stored = store.plan(record)
    assert stored.digest == planned.digest
    assert stored.lines[0].debit == HARD and str(stored.lines[0].debit) == "12345678901.234567891"
    assert stored.lines[0].source.values == {"fees.area": "NORTH", "fees.amount": "12345678901.234567891"}
    assert stored.lines[0].source.digest == planned.lines[0].source.digest  # the row's digest survives storage
    assert stored.lines[1].source is None and stored.lines[1].kind == "offset"
    with store.engine.connect() as c:  # the digest trace shows is the row's, of the values as stored
        digests = c.execute(sa.text("SELECT source_row_digest FROM audit_lines ORDER BY line_number")).scalars().all()
    assert digests == [planned.lines[0].source.digest, None]


def test_a_new_plan_replaces_one_never_written_but_never_a_written_one(store):
    first = store.save_plan(plan(amount=Decimal("10.00")), "run-1")
    second = store.save_plan(plan(amount=Decimal("12.00")), "run-2")
    assert second.id == first.id and store.plan(second).lines[0].debit == Decimal("12.00")
    store.set_state(second.id, "writing", document_number="00601")
    third = store.save_plan(plan(amount=Decimal("99.00")), "run-3")
    assert store.plan(third).lines[0].debit == Decimal("12.00")  # what went to the ERP stays the record
    assert third.last_run_id == "run-3" and third.first_run_id == "run-1"


def test_a_verified_document_with_a_follow_up_still_open_is_unfinished_until_it_is_closed(store):
    """A step after verification (Sales' numbers written back): opened, it keeps the document for replay;
    written back or refused, it is done; opened again by a later run, it is open again. Documents without
    one are finished when verified."""
    record = store.save_plan(plan(), "run-1")
    store.set_state(record.id, "verified", document_number="00601")
    assert store.unfinished() == []
    steps = [("write_back_pending", True), ("written_back", False), ("write_back_pending", True),
             ("write_back_refused", False)]  # fmt: skip
    for event, open_ in steps:
        store.event(record.id, "run-x", event, "salesorders(1)")
        assert [d.id for d in store.unfinished()] == ([record.id] if open_ else []), event


def test_states_lines_and_the_queries_replay_and_trace_use(store):
    record = store.save_plan(plan(), "run-1")
    other = store.save_plan(plan(key="MLC fees 2026-11-30", partition="2026-11-30"), "run-1")
    store.set_state(record.id, "writing", document_number="00601", count_attempt=True)
    store.lines_written(record.id, [1, 2], "created")
    store.set_state(record.id, "verified", line_state=None)
    assert [d.id for d in store.unfinished()] == [other.id]
    assert [d.id for d in store.unfinished("finance_operations/other")] == []
    found = store.by_number("00601", "USRT")  # companies compare without case
    assert [d.id for d in found] == [record.id] and found[0].attempts == 1
    lines = store.line_records(record.id)
    assert [(r.state, r.target_line, r.attempts) for r in lines] == [("created", "1", 1), ("created", "2", 1)]
    events = [e["event"] for e in store.history(record.id)]
    assert events[0] == "planned" and events[-1] == "verified"
    assert all(isinstance(e["at"], datetime) for e in store.history(record.id))


def test_every_line_of_a_document_is_marked_in_one_go_and_no_other_documents(store):
    record = store.save_plan(plan(), "run-1")
    other = store.save_plan(plan(key="MLC fees 2026-11-30", partition="2026-11-30"), "run-1")
    store.lines_written(record.id, [2], "created")
    store.lines_written(record.id, None, "verified", attempt=False)
    marked = [(r.line.number, r.state, r.target_line, r.attempts) for r in store.line_records(record.id)]
    assert marked == [(1, "verified", "1", 0), (2, "verified", "2", 1)]
    assert [r.state for r in store.line_records(other.id)] == ["planned", "planned"]


def test_refused_lines_keep_their_reason(store):
    record = store.save_plan(plan(), "run-1")
    store.refuse_lines(record.id, {1: "main account 618200 is suspended"})
    store.set_state(record.id, "refused", error="1 problem")
    lines = {r.line.number: r for r in store.line_records(record.id)}
    assert lines[1].state == "refused" and lines[1].error == "main account 618200 is suspended"
    assert lines[2].state == "planned"
    assert store.document(record.id).state == "refused" and store.document(record.id).updated_at <= datetime.now(UTC)


def test_opening_a_store_again_migrates_nothing_and_loses_nothing(store):
    record = store.save_plan(plan(), "run-1")
    again = AuditStore(store.url)
    assert again.document(record.id).digest == record.digest
    again.close()


def test_a_lease_keeps_a_second_run_out_until_it_is_released_or_runs_out(store):
    from mlconnector_pipelines.audit.store import LeaseHeld

    store.take_lease("flow 2026-11-23", "run-a", 60)
    store.take_lease("flow 2026-11-23", "run-a", 60)  # renewing one's own
    with pytest.raises(LeaseHeld, match="run run-a is writing flow 2026-11-23 now"):
        store.take_lease("flow 2026-11-23", "run-b", 60)
    store.take_lease("flow 2026-11-30", "run-b", 60)  # another partition is free
    store.release_lease("flow 2026-11-23", "run-a")
    store.take_lease("flow 2026-11-23", "run-b", 0.05)
    import time

    time.sleep(0.1)  # run-b was killed: its lease runs out and the next run takes it over
    store.take_lease("flow 2026-11-23", "run-c", 60)
    with pytest.raises(LeaseHeld, match="run-c"):
        store.take_lease("flow 2026-11-23", "run-b", 60)


def test_documents_of_a_run_are_what_it_planned_even_when_a_later_run_plans_the_same(store):
    first = store.save_plan(plan(), "run-a")
    store.save_plan(plan(), "run-b")  # a concurrent rerun of the same period
    assert [d.id for d in store.documents_of_run(first.flow, first.partition, "run-a")] == [first.id]
    assert [d.id for d in store.documents_of_run(first.flow, first.partition, "run-b")] == [first.id]
    assert store.documents_of_run(first.flow, first.partition, "run-c") == []


def test_a_planned_line_is_stored_as_the_store_stores_everything_else(store):
    """Lines go in by a faster path on SQLite; what lands must be what SQLAlchemy itself would write:
    the same text form of a moment as the document's (SQL compares and sorts them as text), read back
    as the same moment."""
    states, audit_documents = metadata.tables["audit_line_states"], metadata.tables["audit_documents"]
    record = store.save_plan(plan(), "run-1")
    with store.engine.connect() as c:
        raw = c.execute(
            sa.text(
                "SELECT s.updated_at, d.created_at FROM audit_line_states s "
                "JOIN audit_documents d ON d.id = s.document_id"
            )
        ).all()
        read = c.execute(
            sa.select(states.c.updated_at, audit_documents.c.created_at).join(
                audit_documents, audit_documents.c.id == states.c.document_id
            )
        ).all()
    assert raw and all(str(line) == str(document) for line, document in raw)
    assert read and all(line == document for line, document in read)
    assert [line.debit for line in store.plan(record).lines][0] == HARD


def test_a_store_of_the_previous_schema_keeps_every_line_and_its_state_when_migrated(store):
    """0003 moved line states into a table of their own: a store written by 0002 loses nothing on upgrade."""
    from alembic import command

    from mlconnector_pipelines.audit import store as store_module
    from mlconnector_pipelines.audit.store import migration_config

    with store.engine.begin() as c:  # back to an empty 0002 store, as a deployment before 0003 has it
        metadata.drop_all(c)
        c.execute(sa.text("DROP TABLE mlconnector_audit_version"))
        config = migration_config()
        config.attributes["connection"] = c
        command.upgrade(config, "0002")
        c.execute(
            sa.text(
                "INSERT INTO audit_documents (id, flow, partition, document_key, system, company, header, digest, "
                "state, attempts, created_at, updated_at) VALUES (7, 'f', 'p', 'k', 'Acumatica', 'HQ', '{}', 'd', "
                "'writing', 1, :at, :at)"
            ),
            {"at": datetime(2026, 11, 30, tzinfo=UTC)},
        )
        for number, state, target, attempts, error in ((1, "created", "1", 2, None), (2, "refused", None, 0, "closed")):
            c.execute(
                sa.text(
                    "INSERT INTO audit_lines (document_id, line_number, kind, account, dimensions, debit, credit, "
                    "currency, text, target_line, state, attempts, error, updated_at) VALUES (7, :n, 'row', '65000', "
                    "'[]', '12345678901.234567891', '0', 'USD', 't', :target, :state, :attempts, :error, :at)"
                ),
                {"n": number, "target": target, "state": state, "attempts": attempts, "error": error,
                 "at": datetime(2026, 11, 30, tzinfo=UTC)},
            )  # fmt: skip
    store_module._migrated.discard(store.url)  # as in a new process, which opens the store and migrates it
    migrated = AuditStore(store.url)
    try:
        assert migrated.schema_version() == AuditStore.newest_version()
        kept = [(r.line.number, r.line.debit, r.state, r.target_line, r.attempts, r.error)
                for r in migrated.line_records(7)]  # fmt: skip
        assert kept == [(1, HARD, "created", "1", 2, None), (2, HARD, "refused", None, 0, "closed")]
        migrated.lines_written(7, [2], "created")
        assert [r.state for r in migrated.line_records(7)] == ["created", "created"]
    finally:
        migrated.close()


def test_the_fast_insert_writes_what_sqlalchemy_writes_and_leaves_conversions_to_it(store):
    """Planned lines go in by the driver's executemany on SQLite; a table with a column SQLAlchemy converts
    (a moment) goes through SQLAlchemy, so the stored text is the same either way."""
    from mlconnector_pipelines.audit.schema import events
    from mlconnector_pipelines.audit.store import _insert_many

    record = store.save_plan(plan(), "run-1")
    at = datetime(2026, 11, 30, 8, 15, 0, 123456, tzinfo=UTC)
    with store.engine.begin() as c:
        _insert_many(c, events, [{"document_id": record.id, "at": at, "run_id": "fast", "event": "e", "detail": None}])
        c.execute(events.insert().values(document_id=record.id, at=at, run_id="sqlalchemy", event="e"))
        stored = dict(c.execute(sa.text("SELECT run_id, at FROM audit_events WHERE event = 'e'")).all())
    assert stored["fast"] == stored["sqlalchemy"]
    assert [e["at"] for e in store.history(record.id) if e["event"] == "e"] == [at, at]


def test_a_line_text_as_long_as_acumaticas_is_stored_whole(store):
    """Acumatica's line description holds 256 characters; the column held 200, which PostgreSQL enforced: the
    plan step failed in production on a template that worked on SQLite."""
    planned = plan()
    long = planned.lines[0].__class__(**{**planned.lines[0].__dict__, "text": "x" * 256})
    planned = Plan(**{**planned.__dict__, "lines": (long, planned.lines[1])})
    record = store.save_plan(planned, "run-1")
    assert store.plan(record).lines[0].text == "x" * 256


def _open_store(url: str, ready) -> str:
    ready.wait()  # every process started and imported: they open it at one instant
    AuditStore(url).close()
    return "ok"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_opening_a_new_store_together_each_find_it_migrated(backend, tmp_path):
    """Runs started together on a new deployment (a backfill) all migrated the store, and all but one failed on
    tables that existed a moment later (SQLite: `table … already exists`; PostgreSQL: a unique violation)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    sqlite = nullcontext(f"sqlite:///{tmp_path / 'audit.sqlite'}")
    with sqlite if backend == "sqlite" else postgres_database("together") as url:
        spawn = get_context("spawn")
        with spawn.Manager() as manager, ProcessPoolExecutor(max_workers=4, mp_context=spawn) as pool:
            ready = manager.Barrier(4)
            assert list(pool.map(_open_store, [url] * 4, [ready] * 4)) == ["ok"] * 4
        store = AuditStore(url)
        try:
            assert store.schema_version() == AuditStore.newest_version()
        finally:
            store.close()


def test_a_store_url_that_cannot_be_opened_names_the_setting_and_never_its_password(monkeypatch, tmp_path):
    from mlconnector_pipelines.audit.config import AuditConfig
    from mlconnector_pipelines.audit.store import open_audit_store
    from mlconnector_pipelines.config import parse_config
    from mlconnector_pipelines.core.errors import ConfigError

    cfg = AuditConfig(store_url={"env": "MLC_TEST_AUDIT_URL"})
    for url, said in (
        ("not a url", "not a database URL"),
        ("postgresql+psycopg2://u:s3cret-pw@127.0.0.1:1/audit", "could not be opened"),  # nothing listens there
        ("mysql+mysqldb://u:s3cret-pw@127.0.0.1/audit", "no driver for mysql+mysqldb"),
    ):
        monkeypatch.setenv("MLC_TEST_AUDIT_URL", url)
        with pytest.raises(ConfigError, match="audit.store_url") as error:
            open_audit_store(cfg, tmp_path)
        assert said in str(error.value) and "s3cret-pw" not in str(error.value)
    with pytest.raises(ConfigError, match="audit.store_url: .*give {env: VARIABLE}") as error:
        parse_config({"profile": "sandbox", "data_dir": str(tmp_path),
                      "audit": {"store_url": "postgresql://u:s3cret-pw@db/audit"}})  # fmt: skip
    assert "s3cret-pw" not in str(error.value)


def test_a_postgresql_url_without_a_driver_opens_with_psycopg2(monkeypatch):
    """SQLAlchemy's default driver for `postgresql://` is psycopg 3, which the product does not install."""
    from mlconnector_pipelines.audit.config import AuditConfig
    from mlconnector_pipelines.audit.store import open_audit_store

    with postgres_database("plain") as url:
        monkeypatch.setenv("MLC_TEST_AUDIT_URL", url.replace("postgresql+psycopg2://", "postgresql://"))
        store = open_audit_store(AuditConfig(store_url={"env": "MLC_TEST_AUDIT_URL"}), Path("/nonexistent"))
        try:
            assert store.schema_version() == AuditStore.newest_version()
        finally:
            store.close()
