"""Listing at scale: a page of `GET /v1/jobs` (store.listing) at 1,000 to 1,000,000 jobs.

Jobs are inserted in bulk with `generate_series` on PostgreSQL (migrated to head, so with
the listing's indexes): one a second of `created_at`, 70% succeeded, 10% each failed,
cancelled and queued, metadata `{"sku": g % 1000 as text, "n": g}`. For each size and
each filter (none, state, a metadata field, a created range, state and metadata) the
first page and a deep page (the cursor of the job in the middle of the table) of 50
records are timed, median of several runs. A page must cost the same at every size: the
baseline is the same filter's page at the smallest size, measured in the same run. At
the largest size each query is EXPLAINed (ANALYZE) and the indexes its plan uses are
named.
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bench.common import ms, write_result
from harness import fresh_database
from kolors_tryon.store import JobState, JobStore
from kolors_tryon.store.listing import JobFilter, encode_cursor

NAME = "listing"
PAGE = 50
BASE_TIME = 1_800_000_000.0


@dataclass(frozen=True)
class Sizes:
    """Table sizes of the curve, and timed runs per page."""

    jobs: tuple[int, ...]
    runs: int


FULL = Sizes(jobs=(1_000, 100_000, 1_000_000), runs=15)
QUICK = Sizes(jobs=(1_000, 100_000), runs=9)
TINY = Sizes(jobs=(100, 1_000), runs=3)


def filters(size: int) -> dict[str, JobFilter]:
    """The filters timed at each size (the created range: the newest tenth of the table)."""
    return {
        "none": JobFilter(),
        "state": JobFilter(state=JobState.CANCELLED),
        "metadata": JobFilter(metadata={"sku": "7"}),
        "created_range": JobFilter(
            created_from=BASE_TIME + size * 0.45, created_before=BASE_TIME + size * 0.55
        ),
        "state_and_metadata": JobFilter(state=JobState.SUCCEEDED, metadata={"sku": "7"}),
    }


def fill(engine: Engine, first: int, last: int) -> None:
    """Jobs `first`..`last` in one INSERT ... SELECT, then ANALYZE."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tryon_jobs (job_id, state, priority, attempts, retries,"
                " create_pending, polls, conflicts, resubmissions, lingering, created_at,"
                " updated_at, metadata)"
                " SELECT 'list-' || lpad(g::text, 8, '0'),"
                " CASE g % 10 WHEN 0 THEN 'failed' WHEN 1 THEN 'cancelled'"
                " WHEN 2 THEN 'queued' ELSE 'succeeded' END,"
                " 0, 0, 0, false, 0, 0, 0, false, :base + g, :base + g,"
                " json_build_object('sku', (g % 1000)::text, 'n', g)"
                " FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g"
            ),
            {"first": first, "last": last, "base": BASE_TIME},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE tryon_jobs"))


def timed(store: JobStore, job_filter: JobFilter, cursor: str | None, runs: int) -> float:
    """Median seconds of one page (after one warm-up)."""
    store.listing.page(job_filter, limit=PAGE, cursor=cursor)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        store.listing.page(job_filter, limit=PAGE, cursor=cursor)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def indexes_in(plan: str) -> list[str]:
    """The index names a plan uses."""
    return sorted(set(re.findall(r"(ix_tryon_jobs_\w+)", plan)))


def run(sizes: Sizes, out_dir: Path, tmp: Path) -> dict[str, Any]:
    """The page-time curve of every filter, and the plans at the largest size."""
    points: list[dict[str, Any]] = []
    plans: dict[str, Any] = {}
    with fresh_database() as url:
        store = JobStore.from_url(url)
        store.create_schema()
        try:
            filled = 0
            for size in sizes.jobs:
                started = time.perf_counter()
                fill(store.engine, filled + 1, size)
                fill_seconds = time.perf_counter() - started
                filled = size
                middle = encode_cursor(BASE_TIME + size // 2, f"list-{size // 2:08d}")
                point: dict[str, Any] = {"jobs": size, "fill_s": round(fill_seconds, 1)}
                for name, job_filter in filters(size).items():
                    point[f"{name}_first_ms"] = ms(timed(store, job_filter, None, sizes.runs))
                    point[f"{name}_deep_ms"] = ms(timed(store, job_filter, middle, sizes.runs))
                    if size == sizes.jobs[-1]:
                        plan = store.listing.explain(job_filter, limit=PAGE, cursor=middle)
                        plans[name] = {"indexes": indexes_in(plan), "plan": plan.splitlines()}
                points.append(point)
                print(f"listing at {size}: {point}", flush=True)
        finally:
            store.dispose()
    base = points[0]
    ratios = {
        key: round(points[-1][key] / base[key], 2) if base[key] else None
        for key in base
        if key.endswith("_ms")
    }
    figures = {
        "page": PAGE,
        "points": points,
        "ratio_largest_to_smallest": ratios,
        "indexes_at_largest": {name: plan["indexes"] for name, plan in plans.items()},
        "plans_at_largest": plans,
    }
    write_result(out_dir, NAME, sizes, figures)
    return figures
