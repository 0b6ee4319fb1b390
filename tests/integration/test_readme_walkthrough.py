"""The README followed word for word from a fresh clone: the quick start and "Running it
for real", the commands read from the README itself, so that a change of the words is a
change of what this test runs.

The clone is of the commit under test (what a newcomer gets); `make run` installs into the
clone's own `.venv` from the lock, as on a fresh machine. `make test`, the quick start's
second command, is what CI itself runs from a fresh clone. The one departure from the
words: no real Kling key exists here, so the credentials line is left out, and the README
says what then happens (sandbox mode against the bundled emulator).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import (
    SAMPLES,
    clean_env,
    delete_topology,
    free_port,
    fresh_database,
    terminate,
    wait_until,
)
from kolors_tryon.config import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def shell_block(heading: str) -> list[str]:
    """The command lines of the first ```sh block under `heading`, comments dropped."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(f"\n{heading}\n") :]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert block is not None, heading
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh clone of the commit under test."""
    target = tmp_path_factory.mktemp("readme") / "kolors-tryon"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(target)], check=True, timeout=120)
    return target


@pytest.fixture(scope="module")
def quick_start(clone: Path) -> Iterator[subprocess.CompletedProcess[str]]:
    """The quick start's `make run`, run in the clone with no TRYON_ variable."""
    (command,) = [line for line in shell_block("## Quick start") if line == "make run"]
    env = clean_env()
    # The one thing a shared test machine needs that a fresh one does not: a free port
    # for the demo's emulator (the README names the variable).
    env["TRYON_SANDBOX_EMULATOR_URL"] = f"http://127.0.0.1:{free_port()}"
    yield subprocess.run(
        shlex.split(command),
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def test_quick_start_make_run_shows_every_outcome_from_a_fresh_clone(
    quick_start: subprocess.CompletedProcess[str],
) -> None:
    """`make run` in a fresh clone installs, says SANDBOX MODE and prints the four outcomes
    the README promises: two succeeded, one failed at Kling, one rejected at intake."""
    output = quick_start.stdout + quick_start.stderr
    assert quick_start.returncode == 0, output[-4000:]
    assert "SANDBOX MODE" in output
    for job_id, state in [
        ("sample-red-tee", "succeeded"),
        ("sample-blue-tee", "succeeded"),
        ("sample-no-person", "failed"),
        ("sample-too-small", "rejected"),
    ]:
        assert any(job_id in line and state in line for line in output.splitlines()), job_id


def test_running_it_for_real_word_for_word(
    clone: Path, quick_start: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    """The README's "Running it for real" commands, in the clone's venv against the local
    RabbitMQ and a new PostgreSQL database: the store is upgraded, the worker starts in
    sandbox mode, and a job submitted as the README shows ends succeeded."""
    assert quick_start.returncode == 0  # the clone's .venv is installed
    env = clean_env()
    env["PATH"] = f"{clone / '.venv' / 'bin'}:{env['PATH']}"
    # Isolation on a shared machine (a deployment of its own): not in the README's words.
    namespace = f"readme{uuid.uuid4().hex[:8]}"
    env.update(
        {
            "TRYON_NAMESPACE": namespace,
            "TRYON_DATA_DIR": str(tmp_path / "data"),
            "TRYON_SANDBOX_EMULATOR_URL": f"http://127.0.0.1:{free_port()}",
            "TRYON_METRICS_PORT": "0",
        }
    )
    worker: subprocess.Popen[bytes] | None = None
    with fresh_database() as database_url:
        settings: Settings | None = None
        try:
            for line in shell_block("## Running it for real"):
                words = shlex.split(line)
                if words[0] == "export":
                    for assignment in words[1:]:
                        name, value = assignment.split("=", 1)
                        if value == "...":
                            continue  # the credentials line: no real key here
                        if name == "TRYON_DATABASE_URL":
                            # The README's database, created as it says (createdb): ours.
                            assert value.endswith("/tryon"), value
                            value = database_url
                        env[name] = value
                    continue
                assert words[0] == "tryon", line
                settings = Settings(
                    broker_url=env["TRYON_BROKER_URL"], namespace=namespace, _env_file=None
                )
                if words[1] == "worker":
                    log = (tmp_path / "worker.log").open("wb")
                    worker = subprocess.Popen(
                        words, env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT
                    )
                    wait_until(
                        lambda: " ready." in (tmp_path / "worker.log").read_text(errors="replace"),
                        120,
                        0.5,
                        "the README's worker to be ready",
                    )
                    continue
                done = subprocess.run(
                    words, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
                )
                assert done.returncode == 0, done.stdout + done.stderr
            assert worker is not None, "the README starts no worker"
            assert "SANDBOX MODE" in (tmp_path / "worker.log").read_text(errors="replace")
            submitted = subprocess.run(
                [
                    "tryon",
                    "submit",
                    "--human",
                    str(SAMPLES / "human.jpg"),
                    "--cloth",
                    str(SAMPLES / "cloth-red.png"),
                    "--wait",
                ],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert submitted.returncode == 0, submitted.stdout + submitted.stderr
            assert "succeeded" in submitted.stdout + submitted.stderr
        finally:
            if worker is not None:
                terminate(worker, timeout=60)
            if settings is not None:
                delete_topology(settings)
