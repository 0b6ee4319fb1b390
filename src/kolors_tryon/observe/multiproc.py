"""prometheus_client's multiprocess mode, for Celery's prefork pool.

Each forked pool process has its own memory, so an in-memory counter in one of them is
invisible to the process that serves `/metrics` (and `start_http_server` in every child
races for one port: a scrape sees about 1/N of the events). In multiprocess mode every
process writes its samples to files in `PROMETHEUS_MULTIPROC_DIR` and the serving process
merges them. Three rules (prometheus_client's docs):

1. the variable is set before any metric exists, in the process that forks, so that
   children inherit it (`prepare`, called by `tryon worker` before Celery starts);
2. the directory is wiped at start: files of an earlier run would be added to this one;
3. a pool process that exits is marked dead (`mark_dead`, on Celery's
   `worker_process_shutdown`), so that its live gauges stop counting.

`tryon worker` picks `<data dir>/prometheus/<pid>` when the variable is unset: one
directory per worker main process, so that two workers on one machine never wipe each
other's files (directories of workers that are gone are removed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

__all__ = ["ENV_VARIABLE", "enabled", "mark_dead", "prepare"]

ENV_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def enabled() -> bool:
    """Metrics of this process go to multiprocess files."""
    return bool(os.environ.get(ENV_VARIABLE))


def prepare(data_dir: Path) -> Path:
    """Set (or keep) `PROMETHEUS_MULTIPROC_DIR`, wipe it, and switch prometheus_client to it.

    Returns:
        The directory in use.
    """
    chosen = os.environ.get(ENV_VARIABLE)
    if chosen:
        folder = Path(chosen)
    else:
        parent = (data_dir / "prometheus").resolve()
        _remove_dead_siblings(parent)
        folder = parent / str(os.getpid())
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[ENV_VARIABLE] = str(folder)
    # prometheus_client picks its value class when it is imported: pick again now that
    # the variable is set (no metric exists yet, `observe.metrics` makes them lazily).
    from prometheus_client import values

    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return folder


def mark_dead(pid: int) -> None:
    """A process that wrote metrics has exited: drop its live gauges."""
    if not enabled():
        return
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _remove_dead_siblings(parent: Path) -> None:
    """Drop the directories of worker processes that no longer run."""
    if not parent.is_dir():
        return
    for child in parent.iterdir():
        if child.name.isdigit() and not _alive(int(child.name)):
            shutil.rmtree(child, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
