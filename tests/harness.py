"""Test harness: real worker processes, fresh RabbitMQ names and fresh PostgreSQL databases.

Nothing here stands in for our own components: workers are started as a user starts
them (`tryon worker`), talk to the local RabbitMQ and PostgreSQL, and reach the Kling
emulator over HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from kombu import Connection, Consumer, Exchange, Queue

from kolors_tryon.config import Settings
from kolors_tryon.config.celery import topology_for
from kolors_tryon.store import JobRecord, JobStore

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672//"
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"

# Fast settings for tests: short polls, short backoffs, short leases.
FAST_ENV = {
    "TRYON_TRACK_FIRST_DELAY": "0.5",
    "TRYON_TRACK_INTERVAL_MAX": "1",
    "TRYON_RETRY_BACKOFF_BASE": "0.5",
    "TRYON_RETRY_BACKOFF_MAX": "3",
    "TRYON_BUSY_BACKOFF_BASE": "1",
    "TRYON_ACCOUNT_PROBE_INTERVAL": "2",
    "TRYON_SUBMIT_LEASE_SECONDS": "20",
    "TRYON_SWEEP_INTERVAL": "3",
    "TRYON_HTTP_CONNECT_TIMEOUT": "2",
    "TRYON_HTTP_READ_TIMEOUT": "5",
    "TRYON_LOG_LEVEL": "INFO",
}


def wait_until(
    predicate: Callable[[], bool], timeout: float, interval: float = 0.2, what: str = ""
) -> None:
    """Poll `predicate` until it is true; fail the test with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty PostgreSQL database; dropped afterwards."""
    name = f"tryon_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_topology(settings: Settings) -> None:
    """Remove a test namespace's queues and exchanges from RabbitMQ."""
    topology = topology_for(settings)
    with Connection(RABBIT_URL) as conn:
        channel: Any = conn.channel()
        for name in (
            topology.jobs_queue_name,
            topology.tasks_queue_name,
            f"{topology.namespace}.dead",
        ):
            try:
                channel.queue_delete(name)
            except Exception:
                channel = conn.channel()
        for exchange in (
            topology.events_exchange,
            topology.task_exchange,
            topology.dead_letter_exchange,
        ):
            try:
                channel.exchange_delete(exchange.name)
            except Exception:
                channel = conn.channel()


@dataclass
class Deployment:
    """One isolated deployment: its env, its settings, and the workers it started."""

    env: dict[str, str]
    data_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        fields = {
            k.removeprefix("TRYON_").lower(): v
            for k, v in self.env.items()
            if k.startswith("TRYON_")
        }
        # model_validate reads no environment: exactly this deployment's variables count.
        return Settings.model_validate(fields)

    def store(self) -> JobStore:
        store = JobStore.from_url(self.settings.effective_database_url)
        store.create_schema()
        return store

    def start_worker(
        self,
        *,
        concurrency: int = 2,
        name: str | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> WorkerProcess:
        name = name or f"w{len(self.workers) + 1}"
        env = {**self.env, **(extra_env or {})}
        worker = WorkerProcess.start(env, self.data_dir / f"{name}.log", name, concurrency)
        self.workers.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.stop()

    def tryon(
        self, *args: str, input_text: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the `tryon` command of this deployment as a user would."""
        return subprocess.run(
            [sys.executable, "-m", "kolors_tryon.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            cwd=self.data_dir,
            check=False,
        )


def base_env(data_dir: Path) -> dict[str, str]:
    """The test process's environment without any TRYON_ variable, plus fast settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRYON_")}
    env.update(FAST_ENV)
    env["TRYON_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class WorkerProcess:
    """A `tryon worker` process in its own process group (so kill -9 takes its pool too)."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path, name: str) -> None:
        self.process = process
        self.log_path = log_path
        self.name = name

    @classmethod
    def start(
        cls, env: Mapping[str, str], log_path: Path, name: str, concurrency: int
    ) -> WorkerProcess:
        log = log_path.open("ab")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kolors_tryon.cli",
                "worker",
                f"--concurrency={concurrency}",
                f"--hostname={name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,
            start_new_session=True,
        )
        log.close()
        worker = cls(process, log_path, name)
        wait_until(worker.is_ready, 60, 0.3, f"worker {name} to be ready ({log_path})")
        return worker

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def is_ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"worker {self.name} exited:\n{self.log_text()[-4000:]}")
        return " ready." in self.log_text()

    def kill(self) -> None:
        """kill -9 the worker and its pool processes, with no chance to clean up."""
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def kill_pool_child(self) -> bool:
        """kill -9 one pool process only; the worker's main process lives on."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:  # field 4 of stat: the parent pid
                children.append(int(stat.parent.name))
        if not children:
            return False
        with suppress(ProcessLookupError):
            os.kill(children[0], signal.SIGKILL)
        return True

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            # SIGTERM to the main process only: Celery's warm shutdown stops its pool.
            self.process.terminate()
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass

    def alive(self) -> bool:
        return self.process.poll() is None


class EventRecorder:
    """Subscribes to `<ns>.events` with a queue of its own and records every event."""

    def __init__(self, settings: Settings) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        topology = topology_for(settings)
        exchange = Exchange(topology.events_exchange.name, type="topic", durable=True)
        self._queue = Queue(
            f"{topology.namespace}.test-events-{uuid.uuid4().hex[:6]}",
            exchange,
            routing_key="job.#",
            auto_delete=True,
            exclusive=True,
        )
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(20):
            raise AssertionError("event recorder did not start")

    def _run(self) -> None:
        with (
            Connection(RABBIT_URL) as conn,
            Consumer(conn, queues=[self._queue], callbacks=[self._on_event], accept=["json"]),
        ):
            self._ready.set()
            while not self._stop.is_set():
                try:
                    conn.drain_events(timeout=0.3)
                except TimeoutError:
                    continue
                except OSError:
                    if self._stop.is_set():
                        return
                    raise

    def _on_event(self, body: Any, message: Any) -> None:
        with self._lock:
            self.events.append((message.delivery_info["routing_key"], body))
        message.ack()

    def for_job(self, job_id: str) -> list[str]:
        with self._lock:
            return [key for key, body in self.events if body.get("job_id") == job_id]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def publish_raw(
    settings: Settings,
    body: bytes | str,
    content_type: str = "application/json",
) -> None:
    """Publish a message to `<ns>.jobs` the way a non-Python producer would: no Celery."""
    topology = topology_for(settings)
    with Connection(RABBIT_URL, transport_options={"confirm_publish": True}) as conn:
        conn.Producer().publish(
            body,
            exchange="",
            routing_key=topology.jobs_queue_name,
            content_type=content_type,
            content_encoding="utf-8" if isinstance(body, str) else "binary",
            delivery_mode=2,
            declare=[topology.jobs_queue],
        )


def dead_letters(settings: Settings) -> list[tuple[bytes, dict[str, Any]]]:
    """Messages parked in `<ns>.dead`, with their headers (drained)."""
    topology = topology_for(settings)
    out: list[tuple[bytes, dict[str, Any]]] = []
    with Connection(RABBIT_URL) as conn:
        queue = topology.dead_letter_queue(conn.channel())
        queue.declare()
        while (message := queue.get(no_ack=True)) is not None:
            body = message.body
            out.append(
                (
                    body if isinstance(body, bytes) else str(body).encode(),
                    dict(message.headers or {}),
                )
            )
    return out


def terminal_records(store: JobStore, job_ids: list[str]) -> dict[str, JobRecord]:
    records = {job_id: store.get(job_id) for job_id in job_ids}
    return {k: v for k, v in records.items() if v is not None and v.terminal}


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, default=str)


SAMPLES = Path(__file__).resolve().parents[1] / "src" / "kolors_tryon" / "samples"


def sample_b64(name: str) -> str:
    import base64

    return base64.b64encode((SAMPLES / name).read_bytes()).decode()


def publish_jobs(settings: Settings, count: int, prefix: str) -> list[str]:
    """Publish `count` valid, distinct jobs over one connection; returns their ids."""
    from kolors_tryon import JobPublisher

    human, cloth = sample_b64("human.jpg"), sample_b64("cloth-red.png")
    with JobPublisher(settings) as publisher:
        return [
            publisher.publish(
                {
                    "job_id": f"{prefix}-{i:04d}",
                    "human_image": human,
                    "cloth_image": cloth,
                    "metadata": {"n": i},
                }
            )
            for i in range(count)
        ]


def wait_all_terminal(
    store: JobStore, job_ids: list[str], timeout: float, during: Callable[[], None] | None = None
) -> dict[str, JobRecord]:
    """Poll until every job is terminal; `during` runs between polls (fault injection)."""
    deadline = time.monotonic() + timeout
    pending = set(job_ids)
    while pending and time.monotonic() < deadline:
        if during is not None:
            during()
        done = terminal_records(store, sorted(pending))
        pending -= set(done)
        if pending:
            time.sleep(0.5)
    if pending:
        states = {j: (r.state if (r := store.get(j)) else None) for j in sorted(pending)[:20]}
        raise AssertionError(f"{len(pending)} job(s) not terminal: {states}")
    return {job_id: store.get(job_id) for job_id in job_ids}  # type: ignore[misc]


def emulator_env(server: Any) -> dict[str, str]:
    """Point a deployment at an emulator, with the key the test fixtures accept."""
    return {"TRYON_KLING_BASE_URL": server.base_url, "TRYON_KLING_API_KEY": "sk-test-key"}


@contextmanager
def rabbit_deployment_on(tmp: Path, server: Any) -> Iterator[Deployment]:
    """RabbitMQ with a namespace of its own and a fresh PostgreSQL database; torn down after."""
    with fresh_database() as database_url:
        env = base_env(tmp)
        env.update(emulator_env(server))
        env.update(
            {
                "TRYON_BROKER_URL": RABBIT_URL,
                "TRYON_DATABASE_URL": database_url,
                "TRYON_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
            }
        )
        deployment = Deployment(env=env, data_dir=tmp)
        try:
            yield deployment
        finally:
            deployment.stop_all()
            delete_topology(deployment.settings)


@contextmanager
def rabbit_stack(
    tmp: Path, *, task_duration: float = 1.0, concurrency: int = 2
) -> Iterator[tuple[Deployment, Any]]:
    """An emulator, a RabbitMQ deployment and one started worker; torn down after.

    For module-scoped fixtures: many tests share one worker instead of starting their own.
    """
    from kolors_tryon.emulator import EmulatorConfig, EmulatorServer

    server = EmulatorServer(EmulatorConfig(api_keys=("sk-test-key",), task_duration=task_duration))
    server.start()
    try:
        with rabbit_deployment_on(tmp, server) as deployment:
            deployment.start_worker(concurrency=concurrency)
            yield deployment, server
    finally:
        server.stop()
