"""Login throttling: failed logins per user name and per client address, with backoff.

A few failures are free (typos happen); after them each further attempt of that name,
or from that address, must wait twice as long as the one before, up to a cap. An address
gets ADDRESS_FACTOR times a name's free failures: many people may share one (an office
behind NAT), while one name is one person. While it
waits, an attempt is refused without checking the password, so guessing costs the
guesser time and the server no argon2 work. A success clears the user's count.

The counts live in this process's memory: several copies of `tryon web` behind a load
balancer each throttle on their own (the cap still bounds a guesser to a few tries per
copy and hour).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kolors_tryon.config import defaults

__all__ = ["ADDRESS_FACTOR", "LoginThrottle"]

ADDRESS_FACTOR = 4


@dataclass
class _Failures:
    count: int = 0
    blocked_until: float = 0.0


class LoginThrottle:
    """How long a login attempt of (name, address) must still wait."""

    def __init__(
        self,
        free_failures: int = defaults.CONSOLE_LOGIN_FREE_FAILURES,
        base: float = defaults.CONSOLE_LOGIN_BACKOFF_BASE,
        cap: float = defaults.CONSOLE_LOGIN_BACKOFF_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._free = free_failures
        self._base = base
        self._cap = cap
        self._clock = clock
        self._failures: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _keys(name: str, address: str) -> tuple[str, str]:
        return f"user:{name.casefold()}", f"addr:{address}"

    def wait_for(self, name: str, address: str) -> float:
        """Seconds before this name, from this address, may try again (0: now)."""
        now = self._clock()
        with self._lock:
            waits = [
                entry.blocked_until - now
                for key in self._keys(name, address)
                if (entry := self._failures.get(key)) is not None
            ]
        return max([0.0, *waits])

    def failed(self, name: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            for key, free in zip(
                self._keys(name, address), (self._free, self._free * ADDRESS_FACTOR), strict=True
            ):
                entry = self._failures.setdefault(key, _Failures())
                entry.count += 1
                beyond = entry.count - free + 1  # the attempt after the last free one waits
                if beyond > 0:
                    entry.blocked_until = now + min(self._cap, self._base * 2 ** (beyond - 1))
            if len(self._failures) > 100_000:  # a flood of names: forget the oldest half
                for key in list(self._failures)[:50_000]:
                    del self._failures[key]

    def succeeded(self, name: str, address: str) -> None:
        user_key, _ = self._keys(name, address)
        with self._lock:
            self._failures.pop(user_key, None)
