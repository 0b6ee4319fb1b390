"""Fixtures shared by every test folder: the Kling emulator over real HTTP, deployments."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import (
    Deployment,
    FaultRun,
    base_env,
    emulator_env,
    rabbit_deployment_on,
    running_emulator,
)
from harness.interrupts import clean_up_on_signals
from harness.scheduling import long_runs_first
from kolors_tryon.emulator import EmulatorServer


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM and SIGINT stop the session with every fixture torn down (harness/interrupts)."""
    clean_up_on_signals()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long runs first, for xdist to hand out first (harness/scheduling)."""
    long_runs_first(items)


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    """A fresh emulator on a free loopback port, accepting the test key and JWT credentials."""
    with running_emulator(task_duration=0.6) as server:
        yield server


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No TRYON_ variable or .env file from the machine leaks into a test of Settings."""
    for name in list(os.environ):
        if name.startswith("TRYON_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


# ----------------------------------------------------------------- deployments --------
@pytest.fixture
def rabbit_deployment(tmp_path: Path, emulator: EmulatorServer) -> Iterator[Deployment]:
    """RabbitMQ with a namespace of its own, a fresh PostgreSQL database, the emulator."""
    with rabbit_deployment_on(tmp_path, emulator) as deployment:
        yield deployment


@pytest.fixture
def embedded_deployment(tmp_path: Path, emulator: EmulatorServer) -> Iterator[Deployment]:
    """The embedded default: no broker server, SQLite; only the Kling URL and key are set."""
    env = base_env(tmp_path)
    env.update(emulator_env(emulator))
    deployment = Deployment(env=env, data_dir=tmp_path)
    try:
        yield deployment
    finally:
        deployment.stop_all()


# --------------------------------------------------------------------- faults ---------
@pytest.fixture
def fault_run(rabbit_deployment: Deployment, emulator: EmulatorServer) -> Iterator[FaultRun]:
    """A fault scenario on `rabbit_deployment` and `emulator`, nothing started yet."""
    run = FaultRun(rabbit_deployment, emulator)
    try:
        yield run
    finally:
        run.close()
