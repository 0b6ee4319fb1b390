"""Shared scaffolding of the `tryon web` tests: the service as a real process.

`web_stack` starts an emulator, a RabbitMQ namespace with a fresh PostgreSQL database
and `tryon web` (uvicorn on a free loopback port), and tears them down; the helpers
check answers against the OpenAPI document the service serves and read what it put on
the broker.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import requests
from kombu import Connection

from harness import Deployment, rabbit_deployment_on, sample_b64, terminate, wait_until
from kolors_tryon.config.celery import topology_for
from kolors_tryon.emulator import EmulatorConfig, EmulatorServer
from kolors_tryon.web import CALLBACK_TASK

KEYS = ("key-current-0123456789", "key-next-9876543210")
SECRET, PREVIOUS_SECRET = "callback-secret-now-0123", "callback-secret-before-4567"
MAX_BATCH = 5


def sample_job(job_id: str) -> dict[str, Any]:
    """A job that must succeed: the bundled sample photos as Base64."""
    return {
        "job_id": job_id,
        "human_image": sample_b64("human.jpg"),
        "cloth_image": sample_b64("cloth-red.png"),
    }


# ----------------------------------------------------------------- the web process ----
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def web_process(
    env: Mapping[str, str],
    log_path: Path,
    port: int | None = None,
    started: list[subprocess.Popen[bytes]] | None = None,
) -> Iterator[str]:
    """`tryon web` on a loopback port (a free one by default); yields its base URL once
    /healthz answers. Its process is appended to `started` (a test that signals it)."""
    port = port or free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kolors_tryon.cli",
                "web",
                "--host",
                "127.0.0.1",
                "--port",
                f"{port}",
            ],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,
        )
    url = f"http://127.0.0.1:{port}"
    if started is not None:
        started.append(process)

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"tryon web exited:\n{log_path.read_text()[-3000:]}")
        try:
            return requests.get(f"{url}/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_until(answers, 60, 0.2, f"tryon web to answer ({log_path})")
        yield url
    finally:
        terminate(process)


@contextmanager
def callback_receiver(deployment: Deployment, secret: str) -> Iterator[str]:
    """`tryon web` receiving the deployment's Kling callbacks (TRYON_PUBLIC_URL points at
    it, TRYON_CALLBACK_SECRET signs their tokens); set before its workers start."""
    port = free_port()
    deployment.env["TRYON_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    deployment.env["TRYON_CALLBACK_SECRET"] = secret
    with web_process(deployment.env, deployment.data_dir / "web.log", port) as url:
        yield url


@dataclass
class Web:
    url: str
    deployment: Deployment
    emulator: EmulatorServer
    http: requests.Session
    log_path: Path

    def auth(self, key: str = KEYS[0]) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    def post_jobs(self, body: Any, **kwargs: Any) -> requests.Response:
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        headers = {"Content-Type": "application/json", **self.auth()}
        return self.http.post(f"{self.url}/v1/jobs", data=data, headers=headers, **kwargs)


def web_env(deployment: Deployment) -> dict[str, str]:
    return {
        **deployment.env,
        "TRYON_API_KEYS": ",".join(KEYS),
        "TRYON_CALLBACK_SECRET": SECRET,
        "TRYON_CALLBACK_SECRET_PREVIOUS": PREVIOUS_SECRET,
        "TRYON_WEB_MAX_BATCH_JOBS": str(MAX_BATCH),
    }


@contextmanager
def web_stack(tmp: Path, extra_env: Mapping[str, str] | None = None) -> Iterator[Web]:
    """One emulator, one RabbitMQ namespace + fresh database, one `tryon web` (with
    `extra_env` added to its settings); no worker."""
    server = EmulatorServer(EmulatorConfig(api_keys=("sk-test-key",), task_duration=0.6))
    server.start()
    try:
        with rabbit_deployment_on(tmp, server) as deployment:
            deployment.env.update(web_env(deployment))
            deployment.env.update(extra_env or {})
            log_path = tmp / "web.log"
            with web_process(deployment.env, log_path) as url, requests.Session() as http:
                yield Web(url, deployment, server, http, log_path)
    finally:
        server.stop()


def served_openapi(web: Web) -> dict[str, Any]:
    """The document the service serves."""
    response = web.http.get(f"{web.url}/openapi.json", timeout=10)
    assert response.status_code == 200
    doc = response.json()
    assert isinstance(doc, dict)
    return doc


def template_of(doc: Mapping[str, Any], path: str) -> str:
    """The documented path template that `path` is an instance of."""
    for template in doc["paths"]:
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            return str(template)
    raise AssertionError(f"{path} is not documented")


def check_documented(
    doc: Mapping[str, Any], method: str, path: str, response: requests.Response
) -> None:
    """The status is documented for this route, and the JSON body validates against it."""
    operation = doc["paths"][template_of(doc, path)][method.lower()]
    responses = operation["responses"]
    status = str(response.status_code)
    assert status in responses, f"{method} {path}: {status} is not documented"
    assert response.headers["content-type"].startswith("application/json")
    schema = responses[status]["content"]["application/json"]["schema"]
    root = {"components": doc["components"], **schema}
    jsonschema.Draft202012Validator(root).validate(response.json())


# ----------------------------------------------------------------- broker helpers -----
def tasks_queue_messages(web: Web) -> list[tuple[dict[str, Any], Any]]:
    """(headers, decoded body) of every message on `<ns>.tasks`, drained."""
    topology = topology_for(web.deployment.settings)
    out: list[tuple[dict[str, Any], Any]] = []
    with Connection(web.deployment.settings.effective_broker_url) as conn:
        queue = topology.tasks_queue(conn.channel())
        queue.declare()
        while (message := queue.get(no_ack=True)) is not None:
            out.append((dict(message.headers or {}), json.loads(message.body or "null")))
    return out


def callbacks_on_broker(web: Web, wait_for: int, timeout: float = 10) -> list[list[Any]]:
    """The args of the `tryon.callback` messages on the task queue (waits for `wait_for`)."""
    found: list[list[Any]] = []

    def enough() -> bool:
        for headers, body in tasks_queue_messages(web):
            if headers.get("task") == CALLBACK_TASK:
                found.append(body[0])  # Celery protocol 2: [args, kwargs, embed]
        return len(found) >= wait_for

    if wait_for:
        wait_until(enough, timeout, 0.2, f"{wait_for} tryon.callback message(s)")
    else:
        time.sleep(0.3)  # forwarding is confirmed before the 200: nothing more to come
        enough()
    return found


def jobs_queue_depth(web: Web) -> int:
    topology = topology_for(web.deployment.settings)
    with Connection(web.deployment.settings.effective_broker_url) as conn:
        queue: Any = topology.jobs_queue(conn.channel())
        return int(queue.queue_declare().message_count)
