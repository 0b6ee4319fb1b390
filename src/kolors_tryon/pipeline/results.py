"""Copies of result images in our own storage: Kling deletes its copies after 30 days."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

import requests

from kolors_tryon.kling import KlingTask
from kolors_tryon.pipeline.runtime import Runtime
from kolors_tryon.store import ResultImage

log = logging.getLogger(__name__)

MAX_RESULT_BYTES = 50 * 1024 * 1024
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


def keep_results(rt: Runtime, job_id: str, task: KlingTask) -> list[ResultImage]:
    """The task's images, each with the path of our copy when copying is on and works.

    A failed download does not fail the job: the URL stays valid for 30 days and the
    record says the copy is missing (`stored` is null).
    """
    images = []
    folder = rt.settings.effective_results_dir / job_id
    for image in task.images:
        stored = None
        if rt.settings.store_result_copies:
            stored = _download(rt, image.url, folder, image.index)
        images.append(ResultImage(index=image.index, url=image.url, stored=stored))
    return images


def _download(rt: Runtime, url: str, folder: Path, index: int) -> str | None:
    where = _without_query(url)
    try:
        with rt.downloads.get(url, timeout=rt.settings.http_timeout, stream=True) as response:
            response.raise_for_status()
            kind = response.headers.get("Content-Type", "").split(";")[0].strip()
            suffix = _EXTENSIONS.get(kind) or Path(urlsplit(url).path).suffix or ".img"
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / f"{index}{suffix}"
            partial = target.with_suffix(target.suffix + ".part")
            size = 0
            with partial.open("wb") as out:
                for chunk in response.iter_content(64 * 1024):
                    size += len(chunk)
                    if size > MAX_RESULT_BYTES:
                        raise ValueError(f"result larger than {MAX_RESULT_BYTES} bytes")
                    out.write(chunk)
            partial.replace(target)
            return str(target.resolve())
    except (requests.RequestException, OSError, ValueError) as exc:
        log.warning("could not copy result image %s: %s", where, type(exc).__name__)
        return None


def _without_query(url: str) -> str:
    """Signed URLs carry credentials in the query string: never log it."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
