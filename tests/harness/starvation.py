"""A loaded machine, on purpose: processes that get a quarter of one core.

A busy production host is what a quiet test machine is not. Pinning a worker (main
process and pool) to one core beside busy loops pinned to the same core slows every
step of it by the same factor, timers and event loop included, without touching the
rest of the machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

_SPIN = "import os; os.sched_setaffinity(0, {%d})\nwhile True: pass"


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (a worker and its pool processes)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


@contextmanager
def cpu_starved(pid: int, hogs: int = 3, core: int = 0) -> Iterator[None]:
    """Pin `pid`'s process tree to `core` beside `hogs` busy loops on that core."""
    for member in process_tree(pid):
        with suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(member, {core})
    spinners = [subprocess.Popen([sys.executable, "-c", _SPIN % core]) for _ in range(hogs)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
        every = set(range(os.cpu_count() or 1))
        for member in process_tree(pid):
            with suppress(ProcessLookupError, PermissionError):
                os.sched_setaffinity(member, every)
