"""docker-compose.yml run for real: every service's command and healthcheck, as local processes.

`ComposeRun` (tests/harness/compose.py) runs each service as its container would (the
image's ENTRYPOINT `tryon` + the service's `command`, compose's environment, a hostname of
its own) against the local RabbitMQ (a fresh namespace), a fresh PostgreSQL database and
the compose file's own sandbox emulator. The `.env` it writes is an operator's: it sets the
namespace, fast tracking and an API key, which reach the services only through the file's
`env_file`.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from harness import (
    FAST_ENV,
    ComposeRun,
    cleanup_on_signal,
    delete_topology,
    fresh_database,
    rabbitmq_url,
    sample_b64,
    wait_until,
)
from kolors_tryon.config import Settings

API_KEY = "compose-test-key"


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeRun]:
    """`docker compose --profile sandbox up`, here: every service started in order."""
    namespace = f"t{uuid.uuid4().hex[:10]}"
    settings = Settings.model_validate({"broker_url": rabbitmq_url(), "namespace": namespace})
    with (
        fresh_database() as database_url,
        cleanup_on_signal(f"namespace {namespace}", lambda: delete_topology(settings)),
    ):
        run = ComposeRun(
            workdir=tmp_path_factory.mktemp("compose"),
            backing={"rabbitmq": rabbitmq_url(), "postgres": database_url},
            dotenv={**FAST_ENV, "TRYON_NAMESPACE": namespace, "TRYON_API_KEYS": API_KEY},
            profiles=("sandbox",),
        )
        try:
            run.up()
            yield run
        finally:
            run.down()
            delete_topology(settings)


def url_of(run: ComposeRun, service: str, port: int) -> str:
    return f"http://127.0.0.1:{run.local_port(service, port)}"


def test_migrate_one_shot_upgrades_the_store_and_exits_zero(compose: ComposeRun) -> None:
    """`migrate` (`tryon db upgrade`) exits 0 and leaves the store at the code's revision."""
    migrate = compose.services["migrate"]
    assert migrate.healthcheck is None  # a one-shot: compose waits for its exit instead
    assert migrate.wait(5) == 0, migrate.log_text()
    check = subprocess.run(
        ["tryon", "db", "check"],
        env=migrate.env,
        cwd=migrate.cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.parametrize("service", ["rabbitmq", "postgres", "emulator", "web", "flower"])
def test_service_comes_up_and_its_healthcheck_passes(compose: ComposeRun, service: str) -> None:
    """The service runs and the compose file's own healthcheck command exits 0."""
    process = compose.services[service]
    if service not in compose.backing:
        assert process.alive(), process.log_text()
    assert process.wait_healthy(60).returncode == 0


def test_worker_healthcheck_passes_while_its_worker_runs(compose: ComposeRun) -> None:
    """The worker's healthcheck, whatever compose holds, passes against its running worker."""
    worker = compose.services["worker"]
    wait_until(lambda: " ready." in worker.log_text(), 90, 0.5, "the worker to be ready")
    assert worker.alive()
    assert worker.wait_healthy(60).returncode == 0


def test_flower_lists_the_worker_and_a_finished_task(compose: ComposeRun) -> None:
    """A job through `web` ends; Flower's API shows the worker and its succeeded tasks."""
    for service in ("web", "flower"):
        compose.services[service].wait_healthy(60)
    web, flower = url_of(compose, "web", 8080), url_of(compose, "flower", 5555)
    job = {"human_image": sample_b64("human.jpg"), "cloth_image": sample_b64("cloth-red.png")}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    answer = requests.post(f"{web}/v1/jobs", json=job, headers=headers, timeout=30)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]

    def state() -> str:
        record = requests.get(f"{web}/v1/jobs/{job_id}", headers=headers, timeout=10).json()
        return str(record.get("state"))

    wait_until(lambda: state() in ("succeeded", "failed"), 120, 1, f"job {job_id} to end")
    assert state() == "succeeded"

    # A worker with no -n names itself `<namespace>-<pid>-<hex>@<host>` (worker/nodes.py).
    host = compose.services["worker"].hostname

    def workers() -> dict[str, Any]:
        found: dict[str, Any] = requests.get(f"{flower}/api/workers?refresh=1", timeout=30).json()
        return found

    wait_until(
        lambda: any(name.endswith(f"@{host}") for name in workers()),
        60,
        1,
        f"Flower to list the worker of {host}",
    )
    (node,) = [name for name in workers() if name.endswith(f"@{host}")]

    def succeeded() -> list[dict[str, Any]]:
        tasks = requests.get(f"{flower}/api/tasks", timeout=30).json()
        return [t for t in tasks.values() if t.get("state") == "SUCCESS"]

    wait_until(lambda: bool(succeeded()), 60, 1, "Flower to show a succeeded task")
    finished = succeeded()
    assert {task["worker"] for task in finished} == {node}
    assert {task["name"] for task in finished} & {"tryon.submit", "tryon.intake", "tryon.track"}


def test_worker_healthcheck_fails_once_its_worker_has_stopped(compose: ComposeRun) -> None:
    """Stopped as `docker compose stop` does, the worker's healthcheck no longer passes.

    Runs last in this module: it stops the worker the other tests use."""
    worker = compose.services["worker"]
    worker.stop()
    assert not worker.alive()
    assert worker.check_health().returncode != 0
