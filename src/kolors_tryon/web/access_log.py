"""The access log, without secrets and without forged lines.

uvicorn's own access log prints the full path, which for `/kling/callback/<job>/<token>`
is the credential itself (invariant 7), so `tryon web` turns it off and logs here.

Everything a client chooses (path, query, user agent, method, the forwarded client
address) is printed with its control characters escaped (`printable`): the path arrives
percent-decoded, so ``/x%0a[...] INFO forged`` would otherwise write a line of its own
into the log, without authentication, and escape sequences would repaint an operator's
terminal. Escaped here, at the values, the text and the JSON formats both show the same
one line.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kolors_tryon.kling import redact
from kolors_tryon.pipeline.callback_tokens import CALLBACK_PATH_PREFIX

__all__ = ["AccessLogMiddleware", "loggable_path", "printable"]

log = logging.getLogger("kolors_tryon.web.access")

# Enough of a path, query or user agent to tell requests apart; a client decides how long.
_MAX_LOGGED: Final = 300
_ESCAPES: Final = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str, limit: int = _MAX_LOGGED) -> str:
    r"""`text` cut to `limit` characters, every character that is not printable escaped
    (``\n``, ``\x1b``, ``\u2028``...), and ``\`` and ``"`` escaped so that an escape or
    a quote in the text cannot pass for ours."""
    text = text[:limit]
    if text.isprintable() and "\\" not in text and '"' not in text:
        return text
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        else:
            code = ord(char)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
    return "".join(out)


def loggable_path(path: str) -> str:
    """`path` with the token of a callback URL replaced, and anything secret redacted."""
    if path.startswith(CALLBACK_PATH_PREFIX + "/"):
        head, _, _token = path.rpartition("/")
        path = f"{head}/[token]" if head != CALLBACK_PATH_PREFIX else path
    return redact(printable(path))


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return ""


class AccessLogMiddleware:
    """One INFO line per HTTP request: client, method, path?query (masked), status, time,
    user agent; every value the client chose escaped (`printable`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 0

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            client = scope.get("client")
            query = bytes(scope.get("query_string") or b"").decode("latin-1")
            log.info(
                '%s - "%s %s%s" %s %.1f ms "%s"',
                printable(f"{client[0]}:{client[1]}") if client else "-",
                printable(str(scope.get("method", "-")), 16),
                loggable_path(scope.get("path", "")),
                "?" + redact(printable(query)) if query else "",
                status or 500,
                (time.monotonic() - started) * 1000,
                printable(_header(scope, b"user-agent")) or "-",
            )
