"""Bearer authentication: static reseller keys and the official AK/SK JWTs.

Codes follow KLING_API.md: 1001 for a missing or empty header, 1002 for a header that is
not ``Bearer <token>``, 1000 for a token that is neither an accepted key nor a valid JWT
(bad signature, wrong ``iss``, not a JWT at all), 1004 for ``exp`` passed and 1003 for
``nbf`` in the future.

Where the docs are silent, the emulator chooses:

* ``nbf`` gets :data:`NBF_LEEWAY` seconds of leeway, because the docs' own example mints
  ``nbf = now - 5`` to absorb clock skew and a real server surely tolerates some too;
  ``exp`` gets none, so that "token expired" tests are crisp.
* A JWT without ``exp`` or ``nbf`` is accepted (the longest lifetime is unconfirmed).
* The signature is checked before the times, so a forged expired token is 1000, not 1004.

Tokens are never logged or echoed in messages.
"""

from __future__ import annotations

import hmac

import jwt

from kolors_tryon.emulator.config import EmulatorConfig
from kolors_tryon.emulator.errors import ApiError

#: Seconds a token's ``nbf`` may lie in the future and still be accepted.
NBF_LEEWAY = 5.0


def authenticate(header: str | None, config: EmulatorConfig, now: float) -> None:
    """Admit the request or raise the matching 401.

    Args:
        header: The raw ``Authorization`` header, or None when absent.
        config: The current configuration (accepted keys and JWT credentials).
        now: Current Unix time in seconds, passed in so tests of time rules stay exact.

    Raises:
        ApiError: 1000, 1001, 1002, 1003 or 1004.
    """
    if header is None or not header.strip():
        raise ApiError(1001)
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise ApiError(1002, "Authorization is invalid: expected 'Bearer <token>'")
    # Compare against every key without short-circuiting, so timing says nothing.
    matched = False
    for key in config.api_keys:
        matched |= hmac.compare_digest(token.encode(), key.encode())
    if matched:
        return
    if config.access_key is None or config.secret_key is None:
        raise ApiError(1000)
    _check_jwt(token, config.access_key, config.secret_key, now)


def _check_jwt(token: str, access_key: str, secret_key: str, now: float) -> None:
    """Verify an HS256 JWT minted from the account's AK/SK."""
    try:
        claims = jwt.decode(
            token,
            secret_key,
            algorithms=["HS256"],
            # Times are checked below against ``now``, with our own leeway rules.
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
        )
    except jwt.InvalidTokenError:
        raise ApiError(1000) from None
    if claims.get("iss") != access_key:
        raise ApiError(1000)
    exp = claims.get("exp")
    nbf = claims.get("nbf")
    for claim in (exp, nbf):
        if claim is not None and (isinstance(claim, bool) or not isinstance(claim, int | float)):
            raise ApiError(1000, "Authentication failed: exp and nbf must be numbers")
    if exp is not None and now >= float(exp):
        raise ApiError(1004)
    if nbf is not None and now + NBF_LEEWAY < float(nbf):
        raise ApiError(1003)
