"""Line states apart from the lines: marking a document's lines validated, created or verified rewrote
every whole line (its source values too); now it rewrites narrow rows.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

STATE_COLUMNS = ("target_line", "state", "attempts", "error", "updated_at")


def upgrade() -> None:
    op.create_table(
        "audit_line_states",
        sa.Column("document_id", sa.Integer, sa.ForeignKey("audit_documents.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("line_number", sa.Integer, primary_key=True),
        sa.Column("target_line", sa.String(100)),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    columns = ", ".join(("document_id", "line_number", *STATE_COLUMNS))
    op.execute(f"INSERT INTO audit_line_states ({columns}) SELECT {columns} FROM audit_lines")
    # No query looked lines up by their target reference: every one goes by document and line number.
    op.drop_index("ix_audit_lines_target", table_name="audit_lines")
    with op.batch_alter_table("audit_lines") as batch:
        for column in STATE_COLUMNS:
            batch.drop_column(column)
