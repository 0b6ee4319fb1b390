"""Latency at a light load: from enqueue to the create reaching the emulator, p50/p99.

Jobs are enqueued one at a time at a steady, light rate (well under the throughput),
with their images as URLs. The moment each create reached the API is the task's
`created_at` at the emulator (same machine, same clock).

Baseline: a direct `requests` POST of the same body at the same pace, timed from just
before the POST to the same `created_at`: what reaching the API costs without a queue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.common import (
    deployment_on,
    emulator_process,
    ms,
    percentile,
    photos_server,
    plot,
    url_job,
    write_result,
)
from bench.throughput import NO_END, NO_LIMIT, create_body, wait_submitted
from harness import TEST_API_KEY
from kolors_tryon import JobPublisher

NAME = "latency"


@dataclass(frozen=True)
class Sizes:
    """Jobs per run and the enqueue rate (jobs per second)."""

    jobs: int
    rate: float


FULL = Sizes(jobs=100, rate=10.0)
QUICK = Sizes(jobs=30, rate=10.0)
TINY = Sizes(jobs=5, rate=10.0)


def paced(count: int, rate: float) -> Any:
    """Yield 0..count-1, one every 1/rate seconds (steady, whatever each step took)."""
    started = time.monotonic()
    for i in range(count):
        time.sleep(max(0.0, started + i / rate - time.monotonic()))
        yield i


def summary(delays: list[float]) -> dict[str, float]:
    """p50, p99 and max of `delays`, in milliseconds."""
    return {
        "p50_ms": ms(percentile(delays, 50)),
        "p99_ms": ms(percentile(delays, 99)),
        "max_ms": ms(max(delays)),
    }


def run(sizes: Sizes, out_dir: Path, tmp: Path) -> dict[str, Any]:
    """Service latencies, then the direct POSTs, against one emulator."""
    with (
        emulator_process(tmp, concurrency=NO_LIMIT, duration=3600) as emulator,
        photos_server(tmp) as photos,
    ):
        enqueued: dict[str, float] = {}
        with deployment_on(tmp / "latency", emulator, NO_END) as deployment:
            deployment.start_worker(concurrency=2)
            store = deployment.store()
            try:
                with JobPublisher(deployment.settings) as publisher:
                    for i in paced(sizes.jobs, sizes.rate):
                        job = url_job(f"lat-{i:05d}", photos)
                        enqueued[job["job_id"]] = time.time()
                        publisher.publish(job)
                wait_submitted(store, sizes.jobs)
            finally:
                store.dispose()
        sent: dict[str, float] = {}
        url = f"{emulator.base_url}/v1/images/kolors-virtual-try-on"
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {TEST_API_KEY}"
            for i in paced(sizes.jobs, sizes.rate):
                body = create_body(url_job(f"direct-{i:05d}", photos))
                sent[body["external_task_id"]] = time.time()
                session.post(url, json=body, timeout=30).raise_for_status()
        tasks = emulator.tasks()

    def delays(starts: dict[str, float]) -> list[float]:
        return [(tasks[job_id].created_at or 0) / 1000 - at for job_id, at in starts.items()]

    service, direct = delays(enqueued), delays(sent)
    figures: dict[str, Any] = {
        "jobs": sizes.jobs,
        "rate_per_s": sizes.rate,
        "service": summary(service),
        "direct_post": summary(direct),
    }
    figures["p50_vs_direct"] = round(
        figures["service"]["p50_ms"] / max(figures["direct_post"]["p50_ms"], 0.1), 1
    )

    def draw(axes: Any) -> None:
        for label, values in (("service (enqueue)", service), ("direct POST", direct)):
            ordered = sorted(v * 1000 for v in values)
            axes.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)
        axes.set_xscale("log")

    plot(
        out_dir / "latency.png",
        draw,
        title=f"to the create at the API, {sizes.rate:g} jobs/s",
        xlabel="ms (log scale)",
        ylabel="fraction of jobs",
    )
    write_result(out_dir, NAME, sizes, figures)
    return figures
