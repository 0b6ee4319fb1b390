"""`tryon worker` names its node unless told: the rule for the arguments that name it."""

from __future__ import annotations

import re

import pytest

from kolors_tryon.config import Settings
from kolors_tryon.worker.nodes import host_of, names_the_node, with_node_name

SETTINGS = Settings.model_validate({"namespace": "shop-eu"})


@pytest.mark.parametrize(
    "args",
    [
        ["-n", "w1@%h"],
        ["-nw1@%h"],
        ["--hostname", "w1@%h"],
        ["--hostname=w1@%h"],
        ["--concurrency", "4", "--hostname=w1@%h", "--without-gossip"],
    ],
)
def test_an_explicit_node_name_is_kept(args: list[str]) -> None:
    """`-n/--hostname` in any spelling click accepts is passed to Celery as it is."""
    assert names_the_node(args)
    assert with_node_name(SETTINGS, args) == args


@pytest.mark.parametrize("args", [[], ["--concurrency", "4"], ["--", "-n", "x"], ["--name=x"]])
def test_without_a_node_name_one_of_its_own_is_given(args: list[str]) -> None:
    """No `-n/--hostname`: `<namespace>-<pid>-<4 hex>@%h` goes first, the rest follows."""
    first, *rest = with_node_name(SETTINGS, args)
    assert re.fullmatch(r"--hostname=shop-eu-\d+-[0-9a-f]{4}@%h", first), first
    assert rest == args


def test_two_default_names_in_one_process_differ() -> None:
    """The random part tells apart workers that share a pid and a host (containers)."""
    names = {with_node_name(SETTINGS, [])[0] for _ in range(20)}
    assert len(names) > 1


def test_the_host_of_a_node_is_what_follows_the_at() -> None:
    """`--this-host` compares the part after `@` with this machine's hostname."""
    assert host_of("shop-eu-12-ab12@box.example") == "box.example"
    assert host_of("nohost") == ""
