"""The token in our Kling callback URLs: `<public_url>/kling/callback/<job_id>/<token>`.

Kling signs nothing and sends no auth header (KLING_API.md, "Callbacks"), so the URL we
give it carries the proof: HMAC-SHA256 of the job id under a secret of ours, URL-safe
Base64 without padding (43 characters). A token is bound to one job id, so a token
leaked with one job's URL opens nothing else. Verification accepts the current secret
and the previous one, so the secret rotates without losing the callbacks of tasks
already sent with the old one; `hmac.compare_digest` keeps it constant-time.

Pure functions with the secrets passed in: the worker uses `callback_url` to build the
URL it sends with a create, `tryon web` uses `verify_callback_token` to check it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as random_secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote

from kolors_tryon.config import Settings
from kolors_tryon.store import JobStore

__all__ = [
    "CALLBACK_PATH_PREFIX",
    "CallbackSecrets",
    "callback_secrets",
    "callback_url",
    "make_callback_token",
    "verify_callback_token",
]

CALLBACK_PATH_PREFIX: Final = "/kling/callback"
# The store's name for the generated secret, when TRYON_CALLBACK_SECRET is not set.
GENERATED_SECRET_NAME: Final = "kling_callback"  # noqa: S105 - a name, not a secret
# Characters of a job id (jobs.models.JOB_ID_PATTERN) that may stay as they are in a path.
_SAFE_IN_PATH: Final = "._:-"

Secret = str | bytes


def _key(secret: Secret) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def make_callback_token(job_id: str, secret: Secret) -> str:
    """The token of `job_id` under `secret`: URL-safe Base64 of HMAC-SHA256, unpadded.

    Args:
        job_id: The job the callback URL is for.
        secret: The callback secret (``TRYON_CALLBACK_SECRET``); must not be empty.

    Raises:
        ValueError: `secret` is empty (every token would be guessable).
    """
    key = _key(secret)
    if not key:
        raise ValueError("the callback secret must not be empty")
    digest = hmac.new(key, job_id.encode("utf-8"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_callback_token(job_id: str, token: str, secrets: Iterable[Secret | None]) -> bool:
    """True when `token` is the token of `job_id` under one of `secrets`.

    Args:
        job_id: The job id from the callback URL.
        token: The token from the callback URL, as received.
        secrets: The current secret and the previous one (None or empty entries are
            skipped). With no usable secret nothing verifies.

    Every secret is compared (no early exit), each in constant time.
    """
    if not token.isascii():
        return False
    received = token.encode("ascii")
    matched = False
    for secret in secrets:
        if not secret:
            continue
        expected = make_callback_token(job_id, secret).encode("ascii")
        matched |= hmac.compare_digest(expected, received)
    return matched


def callback_url(public_url: str, job_id: str, secret: Secret) -> str:
    """The URL to give Kling as `callback_url` for `job_id`.

    Args:
        public_url: Where Kling reaches `tryon web` (``TRYON_PUBLIC_URL``, https in
            production), with or without a path prefix and trailing slash.
        job_id: The job.
        secret: The current callback secret.
    """
    base = public_url.rstrip("/")
    token = make_callback_token(job_id, secret)
    return f"{base}{CALLBACK_PATH_PREFIX}/{quote(job_id, safe=_SAFE_IN_PATH)}/{token}"


@dataclass(frozen=True)
class CallbackSecrets:
    """The secret that signs new callback URLs, and those that still verify."""

    current: str
    previous: str | None = None

    @property
    def accepted(self) -> tuple[str, ...]:
        return (self.current,) if self.previous is None else (self.current, self.previous)


def callback_secrets(settings: Settings, store: JobStore) -> CallbackSecrets:
    """`TRYON_CALLBACK_SECRET` (and its previous value), or one generated once and kept
    in the store, so that a deployment works with `TRYON_PUBLIC_URL` alone and every
    worker and web process agrees on it."""
    previous = settings.callback_secret_previous
    if settings.callback_secret is not None:
        current = settings.callback_secret.get_secret_value()
    else:
        current = store.secrets.get(GENERATED_SECRET_NAME, lambda: random_secrets.token_urlsafe(32))
    return CallbackSecrets(current, previous.get_secret_value() if previous else None)
