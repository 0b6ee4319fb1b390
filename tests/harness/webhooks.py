"""A producer's webhook receiver: a real `http.server` on loopback that a test steers.

The test sets `answer(path, n)` (n: the receiver's count of POSTs so far) to choose the
status, extra headers and a delay for each POST; `stop()` closes the port (the receiver
is down), `start()` opens the same port again. Every POST is kept, headers and body,
so the test can verify signatures and count deliveries per `webhook-id`.

`peak_in_flight` counts, per `webhook-id`, the most POSTs that were open at once. With
`linger` set, a POST stays open after its answer until the sender closes the connection
(at most `linger` seconds): behind a proxy that drips the answer, that is as long as
the sender's attempt lasts.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import standardwebhooks

from harness.env import free_port

Answer = tuple[int, dict[str, str], float]  # status, extra headers, seconds before answering


@dataclass(frozen=True)
class Received:
    """One POST the receiver got, and what it answered."""

    path: str
    headers: dict[str, str]
    body: str
    answered: int
    at: float = 0.0  # Unix time of receipt (the benchmarks' delay from a job's end)

    @property
    def record(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def verifies(self, secret: str) -> bool:
        """The signature verifies with the `standardwebhooks` library and `secret`."""
        try:
            standardwebhooks.Webhook(secret).verify(self.body, self.headers)
        except standardwebhooks.WebhookVerificationError:
            return False
        return True


class WebhookReceiver:
    """A threaded HTTP server that records every POST and answers as the test says."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Received] = []
        self.answer: Callable[[str, int], Answer] = lambda _path, _n: (204, {}, 0.0)
        self._lock = threading.Lock()
        self._posts = 0
        self._server: ThreadingHTTPServer | None = None
        self.linger = 0.0
        self.in_flight: dict[str, int] = {}
        self.peak_in_flight: dict[str, int] = {}

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True  # STACK_NOTES: no 40 ms stall per request

            def do_POST(self) -> None:
                webhook_id = self.headers.get("webhook-id", "")
                with receiver._lock:
                    now = receiver.in_flight.get(webhook_id, 0) + 1
                    receiver.in_flight[webhook_id] = now
                    peak = receiver.peak_in_flight.get(webhook_id, 0)
                    receiver.peak_in_flight[webhook_id] = max(peak, now)
                try:
                    self._answer()
                    if receiver.linger:
                        self.wfile.flush()
                        self._wait_for_close(receiver.linger)
                finally:
                    with receiver._lock:
                        receiver.in_flight[webhook_id] -= 1

            def _wait_for_close(self, seconds: float) -> None:
                """Hold the POST open until the sender closes the connection."""
                self.connection.settimeout(seconds)
                with contextlib.suppress(OSError):
                    while self.connection.recv(4096):
                        pass

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                at = time.time()
                with receiver._lock:
                    n = receiver._posts
                    receiver._posts += 1
                path = self.path.split("?", 1)[0]  # the query may carry the producer's token
                status, extra, delay = receiver.answer(path, n)
                if delay:
                    time.sleep(delay)
                with receiver._lock:
                    receiver.received.append(
                        Received(
                            path, {k.lower(): v for k, v in self.headers.items()}, body, status, at
                        )
                    )
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the port: connections are refused until `start()`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def posts(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if path is None or r.path == path]

    def delivered(self, path: str | None = None) -> dict[tuple[str, str], Received]:
        """The POSTs answered 2xx, by (job_id, state) of their body."""
        return {
            (r.record["job_id"], r.record["state"]): r
            for r in self.posts(path)
            if 200 <= r.answered < 300
        }


def at_its_end(record: dict[str, Any]) -> dict[str, Any]:
    """A job record as a webhook sent at the job's end shows it: the copies of the result
    images are made afterwards in the background, so their `stored`/`sha256` (and the
    record's `updated_at`) may have moved on since."""
    shown = {key: value for key, value in record.items() if key != "updated_at"}
    shown["images"] = [
        {k: v for k, v in image.items() if k not in ("stored", "sha256")}
        for image in record.get("images", [])
    ]
    return shown
