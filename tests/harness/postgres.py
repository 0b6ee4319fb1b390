"""Fresh PostgreSQL databases, one per test or deployment, on the test server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg

from harness.env import postgres_url
from harness.interrupts import cleanup_on_signal


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty PostgreSQL database (its URL); dropped afterwards."""
    admin_url = postgres_url()
    name = f"tryon_{uuid.uuid4().hex[:12]}"

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with cleanup_on_signal(f"database {name}", drop):
            yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        drop()
