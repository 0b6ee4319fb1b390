"""Producers: scoped job keys, HTTP keys per producer, weights, and the fair-share order."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from pydantic import SecretStr

from kolors_tryon.config import Settings
from kolors_tryon.config.producers import (
    DEFAULT_PRODUCER,
    job_key,
    parse_weights,
    sign_producer,
    split_api_key,
    verify_producer,
)
from kolors_tryon.jobs.ids import is_valid_job_id
from kolors_tryon.store.fair_share import Waiting, shares
from kolors_tryon.web.auth import producer_of_key
from kolors_tryon.worker.producer_identity import producer_of


def test_the_default_producer_keys_a_job_by_its_own_id() -> None:
    """`default`'s key is the job id: existing jobs and external_task_ids stay as they were."""
    assert job_key(DEFAULT_PRODUCER, "sku-1") == "sku-1"


def test_other_producers_get_stable_distinct_valid_keys() -> None:
    """Two producers' same id are two keys, stable, valid as job ids and external_task_ids."""
    a, b = job_key("shop-a", "sku-1"), job_key("shop-b", "sku-1")
    assert a != b and a == job_key("shop-a", "sku-1")
    assert is_valid_job_id(a) and is_valid_job_id(b)
    assert job_key("shop-a", "x" * 64) != job_key("shop-a", "x" * 63)


@pytest.mark.parametrize(
    ("entry", "pair"),
    [
        ("shop-a:key1", ("shop-a", "key1")),
        ("bare-key", ("default", "bare-key")),
        ("not a name:key", ("default", "not a name:key")),
        ("shop-a:", ("default", "shop-a:")),
    ],
)
def test_an_api_key_names_its_producer_or_is_defaults(entry: str, pair: tuple[str, str]) -> None:
    """`producer:key` names the producer; a bare key (or no valid name) belongs to default."""
    assert split_api_key(entry) == pair


def test_keys_of_several_producers_authenticate_as_theirs() -> None:
    """Each key answers its own producer, several keys per producer rotate, others none."""
    settings = Settings.model_validate({"api_keys": "shop-a:k1,shop-a:k2,shop-b:k3,k4"})
    keys = settings.api_key_producers()
    assert producer_of_key("Bearer k1", keys) == "shop-a"
    assert producer_of_key("Bearer k2", keys) == "shop-a"
    assert producer_of_key("Bearer k3", keys) == "shop-b"
    assert producer_of_key("Bearer k4", keys) == "default"
    assert producer_of_key("Bearer shop-a:k1", keys) is None
    assert producer_of_key(None, keys) is None
    assert all(isinstance(key, SecretStr) for _, key in keys)


def test_weights_are_read_and_checked() -> None:
    """`TRYON_PRODUCER_WEIGHTS=a:2,b:0.5` parses; a non-positive weight is refused."""
    assert parse_weights("a:2, b:0.5") == {"a": 2.0, "b": 0.5}
    assert Settings.model_validate({"producer_weights": "a:3"}).producer_weights == {"a": 3.0}
    with pytest.raises(ValueError, match="positive"):
        parse_weights("a:0")


def test_a_late_producer_gets_the_next_slots_not_the_backlogs_turn() -> None:
    """Freed slots go to the producer holding fewest; equal holdings alternate."""
    waiting = {"a": Waiting(2000, 1), "b": Waiting(10, 2001)}
    assert shares(1, waiting, {"a": 5}, {}) == ["b"]
    assert shares(6, waiting, {"a": 2}, {}) == ["b", "b", "a", "b", "a", "b"]


def test_weights_share_the_slots_in_proportion() -> None:
    """A producer of weight 2 gets two slots for each one of a producer of weight 1."""
    waiting = {"a": Waiting(100, 1), "b": Waiting(100, 2)}
    order = shares(9, waiting, {}, {"a": 2.0})
    assert order.count("a") == 6 and order.count("b") == 3


def test_a_producer_with_fewer_jobs_than_slots_leaves_the_rest_to_others() -> None:
    """Slots a producer cannot use go to the others; no more are given than wait."""
    waiting = {"a": Waiting(1, 1), "b": Waiting(2, 2)}
    assert sorted(shares(5, waiting, {}, {})) == ["a", "b", "b"]


def test_only_a_valid_signature_or_the_broker_user_names_the_producer() -> None:
    """user_id wins; a signed header names the producer; a forged one falls to the default."""
    body = b'{"job_id":"x"}'
    good = sign_producer("s3cret", "shop-a", body)
    assert verify_producer("s3cret", "shop-a", body, good)

    def of(properties: Mapping[str, object], headers: Mapping[str, object]) -> str:
        return producer_of(properties, headers, body, secret=lambda: "s3cret", default="amqp")

    signed = {"tryon-producer": "shop-a", "tryon-producer-signature": good}
    assert of({"user_id": "shop-b"}, signed) == "shop-b"
    assert of({}, signed) == "shop-a"
    assert of({}, {**signed, "tryon-producer": "shop-c"}) == "amqp"
    assert of({}, {"tryon-producer": "shop-a"}) == "amqp"
    assert of({}, {}) == "amqp"
