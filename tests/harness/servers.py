"""Small real HTTP servers the operations tests stand up: Sentry, and signed result URLs.

- `RecordingSentry`: answers Sentry's envelope endpoint (`/api/<project>/envelope/`) and
  keeps every envelope, decompressed, so a test reads exactly what the SDK sent
  (events with their tags and breadcrumbs). DSN: `http://public@127.0.0.1:PORT/1`.
- `SignedResults`: serves a PNG for any GET, so that a Kling emulator whose
  `public_base_url` is `signed_base` hands out result URLs that carry a fake
  `X-Amz-Signature=...` query (the emulator appends its own path after that base, so
  the path lands inside the query; the server answers whatever it is asked).
"""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from harness.samples import SAMPLES

SIGNATURE = "f3a9c0ffee5ignature0123456789abcdef0123456789abcdef"


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class RecordingSentry(_Server):
    """A stand-in for Sentry's ingestion endpoint that records every envelope."""

    def __init__(self) -> None:
        self.envelopes: list[bytes] = []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    raw = gzip.decompress(raw)
                elif encoding == "deflate":
                    raw = zlib.decompress(raw)
                elif encoding == "br":  # pragma: no cover - the SDK falls back to gzip
                    raw = b""
                with lock:
                    outer.envelopes.append(raw)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *_: Any) -> None:
                pass

        super().__init__(Handler)

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.port}/1"

    def events(self) -> list[dict[str, Any]]:
        """Every event item of every envelope (their JSON payloads)."""
        found = []
        for envelope in list(self.envelopes):
            lines = envelope.split(b"\n")
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                try:
                    if json.loads(header).get("type") == "event":
                        found.append(json.loads(payload))
                except ValueError:
                    continue
        return found

    def text(self) -> str:
        """Everything received, as text (to search for what must never be there)."""
        return b"\n".join(self.envelopes).decode("utf-8", errors="replace")


class SignedResults(_Server):
    """Serves a PNG result for any path, behind URLs with a signature in their query."""

    def __init__(self) -> None:
        png = (SAMPLES / "cloth-blue.png").read_bytes()
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                outer.requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(png)))
                self.end_headers()
                self.wfile.write(png)

            def log_message(self, *_: Any) -> None:
                pass

        super().__init__(Handler)

    @property
    def signed_base(self) -> str:
        """A `public_base_url` for the emulator: its result URLs end up signed."""
        return (
            f"http://127.0.0.1:{self.port}/cdn/result.png?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Signature={SIGNATURE}&path="
        )


class ImageHost(_Server):
    """An image host: `files[path]` is served as bytes, `redirects[path]` answers 302 to a
    URL; anything else is 404. Every GET's path is kept. Put a `TcpProxy` in front of it
    to make it slow (`url(path, port=proxy.port)`)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True
            protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connections

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                outer.requests.append(path)
                if path in outer.redirects:
                    self.send_response(302)
                    self.send_header("Location", outer.redirects[path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = outer.files.get(path)
                self.send_response(200 if data is not None else 404)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data or b"")))
                self.end_headers()
                self.wfile.write(data or b"")

            def do_POST(self) -> None:  # an upload: read it whole, then answer
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests.append(self.path.split("?", 1)[0])
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        super().__init__(Handler)

    def url(self, path: str, *, host: str = "127.0.0.1", port: int | None = None) -> str:
        """The URL of `path` on this host (or on a proxy in front of it: `port`)."""
        return f"http://{host}:{port or self.port}{path}"
