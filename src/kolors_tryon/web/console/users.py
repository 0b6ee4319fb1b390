"""The console's users: read from TRYON_CONSOLE_USERS, checked with argon2.

The variable holds a JSON list, or the path of a file holding one (so that a secret
store can mount it):

    [{"name": "ana", "password_hash": "$argon2id$...", "producers": ["default"]},
     {"name": "ops", "password_hash": "$argon2id$...", "admin": true}]

`tryon console hash-password` makes the hashes. Each user sees the jobs of its producers
only; an admin sees all of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kolors_tryon.config import Settings
from kolors_tryon.errors import TryonError
from kolors_tryon.store.console_reads import ProducerScope

__all__ = [
    "ConsoleMisconfigured",
    "ConsoleUser",
    "hash_password",
    "load_users",
    "password_matches",
]

_HASHER: Final = PasswordHasher()
# Checked when the name is unknown, so that a wrong name costs the time a wrong password
# does and the answer's timing does not tell which names exist.
_DECOY_HASH: Final = _HASHER.hash("decoy password, never anyone's")


class ConsoleMisconfigured(TryonError):
    """The console's settings cannot be used; the message says which and why."""


@dataclass(frozen=True)
class ConsoleUser:
    name: str
    password_hash: str
    producers: frozenset[str]
    admin: bool = False

    @property
    def scope(self) -> ProducerScope:
        return ProducerScope(self.producers, everything=self.admin)


def hash_password(password: str) -> str:
    """An argon2id hash of `password` (argon2-cffi's recommended parameters)."""
    return _HASHER.hash(password)


def password_matches(user: ConsoleUser | None, password: str) -> bool:
    """Whether `password` is the user's; an unknown user costs the same time and fails."""
    try:
        return _HASHER.verify(user.password_hash if user else _DECOY_HASH, password) and (
            user is not None
        )
    except (VerificationError, InvalidHashError):
        return False


def load_users(settings: Settings) -> dict[str, ConsoleUser]:
    """The configured users by name; empty when the console is closed.

    Raises:
        ConsoleMisconfigured: users without TRYON_CONSOLE_SECRET, unreadable JSON, a user
            without a name or an argon2 hash, a name given twice.
    """
    if settings.console_users is None:
        return {}
    raw = settings.console_users.get_secret_value().strip()
    if not raw.startswith("["):
        try:
            raw = Path(raw).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ConsoleMisconfigured(
                f"TRYON_CONSOLE_USERS: neither a JSON list nor a readable file ({exc.strerror})"
            ) from None
    try:
        items = json.loads(raw)
    except ValueError as exc:
        raise ConsoleMisconfigured(f"TRYON_CONSOLE_USERS is not valid JSON: {exc}") from None
    if not isinstance(items, list):
        raise ConsoleMisconfigured("TRYON_CONSOLE_USERS must be a JSON list of users")
    users: dict[str, ConsoleUser] = {}
    for index, item in enumerate(items):
        user = _user(index, item)
        if user.name in users:
            raise ConsoleMisconfigured(f"TRYON_CONSOLE_USERS: user {user.name!r} given twice")
        users[user.name] = user
    if users and settings.console_secret is None:
        raise ConsoleMisconfigured(
            "TRYON_CONSOLE_USERS is set but TRYON_CONSOLE_SECRET is not: the console "
            "signs its session cookies with it (32 random bytes or more)"
        )
    return users


def _user(index: int, item: Any) -> ConsoleUser:
    where = f"TRYON_CONSOLE_USERS[{index}]"
    if not isinstance(item, dict):
        raise ConsoleMisconfigured(f"{where} must be an object")
    name, password_hash = item.get("name"), item.get("password_hash")
    if not isinstance(name, str) or not name.strip() or len(name) > 64:
        raise ConsoleMisconfigured(f"{where}.name must be a non-empty string (64 at most)")
    if not isinstance(password_hash, str) or not password_hash.startswith("$argon2"):
        raise ConsoleMisconfigured(
            f"{where}.password_hash must be an argon2 hash (`tryon console hash-password`)"
        )
    producers = item.get("producers", [])
    if not isinstance(producers, list) or not all(isinstance(p, str) for p in producers):
        raise ConsoleMisconfigured(f"{where}.producers must be a list of producer names")
    admin = item.get("admin", False)
    if not isinstance(admin, bool):
        raise ConsoleMisconfigured(f"{where}.admin must be true or false")
    return ConsoleUser(name.strip(), password_hash, frozenset(producers), admin)
