"""Task parsing on official, reseller and callback shapes; redaction of secrets."""

from __future__ import annotations

from typing import Any

import pytest

from kolors_tryon.kling import KlingTask, ServerError, TaskImage, redact
from kolors_tryon.kling.models import parse_task

OFFICIAL: dict[str, Any] = {
    "task_id": "867283741759111202",
    "task_status": "succeed",
    "task_status_msg": "",
    "task_info": {"external_task_id": "order-123-look-7"},
    "task_result": {"images": [{"index": 0, "url": "https://cdn.example/0.png?sig=abc"}]},
    "final_unit_deduction": "1",
    "created_at": 1774805076166,
    "updated_at": 1774805095037,
}


def test_parse_official_task() -> None:
    """The documented task object parses field by field."""
    task = parse_task(OFFICIAL)
    assert task == KlingTask(
        task_id="867283741759111202",
        status="succeed",
        status_message="",
        external_task_id="order-123-look-7",
        images=(TaskImage(index=0, url="https://cdn.example/0.png?sig=abc"),),
        final_unit_deduction="1",
        created_at=1774805076166,
        updated_at=1774805095037,
    )
    assert task.is_terminal
    assert task.succeeded
    assert not task.failed


def test_parse_create_answer() -> None:
    """The create answer (no result, no message) parses as a submitted task."""
    task = parse_task(
        {
            "task_id": "abc",
            "task_status": "submitted",
            "task_info": {"external_task_id": "job-1"},
            "created_at": 1,
            "updated_at": 1,
        }
    )
    assert (task.status, task.external_task_id, task.images) == ("submitted", "job-1", ())
    assert not task.is_terminal


@pytest.mark.parametrize(
    ("patch", "check"),
    [
        ({"task_result": {"images": [{"id": 2, "url": "u"}]}}, ("images", (TaskImage(2, "u"),))),
        ({"task_result": {"images": [{"url": "u"}]}}, ("images", (TaskImage(0, "u"),))),
        (
            {"task_result": {"images": [{"index": "1", "url": "u"}]}},
            ("images", (TaskImage(1, "u"),)),
        ),
        (
            {"task_result": {"images": ["u0", "u1"]}},
            ("images", (TaskImage(0, "u0"), TaskImage(1, "u1"))),
        ),
        (
            {"task_result": {"images": [{"index": 0}, 5, {"index": 1, "url": "u"}]}},
            ("images", (TaskImage(1, "u"),)),
        ),
        ({"task_result": {"images": None}}, ("images", ())),
        ({"task_result": None}, ("images", ())),
        ({"task_id": 867283741759111202}, ("task_id", "867283741759111202")),
        ({"final_unit_deduction": 1}, ("final_unit_deduction", "1")),
        ({"final_unit_deduction": 0.5}, ("final_unit_deduction", "0.5")),
        ({"final_unit_deduction": None}, ("final_unit_deduction", None)),
        ({"task_info": None}, ("external_task_id", None)),
        ({"task_info": {}}, ("external_task_id", None)),
        ({"task_info": {"external_task_id": 42}}, ("external_task_id", "42")),
        ({"task_info": {"external_task_id": ""}}, ("external_task_id", None)),
        ({"created_at": "1774805076166"}, ("created_at", 1774805076166)),
        ({"created_at": None}, ("created_at", None)),
        ({"created_at": "yesterday"}, ("created_at", None)),
        ({"task_status_msg": None}, ("status_message", "")),
        ({"task_status": "SUCCEED"}, ("status", "succeed")),
    ],
)
def test_parse_odd_shapes(patch: dict[str, Any], check: tuple[str, object]) -> None:
    """Reseller variations are absorbed: ids vs index, numbers vs strings, nulls."""
    task = parse_task({**OFFICIAL, **patch})
    field, expected = check
    assert getattr(task, field) == expected


def test_parse_failed_task_with_null_result() -> None:
    """A failed task has no images and keeps its reason."""
    task = parse_task(
        {
            "task_id": "t1",
            "task_status": "failed",
            "task_status_msg": "no human in the image",
            "task_result": None,
        }
    )
    assert task.failed
    assert task.is_terminal
    assert task.images == ()
    assert task.status_message == "no human in the image"


def test_parse_missing_optional_fields() -> None:
    """Only task_id and task_status are required."""
    task = parse_task({"task_id": "t", "task_status": "processing"})
    assert task == KlingTask(
        task_id="t",
        status="processing",
        status_message="",
        external_task_id=None,
        images=(),
        final_unit_deduction=None,
        created_at=None,
        updated_at=None,
    )


def test_parse_callback_body_and_envelope() -> None:
    """A bare callback body parses, and so does a reseller's enveloped callback."""
    assert parse_task(OFFICIAL).task_id == "867283741759111202"
    wrapped = {"code": 0, "message": "SUCCEED", "data": OFFICIAL}
    assert parse_task(wrapped) == parse_task(OFFICIAL)


def test_parse_top_level_external_id() -> None:
    """Some resellers put external_task_id beside task_id instead of in task_info."""
    body = {"task_id": "t", "task_status": "submitted", "external_task_id": "job-9"}
    assert parse_task(body).external_task_id == "job-9"


@pytest.mark.parametrize(
    "obj",
    [
        None,
        [],
        "task",
        42,
        {},
        {"task_status": "succeed"},
        {"task_id": "", "task_status": "succeed"},
        {"task_id": None, "task_status": "succeed"},
        {"task_id": {"x": 1}, "task_status": "succeed"},
        {"task_id": "t"},
        {"task_id": "t", "task_status": "done"},
        {"task_id": "t", "task_status": 3},
        {"task_id": "t", "task_status": None},
    ],
)
def test_parse_garbage_is_server_error(obj: object) -> None:
    """Anything without a usable id or a known status is a malformed answer, not a crash."""
    with pytest.raises(ServerError, match="malformed"):
        parse_task(obj)


@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        ("Authorization: Bearer sk-abc123xyz789", "sk-abc123xyz789", "Authorization: Bearer"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJhayJ9.c2lnbmF0dXJl end", "eyJpc3MiOiJhayJ9", "end"),
        ("key=sk-live-0123456789abcdef", "0123456789abcdef", "key="),
        (
            "https://cdn.example/a/b.png?X-Amz-Signature=deadbeef&e=1 ok",
            "deadbeef",
            "https://cdn.example/a/b.png?",
        ),
        ("https://user:hunter2@host/x", "hunter2", "host/x"),
        ("img " + "iVBORw0KGgo" * 20 + " tail", "iVBORw0KGgoiVBORw0KGgo", "tail"),
        ("data:image/png;base64,iVBORw0KGgo= x", "iVBORw0KGgo", " x"),
        ("Authorization: bearer eyJhbGciOiJIUzI1NiJ9", "eyJhbGciOiJIUzI1NiJ9", "bearer"),
        ("(Bearer sk-test-key)", "sk-test-key", "(Bearer [redacted])"),
        ("Bearer abc123", "abc123", "Bearer [redacted]"),
        ("Bearer Secret", "Secret", "Bearer [redacted]"),
        ("Bearer abcdefghijklmnopqrstuvwxyzabcdef", "abcdefghijklmnopqrstuvwxyz", "Bearer"),
        ("use data:image/jpeg;base64,/9j/4AAQ not that", "/9j/4AAQ", "not that"),
    ],
)
def test_redact_removes_secrets(text: str, gone: str, kept: str) -> None:
    """Bearer tokens, JWTs, keys, signed query strings and Base64 are scrubbed."""
    out = redact(text)
    assert gone not in out
    assert kept in out


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Kling 1303: concurrency over the resource-pack limit",
        "task 867283741759111202 id Ab3dEf9hIj2kLm5nOp7qRs",
        "GET /v1/images/kolors-virtual-try-on/order-123-look-7 -> 200",
        "sha256 " + "ab" * 32,
        # Our own fixed messages: the 401 of `tryon web`, its WWW-Authenticate header,
        # and the help text of a data: URI (the form, not anyone's photo).
        "a valid API key is required in the Authorization header (Bearer scheme)",
        'Bearer realm="tryon"',
        "expected 'Bearer <token>'",
        "data: URI is not Base64-encoded; use data:image/png;base64,<data> or bare Base64",
    ],
)
def test_redact_keeps_harmless_text(text: str) -> None:
    """Ids, paths, hashes and plain messages pass through unchanged."""
    assert redact(text) == text
