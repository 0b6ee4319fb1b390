"""Alembic's environment for the job store.

It runs only inside an Alembic command started by `kolors_tryon.store.migrate`, which
hands over an open connection (already holding the migration lock) in
`config.attributes["connection"]`; imported on its own (as the layer tests do) it does
nothing.
"""

from __future__ import annotations

from alembic import context

from kolors_tryon.store.migrate import migration_options


def run_migrations() -> None:
    """Run the pending revisions on the connection the caller opened and locked."""
    context.configure(**migration_options(context.config.attributes.get("connection")))
    with context.begin_transaction():
        context.run_migrations()


if getattr(context, "config", None) is not None:
    run_migrations()
