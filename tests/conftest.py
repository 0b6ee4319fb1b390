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
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

from harness import (  # noqa: E402
    RABBIT_URL,
    Deployment,
    base_env,
    delete_topology,
    fresh_database,
)


def _emulator_env(server: EmulatorServer) -> dict[str, str]:
    return {"TRYON_KLING_BASE_URL": server.base_url, "TRYON_KLING_API_KEY": TEST_API_KEY}


@pytest.fixture
def rabbit_deployment(tmp_path: Path, emulator: EmulatorServer) -> Iterator[Deployment]:
    """RabbitMQ with a namespace of its own, a fresh PostgreSQL database, the emulator."""
    namespace = f"t{uuid.uuid4().hex[:10]}"
    with fresh_database() as database_url:
        env = base_env(tmp_path)
        env.update(_emulator_env(emulator))
        env.update(
            {
                "TRYON_BROKER_URL": RABBIT_URL,
                "TRYON_DATABASE_URL": database_url,
                "TRYON_NAMESPACE": namespace,
            }
        )
        deployment = Deployment(env=env, data_dir=tmp_path)
        try:
            yield deployment
        finally:
            deployment.stop_all()
            delete_topology(deployment.settings)


@pytest.fixture
def embedded_deployment(tmp_path: Path, emulator: EmulatorServer) -> Iterator[Deployment]:
    """The embedded default: no broker server, SQLite; only the Kling URL and key are set."""
    env = base_env(tmp_path)
    env.update(_emulator_env(emulator))
    deployment = Deployment(env=env, data_dir=tmp_path)
    try:
        yield deployment
    finally:
        deployment.stop_all()
