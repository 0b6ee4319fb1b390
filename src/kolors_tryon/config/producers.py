"""Producers: who a job belongs to, and how its id is scoped by them.

A producer is a name (a shop, a brand, an environment). A job is keyed internally by
`job_key(producer, job_id)`, so that two producers can use the same job id without
blocking or reading each other's job:

- for `default` the key is the job id itself: every job recorded before producers
  existed keeps its key, and a single-producer setup sends Kling the same
  `external_task_id` as before;
- for any other producer it is ``"p:" + sha256(producer NUL job_id)[:40]``: stable (the
  same job sent again has the same key, so duplicates still collapse and an ambiguous
  create is still resolved by querying it), 42 characters (within our 64-character id
  rule; Kling documents no length limit, only that `external_task_id` is unique per
  account, which 160 bits of SHA-256 keep), and of the same alphabet as job ids.

Lives in config (the bottom layer) because the store, the pipeline and the doors all
key jobs the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

__all__ = [
    "DEFAULT_PRODUCER",
    "PRODUCER_HEADER",
    "PRODUCER_SIGNATURE_HEADER",
    "is_valid_producer",
    "job_key",
    "parse_weights",
    "sign_producer",
    "split_api_key",
    "verify_producer",
]

DEFAULT_PRODUCER: Final = "default"
SCOPED_KEY_PREFIX: Final = "p:"
_VALID_PRODUCER = re.compile(r"[A-Za-z0-9._-]{1,64}")

# AMQP headers of a job message published by one of our own doors (`tryon web`, the CLI,
# `enqueue()`): the producer, and an HMAC of it and the body with the store's producer
# secret. A raw AMQP client cannot forge them; it is the `user_id` property's or the
# configured default producer's.
PRODUCER_HEADER: Final = "tryon-producer"
PRODUCER_SIGNATURE_HEADER: Final = "tryon-producer-signature"


def is_valid_producer(name: object) -> bool:
    """True for a usable producer name (letters, digits, ``._-``, at most 64)."""
    return isinstance(name, str) and _VALID_PRODUCER.fullmatch(name) is not None


def job_key(producer: str, job_id: str) -> str:
    """The internal key (and Kling `external_task_id`) of `producer`'s job `job_id`."""
    if producer == DEFAULT_PRODUCER:
        return job_id
    digest = hashlib.sha256(f"{producer}\0{job_id}".encode()).hexdigest()
    return SCOPED_KEY_PREFIX + digest[:40]


def split_api_key(entry: str) -> tuple[str, str]:
    """``"shop-a:key1"`` as ``("shop-a", "key1")``; a bare key belongs to `default`.

    Only a valid producer name before the first colon names a producer, so a bare key
    that happens to hold a colon elsewhere stays a key of `default`.
    """
    name, sep, key = entry.partition(":")
    if sep and key and is_valid_producer(name):
        return name, key
    return DEFAULT_PRODUCER, entry


def parse_weights(text: str, *, allow_zero: bool = False) -> dict[str, float]:
    """``"shop-a:2,shop-b:1"`` as a mapping (weights; budgets with `allow_zero`).

    Raises:
        ValueError: an entry is not ``name:number`` with a positive number (or zero).
    """
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, _, number = part.rpartition(":")
        if not is_valid_producer(name):
            raise ValueError(f"{part!r}: expected producer:number")
        value = float(number)
        if not (value > 0 or (allow_zero and value == 0)):
            raise ValueError(f"{part!r}: the number must be positive")
        weights[name] = value
    return weights


def sign_producer(secret: str, producer: str, body: bytes) -> str:
    """The signature header of a message our own door publishes for `producer`."""
    mac = hmac.new(secret.encode(), producer.encode() + b"\0" + body, hashlib.sha256)
    return mac.hexdigest()


def verify_producer(secret: str, producer: str, body: bytes, signature: str) -> bool:
    """True when `signature` is `sign_producer` of these (compared in constant time)."""
    return hmac.compare_digest(sign_producer(secret, producer, body), signature)
