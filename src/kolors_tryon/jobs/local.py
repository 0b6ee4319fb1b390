"""Local checks before publishing: what a producer can know before a job is on the queue.

The worker rejects a job it cannot run, but only once it has been published: the producer
learns of it later, from `status`, for input that was certain to fail (a 100 px photo, a
GIF, a missing file). Every door that takes jobs from people (`tryon submit|batch|validate`,
`enqueue()`) runs these checks first. They are `validate_job`'s rules, run here with the
image files read, and URLs checked for their form only: fetching them is the worker's
preflight (it may reach hosts this machine cannot, and it checks at the time it submits).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kolors_tryon.jobs.batch import ImageSourceError, image_argument, read_batch
from kolors_tryon.jobs.errors import CheckFailed
from kolors_tryon.jobs.ids import job_id_of
from kolors_tryon.jobs.images import inspect_image
from kolors_tryon.jobs.validation import JobRejected, Problem, ValidationOptions, validate_job

__all__ = ["BatchLine", "check_batch", "check_job", "local_options"]

_IMAGE_FIELDS: Final = ("human_image", "cloth_image")
_MESSAGE: Final = "message"
# What stands in for an image file already checked on its own (a batch names the same
# model photo on thousands of lines: it is decoded once). Preflight is off here, so a
# URL is checked by its form only, and this one passes.
_CHECKED_FILE: Final = "https://checked-file.invalid/image"

# A batch's image files, by the value naming them, and the verdict on each (None: valid).
ImageVerdicts = dict[str, tuple[str, str] | None]


def local_options(options: ValidationOptions) -> ValidationOptions:
    """`options` without the URL preflight: local checks never fetch the producer's URLs."""
    return dataclasses.replace(options, url_preflight=False)


def check_job(
    entry: Mapping[str, Any],
    options: ValidationOptions,
    *,
    base: Path | None = None,
    verdicts: ImageVerdicts | None = None,
) -> dict[str, Any]:
    """The job message with its image files read, once it passed every local check.

    Args:
        entry: The job's fields; with `base`, image fields may name files (relative to
            `base`), as in a batch file.
        options: The service's validation options (the preflight is left out).
        base: The folder relative image paths are read from; None: no file is read
            (`enqueue()`: the message is what will be published).
        verdicts: With `base`, the verdicts on image files checked already (filled in
            here): each file is decoded once per batch, not once per line.

    Raises:
        JobRejected: Every problem found, each naming its field; a missing image file is
            "file not found: PATH" (rule ``file_not_found``).
    """
    message = dict(entry)
    checked = dict(entry)  # what validate_job sees: files checked apart stand in as URLs
    unreadable: list[Problem] = []
    if base is not None:
        for field in _IMAGE_FIELDS:
            value = message.get(field)
            if not isinstance(value, str):
                continue
            try:
                message[field] = image_argument(value, base=base)
            except ImageSourceError as exc:
                unreadable.append(Problem(field, "file_not_found", str(exc)))
                continue
            if verdicts is None or message[field] is value:
                checked[field] = message[field]  # inline: validate_job checks it
                continue
            if value not in verdicts:
                verdicts[value] = _image_verdict(message[field], options)
            verdict = verdicts[value]
            checked[field] = _CHECKED_FILE
            if verdict is not None:
                unreadable.append(Problem(field, *verdict))
    try:
        validate_job(checked, local_options(options))
    except JobRejected as rejection:
        # A field whose file is missing is reported once, as missing, not as bad Base64.
        named = {problem.field for problem in unreadable}
        others = [p for p in rejection.problems if p.field not in named]
        # The id is the published message's (files as Base64), as the worker derives it.
        raise JobRejected(_job_id(message), [*unreadable, *others]) from None
    if unreadable:
        raise JobRejected(_job_id(message), unreadable)
    return message


def _image_verdict(data: str, options: ValidationOptions) -> tuple[str, str] | None:
    """(rule, message) of an image file's Base64 that breaks a rule, else None."""
    try:
        inspect_image(data, max_bytes=options.max_bytes)
    except CheckFailed as problem:
        return problem.rule, problem.message
    return None


def _job_id(message: Mapping[str, Any]) -> str | None:
    try:
        return job_id_of(message)
    except (RecursionError, TypeError, ValueError):
        return None


@dataclass(frozen=True)
class BatchLine:
    """The verdict on one job of a batch file.

    Attributes:
        number: Its line in the file (a CSV's header is line 1).
        job_id: The id it would be published under; None when it has none yet.
        problems: Empty when the job passed every local check.
    """

    number: int
    job_id: str | None
    problems: tuple[Problem, ...]

    @property
    def valid(self) -> bool:
        return not self.problems


def check_batch(path: Path, options: ValidationOptions) -> Iterator[BatchLine]:
    """Each job of a JSON Lines or CSV batch file, checked as `check_job` checks one.

    Image paths are read relative to the file's folder. The messages themselves are not
    kept (a catalogue's photos would fill the memory): the caller publishes the valid
    lines in a second pass, once it knows whether any line is invalid.
    """
    verdicts: ImageVerdicts = {}
    for number, entry in read_batch(path):
        if isinstance(entry, str):
            yield BatchLine(number, None, (_line_problem(entry),))
            continue
        try:
            message = check_job(entry, options, base=path.parent, verdicts=verdicts)
        except JobRejected as rejection:
            yield BatchLine(number, rejection.job_id, rejection.problems)
            continue
        yield BatchLine(number, job_id_of(message), ())


def _line_problem(text: str) -> Problem:
    """A problem `read_batch` found in a line: "column X: ..." names its field X."""
    if text.startswith("column ") and ": " in text:
        column, message = text.removeprefix("column ").split(": ", 1)
        return Problem(column, "format", message)
    return Problem(_MESSAGE, "format", text)
