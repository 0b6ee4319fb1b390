"""What the `tryon` command checks and says before it does anything: no silent surprises.

- Unknown `TRYON_` variables (environment and `.env`): Settings ignores them, so a typo
  (`TRYON_MAX_INFLIGHT=3`) would leave the default in force without a word. Each gets a
  warning with the nearest known name.
- The embedded fallbacks: without `TRYON_BROKER_URL` / `TRYON_DATABASE_URL` a command
  works on a SQLite broker and store in the data folder of the current directory, which
  is right for a first try and wrong for a producer who forgot a variable: say so.
- The broker's login: RabbitMQ refusing our user or password is a configuration error
  no retry will fix, so it ends the command with one line instead of tracebacks (and a
  worker exits instead of retrying for ever). A broker that does not answer is another
  matter: a worker waits for it (DESIGN.md invariant 6).

Pure helpers returning the lines to show; `cli/door.py` and the commands decide where
they go and the exit.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from dotenv import dotenv_values
from kombu import Connection

from kolors_tryon.config import ENV_PREFIX, Settings

__all__ = [
    "broker_problem",
    "broker_refusal",
    "embedded_fallbacks",
    "unknown_variables",
]

# Variables of ours that are not settings: the test harness's service addresses.
_NOT_SETTINGS_PREFIX: Final = f"{ENV_PREFIX}TEST_"
_ENV_FILE: Final = Path(".env")


def _known_names() -> list[str]:
    return [f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields]


def unknown_variables(environ: Mapping[str, str], env_file: Path | None = _ENV_FILE) -> list[str]:
    """One warning per `TRYON_` variable that no setting reads, with the nearest name."""
    sources: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        for name in dotenv_values(env_file):
            sources[name.upper()] = str(env_file)
    for name in environ:
        sources[name.upper()] = "environment"
    known = _known_names()
    warnings = []
    for name, source in sorted(sources.items()):
        if not name.startswith(ENV_PREFIX) or name.startswith(_NOT_SETTINGS_PREFIX):
            continue
        if name in known:
            continue
        guess = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {guess[0]}?" if guess else "; `tryon config env-example` lists them"
        warnings.append(f"unknown variable {name} ({source}) is ignored{hint}")
    return warnings


def embedded_fallbacks(
    settings: Settings, *, broker: bool = True, store: bool = True
) -> str | None:
    """The line saying which embedded broker and store a command falls back to, if any."""
    parts = []
    if broker and not settings.broker_url:
        parts.append(f"the embedded broker {(settings.data_dir / 'broker.sqlite').resolve()}")
    if store and not settings.database_url:
        parts.append(f"the SQLite job store {(settings.data_dir / 'jobs.sqlite').resolve()}")
    if not parts:
        return None
    unset = [
        name
        for name, used in (("TRYON_BROKER_URL", broker), ("TRYON_DATABASE_URL", store))
        if used and not getattr(settings, name.removeprefix(ENV_PREFIX).lower())
    ]
    return (
        f"using {' and '.join(parts)} ({' and '.join(unset)} not set: "
        "set them for RabbitMQ and PostgreSQL)"
    )


def broker_refusal(exc: BaseException, settings: Settings) -> str | None:
    """One line for a broker error no retry will fix (a refused login), else None."""
    from amqp.exceptions import AccessRefused, NotAllowed

    where = Connection(settings.effective_broker_url).as_uri()  # the password masked
    if isinstance(exc, AccessRefused):
        return (
            f"the broker refused the login of TRYON_BROKER_URL ({where}): wrong user or "
            "password; fix the variable"
        )
    if isinstance(exc, NotAllowed):
        return (
            f"the broker refused access to the virtual host of TRYON_BROKER_URL ({where}): "
            "wrong vhost, or the user has no permission on it"
        )
    return None


def broker_problem(settings: Settings) -> str | None:
    """Log in to RabbitMQ once: the line to show when the login is refused, else None.

    Only a refusal counts: a broker that does not answer yet is waited for by the
    worker, as every other outage is.
    """
    if not settings.uses_rabbitmq:
        return None
    connection = Connection(
        settings.effective_broker_url, connect_timeout=settings.http_connect_timeout
    )
    try:
        connection.connect()
    except Exception as exc:
        return broker_refusal(exc, settings)
    finally:
        connection.release()
    return None
