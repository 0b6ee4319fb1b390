"""Settings: TRYON_ variables, defaults, and clear errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from kolors_tryon.config import Settings, SettingsError, load_settings
from kolors_tryon.config.celery import celery_config, topology_for

pytestmark = pytest.mark.usefixtures("clean_env")


def test_defaults_are_embedded_and_sandbox(tmp_path: Path) -> None:
    """With nothing set: SQLite store, embedded broker, sandbox emulator, 5 slots."""
    settings = load_settings()
    assert settings.sandbox
    assert settings.effective_broker_url.startswith("tryon-sqlite+sqlite:///")
    assert settings.effective_database_url.startswith("sqlite:///")
    assert settings.effective_result_backend.startswith("db+sqlite:///")
    assert settings.effective_kling_base_url == settings.sandbox_emulator_url
    assert settings.max_in_flight == 5
    assert not settings.uses_rabbitmq


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """TRYON_* variables configure the service; secrets stay hidden in repr."""
    monkeypatch.setenv("TRYON_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    monkeypatch.setenv("TRYON_DATABASE_URL", "postgresql://postgres@127.0.0.1/test")
    monkeypatch.setenv("TRYON_KLING_API_KEY", "sk-very-secret")
    monkeypatch.setenv("TRYON_MAX_IN_FLIGHT", "3")
    settings = load_settings()
    assert not settings.sandbox
    assert settings.uses_rabbitmq
    assert settings.max_in_flight == 3
    assert settings.effective_result_backend == "db+postgresql+psycopg://postgres@127.0.0.1/test"
    assert settings.effective_kling_base_url == "https://api-singapore.klingai.com"
    assert "sk-very-secret" not in repr(settings)
    assert "sk-very-secret" not in str(settings.model_dump())


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    """A .env file in the working directory works like the environment."""
    (tmp_path / ".env").write_text("TRYON_MAX_IN_FLIGHT=7\n")
    assert load_settings().max_in_flight == 7


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("TRYON_MAX_IN_FLIGHT", "0", "TRYON_MAX_IN_FLIGHT"),
        ("TRYON_MAX_IN_FLIGHT", "many", "TRYON_MAX_IN_FLIGHT"),
        ("TRYON_HTTP_READ_TIMEOUT", "-1", "TRYON_HTTP_READ_TIMEOUT"),
        ("TRYON_LOG_LEVEL", "LOUD", "TRYON_LOG_LEVEL"),
        ("TRYON_NAMESPACE", "Has Spaces", "TRYON_NAMESPACE"),
        ("TRYON_KLING_ACCESS_KEY", "ak-only", "TRYON_KLING_SECRET_KEY"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    """A wrong value fails start-up with a message naming the variable."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=fragment):
        load_settings()


def test_secret_values_are_not_echoed_in_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """A configuration error never prints a secret it was given."""
    monkeypatch.setenv("TRYON_KLING_API_KEY", "sk-should-not-appear")
    monkeypatch.setenv("TRYON_KLING_ACCESS_KEY", "ak")
    monkeypatch.setenv("TRYON_KLING_SECRET_KEY", "sk-also-secret")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "sk-should-not-appear" not in str(info.value)
    assert "sk-also-secret" not in str(info.value)


def test_rabbitmq_topology_uses_quorum_queues_and_a_topic_exchange() -> None:
    """On RabbitMQ: quorum queues with a dead-letter exchange; task exchange is topic."""
    settings = Settings.model_validate({"broker_url": "amqp://guest:guest@127.0.0.1:5672//"})
    topology = topology_for(settings)
    args = topology.jobs_queue.queue_arguments or {}
    assert args["x-queue-type"] == "quorum"
    assert args["x-dead-letter-exchange"] == "tryon.dlx"
    assert topology.jobs_queue.name == "tryon.jobs"
    assert topology.events_exchange.name == "tryon.events"
    assert topology.task_exchange.type == "topic"
    config = celery_config(settings)
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["accept_content"] == ["json"]
    assert config["broker_transport_options"]["confirm_publish"] is True


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"TRYON_RESULT_STORAGE": "s3"}, "TRYON_RESULT_STORAGE=s3 needs TRYON_S3_BUCKET"),
        (
            {"TRYON_S3_BUCKET": "b", "TRYON_S3_ACCESS_KEY_ID": "AKIA0123"},
            "must be set together",
        ),
        ({"TRYON_RESULT_STORAGE": "ftp"}, "TRYON_RESULT_STORAGE"),
        ({"TRYON_S3_PREFIX": "/abs/"}, "TRYON_S3_PREFIX"),
        ({"TRYON_S3_PREFIX": "no-slash"}, "TRYON_S3_PREFIX"),
    ],
)
def test_result_storage_settings_are_checked(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fragment: str
) -> None:
    """A bucket backend without a bucket, half credentials or a bad prefix stop start-up."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=fragment):
        load_settings()


def test_s3_secret_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bucket's secret key is a SecretStr: not in repr, nor in an error message."""
    monkeypatch.setenv("TRYON_S3_SECRET_ACCESS_KEY", "very-secret-s3")
    with pytest.raises(SettingsError) as failure:
        load_settings()
    assert "very-secret-s3" not in str(failure.value)
    monkeypatch.setenv("TRYON_S3_ACCESS_KEY_ID", "AKIA0123")
    settings = load_settings(result_storage="s3", s3_bucket="b")
    assert "very-secret-s3" not in repr(settings)


def test_a_postgres_url_is_read_as_postgresql_on_psycopg() -> None:
    """`postgres://` (what hosting platforms hand out) is normalised to the psycopg driver."""
    settings = Settings.model_validate({"database_url": "postgres://u@db.example:5432/tryon"})
    assert settings.effective_database_url == "postgresql+psycopg://u@db.example:5432/tryon"
    assert settings.effective_result_backend == "db+postgresql+psycopg://u@db.example:5432/tryon"


def test_an_unknown_broker_scheme_names_the_variable_and_the_accepted_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`rabbitmq://` is refused at load, naming TRYON_BROKER_URL and amqp://, no password."""
    monkeypatch.setenv("TRYON_BROKER_URL", "rabbitmq://user:hunter2@mq.example//")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    text = str(caught.value)
    assert "TRYON_BROKER_URL" in text and "rabbitmq://" in text and "amqp://" in text
    assert "hunter2" not in text
