"""The access log, without secrets: a callback URL's token is masked.

uvicorn's own access log prints the full path, which for `/kling/callback/<job>/<token>`
is the credential itself (invariant 7), so `tryon web` turns it off and logs here.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kolors_tryon.kling import redact
from kolors_tryon.pipeline.callback_tokens import CALLBACK_PATH_PREFIX

__all__ = ["AccessLogMiddleware", "loggable_path"]

log = logging.getLogger("kolors_tryon.web.access")


def loggable_path(path: str) -> str:
    """`path` with the token of a callback URL replaced, and anything secret redacted."""
    if path.startswith(CALLBACK_PATH_PREFIX + "/"):
        head, _, _token = path.rpartition("/")
        path = f"{head}/[token]" if head != CALLBACK_PATH_PREFIX else path
    return redact(path[:300])


class AccessLogMiddleware:
    """One INFO line per HTTP request: client, method, path (masked), status, time."""

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
            log.info(
                '%s - "%s %s" %s %.1f ms',
                f"{client[0]}:{client[1]}" if client else "-",
                scope.get("method", "-"),
                loggable_path(scope.get("path", "")),
                status or 500,
                (time.monotonic() - started) * 1000,
            )
