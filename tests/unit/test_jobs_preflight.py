"""URL preflight against a real local HTTP server, and the address classifier (no network)."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from jobs_images import b64, image_bytes, jpeg, png

from kolors_tryon.jobs import (
    MAX_IMAGE_BYTES,
    ImageInfo,
    JobRejected,
    ValidationOptions,
    validate_job,
)
from kolors_tryon.jobs import preflight as preflight_module
from kolors_tryon.jobs.errors import CheckFailed
from kolors_tryon.jobs.preflight import classify_address, preflight_image_url

PNG = png()
JPEG = jpeg(400, 300)


@dataclass
class ImageServer:
    """A tiny HTTP server on 127.0.0.1 that records every request it gets."""

    port: int
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """The URL of `path` on this server, under `host`."""
        return f"http://{host}:{self.port}{path}"


def _routes(server: ImageServer) -> dict[str, Callable[[BaseHTTPRequestHandler], None]]:
    def body(data: bytes, status: int = 200, length: bool = True) -> Callable[..., None]:
        def send(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/octet-stream")
            if length:
                handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)

        return send

    def redirect(location: Callable[[], str]) -> Callable[..., None]:
        def send(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(302)
            handler.send_header("Location", location())
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        return send

    def slow(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(1.5)
        body(PNG)(handler)

    huge = b"\x89PNG\r\n\x1a\n" + b"\x00" * MAX_IMAGE_BYTES
    return {
        "/ok.png": body(PNG),
        "/photo.jpg": body(JPEG),
        "/anim.gif": body(image_bytes("GIF")),
        "/small.png": body(png(299, 300)),
        "/cut.png": body(PNG[:-30]),
        "/huge-declared": body(huge),
        "/huge-streamed": body(huge, length=False),
        "/missing": body(b"not here", status=404),
        "/redirect": redirect(lambda: "/ok.png"),
        "/redirect-abs": redirect(lambda: server.url("/photo.jpg")),
        "/redirect-ftp": redirect(lambda: "ftp://files.example.com/a.png"),
        "/loop": redirect(lambda: "/loop"),
        "/slow": slow,
    }


@pytest.fixture(scope="module")
def image_server() -> Iterator[ImageServer]:
    """Serve test images on a free loopback port for the whole module."""
    state = ImageServer(port=0)
    routes = _routes(state)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # close-delimited bodies when no Content-Length

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            state.requests.append((path, self.headers.get("Host", "")))
            route = routes.get(path)
            if route is None:
                self.send_error(404)
                return
            # The client may stop reading, as preflight does past the size limit.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                route(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _fetch(url: str, **kwargs: Any) -> ImageInfo:
    return preflight_image_url(url, allow_private=True, timeout=(2.0, 5.0), **kwargs)


def _refusal(url: str, **kwargs: Any) -> CheckFailed:
    with pytest.raises(CheckFailed) as caught:
        _fetch(url, **kwargs)
    return caught.value


# --- fetching (private addresses allowed, as in tests) --------------------------------------


@pytest.mark.parametrize(
    ("path", "info"),
    [
        ("/ok.png", ImageInfo("PNG", 300, 300, len(PNG))),
        ("/photo.jpg?X-Amz-Signature=abc", ImageInfo("JPEG", 400, 300, len(JPEG))),
        ("/redirect", ImageInfo("PNG", 300, 300, len(PNG))),
        ("/redirect-abs", ImageInfo("JPEG", 400, 300, len(JPEG))),
    ],
)
def test_valid_images_are_fetched_and_checked(
    image_server: ImageServer, path: str, info: ImageInfo
) -> None:
    """A reachable JPEG or PNG passes, through redirects too, with its info from the bytes."""
    assert _fetch(image_server.url(path)) == info


@pytest.mark.parametrize(
    ("path", "rule", "fragment"),
    [
        ("/anim.gif", "format", "image is GIF"),
        ("/small.png", "min_size", "299x300"),
        ("/cut.png", "truncated", "truncated"),
        ("/huge-declared", "max_bytes", "10 MB"),
        ("/huge-streamed", "max_bytes", "10 MB"),
        ("/missing?sig=SECRET", "url_status", "answered HTTP 404"),
        ("/loop", "redirects", "more than 3 times"),
        ("/redirect-ftp", "url_scheme", "redirects to ftp://files.example.com/a.png"),
    ],
)
def test_bad_urls_are_refused_with_the_rule(
    image_server: ImageServer, path: str, rule: str, fragment: str
) -> None:
    """What the URL serves is judged like Base64 data, and HTTP failures are named."""
    problem = _refusal(image_server.url(path))
    assert problem.rule == rule
    assert fragment in problem.message
    assert "SECRET" not in problem.message


def test_status_message_shows_url_without_query(image_server: ImageServer) -> None:
    """A refused URL is shown as scheme, host, port and path only."""
    problem = _refusal(image_server.url("/missing?token=abc"))
    assert f"http://127.0.0.1:{image_server.port}/missing?…" in problem.message
    assert "token" not in problem.message


def test_slow_server_times_out(image_server: ImageServer) -> None:
    """The explicit read timeout bounds a server that does not answer."""
    with pytest.raises(CheckFailed) as caught:
        preflight_image_url(image_server.url("/slow"), allow_private=True, timeout=(1.0, 0.3))
    assert caught.value.rule == "url_fetch"
    assert "timed out" in caught.value.message


def test_connection_refused_is_a_fetch_problem() -> None:
    """A URL nobody answers is refused as unreachable."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        problem = _refusal(f"http://127.0.0.1:{port}/a.png")
    assert problem.rule == "url_fetch"


# --- private addresses ------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_loopback_url_is_refused_without_a_fetch(image_server: ImageServer, host: str) -> None:
    """With private addresses not allowed, a loopback host is refused and never contacted."""
    before = len(image_server.requests)
    with pytest.raises(CheckFailed) as caught:
        preflight_image_url(image_server.url("/ok.png", host=host), allow_private=False)
    assert caught.value.rule == "private_address"
    assert "loopback address" in caught.value.message
    assert "TRYON_PREFLIGHT_ALLOW_PRIVATE=true" in caught.value.message
    assert len(image_server.requests) == before


def test_private_resolution_message_names_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name resolving to a private address is refused, showing that address."""

    def fake_getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(CheckFailed) as caught:
        preflight_image_url("https://images.internal.example/a.png")
    assert str(caught.value) == (
        "URL host resolves to a private address (10.0.0.5); "
        "refused unless TRYON_PREFLIGHT_ALLOW_PRIVATE=true"
    )


def test_unresolvable_host_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A host that does not resolve is refused by name, without network access."""

    def fail(*_: Any, **__: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(CheckFailed) as caught:
        preflight_image_url("https://no-such-host.invalid/a.png")
    assert caught.value.rule == "dns"
    assert "no-such-host.invalid" in caught.value.message


def test_each_redirect_hop_is_rechecked(
    image_server: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A redirect is followed only after its target host passes the address check too."""
    verdicts = iter([None, "private"])  # first hop passes, the redirect target does not
    monkeypatch.setattr(preflight_module, "classify_address", lambda _ip: next(verdicts))
    before = len(image_server.requests)
    with pytest.raises(CheckFailed) as caught:
        preflight_image_url(image_server.url("/redirect"), allow_private=False)
    assert caught.value.rule == "private_address"
    assert "redirects to" in caught.value.message
    assert [path for path, _ in image_server.requests[before:]] == ["/redirect"]


def test_connection_is_pinned_to_the_checked_address(
    image_server: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request goes to the address that was checked, with the name in the Host header."""
    monkeypatch.setattr(preflight_module, "classify_address", lambda _ip: None)
    monkeypatch.setattr(
        preflight_module,
        "resolve_host",
        lambda _host, _port: [ipaddress.ip_address("127.0.0.1")],
    )
    before = len(image_server.requests)
    info = preflight_image_url(
        image_server.url("/ok.png", host="images.example.test"), allow_private=False
    )
    assert info.format == "PNG"
    assert image_server.requests[before:] == [
        ("/ok.png", f"images.example.test:{image_server.port}")
    ]


# --- through validate_job -------------------------------------------------------------------


def test_validate_job_runs_preflight_when_enabled(image_server: ImageServer) -> None:
    """With preflight on, URL images get ImageInfo like Base64 ones."""
    options = ValidationOptions(url_preflight=True, allow_private_urls=True, timeout=(2.0, 5.0))
    job = validate_job(
        {"human_image": image_server.url("/photo.jpg"), "cloth_image": b64(PNG)}, options
    )
    assert job.human == ImageInfo("JPEG", 400, 300, len(JPEG))
    assert job.cloth == ImageInfo("PNG", 300, 300, len(PNG))


def test_validate_job_names_the_field_of_a_refused_url(image_server: ImageServer) -> None:
    """A preflight problem is reported under the image's field name."""
    options = ValidationOptions(url_preflight=True, allow_private_urls=False)
    with pytest.raises(JobRejected) as caught:
        validate_job({"human_image": b64(PNG), "cloth_image": image_server.url("/ok.png")}, options)
    (problem,) = caught.value.problems
    assert (problem.field, problem.rule) == ("cloth_image", "private_address")
    assert str(problem).startswith("cloth_image: URL host is a loopback address (127.0.0.1)")


def test_validate_job_skips_urls_when_preflight_is_off(image_server: ImageServer) -> None:
    """Preflight off: no request is made and no image info is known."""
    before = len(image_server.requests)
    job = validate_job({"human_image": image_server.url("/anim.gif"), "cloth_image": b64(PNG)})
    assert job.human is None
    assert len(image_server.requests) == before


# --- the classifier (pure: no network) ------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "label"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.10", "private"),
        ("127.0.0.1", "loopback"),
        ("127.8.8.8", "loopback"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-public"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.5", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback"),
        ("93.184.216.34", None),
        ("8.8.8.8", None),
        ("172.32.0.1", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:93.184.216.34", None),
    ],
)
def test_address_classification(address: str, label: str | None) -> None:
    """Private, loopback, link-local, multicast, reserved and unspecified addresses are refused."""
    assert classify_address(address) == label


def test_classifier_refuses_non_addresses() -> None:
    """Host names are not addresses: the classifier never resolves anything itself."""
    with pytest.raises(ValueError):
        classify_address("example.com")
