"""Whole-call deadlines: a peer that drips, stalls or lags cannot hold any outbound call.

Real sockets throughout: an HTTP server (the image host, the Kling emulator) behind the
fault proxy, which drips or stalls the bytes of one direction. requests' read timeout
is per socket read, so each call here is given a read timeout far above its deadline:
only the deadline can end it in time.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from harness import (
    TEST_API_KEY,
    Fault,
    ImageHost,
    TcpProxy,
    running_emulator,
)
from kolors_tryon.config.http_deadline import DeadlineExceeded, call_deadline, deadline_session
from kolors_tryon.jobs.errors import CheckFailed
from kolors_tryon.jobs.preflight import preflight_image_url
from kolors_tryon.kling import KlingClient, KlingTimeoutError
from kolors_tryon.kling.auth import StaticKeyAuth

DEADLINE = 1.5
READ_TIMEOUT = 30.0  # far above the deadline: a trickle resets it at every byte
# How late past its deadline a call may end on a loaded machine (thread wake-ups).
LATE = 1.5
BODY = b"\x89PNG\r\n\x1a\n" + b"\0" * 200_000

DRIP_HEADERS = Fault(drip=1, interval=0.3)  # the status line and headers trickle
DRIP_BODY = Fault(drip=400, interval=0.3)  # headers in the first drop, then the body
STALL = Fault(stall=True)  # accepted, then nothing


@pytest.fixture
def host() -> Iterator[ImageHost]:
    """An image host serving a 200 KB body at /img.png."""
    server = ImageHost()
    server.files["/img.png"] = BODY
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxy(host: ImageHost) -> Iterator[TcpProxy]:
    """The fault proxy in front of the image host."""
    front = TcpProxy("127.0.0.1", host.port)
    try:
        yield front
    finally:
        front.close()


def _get_all(session: requests.Session, url: str, seconds: float) -> tuple[int, float]:
    """GET `url` streamed within `seconds`; (bytes read, elapsed seconds)."""
    started = time.monotonic()
    with (
        call_deadline(seconds) as deadline,
        session.get(url, stream=True, timeout=deadline.timeouts(5, READ_TIMEOUT)) as response,
    ):
        size = 0
        for chunk in response.iter_content(64 * 1024):
            deadline.check()
            size += len(chunk)
    return size, time.monotonic() - started


@pytest.mark.parametrize(
    ("fault", "direction"),
    [
        (DRIP_HEADERS, "down"),
        (DRIP_BODY, "down"),
        (STALL, "down"),
        (Fault(delay=5), "down"),
    ],
    ids=["headers-drip", "body-drip", "stall", "late-answer"],
)
def test_a_call_ends_by_its_deadline_whatever_the_peer_does(
    host: ImageHost, proxy: TcpProxy, fault: Fault, direction: str
) -> None:
    """Dripped headers, a dripped body (one read blocks), a stall, a late answer: cut in time."""
    proxy.set_faults(**{direction: fault})
    started = time.monotonic()
    with deadline_session() as session, pytest.raises(DeadlineExceeded):
        _get_all(session, host.url("/img.png", port=proxy.port), DEADLINE)
    elapsed = time.monotonic() - started
    assert DEADLINE - 0.05 <= elapsed < DEADLINE + LATE, elapsed


def test_a_trickling_upload_is_cut_too(host: ImageHost, proxy: TcpProxy) -> None:
    """A request body that the peer takes a little at a time is cut by the deadline."""
    proxy.set_faults(up=Fault(drip=4096, interval=0.1))
    started = time.monotonic()
    with (
        deadline_session() as session,
        pytest.raises(DeadlineExceeded),
        call_deadline(DEADLINE) as deadline,
    ):
        session.post(
            host.url("/img.png", port=proxy.port),
            data=b"x" * 8_000_000,  # beyond what the kernel's buffers take at once
            timeout=deadline.timeouts(5, READ_TIMEOUT),
        )
    assert time.monotonic() - started < DEADLINE + LATE


def test_calls_in_time_keep_their_pooled_connection(host: ImageHost, proxy: TcpProxy) -> None:
    """A call that ends in time leaves its keep-alive connection whole for the next call,
    even after its own deadline has passed; a reused connection is cut by its new call."""
    url = host.url("/img.png", port=proxy.port)
    with deadline_session() as session:
        assert _get_all(session, url, 0.5)[0] == len(BODY)
        time.sleep(0.8)  # past the first call's deadline: its watchdog must not fire
        assert _get_all(session, url, 0.5)[0] == len(BODY)
        assert proxy.connections == 1
        proxy.set_faults(down=DRIP_BODY)
        with pytest.raises(DeadlineExceeded):
            _get_all(session, url, DEADLINE)
        assert proxy.connections == 1  # the pooled connection, cut by the call reusing it


def test_a_healthy_call_pays_no_deadline(host: ImageHost) -> None:
    """Without a fault, calls under a deadline cost about what plain calls cost."""
    url = host.url("/img.png")
    with requests.Session() as plain, deadline_session() as watched:
        for session in (plain, watched):  # warm both pools
            session.get(url, timeout=5).raise_for_status()
        started = time.monotonic()
        for _ in range(50):
            plain.get(url, timeout=5).raise_for_status()
        baseline = time.monotonic() - started
        started = time.monotonic()
        for _ in range(50):
            _get_all(watched, url, 5.0)
        watched_time = time.monotonic() - started
    print(f"FIGURES deadline-overhead: plain {baseline:.3f}s, watched {watched_time:.3f}s / 50")
    assert watched_time < 2 * baseline + 0.5


# ----------------------------------------------------------------- the callers ------------
def test_preflight_of_a_dripping_image_host_ends_by_its_deadline(
    host: ImageHost, proxy: TcpProxy
) -> None:
    """URL preflight against a host dripping its image: refused as url_fetch by the deadline."""
    proxy.set_faults(down=DRIP_BODY)
    started = time.monotonic()
    with pytest.raises(CheckFailed) as caught:
        preflight_image_url(
            host.url("/img.png", port=proxy.port),
            allow_private=True,
            timeout=(5.0, READ_TIMEOUT),
            deadline=DEADLINE,
        )
    assert time.monotonic() - started < DEADLINE + LATE
    assert caught.value.rule == "url_fetch"
    assert "deadline" in caught.value.message


def test_preflight_deadline_spans_its_redirects(host: ImageHost, proxy: TcpProxy) -> None:
    """One deadline for the whole preflight: hops that each answer slowly add up to it."""
    for hop in range(3):
        host.redirects[f"/r{hop}"] = host.url(f"/r{hop + 1}", port=proxy.port)
    host.redirects["/r3"] = host.url("/img.png", port=proxy.port)
    proxy.set_faults(down=Fault(delay=0.6))
    started = time.monotonic()
    with pytest.raises(CheckFailed) as caught:
        preflight_image_url(
            host.url("/r0", port=proxy.port),
            allow_private=True,
            timeout=(5.0, READ_TIMEOUT),
            deadline=DEADLINE,
        )
    assert caught.value.rule == "url_fetch"
    assert time.monotonic() - started < DEADLINE + LATE


def test_kling_calls_end_by_the_sum_of_their_timeouts() -> None:
    """A create whose answer trickles is an ambiguous timeout after connect + read seconds."""
    with running_emulator(task_duration=1.0) as emulator:
        parts = urlsplit(emulator.base_url)
        front = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            front.set_faults(down=DRIP_HEADERS)
            client = KlingClient(
                f"http://127.0.0.1:{front.port}{parts.path}",
                StaticKeyAuth(TEST_API_KEY),
                timeout=(0.5, 1.0),
                read_attempts=1,
            )
            started = time.monotonic()
            with client, pytest.raises(KlingTimeoutError) as caught:
                client.create(
                    {
                        "model_name": "kolors-virtual-try-on-v1-5",
                        "human_image": "https://example.com/h.jpg",
                        "cloth_image": "https://example.com/c.jpg",
                        "external_task_id": "deadline-1",
                    }
                )
            elapsed = time.monotonic() - started
        finally:
            front.close()
    assert caught.value.request_sent  # ambiguous: resolved by a lookup, never resent blindly
    assert 1.45 <= elapsed < 1.5 + LATE, elapsed


def test_a_create_given_longer_still_ends_by_then_while_bytes_trickle() -> None:
    """A create awaited past its read timeout (`answer_within`) has that whole-call
    deadline however its answer trickles: ambiguous, at that time."""
    with running_emulator(task_duration=1.0) as emulator:
        parts = urlsplit(emulator.base_url)
        front = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            front.set_faults(down=DRIP_HEADERS)
            client = KlingClient(
                f"http://127.0.0.1:{front.port}{parts.path}",
                StaticKeyAuth(TEST_API_KEY),
                timeout=(0.5, 0.2),  # below the drip's interval: the waiting is the deadline's
                read_attempts=1,
            )
            started = time.monotonic()
            with client, pytest.raises(KlingTimeoutError) as caught:
                client.create(
                    {
                        "model_name": "kolors-virtual-try-on-v1-5",
                        "human_image": "https://example.com/h.jpg",
                        "cloth_image": "https://example.com/c.jpg",
                        "external_task_id": "deadline-2",
                    },
                    answer_within=DEADLINE,
                )
            elapsed = time.monotonic() - started
        finally:
            front.close()
    assert caught.value.request_sent
    assert DEADLINE - 0.05 <= elapsed < DEADLINE + LATE, elapsed


def _cut_in_child(url: str, answer: Any) -> None:
    """In a forked child: a dripping call, its outcome put on `answer`."""
    started = time.monotonic()
    try:
        with deadline_session() as session:
            _get_all(session, url, DEADLINE)
        answer.put(("finished", time.monotonic() - started))
    except DeadlineExceeded:
        answer.put(("cut", time.monotonic() - started))


def test_a_forked_child_has_its_own_watchdog(host: ImageHost, proxy: TcpProxy) -> None:
    """A prefork pool process (forked after the parent used deadlines) is cut in time too."""
    url = host.url("/img.png", port=proxy.port)
    with deadline_session() as session:
        _get_all(session, url, 5.0)  # the parent's watchdog is running
    proxy.set_faults(down=DRIP_HEADERS)
    context = multiprocessing.get_context("fork")
    answer = context.Queue()
    child = context.Process(target=_cut_in_child, args=(url, answer))
    child.start()
    try:
        outcome, elapsed = answer.get(timeout=30)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    assert outcome == "cut"
    assert elapsed < DEADLINE + LATE
