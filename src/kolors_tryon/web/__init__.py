"""The HTTP service `tryon web`: job intake, job records, Kling's callback receiver, health.

The only place besides worker/ that knows HTTP and Celery. `create_web_app(settings)`
builds the ASGI app (tests serve it with uvicorn); `serve` runs it as `tryon web` does.
The callback-token functions are pure and shared with whoever builds callback URLs.
"""

from kolors_tryon.pipeline.callback_tokens import (
    callback_url,
    make_callback_token,
    verify_callback_token,
)
from kolors_tryon.web.app import create_web_app
from kolors_tryon.web.server import serve
from kolors_tryon.web.services import CALLBACK_TASK

__all__ = [
    "CALLBACK_TASK",
    "callback_url",
    "create_web_app",
    "make_callback_token",
    "serve",
    "verify_callback_token",
]
