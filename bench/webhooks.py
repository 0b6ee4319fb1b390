"""Webhook delivery: deliveries per second to a local receiver, and the delay from a
job's end to its webhook (p50/p99).

Jobs carry `callback_url` pointing at a local receiver (the test harness's
`WebhookReceiver`, an `http.server` that answers 204 at once; loopback is allowed with
TRYON_WEBHOOK_ALLOW_PRIVATE). The account limit is out of the picture and tasks are
short, so jobs end in a burst and their webhooks (one per state change, signed, durable)
queue up: the rate is the receiver's count of POSTs over the window they arrived in, and
the delay runs from each job's terminal record to the receipt of its terminal webhook.

Baseline: a plain `requests.Session.post` loop sending the same bodies to the same
receiver with as many threads as the worker has pool processes.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.common import deployment_on, emulator_process, ms, percentile, plot, write_result
from bench.throughput import NO_LIMIT
from harness import WebhookReceiver, sample_b64, wait_all_terminal, wait_until
from kolors_tryon import JobPublisher
from kolors_tryon.store.records import unix_seconds

NAME = "webhooks"
POOL = 2


@dataclass(frozen=True)
class Sizes:
    """Jobs whose webhooks are delivered."""

    jobs: int


FULL = Sizes(jobs=300)
QUICK = Sizes(jobs=60)
TINY = Sizes(jobs=5)


def publish_with_webhooks(deployment: Any, jobs: int, url: str) -> list[str]:
    """`jobs` valid jobs (sample photos as Base64) whose webhooks go to `url`."""
    human, cloth = sample_b64("human.jpg"), sample_b64("cloth-red.png")
    with JobPublisher(deployment.settings) as publisher:
        return [
            publisher.publish(
                {
                    "job_id": f"hook-{i:05d}",
                    "human_image": human,
                    "cloth_image": cloth,
                    "callback_url": url,
                }
            )
            for i in range(jobs)
        ]


def plain_loop(url: str, bodies: list[str], threads: int) -> float:
    """POSTs per second of a `requests.Session.post` loop with the same bodies."""
    numbers = itertools.count()
    lock = threading.Lock()

    def loop() -> None:
        with requests.Session() as session:
            while True:
                with lock:
                    i = next(numbers)
                if i >= len(bodies):
                    return
                session.post(
                    url,
                    data=bodies[i],
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                ).raise_for_status()

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return len(bodies) / (time.perf_counter() - started)


def run(sizes: Sizes, out_dir: Path, tmp: Path) -> dict[str, Any]:
    """A burst of job ends, their webhooks received and timed; then the plain loop."""
    receiver = WebhookReceiver().start()
    env = {
        "TRYON_MAX_IN_FLIGHT": str(NO_LIMIT),
        "TRYON_TRACK_FIRST_DELAY": "2",
        "TRYON_WEBHOOK_ALLOW_PRIVATE": "true",
    }
    try:
        with (
            emulator_process(tmp, concurrency=NO_LIMIT, duration=1.0) as emulator,
            deployment_on(tmp / "webhooks", emulator, env) as deployment,
        ):
            deployment.start_worker(concurrency=POOL)
            store = deployment.store()
            try:
                job_ids = publish_with_webhooks(deployment, sizes.jobs, receiver.url())
                records = wait_all_terminal(store, job_ids, timeout=600)
                terminal = {(j, str(r.state)) for j, r in records.items()}
                wait_until(
                    lambda: terminal <= set(receiver.delivered()),
                    300,
                    0.5,
                    "every terminal webhook",
                )
            finally:
                store.dispose()
        posts = receiver.posts()
        delivered = receiver.delivered()
        ends = {j: unix_seconds(r.finished_at) or 0.0 for j, r in records.items()}
        delays = [delivered[(j, str(records[j].state))].at - end for j, end in ends.items()]
        window = max(p.at for p in posts) - min(p.at for p in posts)
        rate = len(posts) / window if window > 0 else float("nan")
        plain = plain_loop(receiver.url("/plain"), [p.body for p in posts], POOL)
    finally:
        receiver.stop()
    figures: dict[str, Any] = {
        "jobs": sizes.jobs,
        "deliveries": len(posts),
        "deliveries_per_job": round(len(posts) / sizes.jobs, 2),
        "deliveries_per_s": round(rate, 1),
        "plain_loop_posts_per_s": round(plain, 1),
        "ratio": round(rate / plain, 3),
        "delay_p50_ms": ms(percentile(delays, 50)),
        "delay_p99_ms": ms(percentile(delays, 99)),
        "delay_max_ms": ms(max(delays)),
    }

    def draw(axes: Any) -> None:
        ordered = sorted(d * 1000 for d in delays)
        axes.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))])

    plot(
        out_dir / "webhooks.png",
        draw,
        title=f"{sizes.jobs} jobs: job's end to its terminal webhook",
        xlabel="ms",
        ylabel="fraction of jobs",
    )
    write_result(out_dir, NAME, sizes, figures)
    return figures
