"""Fixtures shared by every test folder: the Kling emulator over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kolors_tryon.emulator import EmulatorConfig, EmulatorServer

TEST_API_KEY = "sk-test-key"
TEST_ACCESS_KEY = "ak-test"
TEST_SECRET_KEY = "sk-secret-for-tests-0123456789abcdef"


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    """A fresh emulator on a free loopback port, accepting the test key and JWT credentials."""
    server = EmulatorServer(
        EmulatorConfig(
            api_keys=(TEST_API_KEY,),
            access_key=TEST_ACCESS_KEY,
            secret_key=TEST_SECRET_KEY,
            task_duration=0.6,
        )
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ----------------------------------------------------------------- deployments --------
from pathlib import Path  # noqa: E402

from harness import Deployment, base_env, emulator_env, rabbit_deployment_on  # noqa: E402


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
