"""Bearer keys of the HTTP door (``TRYON_API_KEYS``), compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from pydantic import SecretStr

__all__ = ["bearer_key_matches"]


def bearer_key_matches(authorization: str | None, keys: Sequence[SecretStr]) -> bool:
    """True when `authorization` is ``Bearer <key>`` with one of `keys`.

    Every key is compared (no early exit), so several keys can be live at once while
    one rotates out, and the timing says nothing about which one nearly matched.
    """
    if not authorization:
        return False
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        return False
    received = credential.encode("utf-8", "surrogateescape")
    matched = False
    for key in keys:
        expected = key.get_secret_value().encode("utf-8")
        matched |= bool(expected) and hmac.compare_digest(expected, received)
    return matched
