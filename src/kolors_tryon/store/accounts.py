"""The pool of Kling accounts in the store: slots per account, pauses per account.

Each account's in-flight count is derived from job states (`tryon_jobs.account`), as
the single account's is, so a crashed worker leaks no slot. Claims are serialized by
the same lock as the single account's (`account.lock_account`): one claim at a time
across every worker sees every account's count.

An account of a configured pool has a row in `tryon_pool_accounts` for its pause; an
account without one (the single account of today, `default`) keeps its pause on the
`tryon_account` row, so that the single-account service behaves exactly as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kolors_tryon.store.account import Account, AccountPause, lock_account, pause_in
from kolors_tryon.store.claims import Claim
from kolors_tryon.store.database import Database
from kolors_tryon.store.queries import claimed_by, lingering, matched, rows_of
from kolors_tryon.store.records import record_from_row
from kolors_tryon.store.states import IN_FLIGHT_STATES, JobState
from kolors_tryon.store.tables import JobRow, PoolAccountRow

DEFAULT_ACCOUNT = "default"
# Code of the pause a spent daily budget stands for (no row is written: it is derived).
BUDGET_CODE = "daily_units"
_DAY = 86400.0
# Queued jobs read per claim beyond the free slots: pinned jobs of a full account and
# jobs of a model no free account runs are passed over, not waited behind.
_LOOK_AHEAD = 200


@dataclass(frozen=True)
class AccountSlots:
    """What a claim needs to know of one account: its limit and its rules."""

    name: str
    max_in_flight: int
    weight: float = 1.0
    models: tuple[str, ...] | None = None
    daily_units: float | None = None
    # Retired: still followed to the end, never given a new job.
    retired: bool = False

    def runs(self, model_name: str | None) -> bool:
        return self.models is None or (model_name or "kolors-virtual-try-on-v1") in self.models


@dataclass(frozen=True)
class AccountUsage:
    """One account as `tryon accounts` shows it."""

    name: str
    in_flight: int
    created: int
    units_spent: float
    units_today: float
    pause: AccountPause | None = None


@dataclass
class _Free:
    slots: AccountSlots
    used: int
    free: int
    queued_for: list[str] = field(default_factory=list)


def pause_for(s: Session, now: float, account: str | None) -> AccountPause | None:
    """The pause of `account` as the transaction `s` sees it (None: not paused)."""
    row = s.get(PoolAccountRow, account or DEFAULT_ACCOUNT)
    if row is None:
        return pause_in(s, now)  # the single account of today
    if row.pause_code is None:
        return None
    remaining = max(0.0, (row.paused_until or 0.0) - now)
    return AccountPause(row.pause_code, row.pause_message or "", remaining)


def in_flight_by_account(s: Session) -> dict[str, int]:
    """Slots held per account (jobs not yet given an account are nobody's)."""
    counts = s.execute(
        select(JobRow.account, func.count())
        .where(or_(JobRow.state.in_(IN_FLIGHT_STATES), lingering()), JobRow.account.is_not(None))
        .group_by(JobRow.account)
    )
    return {str(name): int(n) for name, n in counts}


def units_of(values: Iterable[str | None]) -> float:
    """The sum of `final_unit_deduction` strings (format unconfirmed: unreadable ones
    count as nothing)."""
    total = 0.0
    for value in values:
        try:
            total += float(value or 0)
        except ValueError:
            continue
    return total


def _units_since(s: Session, account: str, since: float) -> float:
    return units_of(
        s.scalars(
            select(JobRow.final_unit_deduction).where(
                JobRow.account == account,
                JobRow.finished_at >= since,
                JobRow.final_unit_deduction.is_not(None),
            )
        )
    )


class PoolAccounts:
    """Slots, pauses and usage of every account of the pool."""

    def __init__(self, db: Database, single: Account) -> None:
        self._db = db
        self._single = single

    def ensure_rows(self, names: Iterable[str]) -> None:
        """A pause row for each configured account (idempotent, race-safe)."""
        for name in names:
            try:
                with self._db.transaction() as (s, _):
                    if s.get(PoolAccountRow, name) is None:
                        s.add(PoolAccountRow(name=name))
            except IntegrityError:
                pass  # another worker added it first

    # ---------------------------------------------------------------- pause -----------
    def _pooled(self, account: str) -> bool:
        """Whether `account` has a pause row of its own (else: the single account's)."""
        with self._db.transaction() as (s, _):
            return s.get(PoolAccountRow, account) is not None

    def current_pause(self, account: str) -> AccountPause | None:
        with self._db.transaction() as (s, now):
            return pause_for(s, now, account)

    def pause(self, account: str, code: str, message: str, *, retry_in: float) -> bool:
        """Stop `account`'s submissions; True when this call started the pause."""
        if not self._pooled(account):
            return self._single.pause(code, message, retry_in=retry_in)
        with self._db.transaction() as (s, now):
            lock_account(s)
            row = s.get(PoolAccountRow, account)
            assert row is not None  # rows are never deleted
            started = row.pause_code is None
            row.pause_code, row.pause_message = code, message
            row.paused_until = now + retry_in
            return started

    def take_probe(self, account: str, *, next_in: float) -> bool:
        """Become the one submission allowed through `account`'s due pause."""
        if not self._pooled(account):
            return self._single.take_probe(next_in=next_in)
        with self._db.transaction() as (s, now):
            moved = s.execute(
                update(PoolAccountRow)
                .where(
                    PoolAccountRow.name == account,
                    PoolAccountRow.pause_code.is_not(None),
                    PoolAccountRow.paused_until <= now,
                )
                .values(paused_until=now + next_in)
            )
            return matched(moved)

    def clear_pause(self, account: str) -> bool:
        if not self._pooled(account):
            return self._single.clear_pause()
        with self._db.transaction() as (s, _):
            moved = s.execute(
                update(PoolAccountRow)
                .where(PoolAccountRow.name == account, PoolAccountRow.pause_code.is_not(None))
                .values(pause_code=None, pause_message=None, paused_until=None)
            )
            return matched(moved)

    def back_off(self, account: str, seconds: float) -> None:
        """No new claim on `account` for `seconds` (it answered 1303: the account's
        slots are held by someone else too, e.g. another service on the same account)."""
        with self._db.transaction() as (s, now):
            s.execute(
                update(PoolAccountRow)
                .where(PoolAccountRow.name == account)
                .values(busy_until=now + seconds)
            )

    # ---------------------------------------------------------------- claims ----------
    def claim(
        self,
        pool: Sequence[AccountSlots],
        *,
        lease_seconds: float,
        new_owner: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> list[Claim]:
        """Give each account's free slots to waiting jobs, oldest first (by priority).

        A job goes to the free account least loaded relative to its weight among those
        that run its model; a pinned job only to its own account. A paused account gets
        one job, its probe, once the probe is due and none of its jobs is being
        submitted; an account whose daily units are spent gets none until the next UTC
        day on the database's clock. Jobs moved off a paused account (`rehome`) wait
        here too, in their order.
        """
        with self._db.transaction() as (s, now):
            lock_account(s)
            free = self._free_slots(s, now, pool)
            total = sum(f.free for f in free.values())
            if total <= 0:
                return []
            waiting = s.execute(
                select(JobRow.job_id, JobRow.state, JobRow.model_name, JobRow.account_pin)
                .where(
                    or_(
                        JobRow.state == JobState.QUEUED,
                        and_(
                            JobRow.state == JobState.SUBMITTING,
                            JobRow.account.is_(None),
                            JobRow.lease_owner.is_(None),
                        ),
                    )
                )
                .order_by(JobRow.priority.desc(), JobRow.seq)
                .limit(total + _LOOK_AHEAD)
            ).all()
            chosen: list[tuple[str, str, str]] = []  # job id, state, account
            for job_id, state, model_name, pin in waiting:
                if total <= 0:
                    break
                target = _pick(free, model_name, pin)
                if target is None:
                    continue
                target.used += 1
                target.free -= 1
                total -= 1
                chosen.append((job_id, state, target.slots.name))
            return self._take(s, now, chosen, lease_seconds, new_owner)

    def _free_slots(self, s: Session, now: float, pool: Sequence[AccountSlots]) -> dict[str, _Free]:
        used = in_flight_by_account(s)
        day_start = now - now % _DAY
        free: dict[str, _Free] = {}
        for slots in pool:
            if slots.retired:
                continue
            held = used.get(slots.name, 0)
            room = slots.max_in_flight - held
            pause = pause_for(s, now, slots.name)
            row = s.get(PoolAccountRow, slots.name)
            if row is not None and (row.busy_until or 0.0) > now:
                room = 0  # it answered 1303: its slots are taken by someone else for now
            if pause is not None:
                submitting = s.scalar(
                    select(func.count()).where(
                        JobRow.state == JobState.SUBMITTING, JobRow.account == slots.name
                    )
                )
                room = min(room, 1) if pause.remaining <= 0 and not submitting else 0
            if slots.daily_units is not None and room > 0:
                spent = _units_since(s, slots.name, day_start)
                room = min(room, int(slots.daily_units - spent - held))
            free[slots.name] = _Free(slots, held, max(room, 0))
        return free

    def _take(
        self,
        s: Session,
        now: float,
        chosen: list[tuple[str, str, str]],
        lease_seconds: float,
        new_owner: Callable[[], str],
    ) -> list[Claim]:
        claims = []
        for job_id, state, account in chosen:
            owner = new_owner()
            where: tuple[ColumnElement[bool], ...]
            if state == JobState.QUEUED:
                where = (JobRow.job_id == job_id, JobRow.state == JobState.QUEUED)
            else:  # moved off a paused account: still `submitting`, with no owner
                where = (
                    JobRow.job_id == job_id,
                    JobRow.state == JobState.SUBMITTING,
                    JobRow.account.is_(None),
                    JobRow.lease_owner.is_(None),
                )
            moved = s.execute(
                update(JobRow)
                .where(*where)
                .values(
                    state=JobState.SUBMITTING,
                    account=account,
                    lease_owner=owner,
                    lease_until=now + lease_seconds,
                    updated_at=now,
                )
            )
            if matched(moved):
                claims.append((job_id, owner, state == JobState.QUEUED))
        records = {row.job_id: record_from_row(row) for row in rows_of(s, [c[0] for c in claims])}
        # A job moved off a paused account announced `submitting` already: no second event.
        return [Claim(j, o, records.get(j) if fresh else None) for j, o, fresh in claims]

    def rehome(self, job_id: str, owner: str) -> bool:
        """Give up the claim's account, so that the job goes to another one.

        Only for a job no create of which can exist: its account refused cleanly
        (1100-1102, credentials) and no earlier attempt is unresolved. The job stays
        `submitting` (a state never moves back), without owner or account, until a claim
        gives it to an account with a free slot. A pinned job is never moved.
        """
        with self._db.transaction() as (s, now):
            lock_account(s)
            moved = s.execute(
                update(JobRow)
                .where(
                    *claimed_by(job_id, owner),
                    JobRow.account_pin.is_(None),
                    JobRow.unresolved_until.is_(None),
                    JobRow.create_pending.is_(False),
                )
                .values(
                    account=None,
                    lease_owner=None,
                    lease_until=None,
                    attempt_until=None,
                    updated_at=now,
                )
            )
            return matched(moved)

    # ---------------------------------------------------------------- reads -----------
    def account_of(self, job_id: str) -> str:
        """The account a job was claimed on (`default` for jobs of the single account)."""
        with self._db.transaction() as (s, _):
            return s.scalar(select(JobRow.account).where(JobRow.job_id == job_id)) or (
                DEFAULT_ACCOUNT
            )

    def usage(self, names: Sequence[str]) -> list[AccountUsage]:
        """Slots in use, jobs created, units spent (in all and today) and the pause."""
        with self._db.transaction() as (s, now):
            used = in_flight_by_account(s)
            created = {
                name: int(n)
                for name, n in s.execute(
                    select(JobRow.account, func.count())
                    .where(JobRow.kling_task_id.is_not(None))
                    .group_by(JobRow.account)
                )
            }
            out = []
            for name in names:
                out.append(
                    AccountUsage(
                        name=name,
                        in_flight=used.get(name, 0),
                        created=created.get(name, 0),
                        units_spent=_units_since(s, name, 0.0),
                        units_today=_units_since(s, name, now - now % _DAY),
                        pause=pause_for(s, now, name),
                    )
                )
            return out


def _pick(free: dict[str, _Free], model_name: str | None, pin: str | None) -> _Free | None:
    """The account a waiting job goes to now, or None (it waits)."""
    if pin is not None:
        target = free.get(pin)
        return target if target is not None and target.free > 0 else None
    candidates = [f for f in free.values() if f.free > 0 and f.slots.runs(model_name)]
    if not candidates:
        return None
    return min(candidates, key=lambda f: (f.used / f.slots.weight, f.slots.name))
