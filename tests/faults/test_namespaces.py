"""Two deployments with different TRYON_NAMESPACE on one RabbitMQ vhost stay apart.

Celery's delayed-delivery exchanges (`celery_delayed_*`) belong to the vhost, not to a
deployment: every retry, poll and wait of both deployments travels through the same
ones. With routing keys alike in every namespace, the other deployment received them,
and a delayed intake (a job put off by a store outage, the job's text and photos inside)
was recorded and created on the other deployment's account. Here both deployments run
side by side on the default vhost, each with its own emulator (its own "account"), both
retrying creates (1302 and 1303 answers), and the first one's store cut for a few
seconds while its jobs arrive; then each emulator and each store is counted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from kombu import Connection

from harness import (
    Deployment,
    TcpProxy,
    delete_topology,
    figures,
    own_vhost,
    publish_jobs,
    queue_messages,
    rabbit_deployment_on,
    rabbitmq_url,
    running_emulator,
    wait_all_terminal,
    wait_until,
)
from kolors_tryon.config.celery import DELAYED_DISCARD_QUEUE
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.store import JobStore
from kolors_tryon.tasks.delays import send_later
from kolors_tryon.worker import create_app

JOBS = 12  # per deployment; half of the first one's arrive while its store is away
OUTAGE = 6.0  # seconds: longer than the outage backoff (TRYON_OUTAGE_RETRY_MAX=5 in tests)
# Both accounts answer a share of creates 1302 (throttled) and, with fewer slots than
# the deployment believes it has, 1303 (busy): creates are retried as delayed messages.
KNOBS = {"throttle_rate": 0.3, "concurrency_limit": 2, "retry_after": 1.0}
# What a worker logs as it puts an intake off for a store outage (a delayed intake).
PUT_OFF = "tryon.intake: the job store or broker does not answer"


@contextmanager
def side_by_side(tmp: Path) -> Iterator[list[tuple[Deployment, EmulatorServer]]]:
    """Two deployments (namespaces, databases, emulators of their own) on one vhost."""
    with ExitStack() as stack:
        pairs: list[tuple[Deployment, EmulatorServer]] = []
        for name in ("a", "b"):
            (tmp / name).mkdir()
            emulator = stack.enter_context(running_emulator(task_duration=1.0))
            emulator.configure(seed=len(pairs) + 7, **KNOBS)
            deployment = stack.enter_context(rabbit_deployment_on(tmp / name, emulator))
            deployment.env["TRYON_MAX_IN_FLIGHT"] = "4"
            pairs.append((deployment, emulator))
        yield pairs


@contextmanager
def store_behind_proxy(deployment: Deployment) -> Iterator[TcpProxy]:
    """The deployment's workers reach PostgreSQL through a proxy the test can cut."""
    parts = urlsplit(deployment.env["TRYON_DATABASE_URL"])
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}"
    deployment.env["TRYON_DATABASE_URL"] = urlunsplit(parts._replace(netloc=netloc))
    try:
        yield proxy
    finally:
        proxy.close()


def all_job_ids(store: JobStore) -> set[str]:
    """Every job the store has recorded, whoever published it."""
    return {record.job_id for record in store.jobs.oldest_first(limit=10_000)}


@pytest.mark.slow  # a minute or more: make test starts it first
def test_two_namespaces_on_one_vhost_never_run_each_others_delayed_messages(
    tmp_path: Path,
) -> None:
    """Retries and delayed intakes in both: zero foreign creates, zero foreign records."""
    with side_by_side(tmp_path) as [(a, emulator_a), (b, emulator_b)]:
        direct_a, direct_b = a.store(), b.store()  # the test's own view, not proxied
        try:
            with store_behind_proxy(a) as proxy:
                a.start_worker()
                b.start_worker()
                ids_b = publish_jobs(b.settings, JOBS, "bee")
                ids_a = publish_jobs(a.settings, JOBS // 2, "ant-before")
                wait_until(lambda: len(all_job_ids(direct_a)) == JOBS // 2, 60, what="a's intake")
                proxy.cut()
                cut_at = time.monotonic()
                ids_a += publish_jobs(a.settings, JOBS - JOBS // 2, "ant-during")
                time.sleep(OUTAGE)
                # Away until a's intake has met the outage (and put its jobs off as a
                # delayed message), however slowly a loaded machine gets there.
                wait_until(lambda: PUT_OFF in a.workers[0].log_text(), 120, what="a put-off")
                proxy.restore()
                outage = time.monotonic() - cut_at
                records_a = wait_all_terminal(direct_a, ids_a, 240)
                records_b = wait_all_terminal(direct_b, ids_b, 240)
                recorded_a, recorded_b = all_job_ids(direct_a), all_job_ids(direct_b)
        finally:
            direct_a.dispose()
            direct_b.dispose()
        stats_a, stats_b = emulator_a.stats(), emulator_b.stats()
        log_a = a.workers[0].log_text()

    # Delayed messages flowed in both deployments: API retries, and a's put-off intakes.
    retried_a = sum(stats_a["answers_by_code"].get(code, 0) for code in ("1302", "1303"))
    retried_b = sum(stats_b["answers_by_code"].get(code, 0) for code in ("1302", "1303"))
    assert retried_a > 0 and retried_b > 0, (stats_a["answers_by_code"], stats_b["answers_by_code"])
    assert PUT_OFF in log_a
    # Each deployment ran its own jobs, once each, on its own account...
    assert {str(r.state) for r in records_a.values()} == {"succeeded"}
    assert {str(r.state) for r in records_b.values()} == {"succeeded"}
    assert stats_a["tasks_by_external_id"] == dict.fromkeys(ids_a, 1)
    assert stats_b["tasks_by_external_id"] == dict.fromkeys(ids_b, 1)
    # ...and nothing of the other's: no foreign record, no foreign create.
    assert recorded_a == set(ids_a)
    assert recorded_b == set(ids_b)
    foreign_creates = len(set(stats_a["tasks_by_external_id"]) - set(ids_a)) + len(
        set(stats_b["tasks_by_external_id"]) - set(ids_b)
    )
    figures(
        "namespaces-one-vhost",
        jobs_per_deployment=JOBS,
        store_outage_s=round(outage, 1),
        put_off_intakes=log_a.count(PUT_OFF),
        retried_creates_a=retried_a,
        retried_creates_b=retried_b,
        foreign_creates=foreign_creates,
        foreign_records=len(recorded_a - set(ids_a)) + len(recorded_b - set(ids_b)),
    )


DELAYED = 100  # delayed messages sent to a deployment that has gone, in each phase


def delayed_held(vhost: str) -> int:
    """Messages the vhost's delayed queues hold, waiting or kept for dead-lettering."""
    return sum(queue_messages(vhost, "celery_delayed_").values())


def test_delayed_messages_of_a_deployment_that_has_gone_are_dropped_not_kept(
    tmp_path: Path, emulator: EmulatorServer
) -> None:
    """A gone namespace's delayed messages are dropped; without the discard queue they stay."""
    with own_vhost("gone") as vhost, rabbit_deployment_on(tmp_path, emulator) as deployment:
        deployment.start_worker()  # declares the delayed queues and the discard queue
        deployment.stop_all()
        settings = deployment.settings
        delete_topology(settings)  # the deployment's queues and exchanges: it has gone
        app = create_app(settings)
        try:
            for n in range(DELAYED):
                send_later(app, TaskName.TRACK, args=[f"gone-{n}", 0], delay=1)
            started = time.monotonic()
            wait_until(lambda: delayed_held(vhost) == 0, 60, what="the delayed queues to empty")
            dropped_in = time.monotonic() - started
            # The same without the discard queue: at-least-once dead-lettering keeps them all
            # (the vhost's delayed delivery stalls once enough are kept).
            with Connection(rabbitmq_url()) as connection:
                channel: Any = connection.channel()
                channel.queue_delete(DELAYED_DISCARD_QUEUE)
            for n in range(DELAYED):
                send_later(app, TaskName.TRACK, args=[f"gone-{n}", 0], delay=1)
            time.sleep(5)  # five times their delay: any that could go has gone
            kept = delayed_held(vhost)
        finally:
            app.close()
    # All kept: at-least-once dead-lettering holds a message in its source queue until the
    # next one confirms it, so one in transit is counted in both.
    assert kept >= DELAYED
    figures(
        "delayed-of-a-gone-deployment",
        sent=DELAYED,
        dropped_in_s=round(dropped_in, 1),
        kept_without_discard=kept,
    )
