"""Alembic's entry point: runs migrations on the connection bridge.db.migrate hands it (never a URL of its own)."""

from __future__ import annotations

from alembic import context

from bridge.db.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
