"""The `tryon` command as a user runs it: validate, schema, emulator, and clear errors."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from harness import SAMPLES, clean_env, free_port, fresh_database, png_inflating, sample_b64
from kolors_tryon.store import make_engine
from kolors_tryon.store.migrate import upgrade_schema

ENV = clean_env()


def tryon(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kolors_tryon.cli", *args],
        cwd=cwd,
        env=env or ENV,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow  # a minute or more: make test starts it first
def test_every_command_has_help(tmp_path: Path) -> None:
    """`tryon --help` lists every designed command, and each has its own --help."""
    result = tryon("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in (
        "worker",
        "submit",
        "batch",
        "validate",
        "status",
        "jobs",
        "schema",
        "emulator",
        "demo",
        "results",
        "purge",
        "forget",
        "cancel",
        "retry",
    ):
        assert command in result.stdout
        sub = tryon(command, "--help", cwd=tmp_path)
        assert sub.returncode == 0 and "Usage" in sub.stdout, command


def test_validate_accepts_a_valid_job(tmp_path: Path) -> None:
    """A valid job: exit 0, its job id and image facts."""
    job = tmp_path / "job.json"
    job.write_text(
        json.dumps(
            {
                "job_id": "ok-1",
                "human_image": sample_b64("human.jpg"),
                "cloth_image": sample_b64("cloth-red.png"),
            }
        )
    )
    result = tryon("validate", str(job), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["valid"] and out["job_id"] == "ok-1"
    assert out["images"]["human_image"]["format"] == "JPEG"
    assert out["images"]["cloth_image"]["width"] == 600


@pytest.mark.parametrize(
    ("job", "field"),
    [
        ({"human_image": "not base64 !!", "cloth_image": "x"}, "human_image"),
        ({"model": "kolors-virtual-try-on-v1", "human_image": "a", "cloth_image": "b"}, "model"),
        ({"human_image": "https://example.com/a.jpg"}, "cloth_image"),
        (
            {"human_image": "https://example.com/a.jpg", "cloth_image": "ftp://x/y.png"},
            "cloth_image",
        ),
    ],
)
def test_validate_refuses_an_invalid_job_naming_the_field(
    tmp_path: Path, job: dict[str, str], field: str
) -> None:
    """An invalid job: exit 2 and a reason that names the field."""
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    result = tryon("validate", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert field in result.stdout


def test_validate_refuses_an_image_over_the_pixel_limits_before_inflating_it(
    tmp_path: Path,
) -> None:
    """`tryon validate` of a 630 KB PNG claiming 9000x9000 16-bit pixels: exit 2 at once,
    naming the field, the rule and the limits, in about the time of a valid job."""
    bomb = base64.b64encode(png_inflating(9000, 9000)).decode("ascii")
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"human_image": bomb, "cloth_image": sample_b64("cloth-red.png")}))
    good = tmp_path / "good.json"
    good.write_text(
        json.dumps(
            {"human_image": sample_b64("human.jpg"), "cloth_image": sample_b64("cloth-red.png")}
        )
    )
    started = time.monotonic()
    baseline = tryon("validate", str(good), "--json", cwd=tmp_path)
    baseline_seconds = time.monotonic() - started
    assert baseline.returncode == 0, baseline.stderr
    started = time.monotonic()
    result = tryon("validate", str(path), "--json", cwd=tmp_path)
    seconds = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    (problem,) = json.loads(result.stdout)["problems"]
    assert (problem["field"], problem["rule"]) == ("human_image", "max_pixels")
    assert "9000x9000" in problem["message"] and "40000000 pixels" in problem["message"]
    # Inflating 648 MB took 1.4-2.8 s here; the refusal is a process start like the baseline.
    assert seconds < baseline_seconds * 3 + 1.0, (seconds, baseline_seconds)


@pytest.mark.parametrize(
    ("metadata", "field", "rule"),
    [
        ('{"note": "caf\\udce9"}', "metadata.note", "encoding"),
        ('{"a": ' + "[" * 40 + "]" * 40 + "}", "metadata", "max_depth"),
        ('{"a": ' + "[" * 5000 + "]" * 5000 + "}", "message", "json"),
    ],
    ids=["lone-surrogate", "nested-40", "nested-5000"],
)
def test_validate_refuses_unstorable_json_naming_the_field(
    tmp_path: Path, metadata: str, field: str, rule: str
) -> None:
    """`tryon validate` refuses lone surrogates and deep nesting with exit 2 and the rule."""
    job = {"human_image": sample_b64("human.jpg"), "cloth_image": sample_b64("cloth-red.png")}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job).removesuffix("}") + f', "metadata": {metadata}}}')
    result = tryon("validate", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    problems = json.loads(result.stdout)["problems"]
    assert [(p["field"], p["rule"]) for p in problems] == [(field, rule)]


def test_validate_refuses_a_file_that_is_not_json(tmp_path: Path) -> None:
    """Garbage in the file: exit 2 with a reason, no traceback."""
    path = tmp_path / "job.json"
    path.write_bytes(b"\x00\x01 not json")
    result = tryon("validate", str(path), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_schema_prints_the_job_message_schema(tmp_path: Path) -> None:
    """`tryon schema` prints a JSON Schema with the job message's fields."""
    result = tryon("schema", cwd=tmp_path)
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert {
        "job_id",
        "model_name",
        "human_image",
        "cloth_image",
        "callback_url",
        "metadata",
    } <= set(schema["properties"])
    assert set(schema["required"]) == {"human_image", "cloth_image"}


def test_bad_configuration_names_the_variable(tmp_path: Path) -> None:
    """A wrong TRYON_ variable stops the command with a message that names it."""
    result = tryon("jobs", cwd=tmp_path, env={**ENV, "TRYON_MAX_IN_FLIGHT": "zero"})
    assert result.returncode == 2
    assert "TRYON_MAX_IN_FLIGHT" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_of_an_unknown_job(tmp_path: Path) -> None:
    """`tryon status` of an unknown id says so and exits 1."""
    result = tryon("status", "nope", cwd=tmp_path)
    assert result.returncode == 1
    assert "no job 'nope'" in result.stderr


def test_emulator_command_serves_the_api(tmp_path: Path) -> None:
    """`tryon emulator --port P` answers the create endpoint with the sandbox key."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "kolors_tryon.cli", "emulator", "--port", str(port)],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{base}/_emulator/stats", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        answer = requests.post(
            f"{base}/v1/images/kolors-virtual-try-on",
            json={
                "human_image": sample_b64("human.jpg"),
                "cloth_image": sample_b64("cloth-red.png"),
            },
            headers={"Authorization": "Bearer sk-sandbox"},
            timeout=10,
        ).json()
        assert answer["code"] == 0 and answer["data"]["task_id"]
    finally:
        process.terminate()
        process.wait(timeout=10)


# Every command that opens the job store, with arguments that reach the store.
STORE_COMMANDS = [
    ("status", "job-1"),
    ("jobs",),
    ("purge", "--older-than", "30"),
    ("forget", "job-1"),
    ("webhooks", "job-1"),
    ("webhooks", "replay", "delivery-1"),
    ("webhooks", "secret"),
    ("results", "url", "job-1"),
    ("submit", "--human", str(SAMPLES / "human.jpg"), "--cloth", str(SAMPLES / "cloth-red.png"),
     "--wait", "--timeout", "5"),
]  # fmt: skip


@pytest.fixture(scope="module")
def old_schema_url() -> Iterator[str]:
    """A PostgreSQL store left at revision 0001: behind this code, never self-upgraded."""
    with fresh_database() as url:
        engine = make_engine(url)
        upgrade_schema(engine, "0001")
        engine.dispose()
        yield url


@pytest.mark.parametrize("command", STORE_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_store_behind_the_code_is_one_line_saying_what_to_run(
    command: tuple[str, ...], old_schema_url: str, tmp_path: Path
) -> None:
    """Each command that opens the store, on an old schema: exit 1, `tryon db upgrade`."""
    env = {**ENV, "TRYON_DATABASE_URL": old_schema_url, "TRYON_DATA_DIR": str(tmp_path)}
    result = tryon(*command, cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert "schema at 0001" in result.stderr and "run `tryon db upgrade`" in result.stderr


def test_health_fails_the_store_check_of_a_store_behind_the_code(
    old_schema_url: str, tmp_path: Path
) -> None:
    """`tryon health` on an old schema: the store check fails saying what to run."""
    env = {**ENV, "TRYON_DATABASE_URL": old_schema_url, "TRYON_DATA_DIR": str(tmp_path)}
    result = tryon("health", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr
    store = json.loads(result.stdout)["checks"]["store"]
    assert store["status"] == "fail" and "run `tryon db upgrade`" in store["detail"]


@pytest.mark.parametrize("command", STORE_COMMANDS[:4], ids=lambda c: c[0])
def test_a_store_that_does_not_answer_is_one_line_without_its_password(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    """Each command on a store nobody listens at: exit 1, "does not answer", no password."""
    url = f"postgresql://tryon:s3cret-pw@127.0.0.1:{free_port()}/tryon"
    env = {**ENV, "TRYON_DATABASE_URL": url, "TRYON_DATA_DIR": str(tmp_path)}
    result = tryon(*command, cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "does not answer" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout
