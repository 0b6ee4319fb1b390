"""docker-compose.yml and the Dockerfile, run as local processes (no Docker engine here).

What a container would run is run here: a service's `command` after the image's
ENTRYPOINT (`tryon`), with the environment compose would give it (its `env_file`, then
its `environment`, interpolated from a `.env` as compose does), and its `healthcheck`
command inside the same UTS namespace, so that `hostname` and `$HOSTNAME` are the
container's, as `docker exec` would see them. Addresses are mapped to local ones:

- a backing service (`rabbitmq`, `postgres`) becomes a URL given by the test (the local
  RabbitMQ with a fresh namespace, a fresh PostgreSQL database): the host part of any URL
  naming it is replaced;
- a service of our image listens on free loopback ports instead of its container ports
  (`ports` and `expose`): its command, healthcheck and environment, and every URL naming
  it (`http://emulator:8765`), are rewritten to them;
- absolute paths in `TRYON_` variables (`/data`, `/data/results`) move under a folder of
  the service, named volumes under one folder shared by the services mounting them.

Nothing else is changed: the commands and the health checks are the file's own.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from harness.env import clean_env, free_port
from harness.interrupts import kill_group, register_cleanup, unregister_cleanup

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
VENV_BIN = Path(sys.executable).parent

# ------------------------------------------------------------------ interpolation ------
# Compose's syntax: $$ is a literal $, ${VAR}, ${VAR:-default}, ${VAR-default},
# ${VAR:?error}, ${VAR?error}, ${VAR:+alternative}, ${VAR+alternative}, $VAR.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])"
    r"(?P<arg>[^}]*))?\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    """A `${VAR:?message}` whose variable is missing: compose would refuse the file."""


def interpolate(text: str, variables: Mapping[str, str]) -> str:
    """`text` with compose's variables substituted from `variables`."""

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        value = variables.get(name)
        op, arg = match["op"], match["arg"] or ""
        unset = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if unset else str(value)
        if op in (":?", "?"):
            if unset:
                raise InterpolationError(f"{name}: {arg}")
            return str(value)
        if op in (":+", "+"):
            return "" if unset else arg
        return value or ""

    return _VARIABLE.sub(substitute, text)


def _interpolate_tree(node: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [_interpolate_tree(item, variables) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, variables) for key, value in node.items()}
    return node


def read_dotenv(path: Path) -> dict[str, str]:
    """A `.env` file as compose reads it: KEY=VALUE lines, comments, optional quotes."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.removeprefix("export ").split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def load_compose(
    project_dir: Path | None = None, shell: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """docker-compose.yml, interpolated as `docker compose` in `project_dir` would: the
    shell's variables first, then the project's `.env` (none: the repository has none)."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    dotenv = read_dotenv(project_dir / ".env") if project_dir else {}
    data = _interpolate_tree(raw, {**dotenv, **(shell or {})})
    assert isinstance(data, dict)
    return data


def service_environment(
    service: Mapping[str, Any], project_dir: Path, shell: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What compose puts in a service's environment: its env files in order (relative to
    the project), then `environment` (a mapping or a list; a bare name takes the shell's)."""
    env: dict[str, str] = {}
    env_files = service.get("env_file", [])
    for entry in [env_files] if isinstance(env_files, str | dict) else env_files:
        path, required = (
            (entry, True) if isinstance(entry, str) else (entry["path"], entry.get("required"))
        )
        file = project_dir / path
        if not file.exists():
            assert required is False, f"env_file {path} is required and missing"
            continue
        env.update(read_dotenv(file))
    declared = service.get("environment", {})
    if isinstance(declared, list):
        declared = dict(item.split("=", 1) if "=" in item else (item, None) for item in declared)
    for name, value in declared.items():
        if value is None:
            if shell and name in shell:
                env[name] = shell[name]
        else:
            env[name] = str(value)
    return env


# --------------------------------------------------------------------- the image ------
@dataclass
class Image:
    """What the Dockerfile gives every container: entry point, command, user, env, RUNs."""

    entrypoint: list[str]
    cmd: list[str]
    user: str
    env: dict[str, str]
    workdir: str
    runs: list[str]
    copies: list[list[str]]


def _instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments out."""
    logical = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        word, _, rest = logical.partition(" ")
        yield word.upper(), rest.strip()
        logical = ""


def _exec_form(arguments: str) -> list[str]:
    if arguments.startswith("["):
        parsed = yaml.safe_load(arguments)  # a JSON array is YAML too
        assert isinstance(parsed, list)
        return [str(word) for word in parsed]
    return ["/bin/sh", "-c", arguments]


def read_dockerfile(path: Path = DOCKERFILE) -> Image:
    image = Image(entrypoint=[], cmd=[], user="root", env={}, workdir="/", runs=[], copies=[])
    for instruction, arguments in _instructions(path.read_text()):
        if instruction == "ENTRYPOINT":
            image.entrypoint = _exec_form(arguments)
        elif instruction == "CMD":
            image.cmd = _exec_form(arguments)
        elif instruction == "USER":
            image.user = arguments
        elif instruction == "ENV":
            key, _, value = arguments.replace("=", " ", 1).partition(" ")
            image.env[key] = value.strip()
        elif instruction == "WORKDIR":
            image.workdir = arguments
        elif instruction == "RUN":
            image.runs.append(arguments)
        elif instruction == "COPY":
            image.copies.append(shlex.split(arguments))
    return image


def parse_duration(text: str | None, default: float) -> float:
    """Compose's durations ("30s", "1m30s", "500ms") in seconds."""
    if not text:
        return default
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    return sum(
        float(number) * units[unit]
        for number, unit in re.findall(r"([\d.]+)(ms|us|h|m|s)", str(text))
    )


def container_ports(service: Mapping[str, Any]) -> list[int]:
    """The ports a service listens on inside its container: `ports` (the container side)
    and `expose`."""
    found: list[int] = []
    for mapping in service.get("ports", []):
        found.append(int(str(mapping).split(":")[-1].split("/")[0]))
    for port in service.get("expose", []):
        found.append(int(str(port).split("/")[0]))
    return sorted(set(found))


def healthcheck_argv(test: Sequence[str]) -> list[str]:
    """A healthcheck's `test` as the argv Docker runs: CMD execs, CMD-SHELL goes to sh."""
    kind, *rest = test
    if kind == "CMD":
        return list(rest)
    assert kind == "CMD-SHELL", test
    return ["/bin/sh", "-c", " ".join(rest)]


# --------------------------------------------------------------- local processes ------
@dataclass
class ServiceProcess:
    """One service's container, run here: its process, hostname, env and log."""

    name: str
    hostname: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    healthcheck: dict[str, Any] | None
    process: subprocess.Popen[bytes] | None = None
    cleanup: int | None = None  # its registration with harness.interrupts

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            # A UTS namespace of its own, named like a container (its short id), so that
            # `hostname`, Celery's `%h` and `$HOSTNAME` agree as they do in Docker.
            in_namespace = ["/bin/sh", "-c", 'hostname "$0" && exec "$@"']
            self.process = subprocess.Popen(
                ["unshare", "--uts", "--", *in_namespace, self.hostname, *self.argv],
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        pid = self.process.pid
        self.cleanup = register_cleanup(f"service {self.name}", lambda: kill_group(pid))

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def check_health(self) -> subprocess.CompletedProcess[str]:
        """Run the healthcheck's command once, as Docker does: inside the container's
        namespace (here: its hostname), with its environment, within its timeout."""
        assert self.healthcheck is not None, f"{self.name} has no healthcheck"
        argv = healthcheck_argv(self.healthcheck["test"])
        timeout = parse_duration(self.healthcheck.get("timeout"), 30)
        if self.alive():
            assert self.process is not None
            argv = ["nsenter", f"--target={self.process.pid}", "--uts", "--", *argv]
        try:
            return subprocess.run(
                argv,
                env=self.env,
                cwd=self.cwd,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(argv, 124, str(exc.stdout), f"timed out: {exc}")

    def wait_healthy(self, timeout: float) -> subprocess.CompletedProcess[str]:
        """Poll the healthcheck (once a second, not at its interval) until it passes;
        fail with its last output and the service's log after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.check_health()
            if result.returncode == 0:
                return result
            if time.monotonic() > deadline or (self.process and not self.alive()):
                raise AssertionError(
                    f"{self.name} not healthy: exit {result.returncode}\n{result.stdout}\n"
                    f"{result.stderr}\n--- log ---\n{self.log_text()[-4000:]}"
                )
            time.sleep(1)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, as `docker compose stop` sends, then SIGKILL to the whole group."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                self.process.terminate()
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        if self.cleanup is not None:
            unregister_cleanup(self.cleanup)
            self.cleanup = None


@dataclass
class ComposeRun:
    """docker-compose.yml brought up here, service by service, in the order of `depends_on`.

    `backing` maps a service that is not ours (rabbitmq, postgres) to the URL of the local
    server standing in for it; `dotenv` is the operator's `.env`, written in a project
    folder of the run's own: `env_file` paths and `${VAR}` interpolation read it there, as
    compose reads the `.env` beside the compose file.
    """

    workdir: Path
    backing: Mapping[str, str]
    dotenv: Mapping[str, str] = field(default_factory=dict)
    profiles: Sequence[str] = ()
    services: dict[str, ServiceProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.project_dir = self.workdir / "project"
        self.project_dir.mkdir(parents=True, exist_ok=True)
        lines = [f"{key}={value}" for key, value in self.dotenv.items()]
        (self.project_dir / ".env").write_text("\n".join(lines) + "\n")
        self.compose = load_compose(self.project_dir)
        self.image = read_dockerfile()
        self.ports = {
            (name, port): free_port()
            for name, service in self.compose["services"].items()
            if name not in self.backing
            for port in container_ports(service)
        }

    # ---------------------------------------------------------------- addresses ----
    def local_port(self, service: str, port: int) -> int:
        return self.ports[(service, port)]

    def _rewrite_url(self, text: str, own: str) -> str:
        """A URL naming a compose service (or the service's own loopback) made local."""
        if "://" not in text:
            return text
        parts = urlsplit(text)
        host, port = parts.hostname, parts.port
        if host is not None and host in self.backing:
            # Its credentials, vhost or database too: the local server's, not the file's.
            local = urlsplit(self.backing[host])
            return urlunsplit(parts._replace(netloc=local.netloc, path=local.path))
        target = own if host in ("127.0.0.1", "localhost") else host
        if target in self.compose["services"] and port and (target, port) in self.ports:
            netloc = f"127.0.0.1:{self.ports[(target, port)]}"
            return urlunsplit(parts._replace(netloc=netloc))
        return text

    def _rewrite_word(self, word: str, own: str) -> str:
        """A word of a command: a URL, one of the service's own ports, or `--opt=port`."""
        word = self._rewrite_url(word, own)
        name, equals, value = word.rpartition("=")
        candidate = value if equals else word
        if candidate.isdigit() and (own, int(candidate)) in self.ports:
            local = str(self.ports[(own, int(candidate))])
            return f"{name}={local}" if equals else local
        # Inside a longer string (a healthcheck's Python or shell): loopback URLs.
        return re.sub(
            r"(?:127\.0\.0\.1|localhost):(\d+)",
            lambda m: (
                f"127.0.0.1:{self.ports[(own, int(m[1]))]}"
                if (own, int(m[1])) in self.ports
                else m[0]
            ),
            word,
        )

    def _local_path(self, name: str, service: Mapping[str, Any], path: str) -> str:
        """A container path: under a named volume's folder, else under the service's root."""
        for volume in service.get("volumes", []):
            source, target = str(volume).split(":")[:2]
            if path == target or path.startswith(target + "/"):
                return str(self.workdir / "volumes" / source) + path[len(target) :]
        return str(self.workdir / name / "root") + path

    # ---------------------------------------------------------------- processes ----
    def environment(self, name: str) -> dict[str, str]:
        """The service's environment here: ours without TRYON_ variables, the image's
        ENV, compose's, each address and path made local, HOSTNAME set later."""
        service = self.compose["services"][name]
        image_env = {} if name in self.backing else self.image.env
        env = {**image_env, **service_environment(service, self.project_dir)}
        for key, value in list(env.items()):
            value = self._rewrite_word(value, name)
            if key.startswith("TRYON_") and value.startswith("/"):
                value = self._local_path(name, service, value)
                Path(value).mkdir(parents=True, exist_ok=True)
            env[key] = value
        return {
            **clean_env(),
            **env,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }

    def argv(self, name: str) -> list[str]:
        """ENTRYPOINT + command, as Docker joins them (`entrypoint` of the service wins)."""
        service = self.compose["services"][name]
        entrypoint = service.get("entrypoint", self.image.entrypoint)
        command = service.get("command", self.image.cmd)
        if isinstance(entrypoint, str):
            entrypoint = shlex.split(entrypoint)
        if isinstance(command, str):
            command = shlex.split(command)
        return [self._rewrite_word(str(word), name) for word in [*entrypoint, *command]]

    def service(self, name: str) -> ServiceProcess:
        """The service's process (not started yet), or the started one."""
        if name in self.services:
            return self.services[name]
        definition = self.compose["services"][name]
        check = definition.get("healthcheck")
        if check is not None:
            check = {**check, "test": [self._rewrite_word(w, name) for w in check["test"]]}
        hostname = uuid.uuid4().hex[:12]
        env = {**self.environment(name), "HOSTNAME": hostname}
        cwd = self.workdir / name / "root" / self.image.workdir.lstrip("/")
        cwd.mkdir(parents=True, exist_ok=True)
        process = ServiceProcess(
            name=name,
            hostname=hostname,
            argv=self.argv(name),
            env=env,
            cwd=cwd,
            log_path=self.workdir / f"{name}.log",
            healthcheck=check,
        )
        self.services[name] = process
        return process

    def active(self) -> list[str]:
        """Services that `docker compose up` starts with these profiles, in start order."""
        services = self.compose["services"]
        chosen = {
            name
            for name, svc in services.items()
            if not svc.get("profiles") or set(svc["profiles"]) & set(self.profiles)
        }
        order: list[str] = []

        def visit(name: str) -> None:
            if name in order:
                return
            for needed in services[name].get("depends_on", {}):
                if needed in chosen:
                    visit(needed)
            order.append(name)

        for name in sorted(chosen):
            visit(name)
        return order

    def up(self, timeout: float = 120) -> None:
        """Start every active service after what it depends on is healthy, completed or
        started, as its `depends_on` conditions say. Backing services are already up
        (the local servers): their own healthchecks are run on this machine."""
        services = self.compose["services"]
        for name in self.active():
            for needed, rule in services[name].get("depends_on", {}).items():
                if needed not in self.services and needed not in self.backing:
                    continue  # not active (another profile), `required: false`
                condition = rule.get("condition", "service_started")
                dependency = self.service(needed)
                if condition == "service_healthy":
                    dependency.wait_healthy(timeout)
                elif condition == "service_completed_successfully":
                    code = dependency.wait(timeout)
                    assert code == 0, f"{needed} exited {code}:\n{dependency.log_text()}"
            process = self.service(name)
            if name not in self.backing:
                process.start()

    def down(self) -> None:
        """Stop every started process (reverse order) and remove the working folders."""
        for process in reversed(list(self.services.values())):
            process.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)
