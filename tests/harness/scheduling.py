"""The order in which pytest-xdist hands out tests: the long runs first.

`make test` runs the suite on more xdist workers than the machine has cores (most tests
wait on worker processes, brokers and timers, not on a CPU) with `--dist loadgroup
--no-loadscope-reorder`: with no `xdist_group` mark each test is a unit of its own, and
each idle worker gets the next one in collection order. The long fault runs
(`@pytest.mark.slow`, one to four minutes each, mostly waiting) must then start first:
left where they are collected, several land at the end of the queue, or (with
`--dist worksteal`, which splits the collection into contiguous chunks) on one worker
one after the other, and the session waits minutes for its tail.

Next come the modules whose tests share a module-scoped stack (a deployment, a web
process), which take longer than most. Grouping such a module on one worker with
`xdist_group` marks would save starting its stack on each worker, but neither a mark
added here nor a static `pytestmark` grouped anything with pytest-xdist 3.8 on pytest
9.2 (measured: the tests of one group ran on three workers).
"""

from __future__ import annotations

import pytest


def shares_a_module_stack(item: pytest.Item) -> bool:
    """Whether `item` uses a module-scoped fixture (a stack its module starts once)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(definitions[-1].scope == "module" for definitions in info.name2fixturedefs.values())


def long_runs_first(items: list[pytest.Item]) -> None:
    """In place: the long runs first, then the tests of modules with a shared stack, then
    the rest as collected (a stable sort)."""

    def order(item: pytest.Item) -> tuple[bool, bool]:
        return item.get_closest_marker("slow") is None, not shares_a_module_stack(item)

    items.sort(key=order)
