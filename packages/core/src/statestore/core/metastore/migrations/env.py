"""Alembic environment of the metastore: runs on the connection that ``metastore.migrate`` hands over."""

from __future__ import annotations

from alembic import context

from statestore.core.metastore.schema import ALEMBIC_VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=ALEMBIC_VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
