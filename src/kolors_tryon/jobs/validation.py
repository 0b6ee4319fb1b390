"""`validate_job`: everything the worker checks before a job may cost a credit.

A job is either a `ValidJob`, ready to be sent, or a `JobRejected` that says which field
broke which rule in words a producer can act on (DESIGN.md invariant 5). Whatever
arrives on the queue (bytes that are not JSON, JSON that is not an object, wrong types,
huge values) ends in one of those two outcomes and never in another exception, because
the worker must keep running. Problems never quote image data or full URLs (invariant 6).

The order of checks: the message is parsed, its id fixed (its own, or derived from its
content so that a rejection is recorded under a stable id), the fields checked by
`JobMessage` (shape, URLs, metadata size, garment combination), then each image by its
bytes (Base64, or the fetched URL when preflight is on). All problems found are
reported together, so one round trip fixes a message.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final, NoReturn

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from kolors_tryon.config import defaults
from kolors_tryon.errors import TryonError
from kolors_tryon.jobs.enums import Garment, ModelName, WebhookEvent
from kolors_tryon.jobs.errors import CheckFailed
from kolors_tryon.jobs.ids import job_id_of
from kolors_tryon.jobs.images import MAX_IMAGE_BYTES, ImageInfo, inspect_image
from kolors_tryon.jobs.models import (
    MAX_CALLBACK_URL_LENGTH,
    MAX_METADATA_BYTES,
    CreateTaskBody,
    JobMessage,
    normalize_image_field,
)
from kolors_tryon.jobs.preflight import checked_address, preflight_image_url
from kolors_tryon.jobs.urls import ALLOWED_SCHEMES, UrlProblem, check_http_url, scheme_of

if TYPE_CHECKING:
    from kolors_tryon.config import Settings

__all__ = [
    "DEFAULT_OPTIONS",
    "MAX_MESSAGE_BYTES",
    "JobRejected",
    "Problem",
    "ValidJob",
    "ValidationOptions",
    "validate_job",
]

MAX_MESSAGE_BYTES: Final = defaults.MAX_MESSAGE_BYTES
# Enough to fix a message in one go; a message with thousands of stray keys would
# otherwise produce a reason longer than the message.
_MAX_PROBLEMS: Final = 20
_MESSAGE: Final = "message"  # the `field` of problems about the message as a whole
_IMAGE_FIELDS: Final = ("human_image", "cloth_image")
_FIELDS: Final = tuple(JobMessage.model_fields)
_FIELD_ORDER: Final = {name: i for i, name in enumerate(_FIELDS)}

# What each field accepts, for "required" and "type" messages.
_ACCEPTS: Final = {
    "job_id": (
        "a string of 1-64 letters, digits, '.', '_', ':' or '-' (or leave it out to derive "
        "one from the content)"
    ),
    "model_name": f"'{ModelName.V1}' or '{ModelName.V1_5}'",
    "human_image": "a string: an http(s) URL or the JPEG/PNG file as Base64",
    "cloth_image": "a string: an http(s) URL or the JPEG/PNG file as Base64",
    "callback_url": "an http(s) URL string of at most 2048 characters, or null",
    "webhook_events": (
        f"a list of job states ({', '.join(e.value for e in WebhookEvent)}), or null for "
        "the terminal ones"
    ),
    "metadata": f"a JSON object of at most {MAX_METADATA_BYTES // 1024} KB",
    "garments": (
        f"a list of garments ({', '.join(g.value for g in Garment)}): one item, or top and "
        f"bottom on {ModelName.V1_5}"
    ),
    "priority": "an integer from 0 to 9",
}
_ENUM_VALUES: Final = {
    "model_name": tuple(m.value for m in ModelName),
    "garments": tuple(g.value for g in Garment),
    "webhook_events": tuple(e.value for e in WebhookEvent),
}
_RULE_OF_PYDANTIC: Final = {
    "missing": "required",
    "extra_forbidden": "extra_field",
    "enum": "enum",
    "string_pattern_mismatch": "pattern",
    "string_too_short": "min_length",
    "string_too_long": "max_length",
    "greater_than_equal": "range",
    "less_than_equal": "range",
    "too_short": "min_items",
    "too_long": "max_items",
    "invalid_key": "type",  # a non-string key in a mapping built in Python
    "invalid-json-value": "type",  # a non-JSON value (set, object) in metadata
}


@dataclass(frozen=True)
class Problem:
    """One broken rule of one field.

    Attributes:
        field: The field's path, e.g. ``"human_image"`` or ``"garments[1]"``, or
            ``"message"`` for the message as a whole.
        rule: A short, stable rule name (``"required"``, ``"min_size"``...) to branch on.
        message: What is wrong and what is accepted; never image data or a full URL.
    """

    field: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class JobRejected(TryonError):
    """A job is invalid and must not reach the API; the worker records it as `rejected`.

    Attributes:
        job_id: The id the rejection is recorded under, or None when the message is not
            a JSON object (it cannot be recorded; the worker dead-letters it).
        problems: Every problem found, in the order checked.
        callback_url: The message's webhook target if that field was valid (the
            rejection is delivered there), else None.
        webhook_events: The message's `webhook_events` if valid and given, else None.
        code: ``"invalid_job"``, the error code of the job record.
    """

    code: ClassVar[str] = "invalid_job"

    def __init__(
        self,
        job_id: str | None,
        problems: Sequence[Problem],
        *,
        callback_url: str | None = None,
        webhook_events: Sequence[WebhookEvent] | None = None,
    ) -> None:
        self.job_id = job_id
        self.problems = tuple(problems)
        # The producer's webhook target, when those fields themselves passed: the
        # rejection is a state change the producer hears of like any other.
        self.callback_url = callback_url
        self.webhook_events = tuple(webhook_events) if webhook_events is not None else None
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        """All problems as one line, e.g. ``"human_image: is required; ..."``."""
        return "; ".join(str(problem) for problem in self.problems)

    def __str__(self) -> str:
        return self.reason

    def __repr__(self) -> str:
        return f"JobRejected(job_id={self.job_id!r}, problems={self.problems!r})"


@dataclass(frozen=True)
class ValidJob:
    """A job that passed every check, with the exact body to send to Kling.

    Attributes:
        job_id: Its id (its own, or derived from its content).
        message: The message, normalized: Base64 images bare (no data: prefix, no line
            breaks), URLs stripped of surrounding whitespace.
        body: The create body, with `external_task_id` = `job_id`.
        human: What the checks learnt about the person image; None when it is a URL and
            preflight is off.
        cloth: The same for the cloth image.
    """

    job_id: str
    message: JobMessage
    body: CreateTaskBody
    human: ImageInfo | None
    cloth: ImageInfo | None


@dataclass(frozen=True)
class ValidationOptions:
    """How far `validate_job` goes beyond the message itself.

    Attributes:
        url_preflight: Fetch image URLs and check the images (``TRYON_URL_PREFLIGHT``).
        allow_private_urls: Let preflight fetch private, loopback and link-local hosts
            (``TRYON_PREFLIGHT_ALLOW_PRIVATE``).
        timeout: (connect, read) timeout of preflight requests, from the one network
            budget in Settings.
        max_bytes: The largest image accepted (Kling: 10 MB).
        allow_private_webhooks: Accept a `callback_url` on a private, loopback or
            link-local address (``TRYON_WEBHOOK_ALLOW_PRIVATE``).
    """

    url_preflight: bool = False
    allow_private_urls: bool = False
    allow_private_webhooks: bool = False
    timeout: tuple[float, float] = defaults.HTTP_TIMEOUT
    max_bytes: int = MAX_IMAGE_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> ValidationOptions:
        """Build the options from the service's Settings."""
        return cls(
            url_preflight=settings.url_preflight,
            allow_private_urls=settings.preflight_allow_private,
            timeout=settings.http_timeout,
            allow_private_webhooks=settings.webhook_allow_private,
        )


DEFAULT_OPTIONS: Final = ValidationOptions()


# --- parsing -----------------------------------------------------------------------------


class _DuplicateKey(TryonError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _NotJson(TryonError):
    pass


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json keeps the last of duplicate keys silently; a producer sending two
    # `human_image`s has a bug we should name, not guess around.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _refuse_constant(name: str) -> NoReturn:
    raise _NotJson(name)


def _reject_message(rule: str, message: str) -> JobRejected:
    return JobRejected(None, [Problem(_MESSAGE, rule, message)])


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, bytes | bytearray):
        return "bytes (send files as Base64 text)"
    return f"a {type(value).__name__}"


def _parse_text(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_unique_object, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        # Some of json's messages end in "at" already ("Unterminated string starting at").
        problem = exc.msg.removesuffix(" at")
        where = f" at line {exc.lineno} column {exc.colno}"
        raise _reject_message(
            "json", f"is not valid JSON ({problem}{where}); publish the job as a JSON object"
        ) from None
    except _NotJson as exc:
        raise _reject_message(
            "json", f"is not valid JSON: {exc} is not a JSON number; publish a JSON object"
        ) from None
    except _DuplicateKey as exc:
        raise _reject_message(
            "duplicate_key",
            f"has the key '{_shorten(exc.key)}' twice in one object; give each field once",
        ) from None
    except RecursionError:
        raise _reject_message("json", "is nested too deeply to read") from None
    except ValueError:  # e.g. an integer literal longer than Python's digit limit
        raise _reject_message("json", "holds a number too long to read") from None


def _parse(raw: object) -> dict[str, Any]:
    """Turn any input into the message's fields, or reject it as a whole (job_id None)."""
    if isinstance(raw, JobMessage):
        return raw.model_dump(mode="json", exclude_unset=True)
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
        if len(data) > MAX_MESSAGE_BYTES:
            raise _reject_message(
                "max_bytes",
                f"is {len(data)} bytes; a job message may be at most {MAX_MESSAGE_BYTES} bytes",
            )
        try:
            raw = data.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError:
            raise _reject_message(
                "encoding", "is not UTF-8 text; publish the job as UTF-8 JSON"
            ) from None
    if isinstance(raw, str):
        if len(raw) > MAX_MESSAGE_BYTES:
            raise _reject_message(
                "max_bytes",
                f"is {len(raw)} characters; a job message may be at most {MAX_MESSAGE_BYTES} bytes",
            )
        if not raw.strip():
            raise _reject_message("json", "is empty; publish the job as a JSON object")
        raw = _parse_text(raw)
    if isinstance(raw, Mapping):
        return dict(raw)
    raise _reject_message(
        "type",
        f"must be a JSON object with the job's fields; got {_json_type(raw)}",
    )


# --- the shape of the JSON itself ----------------------------------------------------------

_MAX_DEPTH: Final = defaults.MAX_JSON_DEPTH


def _has_lone_surrogate(text: str) -> bool:
    # isascii() is a flag lookup in CPython: megabytes of Base64 cost nothing here.
    return not text.isascii() and _LONE_SURROGATE.search(text) is not None


_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _structure_problems(fields: Mapping[str, Any]) -> list[Problem]:
    """What no field rule can check, because it breaks the checks themselves: nesting
    deeper than `defaults.MAX_JSON_DEPTH`, and text that is not Unicode.

    Walked with a stack of our own, never by recursion, and never deeper than the limit,
    so that a message nested a thousand levels is a problem here, not a RecursionError
    in pydantic, the id's hash or the store's JSON encoder (a crash retried and parked
    instead of a rejection). A lone surrogate (``"\\ud800"``, valid JSON) is refused
    rather than stored escaped: it is not a character, UTF-8 cannot carry it, so the
    record, its events and webhooks could not be encoded, and other JSON parsers refuse
    it; storing an escaped copy would hand producers back other data than they sent.
    """
    problems: list[Problem] = []
    too_deep: set[str] = set()
    stack: list[tuple[object, int, tuple[int | str, ...]]] = [
        (value, 2, (key,)) for key, value in fields.items()
    ]
    while stack and len(problems) < _MAX_PROBLEMS:
        value, depth, loc = stack.pop()
        if isinstance(value, str):
            if _has_lone_surrogate(value):
                problems.append(_surrogate_problem(loc))
            continue
        if not isinstance(value, Mapping | list | tuple):
            continue
        top = str(loc[0])
        if depth > _MAX_DEPTH:
            if top not in too_deep:
                too_deep.add(top)
                problems.append(
                    Problem(
                        _field_path(loc[:1]),
                        "max_depth",
                        f"is nested too deeply: more than {_MAX_DEPTH} levels of arrays and "
                        f"objects (the message itself the first); at most {_MAX_DEPTH} are "
                        "accepted",
                    )
                )
            continue
        if isinstance(value, Mapping):
            for key, item in value.items():
                if isinstance(key, str) and _has_lone_surrogate(key):
                    problems.append(_surrogate_problem(loc, in_key=True))
                stack.append((item, depth + 1, (*loc, str(key))))
        else:
            stack.extend((item, depth + 1, (*loc, i)) for i, item in enumerate(value))
    return sorted(problems, key=lambda p: _FIELD_ORDER.get(p.field.split(".")[0], len(_FIELDS)))


def _surrogate_problem(loc: tuple[int | str, ...], *, in_key: bool = False) -> Problem:
    what = "has a key holding" if in_key else "holds"
    return Problem(
        _field_path(loc),
        "encoding",
        f"{what} a lone UTF-16 surrogate (an escape from \\ud800 to \\udfff without "
        "its pair), which is no Unicode character and cannot be stored or sent as UTF-8; "
        "send the character itself, or both halves of its surrogate pair",
    )


# --- translating pydantic's errors -------------------------------------------------------


def _shorten(text: str, limit: int = 40) -> str:
    """A field name or value fit for a message: bounded and printable."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in text[: limit + 1])
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "…"


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + _shorten(part, 64)
    return path or _MESSAGE


def _shown(value: object) -> str:
    """Quote a small, non-image value the producer sent, so they can find it."""
    if isinstance(value, str):
        return f"'{_shorten(value)}'"
    if isinstance(value, bool | int | float) or value is None:
        return _shorten(json.dumps(value))
    return _json_type(value)


def _extra_field_message(name: str) -> str:
    guess = difflib.get_close_matches(name, _FIELDS, n=1, cutoff=0.6)
    if guess:
        # The guess alone: the list of every field (it grows) made a reason of several
        # mistakes too long to read.
        return f"unknown field; did you mean '{guess[0]}'?"
    return f"unknown field; the job message's fields are: {', '.join(_FIELDS)}"


def _problem_from_error(error: ErrorDetails) -> Problem:
    loc = tuple(error["loc"])
    path = _field_path(loc)
    top = str(loc[0]) if loc else ""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    accepts = _ACCEPTS.get(top, "a valid value")

    if "reason" in ctx:  # raised by our own validators: rule and message are ready
        return Problem(path, kind, str(ctx["reason"]))
    rule = _RULE_OF_PYDANTIC.get(kind)
    if rule is None and (kind.endswith(("_type", "_parsing")) or "_from_" in kind):
        rule = "type"
    if rule == "required":
        return Problem(path, rule, f"is required; give {accepts}")
    if rule == "extra_field":
        return Problem(path, rule, _extra_field_message(str(loc[-1]) if loc else ""))
    if kind == "invalid_key":
        return Problem(path, "type", "is not a string key; a job message's keys are field names")
    if rule == "type":
        if top == "metadata" and len(loc) > 1:
            accepts = "a JSON value (string, number, boolean, null, array or object)"
        return Problem(path, rule, f"must be {accepts}; got {_json_type(value)}")
    if rule == "enum":
        allowed = " or ".join(f"'{v}'" for v in _ENUM_VALUES.get(top, ()))
        return Problem(path, rule, f"must be {allowed or accepts}; got {_shown(value)}")
    if rule == "pattern" or (rule in ("min_length", "max_length") and top == "job_id"):
        got = f"{_shown(value)}" if rule == "pattern" else f"{len(str(value))} characters"
        return Problem(path, rule, f"must be {accepts}; got {got}")
    if rule == "max_length":
        limit = ctx.get("max_length", "?")
        size = len(value) if isinstance(value, str) else "?"
        return Problem(path, rule, f"is {size} characters long; at most {limit} are accepted")
    if rule == "range":
        return Problem(path, rule, f"must be {accepts}; got {_shown(value)}")
    # Anything else: pydantic's own wording (it never includes the input) under its name.
    return Problem(path, rule or kind.replace("-", "_"), str(error["msg"]))


def _problems_from(exc: ValidationError) -> list[Problem]:
    return [_problem_from_error(error) for error in exc.errors(include_url=False)]


# --- images -------------------------------------------------------------------------------


def _check_image(value: str, options: ValidationOptions) -> ImageInfo | None:
    """Check one image field whose form already passed; None for an unfetched URL."""
    text = normalize_image_field(value)
    if scheme_of(text) in ALLOWED_SCHEMES:
        if not options.url_preflight:
            return None
        return preflight_image_url(
            text,
            allow_private=options.allow_private_urls,
            timeout=options.timeout,
            max_bytes=options.max_bytes,
        )
    return inspect_image(text, max_bytes=options.max_bytes)


# --- the webhook target -------------------------------------------------------------------

_WEBHOOK_HINT: Final = "refused unless TRYON_WEBHOOK_ALLOW_PRIVATE=true"


def _webhook_target_problem(url: str, options: ValidationOptions) -> Problem | None:
    """Refuse a callback_url whose host is (or resolves to) a non-public address.

    Webhooks are POSTed by our workers from inside the network, so a producer must not
    aim them at internal services (server-side request forgery). A name that does not
    resolve now is accepted: DNS may be down for a moment, and delivery checks again.
    """
    if options.allow_private_webhooks:
        return None
    try:
        checked_address(check_http_url(url, max_length=MAX_CALLBACK_URL_LENGTH), hint=_WEBHOOK_HINT)
    except UrlProblem as exc:
        if exc.rule == "private_address":
            return Problem("callback_url", exc.rule, exc.message)
    return None


def _webhook_target(fields: Mapping[str, Any], problems: Sequence[Problem]) -> dict[str, Any]:
    """The webhook fields of a rejected message that are themselves valid."""
    broken = {problem.field.split("[", 1)[0].split(".", 1)[0] for problem in problems}
    target: dict[str, Any] = {}
    if "callback_url" in broken:
        return target
    try:
        part = JobMessage.model_validate(
            {
                "human_image": "https://x.invalid/a.jpg",
                "cloth_image": "https://x.invalid/b.jpg",
                **{
                    k: fields[k]
                    for k in ("callback_url", "webhook_events")
                    if k in fields and k not in broken
                },
            }
        )
    except ValidationError:
        return target
    if part.callback_url is not None:
        target = {"callback_url": part.callback_url, "webhook_events": part.webhook_events}
    return target


# --- the entry point ----------------------------------------------------------------------


def _validate(raw: object, options: ValidationOptions) -> ValidJob:
    fields = _parse(raw)
    try:
        job_id: str | None = job_id_of(fields)
    except (RecursionError, ValueError, TypeError):
        job_id = None  # only for pathological mappings built in Python

    problems = _structure_problems(fields)
    if any(problem.rule == "max_depth" for problem in problems):
        # The field rules would walk the same depth by recursion: nothing more to learn.
        raise JobRejected(job_id, problems, **_webhook_target(fields, problems))
    message: JobMessage | None = None
    try:
        message = JobMessage.model_validate(fields)
    except ValidationError as exc:
        problems.extend(_problems_from(exc))
    except RecursionError:
        problems.append(Problem(_MESSAGE, "json", "is nested too deeply to read"))

    failed_fields = {problem.field for problem in problems}
    infos: dict[str, ImageInfo | None] = {}
    for name in _IMAGE_FIELDS:
        value = fields.get(name)
        if name in failed_fields or not isinstance(value, str):
            continue
        try:
            infos[name] = _check_image(value, options)
        except CheckFailed as exc:
            problems.append(Problem(name, exc.rule, exc.message))

    callback = fields.get("callback_url")
    if "callback_url" not in failed_fields and isinstance(callback, str) and callback.strip():
        problem = _webhook_target_problem(callback.strip(), options)
        if problem is not None:
            problems.append(problem)

    if job_id is None and not problems:
        problems.append(Problem(_MESSAGE, "json", "is nested too deeply to derive its id"))
    if problems or message is None or job_id is None:
        if len(problems) > _MAX_PROBLEMS:
            more = len(problems) - _MAX_PROBLEMS
            problems = [
                *problems[:_MAX_PROBLEMS],
                Problem(_MESSAGE, "too_many_problems", f"and {more} more problems"),
            ]
        raise JobRejected(job_id, problems, **_webhook_target(fields, problems))

    # The producer's callback_url is our webhook target, never Kling's: Kling's
    # callbacks come to `tryon web`, and the producer hears from us, signed.
    body = CreateTaskBody(
        model_name=message.model_name,
        human_image=message.human_image,
        cloth_image=message.cloth_image,
        external_task_id=job_id,
    )
    return ValidJob(
        job_id=job_id,
        message=message,
        body=body,
        human=infos.get("human_image"),
        cloth=infos.get("cloth_image"),
    )


def validate_job(
    raw: bytes | str | Mapping[str, Any], options: ValidationOptions = DEFAULT_OPTIONS
) -> ValidJob:
    """Check a job message completely, as the worker does before spending a credit.

    Args:
        raw: The message: the queue's bytes, a JSON string, or a mapping of its fields
            (a `JobMessage` is accepted too).
        options: Whether to preflight image URLs, and how.

    Returns:
        The valid job, normalized, with its create body.

    Raises:
        JobRejected: with every problem found; this is the only exception raised, for
            any input whatsoever.
    """
    try:
        return _validate(raw, options)
    except JobRejected:
        raise
    except Exception as exc:
        # A bug in a check must neither kill the worker nor let an unchecked job through.
        # The exception text is not quoted: it could hold input data.
        raise _reject_message(
            "internal",
            f"could not be checked (internal error {type(exc).__name__}); please report it",
        ) from None
