"""Bearer keys of the HTTP door (``TRYON_API_KEYS``), compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from pydantic import SecretStr

__all__ = ["bearer_key_matches", "producer_of_key"]


def bearer_key_matches(authorization: str | None, keys: Sequence[SecretStr]) -> bool:
    """True when `authorization` is ``Bearer <key>`` with one of `keys`.

    Every key is compared (no early exit), so several keys can be live at once while
    one rotates out, and the timing says nothing about which one nearly matched.
    """
    return producer_of_key(authorization, [("", key) for key in keys]) is not None


def producer_of_key(authorization: str | None, keys: Sequence[tuple[str, SecretStr]]) -> str | None:
    """The producer whose key `authorization` (``Bearer <key>``) carries, or None.

    Args:
        authorization: The request's Authorization header.
        keys: Each key with its producer (`Settings.api_key_producers`).

    Every key is compared (no early exit), as in `bearer_key_matches`.
    """
    if not authorization:
        return None
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        return None
    received = credential.encode("utf-8", "surrogateescape")
    found: str | None = None
    for producer, key in keys:
        expected = key.get_secret_value().encode("utf-8")
        if bool(expected) and hmac.compare_digest(expected, received):
            found = producer
    return found
