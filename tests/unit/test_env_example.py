""".env.example lists every TRYON_ variable of Settings, each with its description."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from kolors_tryon.config import Settings
from kolors_tryon.config.env_example import (
    missing_descriptions,
    render_configuration_reference,
    render_env_example,
)
from kolors_tryon.config.settings import ENV_PREFIX

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / ".env.example"
REFERENCE = ROOT / "docs" / "configuration.md"


def test_env_example_is_what_the_settings_write() -> None:
    """The committed file is current: regenerate with `tryon config env-example > .env.example`."""
    assert EXAMPLE.read_text() == render_env_example()


def test_env_example_names_every_setting_and_nothing_else() -> None:
    """No variable missing, none stale: the file's variables are exactly Settings' fields."""
    names = re.findall(rf"^({ENV_PREFIX}[A-Z0-9_]+)=", EXAMPLE.read_text(), flags=re.MULTILINE)
    assert sorted(names) == sorted(f"{ENV_PREFIX}{f.upper()}" for f in Settings.model_fields)


def test_every_setting_says_what_it_does() -> None:
    """Each Settings field has a description (it becomes the variable's line in the file)."""
    assert missing_descriptions() == []


def test_a_copied_env_example_configures_nothing(tmp_path: Path) -> None:
    """Empty values mean the defaults: `cp .env.example .env` changes no setting."""
    env_file = tmp_path / ".env"
    env_file.write_text(EXAMPLE.read_text())
    assert Settings(_env_file=env_file) == Settings(_env_file=None)


def test_the_command_prints_the_file() -> None:
    """`tryon config env-example` writes exactly what the file must hold."""
    printed = subprocess.run(
        [sys.executable, "-m", "kolors_tryon.cli", "config", "env-example"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert printed.stdout == render_env_example()


def test_configuration_reference_is_what_the_settings_write() -> None:
    """docs/configuration.md is current: `tryon config reference > docs/configuration.md`."""
    assert REFERENCE.read_text() == render_configuration_reference()


def test_configuration_reference_names_every_setting_once() -> None:
    """Each Settings field has exactly one row in the reference, and no stale row remains."""
    names = re.findall(rf"^\| `({ENV_PREFIX}[A-Z0-9_]+)` \|", REFERENCE.read_text(), re.MULTILINE)
    assert sorted(names) == sorted(f"{ENV_PREFIX}{f.upper()}" for f in Settings.model_fields)
