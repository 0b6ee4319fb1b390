"""Operations: `tryon health`, the account's units, /metrics, logs and Sentry, on real
worker and web processes, RabbitMQ, PostgreSQL, the Kling emulator over HTTP, and local
HTTP servers standing in for Sentry and for signed result URLs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from harness import (
    SIGNATURE,
    TEST_ACCESS_KEY,
    TEST_API_KEY,
    TEST_SECRET_KEY,
    Deployment,
    RecordingSentry,
    SignedResults,
    free_port,
    sample_b64,
    scrape,
    total,
    value,
    wait_all_terminal,
    wait_until,
)
from kolors_tryon import JobPublisher
from kolors_tryon.config.task_names import TaskName
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.kling import KlingClient, StaticKeyAuth
from web_service import web_process

HUMAN, CLOTH = sample_b64("human.jpg"), sample_b64("cloth-red.png")
NOBODY, TOO_SMALL = sample_b64("empty-backdrop.jpg"), sample_b64("too-small.png")
# The header of every HS256 JWT PyJWT mints, Base64url: no token may show it.
JWT_HEAD = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
WEB_KEY = "metrics-key-0123456789"


def unique(name: str) -> str:
    """A worker name no other test run on this machine uses: Celery's remote-control
    queue (`<name>@<host>.celery.pidbox`) is exclusive and shared by every namespace."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def publish(deployment: Deployment, kinds: dict[str, int]) -> dict[str, list[str]]:
    """Publish jobs that succeed (`ok`), fail at Kling (`nobody`), are rejected (`small`)."""
    images = {"ok": (HUMAN, CLOTH), "nobody": (NOBODY, CLOTH), "small": (HUMAN, TOO_SMALL)}
    ids: dict[str, list[str]] = {}
    with JobPublisher(deployment.settings) as publisher:
        for kind, count in kinds.items():
            human, cloth = images[kind]
            ids[kind] = [
                publisher.publish(
                    {"job_id": f"{kind}-{i}", "human_image": human, "cloth_image": cloth}
                )
                for i in range(count)
            ]
    return ids


def health(deployment: Deployment) -> tuple[int, dict[str, Any], str]:
    """`tryon health --json` and `tryon health`: exit code, JSON report, text output."""
    deployment.store().dispose()  # the schema, as a worker would have made it
    as_json = deployment.tryon("health", "--json")
    as_text = deployment.tryon("health")
    assert as_json.returncode == as_text.returncode, as_text.stdout + as_text.stderr
    return as_json.returncode, json.loads(as_json.stdout), as_text.stdout


# ----------------------------------------------------------------------- health --------
@pytest.mark.parametrize(
    ("case", "env", "knobs", "code", "statuses", "phrase"),
    [
        ("right key", {}, {}, 0, {"kling": "ok", "account": "ok"}, "1000 units left"),
        (
            "wrong key",
            {"TRYON_KLING_API_KEY": "sk-wrong-key-0123456789"},
            {},
            1,
            {"kling": "fail"},
            "Kling 1000 (HTTP 401)",
        ),
        (
            "JWT credentials",
            {
                "TRYON_KLING_API_KEY": "",
                "TRYON_KLING_ACCESS_KEY": TEST_ACCESS_KEY,
                "TRYON_KLING_SECRET_KEY": TEST_SECRET_KEY,
            },
            {},
            0,
            {"kling": "ok"},
            "JWT (AK/SK)",
        ),
        (
            "reseller without /account/costs",
            {},
            {"account_costs_enabled": False},
            0,
            {"account": "ok"},
            "remaining units unknown",
        ),
        (
            "pack running out",
            {"TRYON_UNITS_WARN_BELOW": "100"},
            {"units_total": 40},
            0,
            {"account": "warn"},
            "below TRYON_UNITS_WARN_BELOW=100",
        ),
        (
            "broker down",
            {"TRYON_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"},
            {},
            1,
            {"broker": "fail", "store": "ok", "kling": "ok"},
            "fail broker",
        ),
    ],
)
def test_health_checks_broker_store_and_credentials(
    rabbit_deployment: Deployment,
    emulator: EmulatorServer,
    case: str,
    env: dict[str, str],
    knobs: dict[str, Any],
    code: int,
    statuses: dict[str, str],
    phrase: str,
) -> None:
    """`tryon health` says per check what it checked; a wrong key or broker is exit 1."""
    # A worker consumes the jobs queue, as in the worker's container (its health check).
    rabbit_deployment.start_worker(concurrency=1, name=unique("health"))
    rabbit_deployment.env.update(env)
    rabbit_deployment.env = {k: v for k, v in rabbit_deployment.env.items() if v != ""}
    if knobs:
        emulator.configure(**knobs)
    exit_code, report, text = health(rabbit_deployment)
    assert exit_code == code, text
    assert report["healthy"] is (code == 0)
    assert {name: report["checks"][name]["status"] for name in statuses} == statuses, text
    assert phrase in text
    assert set(report["checks"]) == {"broker", "workers", "store", "kling", "account"}
    for line in text.splitlines()[:-1]:
        assert line.split()[0] in ("ok", "warn", "fail"), line
    assert "sk-wrong-key-0123456789" not in text + json.dumps(report)
    assert TEST_SECRET_KEY not in text + json.dumps(report)


def test_health_says_sandbox_mode(rabbit_deployment: Deployment, emulator: EmulatorServer) -> None:
    """Without credentials, health checks the bundled emulator and says it is the sandbox."""
    rabbit_deployment.start_worker(concurrency=1, name=unique("sandbox"))
    emulator.configure(api_keys=["sk-sandbox"])
    del rabbit_deployment.env["TRYON_KLING_API_KEY"]
    rabbit_deployment.env["TRYON_SANDBOX_EMULATOR_URL"] = emulator.base_url
    exit_code, report, text = health(rabbit_deployment)
    assert exit_code == 0, text
    assert report["sandbox"] is True
    assert "SANDBOX MODE" in report["checks"]["kling"]["detail"]


# ----------------------------------------------------------------------- account -------
@pytest.mark.parametrize(
    ("knobs", "remaining"),
    [
        ({}, 1000.0),
        ({"units_total": 7.5}, 7.5),
        ({"account_costs_enabled": False}, None),
    ],
)
def test_account_costs_reads_the_packs_or_unknown(
    emulator: EmulatorServer, knobs: dict[str, Any], remaining: float | None
) -> None:
    """account_costs() returns the packs' remaining units; a missing endpoint is None."""
    emulator.configure(**knobs)
    with KlingClient(emulator.base_url, StaticKeyAuth(TEST_API_KEY)) as client:
        costs = client.account_costs()
    if remaining is None:
        assert costs is None
    else:
        assert costs is not None
        assert costs.remaining == remaining
        assert [pack.status for pack in costs.packs] == ["online"]


def test_account_costs_waits_out_the_one_per_second_limit(emulator: EmulatorServer) -> None:
    """Two reads in a row: the second is refused 1302 once and retried after Retry-After."""
    emulator.configure(account_costs_min_interval=1.0)
    with KlingClient(emulator.base_url, StaticKeyAuth(TEST_API_KEY)) as client:
        first, second = client.account_costs(), client.account_costs()
    assert first is not None and second is not None
    answers = emulator.stats()["answers_by_code"]
    assert answers.get("1302", 0) >= 1, answers


# ----------------------------------------------------------------------- metrics -------
@pytest.fixture
def web_metrics(rabbit_deployment: Deployment, tmp_path: Path) -> Iterator[str]:
    """`tryon web` of the deployment, with a key for /metrics."""
    env = {**rabbit_deployment.env, "TRYON_API_KEYS": WEB_KEY}
    with web_process(env, tmp_path / "web.log") as url:
        yield url


def test_metrics_count_a_run_of_known_jobs(
    rabbit_deployment: Deployment, emulator: EmulatorServer, web_metrics: str
) -> None:
    """6 succeed, 2 fail at Kling, 1 rejected: two workers' scrapes add up to exactly that."""
    ports = [free_port(), free_port()]
    rabbit_deployment.env["TRYON_ACCOUNT_CHECK_INTERVAL"] = "1"
    for port in ports:
        rabbit_deployment.start_worker(
            concurrency=2, name=unique("metrics"), extra_env={"TRYON_METRICS_PORT": str(port)}
        )
    ids = publish(rabbit_deployment, {"ok": 6, "nobody": 2, "small": 1})
    store = rabbit_deployment.store()
    records = wait_all_terminal(store, [j for group in ids.values() for j in group], 120)
    store.dispose()
    assert (
        sorted(str(r.state) for r in records.values())
        == ["failed"] * 2 + ["rejected"] + ["succeeded"] * 6
    )
    urls = [f"http://127.0.0.1:{port}/metrics" for port in ports]

    def scrapes() -> list[Any]:
        return [scrape(url) for url in urls]

    def transitions_counted() -> bool:
        got = scrapes()
        return total(got, "tryon_job_transitions_total", state="succeeded") == 6 and (
            total(got, "tryon_job_transitions_total", state="failed") == 2
        )

    wait_until(transitions_counted, 20, 0.5, "every transition to be counted")
    wait_until(
        lambda: value(scrape(urls[0]), "tryon_account_units_remaining") == 994,
        20,
        0.5,
        "the account watcher to read 994 units",
    )
    got = scrapes()
    expected = {"queued": 8, "submitting": 8, "submitted": 8, "rejected": 1}
    for state, count in expected.items():
        assert total(got, "tryon_job_transitions_total", state=state) == count, state
    assert total(got, "tryon_kling_requests_total", endpoint="create", code="0") == 8
    assert total(got, "tryon_kling_request_duration_seconds_count", endpoint="create") == 8
    assert total(got, "tryon_kling_requests_total", endpoint="query") >= 8
    assert total(got, "tryon_units_spent_total") == 6
    assert total(got, "tryon_job_queue_wait_seconds_count") == 8
    assert total(got, "tryon_job_result_latency_seconds_count", state="succeeded") == 6
    assert total(got, "tryon_job_result_latency_seconds_count", state="failed") == 2
    for samples in got:  # the store's gauges: the same deployment-wide view in each
        assert value(samples, "tryon_jobs", state="succeeded") == 6
        assert value(samples, "tryon_jobs", state="failed") == 2
        assert value(samples, "tryon_jobs", state="rejected") == 1
        assert value(samples, "tryon_account_slots_in_use") == 0
        assert value(samples, "tryon_account_slots_limit") == 5
        assert value(samples, "tryon_account_paused") == 0

    assert requests.get(f"{web_metrics}/metrics", timeout=10).status_code == 401
    web = scrape(f"{web_metrics}/metrics", {"Authorization": f"Bearer {WEB_KEY}"})
    assert value(web, "tryon_jobs", state="succeeded") == 6
    assert value(web, "tryon_store_up") == 1


# ----------------------------------------------------------------------- logs ----------
@pytest.mark.parametrize("log_format", ["json", "text"])
def test_logs_name_jobs_and_hold_no_secret(
    rabbit_deployment: Deployment, emulator: EmulatorServer, log_format: str
) -> None:
    """A whole run's log (DEBUG) has a line per state change and API call, and no secret."""
    signed = SignedResults()
    emulator.configure(public_base_url=signed.signed_base)
    env = rabbit_deployment.env
    del env["TRYON_KLING_API_KEY"]
    env.update(
        {
            "TRYON_KLING_ACCESS_KEY": TEST_ACCESS_KEY,
            "TRYON_KLING_SECRET_KEY": TEST_SECRET_KEY,
            "TRYON_LOG_FORMAT": log_format,
            "TRYON_LOG_LEVEL": "DEBUG",
            "TRYON_METRICS_PORT": "0",
        }
    )
    worker = rabbit_deployment.start_worker(concurrency=1, name=unique("logs"))
    ids = publish(rabbit_deployment, {"ok": 2, "nobody": 1, "small": 1})
    store = rabbit_deployment.store()
    wait_all_terminal(store, [j for group in ids.values() for j in group], 120)
    # The copy is the succeeded job's follow-up: it may land after the state does.
    wait_until(
        lambda: (r := store.get("ok-0")) is not None and r.images[0].stored is not None,
        60,
        what="the copy fetched through a signed URL",
    )
    store.dispose()
    assert signed.requests, "the result server was never asked"
    worker.stop()
    signed.stop()
    text = worker.log_text()

    for secret in (
        TEST_SECRET_KEY,
        JWT_HEAD,
        SIGNATURE,
        HUMAN[3000:3060],
        CLOTH[3000:3060],
        NOBODY[3000:3060],
        TOO_SMALL[200:260],
    ):
        assert secret not in text
    if log_format == "json":
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        states = [(x["job_id"], x["state"]) for x in lines if x.get("event") == "job_state"]
        calls = [x for x in lines if x.get("event") == "kling_request"]
        for call in calls:
            assert {"endpoint", "code", "duration_s", "attempt"} <= set(call), call
        creates = [c for c in calls if c["endpoint"] == "create"]
        assert sorted(c["job_id"] for c in creates) == ["nobody-0", "ok-0", "ok-1"]
        assert all(c["kling_task_id"] for c in creates)
    else:
        states = [
            (line.split("job ", 1)[1].split()[0], line.split(" -> ", 1)[1].split()[0])
            for line in text.splitlines()
            if "ops.journal: job " in line
        ]
        assert "Kling POST /v1/images/kolors-virtual-try-on -> HTTP 200 code 0" in text
    # `processing` is seen only when a poll lands in it: the other changes are certain.
    assert sorted(x for x in states if x[1] != "processing") == sorted(
        [(j, s) for j in ("ok-0", "ok-1") for s in ("queued", "submitting", "submitted")]
        + [("ok-0", "succeeded"), ("ok-1", "succeeded")]
        + [("nobody-0", s) for s in ("queued", "submitting", "submitted", "failed")]
        + [("small-0", "rejected")]
    )


# ----------------------------------------------------------------------- Sentry --------
def test_sentry_gets_one_event_per_job_worth_a_look(
    rabbit_deployment: Deployment, emulator: EmulatorServer
) -> None:
    """Retries exhausted and a parked message reach Sentry, tagged; a rejection does not."""
    sentry = RecordingSentry()
    try:
        rabbit_deployment.env.update(
            {
                "TRYON_SENTRY_DSN": sentry.dsn,
                "TRYON_SUBMIT_MAX_RETRIES": "1",
                "TRYON_TASK_FAILURE_RETRIES": "0",
                "TRYON_METRICS_PORT": "0",
            }
        )
        emulator.configure(create_error=1302)
        rabbit_deployment.start_worker(concurrency=1, name=unique("sentry"))
        ids = publish(rabbit_deployment, {"ok": 1, "small": 1})
        store = rabbit_deployment.store()
        records = wait_all_terminal(store, [j for group in ids.values() for j in group], 90)
        assert records["ok-0"].error is not None
        assert records["ok-0"].error.code == "retries_exhausted"
        # A task message that crashes its task (an int where a JSON text belongs).
        from celery import Celery

        from kolors_tryon.config.celery import celery_config

        app = Celery("test", set_as_current=False)
        app.conf.update(celery_config(rabbit_deployment.settings))
        app.send_task(TaskName.INTAKE, args=[12345])
        app.close()
        store.dispose()

        def arrived() -> bool:
            messages = [e.get("message") or "" for e in sentry.events()]
            logged = [
                (e.get("logentry") or {}).get("formatted")
                or (e.get("logentry") or {}).get("message", "")
                for e in sentry.events()
            ]
            return any("retries_exhausted" in m for m in messages) and any(
                "parking the message" in m for m in logged
            )

        wait_until(arrived, 30, 0.5, "the retries-exhausted and parked-message events")
        time.sleep(1.0)  # anything else the worker would send
    finally:
        sentry.stop()
    events = sentry.events()
    exhausted = [e for e in events if "retries_exhausted" in (e.get("message") or "")]
    assert len(exhausted) == 1
    assert exhausted[0]["tags"]["job_id"] == "ok-0"
    assert exhausted[0]["tags"]["error_code"] == "retries_exhausted"
    assert exhausted[0]["level"] == "error"
    assert all((e.get("tags") or {}).get("job_id") != "small-0" for e in events)
    received = sentry.text()
    for secret in (TEST_API_KEY, HUMAN[3000:3060], TOO_SMALL[200:260], JWT_HEAD):
        assert secret not in received


# The Sentry set-up of every worker process, then an HTTP request to a signed URL (the
# SDK records it as a breadcrumb) and an error logged: what the SDK sends is what a
# worker's event would carry. A separate interpreter, so that this one keeps no Sentry.
BREADCRUMB_SCRIPT = """
import logging, sys, requests, sentry_sdk
from kolors_tryon.config import Settings
from kolors_tryon.worker.reporting import init_reporting
from kolors_tryon.observe.context import job_context
init_reporting(Settings.model_validate({"sentry_dsn": sys.argv[1]}))
with job_context("job-7", kling_task_id="task-7"):
    requests.get(sys.argv[2] + "/_emulator/results/t/0.png", timeout=5,
                 headers={"Authorization": "Bearer " + sys.argv[3]})
    logging.getLogger("kolors_tryon.test").info("fetched %s", sys.argv[2])
    logging.getLogger("kolors_tryon.test").error("with photo %s", sys.argv[4])
sentry_sdk.flush(5)
"""


def test_sentry_breadcrumbs_hold_no_signed_url_key_or_photo() -> None:
    """The HTTP and log breadcrumbs of an event lose the signature, the key, the photo."""
    sentry, signed = RecordingSentry(), SignedResults()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                BREADCRUMB_SCRIPT,
                sentry.dsn,
                signed.signed_base,
                TEST_API_KEY,
                HUMAN[:4000],
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        wait_until(lambda: bool(sentry.events()), 10, 0.2, "the event")
    finally:
        sentry.stop()
        signed.stop()
    assert signed.requests, "the signed URL was never fetched"
    (event,) = sentry.events()
    assert event["tags"]["job_id"] == "job-7"
    assert event["tags"]["kling_task_id"] == "task-7"
    crumbs = event["breadcrumbs"]["values"]
    http = [c for c in crumbs if c.get("category") == "httplib"]
    assert http and all(c["data"]["url"].startswith("http://127.0.0.1:") for c in http)
    assert any(c.get("category") == "kolors_tryon.test" for c in crumbs)
    received = sentry.text()
    for secret in (SIGNATURE, TEST_API_KEY, HUMAN[1000:1060]):
        assert secret not in received
