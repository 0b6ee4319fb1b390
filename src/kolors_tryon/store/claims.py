"""Claims on account slots: who may submit a queued job, and for how long.

Claiming takes a write lock on the account row first (`account.lock_account`), so that
counting in-flight jobs and claiming queued ones is serialized across every worker. The
slot count is derived from job states, never kept as a separate counter, so a crashed
worker cannot leak one: its job is still in a state that says where it is.

A claim carries an owner (the Celery task id that will submit the job) and a lease: only
the owner may send the create call, and a lease that ran out is taken over. A claim made
in a worker has the worker's holder id before its owner's uuid: the worker's heartbeat
renews its short lease by that prefix (`renew`), and a stopping worker hands it back by
it (`take_over_all`, pipeline/holder.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import bindparam, func, or_, select, update

from kolors_tryon.store.account import lock_account
from kolors_tryon.store.database import Database
from kolors_tryon.store.fair_share import pick as fair_pick
from kolors_tryon.store.queries import JOBS, claimed_by, count_in_flight, expired, matched, rows_of
from kolors_tryon.store.records import JobRecord, record_from_row
from kolors_tryon.store.states import JobState
from kolors_tryon.store.tables import JobRow


@dataclass(frozen=True)
class Claim:
    """A queued job that got an account slot; `owner` is who may submit it."""

    job_id: str
    owner: str
    # The job as the claim left it (`submitting`), for its event; None when not read.
    record: JobRecord | None = None


class Claims:
    """Giving slots to queued jobs, and the leases of the claims that hold them."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def next(
        self,
        max_in_flight: int,
        *,
        lease_seconds: float,
        new_owner: Callable[[], str] = lambda: str(uuid.uuid4()),
        weights: Mapping[str, float] | None = None,
        budgets: Mapping[str, float] | None = None,
    ) -> list[Claim]:
        """Give free account slots to queued jobs: shared among producers by weight
        (store/fair_share.py), the oldest of each producer first (highest priority
        first); a producer at its daily budget in `budgets` gets none."""
        with self._db.transaction() as (s, now):
            account = lock_account(s)
            free = max_in_flight - count_in_flight(s)
            if account.pause_code is not None:
                # Paused: only a probe may go, once it is due, and only if no job that
                # could serve as the probe is already being submitted.
                submitting = s.scalar(
                    select(func.count()).where(JobRow.state == JobState.SUBMITTING)
                )
                due = (account.paused_until or 0) <= now
                free = min(free, 1) if due and not submitting else 0
            if free <= 0:
                return []
            job_ids = fair_pick(s, now, free, weights=weights or {}, budgets=budgets or {})
            if not job_ids:
                return []
            owners = {job_id: new_owner() for job_id in job_ids}
            jobs = JOBS
            # One statement run for every job (executemany), each still conditional on
            # the job being queued; then one read says which moved and gives the records.
            s.execute(
                update(jobs)
                .where(jobs.c.job_id == bindparam("b_job"), jobs.c.state == JobState.QUEUED)
                .values(
                    state=JobState.SUBMITTING,
                    account="default",  # the single account (store/accounts.py: the pool)
                    lease_owner=bindparam("b_owner"),
                    lease_until=now + lease_seconds,
                    updated_at=now,
                ),
                [{"b_job": job_id, "b_owner": owner} for job_id, owner in owners.items()],
            )
            rows = rows_of(s, job_ids)
            moved = {
                row.job_id: record_from_row(row)
                for row in rows
                if row.state == JobState.SUBMITTING and row.lease_owner == owners[row.job_id]
            }
            return [Claim(j, owners[j], moved[j]) for j in job_ids if j in moved]

    def expired(self, *, limit: int = 100) -> list[str]:
        """Jobs being submitted whose claim ran out: their owner died or its message is gone."""
        with self._db.transaction() as (s, now):
            return list(
                s.scalars(
                    select(JobRow.job_id).where(*expired(now)).order_by(JobRow.seq).limit(limit)
                )
            )

    def take_over(self, job_id: str, new_owner: str, *, lease_seconds: float) -> bool:
        """Move an expired claim to a new owner (the old owner's messages then do nothing).

        Never while an attempt window is open: the old owner may be sending its create.
        """
        with self._db.transaction() as (s, now):
            moved = s.execute(
                update(JobRow)
                .where(JobRow.job_id == job_id, *expired(now))
                .values(lease_owner=new_owner, lease_until=now + lease_seconds, updated_at=now)
            )
            return matched(moved)

    def take_over_all(
        self,
        new_owner: Callable[[], str],
        *,
        lease_seconds: float,
        released: str | None = None,
        limit: int = 100,
    ) -> list[Claim]:
        """Give a new owner to every claim that ran out, and to every claim of the holder
        `released` (a worker that stopped, or lost its broker connection and with it,
        maybe, the messages of its claims), in one transaction.

        Never while an attempt window is open: the old owner may be sending its create.
        The old owner's messages then find another owner and do nothing.
        """
        with self._db.transaction() as (s, now):
            lapsed = [JobRow.lease_until < now]
            if released is not None:
                lapsed.append(JobRow.lease_owner.startswith(f"{released}.", autoescape=True))
            where = (
                JobRow.state == JobState.SUBMITTING,
                or_(*lapsed),
                or_(JobRow.attempt_until.is_(None), JobRow.attempt_until < now),
            )
            job_ids = list(
                s.scalars(select(JobRow.job_id).where(*where).order_by(JobRow.seq).limit(limit))
            )
            claims = []
            for job_id in job_ids:
                owner = new_owner()
                moved = s.execute(
                    update(JobRow)
                    .where(JobRow.job_id == job_id, *where)
                    .values(lease_owner=owner, lease_until=now + lease_seconds, updated_at=now)
                )
                if matched(moved):
                    claims.append(Claim(job_id, owner))
            return claims

    def renew(self, holder: str, *, seconds: float, fresh_for: float) -> int:
        """The heartbeat of `holder`: its claims' leases run `seconds` from now (never
        shortened); returns how many were renewed.

        Only claims written to within `fresh_for` seconds (claimed, taken over, sent): a
        claim whose message was lost while its holder lives (a publish that failed, a
        parked batch) must still run out, after that long lease, as it did before. And
        never a claim with an attempt window: an open one covers its run already, and one
        that closed without its run leaving was a run that died (a pool process killed,
        or cancelled by Celery when the broker connection dropped): it runs out with
        its window, and the next owner looks its job up.
        """
        with self._db.transaction() as (s, now):
            until = now + seconds
            moved = s.execute(
                update(JobRow)
                .where(
                    JobRow.state == JobState.SUBMITTING,
                    JobRow.lease_owner.startswith(f"{holder}.", autoescape=True),
                    JobRow.updated_at > now - fresh_for,
                    JobRow.attempt_until.is_(None),
                    JobRow.lease_until < until,
                )
                .values(lease_until=until)
            )
            return int(cast(Any, moved).rowcount)

    def extend(self, job_id: str, owner: str, seconds: float) -> bool:
        """Keep a claim `seconds` longer while its owner waits (the wait may outlast it)."""
        with self._db.transaction() as (s, now):
            moved = s.execute(
                update(JobRow).where(*claimed_by(job_id, owner)).values(lease_until=now + seconds)
            )
            return matched(moved)
