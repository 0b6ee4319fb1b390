"""Flower sees our workers: task events on, on the namespace's exchanges; `tryon flower`."""

from __future__ import annotations

from click.testing import CliRunner

from harness.compose import load_compose
from kolors_tryon.cli import main
from kolors_tryon.config import Settings
from kolors_tryon.config.celery import celery_config


def test_task_events_go_to_the_namespace_event_exchange_on_rabbitmq() -> None:
    """Workers and publishers send task events, on `<ns>.celeryev`, where Flower listens."""
    settings = Settings.model_validate(
        {"broker_url": "amqp://guest:guest@127.0.0.1:5672//", "namespace": "shop1"}
    )
    config = celery_config(settings)
    assert config["worker_send_task_events"] is True
    assert config["task_send_sent_event"] is True
    assert config["event_exchange"] == "shop1.celeryev"
    assert config["control_exchange"] == "shop1.control"


def test_no_task_events_on_the_embedded_broker() -> None:
    """The embedded broker keeps bindings in one process: no monitor could read events."""
    config = celery_config(Settings.model_validate({}))
    assert config["worker_send_task_events"] is False
    assert config["task_send_sent_event"] is False


def test_tryon_flower_is_a_command_passing_its_arguments_to_flower() -> None:
    """`tryon flower --help` answers; compose's flower service runs it from our image."""
    result = CliRunner().invoke(main, ["flower", "--help"])
    assert result.exit_code == 0 and "Flower" in result.output
    flower = load_compose()["services"]["flower"]
    assert flower["build"] == "." and flower["command"][0] == "flower"
    assert "image" not in flower  # not mher/flower: it knows neither our exchanges nor app
