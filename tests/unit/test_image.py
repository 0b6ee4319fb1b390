"""The image: its build context (.dockerignore) and its user setup, run as far as it runs here.

No Docker engine runs here. The build context is computed with Docker's rules (the last
matching pattern of .dockerignore decides, a `!` lets a path back in, an excluded folder
excludes what it holds); the Dockerfile's user setup (its RUN lines that add users and
create or own paths) is executed verbatim in a chroot of a fresh root, with this
machine's /usr mounted read-only in a mount namespace of its own.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from harness.compose import ROOT, load_compose, read_dockerfile

# What must never reach the daemon: hundreds of MB (.venv), local state and secrets.
NEVER_IN_CONTEXT = [".venv", ".git", "data", "bench/results", "tests", ".env", ".mypy_cache"]
# The context is the source and the lock: a few MB at most.
CONTEXT_LIMIT_BYTES = 5 * 1024 * 1024
UNSHARE_MOUNT = ["unshare", "--mount", "--propagation", "private", "--"]


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match plus `**`) as a regular expression."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out = out[:-2] + "(?:.*/)?"
                i += 1
            continue
        char = pattern[i]
        out += "[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char)
        i += 1
    return re.compile(out)


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str], str]]:
    """(is_exception, regex, text) per line of .dockerignore, in order."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        text = line.lstrip("!").strip("/")
        rules.append((negated, _pattern(os.path.normpath(text)), text))
    return rules


def excluded(path: str, rules: list[tuple[bool, re.Pattern[str], str]]) -> bool:
    """Docker's verdict for a context-relative path: the last rule matching it, or matching
    one of its parent folders, decides."""
    parts = path.split("/")
    verdict = False
    for negated, regex, _ in rules:
        for depth in range(1, len(parts) + 1):
            if regex.fullmatch("/".join(parts[:depth])):
                verdict = not negated
                break
    return verdict


def build_context() -> dict[str, int]:
    """Every file Docker would send from this work tree, with its size."""
    rules = dockerignore_rules()
    exceptions = [text for negated, _, text in rules if negated]
    files: dict[str, int] = {}
    for folder, dirs, names in os.walk(ROOT):
        relative = os.path.relpath(folder, ROOT)
        prefix = "" if relative == "." else relative + "/"
        # An excluded folder is skipped unless an exception may let something in it back.
        dirs[:] = [
            d
            for d in dirs
            if not excluded(prefix + d, rules)
            or any(text.startswith(prefix + d + "/") for text in exceptions)
        ]
        for name in names:
            path = prefix + name
            if not excluded(path, rules):
                files[path] = (Path(folder) / name).stat().st_size
    return files


def test_build_context_holds_what_the_dockerfile_copies_and_nothing_heavy() -> None:
    """Every COPY source is in the context; .venv, .git, data, caches, tests are not."""
    context = build_context()
    for copy in read_dockerfile().copies:
        for source in copy[:-1]:
            assert any(p == source or p.startswith(source.rstrip("/") + "/") for p in context), (
                source
            )
    for path in NEVER_IN_CONTEXT:
        assert not any(p == path or p.startswith(path + "/") for p in context), path
    assert not any("__pycache__" in p or p.endswith(".pyc") for p in context)
    size = sum(context.values())
    print(f"build context: {len(context)} files, {size / 1e6:.2f} MB")
    assert size < CONTEXT_LIMIT_BYTES


def _user_setup(root: Path) -> list[str]:
    """The Dockerfile's RUN lines that make users and paths, executed in `root`."""
    steps = [
        run
        for run in read_dockerfile().runs
        if re.search(r"\b(useradd|adduser|mkdir|chown|chmod)\b", run)
    ]
    assert steps, "the Dockerfile creates no user and no path"
    etc = root / "etc"
    etc.mkdir(parents=True)
    # The base image's account files, reduced to root (python:3.11-slim is Debian too).
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\n")
    shutil.copy("/etc/login.defs", etc / "login.defs")
    shutil.copytree("/etc/skel", etc / "skel", symlinks=True)
    for folder in ("usr", "home", "tmp", "root"):
        (root / folder).mkdir()
    for link in ("bin", "sbin", "lib", "lib64"):
        (root / link).symlink_to(f"usr/{link}")
    return steps


def _in_root(root: Path, command: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    """`command` by sh in a chroot of `root` (this machine's /usr read-only inside), in a
    mount namespace of its own: nothing outside `root` is touched or left mounted."""
    userspec = [f"--userspec={user}:{user}"] if user else []
    script = 'mount --bind /usr "$0/usr" && mount -o remount,bind,ro "$0/usr" && exec chroot "$@"'
    return subprocess.run(
        [*UNSHARE_MOUNT, "sh", "-c", script, str(root), *userspec, str(root), "sh", "-ec", command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_image_user_setup_creates_every_mount_point_owned_by_the_runtime_user(
    tmp_path: Path,
) -> None:
    """The data dir and each volume's mount point exist, belong to USER and it can write."""
    image = read_dockerfile()
    root = tmp_path / "root"
    for step in _user_setup(root):
        done = _in_root(root, step)
        assert done.returncode == 0, f"{step}\n{done.stderr}"
    users = {
        line.split(":")[0]: (int(line.split(":")[2]), int(line.split(":")[3]))
        for line in (root / "etc" / "passwd").read_text().splitlines()
    }
    assert image.user in users and users[image.user][0] != 0, image.user
    uid, gid = users[image.user]
    paths = {image.env["TRYON_DATA_DIR"]}
    for service in load_compose()["services"].values():
        if service.get("build") == ".":
            paths |= {str(volume).split(":")[1] for volume in service.get("volumes", [])}
    assert "/data/results" in paths
    for path in sorted(paths):
        local = root / path.lstrip("/")
        assert local.is_dir(), path
        assert (local.stat().st_uid, local.stat().st_gid) == (uid, gid), path
        probe = _in_root(root, f"touch {path}/probe && rm {path}/probe", user=image.user)
        assert probe.returncode == 0, f"{image.user} cannot write {path}: {probe.stderr}"


def test_image_installs_from_the_runtime_lock_with_flower() -> None:
    """The image installs the tested versions (runtime.lock), Flower's extra included."""
    runs = read_dockerfile().runs
    assert any("-r requirements/runtime.lock" in run for run in runs)
    assert any("--no-deps ." in run for run in runs)
    lock = (ROOT / "requirements" / "runtime.lock").read_text()
    assert re.search(r"^flower==", lock, re.MULTILINE)
