"""`tryon demo`: the service's main job on one machine, against the sandbox emulator."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Final

import click

from kolors_tryon.cli import door
from kolors_tryon.cli.following import report, wait_for
from kolors_tryon.config import Settings
from kolors_tryon.config.defaults import DEMO_TIMEOUT
from kolors_tryon.jobs import ImageSourceError, read_batch, with_image_files_read
from kolors_tryon.producer import JobPublisher

__all__ = ["demo"]

SAMPLES: Final = Path(__file__).resolve().parents[1] / "samples" / "jobs.jsonl"


@click.command()
@click.option(
    "--file",
    "jobs_file",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Jobs to run (default: the bundled sample jobs).",
)
@click.option("--timeout", type=float, default=DEMO_TIMEOUT, show_default=True)
@click.option(
    "--emulator-port",
    type=click.IntRange(1, 65535),
    default=None,
    help="Run the sandbox emulator on this local port (default: the port of "
    "TRYON_SANDBOX_EMULATOR_URL, 8765).",
)
def demo(jobs_file: Path | None, timeout: float, emulator_port: int | None) -> None:
    """Run the service's main job here: an emulator, a worker, the sample jobs, the results."""
    from kolors_tryon.worker.launcher import start_worker_process

    if emulator_port is not None:
        # The worker started below inherits this process's environment: same emulator.
        os.environ["TRYON_SANDBOX_EMULATOR_URL"] = f"http://127.0.0.1:{emulator_port}"
    settings = door.command_settings()
    if not settings.sandbox:
        door.fail(
            "demo runs in sandbox mode only: unset the TRYON_KLING_* credentials "
            "(it would spend real credits otherwise)"
        )
    emulator = _start_demo_emulator(settings)
    worker_log = settings.data_dir / "demo-worker.log"
    worker_process = start_worker_process(["--concurrency", "2"], worker_log)
    click.echo(f"started a worker (its log: {worker_log})")
    try:
        path = jobs_file or SAMPLES
        entries = [(n, e) for n, e in read_batch(path) if isinstance(e, dict)]
        with door.reaching_broker(settings), JobPublisher(settings) as publisher:
            job_ids = []
            for number, entry in entries:
                try:
                    message = with_image_files_read(entry, path.parent)
                except ImageSourceError as exc:
                    click.secho(f"skipped {path.name}:{number}: {exc}", fg="yellow", err=True)
                    continue
                # Unchecked on purpose: the samples show a rejection at intake too.
                job_ids.append(publisher.publish(message))
        click.echo(f"enqueued {len(job_ids)} sample job(s) from {path}")
        records = wait_for(settings, job_ids, timeout, show=True)
        click.echo()
        report(records, as_json=False)
        finished = all(r.terminal for r in records)
    finally:
        worker_process.terminate()
        worker_process.wait(timeout=30)
        if emulator is not None:
            emulator.stop()
    sys.exit(0 if finished else 1)


def _start_demo_emulator(settings: Settings) -> Any:
    """The sandbox emulator of `tryon demo`, or exit 1 saying how to move a taken port."""
    from urllib.parse import urlsplit

    from kolors_tryon.worker.launcher import ensure_sandbox_emulator

    try:
        return ensure_sandbox_emulator(settings)
    except OSError as exc:
        port = urlsplit(settings.effective_kling_base_url).port
        door.fail(
            f"the sandbox emulator cannot listen on port {port} ({exc.strerror or exc}): "
            f"another program holds it; run `tryon demo --emulator-port {(port or 8765) + 1}` "
            f"or set TRYON_SANDBOX_EMULATOR_URL=http://127.0.0.1:{(port or 8765) + 1}",
            code=door.EXIT_FAILED,
        )
