"""Request validation: the create body and the list paging parameters.

Each refusal is an :class:`ApiError` 1201 whose message starts with the field name and
states the rule (``"human_image: image width and height must be at least 300px ..."``),
so a client can show users exactly what to fix. A body that is not a JSON object is
1200. Only the first problem is reported, as real APIs do.

Choices where KLING_API.md is silent:

* Cheap checks (presence, types, ``model_name``, ``callback_url``, ``external_task_id``)
  run before image checks, so a typo is reported without fetching any URL.
* Unknown fields are ignored (``model`` instead of ``model_name`` is silently ignored,
  which is exactly how that known client bug goes unnoticed against the real API).
* An empty ``callback_url`` or ``external_task_id`` counts as absent.
* Base64 must be strict: standard alphabet, correct padding, no whitespace or newlines.
* A URL with any scheme but http(s) is refused; fetch failures (refused connection,
  timeout after :data:`FETCH_TIMEOUT` s, non-2xx status) are 1201 naming the field.
"""

from __future__ import annotations

import binascii
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kolors_tryon.emulator.errors import ApiError
from kolors_tryon.emulator.images import (
    MAX_IMAGE_BYTES,
    ImageFacts,
    ImageRuleError,
    inspect_image,
    is_flat_colour,
)
from kolors_tryon.emulator.net import FetchError, fetch_limited

MODEL_NAMES = ("kolors-virtual-try-on-v1", "kolors-virtual-try-on-v1-5")
DEFAULT_MODEL = MODEL_NAMES[0]
#: Seconds allowed to fetch one image URL.
FETCH_TIMEOUT = 5.0
PAGE_NUM_RANGE = (1, 1000)
PAGE_SIZE_RANGE = (1, 500)
DEFAULT_PAGE_NUM = 1
DEFAULT_PAGE_SIZE = 30

# Longest Base64 text that can decode to at most MAX_IMAGE_BYTES: refusing longer text
# up front avoids decoding a huge string only to throw it away.
_MAX_BASE64_CHARS = 4 * ((MAX_IMAGE_BYTES + 2) // 3)

Fetcher = Callable[[str, float, int], bytes]


@dataclass(frozen=True)
class CreateRequest:
    """A create body that passed every check.

    Attributes:
        model_name: The model asked for (the default filled in).
        callback_url: Where to POST status changes, or None.
        external_task_id: The caller's id, or None.
        human_is_blank: The human image is one flat colour: the task will fail.
    """

    model_name: str
    callback_url: str | None
    external_task_id: str | None
    human_is_blank: bool


def _invalid(field: str, rule: str) -> ApiError:
    return ApiError(1201, f"{field}: {rule}")


def _require_string(body: Mapping[str, Any], field: str) -> str:
    value = body.get(field)
    if value is None:
        raise _invalid(field, "required field is missing")
    if not isinstance(value, str):
        raise _invalid(field, "must be a string (an http(s) URL or raw Base64)")
    if not value.strip():
        raise _invalid(field, "must not be empty")
    return value


def _optional_string(body: Mapping[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(field, "must be a string")
    return value or None


def _load_image(field: str, value: str, fetch: Fetcher) -> bytes:
    """Turn a URL or Base64 field value into image bytes, or raise 1201."""
    lowered = value[:16].lower()
    if lowered.startswith("data:"):
        raise _invalid(field, "a data: URI prefix is not allowed; send the bare Base64 string")
    if lowered.startswith(("http://", "https://")):
        try:
            return fetch(value, FETCH_TIMEOUT, MAX_IMAGE_BYTES + 1)
        except FetchError as exc:
            raise _invalid(field, f"image URL could not be fetched ({exc})") from None
    if "://" in value[:32]:
        raise _invalid(field, "image URL scheme must be http or https")
    if len(value) > _MAX_BASE64_CHARS:
        raise _invalid(field, "image must be at most 10 MB")
    try:
        return binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise _invalid(field, "must be an http(s) URL or strictly valid raw Base64") from None


def _check_image(field: str, value: str, fetch: Fetcher) -> tuple[bytes, ImageFacts]:
    data = _load_image(field, value, fetch)
    try:
        return data, inspect_image(data)
    except ImageRuleError as exc:
        raise _invalid(field, str(exc)) from None


def _check_callback_url(body: Mapping[str, Any]) -> str | None:
    url = _optional_string(body, "callback_url")
    if url is None:
        return None
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _invalid("callback_url", "must be an http(s) URL")
    return url


def validate_create(body: Any, fetch: Fetcher = fetch_limited) -> CreateRequest:
    """Check a parsed create body as the API would.

    Args:
        body: The parsed JSON body.
        fetch: How to download image URLs (swappable so unit tests need no network).

    Raises:
        ApiError: 1200 when the body is not a JSON object, 1201 for a bad field.
    """
    if not isinstance(body, dict):
        raise ApiError(1200, "Invalid request parameters: the body must be a JSON object")
    human = _require_string(body, "human_image")
    cloth = _require_string(body, "cloth_image")
    model_name = body.get("model_name")
    if model_name is None or model_name == "":
        model_name = DEFAULT_MODEL
    elif model_name not in MODEL_NAMES:
        raise _invalid("model_name", f"must be one of {', '.join(MODEL_NAMES)}")
    callback_url = _check_callback_url(body)
    external_task_id = _optional_string(body, "external_task_id")
    human_data, human_facts = _check_image("human_image", human, fetch)
    _check_image("cloth_image", cloth, fetch)
    return CreateRequest(
        model_name=str(model_name),
        callback_url=callback_url,
        external_task_id=external_task_id,
        human_is_blank=is_flat_colour(human_data, human_facts),
    )


def _page_param(
    query: Mapping[str, list[str]], name: str, default: int, bounds: tuple[int, int]
) -> int:
    values = query.get(name)
    low, high = bounds
    if not values:
        return default
    try:
        number = int(values[-1])
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise _invalid(name, f"must be an integer from {low} to {high}")
    return number


def parse_page(query_string: str) -> tuple[int, int]:
    """Return ``(pageNum, pageSize)`` from a list request's query string.

    Raises:
        ApiError: 1201 when either is not an integer in its range.
    """
    query = urllib.parse.parse_qs(query_string, keep_blank_values=False)
    page_num = _page_param(query, "pageNum", DEFAULT_PAGE_NUM, PAGE_NUM_RANGE)
    page_size = _page_param(query, "pageSize", DEFAULT_PAGE_SIZE, PAGE_SIZE_RANGE)
    return page_num, page_size
