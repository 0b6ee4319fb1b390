"""Scale of the backlog: the slot claim at 100 to 100,000 queued jobs, and worker memory.

1. Dispatch cost on PostgreSQL: the store's `claims.next` (what every dispatch runs)
   with a backlog of queued jobs inserted in bulk with SQL. Each claim takes five slots;
   the claimed jobs are then ended with plain SQL (not counted), so every claim sees the
   same free slots. Queries are counted with a `before_cursor_execute` listener on the
   store's engine, and the claim's SELECTs are EXPLAINed (ANALYZE) at the largest
   backlog. The claim must not get slower as the backlog grows: the baseline is the
   claim at the smallest backlog, measured in the same run.
2. Worker memory while thousands of jobs are tracked: the jobs are inserted as
   `submitted` (their Kling tasks made at the emulator beforehand, each under its job id)
   and each gets a `tryon.track` message, as `submit` would send it; the worker then
   polls them at TRYON_TRACK_INTERVAL_MAX. The resident memory of the worker and its pool
   is sampled as it goes: waiting polls live in RabbitMQ (native delayed delivery), not
   in the worker, so it must stay flat. The baseline is the idle worker's memory.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import Engine, event, text

from bench.common import (
    EmulatorProcess,
    deployment_on,
    emulator_process,
    ms,
    percentile,
    plot,
    rss_bytes,
    write_result,
)
from harness import TEST_API_KEY, fresh_database, sample_b64
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.store import JobStore

NAME = "backlog"
SLOTS = 5
LEASE = 180.0
NO_LIMIT = 100_000


@dataclass(frozen=True)
class Sizes:
    """Backlogs of the claim curve, claims per backlog, and the tracking memory run."""

    backlogs: tuple[int, ...]
    claims: int
    tracked: int
    track_interval: int
    sample_seconds: float


FULL = Sizes(
    backlogs=(100, 1_000, 10_000, 100_000),
    claims=40,
    tracked=10_000,
    track_interval=60,
    sample_seconds=90,
)
QUICK = Sizes(
    backlogs=(100, 10_000, 100_000), claims=10, tracked=500, track_interval=10, sample_seconds=15
)
TINY = Sizes(backlogs=(100, 1_000), claims=3, tracked=0, track_interval=5, sample_seconds=0)


# ----------------------------------------------------------------- queries -------------
@dataclass
class QueryLog:
    """Every statement the store's engine sends, from a `before_cursor_execute` listener."""

    statements: list[tuple[str, Any]] = field(default_factory=list)

    @contextmanager
    def listening(self, engine: Engine) -> Iterator[QueryLog]:
        def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            self.statements.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", record)
        try:
            yield self
        finally:
            event.remove(engine, "before_cursor_execute", record)


def insert_queued(engine: Engine, first: int, count: int, *, analyze: bool = True) -> None:
    """`count` queued jobs in one INSERT ... SELECT (as a backlog would have them)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tryon_jobs (job_id, state, priority, attempts, retries,"
                " create_pending, polls, conflicts, resubmissions, lingering, created_at,"
                " updated_at, metadata)"
                " SELECT 'backlog-' || lpad(g::text, 7, '0'), 'queued', 0, 0, 0, false, 0,"
                " 0, 0, false, extract(epoch from now()), extract(epoch from now()), '{}'"
                " FROM generate_series(CAST(:first AS bigint), CAST(:last AS bigint)) AS g"
            ),
            {"first": first, "last": first + count - 1},
        )
    if not analyze:
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE tryon_jobs"))


def end_jobs(engine: Engine, job_ids: list[str]) -> None:
    """End claimed jobs with plain SQL, so that the next claim finds the slots free."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE tryon_jobs SET state = 'succeeded', lease_owner = NULL,"
                " lease_until = NULL WHERE job_id = ANY(:ids)"
            ),
            {"ids": job_ids},
        )


def explain(engine: Engine, statements: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """EXPLAIN ANALYZE of each SELECT a claim sent (in a transaction rolled back)."""
    plans = []
    with engine.connect() as conn:
        for statement, parameters in statements:
            if not statement.lstrip().upper().startswith("SELECT") or "tryon_jobs" not in statement:
                continue
            rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            plan = [str(row[0]) for row in rows]
            plans.append({"query": " ".join(statement.split()), "plan": plan})
        conn.rollback()
    return plans


def claim_curve(sizes: Sizes) -> dict[str, Any]:
    """Time and queries per claim at each backlog; the plans at the largest."""
    points: list[dict[str, Any]] = []
    plans: list[dict[str, Any]] = []
    with fresh_database() as url:
        store = JobStore.from_url(url)
        store.create_schema()
        try:
            next_id = 1
            for backlog in sizes.backlogs:
                missing = backlog - queued_count(store)
                insert_queued(store.engine, next_id, missing)
                next_id += missing
                points.append(measure_claims(store, backlog, sizes.claims, next_id))
                next_id += sizes.claims * SLOTS
            log = QueryLog()
            with log.listening(store.engine):
                store.claims.next(SLOTS, lease_seconds=LEASE)
            plans = explain(store.engine, log.statements)
        finally:
            store.dispose()
    base = points[0]["claim_ms_p50"] or 0.001
    for point in points:
        point["vs_smallest"] = round(point["claim_ms_p50"] / base, 2)
    return {"points": points, "plans": plans}


def measure_claims(store: JobStore, backlog: int, claims: int, next_id: int) -> dict[str, Any]:
    """`claims` claims of five slots, each timed and its queries counted.

    After each claim the claimed jobs end and as many new ones are queued (untimed), so
    that every claim sees the same backlog and the same free slots.
    """
    times, counts = [], []
    log = QueryLog()
    with log.listening(store.engine):
        for _ in range(claims):
            before = len(log.statements)
            started = time.perf_counter()
            taken = store.claims.next(SLOTS, lease_seconds=LEASE)
            times.append(time.perf_counter() - started)
            counts.append(len(log.statements) - before)
            assert len(taken) == SLOTS, taken
            end_jobs(store.engine, [claim.job_id for claim in taken])
            insert_queued(store.engine, next_id, SLOTS, analyze=False)
            next_id += SLOTS
    return {
        "backlog": backlog,
        "claim_ms_p50": ms(statistics.median(times)),
        "claim_ms_p99": ms(percentile(times, 99)),
        "queries_per_claim": statistics.median(counts),
    }


def queued_count(store: JobStore) -> int:
    """Jobs waiting now (what the next insert tops up to the wanted backlog)."""
    return store.jobs.count_by_state().get("queued", 0)


# ----------------------------------------------------------------- memory --------------
def make_tasks(emulator: EmulatorProcess, job_ids: list[str], threads: int = 4) -> None:
    """One Kling task per job id at the emulator, as the creates had made them."""
    body = {"human_image": sample_b64("human.jpg"), "cloth_image": sample_b64("cloth-red.png")}
    url = f"{emulator.base_url}/v1/images/kolors-virtual-try-on"
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    chunks = [job_ids[i::threads] for i in range(threads)]

    def create(ids: list[str]) -> None:
        with requests.Session() as session:
            for job_id in ids:
                answer = session.post(
                    url, json={**body, "external_task_id": job_id}, headers=headers, timeout=30
                )
                assert answer.json()["code"] == 0, answer.text

    workers = [threading.Thread(target=create, args=(chunk,)) for chunk in chunks]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def insert_submitted(engine: Engine, job_ids: list[str]) -> None:
    """The jobs as `submit` leaves them: `submitted`, their task id known, no poll yet."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tryon_jobs (job_id, state, priority, attempts, retries,"
                " create_pending, polls, conflicts, resubmissions, lingering, created_at,"
                " updated_at, submitted_at, kling_task_id, metadata)"
                " SELECT id, 'submitted', 0, 1, 0, false, 0, 0, 0, false,"
                " extract(epoch from now()), extract(epoch from now()),"
                " extract(epoch from now()), id, '{}' FROM unnest(CAST(:ids AS text[])) AS id"
            ),
            {"ids": job_ids},
        )


def tracking_memory(sizes: Sizes, tmp: Path) -> dict[str, Any]:
    """RSS of one worker (pool of 2) over time while `sizes.tracked` jobs are tracked."""
    from kolors_tryon.tasks.delays import send_later
    from kolors_tryon.worker import create_app

    job_ids = [f"tracked-{i:06d}" for i in range(sizes.tracked)]
    interval = str(sizes.track_interval)
    env = {"TRYON_TRACK_FIRST_DELAY": interval, "TRYON_TRACK_INTERVAL_MAX": interval}
    samples: list[tuple[float, int, int]] = []
    with emulator_process(tmp, concurrency=NO_LIMIT, duration=3600) as emulator:
        make_tasks(emulator, job_ids)
        with deployment_on(tmp / "tracking", emulator, env) as deployment:
            store = deployment.store()
            insert_submitted(store.engine, job_ids)
            store.dispose()
            worker = deployment.start_worker(concurrency=2)
            pid = worker.process.pid
            idle = []
            for _ in range(5):
                idle.append(rss_bytes(pid))
                time.sleep(0.5)
            app = create_app(deployment.settings)
            rng = random.Random(11)
            started = time.monotonic()

            def send_all() -> None:
                for job_id in job_ids:
                    delay = rng.uniform(1, sizes.track_interval)
                    send_later(app, TaskName.TRACK, args=[job_id, 0], delay=delay)

            sender = threading.Thread(target=send_all)
            sender.start()
            while (elapsed := time.monotonic() - started) < sizes.sample_seconds:
                samples.append((elapsed, rss_bytes(pid), int(emulator.stats()["queries"])))
                time.sleep(1.0)
            sender.join()
            queries = int(emulator.stats()["queries"])
    return _memory_figures(sizes, statistics.median(idle), samples, queries, tmp)


def _memory_figures(
    sizes: Sizes, idle: float, samples: list[tuple[float, int, int]], queries: int, tmp: Path
) -> dict[str, Any]:
    steady = [(t, rss) for t, rss, _ in samples if t >= sizes.track_interval / 2]
    times = [t for t, _ in steady]
    rss = [r for _, r in steady]
    slope = statistics.linear_regression(times, rss).slope if len(steady) > 2 else 0.0
    mb = 1024 * 1024
    return {
        "tracked_jobs": sizes.tracked,
        "poll_interval_s": sizes.track_interval,
        "status_queries": queries,
        "rss_idle_mb": round(idle / mb, 1),
        "rss_max_mb": round(max(r for _, r, _ in samples) / mb, 1),
        "rss_end_mb": round(samples[-1][1] / mb, 1),
        "end_vs_idle": round(samples[-1][1] / idle, 3),
        "slope_mb_per_min": round(slope * 60 / mb, 2),
        "samples": [(round(t, 1), round(r / mb, 1), q) for t, r, q in samples],
    }


# ----------------------------------------------------------------- the benchmark -------
def run(sizes: Sizes, out_dir: Path, tmp: Path) -> dict[str, Any]:
    """The claim curve, then the tracking memory run; figures, plans and plots."""
    figures: dict[str, Any] = {"claim": claim_curve(sizes)}
    points = figures["claim"]["points"]

    def draw_claims(axes: Any) -> None:
        backlogs = [p["backlog"] for p in points]
        axes.plot(backlogs, [p["claim_ms_p50"] for p in points], "o-", label="p50")
        axes.plot(backlogs, [p["claim_ms_p99"] for p in points], "s--", label="p99")
        axes.set_xscale("log")
        axes.set_ylim(bottom=0)

    plot(
        out_dir / "backlog_claim.png",
        draw_claims,
        title=f"claim of {SLOTS} slots on PostgreSQL",
        xlabel="queued jobs (log scale)",
        ylabel="ms per claim",
    )
    if sizes.tracked:
        memory = tracking_memory(sizes, tmp)
        samples = memory.pop("samples")
        figures["tracking_memory"] = memory

        def draw_memory(axes: Any) -> None:
            axes.plot([s[0] for s in samples], [s[1] for s in samples], label="worker RSS (MB)")
            axes.set_ylim(bottom=0)
            twin = axes.twinx()
            twin.plot([s[0] for s in samples], [s[2] for s in samples], "g:", label="queries")
            twin.set_ylabel("status queries so far")

        plot(
            out_dir / "backlog_memory.png",
            draw_memory,
            title=f"worker (pool of 2) tracking {sizes.tracked} jobs",
            xlabel="seconds since the track messages started",
            ylabel="resident memory, MB",
        )
    write_result(out_dir, NAME, sizes, figures)
    return figures
