"""Alembic's entry point for the audit store: migrations run on the connection the store hands over."""

from alembic import context

from mlconnector_pipelines.audit.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="mlconnector_audit_version",
    render_as_batch=True,  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
