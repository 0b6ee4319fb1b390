"""Isolated deployments: an environment of their own, their workers, their `tryon` command.

A deployment is what an operator configures: `TRYON_` variables and a data directory.
Workers and commands get exactly that environment (the test process's own `TRYON_`
variables never leak in), so each test sees the service as a user would.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.env import (
    FAST_ENV,
    TEST_ACCESS_KEY,
    TEST_API_KEY,
    TEST_SECRET_KEY,
    clean_env,
    rabbitmq_url,
)
from harness.interrupts import cleanup_on_signal
from harness.postgres import fresh_database
from harness.processes import WorkerProcess
from harness.rabbit import delete_topology
from harness.samples import SAMPLES
from kolors_tryon.config import Settings
from kolors_tryon.emulator import EmulatorConfig, EmulatorServer
from kolors_tryon.store import JobStore


class KlingEndpoint(Protocol):
    """Anything a deployment can send its Kling calls to: an in-process emulator, or an
    emulator process (the benchmarks run it apart, so it competes for no GIL)."""

    @property
    def base_url(self) -> str: ...


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
            if k.startswith("TRYON_") and v != ""  # empty is unset, as Settings reads env
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
        args: Sequence[str] | None = None,
    ) -> WorkerProcess:
        """Start a worker (`args`: its own arguments instead of the tests', see WorkerProcess)."""
        name = name or f"w{len(self.workers) + 1}"
        env = {**self.env, **(extra_env or {})}
        log_path = self.data_dir / f"{name}.log"
        worker = WorkerProcess.start(env, log_path, name, concurrency, args=args)
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

    def submit_sample(
        self, job_id: str, *options: str, cloth: str = "cloth-red.png"
    ) -> subprocess.CompletedProcess[str]:
        """`tryon submit` of the sample photos (files) as `job_id`, `options` appended."""
        human_path, cloth_path = str(SAMPLES / "human.jpg"), str(SAMPLES / cloth)
        return self.tryon(
            "submit", "--human", human_path, "--cloth", cloth_path, "--job-id", job_id, *options
        )


def base_env(data_dir: Path) -> dict[str, str]:
    """The test process's environment without any TRYON_ variable, plus fast settings."""
    env = clean_env()
    env.update(FAST_ENV)
    env["TRYON_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def emulator_env(server: KlingEndpoint) -> dict[str, str]:
    """Point a deployment at an emulator, with the key the test fixtures accept; its
    result images are served from loopback, so result copies may fetch them."""
    return {
        "TRYON_KLING_BASE_URL": server.base_url,
        "TRYON_KLING_API_KEY": TEST_API_KEY,
        "TRYON_RESULT_ALLOW_PRIVATE": "true",
    }


@contextmanager
def running_emulator(task_duration: float) -> Iterator[EmulatorServer]:
    """An emulator on a free loopback port, accepting the test key and JWT credentials."""
    server = EmulatorServer(
        EmulatorConfig(
            api_keys=(TEST_API_KEY,),
            access_key=TEST_ACCESS_KEY,
            secret_key=TEST_SECRET_KEY,
            task_duration=task_duration,
        )
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def rabbit_deployment_on(tmp: Path, server: KlingEndpoint) -> Iterator[Deployment]:
    """RabbitMQ with a namespace of its own and a fresh PostgreSQL database; torn down after."""
    with fresh_database() as database_url:
        env = base_env(tmp)
        env.update(emulator_env(server))
        env.update(
            {
                "TRYON_BROKER_URL": rabbitmq_url(),
                "TRYON_DATABASE_URL": database_url,
                "TRYON_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
            }
        )
        deployment = Deployment(env=env, data_dir=tmp)
        # What a deployment does before its workers start (`tryon db upgrade`): a worker
        # refuses a configured store whose schema is not the code's.
        deployment.store().dispose()
        settings = deployment.settings
        try:
            with cleanup_on_signal(
                f"namespace {settings.namespace}", lambda: delete_topology(settings)
            ):
                yield deployment
        finally:
            deployment.stop_all()
            delete_topology(settings)


@contextmanager
def rabbit_stack(
    tmp: Path,
    *,
    task_duration: float = 1.0,
    concurrency: int = 2,
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[Deployment, EmulatorServer]]:
    """An emulator, a RabbitMQ deployment (with `env` added) and one started worker.

    For module-scoped fixtures: many tests share one worker instead of starting their own.
    """
    with running_emulator(task_duration) as server, rabbit_deployment_on(tmp, server) as deployment:
        deployment.env.update(env or {})
        deployment.start_worker(concurrency=concurrency)
        yield deployment, server
