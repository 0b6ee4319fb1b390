"""Listing jobs: filters, newest first, a page at a time on a keyset cursor.

The order is (created_at, job_id), newest first, and a page starts strictly after the
cursor's (created_at, job_id): a row comparison that PostgreSQL answers from an index
whose leading columns are the filter's (`ix_tryon_jobs_created`,
`ix_tryon_jobs_state_created`), so a page costs the same on page 1 and page 10,000 and
at 1,000,000 jobs (bench/listing.py). A metadata filter is a JSONB containment on
PostgreSQL (the GIN index `ix_tryon_jobs_metadata` of migration 0009) and a JSON
extract on SQLite.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select, tuple_
from sqlalchemy.dialects.postgresql import JSONB

from kolors_tryon.config.producers import DEFAULT_PRODUCER, job_key
from kolors_tryon.errors import TryonError
from kolors_tryon.store.database import Database
from kolors_tryon.store.records import JobRecord, record_from_row
from kolors_tryon.store.states import JobState
from kolors_tryon.store.tables import JobRow


class BadCursor(TryonError, ValueError):
    """A cursor this service did not give (or one mangled on the way)."""


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a listing shows; every field given narrows it."""

    state: JobState | None = None
    # Each key's value, compared as text (a number or boolean matches its JSON text).
    metadata: Mapping[str, str] = field(default_factory=dict)
    created_from: float | None = None  # inclusive, Unix seconds
    created_before: float | None = None  # exclusive
    producer: str | None = None  # one producer's jobs (the doors always set it)


@dataclass(frozen=True)
class JobPage:
    """One page of a listing, and the cursor of the next one (None: this was the last)."""

    records: list[JobRecord]
    next_cursor: str | None


def encode_cursor(created_at: float, job_id: str) -> str:
    """An opaque cursor: the last row's keyset, URL-safe."""
    raw = json.dumps([created_at, job_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """The keyset of a cursor; `BadCursor` for anything this service did not give."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, job_id = json.loads(raw)
        if not isinstance(job_id, str) or isinstance(created_at, bool):
            raise ValueError
        return float(created_at), job_id
    except (ValueError, TypeError, UnicodeDecodeError):
        raise BadCursor("not a cursor of this listing; start again without one") from None


class Listing:
    """Pages of jobs, newest first, filtered."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def page(self, filters: JobFilter, *, limit: int, cursor: str | None = None) -> JobPage:
        """The page after `cursor` (the first without one) of the jobs `filters` names."""
        query = self._query(filters).limit(limit + 1)
        if cursor is not None:
            query = query.where(tuple_(JobRow.created_at, JobRow.job_id) < decode_cursor(cursor))
        with self._db.session() as s:
            rows = list(s.scalars(query))
        more = len(rows) > limit
        rows = rows[:limit]
        last = rows[-1] if more and rows else None
        return JobPage(
            [record_from_row(row) for row in rows],
            encode_cursor(last.created_at, last.job_id) if last is not None else None,
        )

    def cursor_at(self, job_id: str, producer: str = DEFAULT_PRODUCER) -> str | None:
        """The cursor that starts a page just after `producer`'s `job_id` (None: no such
        job of that producer)."""
        key = job_key(producer, job_id)
        with self._db.session() as s:
            created_at = s.scalar(
                select(JobRow.created_at).where(JobRow.job_id == key, JobRow.producer == producer)
            )
        return None if created_at is None else encode_cursor(created_at, key)

    def explain(self, filters: JobFilter, *, limit: int, cursor: str | None = None) -> str:
        """PostgreSQL's plan of a page (bench/listing.py shows which index it uses)."""
        query = self._query(filters).limit(limit)
        if cursor is not None:
            query = query.where(tuple_(JobRow.created_at, JobRow.job_id) < decode_cursor(cursor))
        compiled = query.compile(self._db.engine)
        # The parameters as the driver takes them (JSONB values serialized by their type).
        processors: Any = compiled._bind_processors  # no public way to EXPLAIN with them
        params = {
            key: processors[key](value) if key in processors else value
            for key, value in compiled.construct_params().items()
        }
        with self._db.engine.connect() as connection:
            rows = connection.exec_driver_sql(f"EXPLAIN ANALYZE {compiled.string}", params)
            return "\n".join(str(row[0]) for row in rows)

    def _query(self, filters: JobFilter) -> Select[JobRow]:
        query = select(JobRow).order_by(JobRow.created_at.desc(), JobRow.job_id.desc())
        if filters.state is not None:
            query = query.where(JobRow.state == filters.state)
        if filters.producer is not None:
            query = query.where(JobRow.producer == filters.producer)
        if filters.created_from is not None:
            query = query.where(JobRow.created_at >= filters.created_from)
        if filters.created_before is not None:
            query = query.where(JobRow.created_at < filters.created_before)
        for key, value in filters.metadata.items():
            query = query.where(self._metadata_is(key, value))
        return query

    def _metadata_is(self, key: str, value: str) -> ColumnElement[bool]:
        """The job's metadata holds `key` with `value` as text."""
        if self._db.engine.dialect.name != "postgresql":
            same: ColumnElement[bool] = JobRow.job_metadata[key].as_string() == value
            return same
        # Containment, so the GIN index answers: the text itself, and the JSON scalar
        # it reads as (`5`, `true`), as the text comparison would match both.
        # The expression of the index (migration 0009): JSONB, or NULL for metadata
        # that JSONB cannot hold (a lone surrogate stored long ago).
        document = func.tryon_metadata_jsonb(JobRow.job_metadata, type_=JSONB)
        wanted: list[object] = [value]
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        if not isinstance(parsed, str | dict | list) and parsed is not None:
            wanted.append(parsed)
        return or_(*(document.contains({key: one}) for one in wanted))
