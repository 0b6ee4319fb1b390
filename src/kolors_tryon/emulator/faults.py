"""The fault dice: one seeded random source for every injected fault.

A single generator behind a lock, rather than the ``random`` module's global one, so
that ``seed`` makes a single-threaded run reproducible and nothing else in the process
(tests, Hypothesis, the service) disturbs the sequence.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


class FaultDice:
    """Decides, request by request, whether a fault fires."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def reseed(self, seed: int | None) -> None:
        """Restart the sequence (``reset`` and a changed ``seed`` knob call this)."""
        with self._lock:
            self._rng.seed(seed)

    def roll(self, rate: float) -> bool:
        """Return True with probability ``rate``.

        Rates of 0 and 1 consume no randomness, so turning one knob fully on or off
        does not shift the sequence that the other knobs see.
        """
        if rate <= 0.0:
            return False
        if rate >= 1.0:
            return True
        with self._lock:
            return self._rng.random() < rate

    def choice(self, options: Sequence[T]) -> T:
        """Pick one of ``options`` (e.g. a failure reason)."""
        with self._lock:
            return self._rng.choice(options)
