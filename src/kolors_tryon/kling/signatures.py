"""Standard Webhooks signatures on Kling's callbacks (KLING_API.md, "Signed callbacks").

Kling signs a callback with the secrets set in the account's console: headers
`webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`, a
space-separated list of `v1,<base64 HMAC-SHA256>` over `{id}.{timestamp}.{body}` keyed
by the Base64 after `whsec_`. A timestamp more than 5 minutes away is refused (a replay),
and any of the account's secrets may match (old and new are both valid for 7 days after
a rotation). This is checked in addition to our own token in the callback URL.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from typing import Final

__all__ = ["SIGNATURE_TOLERANCE", "sign_callback", "verify_callback_signature"]

SIGNATURE_TOLERANCE: Final = 300.0  # seconds either way of our clock
_PREFIX: Final = "whsec_"


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a signing secret must be whsec_ followed by Base64") from None


def sign_callback(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<signature>` of one callback under `secret` (the emulator's side)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify_callback_signature(
    headers: Mapping[str, str], body: bytes, secrets: Iterable[str], *, now: float
) -> str | None:
    """Check a callback's signature; None when valid, else why it is refused.

    Args:
        headers: The request's headers (names case-insensitive, as Starlette's are).
        body: The raw body, exactly as received.
        secrets: The account's `whsec_` secrets (one, or two during a rotation).
        now: The current Unix time.
    """
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    given = headers.get("webhook-signature")
    if not msg_id or not stamp or not given:
        return "the Standard Webhooks headers are missing"
    try:
        timestamp = int(stamp)
    except ValueError:
        return "webhook-timestamp is not an integer"
    if abs(now - timestamp) > SIGNATURE_TOLERANCE:
        return "webhook-timestamp is outside the 5 minute tolerance"
    offered = [part for part in given.split() if part.startswith("v1,")]
    expected = [sign_callback(secret, msg_id, timestamp, body) for secret in secrets]
    # Every pair is compared in constant time, without an early exit.
    matches = [hmac.compare_digest(o, e) for o in offered for e in expected]
    return None if any(matches) else "no signature matches the account's secrets"
