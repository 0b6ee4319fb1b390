"""The review console: server-rendered pages under /console of `tryon web`.

Closed by default: without TRYON_CONSOLE_USERS nothing is mounted and /console answers
404. `console_mount` is the one door web/app.py opens (see docs/console.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.routing import Mount

from kolors_tryon.config import Settings
from kolors_tryon.web.console.routes import OPEN_PATHS, console_routes
from kolors_tryon.web.console.state import Console
from kolors_tryon.web.console.users import ConsoleMisconfigured, hash_password, load_users
from kolors_tryon.web.services import WebServices

__all__ = [
    "CONSOLE_PREFIX",
    "OPEN_PATHS",
    "ConsoleMisconfigured",
    "ConsoleStatus",
    "console_mount",
    "console_status",
    "hash_password",
]

CONSOLE_PREFIX = "/console"


@dataclass(frozen=True)
class ConsoleStatus:
    """Whether the console's settings can be used, and one line saying how it stands."""

    usable: bool
    detail: str

    def __str__(self) -> str:
        return f"review console: {self.detail}"


def console_status(settings: Settings) -> ConsoleStatus:
    """How the console stands, for the start-up log and `tryon health`."""
    try:
        users = load_users(settings)
    except ConsoleMisconfigured as exc:
        return ConsoleStatus(False, f"misconfigured: {exc}")
    if not users:
        return ConsoleStatus(True, "closed (no TRYON_CONSOLE_USERS): /console answers 404")
    return ConsoleStatus(True, f"open at {CONSOLE_PREFIX}/ for {len(users)} user(s)")


def console_mount(settings: Settings, services: WebServices) -> Mount | None:
    """The console's routes mounted at /console; None while it is closed.

    Raises:
        ConsoleMisconfigured: users set without TRYON_CONSOLE_SECRET, or unreadable.
    """
    users = load_users(settings)
    if not users:
        return None
    return Mount(CONSOLE_PREFIX, routes=console_routes(Console(settings, services, users)))
