"""A test session stopped by SIGTERM or SIGINT cleans up what its tests started.

pytest handles Ctrl-C (KeyboardInterrupt): the running test stops and every fixture and
`with` block is torn down. SIGTERM, which `make` forwards when it is itself terminated
(CI timeouts, `kill`), would end the process at once and leave workers, databases and
queues behind. Both signals are therefore turned into the same orderly stop, once; a
second signal during the clean-up is ignored, so that it cannot cut a teardown in half
(SIGKILL still stops everything at once, and leaves things behind).

An exception raised by a signal can land anywhere: between a lock's acquire and its
`try`, inside a database driver's wait. The unwinding that follows may then hang, and
nothing would be cleaned. So what must not be left behind (worker processes, databases,
namespaces) is also registered here while it exists (`cleanup_on_signal`), and on the
first signal a thread of its own runs those clean-ups at once, with connections of its
own, while the main thread unwinds; if the unwinding has not ended the session
`EXIT_GRACE` seconds after them, the thread ends the process.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType

import pytest

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Seconds the main thread's unwinding may take after the registered clean-ups have run.
EXIT_GRACE = 60.0

_cleanups: dict[int, tuple[str, Callable[[], None]]] = {}
_lock = threading.Lock()
_tokens = itertools.count()


class Interrupted(KeyboardInterrupt):
    """The session was asked to stop by a signal: pytest stops as on Ctrl-C."""


def register_cleanup(what: str, action: Callable[[], None]) -> int:
    """Until `unregister_cleanup(token)`: a SIGTERM or SIGINT of the session runs `action`
    (from another thread, so it must be safe alongside the normal teardown, and
    idempotent). Returns the token."""
    token = next(_tokens)
    with _lock:
        _cleanups[token] = (what, action)
    return token


def unregister_cleanup(token: int) -> None:
    with _lock:
        _cleanups.pop(token, None)


@contextmanager
def cleanup_on_signal(what: str, action: Callable[[], None]) -> Iterator[None]:
    """`register_cleanup` for the length of a `with` block."""
    token = register_cleanup(what, action)
    try:
        yield
    finally:
        unregister_cleanup(token)


def _run_cleanups() -> None:
    with _lock:
        pending = sorted(_cleanups.items(), reverse=True)  # the newest first, as unwinding
    for _, (what, action) in pending:
        try:
            action()
        except Exception as exc:  # one failed clean-up must not stop the others
            sys.stderr.write(f"clean-up of {what} failed: {exc!r}\n")
    deadline = time.monotonic() + EXIT_GRACE
    while time.monotonic() < deadline:
        time.sleep(1)
    sys.stderr.write(f"the session did not end {EXIT_GRACE:.0f} s after its clean-up: exit\n")
    os._exit(pytest.ExitCode.INTERRUPTED)


def _while_cleaning(signum: int, _frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    sys.stderr.write(f"\n{name} ignored: cleaning up (SIGKILL stops at once, leaving things)\n")


def _stop(signum: int, _frame: FrameType | None) -> None:
    for number in STOP_SIGNALS:
        signal.signal(number, _while_cleaning)
    threading.Thread(target=_run_cleanups, name="cleanup-on-signal", daemon=True).start()
    raise Interrupted(f"stopped by {signal.Signals(signum).name}: cleaning up")


def clean_up_on_signals() -> None:
    """SIGTERM and SIGINT stop the session as Ctrl-C does, once (main thread only).

    A signal the session was started with ignored (SIGINT of a background job started by
    a script, `nohup`) stays ignored: whoever started it asked for that.
    """
    if threading.current_thread() is threading.main_thread():
        for number in STOP_SIGNALS:
            if signal.getsignal(number) is not signal.SIG_IGN:
                signal.signal(number, _stop)


def kill_group(pid: int) -> None:
    """SIGTERM a process we started (a worker's warm shutdown), then SIGKILL its group."""
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _running(pid):
        time.sleep(0.2)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """The process exists and is no zombie (one that exited, not yet waited for)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
