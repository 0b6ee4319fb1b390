"""Several Kling accounts as one pool (issue 20), counted at one emulator per account.

Real RabbitMQ, PostgreSQL and `tryon worker` processes; each account is its own emulator
server (its own port, limit and counters), so what each account received is counted
where the account is. Each test prints its `FIGURES` line.
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Iterator

import pytest
import requests

from harness import TEST_API_KEY, FaultRun, figures, running_emulator
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.ops.exposition import metrics_registry, render
from web_service import callback_receiver

POOL = "TRYON_KLING_ACCOUNTS"
KEY = "pool-test-key-0123456789abcdef"


@pytest.fixture
def second_emulator() -> Iterator[EmulatorServer]:
    """Account B's emulator (account A's is the run's own)."""
    with running_emulator(task_duration=1.0) as server:
        yield server


def pool_env(*accounts: tuple[str, EmulatorServer, int]) -> dict[str, str]:
    """`TRYON_KLING_ACCOUNTS` naming each (name, emulator, max_in_flight)."""
    entries = [
        {"name": name, "base_url": server.base_url, "api_key": TEST_API_KEY, "max_in_flight": n}
        for name, server, n in accounts
    ]
    return {POOL: json.dumps(entries)}


def tasks_across(job_ids: list[str], *emulators: EmulatorServer) -> dict[str, int]:
    """Tasks per job summed over every account's emulator."""
    counts = dict.fromkeys(job_ids, 0)
    for emulator in emulators:
        for job_id, n in emulator.stats()["tasks_by_external_id"].items():
            if job_id in counts:
                counts[job_id] += n
    return counts


@pytest.mark.slow
def test_two_accounts_fill_both_limits(
    fault_run: FaultRun, emulator: EmulatorServer, second_emulator: EmulatorServer
) -> None:
    """Limits 2 and 3: peaks 2 and 3, 5 in flight while work waits, one task per job."""
    # Given: account a (2 slots) and b (3 slots), each emulator enforcing its limit.
    emulator.configure(concurrency_limit=2, task_duration=1.0)
    second_emulator.configure(concurrency_limit=3, task_duration=1.0)
    run = fault_run.given(
        workers=2, concurrency=2, env=pool_env(("a", emulator, 2), ("b", second_emulator, 3))
    )
    peak_total = 0

    def sample() -> None:
        nonlocal peak_total
        both = emulator.stats()["in_flight"] + second_emulator.stats()["in_flight"]
        peak_total = max(peak_total, both)

    # When: 60 jobs.
    started = time.monotonic()
    run.publish(60, "pool")
    run.wait_terminal(timeout=240, during=sample)
    elapsed = time.monotonic() - started

    # Then: all succeeded, each account at its own peak, five at once, one task per job.
    a, b = emulator.stats(), second_emulator.stats()
    assert run.states() == {"succeeded": 60}
    assert (a["peak_in_flight"], b["peak_in_flight"]) == (2, 3)
    assert peak_total == 5
    assert tasks_across(run.job_ids, emulator, second_emulator) == dict.fromkeys(run.job_ids, 1)
    assert a["duplicates"] == b["duplicates"] == 0
    assert "1303" not in a["answers_by_code"] and "1303" not in b["answers_by_code"]
    # And `tryon accounts`, `tryon health` and the metrics say so per account.
    shown = run.deployment.tryon("accounts", "--json")
    assert shown.returncode == 0, shown.stderr
    assert TEST_API_KEY not in shown.stdout
    by_name = {row["name"]: row for row in json.loads(shown.stdout)}
    assert {n: (r["jobs_created"], r["in_flight"]) for n, r in by_name.items()} == {
        "a": (a["creates"], 0),
        "b": (b["creates"], 0),
    }
    assert by_name["a"]["units_spent"] == a["creates"]  # the emulator charges 1 a task
    assert by_name["a"]["units_remaining"] is not None  # GET /account/costs answers
    health = run.deployment.tryon("health", "--json")
    accounts_check = json.loads(health.stdout)["checks"]["accounts"]
    assert accounts_check["status"] == "ok", accounts_check
    text = render(metrics_registry(run.deployment.settings, run.store)).decode()
    assert f'tryon_pool_jobs_created{{account="b"}} {float(b["creates"])}' in text
    figures(
        "pool-2-3",
        jobs=60,
        seconds=round(elapsed, 1),
        peak_a=a["peak_in_flight"],
        peak_b=b["peak_in_flight"],
        peak_total=peak_total,
        tasks_a=a["creates"],
        tasks_b=b["creates"],
    )


@pytest.mark.slow
def test_account_out_of_units_leaves_the_work_to_the_other(
    fault_run: FaultRun, emulator: EmulatorServer, second_emulator: EmulatorServer
) -> None:
    """Account a answers 1102 all along: every job succeeds on b; a gets its probes only."""
    # Given: a (3 slots) out of units for the whole run, b (3 slots) healthy; probes
    # every 2 s (FAST_ENV).
    emulator.configure(concurrency_limit=3, create_error=1102)
    second_emulator.configure(concurrency_limit=3, task_duration=1.0)
    run = fault_run.given(
        workers=2, concurrency=2, env=pool_env(("a", emulator, 3), ("b", second_emulator, 3))
    )

    # When: 30 jobs.
    started = time.monotonic()
    run.publish(30, "paused")
    run.wait_terminal(timeout=240)
    elapsed = time.monotonic() - started

    # Then: none failed, all on b, and a saw its first refusals and then one probe per
    # interval (the jobs claimed on a before the pause was known are its first creates).
    a, b = emulator.stats(), second_emulator.stats()
    assert run.states() == {"succeeded": 30}
    assert tasks_across(run.job_ids, second_emulator) == dict.fromkeys(run.job_ids, 1)
    assert a["creates"] == 0
    probe_interval = 2.0
    assert a["create_requests"] <= 3 + elapsed / probe_interval + 1
    pause = run.store.pool.current_pause("a")
    assert pause is not None and pause.code == "kling_1102"
    assert run.store.pool.current_pause("b") is None
    figures(
        "pool-one-paused",
        jobs=30,
        seconds=round(elapsed, 1),
        creates_a=a["create_requests"],
        tasks_b=b["creates"],
    )


@pytest.mark.slow
def test_kill_9_with_dropped_creates_on_both_accounts(
    fault_run: FaultRun, emulator: EmulatorServer, second_emulator: EmulatorServer
) -> None:
    """kill -9 workers while both accounts drop create answers: one task per job across both."""
    # Given: two accounts of 3 slots (tasks of 2 s, so that kills land mid-run), each
    # dropping a fifth of its create answers after making the task (an ambiguous
    # create), and two workers.
    for server in (emulator, second_emulator):
        server.configure(concurrency_limit=3, task_duration=2.0, drop_rate=0.2, seed=11)
    run = fault_run.given(
        workers=("k0", "k1"),
        concurrency=2,
        env=pool_env(("a", emulator, 3), ("b", second_emulator, 3)),
    )
    deployment = run.deployment
    rng = random.Random(5)
    kills = 0
    next_kill = time.monotonic() + 2

    def killer() -> None:
        nonlocal kills, next_kill
        if kills >= 6 or time.monotonic() < next_kill:
            return
        victim = rng.choice([w for w in deployment.workers if w.alive()])
        victim.kill()
        kills += 1
        deployment.start_worker(concurrency=2, name=f"k{kills + 1}")
        next_kill = time.monotonic() + rng.uniform(1, 3)

    # When: 120 jobs, a kill -9 every 1 to 3 s, six in all.
    run.publish(120, "poolkill")
    run.wait_terminal(timeout=400, during=killer)

    # Then: every job succeeded with exactly one task across both accounts.
    assert run.states() == {"succeeded": 120}
    assert tasks_across(run.job_ids, emulator, second_emulator) == dict.fromkeys(run.job_ids, 1)
    a, b = emulator.stats(), second_emulator.stats()
    dropped = a["answers_by_code"].get("dropped", 0) + b["answers_by_code"].get("dropped", 0)
    assert dropped > 0 and kills >= 3
    figures(
        "pool-kill-9",
        jobs=120,
        kills=kills,
        dropped_creates=dropped,
        tasks_a=a["creates"],
        tasks_b=b["creates"],
    )


def whsec(seed: bytes) -> str:
    return "whsec_" + base64.b64encode(seed * 32).decode()


@pytest.mark.slow
def test_signed_callbacks_are_verified_per_account(
    fault_run: FaultRun, emulator: EmulatorServer, second_emulator: EmulatorServer
) -> None:
    """a signs with its configured secret (callbacks accepted); b signs with another one
    (callbacks refused): every job still succeeds, b's by polling."""
    # Given: callbacks on through `tryon web`; a's secret rotated (old and new configured,
    # the emulator signs with the new one); b's emulator signs with a secret we lack.
    emulator.configure(concurrency_limit=3, task_duration=1.0,
                       callback_signing_secrets=[whsec(b"n")])  # fmt: skip
    second_emulator.configure(concurrency_limit=3, task_duration=1.0,
                              callback_signing_secrets=[whsec(b"x")])  # fmt: skip
    entries = json.loads(pool_env(("a", emulator, 3), ("b", second_emulator, 3))[POOL])
    entries[0]["callback_secrets"] = [whsec(b"o"), whsec(b"n")]
    entries[1]["callback_secrets"] = [whsec(b"b")]
    deployment = fault_run.deployment
    deployment.env[POOL] = json.dumps(entries)
    deployment.env["TRYON_API_KEYS"] = KEY
    with callback_receiver(deployment, "callback-secret-for-pool-tests-0123") as web_url:
        run = fault_run.given(workers=1, concurrency=2)
        # When: 20 jobs.
        run.publish(20, "signed")
        run.wait_terminal(timeout=240)
        answer = requests.get(
            f"{web_url}/v1/counters", headers={"Authorization": f"Bearer {KEY}"}, timeout=10
        )
        counters = answer.json()["counters"]

    # Then: all succeeded; a's callbacks forwarded, b's refused for their signature.
    assert run.states() == {"succeeded": 20}
    assert counters.get("callbacks_forwarded", 0) > 0
    assert counters.get("callbacks_bad_signature", 0) > 0
    figures("pool-signed-callbacks", jobs=20, **counters)
