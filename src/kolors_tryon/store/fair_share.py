"""Fair share: which producers' queued jobs the free account slots go to.

When several producers have queued jobs, each free slot goes to the producer holding
the fewest slots for its weight (held / weight, TRYON_PRODUCER_WEIGHTS, default 1),
counting the slots given out in the same pick; on a tie, to the producer whose oldest
waiting job is oldest. With equal weights and jobs of similar length this is a round
robin of freed slots: a producer that publishes 10 jobs behind another's backlog of
thousands gets the next freed slot, and about every other one until its jobs are out.
Because it is computed from the jobs' states (never from a counter kept on the side),
a crashed worker cannot skew it, and it needs no state of its own.

Within a producer the order is the claim order of old: priority, then first in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from kolors_tryon.store.lifecycle import before_deadline
from kolors_tryon.store.producers import allowances
from kolors_tryon.store.queries import lingering
from kolors_tryon.store.states import IN_FLIGHT_STATES, JobState
from kolors_tryon.store.tables import JobRow


@dataclass(frozen=True)
class Waiting:
    """A producer with queued jobs: how many wait, and the intake order of its oldest."""

    queued: int
    oldest_seq: int


def shares(
    free: int,
    waiting: Mapping[str, Waiting],
    held: Mapping[str, int],
    weights: Mapping[str, float],
) -> list[str]:
    """The producer each of `free` slots goes to, in the order they are given.

    Args:
        free: Slots to give.
        waiting: The producers with queued jobs (those held back already left out).
        held: Slots each producer holds now (jobs being submitted or run).
        weights: Each producer's weight; a producer not named weighs 1.
    """
    holding = {name: held.get(name, 0) for name in waiting}
    left = {name: w.queued for name, w in waiting.items()}
    order: list[str] = []
    for _ in range(free):
        candidates = [name for name, n in left.items() if n > 0]
        if not candidates:
            break
        name = min(
            candidates,
            key=lambda p: (holding[p] / weights.get(p, 1.0), waiting[p].oldest_seq),
        )
        order.append(name)
        holding[name] += 1
        left[name] -= 1
    return order


def pick(
    s: Session,
    now: float,
    free: int,
    *,
    weights: Mapping[str, float],
    budgets: Mapping[str, float],
) -> list[str]:
    """The keys of the queued jobs the `free` slots go to, in the order given (in the
    claim's transaction, under the account lock); a producer at its daily budget gets
    none (store/producers.py)."""
    query = (
        select(JobRow.producer, func.count(), func.min(JobRow.seq))
        .where(JobRow.state == JobState.QUEUED, before_deadline(now))
        .group_by(JobRow.producer)
    )
    waiting = {str(name): Waiting(min(int(n), free), int(seq)) for name, n, seq in s.execute(query)}
    if not waiting:
        return []
    in_flight = or_(JobRow.state.in_(IN_FLIGHT_STATES), lingering())
    held = {
        str(name): int(n)
        for name, n in s.execute(
            select(JobRow.producer, func.count()).where(in_flight).group_by(JobRow.producer)
        )
    }
    for name, allowed in allowances(s, now, budgets, waiting, held).items():
        if allowed == 0:
            del waiting[name]
        else:
            waiting[name] = Waiting(min(waiting[name].queued, allowed), waiting[name].oldest_seq)
    if not waiting:
        return []
    order = shares(free, waiting, held, weights)
    jobs: dict[str, list[str]] = {}
    for name in set(order):
        jobs[name] = list(
            s.scalars(
                select(JobRow.job_id)
                .where(
                    JobRow.state == JobState.QUEUED, JobRow.producer == name, before_deadline(now)
                )
                .order_by(JobRow.priority.desc(), JobRow.seq)
                .limit(order.count(name))
            )
        )
    taken = {name: iter(keys) for name, keys in jobs.items()}
    return [key for name in order if (key := next(taken[name], None)) is not None]
