"""A timer in each worker's main process that sends `tryon.sweep` now and then.

No separate beat process to deploy: every worker sends a sweep every
`sweep_interval` seconds (jittered), each sweep is idempotent and cheap, and a sweep
that finds nothing to do changes nothing.
"""

from __future__ import annotations

import logging
import random
import threading

from celery import Celery

from kolors_tryon.config.defaults import SWEEP_FIRST_DELAY, SWEEP_JITTER
from kolors_tryon.config.task_names import TaskName

log = logging.getLogger(__name__)


class SweepTimer:
    """Sends `tryon.sweep` every `interval` seconds until stopped."""

    def __init__(self, app: Celery, interval: float) -> None:
        self._app = app
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tryon-sweep", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        rng = random.Random()
        # The first sweep comes soon after start: it rescues what the last crash left.
        wait = rng.uniform(*SWEEP_FIRST_DELAY)
        while not self._stop.wait(wait):
            try:
                # No `expires`: it would compare this machine's clock with the receiver's.
                # Sweeps that pile up (after an outage) are cheap: one does the work.
                self._app.send_task(TaskName.SWEEP)
            except Exception:
                log.exception("could not send the sweep task")
            wait = self._interval * rng.uniform(1 - SWEEP_JITTER, 1 + SWEEP_JITTER)
