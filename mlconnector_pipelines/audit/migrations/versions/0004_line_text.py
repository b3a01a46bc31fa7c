"""A line's text unbounded: Acumatica's line description holds 256 characters, and PostgreSQL refused a plan
whose text passed the 200 the column held (SQLite never checked).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("audit_lines") as batch:
        batch.alter_column("text", type_=sa.Text, existing_type=sa.String(200), existing_nullable=False)
