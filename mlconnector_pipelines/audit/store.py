"""The audit store: every planned document and line, its state, attempts and evidence.

SQL through SQLAlchemy: a SQLite file under the data folder by default, `audit.store_url` for
PostgreSQL in deployments (several processes and machines share it). The schema is versioned and
migrated with Alembic when a store is opened.

States of a document: planned → validated → writing → verified, or refused (validation failed,
nothing written), unknown (a write whose outcome could not be resolved), failed (an error after
writing began). Lines: planned → validated → created → verified, or refused / failed. A stored
document is also the plan itself: replay rebuilds the plan from these rows, so it needs neither
the source system nor the warehouse to finish what a crashed run began.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from filelock import FileLock

from ..core.errors import ConfigError, ConnectorError
from ..core.posting import Plan, PlannedLine, SourceRow, canonical_json, json_digest
from .schema import documents, events, leases, line_states, lines

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "mlconnector_audit_version"
FINISHED = ("verified", "superseded")  # superseded: a set of records a later set replaced before it finished


def writing_lease(plan: Plan) -> str:
    """The lease a run holds while it writes a flow's partition into the target (one run at a time)."""
    return f"{plan.flow} {plan.partition}"


# Steps a flow must still take after its document is verified, each (opening events, closing events): a
# verified document whose newest event of one step is an opening one is unfinished, for replay, until a
# closing one follows it. Each step is judged on its own events: a posting done (`finished`) after the
# write-back was opened does not close the write-back.
FOLLOW_UPS = (
    (("write_back_pending",), ("written_back", "write_back_refused")),  # numbers written back to the source
    (("post_confirmed",), ("finished",)),  # a draft a person confirmed, posted
)
_migrated: set[str] = set()
_migrate_lock = threading.Lock()
_MIGRATION_LOCK_KEY = 0x6D6C6361  # "mlca": the advisory lock PostgreSQL stores hold while they migrate


@dataclass(frozen=True)
class DocumentRecord:
    id: int
    flow: str
    partition: str
    document_key: str
    system: str
    company: str
    header: dict[str, Any]
    digest: str
    state: str
    document_number: str | None
    adjusts: int | None
    attempts: int
    error: str | None
    first_run_id: str | None
    last_run_id: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class LineRecord:
    document_id: int
    line: PlannedLine
    target_line: str | None
    state: str
    attempts: int
    error: str | None


def _insert_many(c: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Rows of the same keys into `table`, on SQLite straight through the driver's executemany.

    SQLAlchemy prepares each row's parameters in Python (~10 µs a row), which made recording a 10,000-line
    plan take as long as validating it. The driver's path is only taken when no column's value needs
    SQLAlchemy's conversion (a bind processor, e.g. DateTime's text form); other rows, and other
    databases, keep SQLAlchemy's own path ("insertmanyvalues" is already their fast path).
    """
    if not rows:
        return
    names = list(rows[0])
    converted = any(table.c[name].type.dialect_impl(c.dialect).bind_processor(c.dialect) for name in names)
    if c.dialect.name != "sqlite" or converted:
        c.execute(table.insert(), rows)
        return
    statement = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
    c.exec_driver_sql(statement, [tuple(row.values()) for row in rows])


def migration_config() -> AlembicConfig:
    """Alembic's configuration for the audit store's migrations (the connection goes in its attributes)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _now() -> datetime:
    return datetime.now(UTC)


def _utc(moment: datetime) -> datetime:
    """SQLite hands timestamps back without their zone; every one stored here is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _json(value: Any) -> str:
    return canonical_json(value).decode()


class AuditStore:
    def __init__(self, url: str):
        self.url = url
        connect_args = {"timeout": 60} if url.startswith("sqlite") else {}
        self.engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        if url.startswith("sqlite"):
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self._migrate()

    @classmethod
    def sqlite(cls, path: Path) -> AuditStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{path}")

    def close(self) -> None:
        self.engine.dispose()

    # -- schema ------------------------------------------------------------------------------

    def _migrate(self) -> None:
        """Bring the schema to the newest version (once per process and database), one process at a time: runs
        started together on a new store (a backfill, several sensors' runs) all ran the migrations, and all but
        one failed on tables that existed a moment later. The others wait, then find it done."""
        with _migrate_lock:
            if self.url in _migrated:
                return
            config = migration_config()
            with self._across_processes(), self.engine.begin() as connection:
                if self.engine.dialect.name == "postgresql":  # held until this transaction ends
                    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
            _migrated.add(self.url)

    @contextmanager
    def _across_processes(self) -> Iterator[None]:
        """A SQLite file's migration lock (PostgreSQL's is an advisory lock in the migrating transaction)."""
        database = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        if not database or database == ":memory:":
            yield
            return
        with FileLock(f"{database}.migrate.lock", timeout=300):
            yield

    def schema_version(self) -> str | None:
        with self.engine.connect() as connection:
            return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()

    @staticmethod
    def newest_version() -> str:
        return ScriptDirectory.from_config(migration_config()).get_current_head()

    # -- writing the record --------------------------------------------------------------------

    def save_plan(self, plan: Plan, run_id: str, adjusts: int | None = None) -> DocumentRecord:
        """Record a plan (a new document, or a new plan for one not yet written); return its record.

        A document already verified keeps its lines: a different plan for it is the engine's to judge.
        """
        try:
            return self._save_plan(plan, run_id, adjusts)
        except sa.exc.IntegrityError:  # another run recorded the same document a moment ago: plan it again
            return self._save_plan(plan, run_id, adjusts)

    def _save_plan(self, plan: Plan, run_id: str, adjusts: int | None) -> DocumentRecord:
        now = _now()
        with self.engine.begin() as c:
            row = c.execute(
                sa.select(documents).where(
                    documents.c.flow == plan.flow,
                    documents.c.partition == plan.partition,
                    documents.c.document_key == plan.document_key,
                )
            ).first()
            if row is None:
                document_id = c.execute(
                    documents.insert().values(
                        flow=plan.flow,
                        partition=plan.partition,
                        document_key=plan.document_key,
                        system=plan.system,
                        company=plan.company,
                        header=_json(plan.header),
                        digest=plan.digest,
                        state="planned",
                        adjusts=adjusts,
                        first_run_id=run_id,
                        last_run_id=run_id,
                        created_at=now,
                        updated_at=now,
                    )
                ).inserted_primary_key[0]
                self._insert_lines(c, document_id, plan.lines, now)
                self._event(c, document_id, run_id, "planned", f"{len(plan.lines)} lines, digest {plan.digest[:12]}")
            else:
                document_id = row.id
                self._event(c, document_id, run_id, "planned_again", f"digest {plan.digest[:12]}")
                replaces = row.digest != plan.digest and row.state not in FINISHED and row.document_number is None
                if replaces and self._leased_to_another(c, writing_lease(plan), run_id, now):
                    # Another run is writing the plan recorded before: replaced under it, that run marked this
                    # plan's lines verified while the target held its own. Refused, said so, nothing recorded:
                    # run again once it has finished, and this plan is judged against what it wrote.
                    raise PlanBeingWritten(
                        f"{plan.system}: {plan.document_key}: run {row.last_run_id} is writing the plan recorded "
                        f"before (digest {row.digest[:12]}); these figures (digest {plan.digest[:12]}) were not "
                        "recorded. Run this again once that run has finished: they are then compared with what it "
                        "wrote"
                    )
                if replaces:
                    self._replace_lines(c, document_id, plan, now)
                    self._event(c, document_id, run_id, "replanned", f"digest {row.digest[:12]} → {plan.digest[:12]}")
                c.execute(
                    documents.update().where(documents.c.id == document_id).values(last_run_id=run_id, updated_at=now)
                )
        return self.document(document_id)

    def replan_gone(self, document_id: int, plan: Plan, run_id: str, gone: str) -> DocumentRecord:
        """Record a new plan for a document whose written one the target no longer holds (a person deleted it, as a
        refusal advised, to have it written again): its lines were kept beside the new document's verification."""
        now = _now()
        with self.engine.begin() as c:
            old = c.execute(sa.select(documents.c.digest).where(documents.c.id == document_id)).scalar_one()
            self._replace_lines(c, document_id, plan, now)
            c.execute(documents.update().where(documents.c.id == document_id).values(document_number=None))
            self._event(c, document_id, run_id, "replanned", f"{gone}; digest {old[:12]} → {plan.digest[:12]}")
        return self.document(document_id)

    def _replace_lines(self, c, document_id: int, plan: Plan, now: datetime) -> None:
        c.execute(line_states.delete().where(line_states.c.document_id == document_id))
        c.execute(lines.delete().where(lines.c.document_id == document_id))
        self._insert_lines(c, document_id, plan.lines, now)
        c.execute(
            documents.update()
            .where(documents.c.id == document_id)
            .values(header=_json(plan.header), digest=plan.digest, state="planned", error=None)
        )

    def _insert_lines(self, c, document_id: int, planned: Sequence[PlannedLine], now: datetime) -> None:
        rows = []
        dimensions: dict[tuple, str] = {}  # a document repeats a few combinations
        for line in planned:
            source = line.source
            if line.dimensions not in dimensions:
                dimensions[line.dimensions] = _json([list(d) for d in line.dimensions])
            values = canonical_json(source.values) if source else None  # stored; the row's digest is of these bytes
            rows.append(
                {
                    "document_id": document_id,
                    "line_number": line.number,
                    "kind": line.kind,
                    "account": line.account,
                    "dimensions": dimensions[line.dimensions],
                    "debit": format(line.debit, "f"),
                    "credit": format(line.credit, "f"),
                    "currency": line.currency,
                    "text": line.text,
                    "source_query": source.query if source else None,
                    "source_origin": source.origin if source else None,
                    "source_run_id": source.run_id if source else None,
                    "source_window_start": source.window_start if source else None,
                    "source_row_number": source.row_number if source else None,
                    "source_row_digest": json_digest(values) if values is not None else None,
                    "source_values": values.decode() if values is not None else None,
                }
            )
        _insert_many(c, lines, rows)
        c.execute(
            line_states.insert().from_select(
                ["document_id", "line_number", "state", "updated_at"],
                sa.select(
                    lines.c.document_id,
                    lines.c.line_number,
                    sa.literal("planned"),
                    sa.literal(now, sa.DateTime(timezone=True)),
                ).where(lines.c.document_id == document_id),
            )
        )

    def set_state(
        self,
        document_id: int,
        state: str,
        *,
        run_id: str | None = None,
        event: str | None = None,
        detail: str | None = None,
        error: str | None = None,
        document_number: str | None = None,
        line_state: str | None = None,
        count_attempt: bool = False,
    ) -> None:
        """Move a document (and, with `line_state`, all its lines) to a state, with an event for the history."""
        now = _now()
        values: dict[str, Any] = {"state": state, "updated_at": now, "error": error}
        if document_number is not None:
            values["document_number"] = document_number
        if count_attempt:
            values["attempts"] = documents.c.attempts + 1
        with self.engine.begin() as c:
            c.execute(documents.update().where(documents.c.id == document_id).values(**values))
            if line_state is not None:
                c.execute(
                    line_states.update()
                    .where(line_states.c.document_id == document_id)
                    .values(
                        state=line_state, updated_at=now, error=error if line_state in ("refused", "failed") else None
                    )
                )
            self._event(c, document_id, run_id, event or state, detail or error)

    def lines_written(
        self,
        document_id: int,
        numbers: Iterable[int] | None,
        state: str,
        *,
        attempt: bool = True,
        target_line: str | None = None,
    ) -> None:
        """Lines the target now holds (`created`) or has been checked to hold as planned (`verified`);
        `numbers` None: every line of the document (one statement, not one per 900 lines). `target_line`: where
        the target holds them when that is not their planned number (a record under a key the target gave it)."""
        values: dict[str, Any] = {
            "state": state,
            "updated_at": _now(),
            "error": None,
            "target_line": sa.cast(line_states.c.line_number, sa.String) if target_line is None else target_line,
        }
        if attempt:
            values["attempts"] = line_states.c.attempts + 1
        of_document = line_states.update().where(line_states.c.document_id == document_id).values(**values)
        with self.engine.begin() as c:
            if numbers is None:
                c.execute(of_document)
                return
            for chunk in _chunks(list(numbers), 900):  # SQLite's limit on bound parameters
                c.execute(of_document.where(line_states.c.line_number.in_(chunk)))

    def refuse_lines(self, document_id: int, reasons: dict[int, str]) -> None:
        now = _now()
        with self.engine.begin() as c:
            for number, reason in reasons.items():
                c.execute(
                    line_states.update()
                    .where(line_states.c.document_id == document_id, line_states.c.line_number == number)
                    .values(state="refused", error=reason, updated_at=now)
                )

    def event(self, document_id: int, run_id: str | None, event: str, detail: str | None = None) -> None:
        with self.engine.begin() as c:
            self._event(c, document_id, run_id, event, detail)

    @staticmethod
    def _event(c, document_id: int, run_id: str | None, event: str, detail: str | None) -> None:
        c.execute(events.insert().values(document_id=document_id, at=_now(), run_id=run_id, event=event, detail=detail))

    # -- reading it ----------------------------------------------------------------------------

    def document(self, document_id: int) -> DocumentRecord:
        with self.engine.connect() as c:
            row = c.execute(sa.select(documents).where(documents.c.id == document_id)).one()
        return _document(row)

    def find_document(self, flow: str, partition: str, document_key: str) -> DocumentRecord | None:
        with self.engine.connect() as c:
            row = c.execute(
                sa.select(documents).where(
                    documents.c.flow == flow,
                    documents.c.partition == partition,
                    documents.c.document_key == document_key,
                )
            ).first()
        return _document(row) if row is not None else None

    def documents_for(self, flow: str, partition: str) -> list[DocumentRecord]:
        """Every document of a flow's partition (the original and its difference documents), oldest first."""
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(documents)
                .where(documents.c.flow == flow, documents.c.partition == partition)
                .order_by(documents.c.id)
            ).all()
        return [_document(r) for r in rows]

    def documents_of_run(self, flow: str, partition: str | None, run_id: str) -> list[DocumentRecord]:
        """The documents a run planned for a flow's partition (None: any), oldest first (runs share a partition's
        documents: a rerun plans the same one again)."""
        planned_here = sa.select(events.c.document_id).where(
            events.c.run_id == run_id, events.c.event.in_(("planned", "planned_again"))
        )
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(documents)
                .where(documents.c.flow == flow, documents.c.id.in_(planned_here))
                .where(documents.c.partition == partition if partition is not None else sa.true())
                .order_by(documents.c.id)
            ).all()
        return [_document(r) for r in rows]

    def flows(self) -> list[str]:
        """Every flow the store has a document of."""
        with self.engine.connect() as c:
            return sorted(c.execute(sa.select(documents.c.flow).distinct()).scalars())

    def unfinished(self, flow: str | None = None) -> list[DocumentRecord]:
        """Documents not verified, or verified with a follow-up still open (FOLLOW_UPS): what replay
        finishes (refused ones too: their reference data may be fixed)."""
        still_open = []
        for opening, closing in FOLLOW_UPS:
            newest = (
                sa.select(events.c.document_id, sa.func.max(events.c.id).label("event_id"))
                .where(events.c.event.in_(opening + closing))
                .group_by(events.c.document_id)
                .subquery()
            )
            still_open.append(
                documents.c.id.in_(
                    sa.select(newest.c.document_id)
                    .join(events, events.c.id == newest.c.event_id)
                    .where(events.c.event.in_(opening))
                )
            )
        query = (
            sa.select(documents).where(sa.or_(documents.c.state.not_in(FINISHED), *still_open)).order_by(documents.c.id)
        )
        if flow:
            query = query.where(documents.c.flow == flow)
        with self.engine.connect() as c:
            return [_document(r) for r in c.execute(query).all()]

    def of_flow(self, flow: str, *, state: str | None = None, document_key: str | None = None) -> list[DocumentRecord]:
        """A flow's documents (in a state, with a key), oldest first."""
        query = sa.select(documents).where(documents.c.flow == flow).order_by(documents.c.id)
        if state:
            query = query.where(documents.c.state == state)
        if document_key:
            query = query.where(documents.c.document_key == document_key)
        with self.engine.connect() as c:
            return [_document(r) for r in c.execute(query).all()]

    def supersede(self, flow: str, partition: str, current: int, run_id: str) -> None:
        """Unfinished documents of a flow's partition other than `current` are superseded by it (not replayed)."""
        for record in self.documents_for(flow, partition):
            if record.id != current and record.state not in FINISHED:
                self.set_state(record.id, "superseded", run_id=run_id, detail=f"a later plan, document {current}")

    def verified_line_for(self, flow: str, partition_prefix: str, account: str) -> bool:
        """Whether a verified document of the flow, in a partition starting so, has a line for `account` (a record
        synced to that key, under any version of its source)."""
        query = (
            sa.select(lines.c.id)
            .join(documents, documents.c.id == lines.c.document_id)
            .where(
                documents.c.flow == flow,
                documents.c.partition.startswith(partition_prefix, autoescape=True),
                documents.c.state == "verified",
                lines.c.account == account,
            )
            .limit(1)
        )
        with self.engine.connect() as c:
            return c.execute(query).first() is not None

    def target_lines(self, flow: str, state: str) -> dict[str, str]:
        """Planned account (a record's key) → where the target holds it, for the flow's lines in `state`, across
        all its documents."""
        query = (
            sa.select(lines.c.account, line_states.c.target_line)
            .join(line_states, (line_states.c.document_id == lines.c.document_id)
                  & (line_states.c.line_number == lines.c.line_number))
            .join(documents, documents.c.id == lines.c.document_id)
            .where(documents.c.flow == flow, line_states.c.state == state)
            .order_by(lines.c.id)
        )  # fmt: skip
        with self.engine.connect() as c:
            return {row.account: row.target_line for row in c.execute(query).all()}

    def by_number(self, document_number: str, company: str | None = None) -> list[DocumentRecord]:
        query = sa.select(documents).where(documents.c.document_number == document_number)
        if company:
            query = query.where(sa.func.lower(documents.c.company) == company.lower())
        with self.engine.connect() as c:
            return [_document(r) for r in c.execute(query.order_by(documents.c.id)).all()]

    def line_records(self, document_id: int, numbers: Sequence[int] | None = None) -> list[LineRecord]:
        state = line_states.c
        query = (
            sa.select(lines, state.target_line, state.state, state.attempts, state.error)
            .join(line_states, (state.document_id == lines.c.document_id) & (state.line_number == lines.c.line_number))
            .where(lines.c.document_id == document_id)
            .order_by(lines.c.line_number)
        )
        if numbers is not None:
            query = query.where(lines.c.line_number.in_(list(numbers)))
        with self.engine.connect() as c:
            return [_line(r) for r in c.execute(query).all()]

    def plan(self, record: DocumentRecord) -> Plan:
        """The stored plan, as it was recorded (what replay writes)."""
        adjusts = self.document(record.adjusts).document_key if record.adjusts else None
        return Plan(
            flow=record.flow,
            partition=record.partition,
            document_key=record.document_key,
            system=record.system,
            company=record.company,
            header=record.header,
            lines=tuple(r.line for r in self.line_records(record.id)),
            adjusts=adjusts,
        )

    def history(self, document_id: int) -> list[dict]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(events).where(events.c.document_id == document_id).order_by(events.c.id)).all()
        return [{"at": _utc(r.at), "run_id": r.run_id, "event": r.event, "detail": r.detail} for r in rows]

    # -- leases ------------------------------------------------------------------------------------

    @staticmethod
    def _leased_to_another(c, name: str, owner: str, now: datetime) -> bool:
        holder = c.execute(sa.select(leases).where(leases.c.name == name)).first()
        return holder is not None and holder.owner != owner and _utc(holder.expires_at) >= now

    def take_lease(self, name: str, owner: str, seconds: float) -> None:
        """Hold `name` until `seconds` from now; raise LeaseHeld if another owner holds it unexpired."""
        now = _now()
        until = now + timedelta(seconds=seconds)
        with self.engine.begin() as c:  # renew our own, or take over one that ran out
            taken = c.execute(
                leases.update()
                .where(leases.c.name == name, sa.or_(leases.c.owner == owner, leases.c.expires_at < now))
                .values(owner=owner, expires_at=until)
            ).rowcount
        if taken:
            return
        try:  # nobody holds it: the primary key lets only one of several runs insert it
            with self.engine.begin() as c:
                c.execute(leases.insert().values(name=name, owner=owner, expires_at=until))
            return
        except sa.exc.IntegrityError:
            pass
        with self.engine.connect() as c:
            holder = c.execute(sa.select(leases).where(leases.c.name == name)).one()
        raise LeaseHeld(name, holder.owner, _utc(holder.expires_at))

    def release_lease(self, name: str, owner: str) -> None:
        with self.engine.begin() as c:
            c.execute(leases.delete().where(leases.c.name == name, leases.c.owner == owner))

    @contextmanager
    def connection(self) -> Iterator[sa.Connection]:
        with self.engine.connect() as c:
            yield c


class PlanBeingWritten(ConnectorError):
    """New figures for a document another run is writing (it holds the partition's lease): not recorded."""


class LeaseHeld(Exception):
    """Another run is writing this flow's partition now."""

    def __init__(self, name: str, owner: str, expires_at: datetime):
        self.name, self.owner, self.expires_at = name, owner, expires_at
        super().__init__(
            f"run {owner} is writing {name} now (its lease runs to {expires_at:%Y-%m-%d %H:%M:%S} UTC): it finishes "
            "the document; run again after it ends, and this run finds it written"
        )


def _document(row) -> DocumentRecord:
    return DocumentRecord(
        id=row.id,
        flow=row.flow,
        partition=row.partition,
        document_key=row.document_key,
        system=row.system,
        company=row.company,
        header=orjson.loads(row.header),
        digest=row.digest,
        state=row.state,
        document_number=row.document_number,
        adjusts=row.adjusts,
        attempts=row.attempts,
        error=row.error,
        first_run_id=row.first_run_id,
        last_run_id=row.last_run_id,
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
    )


def _line(row) -> LineRecord:
    source = None
    if row.source_query is not None:
        source = SourceRow(
            query=row.source_query,
            origin=row.source_origin or "",
            run_id=row.source_run_id or "",
            window_start=row.source_window_start,
            row_number=row.source_row_number,
            values=_exact_values(row.source_values),
        )
    line = PlannedLine(
        number=row.line_number,
        account=row.account,
        dimensions=tuple((name, value) for name, value in orjson.loads(row.dimensions)),
        debit=Decimal(row.debit),
        credit=Decimal(row.credit),
        currency=row.currency,
        text=row.text,
        kind=row.kind,
        source=source,
    )
    return LineRecord(row.document_id, line, row.target_line, row.state, row.attempts, row.error)


def _exact_values(text: str | None) -> dict[str, Any]:
    """Source values as recorded: amounts were written as exact text and stay text (never floats)."""
    return orjson.loads(text) if text else {}


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _sqlite_pragmas(connection, record) -> None:
    # WAL lets the UI and trace read while a run writes; foreign keys are off by default in SQLite.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def open_audit_store(cfg, data_dir: Path) -> AuditStore:
    """The store `audit:` configures (a SQLite file under data_dir by default)."""
    if cfg.store_url is None:
        return AuditStore.sqlite(Path(data_dir) / "audit.sqlite")
    url = cfg.store_url.resolve(data_dir, "audit.store_url")
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(
            "audit.store_url is not a database URL SQLAlchemy reads (e.g. postgresql+psycopg2://user:password@host"
            ":5432/audit)"
        ) from None
    if parsed.drivername == "postgresql":  # SQLAlchemy's default PostgreSQL driver is psycopg 3, not installed here
        url = parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    try:
        return AuditStore(url)
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        raise ConfigError(
            f"audit.store_url: no driver for {parsed.drivername} ({exc}); use postgresql+psycopg2://…"
        ) from None
    except sa.exc.OperationalError as exc:  # unreachable, refused, no such database: said without the URL's password
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise ConfigError(
            f"audit.store_url: the audit database at {parsed.host or parsed.database}:{parsed.port or ''} could not "
            f"be opened: {reason}"
        ) from None
