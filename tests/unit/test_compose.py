"""docker-compose.yml parses, and its services and variables match the code."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import pytest

from harness.compose import load_compose, service_environment
from kolors_tryon.cli import main
from kolors_tryon.config import Settings
from kolors_tryon.config.settings import ENV_PREFIX

ROOT = Path(__file__).resolve().parents[2]
ENV_EXAMPLE = ROOT / ".env.example"


def compose() -> dict[str, Any]:
    """The file as compose reads it with no .env: `${VAR:-default}` gives the default."""
    return load_compose()


def environment(service: str, tmp_path: Path) -> dict[str, str]:
    """What compose gives `service` when .env is a filled copy of .env.example."""
    names = [line.split("=")[0] for line in ENV_EXAMPLE.read_text().splitlines()]
    variables = [name for name in names if name.startswith(ENV_PREFIX)]
    (tmp_path / ".env").write_text("".join(f"{name}=set-{name}\n" for name in variables))
    return service_environment(load_compose(tmp_path)["services"][service], tmp_path)


def test_compose_has_the_designed_services() -> None:
    """rabbitmq, postgres, worker (scalable), web, flower and emulator are all there."""
    services = compose()["services"]
    assert {"rabbitmq", "postgres", "worker", "web", "flower", "emulator"} <= set(services)
    assert "container_name" not in services["worker"]  # a fixed name would block --scale
    assert "container_name" not in services["web"]  # stateless: any number of copies


def our_services() -> dict[str, dict[str, Any]]:
    """The services that run our image (the `tryon` entry point), by name."""
    return {name: svc for name, svc in compose()["services"].items() if svc.get("build") == "."}


# Services that run once and exit (a health check means nothing for them).
ONE_SHOT = {"migrate"}


@pytest.mark.parametrize("service", sorted(our_services()))
def test_every_tryon_variable_in_compose_is_a_setting(service: str) -> None:
    """No typo'd TRYON_ variable: each one names a field of Settings."""
    fields = {name.upper() for name in Settings.model_fields}
    env = our_services()[service].get("environment", {})
    for name in env:
        if name.startswith(ENV_PREFIX):  # FLOWER_* are Flower's own
            assert name.removeprefix(ENV_PREFIX) in fields, name


@pytest.mark.parametrize("service", sorted(our_services()))
def test_every_command_is_a_real_tryon_subcommand(service: str) -> None:
    """Each service's command names a `tryon` command (through its groups) and its options."""
    words = our_services()[service]["command"]
    command: click.Command = main
    while isinstance(command, click.Group):
        assert words and words[0] in command.commands, (service, words)
        command, words = command.commands[words[0]], words[1:]
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    if not command.context_settings.get("ignore_unknown_options"):  # `worker` passes to Celery
        assert {w.split("=")[0] for w in words if w.startswith("-")} <= options, service


@pytest.mark.parametrize("service", sorted(set(compose()["services"]) - ONE_SHOT))
def test_every_long_running_service_has_a_healthcheck(service: str) -> None:
    """Compose (and `depends_on: service_healthy`) can tell when each service is ready."""
    check = compose()["services"][service]["healthcheck"]
    assert check["test"] and check["test"][0] in ("CMD", "CMD-SHELL")


def test_only_the_emulator_is_behind_the_sandbox_profile() -> None:
    """A production `docker compose up` never starts the fake API; `--profile sandbox` does."""
    profiles = {name: svc.get("profiles") for name, svc in compose()["services"].items()}
    assert profiles.pop("emulator") == ["sandbox"]
    assert set(profiles.values()) == {None}
    worker_needs = compose()["services"]["worker"]["depends_on"]["emulator"]
    assert worker_needs["required"] is False  # absent in production: the worker still starts


@pytest.mark.parametrize("service", ["worker", "web"])
def test_workers_and_web_wait_for_healthy_stores_and_the_migration(service: str) -> None:
    """RabbitMQ and PostgreSQL healthy, then `tryon db upgrade` done, before they start."""
    depends = compose()["services"][service]["depends_on"]
    assert depends["rabbitmq"]["condition"] == "service_healthy"
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_migrate_runs_db_upgrade_once_on_the_same_database() -> None:
    """The one-shot `migrate` upgrades the store the workers use, after PostgreSQL is up."""
    services = compose()["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    url = migrate["environment"]["TRYON_DATABASE_URL"]
    assert url == services["worker"]["environment"]["TRYON_DATABASE_URL"]


def test_web_service_runs_tryon_web_with_a_healthcheck(tmp_path: Path) -> None:
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
    assert {"TRYON_API_KEYS", "TRYON_CALLBACK_SECRET", "TRYON_PUBLIC_URL"} <= set(
        environment("web", tmp_path)
    )


def test_workers_and_web_share_the_callback_secret(tmp_path: Path) -> None:
    """The tokens the workers put in callback URLs verify in `web`: one secret for both."""
    worker, web = environment("worker", tmp_path), environment("web", tmp_path)
    for name in ("TRYON_CALLBACK_SECRET", "TRYON_CALLBACK_SECRET_PREVIOUS", "TRYON_PUBLIC_URL"):
        assert worker[name] == web[name] == f"set-{name}"


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
    assert worker["healthcheck"]["test"][1].startswith("tryon health ")
    assert "health" in main.commands
    assert worker["environment"]["TRYON_METRICS_HOST"] == "0.0.0.0"
    assert "ports" not in worker


# Services of our image that read Settings (`tryon emulator` reads no TRYON_ variable).
SETTINGS_READERS = sorted(set(our_services()) - {"emulator"})


def example_variables() -> list[str]:
    names = [line.split("=")[0] for line in ENV_EXAMPLE.read_text().splitlines()]
    return [name for name in names if name.startswith(ENV_PREFIX)]


def test_env_example_lists_every_setting() -> None:
    """.env.example names each field of Settings once: it is the list compose must pass."""
    variables = example_variables()
    assert len(variables) == len(set(variables))
    assert set(variables) == {ENV_PREFIX + name.upper() for name in Settings.model_fields}


@pytest.mark.parametrize("service", SETTINGS_READERS)
def test_every_setting_of_env_example_reaches_the_service(service: str, tmp_path: Path) -> None:
    """A filled .env reaches the service whole: each variable with .env's value, none
    overridden by the compose file (its own values are only defaults)."""
    env = environment(service, tmp_path)
    missing = {name for name in example_variables() if env.get(name) != f"set-{name}"}
    assert missing == set()


@pytest.mark.parametrize("service", SETTINGS_READERS)
def test_a_fresh_copy_of_env_example_keeps_the_compose_defaults(
    service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cp .env.example .env` (every value empty) gives the containers compose's addresses
    and the image's paths, and Settings loads from that environment."""
    (tmp_path / ".env").write_text(ENV_EXAMPLE.read_text())
    env = service_environment(load_compose(tmp_path)["services"][service], tmp_path)
    assert env["TRYON_BROKER_URL"] == "amqp://tryon:tryon@rabbitmq:5672//"
    assert env["TRYON_DATABASE_URL"] == "postgresql://tryon:tryon@postgres:5432/tryon"
    assert env["TRYON_SANDBOX_EMULATOR_URL"] == "http://emulator:8765"
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path / "..")  # no .env of its own: the container's /app has none
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.data_dir == Path("/data")
    assert settings.effective_results_dir == Path("/data/results")
    assert settings.uses_rabbitmq


def test_only_web_and_flower_are_published_and_flower_on_loopback() -> None:
    """RabbitMQ, PostgreSQL, the emulator and the workers' metrics are reached on the
    compose network only; Flower (no login) is published on the host's loopback only."""
    services = compose()["services"]
    published = {name: svc["ports"] for name, svc in services.items() if "ports" in svc}
    assert set(published) == {"web", "flower"}
    assert all(str(mapping).startswith("127.0.0.1:") for mapping in published["flower"])
    assert {"rabbitmq", "postgres"}.isdisjoint(published)
    assert services["emulator"]["expose"] == ["8765"]
    text = (ROOT / "docker-compose.yml").read_text()
    assert "docker-compose.override.yml" in text  # says how to publish them when wanted
