"""A bounded set of daemon threads for blocking work that may be slow for long: URL preflight.

Starlette runs every blocking call of a route on anyio's one thread pool (40 threads).
A job whose image host drips its bytes holds a thread for its whole preflight deadline,
so 40 such POSTs took every thread: `/readyz`, job reads and Kling's callbacks waited
behind them, and SIGTERM waited for them too (anyio's threads are not daemons). So
preflight runs here instead, on threads of its own:

- at most `size` at once; a request that finds them all busy is refused at once
  (`SlotsFull`: the route answers 503 with Retry-After) rather than queued behind them;
- each on a daemon thread, so a stopping `tryon web` never waits for a fetch in progress
  (the fetch is bounded by its deadline anyway; its request gets no answer);
- a slot is given back when its thread ends, not when its request goes away: a client
  that disconnects does not free a slot that a fetch still holds.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import TypeVar

from kolors_tryon.errors import TryonError

__all__ = ["DaemonSlots", "SlotsFull"]

_T = TypeVar("_T")


class SlotsFull(TryonError):
    """Every slot is taken: answer at once that the work cannot start now."""

    def __init__(self, name: str, size: int) -> None:
        super().__init__(name)
        self.size = size


class DaemonSlots:
    """Runs a blocking call on a daemon thread, at most `size` at once (event loop side)."""

    def __init__(self, size: int, name: str) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self.name = name
        self.busy = 0  # read and written on the event loop's thread only

    async def run(self, call: Callable[..., _T], *args: object) -> _T:
        """Run `call(*args)` on a new daemon thread and wait for it.

        Raises:
            SlotsFull: `size` calls are running already.
        """
        if self.busy >= self.size:
            raise SlotsFull(self.name, self.size)
        self.busy += 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_T] = loop.create_future()
        context = contextvars.copy_context()  # the request's log context goes along

        def settle(result: _T | None, error: BaseException | None) -> None:
            self.busy -= 1
            if future.cancelled():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]

        def work() -> None:
            result: _T | None = None
            error: BaseException | None = None
            try:
                result = context.run(call, *args)
            except BaseException as exc:  # handed to the awaiting request as it is
                error = exc
            # A closed loop: the service is stopping, and nobody waits for the answer.
            with suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result, error)

        try:
            threading.Thread(target=work, name=self.name, daemon=True).start()
        except BaseException:
            self.busy -= 1
            raise
        return await future
