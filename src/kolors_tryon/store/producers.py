"""Producers' daily budgets: units spent today, and the days a budget was reached.

Spend is read from each finished job's `final_unit_deduction` (the account endpoint
lags by hours and cannot drive a live budget), counted on the UTC day of the store's
clock in which the job finished. A job still being submitted or run has not reported
its deduction yet: it counts as one unit (the price of a try-on), so a producer with
many slots cannot overshoot its budget by its jobs in flight. The next day starts from
nothing, and a raised budget (TRYON_PRODUCER_BUDGETS, read by workers at start) releases
the jobs at the next claim.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kolors_tryon.observe.metrics import parse_units
from kolors_tryon.store.database import Database
from kolors_tryon.store.tables import JobRow, ProducerDayRow

DAY_SECONDS = 86_400.0
# What a job in flight is counted as until its deduction is known: one try-on.
UNITS_IN_FLIGHT = 1.0


def day_of(now: float) -> int:
    """The UTC day (days since 1970-01-01) of a database-clock instant."""
    return int(now // DAY_SECONDS)


@dataclass(frozen=True)
class BudgetReached:
    """A producer at its budget on a day: what its `producer.budget_reached` event says."""

    producer: str
    day: int
    budget: float
    spent: float
    reached_at: float


def spent_today(s: Session, now: float, producers: Collection[str]) -> dict[str, float]:
    """Units the jobs of `producers` that finished today had deducted."""
    start = day_of(now) * DAY_SECONDS
    spent = dict.fromkeys(producers, 0.0)
    rows = s.execute(
        select(JobRow.producer, JobRow.final_unit_deduction).where(
            JobRow.finished_at >= start,
            JobRow.producer.in_(list(producers)),
            JobRow.final_unit_deduction.is_not(None),
        )
    )
    for producer, deduction in rows:
        spent[producer] += parse_units(deduction)
    return spent


def allowances(
    s: Session,
    now: float,
    budgets: Mapping[str, float],
    waiting: Collection[str],
    held: Mapping[str, int],
) -> dict[str, int]:
    """How many more jobs each producer among `waiting` that has a budget may start
    today: what its budget leaves after today's spend and its jobs in flight, one unit
    each. A producer at its budget (0) is recorded once per day in `tryon_producer_days`
    for its announcement (called in the claim's transaction, under the account lock, so
    two workers never both record it)."""
    names = [name for name in waiting if name in budgets]
    if not names:
        return {}
    spent = spent_today(s, now, names)
    allowed = {}
    for name in names:
        left = budgets[name] - spent[name] - UNITS_IN_FLIGHT * held.get(name, 0)
        allowed[name] = max(0, math.floor(left / UNITS_IN_FLIGHT + 1e-9))
        if allowed[name] == 0 and s.get(ProducerDayRow, (name, day_of(now))) is None:
            s.add(
                ProducerDayRow(
                    producer=name,
                    day=day_of(now),
                    budget=budgets[name],
                    spent=spent[name],
                    reached_at=now,
                    announced=False,
                )
            )
    return allowed


class Producers:
    """The producers' days at their budget, for their announcements and for reading."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def take_unannounced(self, *, limit: int = 100) -> list[BudgetReached]:
        """Budgets reached and not yet announced, marked announced (each goes once)."""
        with self._db.transaction() as (s, _now):
            rows = list(
                s.scalars(
                    select(ProducerDayRow)
                    .where(ProducerDayRow.announced.is_(False))
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            found = [
                BudgetReached(r.producer, r.day, r.budget, r.spent, r.reached_at) for r in rows
            ]
            for r in rows:
                s.execute(
                    update(ProducerDayRow)
                    .where(ProducerDayRow.producer == r.producer, ProducerDayRow.day == r.day)
                    .values(announced=True)
                )
            return found

    def spent_today(self, producer: str) -> float:
        """Units `producer`'s jobs that finished today deducted (store clock, UTC day)."""
        with self._db.transaction() as (s, now):
            return spent_today(s, now, [producer])[producer]
