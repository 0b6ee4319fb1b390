"""Daily unit budgets per producer, with two producers, on the real service.

RabbitMQ, PostgreSQL, real workers and the Kling emulator: a producer at its budget has
its jobs wait `queued` (never failed), a `producer.budget_reached` event is published
once, the other producer goes on; a raised budget releases the jobs; the next day (the
store's clock) does too.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from kombu import Connection, Exchange, Queue
from sqlalchemy import text

from harness import (
    SettableClock,
    fresh_database,
    rabbit_deployment_on,
    running_emulator,
    sample_b64,
    wait_until,
)
from kolors_tryon import JobPublisher
from kolors_tryon.config import Settings
from kolors_tryon.config.celery import topology_for
from kolors_tryon.store import JobState, JobStore, NewJob
from kolors_tryon.store.producers import DAY_SECONDS


def _publish(settings: Settings, producer: str, count: int) -> list[str]:
    human, cloth = sample_b64("human.jpg"), sample_b64("cloth-red.png")
    with JobPublisher(settings, producer=producer) as publisher:
        return [
            publisher.publish(
                {"job_id": f"{producer}-{i}", "human_image": human, "cloth_image": cloth}
            )
            for i in range(count)
        ]


def test_a_producer_at_its_budget_waits_while_the_other_goes_on(tmp_path: Path) -> None:
    """shop-a (budget 2 units) publishes 5, shop-b (no budget) 3: shop-a's first 2 succeed
    and 3 stay queued with one budget event, shop-b's 3 succeed; a raised budget (workers
    restarted with it) runs shop-a's other 3."""
    with running_emulator(0.5) as server, rabbit_deployment_on(tmp_path, server) as deployment:
        deployment.env["TRYON_PRODUCER_BUDGETS"] = "shop-a:2"
        settings = deployment.settings
        events_exchange = topology_for(settings).events_exchange
        with Connection(settings.effective_broker_url) as connection:
            listen = Queue(
                f"{settings.namespace}.test-budgets",
                Exchange(events_exchange.name, type="topic", durable=True),
                routing_key="producer.#",
                auto_delete=True,
            )
            listen(connection.default_channel).declare()
            a_ids, b_ids = _publish(settings, "shop-a", 5), _publish(settings, "shop-b", 3)
            worker = deployment.start_worker(concurrency=2)
            store = deployment.store()
            try:

                def states(producer: str, ids: list[str]) -> list[str]:
                    records = [store.get(job_id, producer) for job_id in ids]
                    return sorted(str(r.state) if r else "missing" for r in records)

                def settled() -> bool:
                    return (
                        states("shop-b", b_ids) == ["succeeded"] * 3
                        and states("shop-a", a_ids) == ["queued"] * 3 + ["succeeded"] * 2
                    )

                wait_until(settled, 120, 0.5, "shop-b done and shop-a at its budget")
                time.sleep(4)  # a few more sweeps and dispatches: still waiting
                assert states("shop-a", a_ids) == ["queued"] * 3 + ["succeeded"] * 2
                assert store.producers.spent_today("shop-a") == 2.0

                events: list[dict[str, object]] = []

                def announced() -> bool:
                    message = listen(connection.default_channel).get(no_ack=True)
                    if message is not None:
                        events.append(json.loads(message.body or "{}"))
                    return bool(events)

                wait_until(announced, 30, 0.3, "the producer.budget_reached event")
                assert events[0]["producer"] == "shop-a" and events[0]["budget"] == 2.0

                worker.stop()
                deployment.env["TRYON_PRODUCER_BUDGETS"] = "shop-a:10"
                deployment.start_worker(concurrency=2)
                wait_until(
                    lambda: states("shop-a", a_ids) == ["succeeded"] * 5,
                    120,
                    0.5,
                    "shop-a's jobs released by the raised budget",
                )
                time.sleep(1)
                assert listen(connection.default_channel).get(no_ack=True) is None  # once
            finally:
                store.dispose()
    assert server.stats()["creates"] == 8


def _producer(store: JobStore, key: str) -> str:
    record = store.get(key)
    assert record is not None
    return record.producer


def test_the_next_day_releases_a_producer_at_its_budget(tmp_path: Path) -> None:
    """At its budget a producer gets no slot; the next day on the store's clock it does,
    and the other producer is served all along."""
    with fresh_database() as url:
        clock = SettableClock(start=1_780_000_000.0)
        store = JobStore.from_url(url, clock=clock)
        try:
            store.create_schema()
            body = {"human_image": "aGk=", "cloth_image": "aGk="}
            store.intake.accept(
                [NewJob(f"a{i}", body, producer="shop-a") for i in range(3)]
                + [NewJob(f"b{i}", body, producer="shop-b") for i in range(2)]
            )
            budgets = {"shop-a": 1.0}
            first = store.claims.next(10, lease_seconds=60, budgets=budgets)
            producers = sorted(_producer(store, c.job_id) for c in first)
            assert producers == ["shop-a", "shop-b", "shop-b"]  # one unit's worth of shop-a
            assert store.claims.next(10, lease_seconds=60, budgets=budgets) == []
            reached = store.producers.take_unannounced()
            assert [(r.producer, r.budget) for r in reached] == [("shop-a", 1.0)]
            assert store.producers.take_unannounced() == []  # announced once

            clock.advance(DAY_SECONDS)
            # Still in flight: it counts as a unit spent today, so nothing yet...
            assert store.claims.next(10, lease_seconds=60, budgets=budgets) == []
            # ...until its slot is free; then the new day's budget lets one more go.
            with store.engine.begin() as connection:
                connection.execute(
                    text(
                        "UPDATE tryon_jobs SET state = 'succeeded', final_unit_deduction = '1', "
                        "finished_at = :yesterday WHERE state = 'submitting'"
                    ),
                    {"yesterday": clock() - DAY_SECONDS},
                )
            again = store.claims.next(10, lease_seconds=60, budgets=budgets)
            assert [_producer(store, c.job_id) for c in again] == ["shop-a"]
            queued = store.jobs.oldest_first(JobState.QUEUED, producer="shop-a")
            assert len(queued) == 1
        finally:
            store.dispose()
