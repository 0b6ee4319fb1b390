"""An operator's first day through the installed `tryon` command (issue 17, points 6-10).

Each case runs the real console script against real RabbitMQ and PostgreSQL: input that
is certain to be rejected is refused before anything is published (the jobs queue is
read to prove it), wrong settings get one line and a non-zero exit instead of a
traceback, silent fallbacks and typos are said, `tryon health` counts the workers that
consume the jobs queue, and `tryon validate|jobs` read batch files and pages of jobs.
"""

from __future__ import annotations

import io
import json
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from PIL import Image

from harness import (
    SAMPLES,
    Deployment,
    RecordingSentry,
    base_env,
    free_port,
    fresh_database,
    jobs_waiting,
    rabbit_deployment_on,
    rabbitmq_url,
    sample_b64,
    scrape,
    tryon_executable,
    value,
    wait_until,
)
from kolors_tryon import InvalidJob, JobPublisher, JobRejected, enqueue
from kolors_tryon.emulator import EmulatorServer
from kolors_tryon.store import JobStore, NewJob, make_engine
from kolors_tryon.store.migrate import upgrade_schema

HUMAN, CLOTH = str(SAMPLES / "human.jpg"), str(SAMPLES / "cloth-red.png")


def tryon(
    env: Mapping[str, str], *args: str, cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The installed `tryon` command with exactly `env`, in `cwd`."""
    return subprocess.run(
        [tryon_executable(), *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def gif_file(folder: Path) -> Path:
    """A 600x600 GIF: big enough, but a format Kling refuses."""
    buffer = io.BytesIO()
    Image.new("RGB", (600, 600), "white").save(buffer, format="GIF")
    path = folder / "cloth.gif"
    path.write_bytes(buffer.getvalue())
    return path


def tiny_png(folder: Path) -> Path:
    """A 100x100 PNG: under the 300 px the API asks for."""
    buffer = io.BytesIO()
    Image.new("RGB", (100, 100), "white").save(buffer, format="PNG")
    path = folder / "tiny.png"
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture
def deployment(tmp_path: Path, emulator: EmulatorServer) -> Iterator[Deployment]:
    """RabbitMQ (a namespace of its own), a fresh PostgreSQL database, no worker."""
    with rabbit_deployment_on(tmp_path, emulator) as deployment:
        yield deployment


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]


# ------------------------------------------------------------------ 6: fail fast -------
def test_submit_refuses_what_the_worker_would_reject_and_publishes_nothing(
    deployment: Deployment, tmp_path: Path
) -> None:
    """A 100 px image, a GIF, a missing file, --priority 12: exit 2 naming the field."""
    cases = {
        "tiny": (["--human", HUMAN, "--cloth", str(tiny_png(tmp_path))], "cloth_image", "300"),
        "gif": (["--human", HUMAN, "--cloth", str(gif_file(tmp_path))], "cloth_image", "GIF"),
        "missing": (
            ["--human", str(tmp_path / "nobody.jpg"), "--cloth", CLOTH],
            "human_image",
            f"file not found: {tmp_path / 'nobody.jpg'}",
        ),
        "priority": (
            ["--human", HUMAN, "--cloth", CLOTH, "--priority", "12"],
            "priority",
            "0 to 9",
        ),
    }
    for name, (args, field, says) in cases.items():
        result = tryon(deployment.env, "submit", *args, cwd=tmp_path)
        no_traceback(result)
        assert result.returncode == 2, (name, result.stderr)
        assert field in result.stderr and says in result.stderr, (name, result.stderr)
        assert "relative URL" not in result.stderr
    assert jobs_waiting(deployment.settings) == 0
    # The same command with valid input publishes (the queue is read the same way).
    valid = tryon(deployment.env, "submit", "--human", HUMAN, "--cloth", CLOTH, cwd=tmp_path)
    assert valid.returncode == 0, valid.stderr
    assert jobs_waiting(deployment.settings) == 1


def write_batches(folder: Path) -> dict[str, tuple[Path, str, str]]:
    """Batch files with one invalid line each: (file, line:field expected, words)."""
    for sample in ("human.jpg", "cloth-red.png"):
        (folder / sample).write_bytes((SAMPLES / sample).read_bytes())
    tiny_png(folder)
    gif_file(folder)
    files = {
        "no-cloth.csv": ("human_image,job_id\nhuman.jpg,b1\n", ":1: cloth_image:", "missing"),
        "semicolons.csv": (
            "human_image;cloth_image\nhuman.jpg;cloth-red.png\n",
            ":1: message:",
            "separated by ';'",
        ),
        "mixed.csv": (
            "human_image,cloth_image,job_id\nhuman.jpg,cloth-red.png,m1\n"
            "human.jpg,tiny.png,m2\nhuman.jpg,cloth-red.png,m3\n",
            ":3: cloth_image:",
            "300 px",
        ),
        "mixed.jsonl": (
            "".join(
                json.dumps({"job_id": job_id, "human_image": human, "cloth_image": cloth}) + "\n"
                for job_id, human, cloth in (
                    ("j1", "human.jpg", "cloth.gif"),
                    ("j2", "gone.jpg", "tiny.png"),
                    ("j3", "human.jpg", "cloth-red.png"),
                )
            ),
            ":2: human_image:",
            "file not found",
        ),
    }
    written = {}
    for name, (text, where, says) in files.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written[name] = (path, where, says)
    return written


def test_batch_with_an_invalid_line_publishes_nothing(
    deployment: Deployment, tmp_path: Path
) -> None:
    """No cloth_image column, semicolons, a tiny image, a GIF, a missing file: exit 2, 0 sent."""
    for name, (path, where, says) in write_batches(tmp_path).items():
        result = tryon(deployment.env, "batch", str(path), cwd=tmp_path)
        no_traceback(result)
        assert result.returncode == 2, (name, result.stderr)
        assert f"{name}{where}" in result.stderr and says in result.stderr, (name, result.stderr)
        assert "nothing published" in result.stderr and "--skip-invalid" in result.stderr
    jsonl = tmp_path / "mixed.jsonl"
    gif_line = tryon(deployment.env, "batch", str(jsonl), cwd=tmp_path)
    assert "mixed.jsonl:1: cloth_image:" in gif_line.stderr and "GIF" in gif_line.stderr
    assert jobs_waiting(deployment.settings) == 0


def test_batch_skip_invalid_publishes_the_valid_lines_and_lists_the_rest(
    deployment: Deployment, tmp_path: Path
) -> None:
    """--skip-invalid: the valid lines are published, each skipped one listed with its line."""
    path = write_batches(tmp_path)["mixed.csv"][0]
    result = tryon(deployment.env, "batch", str(path), "--skip-invalid", "--json", cwd=tmp_path)
    no_traceback(result)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["job_ids"] == ["m1", "m3"]
    assert len(out["skipped"]) == 1 and out["skipped"][0].startswith("mixed.csv:3: cloth_image:")
    assert "skipped mixed.csv:3: cloth_image:" in result.stderr
    assert jobs_waiting(deployment.settings) == 2


def test_enqueue_raises_invalid_job_before_publishing(deployment: Deployment) -> None:
    """enqueue() of a tiny image or a bad priority raises InvalidJob (a JobRejected); 0 sent."""
    tiny = sample_b64("too-small.png")
    for job, field in (
        ({"human_image": sample_b64("human.jpg"), "cloth_image": tiny}, "cloth_image"),
        ({"human_image": "https://a.example/p.jpg", "cloth_image": "x.png"}, "cloth_image"),
        (
            {"human_image": "https://a.example/p.jpg", "cloth_image": "https://a.example/c.png"}
            | {"priority": 12},
            "priority",
        ),
    ):
        with pytest.raises(InvalidJob) as caught:
            enqueue(job, deployment.settings)
        assert isinstance(caught.value, JobRejected)
        assert field in {problem.field for problem in caught.value.problems}, caught.value
    assert jobs_waiting(deployment.settings) == 0
    good = {"human_image": "https://a.example/p.jpg", "cloth_image": "https://a.example/c.png"}
    assert enqueue(good, deployment.settings)
    assert jobs_waiting(deployment.settings) == 1


# ------------------------------------------------------------ 7: one line, not a trace --
def test_a_postgres_url_is_accepted(tmp_path: Path) -> None:
    """TRYON_DATABASE_URL=postgres://... (hosting platforms' spelling) works: upgrade, jobs."""
    with fresh_database() as url:
        env = base_env(tmp_path)
        env["TRYON_DATABASE_URL"] = "postgres://" + url.removeprefix("postgresql://")
        upgraded = tryon(env, "db", "upgrade", cwd=tmp_path)
        assert upgraded.returncode == 0, upgraded.stderr
        listed = tryon(env, "jobs", cwd=tmp_path)
        no_traceback(listed)
        assert listed.returncode == 0 and "no jobs" in listed.stdout, listed.stderr


def wrong_password_url() -> str:
    return rabbitmq_url().replace("guest:guest@", "guest:not-the-password@", 1)


def test_a_wrong_rabbitmq_password_is_one_line_for_submit(
    deployment: Deployment, tmp_path: Path
) -> None:
    """`tryon submit` with a wrong broker password: one error line naming it, exit 1."""
    env = {**deployment.env, "TRYON_BROKER_URL": wrong_password_url()}
    result = tryon(env, "submit", "--human", HUMAN, "--cloth", CLOTH, cwd=tmp_path)
    no_traceback(result)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "refused the login" in errors[0], result.stderr
    assert "TRYON_BROKER_URL" in errors[0] and "not-the-password" not in result.stderr


def test_a_wrong_rabbitmq_password_stops_a_worker_with_one_line(
    deployment: Deployment, tmp_path: Path
) -> None:
    """`tryon worker` with a wrong broker password exits 1 at once with one clear line."""
    env = {**deployment.env, "TRYON_BROKER_URL": wrong_password_url()}
    started = time.monotonic()
    result = tryon(env, "worker", "--concurrency=1", cwd=tmp_path, timeout=90)
    took = time.monotonic() - started
    no_traceback(result)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "refused the login of TRYON_BROKER_URL" in result.stderr
    assert "not-the-password" not in result.stderr
    # One connection attempt, not Celery's retry loop (23 tracebacks in 25 s before).
    assert took < 60, took


def test_an_unknown_broker_scheme_names_the_variable(tmp_path: Path) -> None:
    """TRYON_BROKER_URL=rabbitmq://...: a settings error naming the variable and amqp://."""
    env = {**base_env(tmp_path), "TRYON_BROKER_URL": "rabbitmq://guest:secret@127.0.0.1//"}
    result = tryon(env, "submit", "--human", HUMAN, "--cloth", CLOTH, cwd=tmp_path)
    no_traceback(result)
    assert result.returncode == 2
    assert "TRYON_BROKER_URL: unknown scheme rabbitmq://" in result.stderr
    assert "amqp://" in result.stderr and "secret" not in result.stderr


def test_demo_on_a_taken_port_says_how_to_move_it(tmp_path: Path) -> None:
    """`tryon demo` when its emulator port is taken: one line naming the option and variable."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = tryon(
            base_env(tmp_path), "demo", "--emulator-port", str(port), cwd=tmp_path, timeout=60
        )
    no_traceback(result)
    assert result.returncode == 1, result.stderr
    assert f"port {port}" in result.stderr
    assert "--emulator-port" in result.stderr and "TRYON_SANDBOX_EMULATOR_URL" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("purge", "--older-than", "30"),
        ("forget", "some-job"),
        ("webhooks", "some-job"),
        ("webhooks", "secret"),
        ("webhooks", "replay", "--job", "some-job"),
    ],
)
def test_store_commands_on_an_old_schema_say_run_db_upgrade(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    """purge, forget, webhooks on a store at revision 0001: exit 1, "run tryon db upgrade"."""
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = make_engine(url)
    try:
        upgrade_schema(engine, "0001")
    finally:
        engine.dispose()
    env = {**base_env(tmp_path), "TRYON_DATABASE_URL": url}
    result = tryon(env, *args, cwd=tmp_path)
    no_traceback(result)
    assert result.returncode == 1, result.stderr
    assert "tryon db upgrade" in result.stderr


# ---------------------------------------------------------- 8: no silent surprises -----
def test_a_misspelled_variable_is_warned_with_the_nearest_name(tmp_path: Path) -> None:
    """TRYON_MAX_INFLIGHT (environment) and TRYON_NAMSPACE (.env): each warned, with a guess."""
    (tmp_path / ".env").write_text("TRYON_NAMSPACE=shop\n", encoding="utf-8")
    env = {**base_env(tmp_path), "TRYON_MAX_INFLIGHT": "3"}
    result = tryon(env, "jobs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (
        "unknown variable TRYON_MAX_INFLIGHT (environment) is ignored; "
        "did you mean TRYON_MAX_IN_FLIGHT?"
    ) in result.stderr
    assert "TRYON_NAMSPACE (.env) is ignored; did you mean TRYON_NAMESPACE?" in result.stderr
    clean = tryon(base_env(tmp_path), "schema", cwd=tmp_path / "..")
    assert "unknown variable" not in clean.stderr


def test_submit_says_it_falls_back_to_the_embedded_broker_and_store(tmp_path: Path) -> None:
    """No TRYON_BROKER_URL/DATABASE_URL: one line on stderr naming the embedded files."""
    env = base_env(tmp_path)
    result = tryon(env, "submit", "--human", HUMAN, "--cloth", CLOTH, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1, result.stderr
    assert str((tmp_path / "broker.sqlite").resolve()) in notes[0]
    assert str((tmp_path / "jobs.sqlite").resolve()) in notes[0]
    assert "TRYON_BROKER_URL" in notes[0]
    configured = {**env, "TRYON_BROKER_URL": rabbitmq_url(), "TRYON_NAMESPACE": "tnote"}
    configured["TRYON_DATABASE_URL"] = f"sqlite:///{tmp_path / 'jobs.sqlite'}"
    listed = tryon(configured, "jobs", cwd=tmp_path)
    assert "note:" not in listed.stderr, listed.stderr


# ------------------------------------------------------------ 9: health sees workers ---
def test_health_is_unhealthy_while_no_worker_consumes_the_jobs_queue(
    deployment: Deployment, tmp_path: Path
) -> None:
    """No consumer on <ns>.jobs: exit 1 with a line naming it; a running worker: ok."""
    deployment.store().dispose()
    before = tryon(deployment.env, "health", cwd=tmp_path)
    assert before.returncode == 1, before.stdout
    queue = f"{deployment.env['TRYON_NAMESPACE']}.jobs"
    (line,) = [line for line in before.stdout.splitlines() if " workers: " in line]
    assert line.startswith("fail") and queue in line, before.stdout
    deployment.start_worker(concurrency=1, name=f"health-{deployment.env['TRYON_NAMESPACE']}")
    after = tryon(deployment.env, "health", "--json", cwd=tmp_path)
    assert after.returncode == 0, after.stdout
    workers = json.loads(after.stdout)["checks"]["workers"]
    assert workers["status"] == "ok" and workers["data"]["consumers"] >= 1


def pause_events(sentry: RecordingSentry) -> list[str]:
    """The Sentry events (their log messages) that say the account was paused."""
    found = []
    for event in sentry.events():
        entry = event.get("logentry") or {}
        text = str(entry.get("formatted") or entry.get("message") or event.get("message") or "")
        if "paused for the whole account" in text:
            found.append(text)
    return found


def test_an_account_pause_is_one_sentry_event_and_one_metric(
    deployment: Deployment, emulator: EmulatorServer
) -> None:
    """A wrong key: six refused jobs and failed probes make one Sentry event, pauses_total 1."""
    sentry, port = RecordingSentry(), free_port()
    try:
        deployment.env.update(
            {
                "TRYON_KLING_API_KEY": "sk-wrong-key-0123456789",
                "TRYON_SENTRY_DSN": sentry.dsn,
                "TRYON_METRICS_PORT": str(port),
                "TRYON_ACCOUNT_PROBE_INTERVAL": "1",
            }
        )
        deployment.start_worker(concurrency=2, name=f"pause-{deployment.env['TRYON_NAMESPACE']}")
        human, cloth = sample_b64("human.jpg"), sample_b64("cloth-red.png")
        with JobPublisher(deployment.settings) as publisher:
            for number in range(6):
                publisher.publish(
                    {"job_id": f"paused-{number}", "human_image": human, "cloth_image": cloth}
                )
        # Every job was refused or held, and at least three probes failed since.
        wait_until(lambda: emulator.stats()["create_requests"] >= 9, 90, 0.5, "creates and probes")
        wait_until(lambda: bool(pause_events(sentry)), 20, 0.5, "the pause event")
        metrics = scrape(f"http://127.0.0.1:{port}/metrics")
        time.sleep(2.0)  # anything else the worker would send
    finally:
        sentry.stop()
    assert len(pause_events(sentry)) == 1, pause_events(sentry)
    assert value(metrics, "tryon_account_pauses_total") == 1
    assert value(metrics, "tryon_account_pauses_total", code="kling_1000") == 1
    store = deployment.store()
    try:
        pause = store.account.current_pause()
        assert pause is not None and pause.code == "kling_1000"
        assert all(store.get(f"paused-{n}") is not None for n in range(6))
    finally:
        store.dispose()
    assert "sk-wrong-key-0123456789" not in sentry.text()


# ------------------------------------------------- 10: validate batches, page jobs ------
def test_validate_checks_a_batch_file_line_by_line(tmp_path: Path) -> None:
    """`tryon validate` of a JSON Lines and a CSV batch: a verdict per line, exit 2 if any bad."""
    batches = write_batches(tmp_path)
    env = base_env(tmp_path)
    result = tryon(env, "validate", str(batches["mixed.jsonl"][0]), "--json", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = {line["line"]: line for line in json.loads(result.stdout)["lines"]}
    assert [lines[n]["valid"] for n in (1, 2, 3)] == [False, False, True]
    assert lines[1]["problems"][0]["field"] == "cloth_image"
    assert {p["field"] for p in lines[2]["problems"]} == {"human_image", "cloth_image"}
    assert lines[3]["job_id"] == "j3"
    text = tryon(env, "validate", str(batches["mixed.csv"][0]), cwd=tmp_path)
    assert text.returncode == 2
    assert "mixed.csv:2: valid: job m1" in text.stdout
    assert "mixed.csv:3: cloth_image:" in text.stdout
    good = tmp_path / "good.csv"
    good.write_text("human_image,cloth_image\nhuman.jpg,cloth-red.png\n", encoding="utf-8")
    assert tryon(env, "validate", str(good), cwd=tmp_path).returncode == 0


@pytest.mark.slow  # a minute or more: make test starts it first
def test_jobs_lists_newest_first_by_pages_state_and_metadata(tmp_path: Path) -> None:
    """`tryon jobs`: newest first, --after the cursor, --state, --meta sku=...: exact pages."""
    with fresh_database() as url:
        env = {**base_env(tmp_path), "TRYON_DATABASE_URL": url}
        store = JobStore.from_url(url)
        try:
            store.create_schema()
            for number in range(5):
                store.intake.accept(
                    [
                        NewJob(
                            f"page-{number}",
                            body={"human_image": "https://a.example/p.jpg"},
                            metadata={"sku": "1234" if number % 2 else "9"},
                        )
                    ]
                )
        finally:
            store.dispose()

        def ids(*args: str) -> list[str]:
            result = tryon(env, "jobs", "--json", *args, cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            return [record["job_id"] for record in json.loads(result.stdout)]

        assert ids() == [f"page-{n}" for n in (4, 3, 2, 1, 0)]
        first = tryon(env, "jobs", "--limit", "2", cwd=tmp_path)
        assert "more: tryon jobs --after page-3" in first.stderr
        assert ids("--limit", "2", "--after", "page-3") == ["page-2", "page-1"]
        assert ids("--cursor", "page-1") == ["page-0"]
        assert ids("--meta", "sku=1234") == ["page-3", "page-1"]
        assert ids("--state", "queued", "--meta", "sku=9", "--limit", "1") == ["page-4"]
        assert ids("--state", "succeeded") == []
        unknown = tryon(env, "jobs", "--after", "nope", cwd=tmp_path)
        assert unknown.returncode == 1 and "no job 'nope'" in unknown.stderr
