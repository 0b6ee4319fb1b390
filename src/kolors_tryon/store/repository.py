"""The job store: a thin facade that owns the database and exposes the aggregates.

Each aggregate is its own module on one `Database` (engine, transactions, the database's
clock), and the WHERE clauses they share are named in `queries.py`:

    store.intake      accept valid jobs (one or many), reject invalid ones   intake.py
    store.jobs        whole-job reads: lists, pages, counts, slots held       jobs.py
    store.claims      account slots for queued jobs, and their leases         claims.py
    store.submits     a claim owner's runs: entry, intent, the create's end   submits.py
    store.tracking    polls, the overdue flag, every move of a job's state    tracking.py
    store.account     the account's pause and probe, the housekeeping turns   account.py
    store.pool        a pool of accounts: slots, pauses and usage per account  accounts.py
    store.secrets     generated signing secrets                               secrets.py
    store.producers   producers' daily budgets reached, for their events     producers.py
    store.batches     named sets of a producer's jobs, counts, completion     batches.py
    store.copies      copies of result images still due                       copies.py
    store.retention   purging ended jobs, forgetting a person's photos        retention.py
    store.webhooks    webhook deliveries and their attempts                   webhooks.py
    store.lifecycle   cancels (by request, by deadline), links of retries     lifecycle.py
    store.listing     filtered pages of jobs, newest first, keyset cursors    listing.py

Design notes that hold for all of them: every state change is one conditional UPDATE
whose WHERE names what it may come from, so forward-only moves and claim fences hold
with racing workers; every time that another worker compares (leases, windows, pauses,
deadlines) is read from the database's clock (`store/clock.py`), never from the
worker's own.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from kolors_tryon.store.account import Account
from kolors_tryon.store.accounts import PoolAccounts
from kolors_tryon.store.batches import Batches
from kolors_tryon.store.claims import Claims
from kolors_tryon.store.copies import Copies
from kolors_tryon.store.database import Database, make_engine
from kolors_tryon.store.intake import Intake
from kolors_tryon.store.jobs import Jobs
from kolors_tryon.store.lifecycle import Lifecycle
from kolors_tryon.store.listing import Listing
from kolors_tryon.store.migrate import upgrade_schema
from kolors_tryon.store.producers import Producers
from kolors_tryon.store.records import JobRecord
from kolors_tryon.store.retention import Retention
from kolors_tryon.store.secrets import Secrets
from kolors_tryon.store.submits import Submits
from kolors_tryon.store.tracking import Tracking
from kolors_tryon.store.webhooks import Deliveries


class JobStore:
    """All job state, by aggregate (`store.copies.take(...)`), on one database.

    Args:
        engine: the database.
        clock: a clock to use instead of the database's (tests and orchestration specs).
    """

    def __init__(self, engine: Engine, clock: Callable[[], float] | None = None) -> None:
        self.db = Database(engine, clock)
        self.engine = engine
        self.intake = Intake(self.db)
        self.jobs = Jobs(self.db)
        self.claims = Claims(self.db)
        self.submits = Submits(self.db)
        self.tracking = Tracking(self.db)
        self.account = Account(self.db)
        self.pool = PoolAccounts(self.db, self.account)
        self.secrets = Secrets(self.db)
        self.producers = Producers(self.db)
        self.batches = Batches(self.db)
        self.copies = Copies(self.db)
        self.retention = Retention(self.db)
        self.webhooks = Deliveries(self.db)
        self.lifecycle = Lifecycle(self.db)
        self.listing = Listing(self.db)

    @classmethod
    def from_url(cls, url: str, clock: Callable[[], float] | None = None) -> JobStore:
        return cls(make_engine(url), clock)

    def dispose(self) -> None:
        """Drop pooled connections (after a fork, or at shutdown)."""
        self.db.dispose()

    def now(self) -> float:
        """The current time on the store's clock (Unix seconds)."""
        return self.db.now()

    def create_schema(self) -> None:
        """Migrate the tables to head and add the account row; safe from many workers at once.

        This is `tryon db upgrade`; tests call it too, so that every test runs on the
        migrated schema rather than on one `create_all` would make.
        """
        upgrade_schema(self.engine)
        self.account.ensure_row()

    def get(self, job_id: str, producer: str | None = None) -> JobRecord | None:
        """One job's record, None when unknown (the read nearly every caller makes); by
        `producer`'s own id when given (another producer's job is then unknown)."""
        return self.jobs.get(job_id, producer)
