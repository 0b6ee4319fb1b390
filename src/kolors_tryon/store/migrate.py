"""Schema migrations of the job store: Alembic, run from code, with a lock.

Why it looks like this:
- The revisions ship inside the package (`store/migrations/`), so `pip install` carries
  them and no `alembic.ini` is needed: the Config is built here, pointing into the
  package, and the caller's connection is handed to `env.py`.
- Alembic takes no lock of its own, and many workers (or tests) may start at once on the
  embedded default, which upgrades itself. The upgrade therefore runs inside one
  transaction that first takes a lock: a transaction-scoped advisory lock on PostgreSQL
  (released by the commit), an exclusive file lock beside the file on SQLite. The second
  process then finds the schema at head and does nothing.
- Stores created before migrations existed (by `create_all`) carry no version table: they
  are recognised by their columns and stamped with the revision they match, then upgraded.
- Only the service's own tables (`tryon_*`) are compared and migrated: the same database
  may hold Celery's result tables, which are not ours to drop.
"""

from __future__ import annotations

import fcntl
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, inspect, text

from kolors_tryon.errors import TryonError
from kolors_tryon.store.tables import Base

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Our own name, so that a database shared with another Alembic project never mixes them up.
VERSION_TABLE = "tryon_schema_version"
TABLE_PREFIX = "tryon_"
# Key of the PostgreSQL advisory lock held while migrating (an arbitrary, fixed 64-bit id:
# the same in every process of every version, or the lock would not exclude anyone).
ADVISORY_LOCK_KEY = 7_311_120_250_101
# The first revision, and a table (and column) that only later revisions have: how a
# store made by `create_all` before migrations existed is recognised, oldest first
# (see `_adopt_unversioned`).
FIRST_REVISION = "0001"
ADOPTION_MARKERS: tuple[tuple[str, str, str | None], ...] = (
    ("0002", "tryon_jobs", "intent_at"),
    ("0003", "tryon_secrets", None),
    ("0004", "tryon_result_copies", None),
    ("0005", "tryon_webhook_deliveries", None),
    ("0006", "tryon_jobs", "overdue_at"),
    ("0007", "tryon_jobs", "review_state"),
    ("0008", "tryon_jobs", "producer"),
    ("0009", "tryon_jobs", "deadline_at"),
    ("0010", "tryon_pool_accounts", None),
)
# Indexes that a migration creates on PostgreSQL only, as expressions tables.py cannot
# declare for both dialects: left out of the comparison of the schema with tables.py.
UPGRADE_HINT = "run `tryon db upgrade` (the compose file's `migrate` service does)"


class SchemaOutdated(TryonError, RuntimeError):
    """The store's schema is not the one this code needs; the message says what to run."""


@dataclass(frozen=True)
class SchemaStatus:
    """Where a store's schema stands: `current` is None for a store never migrated."""

    current: str | None
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def known(self) -> bool:
        """The current revision is one this code ships (not one newer code wrote)."""
        return self.current is None or self.current in _revisions()

    def describe(self) -> str:
        if self.current is None:
            return f"the job store has no schema yet; the code needs {self.head}"
        current = self.current
        if self.up_to_date:
            return f"job store schema at {current} (head)"
        if not self.known:
            return (
                f"job store schema at {current}, which this code does not know (newer code "
                f"migrated it?); this code needs {self.head}"
            )
        return f"job store schema at {current}, the code needs {self.head}"


def alembic_config(connection: Connection | None = None, location: Path = MIGRATIONS_DIR) -> Config:
    """An Alembic Config pointing into the package, carrying `connection` to env.py."""
    config = Config()
    config.set_main_option("script_location", str(location))
    config.set_main_option("version_table", VERSION_TABLE)
    # r0003_add_webhooks.py: file names that import and type-check like any module.
    config.set_main_option("file_template", "r%%(rev)s_%%(slug)s")
    config.attributes["connection"] = connection
    ruff = _ruff()
    if ruff is not None:
        # Generated revisions come out sorted and formatted like the rest of the code.
        config.set_section_option("post_write_hooks", "hooks", "ruff_fix, ruff_format")
        for name, options in (("ruff_fix", "check --fix"), ("ruff_format", "format")):
            config.set_section_option("post_write_hooks", f"{name}.type", "exec")
            config.set_section_option("post_write_hooks", f"{name}.executable", ruff)
            config.set_section_option(
                "post_write_hooks", f"{name}.options", f"{options} REVISION_SCRIPT_FILENAME"
            )
    return config


def _ruff() -> str | None:
    beside = Path(sys.executable).with_name("ruff")
    return str(beside) if beside.exists() else shutil.which("ruff")


@cache
def _script() -> ScriptDirectory:
    """The shipped revisions, read once per process (every store opening asks)."""
    return ScriptDirectory.from_config(alembic_config())


@cache
def _revisions() -> frozenset[str]:
    return frozenset(rev.revision for rev in _script().walk_revisions())


def head_revision() -> str:
    """The newest revision this code ships (one head: revisions form a line)."""
    head = _script().get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


# Indexes on an expression, made by a migration alone on PostgreSQL: autogenerate can
# neither build nor compare them, so the comparison leaves them out by name.
MIGRATION_ONLY_INDEXES: frozenset[str] = frozenset(
    {
        "ix_tryon_jobs_metadata_sku",  # 0007: the console's sku filter
        "ix_tryon_jobs_metadata",  # 0009: GIN over the metadata, for listings
    }
)


def include_name(name: str | None, type_: str, _parent_names: Any) -> bool:
    """Compare and migrate the service's tables only, never Celery's or anyone else's,
    and not the indexes a migration makes on one dialect only (`MIGRATION_ONLY_INDEXES`)."""
    if type_ == "table":
        return name is not None and (name in Base.metadata.tables or name.startswith(TABLE_PREFIX))
    if type_ == "index":
        return name not in MIGRATION_ONLY_INDEXES
    return True


def migration_options(connection: Connection | None) -> dict[str, Any]:
    """The arguments of `context.configure` in env.py (kept here, where they are tested)."""
    if connection is None:
        raise RuntimeError(
            "the job store's migrations run through kolors_tryon.store.migrate "
            "(`tryon db upgrade`), which supplies the connection"
        )
    return {
        "connection": connection,
        "target_metadata": Base.metadata,
        "version_table": VERSION_TABLE,
        "include_name": include_name,
        # SQLite cannot ALTER most things: autogenerate writes batch operations, which
        # copy the table there and are plain ALTERs on PostgreSQL.
        "render_as_batch": True,
        "compare_type": True,
    }


def _current(connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def schema_status(engine: Engine) -> SchemaStatus:
    """The store's revision and the code's head (one short read)."""
    with engine.connect() as connection:
        return SchemaStatus(_current(connection), head_revision())


def require_current_schema(engine: Engine) -> SchemaStatus:
    """Refuse (SchemaOutdated) a store whose schema is not exactly this code's head."""
    status = schema_status(engine)
    if not status.up_to_date:
        raise SchemaOutdated(f"{status.describe()}: {UPGRADE_HINT}")
    return status


# Alembic's `context` and `op` are proxies of one process-wide object: two threads
# migrating two databases at once would run each other's operations. The database lock
# below keeps processes apart; this keeps the threads of one process apart.
_IN_THIS_PROCESS = threading.Lock()


@contextmanager
def _locked_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction that only one process at a time holds, around a migration."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )
            yield connection
        return
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        with engine.begin() as connection:
            yield connection
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as lock_file, engine.connect() as connection:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file closes
        # A batch operation copies a table and drops the original; with foreign keys on,
        # dropping tryon_jobs would cascade to tryon_payloads. The pragma only takes
        # effect outside a transaction, hence before `begin`.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.commit()
        try:
            with connection.begin():
                yield connection
        finally:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()


def _adopt_unversioned(connection: Connection, config: Config) -> None:
    """Stamp a store made by `create_all` before migrations with the revision it matches."""
    if _current(connection) is not None:
        return
    inspector = inspect(connection)
    if not inspector.has_table("tryon_jobs"):
        return  # an empty database: the revisions create everything
    stamp = FIRST_REVISION
    for revision, table, column in ADOPTION_MARKERS:
        if not inspector.has_table(table):
            break
        if column is not None and column not in {c["name"] for c in inspector.get_columns(table)}:
            break
        stamp = revision
    command.stamp(config, stamp)


def upgrade_schema(engine: Engine, revision: str = "head") -> tuple[SchemaStatus, SchemaStatus]:
    """Create or migrate the store to `revision`; safe from many processes at once.

    Returns:
        The status before and after.
    """
    with _IN_THIS_PROCESS, _locked_transaction(engine) as connection:
        before = SchemaStatus(_current(connection), head_revision())
        if before.up_to_date and revision == "head":
            return before, before
        if not before.known:
            raise SchemaOutdated(f"{before.describe()}: upgrade the code, not the store")
        config = alembic_config(connection)
        _adopt_unversioned(connection, config)
        command.upgrade(config, revision)
        after = SchemaStatus(_current(connection), head_revision())
    return before, after


def downgrade_schema(engine: Engine, revision: str) -> SchemaStatus:
    """Take the store back to `revision` (development: later columns and data are lost)."""
    with _IN_THIS_PROCESS, _locked_transaction(engine) as connection:
        command.downgrade(alembic_config(connection), revision)
        return SchemaStatus(_current(connection), head_revision())


def schema_differences(engine: Engine) -> list[Any]:
    """What autogenerate finds between the store and `Base.metadata` ([] when they agree)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                key: value
                for key, value in migration_options(connection).items()
                if key not in ("connection", "target_metadata")
            },
        )
        return list(compare_metadata(context, Base.metadata))


def new_revision(
    message: str,
    *,
    autogenerate: bool = True,
    database_url: str | None = None,
    location: Path = MIGRATIONS_DIR,
) -> Path:
    """Write the next revision file into the package (a source checkout) and return it.

    With `autogenerate`, its operations are what `Base.metadata` has and the head of the
    migrations lacks, found against `database_url` or, by default, a scratch SQLite file
    upgraded to head (so no server is needed to write a migration). `location` is
    another copy of the migrations directory (tests write there, not into the package).
    """
    head = head_revision()
    rev_id = f"{int(head) + 1:04d}" if head.isdigit() else None
    with tempfile.TemporaryDirectory() as scratch:
        url = database_url or f"sqlite:///{Path(scratch) / 'head.sqlite'}"
        engine = create_engine(url)
        try:
            if database_url is None:
                upgrade_schema(engine)
            with engine.begin() as connection:
                script = command.revision(
                    alembic_config(connection, location),
                    message=message,
                    autogenerate=autogenerate,
                    rev_id=rev_id,
                )
        finally:
            engine.dispose()
    if script is None or isinstance(script, list):
        raise RuntimeError("alembic wrote no single revision")
    _script.cache_clear()
    _revisions.cache_clear()
    return Path(script.path)
