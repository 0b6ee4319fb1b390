"""Where the test services are, the keys the emulator accepts, and fast worker settings.

The service URLs are read from the test process's environment each time they are
asked for (`TRYON_TEST_RABBITMQ_URL`, `TRYON_TEST_POSTGRES_URL`), with the local
services as defaults. Workers never see these variables: `clean_env()` strips every
`TRYON_` name before a deployment sets its own.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

RABBITMQ_URL_VARIABLE = "TRYON_TEST_RABBITMQ_URL"
POSTGRES_URL_VARIABLE = "TRYON_TEST_POSTGRES_URL"
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"

# What the emulators of the tests accept: a static key (resellers) and JWT credentials.
TEST_API_KEY = "sk-test-key"
TEST_ACCESS_KEY = "ak-test"
TEST_SECRET_KEY = "sk-secret-for-tests-0123456789abcdef"

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
    # Longer than the emulator's index lag in the fault tests (5 s), so a "not found"
    # is trusted only when it proves something, yet short enough for quick runs.
    "TRYON_CREATE_VISIBILITY_GRACE": "8",
    "TRYON_OUTAGE_RETRY_MAX": "5",
    "TRYON_LOG_LEVEL": "INFO",
}


def rabbitmq_url() -> str:
    """The RabbitMQ the tests use (a broker URL kombu understands)."""
    return os.environ.get(RABBITMQ_URL_VARIABLE) or DEFAULT_RABBITMQ_URL


def postgres_url() -> str:
    """A PostgreSQL database the tests may create and drop databases from."""
    return os.environ.get(POSTGRES_URL_VARIABLE) or DEFAULT_POSTGRES_URL


def clean_env() -> dict[str, str]:
    """The test process's environment without any TRYON_ variable (TRYON_TEST_* too)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TRYON_")}


def free_port() -> int:
    """A loopback port nobody listens on (now): for a server a test starts, or a refusal."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def tryon_executable() -> str:
    """The installed `tryon` command (the console script beside this interpreter), as a
    user runs it: its entry point is what these tests check, not only the module."""
    return str(Path(sys.executable).with_name("tryon"))
