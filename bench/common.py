"""What every benchmark shares: result files, plots, percentiles and the real services.

The machines are shared and noisy, so a benchmark reports ratios against a baseline it
measures in the same run, or counts. The services are the real ones the tests use
(RabbitMQ, PostgreSQL, `tryon worker` and `tryon web` processes, through the test
harness); the Kling emulator runs as a process of its own (`tryon emulator`), so that a
baseline client in this process competes with it for no GIL.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import requests

from harness import (
    FAST_ENV,
    SAMPLES,
    TEST_API_KEY,
    Deployment,
    free_port,
    rabbit_deployment_on,
    terminate,
    wait_until,
)
from harness.env import RABBITMQ_URL_VARIABLE
from kolors_tryon.kling import KlingClient, KlingTask, StaticKeyAuth

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: The list endpoint's largest page (KLING_API.md): reading every task back is cheap.
_PAGE_SIZE = 500


# ----------------------------------------------------------------- figures -------------
def machine() -> str:
    """The machine, as the README states it next to each figure."""
    return f"{os.cpu_count()} cores, shared; {platform.system()} {platform.machine()}"


def command() -> str:
    """How this run was started (`make bench` sets BENCH_COMMAND; else the argv)."""
    return os.environ.get("BENCH_COMMAND") or " ".join(["python -m bench.run", *sys.argv[1:]])


def write_result(out_dir: Path, name: str, sizes: object, figures: Mapping[str, Any]) -> Path:
    """Write `<out_dir>/<name>.json`: the figures with the date, machine, command, sizes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    document = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "command": command(),
        "sizes": asdict(sizes) if is_dataclass(sizes) and not isinstance(sizes, type) else {},
        "figures": dict(figures),
    }
    path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    print(f"BENCH {name}: " + json.dumps(dict(figures), sort_keys=True), flush=True)
    return path


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile `q` (0..100) of `values` (the p99 of 60 is the max)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float) -> float:
    """Seconds as milliseconds, rounded for a figure."""
    return round(seconds * 1000, 1)


def plot(path: Path, draw: Callable[[Any], None], *, title: str, xlabel: str, ylabel: str) -> Path:
    """Draw one figure with matplotlib (no display needed) and save it as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    draw(axes)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(True, alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


# ----------------------------------------------------------------- processes -----------
def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            return requests.get(url, timeout=1).status_code < 500
        except requests.RequestException:
            return False

    wait_until(answers, 60, 0.1, what)


class EmulatorProcess:
    """A `tryon emulator` process on a free port, driven through its control endpoints."""

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url
        self.http = requests.Session()

    @property
    def base_url(self) -> str:
        """Where the service (and a baseline client) send their Kling calls."""
        return self._base_url

    def stats(self) -> dict[str, Any]:
        """The emulator's counters (`EmulatorServer.stats`)."""
        answer: dict[str, Any] = self.http.get(f"{self.base_url}/_emulator/stats").json()
        return answer

    def configure(self, **knobs: Any) -> None:
        """Change run-time knobs (concurrency_limit, task_duration...)."""
        self.http.post(f"{self.base_url}/_emulator/config", json=knobs).raise_for_status()

    def reset(self) -> None:
        """Forget tasks and counters, so that the next run counts from zero."""
        self.http.post(f"{self.base_url}/_emulator/reset").raise_for_status()

    def client(self) -> KlingClient:
        """Our Kling client, on the key the emulator accepts."""
        return KlingClient(self.base_url, StaticKeyAuth(TEST_API_KEY))

    def tasks(self) -> dict[str, KlingTask]:
        """Every task the emulator holds, by external id (read back page by page)."""
        found: dict[str, KlingTask] = {}
        with self.client() as client:
            for page in range(1, 1001):
                tasks = client.list(page_num=page, page_size=_PAGE_SIZE)
                found.update({t.external_task_id: t for t in tasks if t.external_task_id})
                if len(tasks) < _PAGE_SIZE:
                    break
        return found


@contextmanager
def emulator_process(
    log_dir: Path, *, concurrency: int, duration: float
) -> Iterator[EmulatorProcess]:
    """`tryon emulator` with this account limit and task duration; stopped after."""
    port = free_port()
    log = log_dir / f"emulator-{port}.log"
    log_dir.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "kolors_tryon.cli", "emulator"),
                *("--port", str(port), "--api-key", TEST_API_KEY),
                *("--concurrency", str(concurrency), "--duration", str(duration)),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    emulator = EmulatorProcess(f"http://127.0.0.1:{port}")
    try:
        _wait_http(f"{emulator.base_url}/_emulator/stats", process, log, "the emulator")
        yield emulator
    finally:
        emulator.http.close()
        terminate(process, timeout=15)


@contextmanager
def photos_server(log_dir: Path) -> Iterator[str]:
    """The sample photos over HTTP (`python -m http.server`): the emulator fetches URLs."""
    port = free_port()
    log = log_dir / f"photos-{port}.log"
    log_dir.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
            cwd=SAMPLES,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/human.jpg", process, log, "the photos server")
        yield url
    finally:
        terminate(process, timeout=15)


@contextmanager
def own_vhost(label: str) -> Iterator[None]:
    """A RabbitMQ vhost of its own for one benchmark, deleted after it with all it holds.

    Celery's delayed-delivery queues (`celery_delayed_*`) belong to a vhost and are shared
    by every deployment on it: the thousands of delayed track messages a benchmark leaves
    behind when its deployment goes would come out into the next one's queues, or stay,
    unroutable, at the head of those queues and hold everyone's delayed messages up
    (README.md, "a vhost per deployment"). Deleting the vhost deletes them. It needs
    `rabbitmqctl` beside the broker the tests use; with TRYON_TEST_RABBITMQ_URL set (another
    broker), the benchmarks use that URL as it is.
    """
    if os.environ.get(RABBITMQ_URL_VARIABLE) or shutil.which("rabbitmqctl") is None:
        yield
        return
    vhost = f"tryon-bench-{label}-{uuid.uuid4().hex[:8]}"

    def ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)

    ctl("add_vhost", vhost)
    try:
        ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        os.environ[RABBITMQ_URL_VARIABLE] = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
        yield
    finally:
        os.environ.pop(RABBITMQ_URL_VARIABLE, None)
        ctl("delete_vhost", vhost)


@contextmanager
def deployment_on(
    tmp: Path, endpoint: Any, env: Mapping[str, str] | None = None
) -> Iterator[Deployment]:
    """A RabbitMQ namespace and a fresh PostgreSQL database on the service's own defaults.

    The test harness's fast settings (short polls, frequent sweeps) are taken out: the
    figures are what a deployment gets, not what a quick test wants.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    with rabbit_deployment_on(tmp, endpoint) as deployment:
        for name in FAST_ENV:
            deployment.env.pop(name, None)
        deployment.env["TRYON_LOG_LEVEL"] = "INFO"
        deployment.env.update(env or {})
        yield deployment


def url_job(job_id: str, photos: str) -> dict[str, Any]:
    """A job whose images are URLs (the emulator fetches them, the worker does not)."""
    return {
        "job_id": job_id,
        "human_image": f"{photos}/human.jpg",
        "cloth_image": f"{photos}/cloth-red.png",
    }


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its children (a worker and its pool)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total
