"""docker-compose.yml parses, and its services and variables match the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kolors_tryon.cli import main
from kolors_tryon.config import Settings
from kolors_tryon.config.settings import ENV_PREFIX

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_has_the_designed_services() -> None:
    """rabbitmq, postgres, worker (scalable), web, flower and emulator are all there."""
    services = compose()["services"]
    assert {"rabbitmq", "postgres", "worker", "web", "flower", "emulator"} <= set(services)
    assert "container_name" not in services["worker"]  # a fixed name would block --scale
    assert "container_name" not in services["web"]  # stateless: any number of copies


@pytest.mark.parametrize("service", ["worker", "web"])
def test_every_tryon_variable_in_compose_is_a_setting(service: str) -> None:
    """No typo'd TRYON_ variable: each one names a field of Settings."""
    fields = {name.upper() for name in Settings.model_fields}
    env = compose()["services"][service]["environment"]
    for name in env:
        assert name.startswith(ENV_PREFIX)
        assert name.removeprefix(ENV_PREFIX) in fields, name


def test_web_service_runs_tryon_web_with_a_healthcheck() -> None:
    """`web` runs the real `tryon web` command on its published port, checked on /healthz."""
    web = compose()["services"]["web"]
    command = web["command"]
    assert command[0] == "web" and command[0] in main.commands
    options = {opt for param in main.commands["web"].params for opt in getattr(param, "opts", [])}
    assert {"--host", "--port"} <= options
    port = command[command.index("--port") + 1]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert any(str(mapping).endswith(f":{port}") for mapping in web["ports"])
    probe = " ".join(web["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/healthz" in probe
    env = web["environment"]
    assert "@rabbitmq:5672" in env["TRYON_BROKER_URL"]
    assert "@postgres:5432" in env["TRYON_DATABASE_URL"]
    assert {"TRYON_API_KEYS", "TRYON_CALLBACK_SECRET", "TRYON_PUBLIC_URL"} <= set(env)


def test_workers_and_web_share_the_callback_secret() -> None:
    """The tokens the workers put in callback URLs verify in `web`: one secret for both."""
    services = compose()["services"]
    for name in ("TRYON_CALLBACK_SECRET", "TRYON_CALLBACK_SECRET_PREVIOUS", "TRYON_PUBLIC_URL"):
        assert services["worker"]["environment"][name] == services["web"]["environment"][name]


def test_worker_urls_point_at_compose_services() -> None:
    """The worker's broker, database and emulator URLs name services of the file."""
    data = compose()
    env = data["services"]["worker"]["environment"]
    assert "@rabbitmq:5672" in env["TRYON_BROKER_URL"]
    assert "@postgres:5432" in env["TRYON_DATABASE_URL"]
    assert "//emulator:8765" in env["TRYON_SANDBOX_EMULATOR_URL"]
    assert data["services"]["emulator"]["command"][0] == "emulator"
    assert data["services"]["worker"]["command"][0] == "worker"


def test_dockerfile_runs_the_tryon_command() -> None:
    """The image's entry point is the `tryon` console script."""
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["tryon"]' in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'tryon = "kolors_tryon.cli:main"' in pyproject


def test_worker_health_check_runs_tryon_health() -> None:
    """The workers' container health check is `tryon health` (exit 0 or 1), and their
    /metrics listens on the compose network without a published port."""
    worker = compose()["services"]["worker"]
    assert worker["healthcheck"]["test"] == ["CMD", "tryon", "health"]
    assert "health" in main.commands
    assert worker["environment"]["TRYON_METRICS_HOST"] == "0.0.0.0"
    assert "ports" not in worker
