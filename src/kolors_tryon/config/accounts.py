"""The pool of Kling accounts: `TRYON_KLING_ACCOUNTS`, or today's single account.

An account's concurrency is its own (KLING_API.md, "Concurrency and rate": a second key
of one account adds nothing), so results per hour grow only with accounts. The pool is a
list of them, each with its own base URL, credentials and limit. Without
`TRYON_KLING_ACCOUNTS` the single-account variables make a pool of one named `default`,
so a deployment of today runs as it did.

The variable holds JSON (a list of objects) or the path of a YAML or JSON file holding
that list. A wrong entry stops start-up with a message that names the account and the
field, and never the value of a secret.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from kolors_tryon.errors import TryonError

if TYPE_CHECKING:
    from kolors_tryon.config.settings import Settings

__all__ = [
    "ACCOUNT_NAME_PATTERN",
    "DEFAULT_ACCOUNT",
    "AccountsError",
    "KlingAccount",
    "account_pool",
    "parse_accounts",
]

DEFAULT_ACCOUNT: Final = "default"
# A name travels in callback URLs, metric labels and the store: keep it plain.
ACCOUNT_NAME_PATTERN: Final = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_SECRET_FIELDS: Final = ("api_key", "access_key", "secret_key", "callback_secrets")


class AccountsError(TryonError, ValueError):
    """`TRYON_KLING_ACCOUNTS` is invalid; the message names the account and the field."""


class KlingAccount(BaseModel):
    """One Kling account (or reseller key with a limit of its own) of the pool."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=ACCOUNT_NAME_PATTERN)
    base_url: str = Field(pattern=r"^https?://[^\s]+$")
    api_key: SecretStr | None = None
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    max_in_flight: int = Field(ge=1, le=100_000)
    # Free slots go to the account least loaded relative to its weight.
    weight: float = Field(default=1.0, gt=0, le=1000)
    # The model names it may run; None: every model.
    models: tuple[str, ...] | None = None
    # Units it may spend per UTC day (counted from final_unit_deduction); None: no budget.
    daily_units: float | None = Field(default=None, gt=0)
    # Standard Webhooks `whsec_` secrets Kling signs this account's callbacks with
    # (two during a rotation); none: callbacks are authenticated by our URL token only.
    callback_secrets: tuple[SecretStr, ...] = Field(default=(), max_length=2)
    # Kept only to follow its tasks in flight to their end: it gets no new job.
    retired: bool = False

    @model_validator(mode="after")
    def _credentials(self) -> KlingAccount:
        jwt = (self.access_key is not None, self.secret_key is not None)
        if any(jwt) and not all(jwt):
            raise ValueError("access_key and secret_key must be set together")
        if self.api_key is not None and any(jwt):
            raise ValueError("set either api_key or access_key/secret_key, not both")
        if self.api_key is None and not any(jwt):
            raise ValueError("needs credentials: api_key, or access_key and secret_key")
        for secret in self.callback_secrets:
            if not secret.get_secret_value().startswith("whsec_"):
                raise ValueError("callback_secrets must start with whsec_")
        return self

    def runs(self, model_name: str | None) -> bool:
        """Whether this account may run jobs of `model_name` (None: the API's default)."""
        return self.models is None or (model_name or "kolors-virtual-try-on-v1") in self.models


def parse_accounts(raw: str) -> tuple[KlingAccount, ...]:
    """The accounts of `TRYON_KLING_ACCOUNTS`: inline JSON or the path of a YAML/JSON file.

    Raises:
        AccountsError: unreadable, not a list, an entry invalid (naming the account and
            its field, never a secret's value), or two accounts of one name.
    """
    entries = _load(raw)
    if not isinstance(entries, list) or not entries:
        raise AccountsError("TRYON_KLING_ACCOUNTS must be a non-empty list of accounts")
    accounts: list[KlingAccount] = []
    for index, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        label = f"account {name!r}" if isinstance(name, str) else f"account #{index + 1}"
        if not isinstance(entry, dict):
            raise AccountsError(f"TRYON_KLING_ACCOUNTS: {label} must be an object")
        try:
            accounts.append(KlingAccount.model_validate(entry))
        except ValidationError as exc:
            raise AccountsError(_describe(label, exc)) from None
    names = [a.name for a in accounts]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise AccountsError(f"TRYON_KLING_ACCOUNTS: account names used twice: {doubled}")
    return tuple(accounts)


def account_pool(settings: Settings) -> tuple[KlingAccount, ...]:
    """The pool the settings describe: `TRYON_KLING_ACCOUNTS`, or one `default` account
    built from the single-account variables (the sandbox emulator's key included)."""
    if settings.kling_accounts:
        return parse_accounts(settings.kling_accounts)
    from kolors_tryon.config.settings import SANDBOX_API_KEY

    api_key = settings.kling_api_key
    if settings.sandbox:
        api_key = SecretStr(SANDBOX_API_KEY)
    return (
        KlingAccount(
            name=DEFAULT_ACCOUNT,
            base_url=settings.effective_kling_base_url,
            api_key=api_key,
            access_key=settings.kling_access_key,
            secret_key=settings.kling_secret_key,
            max_in_flight=settings.max_in_flight,
        ),
    )


def _load(raw: str) -> Any:
    text = raw.strip()
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise AccountsError(f"TRYON_KLING_ACCOUNTS: not valid JSON ({exc.msg})") from None
    path = Path(text)
    if not path.is_file():
        raise AccountsError(f"TRYON_KLING_ACCOUNTS: neither JSON nor a readable file: {text}")
    content = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(content)
        except json.JSONDecodeError as exc:
            raise AccountsError(f"{path}: not valid JSON ({exc.msg})") from None
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml ships with the dev tools only
        raise AccountsError(f"{path}: a YAML file needs PyYAML installed") from None
    try:
        return yaml.safe_load(content)
    except yaml.YAMLError as exc:
        raise AccountsError(f"{path}: not valid YAML ({exc})") from None


def _describe(label: str, exc: ValidationError) -> str:
    """One line per wrong field; a secret field's value is never shown."""
    lines = []
    for err in exc.errors():
        field = ".".join(str(part) for part in err["loc"]) or "credentials"
        message = err["msg"].removeprefix("Value error, ")
        secret = any(field.startswith(name) for name in _SECRET_FIELDS)
        shown = "" if secret or not err["loc"] else f" (got {err.get('input')!r})"
        lines.append(f"TRYON_KLING_ACCOUNTS: {label}, field {field}: {message}{shown}")
    return "\n  ".join(lines)
