"""Copies of result images in our own storage: Kling deletes its copies after 30 days.

A job is recorded `succeeded` at once with Kling's URLs (its account slot is freed
without waiting for any download), and its copies are made afterwards by the task
`tryon.copy_results(job_id)`: a copy that fails (the storage or the CDN is down) is
tried again with backoff, and the sweep re-sends one whose message was lost. A copy
never turns a succeeded job into a failed one; the record says `stored: null` until it
lands. What can never be copied (not an image by its bytes, larger than
`TRYON_RESULT_MAX_BYTES`, a URL answering 4xx) is given up, with the reason logged.

The URLs come from a callback or a query answer, so they are fetched as the URL
preflight fetches producers' URLs (`jobs.preflight.fetch_checked`): private, loopback
and link-local addresses refused unless ``TRYON_RESULT_ALLOW_PRIVATE=true`` (or in
sandbox mode: the bundled emulator serves results from this machine), each
redirect re-checked, the connection pinned to the checked address, and the whole
download bounded by one deadline however slowly the CDN sends.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import requests

from kolors_tryon.config.backoff import backoff_delay
from kolors_tryon.config.http_deadline import call_deadline
from kolors_tryon.errors import TryonError
from kolors_tryon.jobs.preflight import fetch_checked
from kolors_tryon.jobs.urls import UrlProblem
from kolors_tryon.kling import KlingTask, redact
from kolors_tryon.pipeline.runtime import Runtime
from kolors_tryon.pipeline.step import Step
from kolors_tryon.pipeline.storage import StorageError
from kolors_tryon.store import JobState, ResultImage

log = logging.getLogger(__name__)

# What a result may be, told by its first bytes (never by the Content-Type header alone,
# which a misconfigured CDN or a captive portal's HTML page gets wrong).
_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
)
# Statuses after which the same download may work later; every other 4xx never will.
_RETRYABLE_STATUS = frozenset({408, 425, 429})
_ALLOW_HINT = "refused unless TRYON_RESULT_ALLOW_PRIVATE=true"
_HEADERS = {"User-Agent": "kolors-tryon-copies/1", "Accept-Encoding": "identity"}


class CopyRefused(TryonError):
    """This result can never be copied: retrying is pointless."""


class CopyFailed(TryonError):
    """The copy failed for now (network, a 5xx, the storage): try again later."""


@dataclass(frozen=True)
class Downloaded:
    data: bytes
    content_type: str
    suffix: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def keep_results(rt: Runtime, job_id: str, task: KlingTask) -> list[ResultImage]:
    """The task's images as the record keeps them at success: Kling's URLs, no copy yet.

    When copies are on, the copy is noted as due before the job is recorded succeeded
    (a worker that dies in between leaves it due, and the sweep sends it); the caller
    sends `tryon.copy_results` once the job is recorded (`Step.copy_results`).
    """
    images = [ResultImage(index=image.index, url=image.url) for image in task.images]
    if rt.settings.store_result_copies and images:
        rt.store.copies.expect(job_id)
    return images


def copy_results(rt: Runtime, job_id: str) -> Step:
    """Copy the missing result images of a succeeded job; ask to run again on failure."""
    record = rt.store.get(job_id)
    missing = [] if record is None else [img for img in record.images if img.stored is None]
    if (
        record is None
        or record.state is not JobState.SUCCEEDED
        or not missing
        or not rt.settings.store_result_copies
    ):
        rt.store.copies.drop(job_id)
        return Step(note="nothing to copy")
    tries = rt.store.copies.take(job_id)
    if tries is None:
        return Step(note="no copy due")
    made: list[ResultImage] = []
    refused: list[str] = []
    failed: list[str] = []
    for image in missing:
        try:
            got = download_result(rt, image.url)
            location = rt.copies.put(
                job_id, f"{image.index}{got.suffix}", got.data, got.content_type
            )
        except CopyRefused as exc:
            refused.append(f"image {image.index}: {exc}")
            continue
        except (CopyFailed, StorageError) as exc:
            failed.append(f"image {image.index}: {exc}")
            continue
        made.append(image.model_copy(update={"stored": location, "sha256": got.sha256}))
    kept = rt.store.copies.record(job_id, made) if made else []
    _delete_unreferenced(rt, made, kept)
    if refused:
        reason = redact("; ".join(refused))
        log.warning("job %s: result copy given up: %s", job_id, reason)
        if not failed:
            rt.store.copies.give_up(job_id, error=reason)
    if failed:
        reason = redact("; ".join(failed))
        delay = backoff_delay(
            tries, base=rt.settings.copy_retry_base, cap=rt.settings.copy_retry_max, rng=rt.rng
        )
        rt.store.copies.failed(job_id, retry_in=delay, error=reason)
        log.warning(
            "job %s: result copy failed (%s); trying again in %.0f s", job_id, reason, delay
        )
        return Step(again_in=delay, note="copy failed")
    return Step(note=f"copied {len(made)} image(s)")


def _delete_unreferenced(rt: Runtime, made: list[ResultImage], kept: list[str] | None) -> None:
    """Delete uploads the record does not name: the job was forgotten or purged meanwhile."""
    for image in made:
        assert image.stored is not None
        if kept is None or image.stored not in kept:
            try:
                rt.copies.delete(image.stored)
            except StorageError as exc:
                log.warning("could not delete an unreferenced copy: %s", exc)


def download_result(rt: Runtime, url: str) -> Downloaded:
    """Fetch one result image safely, within its deadline and size cap, and check its bytes."""
    limit = rt.settings.result_max_bytes
    try:
        with (
            call_deadline(rt.settings.http_deadline) as deadline,
            fetch_checked(
                url,
                deadline=deadline,
                timeout=rt.settings.http_timeout,
                allow_private=rt.settings.copies_allow_private,
                hint=_ALLOW_HINT,
                headers=_HEADERS,
            ) as (response, _),
        ):
            status = response.status_code
            if not 200 <= status < 300:
                why = f"the URL answered HTTP {status}"
                if status >= 500 or status in _RETRYABLE_STATUS:
                    raise CopyFailed(why)
                raise CopyRefused(why)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise CopyRefused(f"larger than {limit} bytes (Content-Length {declared})")
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > limit:
                    raise CopyRefused(f"larger than {limit} bytes")
                deadline.check()
                chunks.append(chunk)
    except UrlProblem as exc:
        # A name that does not resolve may resolve later; an address or a redirect that
        # the policy refuses never becomes acceptable.
        if exc.rule == "dns":
            raise CopyFailed(exc.message) from None
        raise CopyRefused(exc.message) from None
    except requests.RequestException as exc:
        raise CopyFailed(f"download failed: {type(exc).__name__}") from None
    data = b"".join(chunks)
    for magic, content_type, suffix in _MAGIC:
        if data.startswith(magic):
            return Downloaded(data, content_type, suffix)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return Downloaded(data, "image/webp", ".webp")
    raise CopyRefused(f"not a PNG, JPEG or WebP image ({size} bytes)")
