"""An S3-compatible object store over real HTTP: moto's standalone server on loopback.

It stands in for the operator's bucket (AWS, MinIO, Ceph...) as the emulator stands in
for Kling: the service reaches it only through its endpoint URL, with boto3. It can be
started late, on a port chosen up front, to play a store that is down at first.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from moto.server import ThreadedMotoServer

from harness.env import free_port
from kolors_tryon.config import Settings
from kolors_tryon.pipeline.storage import make_s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

S3_REGION = "us-east-1"


@dataclass
class S3Server:
    """One moto server on 127.0.0.1:`port` and a bucket of its own (created on start)."""

    port: int = field(default_factory=free_port)
    bucket: str = field(default_factory=lambda: f"results-{uuid.uuid4().hex[:10]}")
    prefix: str = "tryon/"
    _server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The `TRYON_` variables of a deployment whose copies go to this bucket."""
        return {
            "TRYON_RESULT_STORAGE": "s3",
            "TRYON_S3_ENDPOINT_URL": self.endpoint,
            "TRYON_S3_BUCKET": self.bucket,
            "TRYON_S3_PREFIX": self.prefix,
            "TRYON_S3_REGION": S3_REGION,
            "TRYON_S3_ACCESS_KEY_ID": "test-key-id",
            "TRYON_S3_SECRET_ACCESS_KEY": "test-secret-key",
        }

    def start(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.client().create_bucket(Bucket=self.bucket)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def client(self) -> S3Client:
        fields = {k.removeprefix("TRYON_").lower(): v for k, v in self.env().items()}
        return make_s3_client(Settings.model_validate(fields))

    def keys(self) -> list[str]:
        """Every key in the bucket."""
        listing = self.client().list_objects_v2(Bucket=self.bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []) if "Key" in item)

    def read(self, key: str) -> bytes:
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].read()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextmanager
def running_s3(*, started: bool = True) -> Iterator[S3Server]:
    """An S3 server with a fresh bucket; `started=False`: only its port, nobody listening."""
    server = S3Server()
    if started:
        server.start()
    try:
        yield server
    finally:
        server.stop()
