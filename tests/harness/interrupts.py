"""A test session stopped by SIGTERM or SIGINT cleans up what its tests started.

pytest handles Ctrl-C (KeyboardInterrupt): the running test stops and every fixture and
`with` block is torn down (workers stopped, databases dropped, queues deleted). SIGTERM,
which `make` forwards when it is itself terminated (CI timeouts, `kill`), would end the
process at once and leave all of that behind. Both signals are therefore turned into the
same orderly stop; a second signal during the clean-up is ignored, so that it cannot cut
a teardown in half (SIGKILL still stops everything at once, and leaves things behind).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(KeyboardInterrupt):
    """The session was asked to stop by a signal: pytest stops as on Ctrl-C."""


def _while_cleaning(signum: int, _frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    sys.stderr.write(f"\n{name} ignored: cleaning up (SIGKILL stops at once, leaving things)\n")


def _stop(signum: int, _frame: FrameType | None) -> None:
    for number in STOP_SIGNALS:
        signal.signal(number, _while_cleaning)
    raise Interrupted(f"stopped by {signal.Signals(signum).name}: cleaning up")


def clean_up_on_signals() -> None:
    """SIGTERM and SIGINT stop the session as Ctrl-C does, once (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        for number in STOP_SIGNALS:
            signal.signal(number, _stop)
