"""Refuse oversized request bodies with 413 before they are read whole.

A pure ASGI middleware, so it sees the body as it streams in: a declared
`Content-Length` over the cap is refused before a single body byte is read (no
`100 Continue` is sent either), and a chunked body is counted as it arrives and refused
the moment it passes the cap. Nothing past the cap is ever buffered. After a refusal
the rest of the body is left unread; uvicorn then closes the connection instead of
reading it for keep-alive.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kolors_tryon.web.errors import BodyTooLarge, error_answer

__all__ = ["BodyLimitMiddleware", "BodyTooLarge"]


class BodyLimitMiddleware:
    """Caps the body of every HTTP request; `limit_for(path)` gives the cap in bytes."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if response_started:  # too late for a status: drop the connection
                raise
            await _refuse(send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself
    return None


async def _refuse(send: Send, limit: int) -> None:
    """The error table's answer, sent here (not by the app's handler) to close the connection."""
    answer = error_answer(BodyTooLarge(limit))
    body = answer.response().body
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
