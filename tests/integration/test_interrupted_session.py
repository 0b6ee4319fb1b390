"""A test session stopped by SIGTERM or SIGINT leaves no worker, database or queue behind.

A pytest run of one deployment test (a worker on RabbitMQ with a namespace of its own, a
fresh PostgreSQL database, the emulator) is started as a subprocess; once its worker is
ready the run is signalled, and what its worker's environment names is looked up after
it has exited.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from amqp.exceptions import NotFound
from kombu import Connection

from harness import postgres_url, rabbitmq_url, wait_until
from harness.compose import ROOT
from kolors_tryon.config import Settings
from kolors_tryon.config.celery import topology_for

# A test that runs for some seconds after its worker is ready (seven jobs through one slot).
VICTIM = "tests/faults/test_slots.py::test_waiting_jobs_keep_their_order_and_block_no_worker"


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def environ_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {key.decode(): value.decode(errors="replace") for key, value in pairs}


def ready_worker(session: int) -> tuple[int, dict[str, str]] | None:
    """The session's `tryon worker` once its log says ready: its pid and environment."""
    for pid in children_of(session):
        env = environ_of(pid)
        if "TRYON_NAMESPACE" not in env:
            continue
        logs = Path(env["TRYON_DATA_DIR"]).glob("w*.log")
        if any(" ready." in log.read_text(errors="replace") for log in logs):
            return pid, env
    return None


def processes_with(name: str, value: str) -> list[int]:
    """Every process on this machine whose environment has name=value (a worker, its pool)."""
    return [
        int(proc.name)
        for proc in Path("/proc").glob("[0-9]*")
        if environ_of(int(proc.name)).get(name) == value
    ]


def queues_left(settings: Settings) -> list[str]:
    """The namespace's queues that still exist on RabbitMQ (a passive declare finds them)."""
    topology = topology_for(settings)
    names = [topology.jobs_queue_name, *(queue.name for queue in topology.task_queues)]
    left = []
    with Connection(rabbitmq_url()) as conn:
        for name in names:
            channel: Any = conn.channel()
            try:
                channel.queue_declare(queue=name, passive=True)
                left.append(name)
                channel.close()
            except NotFound:  # and the broker closed the channel
                pass
    return left


def database_exists(name: str) -> bool:
    with psycopg.connect(postgres_url(), autocommit=True) as admin:
        row = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signalled_session_cleans_up_its_worker_database_and_queues(
    signum: signal.Signals, tmp_path: Path
) -> None:
    """The signalled run stops as interrupted; its worker, database and queues are gone."""
    log_path = tmp_path / "session.log"
    with log_path.open("wb") as log:
        session = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", VICTIM],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            # As from a terminal, whatever this session was started with (a background
            # job of a script starts with SIGINT ignored, and the child would keep that).
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    found: list[tuple[int, dict[str, str]]] = []

    def worker_ready() -> bool:
        hit = ready_worker(session.pid)
        if hit is not None:
            found.append(hit)
        return hit is not None

    try:
        wait_until(worker_ready, 120, 0.2, "the session's worker to be ready")
        env = found[0][1]
        settings = Settings.model_validate(
            {"broker_url": env["TRYON_BROKER_URL"], "namespace": env["TRYON_NAMESPACE"]}
        )
        database = env["TRYON_DATABASE_URL"].rsplit("/", 1)[1]
        assert database_exists(database) and queues_left(settings)  # there before the signal
        session.send_signal(signum)
        started = time.monotonic()
        code = session.wait(timeout=180)
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    output = log_path.read_text(errors="replace")
    assert code == pytest.ExitCode.INTERRUPTED, output[-3000:]
    print(f"{signal.Signals(signum).name}: session ended {time.monotonic() - started:.1f} s later")
    assert processes_with("TRYON_NAMESPACE", env["TRYON_NAMESPACE"]) == []
    assert not database_exists(database), output[-3000:]
    assert queues_left(settings) == [], output[-3000:]
