"""The review console's pages with 1,000,000 jobs in PostgreSQL (issue 21: under 200 ms).

The store is filled in one INSERT ... SELECT over generate_series (about a minute for a
million rows with the table's indexes; run it once or twice, the machine is shared):
30 days of jobs, 90 % succeeded, 5 % failed, 4 % rejected, the newest 1 % still queued,
each with metadata {"sku": ...}. Then a real `tryon web` with the console open answers
each page `REPEATS` times through a logged-in session; the baseline is `/healthz` of the
same process in the same run (the HTTP stack, the event loop and the thread pool, no
query), so every figure is also a ratio against it.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import requests

from bench.common import ms, write_result
from console_service import Session, console_env, login
from harness import fresh_database, rabbitmq_url
from harness.deployment import base_env
from kolors_tryon.store import JobStore
from web_service import web_process


@dataclass(frozen=True)
class Sizes:
    jobs: int
    repeats: int


NAME = "console"
FULL = Sizes(jobs=1_000_000, repeats=30)
QUICK = Sizes(jobs=20_000, repeats=10)
TINY = Sizes(jobs=500, repeats=2)  # tests/integration/test_bench_smoke.py

_DAYS = 30
# Every job's columns, computed from its number g (1 = the oldest).
_FILL = """
INSERT INTO tryon_jobs (
    job_id, state, priority, model_name, kling_task_id, images, error_code, error_message,
    attempts, retries, create_pending, polls, final_unit_deduction, metadata, conflicts,
    resubmissions, lingering, created_at, updated_at, submitted_at, finished_at)
SELECT
    'bench-' || g,
    s.state,
    0,
    'kolors-virtual-try-on-v1',
    CASE WHEN s.state IN ('succeeded', 'failed') THEN 'task-' || g END,
    CASE WHEN s.state = 'succeeded'
         THEN json_build_array(json_build_object('index', 0, 'url',
              'https://example.invalid/results/' || g || '.png'))
         ELSE '[]'::json END,
    CASE s.state WHEN 'failed' THEN 'kling_1301' WHEN 'rejected' THEN 'invalid_job' END,
    CASE s.state WHEN 'failed' THEN 'the task failed' WHEN 'rejected' THEN 'bad input' END,
    CASE WHEN s.state = 'queued' OR s.state = 'rejected' THEN 0 ELSE 1 END,
    0, false, 0,
    CASE WHEN s.state = 'succeeded' THEN '1' END,
    json_build_object('sku', 'SKU-' || (g %% 50000)),
    0, 0, false,
    t.created, t.created + 60,
    CASE WHEN s.state IN ('succeeded', 'failed') THEN t.created + 5 END,
    CASE WHEN s.state <> 'queued' THEN t.created + 60 END
FROM generate_series(1, %(n)s) AS g
CROSS JOIN LATERAL (
    SELECT %(now)s - %(span)s + g * (%(span)s / %(n)s) AS created) AS t
CROSS JOIN LATERAL (
    SELECT CASE
        WHEN g > %(n)s * 0.99 THEN 'queued'
        WHEN g %% 100 < 5 THEN 'failed'
        WHEN g %% 100 < 9 THEN 'rejected'
        ELSE 'succeeded' END AS state) AS s
"""


def _fill(database_url: str, jobs: int) -> float:
    """Create the schema and `jobs` rows; returns the seconds it took."""
    store = JobStore.from_url(database_url)
    store.create_schema()
    store.dispose()
    started = time.monotonic()
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as db:
        db.execute(_FILL, {"n": jobs, "now": time.time(), "span": _DAYS * 86400.0})
        db.commit()
        db.execute("ANALYZE tryon_jobs")
        db.commit()
    return time.monotonic() - started


def _median_ms(session: Session, path: str, repeats: int) -> tuple[float, int]:
    """The median time of `path`, and the rows (or tiles) its last answer showed: a page
    that answers fast because it shows nothing would be no figure at all."""
    times = []
    text = ""
    for _ in range(repeats):
        started = time.perf_counter()
        answer = session.get(path)
        times.append(time.perf_counter() - started)
        assert answer.status_code == 200, (path, answer.status_code)
        text = answer.text
    return ms(statistics.median(times)), text.count('data-job="') + text.count('class="tile"')


def _deep_cursor() -> str:
    """The cursor of a page deep in the table: the jobs of 20 days ago."""
    created = time.time() - 20 * 86400
    return f"{created!r}_{2**62}"


def run(sizes: Sizes, out_dir: Path, tmp: Path) -> dict[str, Any]:
    """Fill the store, start `tryon web`, time each console page against /healthz."""
    with fresh_database() as database_url:
        fill_seconds = _fill(database_url, sizes.jobs)
        env = {
            **base_env(tmp),
            **console_env(),
            "TRYON_DATABASE_URL": database_url,
            "TRYON_BROKER_URL": rabbitmq_url(),
            "TRYON_NAMESPACE": f"b{uuid.uuid4().hex[:10]}",
            "TRYON_LOG_LEVEL": "WARNING",
        }
        with web_process(env, tmp / "web.log") as url:
            session = login(url, "ana")
            some_job = f"bench-{sizes.jobs // 2}"
            pages = {
                "overview": "/console/",
                "jobs": "/console/jobs",
                "jobs_state_failed": "/console/jobs?state=failed",
                "jobs_deep_page": f"/console/jobs?after={_deep_cursor()}",
                "jobs_date_range": "/console/jobs?from=2000-01-01&to=2100-01-01",
                "jobs_error_code": "/console/jobs?error=kling_1301",
                "jobs_sku": "/console/jobs?field=sku&value=SKU-77",
                "gallery": "/console/jobs?view=gallery",
                "job": f"/console/jobs/{some_job}",
                "accounts": "/console/accounts",
            }
            for path in pages.values():  # warm: plans cached, pool connected
                session.get(path)
            health = requests.Session()
            baseline = []
            for _ in range(sizes.repeats):
                started = time.perf_counter()
                assert health.get(f"{url}/healthz", timeout=30).status_code == 200
                baseline.append(time.perf_counter() - started)
            healthz = ms(statistics.median(baseline))
            answers = {
                name: _median_ms(session, path, sizes.repeats) for name, path in pages.items()
            }
    timed = {name: value for name, (value, _) in answers.items()}
    figures: dict[str, Any] = {
        "jobs": sizes.jobs,
        "fill_seconds": round(fill_seconds, 1),
        "healthz_ms": healthz,
        "pages_ms": timed,
        "rows_shown": {name: rows for name, (_, rows) in answers.items()},
        "ratio_to_healthz": {name: round(value / healthz, 1) for name, value in timed.items()},
        "slowest_ms": max(timed.values()),
    }
    write_result(out_dir, NAME, sizes, figures)
    return figures
