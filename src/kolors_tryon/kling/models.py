"""The task object, parsed defensively from whatever shape Kling or a reseller sends.

Official answers, reseller answers and callback bodies differ in small ways (`id` vs
`index`, numbers vs strings, missing `task_info`, a null `task_result` on failed tasks).
`parse_task` absorbs those differences; anything it cannot make sense of becomes a
`ServerError` (a malformed answer, retryable) rather than a KeyError deep in a worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, cast

from kolors_tryon.kling.errors import ServerError

__all__ = ["TERMINAL_STATUSES", "KlingTask", "TaskImage", "TaskStatus", "opt_int", "parse_task"]

TaskStatus = Literal["submitted", "processing", "succeed", "failed"]
TERMINAL_STATUSES: Final = frozenset({"succeed", "failed"})

# Official spellings, plus variants seen from resellers; anything else is malformed.
_STATUS_ALIASES: Final[dict[str, TaskStatus]] = {
    "submitted": "submitted",
    "processing": "processing",
    "succeed": "succeed",
    "succeeded": "succeed",
    "success": "succeed",
    "failed": "failed",
    "fail": "failed",
}


@dataclass(frozen=True, slots=True)
class TaskImage:
    """One result image.

    Attributes:
        index: Its position in the result (resellers may call it `id`).
        url: Where Kling serves it; deleted after 30 days, so copy it.
    """

    index: int
    url: str


@dataclass(frozen=True, slots=True)
class KlingTask:
    """A try-on task as Kling reports it.

    Attributes:
        task_id: Kling's id (always a string, even when sent as a number).
        status: One of submitted, processing, succeed, failed.
        status_message: Kling's reason, mostly for failed tasks; "" when absent.
        external_task_id: The caller's own id, when one was given.
        images: Result images; empty unless the task succeeded.
        final_unit_deduction: Units charged, as sent (format unconfirmed).
        created_at: Unix milliseconds, when known.
        updated_at: Unix milliseconds, when known.
    """

    task_id: str
    status: TaskStatus
    status_message: str = ""
    external_task_id: str | None = None
    images: tuple[TaskImage, ...] = ()
    final_unit_deduction: str | None = None
    created_at: int | None = None
    updated_at: int | None = None

    @property
    def is_terminal(self) -> bool:
        """True once the task has ended (succeed or failed) and its slot is free."""
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        """True when the task ended with images."""
        return self.status == "succeed"

    @property
    def failed(self) -> bool:
        """True when the task ended without images; `status_message` says why."""
        return self.status == "failed"


def parse_task(obj: object) -> KlingTask:
    """Build a `KlingTask` from a task object (an API `data` field or a callback body).

    Args:
        obj: The decoded JSON task object. A whole success envelope whose `data` is the
            task is accepted too, for resellers that wrap callbacks.

    Returns:
        The parsed task.

    Raises:
        ServerError: The object has no usable task id or an unknown status.
    """
    if not isinstance(obj, Mapping):
        raise ServerError(f"malformed task: expected an object, got {type(obj).__name__}")
    if "task_id" not in obj and isinstance(obj.get("data"), Mapping):
        obj = cast("Mapping[str, object]", obj["data"])

    task_id = _opt_str(obj.get("task_id"))
    if not task_id:
        raise ServerError("malformed task: no task_id")
    status = _parse_status(obj.get("task_status"))

    info = obj.get("task_info")
    external = _opt_str(info.get("external_task_id")) if isinstance(info, Mapping) else None
    if external is None:
        external = _opt_str(obj.get("external_task_id"))

    message = obj.get("task_status_msg", obj.get("task_status_message"))
    return KlingTask(
        task_id=task_id,
        status=status,
        status_message=message if isinstance(message, str) else "",
        external_task_id=external or None,
        images=_parse_images(obj.get("task_result")),
        final_unit_deduction=_opt_str(obj.get("final_unit_deduction")),
        created_at=opt_int(obj.get("created_at")),
        updated_at=opt_int(obj.get("updated_at")),
    )


def _parse_status(value: object) -> TaskStatus:
    status = _STATUS_ALIASES.get(value.strip().lower()) if isinstance(value, str) else None
    if status is None:
        # Only the type goes into the message: the value came from outside.
        shown = repr(value)[:40] if isinstance(value, str) else type(value).__name__
        raise ServerError(f"malformed task: unknown task_status {shown}")
    return status


def _parse_images(result: object) -> tuple[TaskImage, ...]:
    # task_result is null on failed tasks and images may be null or missing: both mean none.
    if not isinstance(result, Mapping):
        return ()
    raw = result.get("images")
    if not isinstance(raw, list):
        return ()
    images = []
    for position, item in enumerate(raw):
        if isinstance(item, str):  # a bare URL list, seen from some wrappers
            url: object = item
            index: int | None = position
        elif isinstance(item, Mapping):
            url = item.get("url")
            index = opt_int(item.get("index", item.get("id")))
        else:
            continue
        # An entry without a URL holds nothing to deliver; skip it rather than fail the task.
        if isinstance(url, str) and url:
            images.append(TaskImage(index=position if index is None else index, url=url))
    return tuple(images)


def _opt_str(value: object) -> str | None:
    """A string, or a number sent where a string belongs; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


def opt_int(value: object) -> int | None:
    """An int, or a numeric string/float where an int belongs; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None
