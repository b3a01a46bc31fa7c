"""Leases: one run at a time writes a flow's partition (a sensor's run and a person's must not both create).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "audit_leases",
        sa.Column("name", sa.String(400), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_audit_events_run", "audit_events", ["run_id"])
