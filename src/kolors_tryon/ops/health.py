"""`tryon health`: is this deployment able to work? Broker, store, Kling credentials, units.

Each check makes one cheap call and says in a line what it checked:
- broker: a connection to `TRYON_BROKER_URL` (password masked);
- workers: on RabbitMQ, the consumers of the jobs queue (a passive declare returns their
  count): none means jobs pile up and nothing runs them, which no other check would
  show, so it is *unhealthy*; the embedded broker keeps no count (not checked);
- store: the job counts and the slots in use, read from `TRYON_DATABASE_URL`; a paused
  account is a warning (the pause's reason says what to fix);
- kling: one authenticated call (`list` with pageSize=1: no slot, no unit), so that a
  wrong key, a wrong base URL or a refused IP is *unhealthy*; in sandbox mode it says
  so, and checks the emulator instead;
- account: the remaining units (`GET /account/costs`), a warning below
  `TRYON_UNITS_WARN_BELOW`; unknown where the API lacks the endpoint, never a failure.

Healthy means no check failed: warnings are reported, exit 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from kombu import Connection

from kolors_tryon.config import Settings
from kolors_tryon.config.celery import topology_for
from kolors_tryon.kling import KlingClient, KlingError, redact
from kolors_tryon.ops.account import read_account
from kolors_tryon.store import open_store

__all__ = ["Check", "HealthReport", "Status", "check_health"]


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    """One check: its name, status, a line of what was checked and found, and data."""

    name: str
    status: Status
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class HealthReport:
    checks: tuple[Check, ...]
    sandbox: bool

    @property
    def healthy(self) -> bool:
        return all(check.status is not Status.FAIL for check in self.checks)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "healthy": self.healthy,
            "sandbox": self.sandbox,
            "checks": {c.name: {**asdict(c), "status": str(c.status)} for c in self.checks},
        }


def check_health(settings: Settings) -> HealthReport:
    """Run every check (each on its own: one failing does not hide the others)."""
    checks = [
        _guard("broker", lambda: check_broker(settings)),
        _guard("workers", lambda: check_consumers(settings)),
        _guard("store", lambda: check_store(settings)),
    ]
    if settings.kling_accounts:  # a pool: each account's API and state (ops/pool_report.py)
        from kolors_tryon.ops.pool_report import check_pool

        checks.append(_guard("accounts", lambda: check_pool(settings)))
        return HealthReport(tuple(checks), settings.sandbox)
    with KlingClient.from_settings(settings) as client:
        kling = _guard("kling", lambda: check_kling(settings, client))
        checks.append(kling)
        if kling.status is Status.FAIL:
            checks.append(Check("account", Status.WARN, "not read: the Kling check failed"))
        else:
            checks.append(_guard("account", lambda: check_account(settings, client)))
    return HealthReport(tuple(checks), settings.sandbox)


def _guard(name: str, run: Callable[[], Check]) -> Check:
    try:
        return run()
    except Exception as exc:
        # The type and a redacted message: a driver's text may hold a URL's password.
        first = redact(str(exc)).strip().splitlines()[:1]
        return Check(name, Status.FAIL, f"{type(exc).__name__}: {''.join(first)[:300]}")


def check_broker(settings: Settings) -> Check:
    connection = Connection(
        settings.effective_broker_url, connect_timeout=settings.http_connect_timeout
    )
    where = connection.as_uri()  # the password masked
    try:
        connection.ensure_connection(max_retries=1)
    finally:
        connection.release()
    return Check("broker", Status.OK, f"connected to {where}", {"url": where})


def check_consumers(settings: Settings) -> Check:
    """How many consumers take jobs from the jobs queue: none is a failure."""
    from amqp.exceptions import NotFound

    name = topology_for(settings).jobs_queue_name
    if not settings.uses_rabbitmq:
        return Check("workers", Status.OK, "not counted: the embedded broker keeps no consumers")
    connection = Connection(
        settings.effective_broker_url, connect_timeout=settings.http_connect_timeout
    )
    try:
        channel = connection.channel()
        try:
            # py-amqp's answer: (queue, message_count, consumer_count).
            declared: Any = channel
            _, waiting, consumers = declared.queue_declare(queue=name, passive=True)
        except NotFound:
            return Check(
                "workers",
                Status.FAIL,
                f"queue {name} does not exist: no worker has ever started on this namespace "
                "(start `tryon worker`)",
                {"queue": name, "consumers": 0},
            )
    finally:
        connection.release()
    data = {"queue": name, "consumers": consumers, "messages": waiting}
    if consumers == 0:
        return Check(
            "workers",
            Status.FAIL,
            f"no worker consumes {name} ({waiting} message(s) waiting): start `tryon worker`",
            data,
        )
    return Check(
        "workers",
        Status.OK,
        f"{consumers} consumer(s) on {name}, {waiting} message(s) waiting",
        data,
    )


def check_store(settings: Settings) -> Check:
    # Opened as every command opens it, schema checked: a store behind the code fails
    # this check saying what to run, not with the first query's missing column.
    store = open_store(settings)
    try:
        counts = store.jobs.count_by_state()
        in_use = store.jobs.in_flight()
        pause = store.account.current_pause()
    finally:
        store.dispose()
    where = store.engine.url.render_as_string(hide_password=True)
    total = sum(counts.values())
    shown = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"
    detail = (
        f"{where}: {total} jobs ({shown}); {in_use} of {settings.max_in_flight} "
        "account slots in use"
    )
    data: dict[str, Any] = {
        "jobs": counts,
        "slots_in_use": in_use,
        "slots_limit": settings.max_in_flight,
    }
    if pause is not None:
        data["paused"] = {"code": pause.code, "message": pause.message}
        detail += f"; SUBMISSIONS PAUSED ({pause.code}: {pause.message})"
        return Check("store", Status.WARN, detail, data)
    return Check("store", Status.OK, detail, data)


def check_kling(settings: Settings, client: KlingClient) -> Check:
    base = redact(settings.effective_kling_base_url)
    mode = (
        "SANDBOX MODE: no Kling credentials, the bundled emulator"
        if settings.sandbox
        else "Kling API"
    )
    try:
        client.list(page_num=1, page_size=1)
    except KlingError as err:
        return Check(
            "kling",
            Status.FAIL,
            f"{mode} at {base} refused an authenticated list call: {err}",
            {"base_url": base, "sandbox": settings.sandbox, "code": err.code},
        )
    auth = "JWT (AK/SK)" if settings.kling_access_key is not None else "static key"
    detail = f"{mode} at {base} accepted an authenticated list call ({auth})"
    return Check("kling", Status.OK, detail, {"base_url": base, "sandbox": settings.sandbox})


def check_account(settings: Settings, client: KlingClient) -> Check:
    try:
        reading = read_account(client, settings)
    except KlingError as err:
        return Check("account", Status.WARN, f"remaining units not read: {err}")
    data: dict[str, Any] = {"known": reading.known, "warn_below": settings.units_warn_below}
    if reading.costs is not None:
        data["remaining"] = reading.costs.remaining
        data["packs"] = [asdict(pack) for pack in reading.costs.packs]
    status = Status.WARN if reading.low else Status.OK
    return Check("account", status, reading.describe(), data)
