"""Outgoing HTTP for the emulator: fetching image URLs and posting callbacks.

Only the standard library is used (``urllib``), so the emulator needs nothing the
service does not already install. Loopback addresses always go direct: an ambient
``HTTP_PROXY`` must not swallow a test's callback server or the emulator's own samples.
"""

from __future__ import annotations

import ipaddress
import urllib.error
import urllib.parse
import urllib.request
from http.client import HTTPResponse

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_DEFAULT = urllib.request.build_opener()


class FetchError(Exception):
    """A URL could not be fetched; the message says why, without the URL's query."""


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_url(request: urllib.request.Request, timeout: float) -> HTTPResponse:
    """Open ``request``, bypassing proxies for loopback hosts."""
    host = urllib.parse.urlsplit(request.full_url).hostname
    opener = _DIRECT if _is_loopback(host) else _DEFAULT
    response: HTTPResponse = opener.open(request, timeout=timeout)
    return response


def fetch_limited(url: str, timeout: float, limit: int) -> bytes:
    """GET ``url`` and return at most ``limit`` bytes of its body.

    Reading one byte past the real cap (``limit`` is the cap + 1) lets the caller tell
    "exactly 10 MB" from "more than 10 MB" without downloading an unbounded body.

    Raises:
        FetchError: Connection failure, timeout, or an HTTP status other than 2xx.
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise FetchError("not an http(s) URL")
    # Scheme checked just above: no file: or custom-scheme opens.
    request = urllib.request.Request(url, headers={"User-Agent": "kolors-emulator"})  # noqa: S310
    try:
        with open_url(request, timeout) as response:
            if not 200 <= response.status < 300:
                raise FetchError(f"HTTP {response.status}")
            return response.read(limit)
    except FetchError:
        raise
    except urllib.error.HTTPError as exc:
        raise FetchError(f"HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:  # URLError, timeouts, resets, bad URLs
        raise FetchError(type(exc).__name__) from None
