"""The delivery lane reads `tryon.webhook` messages as Celery writes them, and nothing else."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kombu import Message

from kolors_tryon.config import Settings
from kolors_tryon.worker import create_app
from kolors_tryon.worker.delivery_lane import NotADelivery, parse_delivery

JSON = "application/json"


def celery_message(tmp_path: Path, name: str, args: list[Any], **options: Any) -> Message:
    """The message Celery itself builds for `send_task(name, args, **options)` (protocol 2)."""
    app = create_app(Settings(data_dir=tmp_path))
    headers, _properties, body, _sent = app.amqp.as_task_v2("id-1", name, tuple(args), **options)
    return Message(
        body=json.dumps(body),
        content_type=JSON,
        content_encoding="utf-8",
        headers=headers,
        accept={JSON},
    )


def test_a_delivery_message_gives_its_id_and_outages(tmp_path: Path) -> None:
    """`tryon.webhook(delivery_id, outages=n)` as Celery sends it: id, n, no ETA."""
    message = celery_message(tmp_path, "tryon.webhook", ["msg_1"], kwargs={"outages": 3})
    assert parse_delivery(message) == ("msg_1", 3, None)


def test_a_countdown_becomes_the_eta_the_lane_waits_for(tmp_path: Path) -> None:
    """A countdown (the embedded broker's delays) arrives as an aware ETA that far ahead."""
    before = datetime.now(UTC)
    message = celery_message(tmp_path, "tryon.webhook", ["msg_2"], countdown=30)
    delivery_id, outages, eta = parse_delivery(message)
    assert (delivery_id, outages) == ("msg_2", 0)
    assert eta is not None and eta.tzinfo is not None
    assert timedelta(seconds=29) <= eta - before <= timedelta(seconds=31)


@pytest.mark.parametrize(
    ("headers", "body", "content_type", "reason"),
    [
        ({"task": "tryon.submit"}, [["job"], {}, {}], JSON, "is not tryon.webhook"),
        ({}, [["msg_3"], {}, {}], JSON, "is not tryon.webhook"),
        ({"task": "tryon.webhook"}, {"args": ["msg_3"]}, JSON, "not [args, kwargs, embed]"),
        ({"task": "tryon.webhook"}, [[], {}, {}], JSON, "args is not [delivery_id]"),
        ({"task": "tryon.webhook"}, [[7], {}, {}], JSON, "args is not [delivery_id]"),
        ({"task": "tryon.webhook", "eta": "soon"}, [["m"], {}, {}], JSON, "eta is not"),
        ({"task": "tryon.webhook"}, [["m"], {}, {}], "application/x-python-serialize", "decode"),
    ],
    ids=["other-task", "no-task", "protocol-1", "no-args", "id-not-text", "bad-eta", "pickle"],
)
def test_anything_else_is_not_a_delivery(
    headers: dict[str, Any], body: Any, content_type: str, reason: str
) -> None:
    """Another task, another body shape, a bad ETA or a non-JSON body: refused with why."""
    message = Message(
        body=json.dumps(body),
        content_type=content_type,
        content_encoding="utf-8",
        headers=headers,
        accept={JSON},
    )
    with pytest.raises(NotADelivery, match=reason.replace("[", r"\[").replace("]", r"\]")):
        parse_delivery(message)
