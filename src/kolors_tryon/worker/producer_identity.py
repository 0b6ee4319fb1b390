"""Whose job a message on the jobs queue is: the AMQP door's side of producers.

In order of trust:
1. the message's `user_id` property: RabbitMQ refuses a publish whose `user_id` is not
   the connection's own user, so it names an authenticated RabbitMQ user;
2. the `tryon-producer` header with a valid `tryon-producer-signature`: our own doors
   (`tryon web` for its HTTP keys, the CLI and `enqueue()` for TRYON_PRODUCER) sign it
   with a secret kept in the store, which a raw AMQP client does not have;
3. otherwise TRYON_AMQP_PRODUCER (`default` unless configured).
A forged or malformed claim is not refused (the job is not lost): it falls to the next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from kolors_tryon.config.producers import (
    PRODUCER_HEADER,
    PRODUCER_SIGNATURE_HEADER,
    is_valid_producer,
    verify_producer,
)

log = logging.getLogger(__name__)


def producer_of(
    properties: Mapping[str, Any],
    headers: Mapping[str, Any] | None,
    body: bytes,
    *,
    secret: Callable[[], str],
    default: str,
) -> str:
    """The producer of one message (see the module's docstring for the order).

    Args:
        properties: The AMQP message properties (`user_id` among them).
        headers: The message headers.
        body: The message body as published (the signature covers it).
        secret: Reads the signing secret (called only for a signed message).
        default: The producer of a message that names none.
    """
    user = properties.get("user_id")
    if isinstance(user, bytes):
        user = user.decode("utf-8", "replace")
    if is_valid_producer(user):
        return str(user)
    claimed = (headers or {}).get(PRODUCER_HEADER)
    signature = (headers or {}).get(PRODUCER_SIGNATURE_HEADER)
    if isinstance(claimed, str) and isinstance(signature, str) and is_valid_producer(claimed):
        if verify_producer(secret(), claimed, body, signature):
            return claimed
        log.warning("a job message claims producer %r with a bad signature: %s", claimed, default)
    return default
