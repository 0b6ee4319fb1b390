"""Callback delivery: POST the bare task object to ``callback_url``, off the request path.

A few worker threads each own a queue; a task always goes to the same worker (by its
id), so one task's callbacks arrive in order (``processing`` before ``succeed``) while a
slow receiver for one task cannot hold up the others on other workers. Each POST has a
short timeout and no retry: KLING_API.md documents no retry policy, and clients are told
to treat callbacks as hints and confirm with a query. Callback URLs may carry a secret,
so only their host is ever logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib
from collections.abc import Callable

from kolors_tryon.emulator.net import open_url
from kolors_tryon.emulator.state import StatusChange

logger = logging.getLogger(__name__)

#: Seconds a receiver has to answer one callback.
CALLBACK_TIMEOUT = 3.0
WORKERS = 4


class CallbackSender:
    """Delivers status changes from background threads, never blocking the caller."""

    def __init__(
        self,
        on_result: Callable[[int, bool], None],
        workers: int = WORKERS,
        timeout: float = CALLBACK_TIMEOUT,
        signing_secrets: Callable[[], tuple[str, ...]] = tuple,
    ) -> None:
        """Prepare (but do not start) the workers.

        Args:
            on_result: Called with ``(generation, delivered)`` after each attempt.
            workers: Number of delivery threads.
            timeout: Seconds allowed per POST.
            signing_secrets: The `whsec_` secrets in force (read at each POST, so a
                knob changed at run time applies); none: unsigned callbacks.
        """
        self._signing_secrets = signing_secrets
        self._on_result = on_result
        self._timeout = timeout
        self._queues: list[queue.SimpleQueue[StatusChange | None]] = [
            queue.SimpleQueue() for _ in range(workers)
        ]
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the delivery threads (daemons: a stuck receiver never blocks exit)."""
        if self._threads:
            return
        for number, jobs in enumerate(self._queues):
            thread = threading.Thread(
                target=self._work, args=(jobs,), name=f"emulator-callbacks-{number}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def submit(self, change: StatusChange) -> None:
        """Queue a delivery; returns at once."""
        shard = zlib.crc32(change.task_id.encode()) % len(self._queues)
        self._queues[shard].put(change)

    def stop(self, timeout: float = 1.0) -> None:
        """Ask the workers to finish what is queued and wait a little for them."""
        for jobs in self._queues:
            jobs.put(None)
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def _work(self, jobs: queue.SimpleQueue[StatusChange | None]) -> None:
        while True:
            change = jobs.get()
            if change is None:
                return
            self._on_result(change.generation, self._post(change))

    def _post(self, change: StatusChange) -> bool:
        # callback_url was checked to be http(s) when the task was created (checks.py).
        headers = {"Content-Type": "application/json", "User-Agent": "kolors-emulator"}
        headers.update(signature_headers(self._signing_secrets(), change.body))
        request = urllib.request.Request(  # noqa: S310
            change.url, data=change.body, method="POST", headers=headers
        )
        try:
            with open_url(request, self._timeout) as response:
                response.read()
                return 200 <= response.status < 300
        except urllib.error.HTTPError as exc:
            logger.debug("callback to %s answered HTTP %s", _host(change.url), exc.code)
        except (OSError, ValueError) as exc:
            logger.debug("callback to %s failed: %s", _host(change.url), type(exc).__name__)
        return False


def signature_headers(secrets: tuple[str, ...], body: bytes) -> dict[str, str]:
    """Standard Webhooks headers over `body`, one `v1,` signature per secret (none: {}).

    HMAC-SHA256 over `{id}.{timestamp}.{body}`, keyed by the Base64 after `whsec_`.
    """
    if not secrets:
        return {}
    msg_id = "msg_" + uuid.uuid4().hex
    timestamp = str(int(time.time()))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    signatures = []
    for secret in secrets:
        key = base64.b64decode(secret.removeprefix("whsec_"))
        digest = hmac.new(key, signed, hashlib.sha256).digest()
        signatures.append("v1," + base64.b64encode(digest).decode("ascii"))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": " ".join(signatures),
    }


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).hostname or "?"
