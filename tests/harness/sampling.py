"""What the paid API saw over time: creates and tasks in flight, sampled at the emulator.

Recovery is a matter of time (how soon after a fault the first create came, whether a
slot sat idle while work waited): a thread reads the emulator's counters every
`interval` seconds, so a test can ask for the create times and the in-flight count
without touching the service.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from types import TracebackType

from kolors_tryon.emulator import EmulatorServer


@dataclass(frozen=True)
class ApiSample:
    """The emulator's counts at one moment (`at`: this process's steady clock)."""

    at: float
    creates: int
    in_flight: int


class ApiSampler:
    """Samples `emulator.stats()` in a thread while the `with` block runs."""

    def __init__(self, emulator: EmulatorServer, interval: float = 0.1) -> None:
        self._emulator = emulator
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-sampler", daemon=True)
        self.samples: list[ApiSample] = []

    def __enter__(self) -> ApiSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            stats = self._emulator.stats()
            self.samples.append(ApiSample(time.monotonic(), stats["creates"], stats["in_flight"]))
            if self._stop.wait(self._interval):
                return

    def create_times(self) -> list[float]:
        """When each create was first seen (one entry per create, in order)."""
        times: list[float] = []
        seen = 0
        for sample in list(self.samples):
            times += [sample.at] * (sample.creates - seen)
            seen = max(seen, sample.creates)
        return times

    def first_create_after(self, moment: float) -> float | None:
        """Seconds from `moment` to the first create seen after it (None: none was)."""
        later = [t for t in self.create_times() if t > moment]
        return later[0] - moment if later else None

    def longest_gap(self, count: int, after: float = 0.0) -> float:
        """The longest wait between two creates among the first `count` (while work
        waited: every one of those jobs was still to be created), from `after` on."""
        return self.longest_gap_at(count, after)[0]

    def longest_gap_at(self, count: int, after: float = 0.0) -> tuple[float, float]:
        """`longest_gap`, and when it began (0.0 when there were fewer than 2 creates)."""
        times = [t for t in self.create_times()[:count] if t > after]
        return max(((b - a, a) for a, b in itertools.pairwise(times)), default=(0.0, 0.0))

    def in_flight_between(self, start: float, end: float) -> list[int]:
        """The in-flight counts sampled from `start` to `end`."""
        return [s.in_flight for s in list(self.samples) if start <= s.at <= end]
