"""`tryon worker` processes, started as a user starts them and killed as machines die."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path

from harness.interrupts import kill_group, register_cleanup, unregister_cleanup
from harness.waiting import wait_until


def terminate(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM a process we started; SIGKILL it if it has not exited within `timeout` s."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class WorkerProcess:
    """A `tryon worker` process in its own process group (so kill -9 takes its pool too)."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path, name: str) -> None:
        self.process = process
        self.log_path = log_path
        self.name = name
        self._cleanup: int | None = None

    @classmethod
    def start(
        cls,
        env: Mapping[str, str],
        log_path: Path,
        name: str,
        concurrency: int,
        *,
        args: Sequence[str] | None = None,
    ) -> WorkerProcess:
        """Start a worker with exactly `env` and wait until Celery says it is ready.

        `args`: the worker's arguments as an operator or a compose file gives them (`[]`:
        `tryon worker` alone, Celery's defaults and the node name `tryon worker` gives);
        `name` and `concurrency` then only name the log. By default, the tests' options.
        """
        if args is None:
            args = [
                f"--concurrency={concurrency}",
                f"--hostname={name}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
        log = log_path.open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "kolors_tryon.cli", "worker", *args],
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,
            start_new_session=True,
        )
        log.close()
        worker = cls(process, log_path, name)
        # Stopped even when a signal interrupts the session mid-test (harness/interrupts).
        worker._cleanup = register_cleanup(f"worker {name}", lambda: kill_group(process.pid))
        try:
            wait_until(worker.is_ready, 60, 0.3, f"worker {name} to be ready ({log_path})")
        except BaseException:
            # Not yet in any deployment's list: nobody else would stop it, and a leaked
            # worker keeps its `<name>@<host>.celery.pidbox` queue locked for later tests.
            worker.kill()
            raise
        return worker

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def node_name(self) -> str:
        """The worker's node name, as Celery announces it (`<node> ready.`)."""
        found = re.search(r"(\S+@\S+) ready\.", self.log_text())
        if found is None:
            raise AssertionError(f"worker {self.name} has not said its node name")
        return found.group(1)

    def is_ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"worker {self.name} exited:\n{self.log_text()[-4000:]}")
        return " ready." in self.log_text()

    def kill(self) -> None:
        """kill -9 the worker and its pool processes, with no chance to clean up."""
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self._forget()

    def _forget(self) -> None:
        """Ended: nothing left for a signal's clean-up to stop."""
        if self._cleanup is not None:
            unregister_cleanup(self._cleanup)
            self._cleanup = None

    def kill_pool_child(self) -> bool:
        """kill -9 one pool process only; the worker's main process lives on."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:  # field 4 of stat: the parent pid
                children.append(int(stat.parent.name))
        if not children:
            return False
        with suppress(ProcessLookupError):
            os.kill(children[0], signal.SIGKILL)
        return True

    def stop(self) -> None:
        if self.process.poll() is not None:
            self._forget()
            return
        try:
            # SIGTERM to the main process only: Celery's warm shutdown stops its pool.
            self.process.terminate()
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass
        self._forget()

    def alive(self) -> bool:
        return self.process.poll() is None
