"""The form of the URLs a job carries (image URLs, callback URL), and how to show one safely.

Only absolute ``http``/``https`` URLs with a host are accepted: Kling fetches image URLs
itself and POSTs to the callback URL, so anything else (``ftp:``, ``file:``,
``javascript:``, a relative path) can only fail later, after a credit may have been spent.
Signed URLs carry their credential in the query string and callback URLs carry our own
secret there, so messages show a URL through `redact_url`: scheme, host, port and a
shortened path, never userinfo, query or fragment.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

from kolors_tryon.jobs.errors import CheckFailed

__all__ = [
    "ALLOWED_SCHEMES",
    "UrlProblem",
    "check_http_url",
    "redact_url",
    "scheme_of",
]

ALLOWED_SCHEMES = frozenset({"http", "https"})

# RFC 3986 scheme syntax. The Base64 alphabet has no ':', so a string that starts like
# this is a URI of some kind and never Base64 image data.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# Whitespace and control characters are never valid in a URL; producers must percent-encode.
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f]")
_MAX_SHOWN_PATH = 60


class UrlProblem(CheckFailed):
    """A URL is malformed, uses a refused scheme, or could not be fetched."""


def scheme_of(text: str) -> str | None:
    """Return the lower-cased URI scheme `text` starts with, or None if it has none.

    Args:
        text: A field value, already stripped of surrounding whitespace.

    Returns:
        ``"https"`` for ``"https://..."``, ``"data"`` for ``"data:..."``, None for Base64.
    """
    match = _SCHEME.match(text)
    return match.group(1).lower() if match else None


def check_http_url(url: str, *, max_length: int) -> SplitResult:
    """Check that `url` is an absolute http(s) URL with a host, and return its parts.

    Args:
        url: The URL, already stripped of surrounding whitespace.
        max_length: The longest URL accepted, in characters.

    Returns:
        The `urllib.parse.urlsplit` result, for callers that need the host or port.

    Raises:
        UrlProblem: rule ``"max_length"``, ``"url_scheme"`` or ``"url"``.
    """
    if len(url) > max_length:
        raise UrlProblem(
            "max_length",
            f"URL is {len(url)} characters long; at most {max_length} are accepted",
        )
    scheme = scheme_of(url)
    if scheme is None:
        raise UrlProblem(
            "url", "is not an absolute URL; give one such as https://example.com/photo.jpg"
        )
    if scheme not in ALLOWED_SCHEMES:
        # Show only the scheme: the rest of a javascript: or data: URL is arbitrary content.
        raise UrlProblem(
            "url_scheme", f"URL scheme '{scheme[:20]}' is not accepted; use http:// or https://"
        )
    if _BAD_CHARS.search(url):
        raise UrlProblem(
            "url", "URL contains spaces or control characters; percent-encode them (%20)"
        )
    try:
        parts = urlsplit(url)
        _ = parts.port  # parsing the port is lazy; a bad one ("host:99999") raises here
    except ValueError as exc:
        # The stdlib names the fault ("Port out of range 0-65535"); the URL itself may
        # not be printable safely, so say what is wrong rather than echoing it.
        raise UrlProblem(
            "url", f"URL is malformed: {exc}; check the host, IPv6 brackets and port"
        ) from None
    if not parts.hostname:
        raise UrlProblem(
            "url", "URL has no host; give an absolute URL such as https://example.com/photo.jpg"
        )
    return parts


def redact_url(url: str) -> str:
    """Return `url` reduced to what is safe to log: scheme, host, port and a short path.

    Userinfo, query string and fragment are dropped (a ``?`` marks that a query was
    there), and a long path is shortened, so a signed URL's credential or a callback
    secret never reaches a message.

    Args:
        url: Any string; it does not need to be a valid URL.

    Returns:
        For example ``"https://cdn.example.com/a/b.jpg?…"``, or ``"<unparseable URL>"``.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparseable URL>"
    scheme = (parts.scheme or "?")[:20]
    if ":" in host:  # an IPv6 literal goes back into brackets
        host = f"[{host}]"
    netloc = host[:100] + (f":{port}" if port is not None else "")
    path = parts.path
    if len(path) > _MAX_SHOWN_PATH:
        path = path[:_MAX_SHOWN_PATH] + "…"
    # The path of a garbage "URL" could hold anything; keep it printable.
    path = _BAD_CHARS.sub("?", path)
    query_mark = "?…" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query_mark}"
