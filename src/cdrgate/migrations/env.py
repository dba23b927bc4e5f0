"""Alembic environment: cdrgate always passes a live connection (see storage/schema.py)."""

from __future__ import annotations

from alembic import context

from cdrgate.storage.tables import with_postgresql_options

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=with_postgresql_options(),
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
