"""The order in which pytest-xdist hands out tests: longest first, shared stacks whole.

`make test` runs the suite on more xdist workers than the machine has cores (most tests
wait on worker processes, brokers and timers, not on a CPU) with `--dist loadgroup
--no-loadscope-reorder`, which gives each idle worker the next unit of work (a test, or
a group) in collection order. Two things then decide the wall time:

- The long fault runs (`@pytest.mark.slow`, one to four minutes each, mostly waiting)
  must start first. Left where they are collected, several land at the end of the queue
  or on one worker one after the other, and the session waits minutes for its tail.
- A module whose tests share a module-scoped stack (a deployment, a web process) is
  one unit of work: split over workers, every worker would start that stack again.
"""

from __future__ import annotations

import pytest


def shares_a_module_stack(item: pytest.Item) -> bool:
    """Whether `item` uses a module-scoped fixture (a stack its module starts once)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(definitions[-1].scope == "module" for definitions in info.name2fixturedefs.values())


def schedule_for_xdist(items: list[pytest.Item]) -> None:
    """Group the tests of each module with a shared stack (`xdist_group`, read by
    `--dist loadgroup`); in place, order the long runs first, then the groups (a few
    minutes each), then the rest as collected (a stable sort)."""
    grouped: set[str] = set()
    for item in items:
        if shares_a_module_stack(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
            grouped.add(item.nodeid)

    def order(item: pytest.Item) -> tuple[bool, bool]:
        return item.get_closest_marker("slow") is None, item.nodeid not in grouped

    items.sort(key=order)
