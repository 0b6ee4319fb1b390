"""Result copies: a real worker copies each result to an S3-compatible bucket (moto's
server over HTTP) or the local directory, retries in the background, and refuses what
is not an image or is too large."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from harness import (
    Deployment,
    S3Server,
    publish_jobs,
    running_s3,
    sha256_hex,
    wait_until,
)
from kolors_tryon import result_urls
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.store import JobRecord, JobState


def copied(deployment: Deployment, job_id: str) -> JobRecord | None:
    """The job's record once it succeeded with every copy stored, else None."""
    store = deployment.store()
    try:
        record = store.get(job_id)
    finally:
        store.dispose()
    if record is None or record.state is not JobState.SUCCEEDED or not record.images:
        return None
    return record if all(img.stored for img in record.images) else None


def wait_copied(deployment: Deployment, job_id: str, timeout: float = 60) -> JobRecord:
    wait_until(lambda: copied(deployment, job_id) is not None, timeout, what=f"{job_id} copied")
    record = copied(deployment, job_id)
    assert record is not None
    return record


def wait_succeeded(deployment: Deployment, job_id: str, timeout: float = 60) -> JobRecord:
    store = deployment.store()
    try:

        def ended() -> bool:
            found = store.get(job_id)
            return found is not None and found.terminal

        wait_until(ended, timeout, what=f"{job_id} to end")
        record = store.get(job_id)
    finally:
        store.dispose()
    assert record is not None and record.state is JobState.SUCCEEDED, record
    return record


@pytest.fixture
def s3() -> Iterator[S3Server]:
    """A started S3 server with a fresh bucket."""
    with running_s3() as server:
        yield server


def test_succeeded_jobs_have_their_copies_in_the_bucket(
    rabbit_deployment: Deployment, emulator: EmulatorServer, s3: S3Server
) -> None:
    """Each result lands in the bucket under the prefix: same bytes, same SHA-256 as served."""
    rabbit_deployment.env.update(s3.env())
    rabbit_deployment.start_worker()
    job_ids = publish_jobs(rabbit_deployment.settings, 2, "s3ok")
    for job_id in job_ids:
        record = wait_copied(rabbit_deployment, job_id)
        (image,) = record.images
        key = f"{s3.prefix}{job_id}/0.png"
        assert image.stored == f"s3://{s3.bucket}/{key}"
        served = requests.get(image.url, timeout=10).content
        assert served.startswith(b"\x89PNG")
        assert s3.read(key) == served
        assert image.sha256 == sha256_hex(served)
    assert s3.keys() == sorted(f"{s3.prefix}{job_id}/0.png" for job_id in job_ids)


def test_presigned_url_downloads_the_stored_copy(
    rabbit_deployment: Deployment, emulator: EmulatorServer, s3: S3Server
) -> None:
    """`tryon results url` and `result_urls()` give presigned GETs that download the copy."""
    rabbit_deployment.env.update(s3.env())
    rabbit_deployment.start_worker()
    (job_id,) = publish_jobs(rabbit_deployment.settings, 1, "presign")
    record = wait_copied(rabbit_deployment, job_id)
    result = rabbit_deployment.tryon("results", "url", job_id, "--expires", "120", "--json")
    assert result.returncode == 0, result.stderr
    (url,) = json.loads(result.stdout)["urls"]
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=120" in url
    downloaded = requests.get(url, timeout=10)
    assert downloaded.status_code == 200
    assert sha256_hex(downloaded.content) == record.images[0].sha256
    (from_python,) = result_urls(job_id, rabbit_deployment.settings, expires=60)
    assert from_python is not None and "X-Amz-Expires=60" in from_python
    assert requests.get(from_python, timeout=10).content == downloaded.content


def test_store_down_at_first_job_succeeds_then_copy_lands(
    rabbit_deployment: Deployment, emulator: EmulatorServer
) -> None:
    """S3 refuses connections: the job succeeds with stored null; the retry copies it later."""
    with running_s3(started=False) as s3:
        rabbit_deployment.env.update(s3.env())
        rabbit_deployment.env.update({"TRYON_COPY_RETRY_BASE": "0.5", "TRYON_COPY_RETRY_MAX": "1"})
        rabbit_deployment.start_worker()
        (job_id,) = publish_jobs(rabbit_deployment.settings, 1, "s3down")
        record = wait_succeeded(rabbit_deployment, job_id)
        assert record.images and record.images[0].stored is None
        assert record.images[0].url.startswith(emulator.base_url)
        store = rabbit_deployment.store()
        try:

            def tried_twice() -> bool:
                status = store.copies.status(job_id)
                return status is not None and status[0] >= 2

            wait_until(tried_twice, 60, what="two failed copy tries")
            status = store.copies.status(job_id)
            assert status is not None and status[2] and "S3 store failed" in status[2]
            assert store.get(job_id) == record  # still succeeded, nothing else moved
            s3.start()
            landed = wait_copied(rabbit_deployment, job_id, timeout=60)
            assert store.copies.status(job_id) is None
        finally:
            store.dispose()
        assert landed.state is JobState.SUCCEEDED
        assert s3.read(f"{s3.prefix}{job_id}/0.png").startswith(b"\x89PNG")


class _BadResults(BaseHTTPRequestHandler):
    """A CDN that serves something else than a result image at every result URL."""

    body = b""
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")  # the header lies; the bytes tell
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.mark.parametrize(
    ("case", "body", "reason"),
    [
        ("html page", b"<!doctype html><title>login</title>" * 50, "not a PNG, JPEG or WebP"),
        ("too large", b"\x89PNG\r\n\x1a\n" + b"\0" * 300_000, "larger than 200000 bytes"),
    ],
)
def test_a_result_that_is_not_an_image_or_too_large_is_not_stored(
    rabbit_deployment: Deployment,
    emulator: EmulatorServer,
    case: str,
    body: bytes,
    reason: str,
) -> None:
    """Bytes that are not an image (whatever the header says), or too many: no copy, no retry."""
    handler = type("Handler", (_BadResults,), {"body": body})
    cdn = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=cdn.serve_forever, daemon=True).start()
    try:
        emulator.configure(public_base_url=f"http://127.0.0.1:{cdn.server_address[1]}")
        with running_s3() as s3:
            rabbit_deployment.env.update(s3.env())
            rabbit_deployment.env["TRYON_RESULT_MAX_BYTES"] = "200000"
            rabbit_deployment.start_worker()
            (job_id,) = publish_jobs(rabbit_deployment.settings, 1, "bad")
            record = wait_succeeded(rabbit_deployment, job_id)
            store = rabbit_deployment.store()
            try:

                def given_up() -> bool:
                    status = store.copies.status(job_id)
                    return status is not None and status[1] is None

                wait_until(given_up, 30, what=f"the copy of the {case} given up")
                status = store.copies.status(job_id)
                assert status is not None and status[2] and reason in status[2]
                assert status[0] == 0  # refused at once: no retry spent
                final = store.get(job_id)
            finally:
                store.dispose()
            assert final is not None and final.state is JobState.SUCCEEDED
            assert [img.stored for img in final.images] == [None]
            assert record.images[0].url == final.images[0].url
            assert s3.keys() == []
            results_dir = Path(rabbit_deployment.data_dir) / "results" / job_id
            assert not results_dir.exists() or list(results_dir.iterdir()) == []
    finally:
        cdn.shutdown()
        cdn.server_close()
