"""The fault proxy itself: each fault does to real sockets what its name says."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from harness import Fault, TcpProxy, WebhookReceiver


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A TCP server that echoes each connection's bytes back."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    stop.set()
    server.close()


def _echo(port: int, payload: bytes, timeout: float = 10) -> tuple[bytes, float]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        got = b""
        while len(got) < len(payload):
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += chunk
    return got, time.monotonic() - started


def test_clean_proxy_forwards_both_ways(echo_port: int) -> None:
    """With no fault, bytes go through untouched and promptly."""
    proxy = TcpProxy("127.0.0.1", echo_port)
    try:
        got, took = _echo(proxy.port, b"hello" * 1000)
        assert got == b"hello" * 1000
        assert took < 2
    finally:
        proxy.close()


def test_cut_refuses_and_restore_listens_on_the_same_port(echo_port: int) -> None:
    """cut() refuses new connections; restore() accepts again on the same port."""
    proxy = TcpProxy("127.0.0.1", echo_port)
    port = proxy.port
    try:
        proxy.cut()
        with pytest.raises(OSError):
            _echo(port, b"x", timeout=2)
        proxy.restore()
        assert proxy.port == port
        assert _echo(port, b"back")[0] == b"back"
    finally:
        proxy.close()


def test_refuse_keeps_live_connections(echo_port: int) -> None:
    """refuse() turns away new connections while a live one keeps talking."""
    proxy = TcpProxy("127.0.0.1", echo_port)
    try:
        live = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        live.sendall(b"a")
        assert live.recv(10) == b"a"
        proxy.refuse()
        with pytest.raises(OSError):
            _echo(proxy.port, b"x", timeout=2)
        live.sendall(b"b")
        assert live.recv(10) == b"b"
        live.close()
    finally:
        proxy.close()


def test_drip_trickles_and_clearing_releases(echo_port: int) -> None:
    """A drip of 1 byte per 0.2 s holds a 10-byte answer about 2 s; clearing it ends at once."""
    proxy = TcpProxy("127.0.0.1", echo_port)
    try:
        proxy.set_faults(down=Fault(drip=1, interval=0.2))
        got, took = _echo(proxy.port, b"0123456789")
        assert got == b"0123456789"
        assert took >= 1.6
        proxy.set_faults(down=Fault(drip=1, interval=30))
        threading.Timer(0.5, proxy.clear_faults).start()
        got, took = _echo(proxy.port, b"0123456789")
        assert got == b"0123456789"
        assert took < 5
    finally:
        proxy.close()


def test_stall_hangs_until_cleared(echo_port: int) -> None:
    """A stalled direction forwards nothing: the client's read times out."""
    proxy = TcpProxy("127.0.0.1", echo_port)
    try:
        proxy.set_faults(down=Fault(stall=True))
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=1) as sock:
            sock.sendall(b"ping")
            with pytest.raises(TimeoutError):
                sock.recv(10)
            proxy.clear_faults()
            sock.settimeout(5)
            assert sock.recv(10) == b"ping"
    finally:
        proxy.close()


def test_per_connection_faults_pick_some_connections() -> None:
    """Every second connection's answer is delayed; the others are prompt (HTTP peer)."""
    receiver = WebhookReceiver().start()
    proxy = TcpProxy(
        "127.0.0.1",
        receiver.port,
        per_connection=lambda n: (Fault(), Fault(delay=1.5)) if n % 2 == 0 else None,
    )
    try:
        times = []
        for _ in range(4):
            started = time.monotonic()
            requests.post(
                f"http://127.0.0.1:{proxy.port}/hook",
                json={},
                timeout=10,
                headers={"Connection": "close"},
            )
            times.append(time.monotonic() - started)
        slow = [took for took in times if took >= 1.4]
        assert len(slow) == 2, times
        assert times[1] >= 1.4 and times[3] >= 1.4
    finally:
        proxy.close()
        receiver.stop()
