"""Batches on the real service: two producers, one batch id each, read over every door.

RabbitMQ, PostgreSQL, a real worker, `tryon web` and the Kling emulator.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import requests
from kombu import Connection, Exchange, Queue

from harness import rabbit_deployment_on, running_emulator, sample_b64, wait_until
from kolors_tryon import JobPublisher, enqueue_batch, get_batch
from kolors_tryon.config.celery import topology_for
from web_service import web_process

KEY_A, KEY_B, KEY_DEFAULT = "batch-key-a", "batch-key-b", "batch-key-default"


def _job(job_id: str) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "human_image": sample_b64("human.jpg"),
        "cloth_image": sample_b64("cloth-red.png"),
        "metadata": {"sku": job_id},
    }


def _get(url: str, path: str, key: str) -> requests.Response:
    return requests.get(f"{url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=10)


def test_two_producers_follow_their_own_batches_to_completion(tmp_path: Path) -> None:
    """shop-a opens batch `cat-1` with `enqueue_batch` (3 jobs) and `cat-2` with POST
    /v1/batches, shop-b sends a job naming `cat-1` on the queue: two batches `cat-1`.
    Each producer reads its own (HTTP, Python, CLI), counts and units add up,
    `batch.completed` comes once per batch; others get 404."""
    with running_emulator(0.5) as server, rabbit_deployment_on(tmp_path, server) as deployment:
        deployment.env["TRYON_API_KEYS"] = f"shop-a:{KEY_A},shop-b:{KEY_B},{KEY_DEFAULT}"
        settings = deployment.settings
        with Connection(settings.effective_broker_url) as connection:
            listen = Queue(
                f"{settings.namespace}.test-batches",
                Exchange(topology_for(settings).events_exchange.name, type="topic", durable=True),
                routing_key="batch.#",
                auto_delete=True,
            )
            listen(connection.default_channel).declare()
            shop_a = settings.model_copy(update={"producer": "shop-a"})
            batch_id, job_ids = enqueue_batch(
                [_job(f"a-{i}") for i in range(3)],
                batch_id="cat-1",
                name="December",
                settings=shop_a,
            )
            assert (batch_id, job_ids) == ("cat-1", ["a-0", "a-1", "a-2"])
            with JobPublisher(settings, producer="shop-b") as publisher:
                publisher.publish({**_job("b-0"), "batch_id": "cat-1"})
            deployment.start_worker(concurrency=2)
            with web_process(deployment.env, tmp_path / "web.log") as url:
                opened = requests.post(
                    f"{url}/v1/batches",
                    json={"batch_id": "cat-2", "jobs": [_job("h-0"), {"job_id": "h-bad"}]},
                    headers={"Authorization": f"Bearer {KEY_A}"},
                    timeout=30,
                )
                assert opened.status_code == 207, opened.text
                assert opened.headers["location"] == "/v1/batches/cat-2"
                assert (opened.json()["batch_id"], opened.json()["accepted"]) == ("cat-2", 1)

                def complete(key: str, batch_id: str = "cat-1") -> bool:
                    answer = _get(url, f"/v1/batches/{batch_id}", key)
                    return answer.status_code == 200 and answer.json()["finished_at"] is not None

                wait_until(lambda: complete(KEY_A) and complete(KEY_B), 120, 0.5, "both batches")
                mine = _get(url, "/v1/batches/cat-1", KEY_A).json()
                theirs = _get(url, "/v1/batches/cat-1", KEY_B).json()
                assert (mine["producer"], mine["name"], mine["jobs"]) == ("shop-a", "December", 3)
                assert mine["counts"] == {"succeeded": 3} and mine["progress"] == 1.0
                assert mine["units_spent"] == 3.0
                assert (theirs["producer"], theirs["jobs"], theirs["counts"]) == (
                    "shop-b",
                    1,
                    {"succeeded": 1},
                )
                assert _get(url, "/v1/batches/cat-1", KEY_DEFAULT).status_code == 404
                wait_until(lambda: complete(KEY_A, "cat-2"), 60, 0.5, "the posted batch")
                posted = _get(url, "/v1/batches/cat-2", KEY_A).json()
                assert posted["counts"] == {"succeeded": 1}
                listed = _get(url, "/v1/batches", KEY_A).json()
                assert [b["batch_id"] for b in listed["batches"]] == ["cat-2", "cat-1"]
                assert listed["next"] is None
                record = _get(url, "/v1/jobs/a-0", KEY_A).json()
                assert record["batch_id"] == "cat-1"
                exported = _get(url, "/v1/batches/cat-1/export", KEY_A)
                assert exported.headers["content-type"].startswith("text/csv")
                rows = list(csv.DictReader(io.StringIO(exported.text)))
                assert [(r["job_id"], r["state"], r["units"]) for r in rows] == [
                    (f"a-{i}", "succeeded", "1") for i in range(3)
                ]
                assert json.loads(rows[0]["metadata"]) == {"sku": "a-0"} and rows[0]["results"]
                assert _get(url, "/v1/batches/cat-1/export", KEY_DEFAULT).status_code == 404

            events: list[dict[str, Any]] = []

            def both_announced() -> bool:
                message = listen(connection.default_channel).get(no_ack=True)
                if message is not None:
                    events.append(json.loads(message.body or "{}"))
                return len(events) >= 3

            wait_until(both_announced, 30, 0.2, "three batch.completed events")
            assert sorted((e["producer"], e["batch_id"]) for e in events) == [
                ("shop-a", "cat-1"),
                ("shop-a", "cat-2"),
                ("shop-b", "cat-1"),
            ]
            assert listen(connection.default_channel).get(no_ack=True) is None  # once each

        python_view = get_batch("cat-1", settings=shop_a)
        assert python_view is not None and python_view.jobs == 3
        assert get_batch("cat-1", settings=settings) is None  # `default` has no such batch
        deployment.env["TRYON_PRODUCER"] = "shop-a"
        shown = deployment.tryon("batches", "status", "cat-1", "--wait", "--json")
        listed_cli = deployment.tryon("batches", "--json")
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["progress"] == 1.0
        assert [b["batch_id"] for b in json.loads(listed_cli.stdout)] == ["cat-2", "cat-1"]
        cli_csv = deployment.tryon("batches", "export", "cat-1")
        assert cli_csv.returncode == 0 and cli_csv.stdout.splitlines()[0].startswith("job_id,")
        assert len(cli_csv.stdout.splitlines()) == 4
        del deployment.env["TRYON_PRODUCER"]
        assert deployment.tryon("batches", "status", "cat-1").returncode == 1
