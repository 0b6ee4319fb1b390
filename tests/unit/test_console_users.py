"""The review console's users: `tryon console hash-password`, and TRYON_CONSOLE_USERS read
(inline or from a file) or refused with a message that names what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kolors_tryon.cli import main
from kolors_tryon.config import Settings
from kolors_tryon.web.console.users import (
    ConsoleMisconfigured,
    hash_password,
    load_users,
    password_matches,
)

SECRET = "console-secret-0123456789abcdef"


def _settings(users: object, secret: str | None = SECRET) -> Settings:
    raw = users if isinstance(users, str) else json.dumps(users)
    return Settings.model_validate({"console_users": raw, "console_secret": secret})


def test_hash_password_prints_an_entry_whose_hash_checks_the_password() -> None:
    """The command reads the password from stdin and prints a ready entry."""
    result = CliRunner().invoke(
        main, ["console", "hash-password", "--name", "ana", "--producer", "shop"], "pass-word-1\n"
    )
    assert result.exit_code == 0, result.output
    entry = json.loads(result.output)
    assert entry["name"] == "ana"
    assert entry["producers"] == ["shop"]
    assert "pass-word-1" not in result.output
    (user,) = load_users(_settings([entry])).values()
    assert password_matches(user, "pass-word-1")
    assert not password_matches(user, "pass-word-2")
    assert not password_matches(None, "pass-word-1")


def test_a_short_password_is_refused() -> None:
    """Eight characters at least."""
    result = CliRunner().invoke(main, ["console", "hash-password"], "short\n")
    assert result.exit_code != 0
    assert "8 characters" in result.output


def test_users_come_from_a_file_too(tmp_path: Path) -> None:
    """TRYON_CONSOLE_USERS may name a file holding the list (a mounted secret)."""
    path = tmp_path / "users.json"
    path.write_text(
        json.dumps([{"name": "ops", "password_hash": hash_password("x" * 8), "admin": True}])
    )
    users = load_users(_settings(str(path)))
    assert users["ops"].scope.everything


def test_no_users_is_a_closed_console() -> None:
    """Unset: no users, nothing to mount."""
    assert load_users(Settings.model_validate({})) == {}


@pytest.mark.parametrize(
    ("users", "secret", "says"),
    [
        ([{"name": "a", "password_hash": "$argon2id$x"}], None, "TRYON_CONSOLE_SECRET"),
        ("[not json", SECRET, "not valid JSON"),
        ({"name": "a"}, SECRET, "JSON list"),
        ([{"password_hash": "$argon2id$x"}], SECRET, "name"),
        ([{"name": "a", "password_hash": "plain"}], SECRET, "argon2"),
        ([{"name": "a", "password_hash": "$argon2id$x", "producers": "p"}], SECRET, "producers"),
        ([{"name": "a", "password_hash": "$argon2id$x"}] * 2, SECRET, "twice"),
        ("/no/such/file.json", SECRET, "readable file"),
    ],
)
def test_unusable_users_are_refused_with_the_reason(
    users: object, secret: str | None, says: str
) -> None:
    """Each mistake is named, so that `tryon web` stops with a message, not a traceback."""
    with pytest.raises(ConsoleMisconfigured, match=says):
        load_users(_settings(users, secret))
