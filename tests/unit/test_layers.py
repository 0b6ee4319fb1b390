"""The package's layers: every module imports on its own, and imports only run downward."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = "kolors_tryon"
SOURCE = Path(__file__).resolve().parents[2] / "src" / PACKAGE

# The layer of each top-level part of the package: a module may import its own part and
# the parts of lower layers only (kolors_tryon/__init__.py draws the same map).
LAYERS: dict[str, int] = {
    "errors": -1,  # TryonError, the root of the service's own errors, beneath config
    "config": 0,
    "emulator": 0,  # standalone: it imports nothing of the service (checked below)
    "observe": 1,  # metrics helpers and the job context of logs, for every layer above
    "jobs": 2,
    "kling": 2,
    "store": 2,
    "pipeline": 3,
    "producer": 3,  # the Python door: config, jobs, store and kombu; no Celery app
    "ops": 3,  # health, logs, the /metrics text, the journal of state changes
    "tasks": 4,
    "worker": 5,
    "web": 5,  # the HTTP service, beside worker/
    "cli_checks": 5,  # what the command checks and says before it acts, beneath cli.py
    "cli_batches": 5,  # `tryon batches`, registered on the main group by cli.py
    "cli": 6,
    "__init__": 6,  # the public surface, re-exported from every layer
}


def _modules() -> list[str]:
    """Every module of the package, dotted, packages by their own name."""
    names = []
    for path in sorted(SOURCE.rglob("*.py")):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _part(module: str) -> str:
    """The top-level part a dotted name belongs to (`__init__` for the package itself)."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def _path_of(module: str) -> Path:
    base = SOURCE.parent.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _imports(module: str) -> set[str]:
    """The package's names a module imports anywhere (functions and TYPE_CHECKING too)."""
    path = _path_of(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*anchor, *([target] if target else [])])
            found.add(target)
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


MODULES = _modules()


def test_the_layer_table_names_every_part() -> None:
    """Each top-level module and subpackage has a layer, so none escapes the check."""
    assert {_part(module) for module in MODULES} <= set(LAYERS)


def test_imports_only_run_downward() -> None:
    """No module imports a part of its own layer or a higher one, except its own part."""
    upward = [
        f"{module} (layer {LAYERS[_part(module)]}) imports {name} (layer {LAYERS[_part(name)]})"
        for module in MODULES
        for name in sorted(_imports(module))
        if _part(name) != _part(module) and LAYERS[_part(name)] >= LAYERS[_part(module)]
    ]
    assert upward == []


def test_the_emulator_imports_nothing_of_the_service() -> None:
    """The emulator stands in for Kling: it must not share code with what it tests."""
    foreign = [
        f"{module} imports {name}"
        for module in MODULES
        if _part(module) == "emulator"
        for name in sorted(_imports(module))
        if _part(name) != "emulator"
    ]
    assert foreign == []


# One interpreter imports the third-party libraries once, then forks a child per module
# that imports that module alone: each child starts with none of ours imported, so an
# import cycle still shows, at a fraction of the cost of an interpreter per module
# (130 interpreters took five minutes on a loaded machine).
_FORKING_IMPORTER = """
import json, os, sys, traceback
for library in ("celery", "kombu", "sqlalchemy", "pydantic", "pydantic_settings",
                "requests", "starlette", "PIL", "jwt", "click", "sentry_sdk", "alembic",
                "prometheus_client", "uvicorn", "psycopg"):
    __import__(library)
results = []
for module in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        code, error = 0, ""
        try:
            __import__(module)
        except BaseException:
            code, error = 1, traceback.format_exc()
        os.write(write, error.encode())
        os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        error = pipe.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    results.append([module, os.waitstatus_to_exitcode(status), error])
print(json.dumps(results))
"""


@pytest.mark.timeout(300)
def test_every_module_imports_on_its_own() -> None:
    """Each module imports in a fresh interpreter: no import cycle hides behind an order."""
    done = subprocess.run(
        [sys.executable, "-c", _FORKING_IMPORTER, *MODULES],
        capture_output=True,
        text=True,
        timeout=280,
        check=True,
    )
    results = json.loads(done.stdout)
    failed = {module: stderr[-600:] for module, code, stderr in results if code != 0}
    assert failed == {}
