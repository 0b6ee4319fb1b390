"""Console sessions: a signed cookie holding the user's name and a CSRF token.

Why a cookie of our own rather than Starlette's SessionMiddleware: the console is one
mount of the app, and its cookie must carry exactly these flags (Secure, HttpOnly,
SameSite=Strict, Path=/console) and nothing else of the API's requests. The cookie is
signed with TRYON_CONSOLE_SECRET (itsdangerous, timestamped): it cannot be forged or
extended, and it expires after CONSOLE_SESSION_SECONDS. Every POST must carry the
session's CSRF token in its form; SameSite=Strict is the second fence.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Final

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from kolors_tryon.config import defaults

__all__ = ["COOKIE", "ConsoleSession", "SessionSigner"]

COOKIE: Final = "tryon_console"
COOKIE_PATH: Final = "/console"


@dataclass(frozen=True)
class ConsoleSession:
    user: str
    csrf: str

    def csrf_matches(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf)


class SessionSigner:
    """Signs and reads the console's session cookie."""

    def __init__(self, secret: str, *, secure: bool) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="tryon-console-session")
        self._secure = secure

    def read(self, request: Request) -> ConsoleSession | None:
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            data = self._serializer.loads(raw, max_age=defaults.CONSOLE_SESSION_SECONDS)
        except BadSignature:  # forged, from another secret, or expired
            return None
        if not isinstance(data, dict):
            return None
        user, csrf = data.get("u"), data.get("c")
        if not isinstance(user, str) or not isinstance(csrf, str):
            return None
        return ConsoleSession(user, csrf)

    @staticmethod
    def issue(user: str) -> ConsoleSession:
        """A new session (a new CSRF token too); `user` "" before login (the login form's)."""
        return ConsoleSession(user, secrets.token_urlsafe(32))

    def put(self, response: Response, session: ConsoleSession) -> None:
        """Set `session` as the cookie of `response`."""
        response.set_cookie(
            COOKIE,
            self._serializer.dumps({"u": session.user, "c": session.csrf}),
            max_age=defaults.CONSOLE_SESSION_SECONDS,
            path=COOKIE_PATH,
            secure=self._secure,
            httponly=True,
            samesite="strict",
        )

    def end(self, response: Response) -> None:
        response.delete_cookie(
            COOKIE, path=COOKIE_PATH, secure=self._secure, httponly=True, samesite="strict"
        )
