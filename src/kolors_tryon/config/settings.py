"""Typed configuration, built once from `TRYON_*` variables (or a `.env` file) and passed in.

Nothing here reads the environment at import time: `Settings()` does, when called, and
`load_settings()` turns a validation failure into one message that names the variable.
"""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path
from typing import Annotated, Literal, Self

from kombu.transport import TRANSPORT_ALIASES
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from kolors_tryon.config import defaults
from kolors_tryon.config.producers import DEFAULT_PRODUCER, parse_weights, split_api_key
from kolors_tryon.errors import TryonError

ENV_PREFIX = "TRYON_"
OFFICIAL_BASE_URL = "https://api-singapore.klingai.com"
# The key the bundled emulator accepts in sandbox mode; it is not a secret.
SANDBOX_API_KEY = "sk-sandbox"


# Broker URL schemes that reach a transport: RabbitMQ's first, then the embedded one
# (config/embedded_broker.py) and whatever else kombu knows (its part before any "+",
# as in `sqla+sqlite://`). Anything else ends in a KeyError deep inside kombu.
_RABBITMQ_SCHEMES = ("amqp", "amqps", "pyamqp")
_EMBEDDED_SCHEME = "tryon-sqlite"
# The spelling most hosting platforms hand out (Heroku, Render, Fly...): SQLAlchemy 2
# refuses it, so it is read as what it means, on the driver we ship (psycopg 3).
_POSTGRES_ALIAS = "postgres://"
_POSTGRES_WITH_DRIVER = "postgresql+psycopg://"
# "user:password@" in a URL echoed back in an error message.
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*):[^/\s@]*@")


class SettingsError(TryonError, ValueError):
    """The configuration is invalid; the message names each variable and what is wrong."""


class Settings(BaseSettings):
    """Every knob of the service. Field `x` is read from the variable `TRYON_X`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
        # docker compose passes unset variables as empty strings: treat them as unset.
        env_ignore_empty=True,
    )

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Field(
        default=Path("data"), description="Embedded broker, SQLite store and result copies."
    )
    broker_url: str | None = Field(default=None, description="Celery broker; embedded if unset.")
    database_url: str | None = Field(
        default=None, description="Job store (SQLAlchemy URL); SQLite in the data dir if unset."
    )
    result_backend: str | None = Field(
        default=None, description="Celery result backend; the job store's database if unset."
    )
    embedded_visibility_timeout: float = Field(
        default=defaults.EMBEDDED_VISIBILITY_TIMEOUT,
        gt=0,
        le=86400,
        description="Embedded broker: seconds before an unacked message is delivered again.",
    )
    namespace: str = Field(
        default="tryon",
        pattern=r"^[a-z][a-z0-9_-]{0,30}$",
        description="Prefix of every queue and exchange name (tryon.jobs, tryon.events...).",
    )
    broker_polling_interval: float = Field(
        default=defaults.BROKER_POLLING_INTERVAL,
        gt=0,
        le=5,
        description="Seconds between polls of an embedded broker.",
    )

    # --- the Kling account -------------------------------------------------------------
    kling_base_url: str = Field(default=OFFICIAL_BASE_URL, description="API base with any prefix.")
    kling_api_key: SecretStr | None = Field(default=None, description="Static bearer (resellers).")
    kling_access_key: SecretStr | None = Field(default=None, description="JWT issuer (AK).")
    kling_secret_key: SecretStr | None = Field(default=None, description="JWT signing key (SK).")
    kling_jwt_lifetime: int = Field(
        default=defaults.KLING_JWT_LIFETIME,
        ge=60,
        le=86400,
        description="Seconds each signed JWT is valid (AK/SK credentials).",
    )
    kling_accounts: str | None = Field(
        default=None,
        description="A pool of accounts (docs/accounts.md): a JSON list, or the path of a "
        "YAML/JSON file; unset: the single account above, named `default`.",
    )
    sandbox_emulator_url: str = Field(
        default="http://127.0.0.1:8765", description="Emulator used when no credentials are set."
    )
    max_in_flight: int = Field(
        # No real account has 100,000 slots; the bound is that high so that a benchmark
        # can take the account limit out of the picture (bench/throughput.py).
        default=defaults.MAX_IN_FLIGHT,
        ge=1,
        le=100_000,
        description="Account try-on slots.",
    )

    # --- network budget (the numbers themselves: config/defaults.py) -------------------
    http_connect_timeout: float = Field(
        default=defaults.HTTP_CONNECT_TIMEOUT,
        gt=0,
        le=120,
        description="Seconds to open a connection (every network call).",
    )
    http_read_timeout: float = Field(
        default=defaults.HTTP_READ_TIMEOUT,
        gt=0,
        le=600,
        description="Seconds to wait for an answer (every network call).",
    )
    http_attempts: int = Field(
        default=defaults.HTTP_ATTEMPTS,
        ge=1,
        le=10,
        description="Quick in-task attempts of safe (read-only) calls.",
    )

    # --- retry policy across the queue -------------------------------------------------
    retry_backoff_base: float = Field(
        default=defaults.RETRY_BACKOFF_BASE,
        gt=0,
        le=600,
        description="First wait after a retryable create failure (doubles each retry).",
    )
    retry_backoff_max: float = Field(
        default=defaults.RETRY_BACKOFF_MAX,
        gt=0,
        le=86400,
        description="Longest wait between create retries.",
    )
    submit_max_retries: int = Field(
        default=defaults.SUBMIT_MAX_RETRIES,
        ge=0,
        le=1000,
        description="Retryable create failures before the job fails.",
    )
    busy_backoff_base: float = Field(
        default=defaults.BUSY_BACKOFF_BASE,
        ge=1.0,
        le=600,
        description="First wait after 1303 (API: >= 1 s).",
    )
    account_probe_interval: float = Field(
        default=defaults.ACCOUNT_PROBE_INTERVAL,
        gt=0,
        le=86400,
        description="Pause before probing a blocked account.",
    )
    submit_lease_seconds: float = Field(
        default=defaults.SUBMIT_LEASE_SECONDS,
        gt=0,
        le=86400,
        description="Seconds a submit claim holds a slot before the sweep may take it over.",
    )
    claim_lease_seconds: float = Field(
        default=defaults.CLAIM_LEASE_SECONDS,
        ge=2,
        le=3600,
        description="Seconds a worker's fresh claim outlives that worker's last heartbeat "
        "(a killed worker's slots are handed out again after this).",
    )
    delivery_limit: int = Field(
        default=defaults.DELIVERY_LIMIT,
        ge=1,
        le=100,
        description="Deliveries before RabbitMQ dead-letters a message.",
    )
    task_failure_retries: int = Field(
        default=defaults.TASK_FAILURE_RETRIES,
        ge=0,
        le=100,
        description="Retries of a task that raised before it is parked.",
    )
    create_visibility_grace: float = Field(
        default=defaults.CREATE_VISIBILITY_GRACE,
        ge=0,
        le=3600,
        description="Seconds after a create may have been made during which a lookup's "
        "'not found' proves nothing (the API may show a new task late).",
    )
    outage_retry_max: float = Field(
        default=defaults.OUTAGE_RETRY_MAX,
        gt=0,
        le=600,
        description="Longest wait between tries while the job store or broker is down.",
    )

    # --- tracking ----------------------------------------------------------------------
    track_first_delay: float = Field(
        default=defaults.TRACK_FIRST_DELAY,
        ge=0,
        le=3600,
        description="Seconds from submission to the first status query.",
    )
    track_interval_max: float = Field(
        default=defaults.TRACK_INTERVAL_MAX,
        gt=0,
        le=3600,
        description="Longest gap between status queries of a running task.",
    )
    track_deadline: float = Field(
        default=defaults.TRACK_DEADLINE,
        gt=0,
        le=30 * 86400,
        description="Seconds from submission to report a task overdue (job.overdue); "
        "it is still followed, and ends when Kling ends it.",
    )
    overdue_poll_interval: float = Field(
        default=defaults.OVERDUE_POLL_INTERVAL,
        gt=0,
        le=86400,
        description="Gap between status queries of an overdue task.",
    )
    sweep_interval: float = Field(
        default=defaults.SWEEP_INTERVAL,
        gt=0,
        le=3600,
        description="Seconds between sweeps for stranded jobs (each worker, jittered).",
    )
    callback_overdue_after: float = Field(
        default=defaults.CALLBACK_OVERDUE_AFTER,
        gt=0,
        le=86400,
        description="With callbacks on: seconds from submission to the first status query.",
    )
    callback_poll_max: float = Field(
        default=defaults.CALLBACK_POLL_MAX,
        gt=0,
        le=86400,
        description="With callbacks on: the longest gap between safety-net status queries.",
    )
    result_expiry: float = Field(
        default=defaults.RESULT_EXPIRY,
        gt=0,
        le=90 * 86400,
        description="Seconds Celery task results are kept (expired ones are deleted by "
        "the sweep, at most once an hour; no beat process is needed).",
    )

    # --- input checks ------------------------------------------------------------------
    url_preflight: bool = Field(default=False, description="Fetch image URLs and check them.")
    preflight_allow_private: bool = Field(
        default=False, description="Let preflight fetch private, loopback, link-local hosts."
    )
    web_preflight_slots: int = Field(
        default=defaults.WEB_PREFLIGHT_SLOTS,
        ge=1,
        le=1000,
        description="URL preflights tryon web runs at once (more: 503 at once).",
    )

    # --- results and reporting ---------------------------------------------------------
    store_result_copies: bool = Field(
        default=True, description="Keep copies of result images (Kling's expire in 30 days)."
    )
    results_dir: Path | None = Field(default=None, description="Copies of result images.")
    # Where copies go (README "Results and retention"): the local directory above, or an
    # S3-compatible bucket. Credentials unset: boto3's own chain (env, profile, role).
    result_storage: Literal["local", "s3"] = Field(
        default="local", description="Backend of result copies: local directory or S3."
    )
    s3_bucket: str | None = Field(default=None, description="Bucket of result copies.")
    s3_prefix: str = Field(
        default="", pattern=r"^([^/\s][^\s]*/)?$", description="Key prefix, e.g. tryon/."
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, Ceph...); unset: AWS."
    )
    s3_public_endpoint_url: str | None = Field(
        default=None, description="Endpoint presigned URLs are signed for (what consumers reach)."
    )
    s3_region: str | None = Field(default=None, description="Region of the bucket.")
    s3_access_key_id: SecretStr | None = Field(
        default=None, description="Bucket access key id; unset: boto3's chain (env, role)."
    )
    s3_secret_access_key: SecretStr | None = Field(
        default=None, description="Bucket secret key (set with the key id)."
    )
    s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="auto, path (most non-AWS stores) or virtual."
    )
    result_max_bytes: int = Field(
        default=defaults.RESULT_MAX_BYTES, ge=1024, le=1024**3, description="Largest copy."
    )
    # A callback carries the result URLs, so copies apply the preflight's address policy.
    result_allow_private: bool = Field(
        default=False, description="Let result copies fetch private, loopback, link-local hosts."
    )
    copy_retry_base: float = Field(
        default=defaults.COPY_RETRY_BASE,
        gt=0,
        le=3600,
        description="First wait after a failed copy.",
    )
    copy_retry_max: float = Field(
        default=defaults.COPY_RETRY_MAX,
        gt=0,
        le=86400,
        description="Longest wait between copy tries.",
    )
    sentry_dsn: SecretStr | None = Field(default=None, description="Sentry error reporting.")
    log_level: str = Field(
        default="INFO",
        pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$",
        description="DEBUG, INFO, WARNING, ERROR or CRITICAL.",
    )

    # --- operations: logs, metrics, the account's units -------------------------------
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text, or one JSON object a line (shippers)."
    )
    metrics_port: int = Field(
        default=defaults.METRICS_PORT,
        ge=0,
        le=65535,
        description="Port of a worker's /metrics (its main process); 0 turns it off.",
    )
    metrics_host: str = Field(
        default=defaults.METRICS_HOST,
        description="Interface of a worker's /metrics (unauthenticated: keep it private).",
    )
    units_warn_below: float = Field(
        default=defaults.UNITS_WARN_BELOW,
        ge=0,
        description="Warn when the account's remaining try-on units fall below this.",
    )
    account_check_interval: float = Field(
        default=defaults.ACCOUNT_CHECK_INTERVAL,
        ge=1,
        le=86400,
        description="Seconds between a worker's reads of GET /account/costs.",
    )

    # --- the HTTP service (`tryon web`) ------------------------------------------------
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="Where Kling reaches `tryon web` (https behind TLS); turns callbacks on.",
    )
    callback_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Signs the token in our Kling callback URLs; unset: a secret generated once "
            "and kept in the store."
        ),
    )
    callback_secret_previous: SecretStr | None = Field(
        default=None, description="The secret before the last rotation, still accepted."
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Bearer keys of the HTTP door, comma-separated, each `producer:key` or "
        "a bare key (producer `default`); several per producer rotate; none: HTTP intake off.",
    )
    # --- the review console (`tryon web`, /console) ------------------------------------
    console_users: SecretStr | None = Field(
        default=None,
        description=(
            "Console users: a JSON list (or the path of a JSON file) of {name, "
            "password_hash (argon2, `tryon console hash-password`), producers, admin}; "
            "none: the console is closed (404)."
        ),
    )
    console_secret: SecretStr | None = Field(
        default=None,
        description="Signs the console's session cookies; required when users are set.",
    )
    console_thumbnails: bool = Field(
        default=True,
        description="Keep 256 px thumbnails of the input photos for the console.",
    )
    console_secure_cookies: bool = Field(
        default=True,
        description="Mark the console's cookies Secure (only plain-HTTP development turns it off).",
    )
    web_max_body_bytes: int = Field(
        default=28 * 1024 * 1024,
        ge=1024,
        le=256 * 1024 * 1024,
        description="Largest request body (two 10 MB images as Base64 and the JSON fit).",
    )
    web_max_batch_jobs: int = Field(
        default=100, ge=1, le=10_000, description="Most job messages in one POST /v1/jobs."
    )

    # --- producers -------------------------------------------------------------------
    producer: str = Field(
        default=DEFAULT_PRODUCER,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="The producer the CLI and `enqueue()` publish and read as.",
    )
    amqp_producer: str = Field(
        default=DEFAULT_PRODUCER,
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        description="The producer of a message on the jobs queue without a `user_id` "
        "property (RabbitMQ validates that one against the publishing connection's user).",
    )
    producer_weights: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict,
        description="Shares of freed slots, `producer:weight,...` (weighted round robin "
        "among producers with queued jobs); a producer not named weighs 1.",
    )

    producer_budgets: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict,
        description="Units a producer may spend per day (UTC, the store's clock), "
        "`producer:units,...`; at its budget its jobs wait queued. Unnamed: no budget.",
    )

    unit_price: float = Field(
        default=defaults.UNIT_PRICE,
        ge=0,
        description="Price of one unit (one try-on), for `tryon batches estimate`.",
    )

    # --- webhooks to producers (Standard Webhooks) ------------------------------------
    webhook_concurrency: int = Field(
        default=defaults.WEBHOOK_CONCURRENCY,
        ge=1,
        le=64,
        description="Deliveries one worker makes at once, in threads of their own beside its "
        "pool (a receiver that hangs holds one of them, never the pool).",
    )
    webhook_secret: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="`whsec_...` secrets signing webhooks, comma-separated; every one signs "
        "(rotation); none: one is generated once and kept in the store.",
    )
    webhook_allow_private: bool = Field(
        default=False, description="Allow webhook targets on private/loopback/link-local hosts."
    )
    webhook_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: list(defaults.WEBHOOK_SCHEDULE),
        description="Seconds after the first attempt at which a delivery is retried "
        "(comma-separated, increasing; jittered).",
    )
    webhook_timeout: float = Field(
        default=defaults.WEBHOOK_TIMEOUT, gt=0, le=120, description="Read timeout of a delivery."
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_alias(cls, value: str | None) -> str | None:
        """`postgres://...` (what hosting platforms hand out) means PostgreSQL on psycopg."""
        if value is not None and value.startswith(_POSTGRES_ALIAS):
            return _POSTGRES_WITH_DRIVER + value.removeprefix(_POSTGRES_ALIAS)
        return value

    @field_validator("broker_url")
    @classmethod
    def _known_broker_scheme(cls, value: str | None) -> str | None:
        """A scheme no transport answers to is refused here, naming what is accepted."""
        if value is None:
            return value
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme.split("+", 1)[0] in {*TRANSPORT_ALIASES, _EMBEDDED_SCHEME}:
            return value
        raise ValueError(
            f"unknown scheme {scheme + '://' if scheme else '(none)'}: use "
            f"{', '.join(s + '://' for s in _RABBITMQ_SCHEMES)} for RabbitMQ "
            "(e.g. amqp://user:password@host:5672/vhost), or unset it for the embedded "
            "broker (kombu's other transports work too: redis://, sqla+..., filesystem://)"
        )

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _split_webhook_secrets(cls, value: object) -> object:
        """`TRYON_WEBHOOK_SECRET=whsec_new,whsec_old`: every one signs, so they rotate."""
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            for item in value:
                text = item.get_secret_value() if isinstance(item, SecretStr) else str(item)
                if not _is_whsec(text):
                    raise ValueError("each secret must be whsec_ followed by Base64 (24-64 bytes)")
        return value

    @field_validator("webhook_schedule", mode="before")
    @classmethod
    def _split_webhook_schedule(cls, value: object) -> object:
        """`TRYON_WEBHOOK_SCHEDULE=5,300,1800`: offsets in seconds, strictly increasing."""
        if isinstance(value, str):
            value = [float(part) for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            numbers = [float(v) for v in value]
            if any(b <= a for a, b in zip([0.0, *numbers], numbers, strict=False)):
                raise ValueError("offsets must be positive and strictly increasing")
            return numbers
        return value

    @field_validator("producer_weights", mode="before")
    @classmethod
    def _parse_producer_weights(cls, value: object) -> object:
        """`TRYON_PRODUCER_WEIGHTS=shop-a:2,shop-b:1`."""
        return parse_weights(value) if isinstance(value, str) else value

    @field_validator("producer_budgets", mode="before")
    @classmethod
    def _parse_producer_budgets(cls, value: object) -> object:
        """`TRYON_PRODUCER_BUDGETS=shop-a:100,shop-b:0`."""
        return parse_weights(value, allow_zero=True) if isinstance(value, str) else value

    def api_key_producers(self) -> list[tuple[str, SecretStr]]:
        """Each HTTP key with the producer it belongs to (`shop-a:key1`; bare: `default`)."""
        pairs = []
        for entry in self.api_keys:
            name, key = split_api_key(entry.get_secret_value())
            pairs.append((name, SecretStr(key)))
        return pairs

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_api_keys(cls, value: object) -> object:
        """`TRYON_API_KEYS=key1,key2`: several keys, so that they can rotate."""
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @model_validator(mode="after")
    def _credentials_are_complete(self) -> Self:
        has_jwt = self.kling_access_key is not None or self.kling_secret_key is not None
        if has_jwt and (self.kling_access_key is None or self.kling_secret_key is None):
            raise ValueError(
                "TRYON_KLING_ACCESS_KEY and TRYON_KLING_SECRET_KEY must be set together"
            )
        if has_jwt and self.kling_api_key is not None:
            raise ValueError(
                "set either TRYON_KLING_API_KEY or TRYON_KLING_ACCESS_KEY/SECRET_KEY, not both"
            )
        if self.result_storage == "s3" and not self.s3_bucket:
            raise ValueError("TRYON_RESULT_STORAGE=s3 needs TRYON_S3_BUCKET")
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError(
                "TRYON_S3_ACCESS_KEY_ID and TRYON_S3_SECRET_ACCESS_KEY must be set together"
            )
        if self.retry_backoff_max < self.retry_backoff_base:
            raise ValueError("TRYON_RETRY_BACKOFF_MAX must be >= TRYON_RETRY_BACKOFF_BASE")
        if self.kling_accounts:
            from kolors_tryon.config.accounts import parse_accounts

            parse_accounts(self.kling_accounts)  # a wrong entry stops start-up here
        return self

    # --- derived values ----------------------------------------------------------------
    @property
    def sandbox(self) -> bool:
        """No credentials at all: the bundled emulator stands in for the paid API."""
        return (
            not self.kling_accounts
            and self.kling_api_key is None
            and self.kling_access_key is None
            and self.kling_secret_key is None
        )

    @property
    def effective_kling_base_url(self) -> str:
        return (self.sandbox_emulator_url if self.sandbox else self.kling_base_url).rstrip("/")

    @property
    def effective_broker_url(self) -> str:
        if self.broker_url:
            return self.broker_url
        # kombu's SQLAlchemy transport on SQLite, fixed by config/embedded_broker.py.
        return f"tryon-sqlite+sqlite:///{(self.data_dir / 'broker.sqlite').resolve()}"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'jobs.sqlite').resolve()}"

    @property
    def effective_result_backend(self) -> str:
        if self.result_backend:
            return self.result_backend
        url = self.effective_database_url
        if url.startswith("postgresql://"):
            # Celery's database backend wants an explicit driver; psycopg 3 is the one we ship.
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return f"db+{url}"

    @property
    def effective_results_dir(self) -> Path:
        return self.results_dir if self.results_dir is not None else self.data_dir / "results"

    @property
    def callbacks_enabled(self) -> bool:
        """Kling can reach `tryon web` (TRYON_PUBLIC_URL): creates carry our callback URL."""
        return self.public_url is not None

    @property
    def effective_first_poll(self) -> float:
        """Seconds from submission to the first status query."""
        return self.callback_overdue_after if self.callbacks_enabled else self.track_first_delay

    @property
    def effective_poll_max(self) -> float:
        """The longest gap between status queries of one task."""
        return self.callback_poll_max if self.callbacks_enabled else self.track_interval_max

    @property
    def http_timeout(self) -> tuple[float, float]:
        """The (connect, read) pair every network call uses."""
        return (self.http_connect_timeout, self.http_read_timeout)

    @property
    def http_deadline(self) -> float:
        """The whole-call deadline of every outbound call: its two timeouts summed
        (defaults.HTTP_DEADLINE says why)."""
        return self.http_connect_timeout + self.http_read_timeout

    @property
    def copies_allow_private(self) -> bool:
        """Result copies may fetch private/loopback hosts: when allowed, or in sandbox
        mode, where the bundled emulator serves the results from this machine."""
        return self.result_allow_private or self.sandbox

    @property
    def webhook_deadline(self) -> float:
        """The whole-call deadline of one webhook attempt (defaults.WEBHOOK_DEADLINE)."""
        return self.http_connect_timeout + self.webhook_timeout

    @property
    def uses_rabbitmq(self) -> bool:
        return self.effective_broker_url.startswith(tuple(f"{s}://" for s in _RABBITMQ_SCHEMES))


def _is_whsec(text: str) -> bool:
    """A Standard Webhooks secret: `whsec_` and the Base64 of 24 to 64 bytes."""
    if not text.startswith("whsec_"):
        return False
    try:
        key = base64.b64decode(text.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        return False
    return 24 <= len(key) <= 64


def load_settings(**overrides: object) -> Settings:
    """Build Settings from the environment, or fail with one line per wrong variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"])
            name = f"{ENV_PREFIX}{field.upper()}" if field else "configuration"
            hidden = any(word in field for word in ("key", "dsn", "secret"))
            # A URL may carry its password: show the value without it.
            got = _URL_PASSWORD.sub(r"\1:***@", repr(err.get("input")))
            shown = "" if hidden else f" (got {got})"
            if field:
                lines.append(f"{name}: {err['msg'].removeprefix('Value error, ')}{shown}")
            else:
                lines.append(f"{name}: {err['msg'].removeprefix('Value error, ')}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None
