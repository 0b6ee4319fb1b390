"""Producers on the real service: isolation at every door, and fair shares of the account.

RabbitMQ, PostgreSQL, real workers, `tryon web` and the Kling emulator; two producers in
each test. Nothing of ours is mocked.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from kombu import Connection

from harness import (
    TEST_API_KEY,
    Deployment,
    rabbit_deployment_on,
    running_emulator,
    sample_b64,
    wait_until,
)
from kolors_tryon import JobPublisher
from kolors_tryon.config.celery import topology_for
from kolors_tryon.config.producers import job_key
from kolors_tryon.emulator import EmulatorServer
from web_service import web_process

KEY_A1, KEY_A2, KEY_B, KEY_DEFAULT = "key-a-one-0123", "key-a-two-4567", "key-b-89ab", "key-bare"
API_KEYS = f"shop-a:{KEY_A1},shop-a:{KEY_A2},shop-b:{KEY_B},{KEY_DEFAULT}"


def job(job_id: str, cloth: str = "cloth-red.png", **extra: Any) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "human_image": sample_b64("human.jpg"),
        "cloth_image": sample_b64(cloth),
        **extra,
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, str]]:
    """An emulator, a RabbitMQ namespace + database, a worker and `tryon web` with the keys
    of two producers and a bare key."""
    tmp = tmp_path_factory.mktemp("producers")
    with running_emulator(0.5) as server, rabbit_deployment_on(tmp, server) as deployment:
        deployment.env["TRYON_API_KEYS"] = API_KEYS
        deployment.start_worker(concurrency=2)
        with web_process(deployment.env, tmp / "web.log") as url:
            yield deployment, url


def _get(url: str, job_id: str, key: str) -> requests.Response:
    return requests.get(
        f"{url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def _post(url: str, body: Any, key: str) -> requests.Response:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return requests.post(f"{url}/v1/jobs", data=json.dumps(body), headers=headers, timeout=30)


def _ended(url: str, job_id: str, key: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def ended() -> bool:
        answer = _get(url, job_id, key)
        if answer.status_code == 200:
            found.update(answer.json())
        return found.get("state") in ("succeeded", "failed", "rejected")

    wait_until(ended, 90, 0.3, f"job {job_id} to end")
    return found


def test_two_producers_use_one_job_id_without_seeing_each_other(
    stack: tuple[Deployment, str],
) -> None:
    """shop-a and shop-b post the same job id (other content): both run, each reads its
    own record (any of its keys), the other producer and `default` get 404."""
    deployment, url = stack
    job_id = f"same-{uuid.uuid4().hex[:8]}"
    assert _post(url, job(job_id), KEY_A1).status_code == 202
    answer_b = _post(url, job(job_id, cloth="cloth-blue.png"), KEY_B)
    assert answer_b.status_code == 202 and answer_b.json() == {"job_id": job_id}

    record_a, record_b = _ended(url, job_id, KEY_A2), _ended(url, job_id, KEY_B)
    assert record_a["state"] == record_b["state"] == "succeeded", (
        record_a["error"],
        record_b["error"],
    )
    assert (record_a["producer"], record_b["producer"]) == ("shop-a", "shop-b")
    assert record_a["job_id"] == record_b["job_id"] == job_id
    assert record_a["kling_task_id"] != record_b["kling_task_id"]
    assert record_a["conflicts"] == record_b["conflicts"] == 0
    assert _get(url, job_id, KEY_DEFAULT).status_code == 404

    only_a = f"only-a-{uuid.uuid4().hex[:8]}"
    assert _post(url, job(only_a), KEY_A1).status_code == 202
    assert _ended(url, only_a, KEY_A1)["state"] == "succeeded"
    refused = _get(url, only_a, KEY_B)
    unknown = _get(url, f"never-{uuid.uuid4().hex[:8]}", KEY_B)
    assert refused.status_code == unknown.status_code == 404
    assert refused.json() == unknown.json()  # the same answer as a job that never was

    # The CLI reads as TRYON_PRODUCER: shop-a's record, and shop-b's, never the other's.
    deployment.env["TRYON_PRODUCER"] = "shop-b"
    try:
        status_b = deployment.tryon("status", job_id, "--json")
        missing = deployment.tryon("status", only_a, "--json")
        listed = deployment.tryon("jobs", "--json")
    finally:
        del deployment.env["TRYON_PRODUCER"]
    assert json.loads(status_b.stdout)["kling_task_id"] == record_b["kling_task_id"]
    assert missing.returncode == 1
    assert {r["producer"] for r in json.loads(listed.stdout)} == {"shop-b"}
    assert deployment.tryon("status", job_id).returncode == 1  # `default` has no such job


def test_the_amqp_door_takes_the_broker_user_and_ignores_a_forged_producer(
    stack: tuple[Deployment, str],
) -> None:
    """A `user_id` (validated by RabbitMQ) names the producer; a producer header without a
    valid signature does not; the Python door signs TRYON_PRODUCER."""
    deployment, _ = stack
    settings = deployment.settings
    user_job, forged_job, python_job = (f"{n}-{uuid.uuid4().hex[:8]}" for n in "ufp")
    queue = topology_for(settings).jobs_queue_name
    with Connection(settings.effective_broker_url) as connection:
        producer = connection.Producer()
        for job_id, options in (
            (user_job, {"user_id": "guest"}),
            (
                forged_job,
                {"headers": FORGED},
            ),
        ):
            producer.publish(
                json.dumps(job(job_id)),
                routing_key=queue,
                content_type="application/json",
                delivery_mode=2,
                **options,
            )
    with JobPublisher(settings, producer="shop-b") as publisher:
        publisher.publish(job(python_job))
    store = deployment.store()
    try:

        def recorded() -> bool:
            return all(
                store.get(job_id, owner) is not None
                for job_id, owner in (
                    (user_job, "guest"),
                    (forged_job, "default"),
                    (python_job, "shop-b"),
                )
            )

        wait_until(recorded, 60, 0.3, "the three jobs to be recorded")
        assert store.get(forged_job, "shop-a") is None
        assert store.get(python_job, "default") is None
    finally:
        store.dispose()


# ------------------------------------------------------------------ fair share --------
A_JOBS = 2000
FORGED = {"tryon-producer": "shop-a", "tryon-producer-signature": "0" * 64}
B_JOBS = 10


def _creates_in_order(server: EmulatorServer) -> list[str]:
    """The external_task_id of every create at the emulator, oldest first (its list API)."""
    found: list[dict[str, Any]] = []
    page = 1
    while True:
        answer = requests.get(
            f"{server.base_url}/v1/images/kolors-virtual-try-on",
            params={"pageNum": page, "pageSize": 500},
            headers={"Authorization": f"Bearer {TEST_API_KEY}"},
            timeout=10,
        )
        tasks = answer.json()["data"]
        found.extend(tasks)
        if len(tasks) < 500:
            break
        page += 1
    return [t["task_info"]["external_task_id"] for t in reversed(found)]


def test_a_late_producer_is_served_within_the_backlogs_next_ten(tmp_path: Path) -> None:
    """shop-a publishes 2,000 jobs, then shop-b 10: each of shop-b's jobs is created at the
    emulator within shop-a's next 10 creates, not after shop-a's backlog."""
    with running_emulator(1.0) as server, rabbit_deployment_on(tmp_path, server) as deployment:
        deployment.env["TRYON_MAX_IN_FLIGHT"] = "4"
        settings = deployment.settings
        human, cloth = sample_b64("human.jpg"), sample_b64("cloth-red.png")

        def publish(producer: str, count: int) -> list[str]:
            with JobPublisher(settings, producer=producer) as publisher:
                return [
                    publisher.publish(
                        {
                            "job_id": f"{producer}-{i:05d}",
                            "human_image": human,
                            "cloth_image": cloth,
                        }
                    )
                    for i in range(count)
                ]

        a_ids = publish("shop-a", A_JOBS)
        deployment.start_worker(concurrency=2)
        store = deployment.store()
        try:
            # shop-a's backlog is recorded and being served before shop-b says a word.
            wait_until(lambda: store.get(a_ids[-1], "shop-a") is not None, 300, 0.5, "A's intake")
            b_ids = publish("shop-b", B_JOBS)

            def b_queued() -> bool:
                return all(store.get(j, "shop-b") is not None for j in b_ids)

            wait_until(b_queued, 120, 0.1, "B's intake")
            started = time.monotonic()
            creates_before = len(_creates_in_order(server))
            # A's jobs that already had their slot when B's were queued: their creates
            # may still come after this, but they are not A's *next* submissions.
            slotted = {
                r.key
                for r in store.jobs.oldest_first(producer="shop-a", limit=A_JOBS)
                if r.state != "queued"
            }

            def b_created() -> bool:
                records = [store.get(j, "shop-b") for j in b_ids]
                return all(r is not None and r.kling_task_id for r in records if r is not None)

            wait_until(b_created, 120, 0.3, "B's creates")
            took = time.monotonic() - started
        finally:
            store.dispose()
        order = _creates_in_order(server)
    b_keys = {job_key("shop-b", j) for j in b_ids}
    a_keys = {job_key("shop-a", j) for j in a_ids}
    after = order[creates_before:]
    last_b = max(i for i, key in enumerate(after) if key in b_keys)
    a_between = [key for key in after[: last_b + 1] if key in a_keys]
    a_next = [key for key in a_between if key not in slotted]
    print(  # the figures, for the report (-s)
        f"fair share: A made {len(a_between)} creates while B's {B_JOBS} were created, "
        f"{len(a_next)} of them slots given after B was queued ({took:.1f} s; "
        f"{creates_before} creates of A before)"
    )
    assert sum(1 for key in after if key in b_keys) == B_JOBS
    # Every one of B's jobs was created within A's next 10 submissions (slots A was
    # given after B's jobs were queued), not after A's backlog of ~2,000.
    assert len(a_next) <= 10
