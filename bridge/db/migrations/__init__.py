"""Alembic migrations of the call log (run by bridge.db.migrate; `agni-bridge db upgrade` by hand)."""
