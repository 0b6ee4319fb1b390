"""Fixtures shared by every test folder: the Kling emulator over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kolors_tryon.emulator import EmulatorConfig, EmulatorServer

TEST_API_KEY = "sk-test-key"
TEST_ACCESS_KEY = "ak-test"
TEST_SECRET_KEY = "sk-secret-for-tests"


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
