"""Several `tryon worker` on one machine: each a node of its own, all consuming, all pinged.

Celery's default node name is `celery@<host>` and its control queue is exclusive to a
node name: before each worker had a name of its own, the second worker of a machine
looped on RESOURCE_LOCKED and consumed nothing. Real workers started with no argument
at all, against the real RabbitMQ, PostgreSQL and the emulator over HTTP.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from kombu import Connection

from harness import (
    Deployment,
    assert_one_task_per_job,
    publish_jobs,
    rabbitmq_url,
    states,
    wait_all_terminal,
)
from kolors_tryon.config.celery import topology_for
from kolors_tryon.emulator import EmulatorServer

WORKERS = 3
JOBS = 30


def consumers(queue: str) -> int:
    """How many consumers RabbitMQ counts on `queue`."""
    with Connection(rabbitmq_url()) as connection:
        channel: Any = connection.channel()
        return int(channel.queue_declare(queue, passive=True).consumer_count)


@pytest.mark.slow  # a minute or more: make test starts it first
def test_three_workers_with_no_arguments_all_consume_and_answer_a_ping(
    rabbit_deployment: Deployment, emulator: EmulatorServer
) -> None:
    """Three bare `tryon worker` on one host get distinct nodes, each runs jobs, three pongs."""
    workers = [rabbit_deployment.start_worker(args=[]) for _ in range(WORKERS)]
    nodes = [worker.node_name() for worker in workers]
    namespace = rabbit_deployment.settings.namespace
    assert len(set(nodes)) == WORKERS, nodes
    for worker, node in zip(workers, nodes, strict=True):
        # `<namespace>-<pid>-<4 hex>@<host>`: the pid is the worker's own process.
        assert re.fullmatch(rf"{namespace}-{worker.process.pid}-[0-9a-f]{{4}}@\S+", node), node

    topology = topology_for(rabbit_deployment.settings)
    for queue in (topology.jobs_queue_name, *(q.name for q in topology.task_queues)):
        assert consumers(queue) == WORKERS, queue

    job_ids = publish_jobs(rabbit_deployment.settings, JOBS, "nodes")
    store = rabbit_deployment.store()
    try:
        records = wait_all_terminal(store, job_ids, 180)
    finally:
        store.dispose()
    assert states(records) == {"succeeded": JOBS}
    assert_one_task_per_job(emulator, job_ids)
    for worker in workers:
        log = worker.log_text()
        assert "Task tryon." in log and "received" in log, worker.name
        assert "RESOURCE_LOCKED" not in log, worker.name

    answer = rabbit_deployment.tryon("ping", "--json", "--timeout", "5")
    assert answer.returncode == 0, answer.stderr
    assert sorted(json.loads(answer.stdout)["nodes"]) == sorted(nodes)
    here = rabbit_deployment.tryon("ping", "--this-host")
    assert here.returncode == 0, here.stderr
    assert sorted(line.split(": ")[0] for line in here.stdout.splitlines()) == sorted(nodes)
