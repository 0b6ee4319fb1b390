"""The scaffold of a fault test, so that each test reads as its scenario and its counts.

A fault test configures the emulator and the deployment, starts real workers, publishes
real jobs, injects its fault while it waits for every job to end, then counts what
reached the paid API (the emulator) and prints one line of figures the issue notes
quote. `FaultRun` does all but the fault and the counts:

    run = fault_run.given(max_in_flight=3, concurrency_limit=5, error_rate=0.2, seed=5)
    run.publish(60, "storm")
    run.wait_terminal(timeout=360, during=inject_a_fault)  # `during` runs between polls
    assert run.states() == {"succeeded": 60}
    stats = run.assert_one_task_per_job()
    figures("fault-storm", jobs=60, peak_in_flight=stats["peak_in_flight"])
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.deployment import Deployment
from harness.samples import publish_jobs
from harness.waiting import terminal_records, wait_all_terminal
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.store import JobRecord, JobStore


def figures(name: str, **values: object) -> None:
    """Print the `FIGURES <name>: {...}` line of a run (pytest -s shows it)."""
    print(f"FIGURES {name}: " + json.dumps(values, sort_keys=True))


def states(records: Mapping[str, JobRecord]) -> Counter[str]:
    """How many of `records` are in each state."""
    return Counter(str(r.state) for r in records.values())


def assert_one_task_per_job(emulator: EmulatorServer, job_ids: list[str]) -> dict[str, Any]:
    """At the API: every job has exactly one task, and no create was refused as a duplicate."""
    stats = emulator.stats()
    tasks = stats["tasks_by_external_id"]
    assert stats["duplicates"] == 0, stats["duplicates"]
    assert {job_id: tasks.get(job_id, 0) for job_id in job_ids} == dict.fromkeys(job_ids, 1)
    return stats


@dataclass
class FaultRun:
    """One fault scenario on a deployment and an emulator: its jobs and their records."""

    deployment: Deployment
    emulator: EmulatorServer
    job_ids: list[str] = field(default_factory=list)
    records: dict[str, JobRecord] = field(default_factory=dict)
    _store: JobStore | None = field(default=None, repr=False)

    def given(
        self,
        *,
        workers: int | Sequence[str] = 1,
        concurrency: int = 2,
        max_in_flight: int | None = None,
        env: Mapping[str, str] | None = None,
        **knobs: Any,
    ) -> FaultRun:
        """Set the deployment's variables and the emulator's `knobs`, then start workers.

        Args:
            workers: How many workers to start (named w1, w2...), or their names.
            concurrency: Pool processes per worker.
            max_in_flight: `TRYON_MAX_IN_FLIGHT`, our share of the account's slots.
            env: Further `TRYON_` variables of the deployment.
            **knobs: Emulator knobs (`EmulatorServer.configure`): faults and limits.
        """
        if max_in_flight is not None:
            self.deployment.env["TRYON_MAX_IN_FLIGHT"] = str(max_in_flight)
        self.deployment.env.update(env or {})
        if knobs:
            self.emulator.configure(**knobs)
        names: list[str | None] = [None] * workers if isinstance(workers, int) else [*workers]
        for name in names:
            self.deployment.start_worker(concurrency=concurrency, name=name)
        return self

    @property
    def store(self) -> JobStore:
        """The deployment's job store, opened once for the run."""
        if self._store is None:
            self._store = self.deployment.store()
        return self._store

    def publish(self, count: int, prefix: str) -> list[str]:
        """Publish `count` valid jobs (`<prefix>-0000`...); the run waits for them."""
        job_ids = publish_jobs(self.deployment.settings, count, prefix)
        self.track(*job_ids)
        return job_ids

    def track(self, *job_ids: str) -> None:
        """Wait for these jobs too (published by the test itself); each id counts once."""
        self.job_ids += [job_id for job_id in dict.fromkeys(job_ids) if job_id not in self.job_ids]

    def wait_terminal(
        self, timeout: float, *, during: Callable[[], None] | None = None
    ) -> dict[str, JobRecord]:
        """Wait until every job of the run is terminal; `during` runs between polls."""
        self.records = wait_all_terminal(self.store, self.job_ids, timeout, during)
        return self.records

    def terminal_count(self) -> int:
        """How many jobs of the run have ended so far."""
        return len(terminal_records(self.store, self.job_ids))

    def states(self) -> Counter[str]:
        """How many jobs ended in each state (after `wait_terminal`)."""
        return states(self.records)

    def assert_one_task_per_job(self) -> dict[str, Any]:
        """Exactly one task per job of the run at the API, no duplicate; the API's stats."""
        return assert_one_task_per_job(self.emulator, self.job_ids)

    def close(self) -> None:
        """Release the store's connections (the deployment tears down the rest)."""
        if self._store is not None:
            self._store.dispose()
