"""Starting workers: `tryon worker`, and the sandbox emulator when no key is set."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import click
import requests

from kolors_tryon.config import SANDBOX_API_KEY, Settings
from kolors_tryon.config.defaults import EMULATOR_PROBE_TIMEOUT, REMOTE_EMULATOR_WAIT
from kolors_tryon.emulator import EmulatorConfig, EmulatorServer
from kolors_tryon.observe import multiproc
from kolors_tryon.ops.logs import capture_stdout, configure_logging
from kolors_tryon.store import SchemaOutdated, open_store
from kolors_tryon.worker.app import create_app
from kolors_tryon.worker.nodes import with_node_name
from kolors_tryon.worker.reporting import init_reporting

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
SANDBOX_BANNER = (
    "SANDBOX MODE: no Kling credentials are set (TRYON_KLING_API_KEY, or "
    "TRYON_KLING_ACCESS_KEY + TRYON_KLING_SECRET_KEY). Jobs go to the bundled emulator at "
    "{url}; no real API is called and nothing is billed."
)


def announce(settings: Settings, text: str, *, bold: bool = False) -> None:
    """Say something loudly at start-up: in yellow on a terminal, a WARNING line in JSON
    mode (where every line must be a JSON object)."""
    if settings.log_format == "json":
        log.warning("%s", text)
    else:
        click.secho(text, fg="yellow", bold=bold, err=True)


def emulator_answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/_emulator/stats", timeout=EMULATOR_PROBE_TIMEOUT).ok
    except requests.RequestException:
        return False


def ensure_sandbox_emulator(settings: Settings) -> EmulatorServer | None:
    """In sandbox mode, make sure an emulator answers at the sandbox URL (start one here)."""
    url = settings.effective_kling_base_url
    announce(settings, SANDBOX_BANNER.format(url=url), bold=True)
    if emulator_answers(url):
        return None
    parts = urlsplit(url)
    if parts.hostname not in LOCAL_HOSTS:
        # Another host's emulator (e.g. the compose service): wait for it, never fake it.
        deadline = time.monotonic() + REMOTE_EMULATOR_WAIT
        while time.monotonic() < deadline:
            time.sleep(1)
            if emulator_answers(url):
                return None
        raise click.ClickException(f"the sandbox emulator at {url} does not answer")
    server = EmulatorServer(
        EmulatorConfig(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 80,
            prefix=parts.path.rstrip("/"),
            api_keys=(SANDBOX_API_KEY,),
        )
    )
    server.start()
    announce(settings, f"started the sandbox emulator at {server.base_url}")
    return server


def run_worker(settings: Settings, celery_args: list[str]) -> None:
    """Prepare the store, announce the mode, and hand over to Celery's worker.

    Before Celery starts (and forks its pool): logging is configured (Celery is told to
    keep it, see `worker.app`), and `PROMETHEUS_MULTIPROC_DIR` is set and wiped, so
    that every pool process inherits it before any metric exists.
    """
    configure_logging(settings)
    if settings.log_format == "json":
        capture_stdout()
    metrics_dir = multiproc.prepare(settings.data_dir)
    log.info("pool metrics in %s", metrics_dir)
    init_reporting(settings)
    if settings.sandbox:
        ensure_sandbox_emulator(settings)
    else:
        log.info("Kling API at %s", settings.effective_kling_base_url)
    if not settings.uses_rabbitmq:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        announce(
            settings,
            f"embedded broker and store in {settings.data_dir.resolve()} (one machine only; "
            "set TRYON_BROKER_URL and TRYON_DATABASE_URL for production)",
        )
    try:
        open_store(settings).dispose()
    except SchemaOutdated as exc:
        # A worker on an older schema would fail on its first write, job after job.
        raise click.ClickException(f"not starting: {exc}") from None
    app = create_app(settings)
    # JSON lines for log shippers: Celery's start-up banner (printed, not logged) would
    # be the one line that is not JSON.
    quiet = ["--quiet"] if settings.log_format == "json" else []
    # A node name of its own unless told (`worker.nodes`): Celery's `celery@<host>` locks
    # every second worker of a machine out of its control queue.
    args = with_node_name(settings, celery_args)
    app.worker_main([*quiet, "worker", f"--loglevel={settings.log_level}", *args])


def run_flower(settings: Settings, flower_args: list[str]) -> None:
    """Flower with this deployment's Celery app, so that it listens where our workers speak.

    A Flower given only a broker URL uses Celery's default control and event exchanges
    (`celery.pidbox`, `celeryev`): it would see no worker of ours, whose exchanges carry the
    namespace (`<ns>.control`, `<ns>.celeryev`), nor their task events.
    """
    if importlib.util.find_spec("flower") is None:
        raise click.ClickException(
            "Flower is not installed: pip install 'kolors-tryon[flower]' (the image has it)"
        )
    configure_logging(settings)
    create_app(settings).start(["flower", *flower_args])


def start_worker_process(extra_args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    """A `tryon worker` child process with this process's environment, logging to a file."""
    command = [sys.executable, "-m", "kolors_tryon.cli", "worker", *extra_args]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            command, env=dict(os.environ), stdout=log_file, stderr=subprocess.STDOUT
        )
