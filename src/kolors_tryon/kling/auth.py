"""Authorization headers for the Kling API: a reseller's static key or an official JWT.

The official API wants a short-lived HS256 JWT. A token minted once at start-up is a
known defect of existing clients (long-lived workers get 1004 after 30 minutes), so
`JwtAuth` mints on demand, caches, and re-mints before expiry or when told to.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from kolors_tryon.config import defaults

if TYPE_CHECKING:
    from kolors_tryon.config import Settings
    from kolors_tryon.config.accounts import KlingAccount

__all__ = ["JwtAuth", "KlingAuth", "StaticKeyAuth", "auth_from_account", "auth_from_settings"]

# The API rejects a token whose nbf is ahead of its clock (1003); backdating by a few
# seconds absorbs small clock skew between us and Kling, as the docs' example does.
_NBF_SKEW = 5


@runtime_checkable
class KlingAuth(Protocol):
    """Supplies the Authorization header; implementations must be thread-safe."""

    def authorization(self) -> str:
        """Return the full header value, e.g. "Bearer eyJ..."."""
        ...

    def renew(self) -> bool:
        """Replace the current credential after a 1003/1004 answer.

        Returns:
            True when a fresh credential is ready (worth one more attempt); False when
            nothing can change (a static key), so the error stands.
        """
        ...


class StaticKeyAuth:
    """A reseller's fixed bearer key ("sk-...")."""

    def __init__(self, api_key: str) -> None:
        key = api_key.strip()
        if not key:
            raise ValueError("api_key must not be empty")
        # Accept a key pasted with its "Bearer " prefix rather than sending it twice.
        if key.lower().startswith("bearer "):
            key = key[7:].strip()
        self._header = f"Bearer {key}"

    def authorization(self) -> str:
        """Return "Bearer <key>"."""
        return self._header

    def renew(self) -> bool:
        """A static key cannot be re-minted."""
        return False

    def __repr__(self) -> str:
        return "StaticKeyAuth(api_key=<redacted>)"


class JwtAuth:
    """HS256 JWTs for the official API, minted on demand and cached until near expiry.

    Args:
        access_key: The account's AccessKey (the token's `iss`).
        secret_key: The account's SecretKey (the signing key).
        lifetime: Seconds from minting to `exp`; the docs' example uses 1800.
        renew_margin: Re-mint when fewer than this many seconds of validity remain, so
            a token never expires between being read and reaching Kling.
        clock: Returns the current Unix time; injectable for tests.
    """

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        lifetime: int = defaults.KLING_JWT_LIFETIME,
        renew_margin: int = defaults.KLING_JWT_RENEW_MARGIN,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not access_key or not secret_key:
            raise ValueError("access_key and secret_key must not be empty")
        if lifetime <= 0 or renew_margin < 0 or renew_margin >= lifetime:
            raise ValueError("need lifetime > renew_margin >= 0")
        self._access_key = access_key
        self._secret_key = secret_key
        self._lifetime = lifetime
        self._renew_margin = renew_margin
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def authorization(self) -> str:
        """Return "Bearer <jwt>", minting a new token when the cached one is near expiry."""
        with self._lock:
            now = self._clock()
            token = self._token
            if token is None or self._expires_at - now < self._renew_margin:
                token = self._mint(now)
            return f"Bearer {token}"

    def renew(self) -> bool:
        """Mint a fresh token now (after the API answered 1003/1004)."""
        with self._lock:
            self._mint(self._clock())
        return True

    def _mint(self, now: float) -> str:
        issued = int(now)
        expires = issued + self._lifetime
        payload = {"iss": self._access_key, "exp": expires, "nbf": issued - _NBF_SKEW}
        with warnings.catch_warnings():
            # Kling issues the SecretKey; its length is not ours to choose, and a warning
            # on every mint would only bury real ones. Minting is rare (once per lifetime).
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            token = jwt.encode(payload, self._secret_key, algorithm="HS256", headers={"typ": "JWT"})
        self._token = token
        self._expires_at = float(expires)
        return token

    def __repr__(self) -> str:
        return (
            f"JwtAuth(access_key=<redacted>, secret_key=<redacted>, "
            f"lifetime={self._lifetime}, renew_margin={self._renew_margin})"
        )


def auth_from_account(account: KlingAccount, *, jwt_lifetime: int) -> KlingAuth:
    """The credential of one account of the pool (config/accounts.py checked it)."""
    if account.api_key is not None:
        return StaticKeyAuth(account.api_key.get_secret_value())
    assert account.access_key is not None and account.secret_key is not None
    return JwtAuth(
        account.access_key.get_secret_value(),
        account.secret_key.get_secret_value(),
        lifetime=jwt_lifetime,
        renew_margin=min(300, jwt_lifetime // 4),
    )


def auth_from_settings(settings: Settings) -> KlingAuth:
    """Pick the credential the settings describe.

    A static key wins, then AK/SK; with neither, the sandbox key that the bundled
    emulator accepts (Settings then points the base URL at the emulator too).

    Args:
        settings: The service settings.

    Returns:
        A ready `KlingAuth`.
    """
    if settings.kling_api_key is not None:
        return StaticKeyAuth(settings.kling_api_key.get_secret_value())
    if settings.kling_access_key is not None and settings.kling_secret_key is not None:
        lifetime = settings.kling_jwt_lifetime
        return JwtAuth(
            settings.kling_access_key.get_secret_value(),
            settings.kling_secret_key.get_secret_value(),
            lifetime=lifetime,
            # A quarter of the lifetime, at most 5 minutes: always below the lifetime.
            renew_margin=min(300, lifetime // 4),
        )
    from kolors_tryon.config import SANDBOX_API_KEY

    return StaticKeyAuth(SANDBOX_API_KEY)
