"""A clock that tests move by hand, for the store's and the pipeline's sense of time."""

from __future__ import annotations

import time


class SettableClock:
    """Starts at the real time; `advance` moves it forward instead of waiting."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
