"""A whole-call deadline for outbound HTTP calls that holds while bytes trickle.

requests' ``timeout`` bounds each socket operation, not the call: a peer that sends one
byte every 2 s (its headers, or its body) never lets a 15 s read timeout expire, and held
a webhook attempt for 74 s and an image preflight for ever. Checking a clock between
chunks is not enough either, because a single ``recv`` (a header line, a chunk) blocks
until the peer sends something. So every call of ours runs inside `call_deadline`:

* the (connect, read) timeouts given to requests are cut to the time that remains
  (`CallDeadline.timeouts`), so a silent peer is bounded by the deadline too;
* a watchdog thread shuts down the call's sockets at the deadline. A ``recv`` blocked on
  a dripping peer returns at once (end of stream), whatever phase the call is in: the
  request being sent, the headers, or a streamed body read after requests returned;
* the failure that follows is raised as `DeadlineExceeded`, a `requests.Timeout`, so
  every caller's handling of a timeout (an ambiguous create, a failed webhook attempt,
  a preflight that "timed out", a copy tried later) applies unchanged.

Sockets are found through the sessions' adapters: a session must carry `DeadlineAdapter`
(`deadline_session()` builds one; `mount_deadline_adapters` equips an existing one).
Its connections register their socket with the deadline of the calling thread (a
context variable) when they connect and when they send a request, so a pooled
keep-alive connection is watched by the call that reuses it, and by no other.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, Final

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError as Urllib3Error

from kolors_tryon.errors import TryonError

__all__ = [
    "CallDeadline",
    "DeadlineAdapter",
    "DeadlineExceeded",
    "call_deadline",
    "deadline_session",
    "mount_deadline_adapters",
]

# The shortest timeout handed to a socket: requests refuses 0, and a call whose deadline
# has passed must still fail at once rather than block.
_MIN_TIMEOUT: Final = 0.001


class DeadlineExceeded(TryonError, requests.Timeout):
    """The call did not finish within its whole-call deadline (its sockets were shut)."""


class CallDeadline:
    """One call's deadline: the time left, the sockets to shut when it passes."""

    def __init__(self, seconds: float) -> None:
        if seconds <= 0:
            raise ValueError("a call deadline must be a positive number of seconds")
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self.finished = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.at - time.monotonic())

    def timeouts(self, connect: float, read: float) -> tuple[float, float]:
        """The (connect, read) pair for requests, each cut to the time left."""
        left = max(_MIN_TIMEOUT, self.remaining())
        return (min(connect, left), min(read, left))

    def check(self) -> None:
        """Raise `DeadlineExceeded` when the deadline has passed (call between chunks)."""
        if self.expired or time.monotonic() >= self.at:
            self.expired = True
            raise DeadlineExceeded(f"the call took longer than its {self.seconds:g} s deadline")

    def attach(self, sock: socket.socket) -> None:
        """Watch `sock` for the rest of the call; shut it at once if the deadline passed."""
        with self._lock:
            if self.finished:
                return
            if not self.expired:
                self._sockets.append(sock)
                return
        _shut(sock)

    def _expire(self) -> None:
        """The watchdog's part: mark the call late and wake every blocked read."""
        with self._lock:
            if self.finished:
                return
            self.expired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)

    def _finish(self) -> None:
        with self._lock:
            self.finished = True
            self._sockets = []


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, even for an SSLSocket: its own shutdown() drops the
    # SSL object under the feet of the thread reading it. SHUT_RDWR makes a blocked
    # recv/send return at once, with no wait for the peer.
    with suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_current: contextvars.ContextVar[CallDeadline | None] = contextvars.ContextVar(
    "kolors_tryon_call_deadline", default=None
)


class _Watchdog:
    """One daemon thread per process that expires deadlines in time order."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, CallDeadline]] = []
        self._order = itertools.count()
        self._started = False
        # A forked child (Celery's prefork pool) has no watchdog thread, and may have
        # been forked while the parent's held the lock: it starts afresh.
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._cond = threading.Condition()
        self._heap = []
        self._started = False

    def watch(self, deadline: CallDeadline) -> None:
        with self._cond:
            if not self._started:
                self._started = True
                threading.Thread(target=self._run, name="http-deadlines", daemon=True).start()
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._heap[0][2] is deadline:
                self._cond.notify()

    def _run(self) -> None:
        cond = self._cond  # a forked child replaces it, and this thread with it
        while True:
            with cond:
                while self._heap and self._heap[0][2].finished:
                    heapq.heappop(self._heap)  # ended in time: nothing to do
                if not self._heap:
                    cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    cond.wait(wait)
                    continue
                _, _, due = heapq.heappop(self._heap)
            due._expire()


_WATCHDOG: Final = _Watchdog()


@contextmanager
def call_deadline(seconds: float) -> Iterator[CallDeadline]:
    """Run one outbound call (request and body reads) within `seconds`, whatever the peer does.

    Use the yielded deadline's `timeouts()` for requests and read streamed bodies inside
    the block. Any failure after the deadline passed (a connection shut by the watchdog,
    a timeout, a broken chunked body) leaves the block as `DeadlineExceeded`.
    """
    deadline = CallDeadline(seconds)
    token = _current.set(deadline)
    _WATCHDOG.watch(deadline)
    try:
        yield deadline
    except (requests.RequestException, Urllib3Error, OSError) as exc:
        if deadline.expired or time.monotonic() >= deadline.at:
            raise DeadlineExceeded(f"the call took longer than its {seconds:g} s deadline") from exc
        raise
    finally:
        deadline._finish()
        _current.reset(token)


def _register(sock: socket.socket | None) -> None:
    deadline = _current.get()
    if deadline is not None and sock is not None:
        deadline.attach(sock)


class _DeadlineHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _register(self.sock)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        _register(self.sock)  # a reused keep-alive connection: connect() is not called
        super().request(method, url, *args, **kwargs)


class _DeadlineHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _register(self.sock)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> None:
        _register(self.sock)
        super().request(method, url, *args, **kwargs)


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_POOLS: Final = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections are shut by the deadline of the call using them.

    Outside `call_deadline` it behaves as a plain HTTPAdapter. HTTP(S) proxies are
    covered; a SOCKS proxy's connections are not watched (only the timeouts bound them).
    """

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOLS
        return manager


def mount_deadline_adapters(session: requests.Session, **adapter_kwargs: Any) -> None:
    """Give `session` a `DeadlineAdapter` for http:// and https://."""
    adapter = DeadlineAdapter(**adapter_kwargs)
    session.mount("https://", adapter)
    session.mount("http://", adapter)


def deadline_session(**adapter_kwargs: Any) -> requests.Session:
    """A new session whose calls `call_deadline` can cut."""
    session = requests.Session()
    mount_deadline_adapters(session, **adapter_kwargs)
    return session
