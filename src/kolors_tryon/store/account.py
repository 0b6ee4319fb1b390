"""The account: its pause (out of units, bad credentials) and the housekeeping turns.

One row (`ACCOUNT_ROW_ID`) today. Locking it serializes every claim of account slots
across workers on both databases (on SQLite the UPDATE takes the database write lock; on
PostgreSQL the row lock). The pool of several accounts will grow from this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kolors_tryon.errors import StoreRowMissing
from kolors_tryon.store.database import Database
from kolors_tryon.store.queries import matched
from kolors_tryon.store.tables import AccountRow

ACCOUNT_ROW_ID = 1


@dataclass(frozen=True)
class AccountPause:
    """Submissions are stopped for the whole account (out of units, bad credentials).

    `remaining` is the number of seconds until the next probe may go (0 when due).
    """

    code: str
    message: str
    remaining: float


def lock_account(s: Session) -> AccountRow:
    """The account row, write-locked for the rest of the transaction `s`."""
    s.execute(
        update(AccountRow)
        .where(AccountRow.id == ACCOUNT_ROW_ID)
        .values(version=AccountRow.version + 1)
    )
    account = s.scalar(select(AccountRow).where(AccountRow.id == ACCOUNT_ROW_ID))
    if account is None:
        raise StoreRowMissing("the account row is missing: run create_schema() first")
    return account


def pause_in(s: Session, now: float) -> AccountPause | None:
    """The account's pause as the transaction `s` sees it (None: not paused)."""
    row = s.get(AccountRow, ACCOUNT_ROW_ID)
    if row is None or row.pause_code is None:
        return None
    remaining = max(0.0, (row.paused_until or 0.0) - now)
    return AccountPause(row.pause_code, row.pause_message or "", remaining)


class Account:
    """The account's row: its pause, its probe, and whose turn the housekeeping is."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def ensure_row(self) -> None:
        """Add the single account row if it is missing (idempotent, race-safe)."""
        try:
            with self._db.transaction() as (s, _):
                if s.get(AccountRow, ACCOUNT_ROW_ID) is None:
                    s.add(AccountRow(id=ACCOUNT_ROW_ID, version=0))
        except IntegrityError:
            pass  # another worker created it first

    # ---------------------------------------------------------------- pause -----------
    def current_pause(self) -> AccountPause | None:
        with self._db.transaction() as (s, now):
            return pause_in(s, now)

    def pause(self, code: str, message: str, *, retry_in: float) -> bool:
        """Stop every submission; one probe may try again in `retry_in` seconds.

        Returns:
            True when this call started the pause, False when the account was paused
            already (another job's refusal, or a failed probe): the start is what an
            operator is told of, once (the account row is locked, so one caller wins).
        """
        with self._db.transaction() as (s, now):
            account = lock_account(s)
            started = account.pause_code is None
            account.pause_code = code
            account.pause_message = message
            account.paused_until = now + retry_in
            return started

    def take_probe(self, *, next_in: float) -> bool:
        """Become the one submission allowed through a due pause. False: wait."""
        with self._db.transaction() as (s, now):
            moved = s.execute(
                update(AccountRow)
                .where(
                    AccountRow.id == ACCOUNT_ROW_ID,
                    AccountRow.pause_code.is_not(None),
                    AccountRow.paused_until <= now,
                )
                .values(paused_until=now + next_in)
            )
            return matched(moved)

    def clear_pause(self) -> bool:
        with self._db.transaction() as (s, _):
            moved = s.execute(
                update(AccountRow)
                .where(AccountRow.id == ACCOUNT_ROW_ID, AccountRow.pause_code.is_not(None))
                .values(pause_code=None, pause_message=None, paused_until=None)
            )
            return matched(moved)

    # ---------------------------------------------------------------- housekeeping ----
    def take_results_cleanup(self, *, every: float) -> bool:
        """True for one caller per `every` seconds: it deletes expired task results."""
        return self._take_turn(AccountRow.results_cleaned_at, every)

    def take_sweep(self, *, every: float) -> bool:
        """True for one caller per `every` seconds: it runs the sweep's rescues.

        Every worker sends sweeps on a timer; after an outage or a backlog many may
        arrive at once. One of them does the work, the others only dispatch.
        """
        return self._take_turn(AccountRow.last_sweep_at, every)

    def _take_turn(self, column: Any, every: float) -> bool:
        with self._db.transaction() as (s, now):
            moved = s.execute(
                update(AccountRow)
                .where(
                    AccountRow.id == ACCOUNT_ROW_ID,
                    or_(column.is_(None), column <= now - every),
                )
                .values({column: now})
            )
            return matched(moved)
