"""HTTP plumbing and lifecycle of the emulator, on the standard library's ``http.server``.

Why the details below matter:

* HTTP/1.1 keep-alive with ``disable_nagle_algorithm = True``: headers and body go out
  in two writes, and without TCP_NODELAY Nagle's algorithm meets the client's delayed
  ACK and stalls every request about 40 ms (STACK_NOTES.md measured 23 vs 1,140 creates/s).
* The request body is always read in full before answering, or the next request on the
  same connection would start in the middle of it.
* ``server_bind`` skips ``socket.getfqdn``: a reverse DNS lookup at start-up can take
  seconds on machines without DNS, and the emulator starts once per test.
* Open connections are tracked so that ``stop`` really closes keep-alive sockets that a
  client pool still holds; otherwise a stopped emulator would keep answering on them.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from kolors_tryon.emulator.app import EmulatorApp, Response
from kolors_tryon.emulator.callbacks import CallbackSender
from kolors_tryon.emulator.config import EmulatorConfig
from kolors_tryon.emulator.errors import ApiError

logger = logging.getLogger(__name__)

#: Largest request body read (two 10 MB images in Base64 plus JSON fit comfortably).
MAX_BODY_BYTES = 64 * 1024 * 1024
#: Seconds between ticks that end tasks and fire callbacks when nobody polls.
TICK_SECONDS = 0.02
#: Seconds an idle keep-alive connection is kept open.
IDLE_TIMEOUT = 120.0


class _BodyError(Exception):
    """The request body cannot be read (bad length, bad chunking, too large)."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, host: str, port: int, app: EmulatorApp) -> None:
        self.app = app
        self.open_connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        if ":" in host:
            self.address_family = socket.AF_INET6
        super().__init__((host, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gives up (timeout, closed pool) mid-answer is routine when tests
        # and benchmarks inject slowness: not worth a traceback on stderr.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        logger.exception("emulator connection from %s failed", client_address)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "KlingEmulator/1.0"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    @property
    def _server(self) -> _HTTPServer:
        return cast(_HTTPServer, self.server)

    def setup(self) -> None:
        super().setup()
        with self._server.connections_lock:
            self._server.open_connections.add(self.connection)

    def finish(self) -> None:
        with self._server.connections_lock:
            self._server.open_connections.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        # Paths carry only ids; still, keep the per-request noise out of stderr.
        logger.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked()
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            raise _BodyError("invalid Content-Length") from None
        if length < 0 or length > MAX_BODY_BYTES:
            raise _BodyError("request body too large")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                raise _BodyError("invalid chunked encoding") from None
            if size == 0:
                # Skip trailers up to the blank line.
                while self.rfile.readline(1024).strip():
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                raise _BodyError("request body too large")
            parts.append(self.rfile.read(size))
            self.rfile.readline(16)

    def _serve(self) -> None:
        try:
            body = self._read_body()
        except _BodyError as exc:
            # The rest of the stream is unreadable: answer, then close the connection.
            self.close_connection = True
            app = self._server.app
            self._write(app.answer_error(ApiError(1200, f"Invalid request parameters: {exc}")))
            return
        try:
            response = self._server.app.handle(self.command, self.path, self.headers, body)
        except Exception:
            logger.exception("emulator failed on %s %s", self.command, self.path.split("?")[0])
            response = self._server.app.answer_error(ApiError(5000))
        if response.drop:
            # The ambiguous create: the task exists, but the client never hears so.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._write(response)

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(response.body)


def _url_host(host: str) -> str:
    """Host as written in a URL a client can reach (wildcards become loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


class EmulatorServer:
    """The Kling emulator: an HTTP server plus the threads that move tasks along.

    Use ``start()``/``stop()`` in tests (it serves from a daemon thread), or
    ``serve_forever()`` to block (the ``tryon emulator`` command).
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        """Prepare the emulator; nothing is bound until ``start`` or ``serve_forever``."""
        self._bind_config = config or EmulatorConfig()
        self._sender = CallbackSender(
            on_result=self._callback_done,
            signing_secrets=lambda: self._app.config.callback_signing_secrets,
        )
        self._app = EmulatorApp(self._bind_config, on_change=self._sender.submit)
        self._httpd: _HTTPServer | None = None
        self._serve_thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._base_url: str | None = None

    def _callback_done(self, generation: int, ok: bool) -> None:
        self._app.state.callback_done(generation, ok)

    @property
    def config(self) -> EmulatorConfig:
        """The configuration in force now."""
        return self._app.config

    @property
    def base_url(self) -> str:
        """``http://host:port`` plus the prefix.

        Raises:
            RuntimeError: The server has not been started.
        """
        if self._base_url is None:
            raise RuntimeError("the emulator is not started")
        return self._base_url

    def _bind(self) -> None:
        if self._httpd is not None:
            raise RuntimeError("the emulator is already started")
        config = self._bind_config
        self._httpd = _HTTPServer(config.host, config.port, self._app)
        port = self._httpd.server_port
        self._base_url = f"http://{_url_host(config.host)}:{port}{config.prefix}"
        self._app.own_base_url = self._base_url
        self._sender.start()
        self._stopping.clear()
        self._ticker = threading.Thread(target=self._tick, name="emulator-ticker", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stopping.wait(TICK_SECONDS):
            try:
                self._app.tick()
            except Exception:  # the ticker must survive anything
                logger.exception("emulator ticker failed")

    def start(self) -> str:
        """Bind and serve from a background daemon thread.

        Returns:
            The base URL (``http://127.0.0.1:PORT`` plus the prefix).
        """
        self._bind()
        assert self._httpd is not None
        self._serve_thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="emulator-http",
            daemon=True,
        )
        self._serve_thread.start()
        return self.base_url

    def serve_forever(self, ready: Callable[[str], None] | None = None) -> None:
        """Bind and serve in the calling thread until ``KeyboardInterrupt`` or ``stop``.

        Args:
            ready: Called with the base URL once the socket is bound (to announce it).
        """
        self._bind()
        assert self._httpd is not None
        try:
            if ready is not None:
                ready(self.base_url)
            self._httpd.serve_forever(poll_interval=0.05)
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving, close open connections and stop the background threads."""
        httpd = self._httpd
        if httpd is None:
            return
        if self._serve_thread is not None:
            httpd.shutdown()
            self._serve_thread.join(5.0)
            self._serve_thread = None
            self._close()
        else:
            # serve_forever() runs in another thread; its finally-block cleans up.
            httpd.shutdown()

    def _close(self) -> None:
        httpd = self._httpd
        if httpd is None:
            return
        self._httpd = None
        httpd.server_close()
        with httpd.connections_lock:
            connections = list(httpd.open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join(1.0)
            self._ticker = None
        self._sender.stop()

    def configure(self, **knobs: Any) -> EmulatorConfig:
        """Change run-time knobs (anything but host, port and prefix); thread-safe.

        Returns:
            The configuration now in force.

        Raises:
            ValueError: Unknown knob, bind-time field, or invalid value.
        """
        return self._app.configure(knobs)

    def stats(self) -> dict[str, Any]:
        """Return the counters as JSON-able data.

        Keys: ``create_requests``, ``creates``, ``duplicates``, ``late_creates`` (creates
        held by ``late_create_rate``, counted as the hold starts),
        ``create_requests_by_external_id``, ``tasks_by_external_id`` (tasks made per
        external id: above 1 only when ``index_lag`` let a duplicate through),
        ``queries``, ``lists``, ``account_costs_requests`` (every call to
        ``/account/costs``, whatever its answer), ``in_flight``, ``peak_in_flight``,
        ``answers_by_code`` (business code as a string, or ``"dropped"``),
        ``callbacks_sent``, ``callbacks_failed``, ``callbacks_queued``, ``tasks``,
        ``tasks_by_status``.
        """
        return self._app.stats()

    def reset(self) -> None:
        """Forget all tasks and counters (the configuration stays)."""
        self._app.reset()

    def __enter__(self) -> EmulatorServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
