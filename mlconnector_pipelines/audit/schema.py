"""The audit store's tables. Changing them means a new migration under migrations/versions/.

Amounts are stored as their decimal text: SQLite has no exact decimal type, and an audit trail
that rounds what it records is no trail.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# One planned document (a journal, a batch, a record) per flow, partition and natural key.
documents = sa.Table(
    "audit_documents",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow", sa.String(200), nullable=False),  # the asset, e.g. finance_operations/fee_allocation_journal
    sa.Column("partition", sa.String(100), nullable=False),  # "" when unpartitioned
    sa.Column("document_key", sa.String(200), nullable=False),  # the natural key written into the target
    sa.Column("system", sa.String(100), nullable=False),
    sa.Column("company", sa.String(100), nullable=False),  # legal entity / company / branch written to
    sa.Column("header", sa.Text, nullable=False),  # JSON: what the document's header carries (name, date, …)
    sa.Column("digest", sa.String(64), nullable=False),  # of the planned lines
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("document_number", sa.String(100)),  # the number the target assigned
    sa.Column("adjusts", sa.Integer, sa.ForeignKey("audit_documents.id")),  # a difference document's original
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", sa.Text),
    sa.Column("first_run_id", sa.String(64)),
    sa.Column("last_run_id", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("flow", "partition", "document_key", name="uq_audit_documents_key"),
)

# One row per planned line, written once: what it is and where it came from.
lines = sa.Table(
    "audit_lines",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("document_id", sa.Integer, sa.ForeignKey("audit_documents.id", ondelete="CASCADE"), nullable=False),
    sa.Column("line_number", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),  # row | offset | rounding | adjustment
    sa.Column("account", sa.String(100), nullable=False),
    sa.Column("dimensions", sa.Text, nullable=False),  # JSON [[name, value], ...] in the target's order
    sa.Column("debit", sa.String(60), nullable=False),
    sa.Column("credit", sa.String(60), nullable=False),
    sa.Column("currency", sa.String(10), nullable=False),
    sa.Column("text", sa.Text, nullable=False),  # as long as the target's line text (Acumatica: 256)
    sa.Column("source_query", sa.String(200)),  # the Looker asset the row came from
    sa.Column("source_origin", sa.String(200)),  # "looker api" or "delivery <id>"
    sa.Column("source_run_id", sa.String(64)),  # the run that materialized the Looker rows
    sa.Column("source_window_start", sa.String(40)),
    sa.Column("source_row_number", sa.Integer),
    sa.Column("source_row_digest", sa.String(64)),
    sa.Column("source_values", sa.Text),  # JSON of the row's Looker values, amounts as exact text
    sa.UniqueConstraint("document_id", "line_number", name="uq_audit_lines_number"),
)

# How far each planned line got, apart from the line itself: a document's lines change state together
# (validated, created, verified), and rewriting these narrow rows costs a fifth of rewriting whole lines.
line_states = sa.Table(
    "audit_line_states",
    metadata,
    sa.Column("document_id", sa.Integer, sa.ForeignKey("audit_documents.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("line_number", sa.Integer, primary_key=True),
    sa.Column("target_line", sa.String(100)),  # the line's reference in the target (its line number)
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# What happened, when, in which run: the history a person reads when a document went wrong.
events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("document_id", sa.Integer, sa.ForeignKey("audit_documents.id", ondelete="CASCADE"), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("detail", sa.Text),
)
sa.Index("ix_audit_documents_number", documents.c.system, documents.c.document_number)
sa.Index("ix_audit_events_run", events.c.run_id)

# Who is writing a flow's partition now: a run holds the lease while it writes and renews it as it goes;
# a crashed run's lease runs out and the next run takes it over.
leases = sa.Table(
    "audit_leases",
    metadata,
    sa.Column("name", sa.String(400), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)
