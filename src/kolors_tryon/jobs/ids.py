"""Job ids: the producer's own, or one derived from the message so duplicates collapse.

A message without `job_id` gets ``"job-" + sha256(canonical JSON)[:32]``, where the
canonical JSON is every field except `job_id`, as the producer sent it, with sorted keys,
compact separators and UTF-8 (non-ASCII characters unescaped). Publishing the same job
twice therefore gives the same id, which the store and Kling's `external_task_id` turn
into one job and one credit. The fields are hashed as sent, not after defaults are
filled in, so ``{"model_name": "kolors-virtual-try-on-v1", ...}`` and the same message
without `model_name` are two ids: the rule stays simple enough for any producer to
reproduce it.

128 bits of SHA-256 make an accidental collision between distinct jobs negligible.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any, Final, TypeGuard

__all__ = ["DERIVED_ID_PREFIX", "content_digest", "derive_job_id", "is_valid_job_id", "job_id_of"]

DERIVED_ID_PREFIX: Final = "job-"
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def is_valid_job_id(value: object) -> TypeGuard[str]:
    """Return True if `value` is a string usable as a job id (and `external_task_id`)."""
    return isinstance(value, str) and _VALID_ID.fullmatch(value) is not None


def _canonical(value: Any) -> Any:
    """Return `value` as plain JSON types, so that any mapping hashes the same way.

    JSON-parsed messages are already plain; this only matters for mappings built in
    Python (tuples, non-string keys, other objects), which are made JSON-able rather
    than refused, because an id is needed even for a job that is about to be rejected.
    """
    if isinstance(value, Mapping):
        return {str(key): _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, float):
        # NaN and infinity have no JSON form; their repr is stable.
        return value if value == value and abs(value) != float("inf") else repr(value)
    return repr(value)


def derive_job_id(fields: Mapping[str, Any]) -> str:
    """Derive the id of a message that has no job id of its own from its content.

    Args:
        fields: The message's fields; a `job_id` key among them is ignored.

    Returns:
        ``"job-"`` followed by the first 32 hex characters of the SHA-256 of the
        canonical JSON of every other field.

    Raises:
        RecursionError: `fields` is nested deeper than Python can walk (only possible for
            mappings built in Python; JSON parsing stops earlier).
    """
    content = {key: value for key, value in fields.items() if key != "job_id"}
    return DERIVED_ID_PREFIX + _digest(content)[:32]


def _digest(value: Any) -> str:
    text = json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: JSON can carry lone surrogates ("\ud800"); hash them rather than fail.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def content_digest(raw: bytes | str | Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a message's content, the same however its JSON was laid out.

    It tells a repeat of a job (same content: nothing to do) from another job sent under
    the same job id. A message that is not JSON, or nested too deeply to walk (it is
    rejected, but must still be recorded, not crash intake), is hashed as its bytes.
    """
    value: Any = raw
    if isinstance(raw, bytes | str):
        try:
            return _digest(json.loads(raw))
        except (ValueError, RecursionError):
            data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
            return hashlib.sha256(data).hexdigest()
    return _digest(value)


def job_id_of(raw: Mapping[str, Any]) -> str:
    """Return the id a message is recorded under, even when the message is invalid.

    Args:
        raw: The message as received (a JSON object).

    Returns:
        Its own `job_id` when that is a valid id string, otherwise the derived id, so a
        rejected job still gets one stable id however often it is re-published.
    """
    own = raw.get("job_id")
    if is_valid_job_id(own):
        return own
    return derive_job_id(raw)
