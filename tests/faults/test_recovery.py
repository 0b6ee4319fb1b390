"""Recovery: slots busy again within seconds after a broker blip, warm stops and kill -9.

The deployments here keep the production safety nets (a 180 s submit lease, a sweep
every 30 s) instead of the fast test values: what brings the slots back must be the
recovery itself (a worker's reconnection, its hand-back on SIGTERM, the claim heartbeat),
not a net that would also catch it minutes later. The emulator is sampled over the run
(`ApiSampler`) for the create times and the tasks in flight.
"""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

from harness import ApiSampler, FaultRun, TcpProxy, figures, rabbitmq_url, wait_until

# The production values of the nets that must not be what recovers (see the docstring).
SAFETY_NETS = {"TRYON_SUBMIT_LEASE_SECONDS": "180", "TRYON_SWEEP_INTERVAL": "30"}


def _through(proxy: TcpProxy) -> str:
    """The test broker's URL, with the proxy's port instead of RabbitMQ's."""
    parts = urlsplit(rabbitmq_url())
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{proxy.port}" if credentials else f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.mark.slow
def test_broker_blip_of_30_s_has_slots_busy_again_within_seconds(fault_run: FaultRun) -> None:
    """Every worker's broker connection cut for 30 s mid-run: creates resume within 10 s,
    slots stay full while work waits, every job succeeds with one create."""
    target = urlsplit(rabbitmq_url())
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    limit, jobs = 5, 40
    run = fault_run
    try:
        # Given: two workers reaching RabbitMQ through the proxy, limit 5, 6 s tasks, and
        # creates answered after 1 s at first, so that the cut lands mid-run.
        run.deployment.env["TRYON_BROKER_URL"] = _through(proxy)
        run.given(
            workers=("b0", "b1"),
            max_in_flight=limit,
            env=SAFETY_NETS,
            task_duration=6.0,
            slow_rate=1.0,
            slow_seconds=1.0,
        )
        with ApiSampler(run.emulator) as api:
            run.publish(jobs, "blip")
            # When: while the first creates are being sent (35 jobs queued), every
            # connection drops and the broker refuses for 30 s. Celery cancels the runs
            # in progress: their claims' messages and follow-ups are lost with them.
            wait_until(lambda: run.emulator.stats()["creates"] >= 2, 120, what="first creates")
            proxy.cut()
            created_at_cut = run.emulator.stats()["creates"]
            run.emulator.configure(slow_rate=0.0)
            time.sleep(30)
            proxy.restore()
            returned = time.monotonic()
            run.wait_terminal(timeout=240)

        # Then: every job succeeded once; the first create came soon after the return,
        # and while work waited the slots stayed full.
        assert run.states() == {"succeeded": jobs}
        stats = run.assert_one_task_per_job()
        first = api.first_create_after(returned)
        assert first is not None
        last_create = api.create_times()[jobs - 1]
        # While jobs waited to be created: from the first create after the return to the
        # last one (a slot frees only when its task is seen finished, at a poll).
        busy = api.in_flight_between(returned + first, last_create)
        occupancy = sum(busy) / (len(busy) * limit)
        figures(
            "broker-blip",
            jobs=jobs,
            limit=limit,
            created_before_cut=created_at_cut,
            first_create_after_return_s=round(first, 2),
            slot_occupancy_while_waiting=round(occupancy, 3),
            peak_in_flight=stats["peak_in_flight"],
            longest_create_gap_after_return_s=round(api.longest_gap(jobs, after=returned), 2),
        )
        assert created_at_cut < jobs - limit  # work was waiting when the broker went
        assert first <= 10.0
        assert stats["peak_in_flight"] <= limit
        assert occupancy >= 0.7
    finally:
        proxy.restore()
        run.deployment.stop_all()  # through the proxy, before it closes
        run.deployment.env["TRYON_BROKER_URL"] = rabbitmq_url()
        proxy.close()


@pytest.mark.slow
def test_warm_stops_and_kill_9_leave_no_slot_idle(fault_run: FaultRun) -> None:
    """Four SIGTERMs and two kill -9, 5 s apart, in a 40-job run: no create waits > 15 s."""
    limit, jobs = 6, 40
    # Given: three workers, an account of 6 slots and limit 6, 10 s tasks.
    run = fault_run.given(
        workers=("s0", "s1", "s2"),
        max_in_flight=limit,
        env=SAFETY_NETS,
        concurrency_limit=limit,
        task_duration=10.0,
    )
    deployment = run.deployment
    faults = ["stop", "stop", "kill", "stop", "kill", "stop"]  # as deploys and crashes come
    done: list[tuple[str, float]] = []  # each fault and when it came
    restarts: list[threading.Thread] = []
    next_fault = 0.0

    def injector() -> None:
        nonlocal next_fault
        if len(done) == len(faults) or time.monotonic() < next_fault:
            return
        # The oldest worker that is up: every worker takes its turn, as in a rolling
        # deploy; its replacement starts beside the run (a start takes seconds).
        victim = next((w for w in deployment.workers if w.alive()), None)
        if victim is None:
            return
        how = faults[len(done)]
        at = time.monotonic()
        done.append((how, at))
        if how == "stop":
            victim.stop()  # SIGTERM: warm shutdown, as every deploy does
        else:
            victim.kill()  # kill -9, pool and all
        name = f"s{len(faults) + len(done)}"
        restart = threading.Thread(target=deployment.start_worker, kwargs={"name": name})
        restart.start()
        restarts.append(restart)
        next_fault = at + 5

    try:
        with ApiSampler(run.emulator) as api:
            # When: 40 jobs, and once the slots are taken, a fault every 5 s.
            run.publish(jobs, "deploy")
            wait_until(lambda: run.emulator.stats()["creates"] >= limit, 120, what="first creates")
            started = time.monotonic()
            run.wait_terminal(timeout=240, during=injector)
    finally:
        for restart in restarts:  # a worker still starting would outlive the test
            restart.join(timeout=90)

    # Then: every job succeeded with one create, and while jobs waited to be created no
    # create waited longer than 15 s for the one before it.
    assert run.states() == {"succeeded": jobs}
    stats = run.assert_one_task_per_job()
    gap, gap_from = api.longest_gap_at(jobs)
    last_create = api.create_times()[jobs - 1]
    while_waiting = sum(1 for _, at in done if at < last_create)
    busy = api.in_flight_between(started, last_create)
    handed_back = sum(w.log_text().count("claims back") for w in deployment.workers)
    figures(
        "warm-stops-and-kill-9",
        jobs=jobs,
        limit=limit,
        faults=[how for how, _ in done],
        fault_at_s=[round(at - started, 1) for _, at in done],
        faults_while_work_waited=while_waiting,
        longest_create_gap_s=round(gap, 2),
        longest_gap_from_s=round(gap_from - started, 1),
        creates_span_s=round(last_create - started, 1),
        slot_occupancy_while_waiting=round(sum(busy) / (len(busy) * limit), 3),
        peak_in_flight=stats["peak_in_flight"],
        hand_backs=handed_back,
    )
    assert [how for how, _ in done] == faults
    assert while_waiting == len(faults)  # every fault came while jobs waited
    assert gap <= 15.0
    assert stats["peak_in_flight"] <= limit
