"""Where our copies of result images live: a local directory or an S3-compatible bucket.

Kling deletes its images after 30 days, so every result is copied to storage we own.
A copy's *location* is what the job record keeps (`ResultImage.stored`): an absolute
file path for the local directory, `s3://bucket/key` for a bucket. Deleting goes by
location, whatever backend is configured now, so that `tryon purge` and `tryon forget`
also remove copies made before a move from one backend to the other.

Keys are deterministic (`<prefix><job_id>/<index>.<ext>`): a copy made twice (a
redelivered message, the sweep re-sending a copy whose message seemed lost) overwrites
itself, and every copy of a job can be found by its prefix even when the record no
longer names it (a copy that landed while the job was being forgotten).

boto3 is imported only when a bucket is used, so that the local default does not pay for
it. Its client is configured for non-AWS stores (STACK_NOTES.md): boto3 >= 1.36 adds CRC
checksums by default, which MinIO, Ceph and others refuse, hence `when_required`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kolors_tryon.config import Settings, defaults, load_settings
from kolors_tryon.errors import JobNotFound
from kolors_tryon.kling import redact
from kolors_tryon.store import open_store

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

S3_SCHEME = "s3://"


class StorageError(Exception):
    """The storage did not take, give or delete an object; trying again later may work."""


def split_s3_location(location: str) -> tuple[str, str]:
    """`s3://bucket/key` as (bucket, key)."""
    bucket, _, key = location.removeprefix(S3_SCHEME).partition("/")
    if not bucket or not key:
        raise ValueError(f"not an s3://bucket/key location: {location!r}")
    return bucket, key


class ResultCopies:
    """The configured backend for new copies; any backend for deleting old ones.

    One per process (the Runtime builds it lazily); its boto3 clients are thread-safe.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.effective_results_dir
        self._lock = threading.Lock()
        self._clients: dict[str | None, S3Client] = {}

    @property
    def backend(self) -> str:
        return self.settings.result_storage

    # ---------------------------------------------------------------- writing --------
    def put(self, job_id: str, name: str, data: bytes, content_type: str) -> str:
        """Store `data` as the job's object `name` (e.g. `0.png`); returns its location."""
        if self.backend == "s3":
            bucket, key = self._bucket(), f"{self.settings.s3_prefix}{job_id}/{name}"
            self._s3_call(
                "store",
                lambda c: c.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type),
            )
            return f"{S3_SCHEME}{bucket}/{key}"
        folder = self.root / job_id
        target = folder / name
        partial = target.with_name(target.name + ".part")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(data)
            partial.replace(target)  # readers never see half a file
        except OSError as exc:
            raise StorageError(f"could not write {target}: {type(exc).__name__}") from None
        return str(target.resolve())

    # ---------------------------------------------------------------- deleting -------
    def delete(self, location: str) -> bool:
        """Delete one copy by its location; True if it existed (S3: if it was asked)."""
        if location.startswith(S3_SCHEME):
            bucket, key = split_s3_location(location)
            keys = self._s3_call("list", lambda c: _list_keys(c, bucket, key))
            if key not in keys:
                return False  # deleted already: a second run counts nothing
            self._s3_call("delete", lambda c: c.delete_object(Bucket=bucket, Key=key))
            return True
        path = Path(location)
        if not self._inside_root(path):
            # Only files under our own results directory are ever deleted: a record is
            # data, and data must not be able to name /etc/passwd.
            raise StorageError(f"refusing to delete {path}: not under {self.root}")
        try:
            existed = path.is_file()
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"could not delete {path}: {type(exc).__name__}") from None
        return existed

    def delete_job(self, job_id: str) -> int:
        """Delete every object under the job's prefix in the configured backend.

        This finds copies the record does not name: a copy that landed while the record
        was being cleared, half-written `.part` files. Returns how many were deleted.
        """
        if self.backend == "s3":
            bucket, prefix = self._bucket(), f"{self.settings.s3_prefix}{job_id}/"
            keys = self._s3_call("list", lambda c: _list_keys(c, bucket, prefix))
            for key in keys:
                # One by one: DeleteObjects needs a checksum some non-AWS stores refuse.
                self._s3_call("delete", lambda c, k=key: c.delete_object(Bucket=bucket, Key=k))
            return len(keys)
        folder = self.root / job_id
        if not folder.is_dir():
            return 0
        count = 0
        try:
            for path in folder.iterdir():
                path.unlink(missing_ok=True)
                count += 1
            folder.rmdir()
        except OSError as exc:
            raise StorageError(f"could not delete {folder}: {type(exc).__name__}") from None
        return count

    # ---------------------------------------------------------------- reading --------
    def url(self, location: str, *, expires: int) -> str:
        """A URL a consumer can download the copy from.

        A bucket's copy gets a presigned GET valid `expires` seconds, signed for
        `TRYON_S3_PUBLIC_ENDPOINT_URL` when set (the signature covers the host, so it
        must be the one consumers reach); a local copy gets its `file://` URI.
        """
        if location.startswith(S3_SCHEME):
            bucket, key = split_s3_location(location)
            public = self.settings.s3_public_endpoint_url or self.settings.s3_endpoint_url
            return str(
                self._s3_call(
                    "sign",
                    lambda c: c.generate_presigned_url(
                        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires
                    ),
                    endpoint=public,
                )
            )
        return Path(location).resolve().as_uri()

    # ---------------------------------------------------------------- S3 -------------
    def _bucket(self) -> str:
        bucket = self.settings.s3_bucket
        if not bucket:  # pragma: no cover - Settings refuse s3 without a bucket
            raise StorageError("TRYON_S3_BUCKET is not set")
        return bucket

    def _inside_root(self, path: Path) -> bool:
        return path.resolve().is_relative_to(self.root.resolve())

    def _s3_call(self, what: str, call: Any, *, endpoint: str | None = None) -> Any:
        """Run one S3 call; any failure becomes a StorageError whose message is redacted."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._client(endpoint or self.settings.s3_endpoint_url)
        try:
            return call(client)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"S3 {what} failed: {redact(str(exc))[:300]}") from None

    def _client(self, endpoint: str | None) -> S3Client:
        with self._lock:
            client = self._clients.get(endpoint)
            if client is None:
                client = make_s3_client(self.settings, endpoint)
                self._clients[endpoint] = client
            return client


def make_s3_client(settings: Settings, endpoint: str | None = None) -> S3Client:
    """An S3 client with our timeouts, few quick retries, and checksums non-AWS stores take."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=settings.http_connect_timeout,
        read_timeout=settings.http_read_timeout,
        retries={"max_attempts": settings.http_attempts, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        signature_version="s3v4",
        s3={"addressing_style": settings.s3_addressing_style},
    )
    key_id, secret = settings.s3_access_key_id, settings.s3_secret_access_key
    # A session of its own: boto3's default session is not safe to share across threads.
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=endpoint or settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=key_id.get_secret_value() if key_id else None,
        aws_secret_access_key=secret.get_secret_value() if secret else None,
        config=config,
    )


def _list_keys(client: S3Client, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []) if "Key" in item)
    return keys


def result_urls(
    job_id: str, settings: Settings | None = None, *, expires: int = defaults.PRESIGN_EXPIRES
) -> list[str | None]:
    """Download URLs of a job's stored copies, one per image in index order.

    For consumers: a presigned GET valid `expires` seconds for a bucket's copy, a
    `file://` URI for a local one, None for an image whose copy is not made (yet).

    Raises:
        JobNotFound: the job is unknown (a LookupError, as before it was typed).
        ValueError: `expires` is not between 1 s and seven days (S3's longest).
    """
    if not 1 <= expires <= defaults.PRESIGN_EXPIRES_MAX:
        raise ValueError(f"expires must be 1..{defaults.PRESIGN_EXPIRES_MAX} seconds")
    settings = settings or load_settings()
    store = open_store(settings)
    try:
        record = store.get(job_id)
    finally:
        store.dispose()
    if record is None:
        raise JobNotFound(job_id)
    copies = ResultCopies(settings)
    return [
        copies.url(image.stored, expires=expires) if image.stored else None
        for image in sorted(record.images, key=lambda image: image.index)
    ]
