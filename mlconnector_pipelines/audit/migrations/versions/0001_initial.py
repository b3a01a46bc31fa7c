"""The audit store's first schema: documents, lines, events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "audit_documents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("flow", sa.String(200), nullable=False),
        sa.Column("partition", sa.String(100), nullable=False),
        sa.Column("document_key", sa.String(200), nullable=False),
        sa.Column("system", sa.String(100), nullable=False),
        sa.Column("company", sa.String(100), nullable=False),
        sa.Column("header", sa.Text, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("document_number", sa.String(100)),
        sa.Column("adjusts", sa.Integer, sa.ForeignKey("audit_documents.id")),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("first_run_id", sa.String(64)),
        sa.Column("last_run_id", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("flow", "partition", "document_key", name="uq_audit_documents_key"),
    )
    op.create_index("ix_audit_documents_number", "audit_documents", ["system", "document_number"])
    op.create_table(
        "audit_lines",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("document_id", sa.Integer, sa.ForeignKey("audit_documents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("line_number", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("account", sa.String(100), nullable=False),
        sa.Column("dimensions", sa.Text, nullable=False),
        sa.Column("debit", sa.String(60), nullable=False),
        sa.Column("credit", sa.String(60), nullable=False),
        sa.Column("currency", sa.String(10), nullable=False),
        sa.Column("text", sa.String(200), nullable=False),
        sa.Column("source_query", sa.String(200)),
        sa.Column("source_origin", sa.String(200)),
        sa.Column("source_run_id", sa.String(64)),
        sa.Column("source_window_start", sa.String(40)),
        sa.Column("source_row_number", sa.Integer),
        sa.Column("source_row_digest", sa.String(64)),
        sa.Column("source_values", sa.Text),
        sa.Column("target_line", sa.String(100)),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("document_id", "line_number", name="uq_audit_lines_number"),
    )
    op.create_index("ix_audit_lines_target", "audit_lines", ["document_id", "target_line"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("document_id", sa.Integer, sa.ForeignKey("audit_documents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("event", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text),
    )
