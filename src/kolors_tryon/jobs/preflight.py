"""Optional URL preflight: fetch an image URL once, safely, and check it like Base64 data.

Off by default (``TRYON_URL_PREFLIGHT``): Kling fetches image URLs itself, so the check
costs a download per job, but it turns a dead link, an HTML error page or a 12 MB photo
into a clear rejection instead of a failed paid task.

Fetching URLs that producers choose is a server-side request forgery risk, so:

* Every host (the first and each redirect target) is resolved with `socket.getaddrinfo`
  and refused if any address is private, loopback, link-local, multicast, reserved,
  unspecified or otherwise not global, IPv4-mapped IPv6 included, unless
  ``TRYON_PREFLIGHT_ALLOW_PRIVATE=true`` (for tests and private CDNs).
* The connection goes to the address that was checked, not to a second DNS answer: the
  URL's host is replaced by that IP, the ``Host`` header keeps the name, and for https
  the TLS server name and certificate check keep the name too. This closes the
  DNS-rebinding gap between check and connect for our own request. (The same URL is
  later fetched by Kling from its network, which is outside our control.)
* Redirects are not followed blindly: each hop is re-checked, at most three hops.
* Environment proxies and ``.netrc`` are ignored (``trust_env = False``), so no
  credential is ever sent to a producer's host.
* The body is read in chunks up to the 10 MB limit + 1 byte, never all at once, and the
  whole fetch (every hop, headers and body) ends by one deadline that holds while a host
  drips bytes (`kolors_tryon.config.http_deadline`): the sum of the (connect, read) pair.

`fetch_checked` is that walk (address policy, pinning, re-checked redirects) without the
image check: result copies fetch the URLs a callback carries through it too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final
from urllib.parse import SplitResult, urljoin, urlunsplit

import requests

from kolors_tryon.config import defaults
from kolors_tryon.config.http_deadline import (
    CallDeadline,
    DeadlineAdapter,
    DeadlineExceeded,
    call_deadline,
    deadline_session,
)
from kolors_tryon.jobs.errors import CheckFailed
from kolors_tryon.jobs.images import (
    MAX_IMAGE_BYTES,
    ImageInfo,
    ImageProblem,
    format_size,
    inspect_image_bytes,
)
from kolors_tryon.jobs.urls import UrlProblem, check_http_url, redact_url

__all__ = [
    "MAX_REDIRECTS",
    "IPAddress",
    "checked_address",
    "classify_address",
    "fetch_checked",
    "pinned_session",
    "preflight_image_url",
    "resolve_host",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_REDIRECTS: Final = defaults.PREFLIGHT_MAX_REDIRECTS
# Signed URLs are long; the same bound as the job message's image URLs.
_MAX_URL_LENGTH: Final = 8192
_CHUNK: Final = 64 * 1024
_ALLOW_HINT: Final = "refused unless TRYON_PREFLIGHT_ALLOW_PRIVATE=true"
_HEADERS: Final = {
    "User-Agent": "kolors-tryon-preflight/1",
    "Accept": "image/jpeg, image/png;q=0.9, */*;q=0.1",
    # Images are compressed already; asking for identity avoids inflating a gzip bomb.
    "Accept-Encoding": "identity",
}


def classify_address(address: str | IPAddress) -> str | None:
    """Say why an address must not be fetched, or return None for a public address.

    Pure: no network. IPv4-mapped (``::ffff:a.b.c.d``) and 6to4 (``2002::/16``) IPv6
    addresses are judged by the IPv4 address they carry, since that is where they lead.

    Args:
        address: An IP address, as text or as an `ipaddress` object.

    Returns:
        ``"unspecified"``, ``"loopback"``, ``"link-local"``, ``"multicast"``,
        ``"reserved"``, ``"private"`` or ``"non-public"``; None if globally routable.

    Raises:
        ValueError: `address` is not an IP address.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return classify_address(embedded)
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),  # before private: 240.0.0.0/4 is both
        ("private", ip.is_private),
        ("non-public", not ip.is_global),  # e.g. 100.64.0.0/10, shared address space
    )
    for label, hit in checks:
        if hit:
            return label
    return None


def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Resolve `host` to every address a connection could use.

    Raises:
        UrlProblem: rule ``"dns"`` when the name does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UrlProblem(
            "dns", f"URL host {host[:100]} could not be resolved; check the URL"
        ) from None
    addresses: list[IPAddress] = []
    for info in infos:
        text = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id ("fe80::1%eth0")
        ip = ipaddress.ip_address(text)
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise UrlProblem("dns", f"URL host {host[:100]} has no address; check the URL")
    return addresses


def _article(label: str) -> str:
    return "an" if label[0] in "aeiou" else "a"


def checked_address(parts: SplitResult, *, hint: str = _ALLOW_HINT) -> IPAddress:
    """Return the address to connect to, after refusing every non-public one.

    Shared with webhook delivery, which refuses the same addresses (with its own `hint`:
    the setting that allows them).

    Raises:
        UrlProblem: rule ``"dns"``, or ``"private_address"`` naming the address's kind.
    """
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolve_host(host, port)
    for ip in addresses:
        label = classify_address(ip)
        if label is not None:
            literal = host == str(ip) or host.strip("[]") == str(ip)
            where = (
                f"URL host is {_article(label)}"
                if literal
                else (f"URL host resolves to {_article(label)}")
            )
            raise UrlProblem("private_address", f"{where} {label} address ({ip}); {hint}")
    return addresses[0]


class _PinnedTLSAdapter(DeadlineAdapter):
    """Connects to an IP literal while TLS (SNI and certificate) still uses the host name."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname  # set first: HTTPAdapter.__init__ builds the pool manager
        super().__init__(max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        pool_kwargs["server_hostname"] = self._hostname
        pool_kwargs["assert_hostname"] = self._hostname
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)


def _pinned_url(parts: SplitResult, ip: IPAddress) -> str:
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    userinfo, _, _ = parts.netloc.rpartition("@")
    netloc = (f"{userinfo}@" if userinfo else "") + host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


@contextmanager
def pinned_session(
    url: str, parts: SplitResult, pinned: IPAddress | None
) -> Iterator[tuple[requests.Session, str, dict[str, str]]]:
    """A session that reaches `url` at the checked address `pinned` (None: as named).

    Yields the session, the URL to request and the headers that keep the host's name
    (``Host``); for https the TLS server name and certificate check keep it too. No
    environment proxy or ``.netrc`` is used. Its calls can be cut by `call_deadline`.
    Shared with webhook delivery and result copies.
    """
    headers: dict[str, str] = {}
    target = url
    with deadline_session() as session:
        session.trust_env = False
        if pinned is not None:
            target = _pinned_url(parts, pinned)
            headers["Host"] = parts.netloc.rpartition("@")[2]
            if parts.scheme == "https":
                session.mount("https://", _PinnedTLSAdapter(parts.hostname or ""))
        yield session, target, headers


@contextmanager
def _get(
    url: str,
    parts: SplitResult,
    pinned: IPAddress | None,
    timeout: tuple[float, float],
    headers: Mapping[str, str],
) -> Iterator[requests.Response]:
    with (
        pinned_session(url, parts, pinned) as (session, target, host),
        session.get(
            target,
            headers={**headers, **host},
            stream=True,
            timeout=timeout,
            allow_redirects=False,
        ) as response,
    ):
        yield response


@contextmanager
def fetch_checked(
    url: str,
    *,
    deadline: CallDeadline,
    timeout: tuple[float, float],
    allow_private: bool = False,
    hint: str = _ALLOW_HINT,
    headers: Mapping[str, str] = _HEADERS,
) -> Iterator[tuple[requests.Response, str]]:
    """GET `url` (streamed) as preflight does; yields the first answer that is not a
    redirect, and the URL that gave it (the host's name, not the pinned address).

    The URL and every redirect target are checked (form, then address policy unless
    `allow_private`), each connection goes to the address checked, and at most
    `MAX_REDIRECTS` hops are followed. Run it inside `call_deadline` (`deadline`) and
    read the body inside the block, calling ``deadline.check()`` between chunks.

    Raises:
        UrlProblem: rules ``"url"``, ``"url_scheme"``, ``"max_length"``, ``"dns"``,
            ``"private_address"`` (with `hint`), or ``"redirects"``.
        requests.RequestException: the fetch failed (`DeadlineExceeded` when late).
    """
    current = url
    for hop in range(MAX_REDIRECTS + 1):
        try:
            parts = check_http_url(current, max_length=_MAX_URL_LENGTH)
            pinned = None if allow_private else checked_address(parts, hint=hint)
        except CheckFailed as exc:
            if hop == 0:
                raise
            raise UrlProblem(
                exc.rule, f"URL redirects to {redact_url(current)}, which is refused: {exc}"
            ) from None
        with _get(current, parts, pinned, deadline.timeouts(*timeout), headers) as response:
            if response.is_redirect:
                current = urljoin(current, response.headers["Location"])
                continue
            yield response, current
            return
    raise UrlProblem(
        "redirects",
        f"URL redirects more than {MAX_REDIRECTS} times; give the final image URL",
    )


def _read_capped(response: requests.Response, max_bytes: int, deadline: CallDeadline) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _over_limit(int(declared), max_bytes)
    chunks: list[bytes] = []
    total = 0
    for chunk in response.iter_content(_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise _over_limit(None, max_bytes)
        deadline.check()
        chunks.append(chunk)
    return b"".join(chunks)


def _over_limit(size: int | None, max_bytes: int) -> ImageProblem:
    found = f"{size} bytes" if size is not None else f"more than {max_bytes} bytes"
    return ImageProblem(
        "max_bytes",
        f"image at the URL is {found}; images must be at most {format_size(max_bytes)} "
        f"({max_bytes} bytes)",
    )


def _fetch_failure(exc: requests.RequestException, shown: str) -> UrlProblem:
    # Never quote `exc`: requests puts the full URL, query string included, in its text.
    if isinstance(exc, DeadlineExceeded):
        what = "did not finish within its deadline"
    elif isinstance(exc, requests.Timeout):
        what = "timed out"
    elif isinstance(exc, requests.exceptions.SSLError):
        what = "failed the TLS handshake or certificate check"
    elif isinstance(exc, requests.ConnectionError):
        what = "could not connect or the connection broke"
    else:
        what = f"failed ({type(exc).__name__})"
    return UrlProblem("url_fetch", f"fetching {shown} {what}; check that the URL is reachable")


def preflight_image_url(
    url: str,
    *,
    allow_private: bool = False,
    timeout: tuple[float, float] = defaults.HTTP_TIMEOUT,
    max_bytes: int = MAX_IMAGE_BYTES,
    deadline: float | None = None,
) -> ImageInfo:
    """Fetch an image URL safely and check the image as if it had come as Base64.

    Args:
        url: An http(s) image URL from a job.
        allow_private: Fetch private, loopback and link-local hosts too.
        timeout: The (connect, read) timeout of each request.
        max_bytes: The largest image accepted.
        deadline: Seconds the whole fetch (every hop, headers and body) may take, however
            slowly the host sends; the sum of `timeout` when None (defaults.HTTP_DEADLINE).

    Returns:
        The image's format, dimensions and size.

    Raises:
        CheckFailed: a `UrlProblem` (rules ``"url"``, ``"url_scheme"``, ``"dns"``,
            ``"private_address"``, ``"redirects"``, ``"url_status"``, ``"url_fetch"``),
            or an `ImageProblem` / ``"max_bytes"`` for the image itself.
    """
    shown = redact_url(url)
    try:
        with (
            call_deadline(deadline or sum(timeout)) as limit,
            fetch_checked(url, deadline=limit, timeout=timeout, allow_private=allow_private) as (
                response,
                final_url,
            ),
        ):
            if not 200 <= response.status_code < 300:
                raise UrlProblem(
                    "url_status",
                    f"URL {redact_url(final_url)} answered HTTP {response.status_code}; "
                    "it must answer 2xx with the image",
                )
            data = _read_capped(response, max_bytes, limit)
    except requests.RequestException as exc:
        raise _fetch_failure(exc, shown) from None
    return inspect_image_bytes(data, max_bytes=max_bytes)
