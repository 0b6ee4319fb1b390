"""Results per hour with a pool of 1, 2 and 4 Kling accounts of 5 slots each.

An account's concurrency is the ceiling on results per hour, and only another account
raises it (issue 20). Each account is its own emulator process (its own limit of 5);
the service runs with `TRYON_KLING_ACCOUNTS` naming them, Kling's callbacks reaching a
`tryon web` process, and the service's own polling defaults. A backlog of `rounds`
tasks per slot, of `duration` seconds each, is run for each pool size.

Figure: results per hour (jobs / makespan, from the first enqueue to the last terminal
record), against the ideal (slots x 3600 / duration), as a ratio; and the ratio of each
pool's rate to the one-account rate (ideal: 1, 2, 4).
"""

from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import deployment_on, emulator_process, write_result
from harness import TEST_API_KEY, publish_jobs, wait_all_terminal
from kolors_tryon.store.records import unix_seconds
from web_service import callback_receiver

NAME = "accounts"
SLOTS = 5
SECRET = "callback-secret-for-the-benchmarks-0123"


@dataclass(frozen=True)
class Sizes:
    """Tasks per slot, each task's duration, and the pool sizes measured."""

    rounds: int
    duration: float
    pools: tuple[int, ...] = (1, 2, 4)


FULL = Sizes(rounds=12, duration=5.0)
QUICK = Sizes(rounds=4, duration=2.0)


def one_pool(tmp: Path, accounts: int, sizes: Sizes) -> dict[str, Any]:
    """One run with `accounts` accounts; its figures."""
    with ExitStack() as stack:
        emulators = [
            stack.enter_context(
                emulator_process(tmp / "emulators", concurrency=SLOTS, duration=sizes.duration)
            )
            for _ in range(accounts)
        ]
        pool = [
            {"name": f"acct{i}", "base_url": e.base_url, "api_key": TEST_API_KEY,
             "max_in_flight": SLOTS}
            for i, e in enumerate(emulators)
        ]  # fmt: skip
        env = {"TRYON_KLING_ACCOUNTS": json.dumps(pool), "TRYON_RESULT_ALLOW_PRIVATE": "true"}
        deployment = stack.enter_context(deployment_on(tmp / f"pool{accounts}", emulators[0], env))
        stack.enter_context(callback_receiver(deployment, SECRET))
        for _ in range(2):
            deployment.start_worker(concurrency=2)
        store = deployment.store()
        jobs = accounts * SLOTS * sizes.rounds
        started = time.time()
        job_ids = publish_jobs(deployment.settings, jobs, f"p{accounts}")
        records = wait_all_terminal(store, job_ids, timeout=900)
        store.dispose()
        assert {str(r.state) for r in records.values()} == {"succeeded"}
        finished = max(unix_seconds(r.finished_at) or 0.0 for r in records.values())
        makespan = finished - started
        per_hour = jobs / makespan * 3600
        ideal = accounts * SLOTS * 3600 / sizes.duration
        stats = [e.stats() for e in emulators]
        return {
            "accounts": accounts,
            "jobs": jobs,
            "makespan_s": round(makespan, 1),
            "results_per_hour": round(per_hour),
            "ideal_per_hour": round(ideal),
            "ratio_to_ideal": round(per_hour / ideal, 3),
            "peak_in_flight": [s["peak_in_flight"] for s in stats],
            "tasks": [s["creates"] for s in stats],
            "answers_1303": sum(s["answers_by_code"].get("1303", 0) for s in stats),
        }


def run(sizes: Sizes, out_dir: Path, tmp: Path) -> dict[str, Any]:
    """Each pool size in turn; the figures and the scaling against one account."""
    runs = [one_pool(tmp, n, sizes) for n in sizes.pools]
    base = runs[0]["results_per_hour"]
    figures: dict[str, Any] = {
        "runs": runs,
        "scaling": {str(r["accounts"]): round(r["results_per_hour"] / base, 2) for r in runs},
    }
    write_result(out_dir, NAME, sizes, figures)
    return figures
