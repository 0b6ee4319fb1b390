"""The worker's container health check in docker-compose.yml, run as the container runs it.

No Docker engine runs here, so the test does what the container would: the worker's
`command` and the exact `healthcheck` string from docker-compose.yml, through `/bin/sh
-c` as `CMD-SHELL` does, with the compose environment mapped to local addresses (the
local RabbitMQ and a fresh PostgreSQL database, the emulator for Kling) and a namespace
of the test's own. The check once was `celery inspect ping -d celery@$HOSTNAME`, which
could never pass: it asked Celery's default control exchange, not the namespace's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from harness import Deployment, free_port

ROOT = Path(__file__).resolve().parents[2]
# Compose variables that hold an address or a path of the compose network or image:
# each is mapped to what the test deployment uses here.
LOCAL = (
    "TRYON_BROKER_URL",
    "TRYON_DATABASE_URL",
    "TRYON_KLING_BASE_URL",
    "TRYON_KLING_API_KEY",
)


def worker_service() -> dict[str, Any]:
    """The `worker` service of docker-compose.yml (anchors merged by the YAML loader)."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    worker: dict[str, Any] = services["worker"]
    return worker


def interpolate(value: object) -> str:
    """Compose's `${NAME:-default}` with nothing set on the host: the default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))


def compose_env(deployment: Deployment, tmp: Path) -> dict[str, str]:
    """The worker service's environment, its addresses mapped to the test's services."""
    env = dict(deployment.env)  # the namespace, data dir and fast settings of the test
    for name, value in worker_service()["environment"].items():
        env[name] = deployment.env[name] if name in LOCAL else interpolate(value)
    env["TRYON_SANDBOX_EMULATOR_URL"] = deployment.env["TRYON_KLING_BASE_URL"]
    env["TRYON_RESULTS_DIR"] = str(tmp / "results")
    env["TRYON_METRICS_HOST"] = "127.0.0.1"
    env["TRYON_METRICS_PORT"] = str(free_port())
    # `tryon` is on the image's PATH; here it is the virtual environment's.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The healthcheck's `test`, exactly as written, through the shell as CMD-SHELL runs it."""
    kind, command = worker_service()["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    return subprocess.run(
        ["/bin/sh", "-c", command.replace("$$", "$")],  # `$$` is compose's escaped `$`
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_worker_healthcheck_passes_with_its_worker_and_fails_without(
    rabbit_deployment: Deployment, tmp_path: Path
) -> None:
    """The compose health check exits 0 while the worker runs, non-zero once it has stopped."""
    env = compose_env(rabbit_deployment, tmp_path)
    rabbit_deployment.env = env
    command = worker_service()["command"]
    assert command[0] == "worker"
    worker = rabbit_deployment.start_worker(args=command[1:])

    healthy = run_healthcheck(env)
    assert healthy.returncode == 0, healthy.stderr

    worker.stop()
    unhealthy = run_healthcheck(env)
    assert unhealthy.returncode != 0
    # What fails is the ping: no worker of this host answers any more.
    ping = rabbit_deployment.tryon("ping", "--this-host")
    assert ping.returncode == 1
    assert "answered on this host" in ping.stdout
