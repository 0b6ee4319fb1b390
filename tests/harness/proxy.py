"""A TCP fault proxy: a peer that goes away, refuses, lags, drips or hangs.

Stopping the shared PostgreSQL or RabbitMQ would break every other test on the machine,
and a well-behaved HTTP server never trickles its answer; a proxy in front of one peer
gives one deployment its own faults, for any protocol (AMQP, PostgreSQL, HTTP):

- `cut()` closes every connection and refuses new ones (a stopped server, a failover);
  `refuse()` refuses new ones but keeps the live ones; `restore()` listens again on the
  same port; `drop_connections()` kills the live connections only.
- `set_faults(up=..., down=...)` changes how bytes flow from now on, on live connections
  too: `Fault(delay=s)` holds each chunk, `Fault(drip=n, interval=s)` forwards n bytes
  per interval (headers then one byte every 2 s), `Fault(stall=True)` forwards nothing
  (a peer that accepted and hangs). `up` is client to server, `down` server to client.
- `per_connection` picks faults for each new connection by its number (the first is 1),
  so that, say, every fourth connection answers late while the others do not.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

# How often a stalled or dripping pump looks again at the faults in force (a test that
# clears a fault sees bytes flow within this).
_RECHECK = 0.05


@dataclass(frozen=True)
class Fault:
    """How bytes move in one direction; the default moves them untouched."""

    delay: float = 0.0
    drip: int = 0
    interval: float = 1.0
    stall: bool = False

    @property
    def clean(self) -> bool:
        return not (self.delay or self.drip or self.stall)


NO_FAULT = Fault()
FaultPair = tuple[Fault, Fault]


class TcpProxy:
    """Forwards 127.0.0.1:<port> to `target`, with the faults the test sets."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        per_connection: Callable[[int], FaultPair | None] | None = None,
    ) -> None:
        self._target = (target_host, target_port)
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listener: socket.socket | None = None
        self._faults: FaultPair = (NO_FAULT, NO_FAULT)
        self.per_connection = per_connection
        self.connections = 0
        self.port = 0
        self._listen()

    # ----------------------------------------------------------------- faults -----
    def set_faults(self, up: Fault = NO_FAULT, down: Fault = NO_FAULT) -> None:
        """Apply `up` (client to server) and `down` (server to client) from now on."""
        with self._lock:
            self._faults = (up, down)

    def clear_faults(self) -> None:
        """Bytes flow untouched again (stalled pumps resume within 50 ms)."""
        self.set_faults()

    def drop_connections(self) -> None:
        """Close every live connection (the server went away mid-conversation)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def refuse(self) -> None:
        """Refuse new connections; the live ones go on."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # close() alone leaves the socket listening while the accept thread is
            # blocked in accept(); shutdown() stops it and wakes that thread.
            with suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def cut(self) -> None:
        """Refuse new connections and drop the live ones."""
        self.refuse()
        self.drop_connections()

    def restore(self) -> None:
        """Accept connections again, on the same port, with no fault in force."""
        self.clear_faults()
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self.cut()

    # ------------------------------------------------------------ forwarding -----
    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # refused or cut
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self.connections += 1
                number = self.connections
                self._pairs.append((client, upstream))
            chosen = self.per_connection(number) if self.per_connection else None
            for direction, (source, sink) in enumerate(((client, upstream), (upstream, client))):
                faults = self._live_fault(direction, chosen)
                threading.Thread(
                    target=self._pump, args=(source, sink, faults), daemon=True
                ).start()

    def _live_fault(self, direction: int, chosen: FaultPair | None) -> Callable[[], Fault]:
        """The fault of one direction of one connection, read afresh at every chunk."""
        if chosen is not None:
            return lambda: chosen[direction]
        return lambda: self._faults[direction]

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, fault: Callable[[], Fault]) -> None:
        try:
            while data := source.recv(65536):
                _forward(data, sink, fault)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


def _forward(data: bytes, sink: socket.socket, fault: Callable[[], Fault]) -> None:
    """Send `data` to `sink` as the fault in force allows, re-reading it as time passes."""
    sent_at_delay = False
    while data:
        current = fault()
        if current.stall:
            time.sleep(_RECHECK)
            continue
        if current.delay and not sent_at_delay:
            time.sleep(current.delay)
            sent_at_delay = True
            continue
        if current.drip:
            sink.sendall(data[: current.drip])
            data = data[current.drip :]
            if data:
                _sleep_unless_cleared(current.interval, fault)
            continue
        sink.sendall(data)
        return


def _sleep_unless_cleared(seconds: float, fault: Callable[[], Fault]) -> None:
    """Wait one drip interval, cut short when the test clears the fault."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not fault().clean:
        time.sleep(min(_RECHECK, max(0.0, deadline - time.monotonic())))
