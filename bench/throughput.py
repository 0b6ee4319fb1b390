"""Submission throughput: jobs per second from enqueue to `submitted`, against a plain loop.

The account limit is taken out of the picture (emulator concurrency and
TRYON_MAX_IN_FLIGHT far above the backlog, tasks that outlast the run, tracking pushed
past its end), so what is measured is the service's own path: intake, validation, the
store's writes, the slot claim, the create, the events. Images are URLs served by a
local `http.server`, which the emulator fetches on every create, as Kling would.

Baseline: a plain `requests.Session.post` loop sending the same bodies to the same
emulator with as many threads as the worker has pool processes. The profile runs one
worker with the solo pool under pyinstrument and says where a job's time goes.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import event

from bench.common import (
    EmulatorProcess,
    deployment_on,
    emulator_process,
    photos_server,
    plot,
    url_job,
    write_result,
)
from harness import TEST_API_KEY, Deployment, wait_until
from kolors_tryon import JobPublisher
from kolors_tryon.config import defaults
from kolors_tryon.jobs import validate_job
from kolors_tryon.pipeline import (
    Runtime,
    dispatch,
    intake,
    intake_many,
    submit_batch,
    submit_job,
)
from kolors_tryon.store import JobStore
from kolors_tryon.store.records import unix_seconds

NAME = "throughput"
TARGET_RATIO = 0.5
#: Far above any backlog here: the account limit plays no part.
NO_LIMIT = 100_000
#: Tasks outlast the run and tracking starts after it, so only submission is measured.
NO_END = {"TRYON_TRACK_FIRST_DELAY": "3600", "TRYON_MAX_IN_FLIGHT": str(NO_LIMIT)}


@dataclass(frozen=True)
class Sizes:
    """How many jobs per run, the pool sizes compared, and the profiled jobs."""

    jobs: int
    pools: tuple[int, ...]
    profile_jobs: int


FULL = Sizes(jobs=2000, pools=(1, 2), profile_jobs=200)
QUICK = Sizes(jobs=150, pools=(1, 2), profile_jobs=0)  # the profile runs at full size only
TINY = Sizes(jobs=20, pools=(1,), profile_jobs=0)


def publish(deployment: Deployment, jobs: list[dict[str, Any]]) -> None:
    """Enqueue the jobs over one confirmed connection, as a producer does."""
    with JobPublisher(deployment.settings) as publisher:
        for job in jobs:
            publisher.publish(job)


def wait_submitted(store: JobStore, count: int, timeout: float = 900) -> None:
    """Until `count` jobs have left `queued`/`submitting` (all of them, or it fails)."""

    def done() -> bool:
        states = store.jobs.count_by_state()
        return states.get("submitted", 0) + states.get("processing", 0) >= count

    wait_until(done, timeout, 0.25, f"{count} jobs to be submitted")


def service_run(
    tmp: Path, emulator: EmulatorProcess, photos: str, jobs: int, pool: int
) -> dict[str, Any]:
    """One worker with `pool` pool processes takes `jobs` URL jobs to `submitted`."""
    emulator.reset()
    with deployment_on(tmp / f"pool-{pool}", emulator, NO_END) as deployment:
        deployment.start_worker(concurrency=pool)
        store = deployment.store()
        try:
            batch = [url_job(f"tp{pool}-{i:05d}", photos) for i in range(jobs)]
            started = store.now()
            publish(deployment, batch)
            published = store.now() - started
            wait_submitted(store, jobs)
            records = store.jobs.oldest_first(limit=jobs + 10)
        finally:
            store.dispose()
    submitted = sorted(unix_seconds(r.submitted_at) or 0.0 for r in records)
    elapsed = submitted[-1] - started
    stats = emulator.stats()
    return {
        "jobs_per_s": round(jobs / elapsed, 1),
        "elapsed_s": round(elapsed, 2),
        "publish_s": round(published, 2),
        "creates": stats["creates"],
        "answers_1303": stats["answers_by_code"].get("1303", 0),
        "timeline": [round(t - started, 3) for t in submitted],
    }


def store_cost_per_job(deployment: Deployment, photos: str, jobs: int) -> dict[str, Any]:
    """Store queries and commits per job on the path the tasks take, counted in process.

    The Celery-free core is called as the tasks call it, with listeners on the store's
    engine: one by one (`tryon.intake` per message, a dispatch each, `tryon.submit` per
    claim: how every job went before batching, and how a lone job still goes), and
    batched (a batch intake of `INTAKE_BATCH_MAX` messages, one dispatch, and the same
    run's submit batches of `SUBMIT_BATCH_MAX`). The broker's part is counted from the
    code: one by one, six confirmed publishes (intake, submit and track messages; queued,
    submitting and submitted events); batched, the same three events per job, a share of
    the intake message and of one `tryon.track_batch` per submit batch, all in one
    transaction per intake run.
    """
    rt = Runtime.from_settings(deployment.settings)
    counts = {"queries": 0, "commits": 0}

    def query(*_: Any) -> None:
        counts["queries"] += 1

    def commit(*_: Any) -> None:
        counts["commits"] += 1

    def per_job(run: Any) -> dict[str, float]:
        counts.update(queries=0, commits=0)
        run()
        return {k: round(v / jobs, 1) for k, v in counts.items()}

    def one_by_one() -> None:
        for i in range(jobs):
            intake(rt, json.dumps(url_job(f"cost1-{i:05d}", photos)))
            for claim in dispatch(rt):
                submit_job(rt, claim.job_id, owner=claim.owner)

    def batched() -> None:
        for start in range(0, jobs, defaults.INTAKE_BATCH_MAX):
            numbers = range(start, min(jobs, start + defaults.INTAKE_BATCH_MAX))
            intake_many(rt, [json.dumps(url_job(f"costb-{i:05d}", photos)) for i in numbers])
            claims = dispatch(rt)
            for first in range(0, len(claims), defaults.SUBMIT_BATCH_MAX):
                submit_batch(rt, claims[first : first + defaults.SUBMIT_BATCH_MAX])

    event.listen(rt.store.engine, "before_cursor_execute", query)
    event.listen(rt.store.engine, "commit", commit)
    try:
        single, batch = per_job(one_by_one), per_job(batched)
    finally:
        rt.close()
    runs_per_job = 1 / defaults.INTAKE_BATCH_MAX  # one task run, one commit, per intake
    shared_per_job = runs_per_job + 1 / defaults.SUBMIT_BATCH_MAX  # + its track_batch
    return {
        "one_by_one": {
            "store_queries": single["queries"],
            "store_commits": single["commits"],
            "broker_messages": 6,
            "broker_round_trips": 6,
        },
        "batched": {
            "store_queries": batch["queries"],
            "store_commits": batch["commits"],
            "broker_messages": round(3 + shared_per_job, 2),
            "broker_round_trips": round(runs_per_job, 2),
        },
    }


def create_body(job: dict[str, Any]) -> dict[str, str]:
    """The create body the worker sends for `job` (what validation makes of it)."""
    return validate_job(job).body.to_request()


def plain_loop(emulator: EmulatorProcess, photos: str, jobs: int, threads: int) -> dict[str, Any]:
    """The baseline: `threads` threads, each a `requests.Session.post` loop, same bodies."""
    emulator.reset()
    bodies = [create_body(url_job(f"plain{threads}-{i:05d}", photos)) for i in range(jobs)]
    url = f"{emulator.base_url}/v1/images/kolors-virtual-try-on"
    headers = {"Authorization": f"Bearer {TEST_API_KEY}"}
    numbers = itertools.count()
    lock = threading.Lock()
    codes: Counter[int] = Counter()

    def loop() -> None:
        with requests.Session() as session:
            while True:
                with lock:
                    i = next(numbers)
                if i >= jobs:
                    return
                answer = session.post(url, json=bodies[i], headers=headers, timeout=30)
                codes[int(answer.json()["code"])] += 1

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    started = time.time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.time() - started
    created = sorted((t.created_at or 0) / 1000 for t in emulator.tasks().values())
    return {
        "jobs_per_s": round(jobs / elapsed, 1),
        "elapsed_s": round(elapsed, 2),
        "answers": {str(code): n for code, n in codes.items()},
        "timeline": [round(t - started, 3) for t in created],
    }


# ----------------------------------------------------------------- profile -------------
@contextmanager
def profiled_worker(deployment: Deployment, session_file: Path) -> Iterator[None]:
    """A solo-pool worker under pyinstrument: every task runs in the profiled process."""
    log = deployment.data_dir / "profiled-worker.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "pyinstrument", "-r", "pyisession"),
                *("-o", str(session_file), "-m", "kolors_tryon.cli", "worker"),
                *("--pool=solo", "--without-gossip", "--without-mingle", "--without-heartbeat"),
            ],
            env=deployment.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=deployment.data_dir,
        )

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the profiled worker exited:\n{log.read_text()[-3000:]}")
        return " ready." in log.read_text(errors="replace")

    try:
        wait_until(ready, 90, 0.3, "the profiled worker")
        yield
    finally:
        process.send_signal(signal.SIGINT)  # warm shutdown; pyinstrument then writes
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def library_of(path: str) -> str:
    """The library (or our subpackage) a source file belongs to."""
    if "kolors_tryon/" in path:
        rest = path.split("kolors_tryon/", 1)[1]
        return "kolors_tryon." + rest.split("/", 1)[0].removesuffix(".py")
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    return "stdlib"


#: Libraries, grouped by what they do for a job.
GROUPS = {
    "store (SQLAlchemy, psycopg, PostgreSQL round trips)": ("sqlalchemy", "psycopg"),
    "broker (kombu, amqp, RabbitMQ round trips and confirms)": ("kombu", "amqp", "vine"),
    "Celery (message handling, tracing)": ("celery", "billiard", "click"),
    "Kling HTTP (requests, urllib3, the emulator's answer)": ("requests", "urllib3"),
    "validation (pydantic, Pillow)": ("pydantic", "pydantic_core", "PIL"),
}


def where_time_goes(session_file: Path) -> dict[str, float]:
    """Shares of the profiled worker's busy time, by what the time was spent on.

    Each sample is charged to the innermost frame that is not the standard library, so
    that a blocking socket read counts for whoever waited on it (psycopg waiting for
    PostgreSQL is store time). Samples in the worker's idle loop (waiting for the next
    message) are left out: they are the time it had nothing to do.
    """
    from pyinstrument.session import Session

    session = Session.load(str(session_file))
    root = session.root_frame()
    charged: dict[str, float] = {}
    stack: list[tuple[Any, str]] = [(root, "stdlib")] if root is not None else []
    while stack:
        frame, owner = stack.pop()
        library = library_of(frame.file_path or "")
        if library != "stdlib":
            owner = library
        if (frame.file_path or "").endswith("kombu/utils/eventio.py"):
            owner = "idle"  # the event loop's poll: waiting for the next message
        own = frame.time - sum(child.time for child in frame.children)
        charged[owner] = charged.get(owner, 0.0) + own
        stack.extend((child, owner) for child in frame.children)
    charged.pop("idle", None)
    busy = sum(charged.values()) or 1.0
    shares: dict[str, float] = {}
    for library, seconds in charged.items():
        group = next((g for g, libs in GROUPS.items() if library in libs), None)
        if group is None:
            group = "our code (kolors_tryon)" if library.startswith("kolors_tryon") else "other"
        shares[group] = shares.get(group, 0.0) + seconds / busy
    ranked = sorted(shares.items(), key=lambda item: -item[1])
    return {group: round(share, 3) for group, share in ranked}


def profile_run(
    tmp: Path, emulator: EmulatorProcess, photos: str, jobs: int, out_dir: Path
) -> dict[str, Any]:
    """`jobs` URL jobs through a solo worker under pyinstrument; the shares of its time."""
    emulator.reset()
    session_file = tmp / "worker.pyisession"
    with deployment_on(tmp / "profile", emulator, NO_END) as deployment:
        store = deployment.store()
        try:
            with profiled_worker(deployment, session_file):
                started = time.time()
                publish(deployment, [url_job(f"prof-{i:05d}", photos) for i in range(jobs)])
                wait_submitted(store, jobs)
                elapsed = time.time() - started
        finally:
            store.dispose()
    shares = where_time_goes(session_file)
    _text_report(session_file, out_dir / "throughput_profile.txt")
    return {"jobs": jobs, "jobs_per_s_profiled": round(jobs / elapsed, 1), "shares": shares}


def _text_report(session_file: Path, target: Path) -> None:
    """pyinstrument's own call tree of the profiled worker, kept beside the figures."""
    subprocess.run(
        [
            *(sys.executable, "-m", "pyinstrument", "--load", str(session_file)),
            *("-r", "text", "--no-color", "--unicode", "-o", str(target)),
        ],
        check=True,
    )


# ----------------------------------------------------------------- the benchmark -------
def run(sizes: Sizes, out_dir: Path, tmp: Path) -> dict[str, Any]:
    """Service runs and plain loops for each pool size, then the profile."""
    figures: dict[str, Any] = {"jobs": sizes.jobs, "target_ratio": TARGET_RATIO}
    timelines: dict[str, list[float]] = {}
    with (
        emulator_process(tmp, concurrency=NO_LIMIT, duration=3600) as emulator,
        photos_server(tmp) as photos,
    ):
        for pool in sizes.pools:
            service = service_run(tmp, emulator, photos, sizes.jobs, pool)
            plain = plain_loop(emulator, photos, sizes.jobs, pool)
            timelines[f"service, {pool} process(es)"] = service.pop("timeline")
            timelines[f"plain loop, {pool} thread(s)"] = plain.pop("timeline")
            figures[f"pool_{pool}"] = {
                "service": service,
                "plain_loop": plain,
                "ratio": round(service["jobs_per_s"] / plain["jobs_per_s"], 3),
            }
        emulator.reset()
        with deployment_on(tmp / "cost", emulator, NO_END) as deployment:
            figures["cost_per_job"] = store_cost_per_job(deployment, photos, 50)
        if sizes.profile_jobs:
            figures["profile"] = profile_run(tmp, emulator, photos, sizes.profile_jobs, out_dir)

    def draw(axes: Any) -> None:
        for label, times in timelines.items():
            axes.plot(times, range(1, len(times) + 1), label=label)

    plot(
        out_dir / "throughput.png",
        draw,
        title=f"{sizes.jobs} URL jobs: enqueue to submitted",
        xlabel="seconds since the first enqueue",
        ylabel="jobs submitted",
    )
    write_result(out_dir, NAME, sizes, figures)
    return figures
