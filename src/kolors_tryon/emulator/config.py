"""The emulator's configuration: where it listens, whom it admits, and its fault knobs.

One frozen object holds everything, so that a request handler reads a consistent
snapshot even while a test changes knobs at run time (``EmulatorServer.configure``
swaps the whole object instead of mutating fields).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kolors_tryon.emulator.errors import HTTP_STATUS

#: Account-level refusals that ``account_error`` may emulate (all HTTP 429, never retryable).
ACCOUNT_ERROR_CODES = frozenset({1100, 1101, 1102})

#: Fields fixed once the socket is bound; every other field is a run-time knob.
BIND_FIELDS = frozenset({"host", "port", "prefix"})

_RATE_FIELDS = (
    "fail_rate",
    "error_rate",
    "throttle_rate",
    "slow_rate",
    "drop_rate",
    "late_create_rate",
)
#: Knobs that must be finite numbers >= 0: an infinite hold or lag would hang a client
#: for good, and NaN slips through every comparison unnoticed.
_NON_NEGATIVE_FIELDS = (
    "index_lag",
    "late_create_seconds",
    "units_total",
    "account_costs_min_interval",
)


def normalize_prefix(prefix: str) -> str:
    """Return ``prefix`` as ``""`` or ``"/segment..."`` without a trailing slash.

    Resellers mount the API under a path such as ``/kling``; accepting ``kling``,
    ``/kling`` and ``/kling/`` alike spares callers a class of typos.
    """
    cleaned = prefix.strip().strip("/")
    return f"/{cleaned}" if cleaned else ""


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything the emulator does differently from run to run.

    Attributes:
        host: Interface to bind.
        port: TCP port; 0 picks a free one (read it back from ``EmulatorServer.base_url``).
        prefix: Path prefix for every endpoint, control endpoints included (e.g. ``/kling``).
        api_keys: Static bearer keys accepted, as resellers issue them.
        access_key: When set with ``secret_key``, HS256 JWTs whose ``iss`` is this are accepted.
        secret_key: The key those JWTs must be signed with.
        concurrency_limit: In-flight tasks the (single, emulated) account may hold.
        task_duration: Seconds from creation to the end of a task; ``submitted`` for the
            first quarter, ``processing`` until the end.
        fail_rate: Fraction of created tasks that end ``failed``.
        error_rate: Fraction of API requests answered HTTP 500 / code 5000.
        throttle_rate: Fraction of API requests answered HTTP 429 / code 1302.
        retry_after: ``Retry-After`` seconds sent with 1302; None sends no header.
        slow_rate: Fraction of API requests held ``slow_seconds`` before the answer.
        slow_seconds: How long a slow request is held.
        drop_rate: Fraction of successful creates whose connection is closed without an
            answer, after the task was made (the ambiguous create).
        index_lag: Seconds a new task stays out of the ``external_task_id`` index, as a
            lagging index would: lookup by ``external_task_id`` answers 404 / 1203 and a
            create with the same ``external_task_id`` is not refused as a duplicate (it
            makes a second task). Lookup by ``task_id`` and the list see it at once. Fixed
            per task at creation, like ``task_duration``.
        late_create_rate: Fraction of valid creates processed after the client has given
            up: the request is held ``late_create_seconds`` with no task made yet (lookup
            says 404), then the task is made (uniqueness and concurrency checked then, and
            counted like any create) and the answer is sent to a client that is gone.
            Independent of ``drop_rate``, which may still drop that answer.
        late_create_seconds: How long a late create is held; set it above the client's
            read timeout (the default exceeds the service's default 30 s) so that the
            client sees a read timeout.
        units_total: Total quantity of the account's try-on resource pack, as
            ``GET /account/costs`` reports it; the remaining quantity is this minus one
            unit per succeeded task (never below 0; an empty pack does not refuse creates,
            ``account_error=1102`` does that).
        account_costs_enabled: Whether ``GET /account/costs`` exists; False answers it
            404 with a non-JSON body, as a reseller without the endpoint does.
        account_costs_min_interval: Seconds that must pass after an admitted
            ``GET /account/costs`` before the next is admitted; a call sooner answers
            429 / 1302 (with ``Retry-After``: the seconds left, unless ``retry_after`` is
            None). 0 disables the limit.
        account_error: 1100, 1101 or 1102: while set, every create is refused with it.
        create_error: Any business code of the table: while set, every create is refused
            with it (and its HTTP status), to exercise a client's error policy code by code.
        image_key: Key of the image ordinal in ``task_result.images`` (``"id"`` like resellers).
        seed: Seed of the fault dice, for reproducible runs.
        public_base_url: Base of result image URLs; default the server's own base URL.
        callback_signing_secrets: `whsec_` secrets (at most two: a rotation) that sign
            every callback with Standard Webhooks headers (`webhook-id`,
            `webhook-timestamp`, `webhook-signature`), as Kling's console can set them;
            empty: callbacks are unsigned, as Kling's documented protocol sends them.
    """

    host: str = "127.0.0.1"
    port: int = 0
    prefix: str = ""
    api_keys: tuple[str, ...] = ("sk-sandbox",)
    access_key: str | None = None
    secret_key: str | None = None
    concurrency_limit: int = 5
    task_duration: float = 3.0
    fail_rate: float = 0.0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    retry_after: float | None = 1.0
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    drop_rate: float = 0.0
    index_lag: float = 0.0
    late_create_rate: float = 0.0
    late_create_seconds: float = 35.0
    units_total: float = 1000.0
    account_costs_enabled: bool = True
    account_costs_min_interval: float = 1.0
    account_error: int | None = None
    create_error: int | None = None
    image_key: str = "index"
    seed: int | None = None
    public_base_url: str | None = None
    callback_signing_secrets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Normalise and check values, so a bad knob fails where it is set, not mid-run."""
        # A JSON control request or a click option hands over a list; keep the tuple type.
        keys = (self.api_keys,) if isinstance(self.api_keys, str) else tuple(self.api_keys)
        object.__setattr__(self, "api_keys", keys)
        object.__setattr__(self, "prefix", normalize_prefix(self.prefix))
        if self.public_base_url is not None:
            object.__setattr__(self, "public_base_url", self.public_base_url.rstrip("/"))
        for name in _RATE_FIELDS:
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
        for name in _NON_NEGATIVE_FIELDS:
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
            # JSON may hand over an int; keep the declared type in answers and stats.
            object.__setattr__(self, name, float(value))
        if not isinstance(self.account_costs_enabled, bool):
            # A JSON "false" string would otherwise be truthy and enable the endpoint.
            raise ValueError(
                f"account_costs_enabled must be true or false, got {self.account_costs_enabled!r}"
            )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port!r}")
        if self.concurrency_limit < 0:
            raise ValueError("concurrency_limit must be >= 0")
        if self.task_duration < 0 or self.slow_seconds < 0:
            raise ValueError("task_duration and slow_seconds must be >= 0")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0 or None")
        if self.account_error is not None and self.account_error not in ACCOUNT_ERROR_CODES:
            raise ValueError(
                f"account_error must be 1100, 1101, 1102 or None: {self.account_error!r}"
            )
        if self.create_error is not None and self.create_error not in HTTP_STATUS:
            raise ValueError(f"create_error must be a code of the table: {self.create_error!r}")
        if self.image_key not in ("index", "id"):
            raise ValueError("image_key must be 'index' or 'id'")
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("access_key and secret_key must be set together")
        secrets = tuple(self.callback_signing_secrets)  # JSON hands over a list
        if len(secrets) > 2 or not all(
            isinstance(x, str) and x.startswith("whsec_") for x in secrets
        ):
            raise ValueError("callback_signing_secrets: at most two whsec_ secrets")
        object.__setattr__(self, "callback_signing_secrets", secrets)

    def with_knobs(self, knobs: Mapping[str, Any]) -> EmulatorConfig:
        """Return a copy with run-time knobs changed.

        Raises:
            ValueError: A name is unknown, is fixed at bind time, or a value is invalid.
        """
        known = {field.name for field in dataclasses.fields(self)}
        for name in knobs:
            if name not in known:
                raise ValueError(f"unknown knob {name!r}")
            if name in BIND_FIELDS:
                raise ValueError(f"{name} cannot change while the server runs")
        try:
            return dataclasses.replace(self, **dict(knobs))
        except TypeError as exc:  # e.g. a string where a number belongs
            raise ValueError(str(exc)) from exc

    def public_dict(self) -> dict[str, Any]:
        """Return the configuration as JSON-able data with keys and secrets masked."""
        data = dataclasses.asdict(self)
        data["api_keys"] = ["***" for _ in self.api_keys]
        data["callback_signing_secrets"] = ["***" for _ in self.callback_signing_secrets]
        if self.secret_key is not None:
            data["secret_key"] = "***"  # noqa: S105 (a mask, not a password)
        return data
