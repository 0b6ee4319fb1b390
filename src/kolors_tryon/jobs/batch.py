"""Input formats of the job contract: batch files (JSON Lines, CSV) and image arguments.

Pure functions over files, shared by every door that takes jobs from people rather than
from programs (`tryon submit|batch|demo`, later the HTTP door): they turn what a person
wrote into job messages, and leave the verdict on each message to `validate_job`.
"""

from __future__ import annotations

import base64
import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from kolors_tryon.errors import TryonError

__all__ = ["ImageSourceError", "image_argument", "read_batch", "with_image_files_read"]

# A value this long is inline Base64, never a path (and asking the OS would fail anyway).
_MAX_PATH_LENGTH: Final = 4096
_PASSED_THROUGH: Final = ("http://", "https://", "data:")
_IMAGE_FIELDS: Final = ("human_image", "cloth_image")
# "ftp:", "javascript:", "file:": a URL of a scheme we do not take, not a file name (two
# letters at least: "C:" starts a Windows path).
_SCHEME: Final = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
# Other separators people's spreadsheets export with: a header holding one of these and
# no comma was not written for this reader, and every row would be one unknown column.
_OTHER_SEPARATORS: Final = (";", "\t", "|")


class ImageSourceError(TryonError, ValueError):
    """An image argument that is neither an http(s) URL nor a readable file."""


def image_argument(value: str, base: Path | None = None) -> str:
    """A URL stays as it is; a file path becomes the file's Base64.

    Args:
        value: A URL, a file path, or (in a batch file) Base64 already.
        base: The directory relative paths are read from (a batch file's own); without
            it the value must be a URL or a file.

    Raises:
        ImageSourceError: Without `base`, the value is neither a URL nor a readable file.
    """
    if value.startswith(_PASSED_THROUGH):
        return value
    path = Path(value)
    if base is not None and not path.is_absolute():
        path = base / path
    try:
        is_file = len(value) < _MAX_PATH_LENGTH and path.is_file()
    except OSError:  # e.g. "File name too long": the value is inline Base64, not a path
        is_file = False
    if is_file:
        return base64.b64encode(path.read_bytes()).decode("ascii")
    scheme = _SCHEME.match(value)
    if scheme is not None:
        if base is None:
            # Not quoted: the rest of such a value may be anything (a script, a token).
            raise ImageSourceError(
                f"a {scheme.group(1)}: URL is neither an http(s) URL nor a readable file"
            )
        return value  # the checks name the field and the schemes accepted
    if base is None or _looks_like_a_path(value):
        raise ImageSourceError(f"file not found: {path}")
    return value  # Base64 already, or garbage the worker will reject with a reason


def _looks_like_a_path(value: str) -> bool:
    """A short value with a dot or a backslash is a file name: Base64 has neither."""
    return len(value) <= _MAX_PATH_LENGTH and ("." in value or "\\" in value)


def with_image_files_read(entry: dict[str, Any], base: Path) -> dict[str, Any]:
    """A batch entry whose image fields that name files (relative to `base`) hold Base64."""
    for field in _IMAGE_FIELDS:
        if isinstance(entry.get(field), str):
            entry[field] = image_argument(entry[field], base=base)
    return entry


def read_batch(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, message) for each job of a JSON Lines or CSV file; str = a problem.

    A problem does not stop the file: the caller reports it with its line and goes on.
    """
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header_problem = _csv_header_problem(list(reader.fieldnames or []))
            if header_problem is not None:
                yield 1, header_problem
                return
            for number, row in enumerate(reader, start=2):
                yield number, _csv_row_to_message(row)
        return
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, f"not valid JSON ({exc.msg} at column {exc.colno})"
                continue
            if not isinstance(value, dict):
                yield number, "a job must be a JSON object"
                continue
            yield number, value


def _csv_header_problem(columns: list[str]) -> str | None:
    """What is wrong with a CSV header, said once rather than on every row."""
    if len(columns) == 1:
        for separator in _OTHER_SEPARATORS:
            if separator in columns[0]:
                shown = "tab" if separator == "\t" else f"'{separator}'"
                return (
                    f"the columns are separated by {shown}: tryon batch reads comma-separated "
                    "CSV (header: human_image,cloth_image,...)"
                )
    for required in _IMAGE_FIELDS:
        if required not in columns:
            return (
                f"column {required}: missing from the header; a CSV batch needs the columns "
                f"{' and '.join(_IMAGE_FIELDS)} (got: {', '.join(columns) or 'none'})"
            )
    return None


def _csv_row_to_message(row: dict[str, str]) -> dict[str, Any] | str:
    """A CSV row as a job message (empty cells left out), or the problem with it."""
    message: dict[str, Any] = {k: v for k, v in row.items() if k and v not in (None, "")}
    if "metadata" in message:
        try:
            message["metadata"] = json.loads(message["metadata"])
        except json.JSONDecodeError:
            return "column metadata: not a JSON object"
    if "priority" in message:
        try:
            message["priority"] = int(message["priority"])
        except ValueError:
            return "column priority: not a whole number"
    if "garments" in message:
        message["garments"] = [g.strip() for g in message["garments"].replace("+", ",").split(",")]
    return message
